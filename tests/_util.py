"""Small helpers shared by the conv/pool tests: random data, layout transposes, one
jitted forward + VJP."""
import jax
import numpy as np


def randn(seed, *shape):
    return np.random.default_rng(seed).standard_normal(shape)


def to_nhwc(a):
    """NCHW image (or output) -> NHWC."""
    return np.transpose(np.asarray(a), (0, 2, 3, 1))


def to_nchw(a):
    return np.transpose(np.asarray(a), (0, 3, 1, 2))


def to_hwio(w):
    """Conv weights (F, C, KH, KW) -> (KH, KW, C, F)."""
    return np.transpose(np.asarray(w), (2, 3, 1, 0))


def to_oihw(w):
    return np.transpose(np.asarray(w), (3, 2, 0, 1))


def forward_and_vjp(f, args, g):
    """``(f(*args), vjp of g)`` in one jitted call; ``None`` args get ``None``."""
    def run(*a):
        out, pull = jax.vjp(f, *a)
        return out, pull(g)
    return jax.jit(run)(*args)
