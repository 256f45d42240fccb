// The convolution kernels for the avx512 instruction set (see conv_kernels.inc).
#include <cstdint>
#include <cstdlib>

#include "conv_geometry.h"

#pragma GCC target("avx512f,avx512dq,avx512bw,avx512vl,avx2,fma")
#define JAXCONV_ISA avx512
#define JAXCONV_ISA_NAME "avx512"
#define JAXCONV_VBYTES 64
#define JAXCONV_MR 8
#define JAXCONV_NV 3
#include "conv_kernels.inc"
