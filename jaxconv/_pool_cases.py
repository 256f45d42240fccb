"""Registry declarations of max and average pooling (``_pool.py``): max_pool and
avg_pool and their 1d/2d/3d forms.

Inputs are ``distinct`` (values 0.1 apart): no window holds a tie or a near-tie,
where max pooling has no derivative. Channels-last cases run the same numbers
transposed. PyTorch's oracle is ``torch.nn.functional.{max,avg}_pool{1,2,3}d``.
"""
import numpy as np

from jaxconv import _pool, reference
from jaxconv._registry import (Bench, Case, Invalid, channels_first, channels_last, declare,
                               distinct)

_FIRST, _LAST = {1: "NCW", 2: "NCHW", 3: "NCDHW"}, {1: "NWC", 2: "NHWC", 3: "NDHWC"}


def layout_name(ndim, last):
    return (_LAST if last else _FIRST)[ndim]


def layout_case(name, seed, shape, hyper, *, last=False, transforms=False, extra=()):
    """A check case on ``distinct`` data of channels-first ``shape``; ``last`` runs it
    channels-last (the same numbers, transposed, and ``layout`` set)."""
    x = distinct(seed, *shape)
    if last:
        x, hyper = np.moveaxis(x, 1, -1), dict(hyper, layout=_LAST[len(shape) - 2])
    return Case(name, (x, *extra), hyper, transforms=transforms)


# --- cases: the N-d ops get every option, the 1d/2d/3d forms one case each -------------

def _max_pool_cases():
    return [
        layout_case("NCHW 3x3 s2 p1 (ResNet stem)", 1, (2, 2, 7, 6),
                    dict(pool=3, stride=2, pad=1), transforms=True),
        layout_case("NWC k3 s2 p1 d2 ceil", 2, (2, 2, 9),
                    dict(pool=3, stride=2, pad=1, dilation=2, ceil_mode=True), last=True),
        layout_case("NCHW (3,2) s(2,1) p(1,0) ceil", 3, (1, 2, 6, 7),
                    dict(pool=(3, 2), stride=(2, 1), pad=(1, 0), ceil_mode=True)),
        layout_case("NDHWC k2 s(1,2,1) p1 d(1,1,2) ceil", 4, (1, 1, 4, 5, 4),
                    dict(pool=2, stride=(1, 2, 1), pad=1, dilation=(1, 1, 2), ceil_mode=True),
                    last=True),
    ]


def _avg_pool_cases():
    return [
        layout_case("NCHW 3x3 s2 p1 ceil", 5, (1, 2, 7, 6),
                    dict(pool=3, stride=2, pad=1, ceil_mode=True), transforms=True),
        layout_case("NWC k3 s2 p1 ceil exclude-pad", 6, (2, 2, 8),
                    dict(pool=3, stride=2, pad=1, ceil_mode=True, count_include_pad=False),
                    last=True),
        layout_case("NHWC (2,3) s(2,1) p1 divisor 4", 7, (1, 2, 6, 6),
                    dict(pool=(2, 3), stride=(2, 1), pad=1, divisor_override=4), last=True),
        layout_case("NCDHW (2,3,2) s2 p1 ceil exclude-pad", 8, (1, 1, 5, 4, 6),
                    dict(pool=(2, 3, 2), stride=2, pad=1, ceil_mode=True,
                         count_include_pad=False)),
    ]


# max_pool2d/avg_pool2d: the 2-D geometries of the original pools, NCHW and NHWC
GEOMETRIES = {
    "2x2-floor": dict(x=(2, 3, 7, 9), pool=2, stride=None),          # last row and column dropped
    "overlap-3s2": dict(x=(2, 2, 7, 8), pool=3, stride=2),           # windows share a row/column
    "asymmetric": dict(x=(2, 2, 5, 7), pool=(3, 2), stride=(1, 2)),  # overlap in H only
    "1x1-stride2-C1": dict(x=(2, 1, 5, 6), pool=1, stride=2),        # every other row skipped
    "7x7-overlap": dict(x=(1, 2, 7, 8), pool=7, stride=1),
    "2x3-stride(1,2)": dict(x=(2, 2, 5, 6), pool=(2, 3), stride=(1, 2)),
}


