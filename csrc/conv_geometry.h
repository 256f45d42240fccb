// The static geometry of one 2-D convolution and the per-ISA kernel table.
//
// A convolution of n images x (C, H, W) with f filters w (C/groups, KH, KW):
//
//   out[f, oy, ox] = sum_{c, i, j} w[f, c, i, j] * x[g*Cg + c, oy*sh + i*dh - ph, ox*sw + j*dw - pw]
//
// (g the group of filter f, Cg = C/groups; x outside the image reads 0). The
// high padding is implied by (ho, wo). NHWC stores x as (H, W, C), out as
// (Ho, Wo, F) and w as (KH, KW, Cg, F) (HWIO); NCHW stores w as (F, Cg, KH, KW).
#ifndef JAXCONV_CONV_GEOMETRY_H_
#define JAXCONV_CONV_GEOMETRY_H_

#include <cstdint>

namespace jaxconv {

struct Geom {
  int64_t c, h, w;   // input channels and size
  int64_t f, kh, kw; // filters and window
  int64_t ho, wo;    // output size
  int64_t sh, sw;    // stride
  int64_t dh, dw;    // dilation
  int64_t ph, pw;    // low padding
  int64_t groups;
  bool nhwc;
};

// The three kernels over images [n0, n1) of one batch, for one element type.
// Scratch is allocated inside. dw accumulates into its output (the caller
// zeroes it, and sums per-worker partial results).
template <class T>
struct Kernels {
  void (*forward)(const Geom&, const T* x, const T* w, T* out, int64_t n0, int64_t n1);
  void (*input_grad)(const Geom&, const T* g, const T* w, T* dx, int64_t n0, int64_t n1);
  void (*weight_grad)(const Geom&, const T* x, const T* g, T* dw, int64_t n0, int64_t n1);
};

struct KernelTable {
  const char* isa;
  Kernels<float> f32;
  Kernels<double> f64;
};

KernelTable avx512_kernels();
KernelTable avx2_kernels();
KernelTable generic_kernels();

}  // namespace jaxconv

#endif  // JAXCONV_CONV_GEOMETRY_H_
