"""Native CPU convolution kernels: C++ behind XLA's FFI, used when built.

``pip install -e .`` compiles ``csrc/`` into ``jaxconv/_jaxconv_native*.so`` when a
C++ compiler is there (the extension is optional: without one the install still
succeeds and every op runs on XLA). Three kernels, one FFI target each, all for
2-D convolution in float32/float64, NCHW or NHWC, any stride, dilation,
per-side padding and groups (notation of ``conv_geometry.h``)::

    forward      y[n, f, oy, ox] = sum_{c,i,j} w[f, c, i, j] x[n, g c, oy sh + i dh - ph, ox sw + j dw - pw]
    input_grad   dx = the transpose of forward in x (a transposed convolution of g with w)
    weight_grad  dw = the transpose of forward in w (the correlation of x with g)

NCHW runs direct kernels over column-shifted copies of each image (register
tiles of vector accumulators, no im2col, no packing), and Winograd F(2x2, 3x3)
for the forward and dx of ungrouped 3x3 stride-1 convolutions with 32+ channels;
NHWC, and the dx of NCHW convolutions with few channels per group, an im2col
tile + GEMM. Both come as
AVX-512 / AVX2 / SSE2 code chosen at run time from the CPU's flags (no BLAS
dependency) and are split over XLA's intra-op thread pool. Leading batch
dimensions are handled in the kernel, so ``vmap`` works
(``vmap_method="expand_dims"``). The three kernels are closed under reverse
differentiation (each one's transposes are the other two), which is
what ``jaxconv``'s conv ops build on; on their own they are plain FFI calls with
no derivative rules.

``JAXCONV_NATIVE_LIB`` overrides the library's path (tests point it at a
missing file); ``JAXCONV_NATIVE_ISA=avx2|generic`` forces a lower instruction set.
"""
from __future__ import annotations

import ctypes
import functools
import os
from pathlib import Path

import jax
import numpy as np

LIBRARY_STEM = "_jaxconv_native"
BUILD_HINT = ("build it with a C++ compiler (g++ or clang++) on the path: "
              "`pip install -e .` in the jaxconv source tree compiles csrc/ into "
              "jaxconv/_jaxconv_native*.so")
_TARGETS = {"forward": "JaxconvConvForward", "input_grad": "JaxconvConvInputGrad",
            "weight_grad": "JaxconvConvWeightGrad"}


def library_path() -> Path | None:
    """The compiled extension's path, or None when it was not built."""
    override = os.environ.get("JAXCONV_NATIVE_LIB")
    if override is not None:
        return Path(override) if Path(override).is_file() else None
    found = sorted(Path(__file__).parent.glob(LIBRARY_STEM + "*.so"))
    return found[0] if found else None


@functools.cache
def _library() -> ctypes.CDLL | None:
    path = library_path()
    if path is None:
        return None
    lib = ctypes.CDLL(str(path))
    for kernel, symbol in _TARGETS.items():
        jax.ffi.register_ffi_target(f"jaxconv_conv_{kernel}",
                                    jax.ffi.pycapsule(getattr(lib, symbol)), platform="cpu")
    lib.JaxconvConvIsa.restype = ctypes.c_char_p
    return lib


def available() -> bool:
    """Whether the native kernels are built (and now registered with XLA)."""
    return _library() is not None


def isa() -> str | None:
    """The instruction set the kernels run with: "avx512", "avx2", "generic" or None."""
    lib = _library()
    return None if lib is None else lib.JaxconvConvIsa().decode()


def require(op: str) -> None:
    """Raise a clear error when ``impl="native"`` is asked for but not built."""
    if not available():
        raise RuntimeError(f"{op}: impl='native' needs jaxconv's compiled extension, which is "
                           f"not built in this install; {BUILD_HINT}. impl='auto' or 'xla' "
                           "run without it.")


def require_cpu(op: str) -> None:
    """Raise a clear error when ``impl="native"`` is traced for a GPU or TPU: the
    kernels are registered for XLA:CPU only (``impl="auto"`` picks per platform)."""
    device = jax.config.jax_default_device
    platform = getattr(device, "platform", device) or jax.default_backend()
    if platform != "cpu":
        raise ValueError(f"{op}: impl='native' runs jaxconv's CPU kernels, but this "
                         f"computation goes to the {platform!r} backend; use impl='auto' "
                         "(native on the CPU, XLA's convolution on a GPU or TPU) or 'xla', or "
                         "trace it under jax.default_device(jax.devices('cpu')[0])")


def _call(kernel: str, shape, dtype, a, b, *, stride, dilation, padding, groups, layout):
    require(f"jaxconv native {kernel}")
    (ph_lo, ph_hi), (pw_lo, pw_hi) = padding
    attrs = dict(stride_h=stride[0], stride_w=stride[1], dilation_h=dilation[0],
                 dilation_w=dilation[1], pad_h_lo=ph_lo, pad_h_hi=ph_hi, pad_w_lo=pw_lo,
                 pad_w_hi=pw_hi, groups=groups, nhwc=int(layout == "NHWC"))
    call = jax.ffi.ffi_call(f"jaxconv_conv_{kernel}", jax.ShapeDtypeStruct(shape, dtype),
                            vmap_method="expand_dims")
    return call(a, b, **{k: np.int64(v) for k, v in attrs.items()})


def _out_size(n, k, s, d, pad):
    return (n + pad[0] + pad[1] - d * (k - 1) - 1) // s + 1


def forward(x, w, *, stride, dilation, padding, groups, layout):
    """y = conv(x, w): x (N, C, H, W) / (N, H, W, C), w (F, C/groups, KH, KW) / (KH, KW, C/groups, F)."""
    if layout == "NCHW":
        (n, _, h, wd), (f, _, kh, kw) = x.shape[-4:], w.shape[-4:]
    else:
        (n, h, wd, _), (kh, kw, _, f) = x.shape[-4:], w.shape[-4:]
    ho, wo = (_out_size(*a) for a in zip((h, wd), (kh, kw), stride, dilation, padding))
    shape = (n, f, ho, wo) if layout == "NCHW" else (n, ho, wo, f)
    return _call("forward", shape, x.dtype, x, w, stride=stride, dilation=dilation,
                 padding=padding, groups=groups, layout=layout)


def input_grad(g, w, *, x_hw, stride, dilation, padding, groups, layout):
    """dx of forward for upstream g (forward's output shape); x_hw the input's (H, W)."""
    if layout == "NCHW":
        n, channels = g.shape[-4], w.shape[-3] * groups
        shape = (n, channels, *x_hw)
    else:
        n, channels = g.shape[-4], w.shape[-2] * groups
        shape = (n, *x_hw, channels)
    return _call("input_grad", shape, g.dtype, g, w, stride=stride, dilation=dilation,
                 padding=padding, groups=groups, layout=layout)


def weight_grad(x, g, *, window, stride, dilation, padding, groups, layout):
    """dw of forward for upstream g; window the kernel's (KH, KW)."""
    if layout == "NCHW":
        shape = (g.shape[-3], x.shape[-3] // groups, *window)
    else:
        shape = (*window, x.shape[-1] // groups, g.shape[-1])
    return _call("weight_grad", shape, x.dtype, x, g, stride=stride, dilation=dilation,
                 padding=padding, groups=groups, layout=layout)
