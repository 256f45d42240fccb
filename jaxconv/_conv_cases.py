"""Registry declarations of the convolutions (``_conv.py``): conv2d, every impl."""
import re

import numpy as np

from jaxconv import _conv, _native, reference
from jaxconv._registry import Bench, Case, Invalid, channels_first, channels_last, declare, normal

# The native kernels where the extension is built (CI requires it: JAXCONV_REQUIRE_NATIVE).
IMPLS = ("xla", "im2col", "naive") + (("native",) if _native.available() else ())

# NCHW shapes; NHWC runs the same numbers transposed. Each geometry names what it covers.
GEOMETRIES = {
    # Ho = (8 - 3) // 2 + 1 = 3 leaves the last row unreached; W divides.
    "stride2-nondivisible": dict(x=(2, 3, 8, 7), w=(4, 3, 3, 3), bias=True, stride=2, pad=0),
    "asymmetric-stride-pad": dict(x=(2, 2, 6, 5), w=(3, 2, 3, 2), bias=True,
                                  stride=(2, 1), pad=(1, 0)),
    # rows/columns 1, 3 (and column 5) are skipped by a 1x1 kernel with stride 2.
    "1x1-stride2": dict(x=(2, 3, 5, 6), w=(4, 3, 1, 1), bias=True, stride=2, pad=0),
    "7x7-stride3": dict(x=(2, 2, 9, 8), w=(2, 2, 7, 7), bias=True, stride=3, pad=(2, 0)),
    "C1-no-bias": dict(x=(2, 1, 6, 6), w=(3, 1, 3, 3), bias=False, stride=1, pad=1),
}


def case_name(impl, layout, geometry):
    return f"{impl} {layout} {geometry}"


def _case(seed, impl, layout, geometry):
    g = GEOMETRIES[geometry]
    x, w = normal(seed, *g["x"]), normal(seed + 1, *g["w"])
    b = normal(seed + 2, g["w"][0]) if g["bias"] else None
    if layout == "NHWC":
        x, w = np.transpose(x, (0, 2, 3, 1)), np.transpose(w, (2, 3, 1, 0))
    hyper = dict(stride=g["stride"], pad=g["pad"], impl=impl, layout=layout)
    # transforms: every impl once; the rest only vary geometry and layout indexing.
    transforms = geometry == "stride2-nondivisible" and layout == "NCHW"
    return Case(case_name(impl, layout, geometry), (x, w, b), hyper, transforms=transforms)


def _cases():
    # The 7x7 kernel's 49 offsets make the im2col and naive impls slow to compile:
    # those two run it in NCHW only (their NHWC indexing is covered by the others).
    return [_case(10 * k, impl, layout, geometry)
            for k, geometry in enumerate(GEOMETRIES)
            for impl in IMPLS for layout in ("NCHW", "NHWC")
            if not (geometry == "7x7-stride3" and impl != "xla" and layout == "NHWC")]


def _torch_conv2d(torch, x, w, b=None, *, stride=1, pad=0, layout="NCHW", impl="xla"):
    if layout == "NHWC":
        w = w.permute(3, 2, 0, 1)                 # (KH, KW, C, F) -> (F, C, KH, KW)
    out = torch.nn.functional.conv2d(channels_first(x, layout), w, b, stride=stride,
                                     padding=pad)
    return channels_last(out, layout)


