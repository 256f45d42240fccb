"""Registry declarations of the dense ops (``_dense.py``): affine and relu."""
import numpy as np

from jaxconv import _dense, reference
from jaxconv._registry import Bench, Case, Invalid, away_from_zero, declare, normal

_X = np.ones((4, 3))


def _affine_cases():
    return [
        Case("x (3, 2, 2)", (normal(1, 3, 2, 2), normal(2, 4, 5), normal(3, 5))),
        Case("x (4, 6)", (normal(4, 4, 6), normal(5, 6, 5), normal(6, 5)), transforms=False),
        Case("x (3, 2, 2, 2)", (normal(7, 3, 2, 2, 2), normal(8, 8, 5), normal(9, 5)),
             transforms=False),
    ]


def _affine_bench(quick):
    n, d, m = (8, 256, 32) if quick else (64, 8192, 100)
    return [Bench(f"affine ({n}, {d}) @ ({d}, {m})", (normal(1, n, d), normal(2, d, m),
                                                      normal(3, m)))]


def _affine_invalid():
    return [
        Invalid("x-1d", (np.ones(6), np.ones((6, 2)), np.ones(2)), {}, ValueError,
                r"affine: x must be \(N, d1, \.\.\., dk\).*x\.shape=\(6,\)"),
        Invalid("features", (np.ones((2, 3, 2)), np.ones((5, 2)), np.ones(2)), {}, ValueError,
                r"affine: x has 6 features.*w expects 5.*w\.shape=\(5, 2\)"),
        Invalid("w-rank", (_X, np.ones((3, 2, 1)), np.ones(2)), {}, ValueError,
                r"affine: w must be 2-D, got w\.shape=\(3, 2, 1\)"),
        Invalid("bias", (_X, np.ones((3, 2)), np.ones(3)), {}, ValueError,
                r"affine: b must have shape \(2,\).*b\.shape=\(3,\)"),
        Invalid("dtypes", (_X.astype(np.float32), np.ones((3, 2)), np.ones(2)), {}, TypeError,
                r"affine: operands must share one dtype.*x\.dtype=float32"),
    ]


declare(
    _dense.affine, reference.affine, grads=("x", "w", "b"),
    cases=_affine_cases, bench=_affine_bench, invalid=_affine_invalid,
    torch=lambda torch, x, w, b: torch.nn.functional.linear(x.flatten(1), w.T, b),
)


def _relu_bench(quick):
    shape = (8, 8, 16, 16) if quick else (64, 32, 32, 32)
    return [Bench(f"relu {shape}", (normal(1, *shape),))]


declare(
    _dense.relu, reference.relu, grads=("x",),
    cases=lambda: [Case("x (3, 4)", (away_from_zero(1, 3, 4),))],
    bench=_relu_bench,
    invalid=lambda: [
        Invalid("int", (np.arange(3),), {}, TypeError, r"relu: x must have a floating dtype"),
        Invalid("not-array", ("x",), {}, TypeError, r"relu: x must be an array"),
    ],
    torch=lambda torch, x: torch.relu(x),
)