def case_name(layout, geometry):
    """The name of the 2-D case of ``GEOMETRIES[geometry]`` in ``layout`` (tests look it up)."""
    return f"{layout} {geometry}"


def _2d_cases():
    out = []
    for k, (geometry, g) in enumerate(GEOMETRIES.items()):
        for last in (False, True):
            out.append(layout_case(case_name("NHWC" if last else "NCHW", geometry), 10 + k, g["x"],
                                   dict(pool=g["pool"], stride=g["stride"]), last=last,
                                   transforms=geometry == "overlap-3s2" and not last))
    out.append(layout_case("NHWC 3x3 s2 p1 ceil", 20, (1, 2, 6, 7),
                           dict(pool=3, stride=2, pad=1, ceil_mode=True), last=True))
    return out


SMALL = {
    "max_pool1d": lambda: [layout_case("NCW k3 s1 p1", 30, (2, 2, 6),
                                       dict(pool=3, stride=1, pad=1), transforms=True)],
    "max_pool3d": lambda: [layout_case("NCDHW k2 s2 p1", 31, (1, 2, 4, 4, 3),
                                       dict(pool=2, stride=2, pad=1), transforms=True)],
    "avg_pool1d": lambda: [layout_case("NWC k2 s2 p1", 32, (2, 2, 7), dict(pool=2, stride=2, pad=1),
                                       last=True, transforms=True)],
    "avg_pool3d": lambda: [layout_case("NDHWC k3 s2 p1 exclude-pad", 33, (1, 2, 4, 5, 3),
                                       dict(pool=3, stride=2, pad=1, count_include_pad=False),
                                       last=True, transforms=True)],
}


# --- PyTorch's oracle, benches, the op's own forward ------------------------------------

def _torch_pool(kind):
    def pool(torch, x, *, pool=2, stride=None, pad=0, dilation=1, ceil_mode=False,
             count_include_pad=True, divisor_override=None, layout=None):
        fn = getattr(torch.nn.functional, f"{kind}_pool{x.ndim - 2}d")
        xc = channels_first(x, layout)
        if kind == "max":
            out = fn(xc, pool, stride, pad, dilation, ceil_mode)
        elif x.ndim == 3:     # avg_pool1d has no divisor_override
            out = fn(xc, pool, stride, pad, ceil_mode, count_include_pad)
        else:
            out = fn(xc, pool, stride, pad, ceil_mode, count_include_pad, divisor_override)
        return channels_last(out, layout)
    return pool


def _bench(name, shape_quick, shape_full, hyper, label):
    def cases(quick):
        x = np.random.default_rng(0).standard_normal(shape_quick if quick else shape_full)
        return [Bench(f"{name} {label}", (x,), hyper)]
    return cases


_STEM = dict(pool=3, stride=2, pad=1)
BENCHES = {
    # the ResNet stem's pool on a ResNet-50-sized activation (64 x 64 x 56 x 56 in full)
    "max_pool": _bench("max_pool", (8, 8, 16, 16), (64, 64, 56, 56), _STEM, "3x3 s2 p1"),
    "avg_pool": _bench("avg_pool", (8, 8, 16, 16), (32, 32, 32, 32), _STEM, "3x3 s2 p1"),
    "max_pool1d": _bench("max_pool1d", (8, 8, 64), (64, 64, 1024), _STEM, "k3 s2 p1"),
    "avg_pool1d": _bench("avg_pool1d", (8, 8, 64), (64, 64, 1024), _STEM, "k3 s2 p1"),
    "max_pool3d": _bench("max_pool3d", (2, 4, 8, 8, 8), (8, 32, 16, 32, 32), _STEM, "3x3x3 s2 p1"),
    "avg_pool3d": _bench("avg_pool3d", (2, 4, 8, 8, 8), (8, 32, 16, 32, 32), _STEM, "3x3x3 s2 p1"),
}


