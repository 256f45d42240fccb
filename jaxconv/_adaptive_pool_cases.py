"""Registry declarations of adaptive pooling (``_adaptive_pool.py``):
adaptive_avg_pool, adaptive_max_pool and their 1d/2d/3d forms.

``out_size`` is a static positional argument (``arrays=("x",)``). The cases cover
windows that share a row (7 -> 3), ``None`` (keep a dim), upsampling (3 -> 5) and
global pooling (``out_size=1``). PyTorch's oracle is
``torch.nn.functional.adaptive_{avg,max}_pool{1,2,3}d``.
"""
import numpy as np

from jaxconv import _adaptive_pool, reference
from jaxconv._pool_cases import X, XS, layout_case, layout_name
from jaxconv._registry import Bench, Invalid, channels_first, channels_last, declare

_NDIM = {"1d": 1, "2d": 2, "3d": 3}


def _cases(kind):
    # (what, seed, channels-first shape, out_size, channels-last?, transforms?)
    table = [
        ("7 -> 3", 40, (2, 2, 7), 3, kind == "max", False),
        ("(7, 6) -> (3, None)", 41, (1, 2, 7, 6), (3, None), kind == "avg", kind == "avg"),
        # (a global average is too flat for the transforms test's Hessian-vector check)
        ("(7, 6) -> 1 (global)", 42, (1, 2, 7, 6), 1, kind == "max", kind == "max"),
        ("(3, 5, 4) -> (5, 2, 3)", 43, (1, 1, 3, 5, 4), (5, 2, 3), False, False),
    ]
    return lambda: [layout_case(f"{layout_name(len(shape) - 2, last)} {what}", seed, shape, {},
                                last=last, transforms=transforms, extra=(out,))
                    for what, seed, shape, out, last, transforms in table]


def _small_cases(ndim):
    shape, out = {1: ((2, 2, 8), 3), 2: ((1, 2, 5, 7), (2, 3)), 3: ((1, 2, 3, 4, 5), 2)}[ndim]
    return lambda: [layout_case(f"{shape[2:]} -> {out}", 50 + ndim, shape, {}, extra=(out,),
                                transforms=True)]


def _torch_adaptive(kind):
    def pool(torch, x, out_size, *, layout=None):
        fn = getattr(torch.nn.functional, f"adaptive_{kind}_pool{x.ndim - 2}d")
        return channels_last(fn(channels_first(x, layout), out_size), layout)
    return pool


def _bench(name, out_size, label):
    def cases(quick):
        ndim = _NDIM.get(name[-2:], 2)
        shape = (8, 8) + (16,) * ndim if quick else (64, 64) + {1: (3136,), 2: (56, 56),
                                                                3: (16, 14, 14)}[ndim]
        x = np.random.default_rng(0).standard_normal(shape)
        return [Bench(f"{name} {label}", (x, out_size))]
    return cases


BENCHES = {
    # a ResNet head's global average pool on a 64 x 64 x 56 x 56 activation (full)
    "adaptive_avg_pool": _bench("adaptive_avg_pool", 1, "global (out 1)"),
    "adaptive_max_pool": _bench("adaptive_max_pool", 1, "global (out 1)"),
    "adaptive_avg_pool2d": _bench("adaptive_avg_pool2d", 7, "-> 7x7"),
    "adaptive_max_pool2d": _bench("adaptive_max_pool2d", 7, "-> 7x7"),
}
for _kind in ("avg", "max"):
    for _nd in ("1d", "3d"):
        BENCHES[f"adaptive_{_kind}_pool{_nd}"] = _bench(f"adaptive_{_kind}_pool{_nd}", 3, "-> 3")


def _same_forward(name):
    """The custom op's own forward (gathers, a sum or an argmax) as plain jnp."""
    primal = _adaptive_pool._avg_primal if "avg" in name else _adaptive_pool._max_primal

    def same(args, hyper):
        config = _adaptive_pool.adaptive_config(name, args[0], args[1], ndim=_NDIM.get(name[-2:]),
                                                layout=hyper.get("layout"))[1]
        return lambda x: primal(config, x)
    return same


def _invalid(op):
    fixed = _NDIM.get(op[-2:])
    if fixed:
        x = np.zeros((1, 2) + (4,) * fixed)
        return lambda: [
            Invalid("rank-x", (X[0] if fixed == 2 else X, 2), {}, ValueError,
                    rf"{op}: x must be {fixed + 2}-D, got "),
            Invalid("out-0", (x, 0), {}, ValueError, rf"{op}: out_size must be >= 1"),
            Invalid("out-count", (x, (2,) * (fixed + 1)), {}, TypeError,
                    rf"{op}: out_size must be an int or "),
            Invalid("empty-channels", (np.zeros((1, 0) + (4,) * fixed), 2), {}, ValueError,
                    rf"{op}: x may be empty only along the batch axis"),
        ]
    return lambda: [
        Invalid("out-0", (X, 0), {}, ValueError,
                rf"{op}: out_size must be >= 1, got \(0, 0\) \(" + XS),
        Invalid("out-negative", (X, (3, -1)), {}, ValueError,
                rf"{op}: out_size must be >= 1, got \(3, -1\)"),
        Invalid("out-count", (X, (3, 3, 3)), {}, TypeError,
                rf"{op}: out_size must be an int or a pair of ints, got \(3, 3, 3\)"),
        Invalid("out-float", (X, 2.5), {}, TypeError,
                rf"{op}: out_size must be an int or a pair of ints, got \(2.5, 2.5\)"),
        Invalid("rank-layout", (X, 2), dict(layout="NDHWC"), ValueError,
                rf"{op}: x must be 5-D, got " + XS + r" \(layout 'NDHWC'\)"),
        Invalid("layout", (X, 2), dict(layout="HW"), ValueError, rf"{op}: layout must be one of"),
        Invalid("x-int", (X.astype(np.int32), 2), {}, TypeError,
                rf"{op}: x must have a floating dtype, got int32"),
    ]


for _kind in ("avg", "max"):
    for _suffix in ("", "1d", "2d", "3d"):
        _op = f"adaptive_{_kind}_pool{_suffix}"
        declare(getattr(_adaptive_pool, _op), getattr(reference, _op), arrays=("x",),
                grads=("x",), cases=_cases(_kind) if not _suffix else _small_cases(_NDIM[_suffix]),
                bench=BENCHES[_op], invalid=_invalid(_op), torch=_torch_adaptive(_kind),
                same_forward=_same_forward(_op))
