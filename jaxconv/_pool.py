"""Max and average pooling with hand-derived backwards.

Windows of size ``pool = (PH, PW)`` slide with ``stride`` (default: the pool
size) over x ``(N, C, H, W)`` (or NHWC), without padding; ``Ho = (H - PH) // sh + 1``
and rows past the last window get zero gradient. Windows may overlap
(``stride < pool``), in which case gradients from different windows add up.
"""
from __future__ import annotations

import dataclasses

import jax.numpy as jnp

from jaxconv import _checks, _geometry
from jaxconv._geometry import Layout, Window
from jaxconv._patches import place_windows, window_slices
from jaxconv._vjp import custom_vjp_op


@dataclasses.dataclass(frozen=True)
class PoolConfig:
    layout: Layout
    window: Window

    @property
    def pool(self) -> tuple[int, ...]:
        return self.window.kernel

    @property
    def stride(self) -> tuple[int, ...]:
        return self.window.stride

    @property
    def size(self) -> int:
        return self.window.taps


def pool_config(op, x, *, pool, stride, layout):
    """Validate a pool's inputs (trace time) and build its static config."""
    layout = _checks.choice(op, "layout", layout, _geometry.LAYOUTS[2])
    x = _checks.array(op, "x", x, ndim=4)
    lay = _geometry.Layout(layout)
    window = _geometry.window(op, in_size=lay.spatial(x.shape), kernel=pool,
                              stride=pool if stride is None else stride, kernel_name="pool",
                              shapes=f"x.shape={tuple(x.shape)}, layout={layout!r}",
                              outer=x.shape[0] * x.shape[lay.channel_axis])
    return x, PoolConfig(lay, window)


def _windows(c: PoolConfig, x):
    """``(PH*PW, N, C, Ho, Wo)``: the window elements, row-major, on a new lead axis."""
    return jnp.stack(list(window_slices(x, c.window, c.layout)))


def _place(c: PoolConfig, pieces):
    return place_windows(pieces, c.window, c.layout)


# --- max pool -----------------------------------------------------------------

def _argmax_dtype(size: int):
    return jnp.uint8 if size <= 256 else jnp.int32


def _max_primal(c: PoolConfig, x):
    return _windows(c, x).max(axis=0)


def _max_fwd(c: PoolConfig, x):
    windows = _windows(c, x)
    # argmax returns the FIRST maximum: the tie rule of XLA, PyTorch and numpy.
    winner = jnp.argmax(windows, axis=0)
    out = jnp.take_along_axis(windows, winner[None], axis=0)[0]
    return out, winner.astype(_argmax_dtype(c.size))


def _max_bwd(c: PoolConfig, winner, g):
    zero = jnp.zeros((), g.dtype)
    pieces = (jnp.where(winner == k, g, zero) for k in range(c.size))
    return (_place(c, pieces),)


_max_pool = custom_vjp_op(_max_primal, _max_fwd, _max_bwd)


def max_pool2d(x, *, pool=2, stride=None, layout="NCHW"):
    """Max pooling with a hand-derived backward.

    Args:
      x: ``(N, C, H, W)``, or ``(N, H, W, C)`` with ``layout="NHWC"``.
      pool: window size, int or ``(h, w)`` pair.
      stride: int or pair; defaults to ``pool``. Smaller than ``pool`` overlaps.

    Returns:
      ``(N, C, Ho, Wo)`` (or NHWC), ``Ho = (H - pool_h) // stride_h + 1``.

    Backward: each window sends its upstream gradient to its maximum, the FIRST
    one in row-major window order on ties (as XLA, PyTorch and ``np.argmax``)::

      dx[n, c, sh y + i*, sw x + j*] += g[n, c, y, x],  (i*, j*) = argmax of the window

    Residuals: the winner's offset in its window, one byte per output element
    (``uint8``; ``int32`` for windows over 256), instead of x and the output.
    """
    x, config = pool_config("max_pool2d", x, pool=pool, stride=stride, layout=layout)
    return _max_pool(config, x)


# --- average pool ---------------------------------------------------------------

def _avg_primal(c: PoolConfig, x):
    return sum(window_slices(x, c.window, c.layout)) / c.size


def _avg_fwd(c: PoolConfig, x):
    return _avg_primal(c, x), ()


def _avg_bwd(c: PoolConfig, _, g):
    share = g / c.size
    return (_place(c, (share for _ in range(c.size))),)


_avg_pool = custom_vjp_op(_avg_primal, _avg_fwd, _avg_bwd)


def avg_pool2d(x, *, pool=2, stride=None, layout="NCHW"):
    """Average pooling with a hand-derived backward.

    Args and output size as :func:`max_pool2d`.

    Backward: every element of a window receives an equal share::

      dx[n, c, sh y + i, sw x + j] += g[n, c, y, x] / (PH * PW)   for all i < PH, j < PW

    Residuals: none (the backward needs only the static shapes).
    """
    x, config = pool_config("avg_pool2d", x, pool=pool, stride=stride, layout=layout)
    return _avg_pool(config, x)