def _2d_bench(name):
    def cases(quick):
        n, c, hw = (8, 8, 16) if quick else (64, 32, 32)
        x = (np.random.default_rng(0).standard_normal((n, c, hw, hw)),)
        out = [Bench(f"{name} 2x2", x, dict(pool=2))]
        if name == "max_pool2d":
            out.append(Bench(f"{name} 3x3 s2", x, dict(pool=3, stride=2)))
        return out
    return cases


def _same_forward(name):
    """The custom op's own forward (strided slices, a running max or a sum) as plain
    differentiable jnp: what autodiff would do with jaxconv's formulation."""
    primal = _pool._max_primal if name.startswith("max") else _pool._avg_primal
    ndim = {"1d": 1, "2d": 2, "3d": 3}.get(name[-2:])

    def same(args, hyper):
        config = _pool.pool_config(name, args[0], ndim=ndim,
                                   **{"pool": 2, "layout": _default_layout(name), **hyper})[1]
        return lambda x: primal(config, x)
    return same


def _default_layout(name):
    ndim = {"1d": 1, "2d": 2, "3d": 3}.get(name[-2:])
    return ndim and _FIRST[ndim]


# --- bad input ----------------------------------------------------------------------------

X = np.zeros((2, 3, 8, 8))
XS = r"x.shape=\(2, 3, 8, 8\)"


def _invalid_2d(op):
    """The original pools' messages: every one still holds."""
    return lambda: [
        Invalid("rank-x", (X[0],), {}, ValueError,
                rf"{op}: x must be 4-D, got x.shape=\(3, 8, 8\)"),
        Invalid("pool-0", (X,), dict(pool=0), ValueError, rf"{op}: pool must be >= 1, got 0"),
        Invalid("stride-0", (X,), dict(stride=(0, 1)), ValueError,
                rf"{op}: stride must be >= 1, got \(0, 1\)"),
        Invalid("pool-float", (X,), dict(pool=2.0), TypeError,
                rf"{op}: pool must be an int or a pair"),
        Invalid("pool-single", (X,), dict(pool=(2,)), TypeError,
                rf"{op}: pool must be an int or a pair"),
        Invalid("pool-too-large", (X,), dict(pool=(9, 2)), ValueError,
                rf"{op}: pool \(9, 2\) is larger than the padded input \(8, 8\) \(" + XS
                + r", layout='NCHW'\)"),
        # in NHWC the same array has H = 3: the layout decides which axes are spatial
        Invalid("pool-too-large-nhwc", (X,), dict(pool=4, layout="NHWC"), ValueError,
                rf"{op}: pool \(4, 4\) is larger than the padded input \(3, 8\)"),
        Invalid("layout", (X,), dict(layout="CHWN"), ValueError, rf"{op}: layout must be one of"),
        Invalid("x-int", (X.astype(np.int32),), {}, TypeError,
                rf"{op}: x must have a floating dtype, got int32 \(" + XS + r"\)"),
        Invalid("x-not-array", (None,), {}, TypeError, rf"{op}: x must be an array, got NoneType"),
        Invalid("pad-over-half", (X,), dict(pool=3, pad=2), ValueError,
                rf"{op}: pad must be at most half the pool window \(pool // 2 = \(1, 1\)\), "
                rf"got pad=\(2, 2\) for pool=\(3, 3\) \(" + XS),
    ]


