"""Small helpers shared by the conv/pool tests: random data, layout transposes, one
jitted forward + VJP."""
import jax
import numpy as np


def on_cpu():
    """Compute an oracle (a twin's autodiff, numerical differences) on the CPU, on any
    machine: on a GPU, XLA takes some float64 twin derivatives at reduced precision
    (JAX's select_and_gather_add packs two float64s into 64 bits there) and cuDNN
    rejects some grouped 3-D transposed convolutions of a twin's second derivative."""
    return jax.default_device(jax.devices("cpu")[0])


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
