// XLA FFI handlers for jaxconv's native 2-D convolution: forward, input
// gradient (dx, the transposed convolution) and weight gradient (dw, the
// correlation of x with the output gradient).
//
// Each handler takes two operands and one result whose last four dimensions are
// an image batch, a kernel or an output batch (see conv_geometry.h), with any
// leading dimensions in front (vmap's batch dimensions, broadcast numpy-style:
// a leading dimension of 1 is shared). The work is split into chunks of images
// spread over XLA's own intra-op thread pool; the calling thread works too and
// only waits for chunks that have started, so the pool can never deadlock it.
// The instruction set (AVX-512, AVX2/FMA or baseline) is chosen once, at run
// time; JAXCONV_NATIVE_ISA=avx2|generic forces a lower one (for tests).
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "conv_geometry.h"
#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace jaxconv {
namespace {

const KernelTable& kernel_table() {
  static const KernelTable table = [] {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_cpu_init();
    const char* forced = std::getenv("JAXCONV_NATIVE_ISA");
    const std::string want = forced ? forced : "";
    const bool avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
                        __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
                        __builtin_cpu_supports("fma");
    const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    if (want != "avx2" && want != "generic" && avx512) return avx512_kernels();
    if (want != "generic" && avx2) return avx2_kernels();
#endif
    return generic_kernels();
  }();
  return table;
}

struct Shared {
  std::atomic<int64_t> next{0}, done{0};
  std::mutex mu;
  std::condition_variable cv;
};

// Runs fn(worker, item) for every item in [0, items), on `workers` workers: the
// caller and workers - 1 tasks on the pool, each pulling items from a counter.
template <class Fn>
void parallel_for(ffi::ThreadPool& pool, int64_t items, int64_t workers, const Fn& fn) {
  if (workers <= 1 || items <= 1) {
    for (int64_t i = 0; i < items; ++i) fn(0, i);
    return;
  }
  auto shared = std::make_shared<Shared>();
  // A task that starts after all items are done touches only `shared`, which it owns.
  auto work = [items](Shared* s, int64_t worker, const Fn* f) {
    for (int64_t i; (i = s->next.fetch_add(1)) < items;) {
      (*f)(worker, i);
      if (s->done.fetch_add(1, std::memory_order_acq_rel) + 1 == items) {
        std::lock_guard<std::mutex> lock(s->mu);
        s->cv.notify_all();
      }
    }
  };
  for (int64_t t = 1; t < workers; ++t)
    pool.Schedule([shared, t, &fn, work] { work(shared.get(), t, &fn); });
  work(shared.get(), 0, &fn);
  std::unique_lock<std::mutex> lock(shared->mu);
  shared->cv.wait(lock, [&] { return shared->done.load(std::memory_order_acquire) == items; });
}

enum Kind { kForward = 0, kInputGrad = 1, kWeightGrad = 2 };

struct Operand {
  const ffi::AnyBuffer::Dimensions dims;
  std::vector<int64_t> lead;  // leading dims, right-aligned to the result's
  int64_t core_size;          // elements in the last four dims
};

Operand operand(ffi::AnyBuffer::Dimensions dims, size_t lead_rank) {
  Operand o{dims, std::vector<int64_t>(lead_rank, 1), 1};
  const size_t own = dims.size() - 4;
  for (size_t i = 0; i < own; ++i) o.lead[lead_rank - own + i] = dims[i];
  for (size_t i = own; i < dims.size(); ++i) o.core_size *= dims[i];
  return o;
}

// Offset (in elements) of leading index `l` of the result inside operand `o`.
int64_t lead_offset(const Operand& o, const std::vector<int64_t>& out_lead, int64_t l) {
  int64_t offset = 0, stride = o.core_size;
  for (size_t i = out_lead.size(); i-- > 0;) {
    const int64_t idx = l % out_lead[i];
    l /= out_lead[i];
    if (o.lead[i] != 1) offset += idx * stride;
    stride *= o.lead[i];
  }
  return offset;
}

struct Attrs {
  int64_t sh, sw, dh, dw, ph_lo, ph_hi, pw_lo, pw_hi, groups, nhwc;
};

ffi::Error bad(const std::string& msg) {
  return ffi::Error(ffi::ErrorCode::kInvalidArgument, "jaxconv native conv: " + msg);
}

// Geometry from the core shapes of x, w and y (the forward's output).
ffi::Error make_geom(const int64_t* x, const int64_t* w, const int64_t* y, const Attrs& a,
                     int64_t* images, Geom* g) {
  g->nhwc = a.nhwc != 0;
  int64_t wc, yn, yf;
  if (g->nhwc) {
    *images = x[0], g->h = x[1], g->w = x[2], g->c = x[3];
    g->kh = w[0], g->kw = w[1], wc = w[2], g->f = w[3];
    yn = y[0], g->ho = y[1], g->wo = y[2], yf = y[3];
  } else {
    *images = x[0], g->c = x[1], g->h = x[2], g->w = x[3];
    g->f = w[0], wc = w[1], g->kh = w[2], g->kw = w[3];
    yn = y[0], yf = y[1], g->ho = y[2], g->wo = y[3];
  }
  g->sh = a.sh, g->sw = a.sw, g->dh = a.dh, g->dw = a.dw, g->ph = a.ph_lo, g->pw = a.pw_lo;
  g->groups = a.groups;
  if (a.sh < 1 || a.sw < 1 || a.dh < 1 || a.dw < 1 || a.groups < 1)
    return bad("stride, dilation and groups must be positive");
  if (yn != *images || yf != g->f || wc * a.groups != g->c || g->f % a.groups != 0)
    return bad("operand shapes do not form a convolution");
  const int64_t span_h = g->dh * (g->kh - 1) + 1, span_w = g->dw * (g->kw - 1) + 1;
  const int64_t hp = g->h + a.ph_lo + a.ph_hi, wp = g->w + a.pw_lo + a.pw_hi;
  if (hp < span_h || wp < span_w || g->ho != (hp - span_h) / g->sh + 1 ||
      g->wo != (wp - span_w) / g->sw + 1)
    return bad("output size does not match input, window, stride, dilation and padding");
  return ffi::Error::Success();
}

template <class T>
ffi::Error run_typed(Kind kind, ffi::ThreadPool& pool, const Geom& g, int64_t images,
                     const Operand& oa, const T* a, const Operand& ob, const T* b,
                     const Operand& oo, T* out) {
  const Kernels<T>& k = [&]() -> const Kernels<T>& {
    if constexpr (sizeof(T) == 4) return kernel_table().f32; else return kernel_table().f64;
  }();
  int64_t leads = 1;
  for (int64_t d : oo.lead) leads *= d;
  const int64_t threads = pool.num_threads() > 0 ? pool.num_threads() : 1;
  // Two chunks of images per thread: every chunk packs (Winograd: transforms) the weights
  // afresh, which at four per thread cost a 64-channel 3x3 forward ~15% (measured).
  const int64_t chunks_per_lead = images < 2 * threads ? images : 2 * threads;
  const int64_t chunk = chunks_per_lead > 0 ? (images + chunks_per_lead - 1) / chunks_per_lead : 1;
  const int64_t per_lead = chunk > 0 ? (images + chunk - 1) / chunk : 0;
  const int64_t items = leads * per_lead;
  const int64_t workers = items < threads ? items : threads;
  auto range = [&](int64_t item, int64_t* l, int64_t* n0, int64_t* n1) {
    *l = item / per_lead;
    *n0 = (item % per_lead) * chunk;
    *n1 = *n0 + chunk < images ? *n0 + chunk : images;
  };
  if (kind != kWeightGrad) {
    parallel_for(pool, items, workers, [&](int64_t, int64_t item) {
      int64_t l, n0, n1;
      range(item, &l, &n0, &n1);
      const T* al = a + lead_offset(oa, oo.lead, l);
      const T* bl = b + lead_offset(ob, oo.lead, l);
      T* ol = out + l * oo.core_size;
      if (kind == kForward) k.forward(g, al, bl, ol, n0, n1);
      else k.input_grad(g, al, bl, ol, n0, n1);
    });
    if (images == 0) std::memset(out, 0, sizeof(T) * leads * oo.core_size);
    return ffi::Error::Success();
  }
  // dw: each worker sums its images into its own copy of the result.
  const int64_t size = leads * oo.core_size;
  std::vector<T> partial(static_cast<size_t>(workers > 1 ? (workers - 1) * size : 0), T(0));
  std::memset(out, 0, sizeof(T) * size);
  parallel_for(pool, items, workers, [&](int64_t worker, int64_t item) {
    int64_t l, n0, n1;
    range(item, &l, &n0, &n1);
    T* dst = (worker == 0 ? out : partial.data() + (worker - 1) * size) + l * oo.core_size;
    k.weight_grad(g, a + lead_offset(oa, oo.lead, l), b + lead_offset(ob, oo.lead, l), dst,
                  n0, n1);
  });
  for (int64_t wk = 1; wk < workers; ++wk) {
    const T* p = partial.data() + (wk - 1) * size;
    for (int64_t i = 0; i < size; ++i) out[i] += p[i];
  }
  return ffi::Error::Success();
}

ffi::Error run(Kind kind, ffi::ThreadPool pool, ffi::AnyBuffer a, ffi::AnyBuffer b,
               ffi::Result<ffi::AnyBuffer> out, const Attrs& attrs) {
  const auto ad = a.dimensions(), bd = b.dimensions(), od = out->dimensions();
  if (ad.size() < 4 || bd.size() < 4 || od.size() < 4 || ad.size() > od.size() ||
      bd.size() > od.size())
    return bad("operands need four core dimensions after the same or fewer leading ones");
  const auto dtype = a.element_type();
  if (b.element_type() != dtype || out->element_type() != dtype ||
      (dtype != ffi::DataType::F32 && dtype != ffi::DataType::F64))
    return bad("operands must all be float32 or all float64");
  const size_t lead_rank = od.size() - 4;
  const Operand oa = operand(ad, lead_rank), ob = operand(bd, lead_rank),
                oo = operand(od, lead_rank);
  for (size_t i = 0; i < lead_rank; ++i)
    if ((oa.lead[i] != 1 && oa.lead[i] != oo.lead[i]) ||
        (ob.lead[i] != 1 && ob.lead[i] != oo.lead[i]))
      return bad("leading (batch) dimensions do not broadcast to the result's");
  const int64_t* core_a = ad.begin() + (ad.size() - 4);
  const int64_t* core_b = bd.begin() + (bd.size() - 4);
  const int64_t* core_o = od.begin() + lead_rank;
  const int64_t *x, *w, *y;
  if (kind == kForward) x = core_a, w = core_b, y = core_o;
  else if (kind == kInputGrad) y = core_a, w = core_b, x = core_o;
  else x = core_a, y = core_b, w = core_o;
  Geom g;
  int64_t images;
  if (ffi::Error err = make_geom(x, w, y, attrs, &images, &g); err.failure()) return err;
  if (dtype == ffi::DataType::F32)
    return run_typed<float>(kind, pool, g, images, oa, static_cast<const float*>(a.untyped_data()),
                            ob, static_cast<const float*>(b.untyped_data()), oo,
                            static_cast<float*>(out->untyped_data()));
  return run_typed<double>(kind, pool, g, images, oa, static_cast<const double*>(a.untyped_data()),
                           ob, static_cast<const double*>(b.untyped_data()), oo,
                           static_cast<double*>(out->untyped_data()));
}

template <Kind kKind>
ffi::Error handler(ffi::ThreadPool pool, ffi::AnyBuffer a, ffi::AnyBuffer b,
                   ffi::Result<ffi::AnyBuffer> out, int64_t sh, int64_t sw, int64_t dh,
                   int64_t dw, int64_t ph_lo, int64_t ph_hi, int64_t pw_lo, int64_t pw_hi,
                   int64_t groups, int64_t nhwc) {
  return run(kKind, pool, a, b, out, Attrs{sh, sw, dh, dw, ph_lo, ph_hi, pw_lo, pw_hi, groups, nhwc});
}

auto binding() {
  return ffi::Ffi::Bind()
      .Ctx<ffi::ThreadPool>()
      .Arg<ffi::AnyBuffer>()
      .Arg<ffi::AnyBuffer>()
      .Ret<ffi::AnyBuffer>()
      .Attr<int64_t>("stride_h")
      .Attr<int64_t>("stride_w")
      .Attr<int64_t>("dilation_h")
      .Attr<int64_t>("dilation_w")
      .Attr<int64_t>("pad_h_lo")
      .Attr<int64_t>("pad_h_hi")
      .Attr<int64_t>("pad_w_lo")
      .Attr<int64_t>("pad_w_hi")
      .Attr<int64_t>("groups")
      .Attr<int64_t>("nhwc");
}

}  // namespace
}  // namespace jaxconv

XLA_FFI_DEFINE_HANDLER_SYMBOL(JaxconvConvForward, jaxconv::handler<jaxconv::kForward>,
                              jaxconv::binding());
XLA_FFI_DEFINE_HANDLER_SYMBOL(JaxconvConvInputGrad, jaxconv::handler<jaxconv::kInputGrad>,
                              jaxconv::binding());
XLA_FFI_DEFINE_HANDLER_SYMBOL(JaxconvConvWeightGrad, jaxconv::handler<jaxconv::kWeightGrad>,
                              jaxconv::binding());

// The instruction set the kernels run with ("avx512", "avx2" or "generic").
extern "C" __attribute__((visibility("default"))) const char* JaxconvConvIsa() {
  return jaxconv::kernel_table().isa;
}
