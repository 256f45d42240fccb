"""Registry declarations of dropout (``_dropout.py``)."""
import jax
import numpy as np

from jaxconv import _dropout, reference
from jaxconv._registry import Bench, Case, Invalid, declare, legacy_key, normal

_X = np.ones((4, 3))


def _invalid():
    key = jax.random.key(0)
    return [
        Invalid("keep-0", (_X, key), dict(keep_prob=0.0), ValueError,
                r"dropout: keep_prob must be in \(0\.0, 1\.0\], got 0\.0"),
        Invalid("keep-negative", (_X, key), dict(keep_prob=-0.5), ValueError,
                r"dropout: keep_prob must be in"),
        Invalid("keep-above-1", (_X, key), dict(keep_prob=1.5), ValueError,
                r"dropout: keep_prob must be in \(0\.0, 1\.0\], got 1\.5"),
        Invalid("keep-eval-too", (_X, key), dict(keep_prob=2.0, train=False), ValueError,
                r"dropout: keep_prob"),
        Invalid("keep-string", (_X, key), dict(keep_prob="0.5"), TypeError,
                r"dropout: keep_prob must be a Python float"),
        Invalid("key-float", (_X, np.ones(2)), dict(keep_prob=0.5), TypeError,
                r"dropout: key must be a typed key.*key\.dtype=float64"),
        Invalid("key-batch", (_X, jax.random.split(key, 2)), dict(keep_prob=0.5), ValueError,
                r"dropout: key must be a single key, got key\.shape=\(2,\)"),
        Invalid("train", (_X, key), dict(keep_prob=0.5, train=1), TypeError,
                r"dropout: train must be a Python bool"),
    ]


def _bench(quick):
    shape = (8, 256) if quick else (64, 4096)
    return [Bench(f"dropout keep 0.5 {shape}", (normal(1, *shape), legacy_key(0)),
                  dict(keep_prob=0.5))]


declare(
    _dropout.dropout, reference.dropout, grads=("x",),
    cases=lambda: [
        Case("keep_prob 0.7, typed key", (normal(1, 3, 5), jax.random.key(3)),
             dict(keep_prob=0.7)),
        Case("keep_prob 0.4, legacy key", (normal(2, 4, 6), legacy_key(7)),
             dict(keep_prob=0.4), transforms=False),
    ],
    bench=_bench, invalid=_invalid,
    torch_reason="PyTorch draws its masks from its own generator: no mask to compare; the "
                 "mask is checked against jax.random directly (tests/test_dropout.py)",
)
