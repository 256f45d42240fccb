"""Autodiff twins: every op of ``jaxconv`` with the same signature, the same
validation and the same forward semantics, but no custom rule. ``jax.grad`` of
these is what the hand-derived backwards are proven against; they are also the
ops to use for forward-mode differentiation (``jax.jvp``, ``jax.jacfwd``), which
JAX does not support through a ``custom_vjp``.

Each twin is written the most direct way XLA offers, independent of the custom
op's own formulation, so that agreement means something.
"""
from __future__ import annotations

import jax.numpy as jnp
from jax import lax

from jaxconv import _checks
from jaxconv._conv import conv_config
from jaxconv._pool import pool_config


def conv2d(x, w, b=None, *, stride=1, pad=0, layout="NCHW", impl="xla"):
    """Twin of :func:`jaxconv.conv2d` (``impl`` is validated, then ignored)."""
    x, w, b, c = conv_config(x, w, b, stride=stride, pad=pad, layout=layout, impl=impl)
    dims = ("NCHW", "OIHW", "NCHW") if layout == "NCHW" else ("NHWC", "HWIO", "NHWC")
    out = lax.conv_general_dilated(x, w, c.stride, [(p, p) for p in c.pad],
                                   dimension_numbers=dims)
    if b is None:
        return out
    return out + (b[:, None, None] if layout == "NCHW" else b)


def _reduce_window(x, c, init, reducer):
    window = [1, 1, 1, 1]
    strides = [1, 1, 1, 1]
    for axis, k, s in zip(_checks.spatial_axes(c.layout), c.pool, c.stride):
        window[axis], strides[axis] = k, s
    return lax.reduce_window(x, init, reducer, window, strides, "VALID")


def max_pool2d(x, *, pool=2, stride=None, layout="NCHW"):
    """Twin of :func:`jaxconv.max_pool2d` on ``lax.reduce_window``, whose gradient
    (``select_and_scatter``) has the same first-maximum tie rule."""
    x, c = pool_config("max_pool2d", x, pool=pool, stride=stride, layout=layout)
    return _reduce_window(x, c, jnp.array(-jnp.inf, x.dtype), lax.max)


def avg_pool2d(x, *, pool=2, stride=None, layout="NCHW"):
    """Twin of :func:`jaxconv.avg_pool2d`."""
    x, c = pool_config("avg_pool2d", x, pool=pool, stride=stride, layout=layout)
    return _reduce_window(x, c, jnp.array(0, x.dtype), lax.add) / c.size
