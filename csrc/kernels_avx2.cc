// The convolution kernels for the avx2 instruction set (see conv_kernels.inc).
#include <cstdint>
#include <cstdlib>

#include "conv_geometry.h"

#pragma GCC target("avx2,fma")
#define JAXCONV_ISA avx2
#define JAXCONV_ISA_NAME "avx2"
#define JAXCONV_VBYTES 32
#define JAXCONV_MR 6
#define JAXCONV_NV 2
#include "conv_kernels.inc"
