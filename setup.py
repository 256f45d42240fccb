"""The optional native convolution kernels (csrc/), built by `pip install`.

All metadata lives in pyproject.toml; this file only declares the C++ extension.
It is optional: without a working C++ compiler the install still succeeds and
jaxconv runs every op on XLA (impl="auto" picks XLA, impl="native" says how to
build). No -march flags: the kernels pick AVX-512, AVX2 or baseline code at run
time, so one build runs on any x86-64 CPU.
"""
import platform

from setuptools import Extension, setup

_X86 = platform.machine().lower() in ("x86_64", "amd64")
_SOURCES = ["csrc/conv_ffi.cc", "csrc/kernels_generic.cc"]
if _X86:
    _SOURCES += ["csrc/kernels_avx2.cc", "csrc/kernels_avx512.cc"]

setup(ext_modules=[Extension(
    "jaxconv._jaxconv_native",
    sources=_SOURCES,
    include_dirs=["csrc"],
    depends=["csrc/conv_geometry.h", "csrc/conv_kernels.inc", "csrc/conv_gemm.inc",
             "csrc/conv_direct.inc", "csrc/conv_direct_dx.inc", "csrc/conv_winograd.inc"],
    extra_compile_args=["-std=c++17", "-O3", "-ffp-contract=fast",
                        "-isystem", "csrc/third_party"],
    language="c++",
    optional=True,
)])
