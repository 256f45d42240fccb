// The convolution kernels for the generic instruction set (see conv_kernels.inc).
#include <cstdint>
#include <cstdlib>

#include "conv_geometry.h"

// baseline x86-64 (SSE2) or whatever the compiler targets by default
#define JAXCONV_ISA generic
#define JAXCONV_ISA_NAME "generic"
#define JAXCONV_VBYTES 16
#define JAXCONV_MR 4
#define JAXCONV_NV 2
#include "conv_kernels.inc"
