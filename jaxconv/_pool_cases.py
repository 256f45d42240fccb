"""Registry declarations of the pools (``_pool.py``): max_pool2d and avg_pool2d."""
import numpy as np

from jaxconv import _pool, reference
from jaxconv._registry import (Bench, Case, Invalid, channels_first, channels_last, declare,
                               distinct)

# NCHW shapes; NHWC runs the same numbers transposed. Values 0.1 apart (``distinct``):
# no window holds a tie or near-tie, where max pool has no derivative.
GEOMETRIES = {
    "2x2-floor": dict(x=(2, 3, 7, 9), pool=2, stride=None),          # last row and column dropped
    "overlap-3s2": dict(x=(2, 2, 7, 8), pool=3, stride=2),           # windows share a row/column
    "asymmetric": dict(x=(2, 2, 5, 7), pool=(3, 2), stride=(1, 2)),  # overlap in H only
    "1x1-stride2-C1": dict(x=(2, 1, 5, 6), pool=1, stride=2),        # every other row skipped
    "7x7-overlap": dict(x=(1, 2, 7, 8), pool=7, stride=1),
    "2x3-stride(1,2)": dict(x=(2, 2, 5, 6), pool=(2, 3), stride=(1, 2)),
}


def case_name(layout, geometry):
    return f"{layout} {geometry}"


def _cases():
    out = []
    for k, (geometry, g) in enumerate(GEOMETRIES.items()):
        x = distinct(10 + k, *g["x"])
        for layout in ("NCHW", "NHWC"):
            xl = x if layout == "NCHW" else np.transpose(x, (0, 2, 3, 1))
            out.append(Case(case_name(layout, geometry), (xl,),
                            dict(pool=g["pool"], stride=g["stride"], layout=layout),
                            transforms=(geometry, layout) == ("overlap-3s2", "NCHW")))
    return out


def _torch_pool(name):
    def pool(torch, x, *, pool=2, stride=None, layout="NCHW"):
        fn = getattr(torch.nn.functional, name)
        return channels_last(fn(channels_first(x, layout), pool, stride), layout)
    return pool


def _bench(name):
    def cases(quick):
        n, c, hw = (8, 8, 16) if quick else (64, 32, 32)
        x = (np.random.default_rng(0).standard_normal((n, c, hw, hw)),)
        out = [Bench(f"{name} 2x2", x, dict(pool=2))]
        if name == "max_pool2d":
            out.append(Bench(f"{name} 3x3 s2", x, dict(pool=3, stride=2)))
        return out
    return cases


def _same_forward(name):
    primal = _pool._max_primal if name == "max_pool2d" else _pool._avg_primal

    def same(args, hyper):
        """The pool's forward (window slices and a max/mean) as plain jnp."""
        config = _pool.pool_config(name, args[0], **{"layout": "NCHW", "stride": None,
                                                     **hyper})[1]
        return lambda x: primal(config, x)
    return same


X = np.zeros((2, 3, 8, 8))
XS = r"x.shape=\(2, 3, 8, 8\)"


def _invalid(op):
    def cases():
        return [
            Invalid("rank-x", (X[0],), {}, ValueError,
                    rf"{op}: x must be 4-D, got x.shape=\(3, 8, 8\)"),
            Invalid("pool-0", (X,), dict(pool=0), ValueError, rf"{op}: pool must be >= 1, got 0"),
            Invalid("stride-0", (X,), dict(stride=(0, 1)), ValueError,
                    rf"{op}: stride must be >= 1, got \(0, 1\)"),
            Invalid("stride-negative", (X,), dict(stride=-1), ValueError,
                    rf"{op}: stride must be >= 1, got -1"),
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
            Invalid("layout", (X,), dict(layout="CHWN"), ValueError,
                    rf"{op}: layout must be one of"),
            Invalid("x-int", (X.astype(np.int32),), {}, TypeError,
                    rf"{op}: x must have a floating dtype, got int32 \(" + XS + r"\)"),
            Invalid("x-not-array", (None,), {}, TypeError, rf"{op}: x must be an array, got NoneType"),
        ]
    return cases


for _name in ("max_pool2d", "avg_pool2d"):
    declare(
        getattr(_pool, _name), getattr(reference, _name), grads=("x",),
        cases=_cases, bench=_bench(_name), invalid=_invalid(_name), torch=_torch_pool(_name),
        same_forward=_same_forward(_name),
    )