def _invalid_nd(op):
    return lambda: [
        Invalid("pad-over-half", (X,), dict(pool=5, pad=3), ValueError,
                rf"{op}: pad must be at most half the pool window \(pool // 2 = \(2, 2\)\), "
                rf"got pad=\(3, 3\) for pool=\(5, 5\) \(" + XS),
        Invalid("pad-pair-over-half", (X,), dict(pool=3, pad=((0, 2), (1, 1))), ValueError,
                rf"{op}: pad must be at most half the pool window"),
        Invalid("pool-too-large", (X,), dict(pool=9), ValueError,
                rf"{op}: pool \(9, 9\) is larger than the padded input \(8, 8\) \(" + XS),
        Invalid("layout", (X,), dict(pool=2, layout="NHWCD"), ValueError,
                rf"{op}: layout must be one of \('NCW', 'NWC', 'NCHW', 'NHWC', 'NCDHW', 'NDHWC'\)"),
        Invalid("rank-layout", (X,), dict(pool=2, layout="NCW"), ValueError,
                rf"{op}: x must be 3-D, got " + XS + r" \(layout 'NCW'\)"),
        Invalid("rank-6", (np.zeros((1, 1, 2, 2, 2, 2)),), dict(pool=2), ValueError,
                rf"{op}: x must be 3-D, 4-D or 5-D"),
        Invalid("ceil-int", (X,), dict(pool=2, ceil_mode=1), TypeError,
                rf"{op}: ceil_mode must be a bool, got 1"),
        Invalid("empty-channels", (np.zeros((2, 0, 8, 8)),), dict(pool=2), ValueError,
                rf"{op}: x may be empty only along the batch axis, got x.shape=\(2, 0, 8, 8\)"),
        Invalid("empty-spatial", (np.zeros((2, 3, 0, 8)),), dict(pool=1), ValueError,
                rf"{op}: x may be empty only along the batch axis"),
        Invalid("x-int", (X.astype(np.int32),), dict(pool=2), TypeError,
                rf"{op}: x must have a floating dtype, got int32"),
    ] + ([
        Invalid("dilation-0", (X,), dict(pool=3, dilation=0), ValueError,
                rf"{op}: dilation must be >= 1, got 0"),
        Invalid("dilated-too-large", (X,), dict(pool=3, dilation=(1, 4)), ValueError,
                rf"{op}: pool \(3, 3\) with dilation \(1, 4\) spans \(3, 9\), larger than "
                r"the padded input \(8, 8\)"),
    ] if op.startswith("max") else [
        Invalid("count-include-pad-str", (X,), dict(pool=2, count_include_pad="yes"), TypeError,
                rf"{op}: count_include_pad must be a bool"),
        Invalid("divisor-0", (X,), dict(pool=2, divisor_override=0), ValueError,
                rf"{op}: divisor_override must be >= 1, got 0"),
    ])


def _invalid_fixed(op, ndim):
    x, shape = np.zeros((1, 2) + (4,) * ndim), r"x.shape=\(1, 2" + r", 4" * ndim + r"\)"
    return lambda: [
        Invalid("rank-x", (X,), dict(pool=2), ValueError,
                rf"{op}: x must be {ndim + 2}-D, got "),
        Invalid("pool-count", (x,), dict(pool=(2,) * (ndim + 1)), TypeError,
                rf"{op}: pool must be an int or "),
        Invalid("pad-over-half", (x,), dict(pool=3, pad=2), ValueError,
                rf"{op}: pad must be at most half the pool window .*\(" + shape),
    ]


for _kind, _cases in (("max", _max_pool_cases), ("avg", _avg_pool_cases)):
    _name = f"{_kind}_pool"
    declare(getattr(_pool, _name), getattr(reference, _name), grads=("x",), cases=_cases,
            bench=BENCHES[_name], invalid=_invalid_nd(_name), torch=_torch_pool(_kind),
            same_forward=_same_forward(_name))
    declare(getattr(_pool, f"{_name}2d"), getattr(reference, f"{_name}2d"), grads=("x",),
            cases=_2d_cases, bench=_2d_bench(f"{_name}2d"), invalid=_invalid_2d(f"{_name}2d"),
            torch=_torch_pool(_kind), same_forward=_same_forward(f"{_name}2d"))
    for _nd in (1, 3):
        _op = f"{_name}{_nd}d"
        declare(getattr(_pool, _op), getattr(reference, _op), grads=("x",), cases=SMALL[_op],
                bench=BENCHES[_op], invalid=_invalid_fixed(_op, _nd), torch=_torch_pool(_kind),
                same_forward=_same_forward(_op))