def _bench(quick):
    """A CIFAR first layer (3 channels, 7x7) in every impl, and (not in the quick run:
    it adds nothing there but compiles) a 64-channel 3x3 layer, ResNet's body, with
    XLA's convolution and the native kernels."""
    n, c, hw, f, k = (8, 3, 16, 8, 3) if quick else (64, 3, 32, 32, 7)
    args = (normal(1, n, c, hw, hw), normal(2, f, c, k, k), normal(3, f))
    first = [Bench(f"conv2d {impl} s{stride}", args, dict(stride=stride, pad=k // 2, impl=impl))
             for stride in (1, 2) for impl in IMPLS]
    if quick:
        return first
    n, c, hw = 64, 64, 16
    args = (normal(4, n, c, hw, hw), normal(5, c, c, 3, 3), normal(6, c))
    deep = [Bench(f"conv2d {c}ch 3x3 {impl} s{stride}", args,
                  dict(stride=stride, pad=1, impl=impl))
            for stride in (1, 2) for impl in IMPLS if impl in ("xla", "native")]
    return first + deep


def _same_forward(args, hyper):
    """The im2col/naive forward as plain jnp: what autodiff would do without the rule."""
    if hyper.get("impl") not in ("im2col", "naive"):
        return None
    config = _conv.conv_config(*args, **{"layout": "NCHW", **hyper})[3]
    return lambda *a: _conv._conv_primal(config, *a)


X = np.zeros((2, 3, 8, 8))
W = np.zeros((4, 3, 3, 3))
B = np.zeros(4)
XS = r"x.shape=\(2, 3, 8, 8\)"


def _invalid():
    return [
        Invalid("rank-x", (X[0], W, B), {}, ValueError,
            r"conv2d: x must be 4-D, got x.shape=\(3, 8, 8\)"),
        Invalid("rank-w", (X, W[None], B), {}, ValueError,
            r"conv2d: w must be 4-D, got w.shape=\(1, 4, 3, 3, 3\)"),
        Invalid("channels", (X, np.zeros((4, 2, 3, 3)), B), {}, ValueError,
            r"conv2d: x has 3 channels but w expects 2 \(" + XS + r", w.shape=\(4, 2, 3, 3\)"),
        Invalid("channels-nhwc", (X, np.zeros((3, 3, 3, 4)), B), dict(layout="NHWC"), ValueError,
            r"conv2d: x has 8 channels but w expects 3 \(" + XS + r", w.shape=\(3, 3, 3, 4\)"),
        Invalid("bias-length", (X, W, np.zeros(5)), {}, ValueError,
            r"conv2d: b must have shape \(4,\).*got b.shape=\(5,\) \(" + XS),
        Invalid("bias-2d", (X, W, np.zeros((4, 1))), {}, ValueError,
            r"conv2d: b must have shape \(4,\).*got b.shape=\(4, 1\)"),
        Invalid("stride-0", (X, W, B), dict(stride=0), ValueError,
            r"conv2d: stride must be >= 1, got 0"),
        Invalid("stride-pair-0", (X, W, B), dict(stride=(1, 0)), ValueError,
            r"conv2d: stride must be >= 1, got \(1, 0\)"),
        Invalid("pad-negative", (X, W, B), dict(pad=(0, -1)), ValueError,
            r"conv2d: pad must be >= 0, got \(0, -1\)"),
        Invalid("stride-float", (X, W, B), dict(stride=1.5), TypeError,
            r"conv2d: stride must be an int or a pair of ints, got 1.5"),
        Invalid("stride-triple", (X, W, B), dict(stride=(1, 1, 1)), TypeError,
            r"conv2d: stride must be an int or a pair of ints, got \(1, 1, 1\)"),
        Invalid("stride-bool", (X, W, B), dict(stride=True), TypeError,
            r"conv2d: stride must be an int"),
        Invalid("pad-string", (X, W, B), dict(pad="1"), TypeError, r"conv2d: pad must be an int"),
        Invalid("kernel-too-large", (X, np.zeros((4, 3, 11, 3)), B), dict(pad=1), ValueError,
            r"conv2d: kernel \(11, 3\) is larger than the padded input \(10, 10\) \(" + XS
            + r", w.shape=\(4, 3, 11, 3\)\)"),
        Invalid("layout", (X, W, B), dict(layout="NWHC"), ValueError,
            r"conv2d: layout must be one of \('NCHW', 'NHWC'\), got 'NWHC'"),
        Invalid("impl", (X, W, B), dict(impl="fft"), ValueError,
            r"conv2d: impl must be one of " + re.escape(str(_conv.IMPLS)) + r", got 'fft'"),
        Invalid("x-int", (X.astype(np.int32), W, B), {}, TypeError,
            r"conv2d: x must have a floating dtype, got int32 \(" + XS + r"\)"),
        Invalid("w-int", (X, W.astype(np.int64), B), {}, TypeError,
            r"conv2d: w must have a floating dtype, got int64 \(w.shape=\(4, 3, 3, 3\)\)"),
        Invalid("b-bool", (X, W, B.astype(bool)), {}, TypeError,
            r"conv2d: b must have a floating dtype"),
        Invalid("x-complex", (X.astype(np.complex128), W, B), {}, TypeError,
            r"conv2d: x must have a floating dtype, got complex128"),
        Invalid("mixed-x-w", (X.astype(np.float32), W, B), {}, TypeError,
            r"conv2d: operands must share one dtype, got x.dtype=float32, w.dtype=float64, "
            r"b.dtype=float64"),
        Invalid("mixed-b", (X, W, B.astype(np.float32)), {}, TypeError,
            r"conv2d: .*b.dtype=float32"),
        Invalid("x-not-array", ("image", W, B), {}, TypeError, r"conv2d: x must be an array, got str"),
    ]


declare(
    _conv.conv2d, reference.conv2d, grads=("x", "w", "b"),
    cases=_cases, bench=_bench, invalid=_invalid, torch=_torch_conv2d,
    same_forward=_same_forward,
)
