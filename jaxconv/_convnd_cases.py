"""Registry declarations of the N-d convolution family (``_conv.py``): conv,
conv1d/conv3d and conv_transpose, conv_transpose1d/2d/3d (conv2d is in
``_conv_cases.py``).

Every geometry is written channels-first; channels-last runs the same numbers with
the axes moved (``to_layout``). Each geometry runs with every impl in one layout and
with "xla" in the other, so each impl meets both layouts across the table.
"""
import numpy as np

from jaxconv import _conv, _native, reference
from jaxconv._geometry import LAYOUTS
from jaxconv._registry import Bench, Case, Invalid, channels_first, channels_last, declare, normal

# The native kernels where the extension is built (CI requires it: JAXCONV_REQUIRE_NATIVE).
IMPLS = ("xla", "im2col", "naive") + (("native",) if _native.available() else ())

# name -> x shape, w shape (channels-first), bias, hyperparameters
CONV = {
    "1d dilated grouped per-side": ((2, 4, 11), (6, 2, 3), True,
                                    dict(stride=2, dilation=2, groups=2, pad=((1, 2),))),
    "2d depthwise x2 SAME stride 2": ((2, 3, 7, 6), (6, 1, 3, 2), True,
                                      dict(stride=2, groups=3, pad="SAME")),
    "2d dilated even VALID no bias": ((2, 2, 8, 7), (4, 1, 2, 2), False,
                                      dict(dilation=(3, 2), groups=2, pad="VALID")),
    "3d per-side pads": ((1, 2, 5, 4, 6), (3, 2, 2, 3, 2), True,
                         dict(stride=(1, 2, 1), dilation=(1, 1, 2), pad=((0, 1), 1, (2, 0)))),
}
TRANSPOSE = {
    "1d stride 3 output_pad 2": ((2, 4, 5), (4, 3, 3), True,
                                 dict(stride=3, pad=1, output_pad=2)),
    "2d grouped dilated output_pad < dilation": ((2, 4, 4, 3), (4, 1, 3, 2), True,
                                                 dict(stride=(2, 1), dilation=(1, 3), groups=2,
                                                      pad=((1, 0), 2), output_pad=(1, 2))),
    "3d depthwise": ((1, 2, 3, 2, 3), (2, 2, 2, 2, 3), False,
                     dict(stride=2, groups=2, pad=(0, 1, 1))),
}


def to_layout(x, w, channels_last_layout: bool):
    """Channels-first x ``(N, C, *I)`` and w ``(O, I, *K)`` as channels-last."""
    if not channels_last_layout:
        return x, w
    nd = x.ndim - 2
    return np.moveaxis(x, 1, -1), np.transpose(w, (*range(2, 2 + nd), 1, 0))


def _cases(table, seed, *, fixed_rank=None):
    """Every impl in a geometry's home layout, "xla" in the other; a fixed-rank op
    (the same code behind a rank check) gets its geometries' home layout, "xla" only.
    The transforms test takes the first geometry's impls and one channels-last case."""
    out = []
    for k, (name, (xs, ws, bias, hyper)) in enumerate(table.items()):
        if fixed_rank is not None and len(xs) - 2 != fixed_rank:
            continue
        x, w = normal(seed + 10 * k, *xs), normal(seed + 10 * k + 1, *ws)
        b_size = ws[0] if table is CONV else ws[1] * hyper.get("groups", 1)
        b = normal(seed + 10 * k + 2, b_size) if bias else None
        first, last = LAYOUTS[len(xs) - 2]
        home = k % 2
        runs = [(home, IMPLS), (1 - home, ("xla",))] if fixed_rank is None else [(home, ("xla",))]
        for cl, impls in runs:
            xl, wl = to_layout(x, w, cl)
            layout = last if cl else (first if fixed_rank else None)
            for impl in impls:
                transforms = fixed_rank is not None or (k == 0 and cl == home) or (
                    k == 1 and impl == "xla" and cl)
                out.append(Case(f"{impl} {layout or first} {name}", (xl, wl, b),
                                dict(hyper, layout=layout, impl=impl), transforms=transforms))
    return out


def _pads_for_torch(x_sizes, kernel, stride, dilation, pad):
    """Per-dim (low, high) pads, SAME worked out as lax defines it, for F.pad."""
    nd = len(x_sizes)
    if isinstance(pad, str):
        if pad.upper() == "VALID":
            return [(0, 0)] * nd
        pads = []
        for n, k, s, d in zip(x_sizes, kernel, stride, dilation):
            total = max((-(-n // s) - 1) * s + d * (k - 1) + 1 - n, 0)
            pads.append((total // 2, total - total // 2))
        return pads
    items = pad if isinstance(pad, (tuple, list)) else [pad] * nd
    return [tuple(p) if isinstance(p, (tuple, list)) else (p, p) for p in items]


def _per_dim(v, nd):
    return tuple(v) if isinstance(v, (tuple, list)) else (v,) * nd


def _torch_conv(torch, x, w, b=None, *, stride=1, pad=0, dilation=1, groups=1, layout=None,
                impl="xla"):
    nd = x.ndim - 2
    x = channels_first(x, layout)
    if layout is not None and layout[1] != "C":
        w = w.permute(nd + 1, nd, *range(nd))           # (*K, I, O) -> (O, I, *K)
    stride, dilation = _per_dim(stride, nd), _per_dim(dilation, nd)
    pads = _pads_for_torch(x.shape[2:], w.shape[2:], stride, dilation, pad)
    x = torch.nn.functional.pad(x, [p for lo_hi in reversed(pads) for p in lo_hi])
    conv = getattr(torch.nn.functional, f"conv{nd}d")
    return channels_last(conv(x, w, b, stride=stride, dilation=dilation, groups=groups), layout)


def _torch_conv_transpose(torch, x, w, b=None, *, stride=1, pad=0, output_pad=0, dilation=1,
                          groups=1, layout=None, impl="xla"):
    """torch's conv_transposeNd with padding=0, then each end cropped: the same as its
    ``padding=`` for symmetric pads, and the definition of per-side pads."""
    nd = x.ndim - 2
    x = channels_first(x, layout)
    if layout is not None and layout[1] != "C":
        w = w.permute(nd + 1, nd, *range(nd))
    pads = _pads_for_torch(x.shape[2:], (), (), (), pad)
    conv = getattr(torch.nn.functional, f"conv_transpose{nd}d")
    out = conv(x, w, b, stride=stride, output_padding=output_pad, dilation=dilation,
               groups=groups)
    crop = (slice(None),) * 2 + tuple(slice(lo, out.shape[2 + i] - hi)
                                      for i, (lo, hi) in enumerate(pads))
    return channels_last(out[crop], layout)


def _same_forward(primal, config_fn):
    def same(args, hyper):
        if hyper.get("impl") not in ("im2col", "naive"):
            return None
        config = config_fn(*args, **hyper)[3]
        return lambda *a: primal(config, *a)
    return same


def _bench_conv(quick):
    n, c, hw = (8, 16, 16) if quick else (32, 32, 32)
    x = normal(1, n, c, hw, hw)
    return [Bench(f"conv depthwise x2 3x3 {impl}", (x, normal(2, 2 * c, 1, 3, 3), normal(3, 2 * c)),
                  dict(pad=1, groups=c, impl=impl)) for impl in IMPLS] + [
        Bench("conv dilated 2 grouped 4 3x3", (x, normal(4, c, c // 4, 3, 3), normal(5, c)),
              dict(pad=2, dilation=2, groups=4))]


def _bench_fixed(name, quick):
    """One case per rank-fixed op (the same kernels as conv/conv_transpose)."""
    n, c, size = (4, 8, 8) if quick else (16, 16, 16)
    nd = int(name[-2])
    spatial = (size * size,) if nd == 1 else (size,) * nd
    hyper = dict(stride=2, pad=1, **({"output_pad": 1} if "transpose" in name else {}))
    return [Bench(f"{name} k3 s2", (normal(1, n, c, *spatial), normal(2, c, c, *(3,) * nd),
                                     normal(3, c)), hyper)]


def _bench_transpose(quick):
    n, c, hw = (8, 16, 8) if quick else (32, 32, 16)
    return [Bench(f"conv_transpose 4x4 s2 {impl}",
                  (normal(1, n, c, hw, hw), normal(2, c, c // 2, 4, 4), normal(3, c // 2)),
                  dict(stride=2, pad=1, impl=impl)) for impl in IMPLS]


X3 = np.zeros((2, 4, 8))
W3 = np.zeros((6, 2, 3))


def _invalid_conv():
    return [
        Invalid("rank-auto", (np.zeros((2, 4)), W3, None), {}, ValueError,
                r"conv: x must be 3-D, 4-D or 5-D \(N, C, \*spatial\), got x.shape=\(2, 4\)"),
        Invalid("layout-rank", (X3, W3, None), dict(layout="NCHW"), ValueError,
                r"conv: x must be 4-D, got x.shape=\(2, 4, 8\) \(layout 'NCHW'\)"),
        Invalid("groups-divide", (X3, W3, None), dict(groups=3), ValueError,
                r"conv: groups=3 must divide both the 4 channels of x and the 6 filters of w"),
        Invalid("groups-channels", (X3, W3, None), dict(groups=1), ValueError,
                r"conv: x has 4 channels but w expects 2 \(x.shape=\(2, 4, 8\), w.shape=\(6, 2, 3\)"),
        Invalid("groups-0", (X3, W3, None), dict(groups=0), ValueError,
                r"conv: groups must be >= 1, got 0"),
        Invalid("dilation-0", (X3, W3, None), dict(groups=2, dilation=0), ValueError,
                r"conv: dilation must be >= 1, got 0"),
        Invalid("dilated-too-large", (X3, W3, None), dict(groups=2, dilation=4), ValueError,
                r"conv: kernel \(3,\) with dilation \(4,\) spans \(9,\), larger than the padded "
                r"input \(8,\) \(x.shape=\(2, 4, 8\), w.shape=\(6, 2, 3\)\)"),
        Invalid("pad-pair", (X3, W3, None), dict(groups=2, pad=((1, 2, 3),)), ValueError,
                r"conv: each pad pair must be \(low, high\), got \(1, 2, 3\)"),
        Invalid("pad-string", (X3, W3, None), dict(groups=2, pad="full"), TypeError,
                r"conv: pad must be an int, 1 int\(s\).*'SAME' or 'VALID', got 'full'"),
        Invalid("pad-2**31", (X3, W3, None), dict(groups=2, pad=2**31), ValueError,
                r"conv: the padded input \(4294967304,\) is too large for XLA to index"),
        Invalid("pad-10**9-2d", (np.zeros((2, 3, 8, 8)), np.zeros((4, 3, 3, 3)), None),
                dict(pad=10**9), ValueError, r"conv: the padded input \(2000000008, 2000000008\) "
                r"is too large for XLA to index"),
        Invalid("kernel-0", (X3, np.zeros((6, 2, 0)), None), dict(groups=2), ValueError,
                r"conv: kernel must be >= 1, got \(0,\) \(x.shape=\(2, 4, 8\)"),
        Invalid("bias", (X3, W3, np.zeros(4)), dict(groups=2), ValueError,
                r"conv: b must have shape \(6,\), one per filter, got b.shape=\(4,\)"),
        Invalid("impl", (X3, W3, None), dict(groups=2, impl="fft"), ValueError,
                r"conv: impl must be one of \("),
        Invalid("layout", (X3, W3, None), dict(layout="NCL"), ValueError,
                r"conv: layout must be one of \('NCW', 'NWC', 'NCHW'"),
    ]


def _invalid_transpose():
    x, w = np.zeros((2, 4, 5)), np.zeros((4, 3, 3))
    return [
        Invalid("channels", (x, np.zeros((3, 3, 3)), None), {}, ValueError,
                r"conv_transpose: x has 4 channels but w expects 3 \(w is \(C_in, C_out // "
                r"groups, \*K\); x.shape=\(2, 4, 5\), w.shape=\(3, 3, 3\)"),
        Invalid("groups", (x, w, None), dict(groups=3), ValueError,
                r"conv_transpose: groups=3 must divide the 4 channels of x"),
        Invalid("output-pad", (x, w, None), dict(stride=2, dilation=2, output_pad=2), ValueError,
                r"conv_transpose: output_pad must be smaller than stride or dilation in every "
                r"dim, got output_pad=\(2,\), stride=\(2,\), dilation=\(2,\)"),
        Invalid("pad-string", (x, w, None), dict(pad="SAME"), TypeError,
                r"conv_transpose: pad must be an int, 1 int\(s\) \(one per spatial dim\) or 1 "
                r"\(low, high\) pair\(s\), got 'SAME'"),
        Invalid("crop-all", (x, w, None), dict(pad=4), ValueError,
                r"conv_transpose: pad=\(\(4, 4\),\) crops the transposed output \(7,\) to \(-1,\)"),
        Invalid("bias", (x, w, np.zeros(4)), {}, ValueError,
                r"conv_transpose: b must have shape \(3,\), one per output channel"),
        Invalid("rank", (x, w, None), dict(layout="NHWC"), ValueError,
                r"conv_transpose: x must be 4-D, got x.shape=\(2, 4, 5\) \(layout 'NHWC'\)"),
    ]


def _fixed_invalid(name, ndim):
    x = np.zeros((2, 2) + (4,) * (ndim % 3 + 1))       # the wrong rank for ``name``
    w = np.zeros((2, 2) + (1,) * ndim)
    return lambda: [Invalid("rank", (x, w, None), {}, ValueError, rf"{name}: x must be "
                            rf"{ndim + 2}-D, got x.shape=\({', '.join(map(str, x.shape))}\)")]


declare(_conv.conv, reference.conv, grads=("x", "w", "b"),
        cases=lambda: _cases(CONV, 100), bench=_bench_conv, torch=_torch_conv,
        invalid=_invalid_conv, same_forward=_same_forward(_conv._conv_primal, _conv.conv_config))
for _nd, _op, _twin in ((1, _conv.conv1d, reference.conv1d), (3, _conv.conv3d, reference.conv3d)):
    declare(_op, _twin, grads=("x", "w", "b"), cases=lambda nd=_nd: _cases(CONV, 200, fixed_rank=nd),
            torch=_torch_conv, invalid=_fixed_invalid(_op.__name__, _nd),
            bench=lambda quick, name=_op.__name__: _bench_fixed(name, quick))
declare(_conv.conv_transpose, reference.conv_transpose, grads=("x", "w", "b"),
        cases=lambda: _cases(TRANSPOSE, 300), bench=_bench_transpose,
        torch=_torch_conv_transpose, invalid=_invalid_transpose,
        same_forward=_same_forward(_conv._conv_transpose_primal, _conv.conv_transpose_config))
for _nd, _op, _twin in ((1, _conv.conv_transpose1d, reference.conv_transpose1d),
                        (2, _conv.conv_transpose2d, reference.conv_transpose2d),
                        (3, _conv.conv_transpose3d, reference.conv_transpose3d)):
    declare(_op, _twin, grads=("x", "w", "b"),
            cases=lambda nd=_nd: _cases(TRANSPOSE, 400, fixed_rank=nd),
            torch=_torch_conv_transpose, invalid=_fixed_invalid(_op.__name__, _nd),
            bench=lambda quick, name=_op.__name__: _bench_fixed(name, quick))
