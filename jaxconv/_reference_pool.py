"""Autodiff twins of the pooling family (re-exported by :mod:`jaxconv.reference`).

They pool with ``lax.reduce_window``, whose gradient (``select_and_scatter``) sends a
max window's gradient to its first maximum, as the custom ops do on ties; the
adaptive twins slice every window and reduce it. Same signatures, validation and
forward semantics as the custom ops, no custom rule.
"""
from __future__ import annotations

import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxconv._adaptive_pool import adaptive_config, fixed_adaptive
from jaxconv._conv import FIXED_LAYOUTS
from jaxconv._norm import accumulation_dtype
from jaxconv._pool import pool_config


def _reduce(x, c, init, reducer, window, stride, pads):
    dims, strides, padding = [1] * x.ndim, [1] * x.ndim, [(0, 0)] * x.ndim
    for axis, k, s, p in zip(c.layout.spatial_axes, window, stride, pads):
        dims[axis], strides[axis], padding[axis] = k, s, p
    return lax.reduce_window(x, np.array(init, x.dtype), reducer, dims, strides, padding)


def _to_reach(w):
    """Pads that make the padded input end where the last window does or later:
    ``(lo, hi)`` plus the ceil_mode overhang."""
    return [(lo, hi + max(0, -r)) for (lo, hi), r in zip(w.pad, w.remainder)]


def _max(op, ndim, x, pool, stride, pad, dilation, ceil_mode, layout):
    x, c = pool_config(op, x, pool=pool, stride=stride, pad=pad, dilation=dilation,
                       ceil_mode=ceil_mode, layout=layout, ndim=ndim)
    w = c.window
    if set(w.dilation) == {1}:
        return _reduce(x, c, -np.inf, lax.max, w.kernel, w.stride, _to_reach(w))
    # JAX has no VJP of a window-dilated reduce_window max: gather every window's taps
    # into contiguous blocks of K rows (jnp.take), then pool the blocks.
    config = [(0, 0)] * x.ndim
    for axis, p in zip(c.layout.spatial_axes, _to_reach(w)):
        config[axis] = p
    xp = jnp.pad(x, config, constant_values=-np.inf)
    for axis, o, k, s, d in zip(c.layout.spatial_axes, w.out_size, w.kernel, w.stride,
                                w.dilation):
        rows = np.arange(o)[:, None] * s + np.arange(k)[None, :] * d
        xp = jnp.take(xp, rows.ravel(), axis=axis)
    return _reduce(xp, c, -np.inf, lax.max, w.kernel, w.kernel, [(0, 0)] * w.ndim)


def max_pool(x, *, pool, stride=None, pad=0, dilation=1, ceil_mode=False, layout=None):
    """Twin of :func:`jaxconv.max_pool`."""
    return _max("max_pool", None, x, pool, stride, pad, dilation, ceil_mode, layout)


def max_pool1d(x, *, pool, stride=None, pad=0, dilation=1, ceil_mode=False, layout="NCW"):
    """Twin of :func:`jaxconv.max_pool1d`."""
    return _max("max_pool1d", 1, x, pool, stride, pad, dilation, ceil_mode, layout)


def max_pool2d(x, *, pool=2, stride=None, pad=0, dilation=1, ceil_mode=False, layout="NCHW"):
    """Twin of :func:`jaxconv.max_pool2d`."""
    return _max("max_pool2d", 2, x, pool, stride, pad, dilation, ceil_mode, layout)


def max_pool3d(x, *, pool, stride=None, pad=0, dilation=1, ceil_mode=False, layout="NCDHW"):
    """Twin of :func:`jaxconv.max_pool3d`."""
    return _max("max_pool3d", 3, x, pool, stride, pad, dilation, ceil_mode, layout)


def _avg(op, ndim, x, pool, stride, pad, ceil_mode, count_include_pad, divisor_override,
         layout):
    x, c = pool_config(op, x, pool=pool, stride=stride, pad=pad, ceil_mode=ceil_mode,
                       layout=layout, ndim=ndim, count_include_pad=count_include_pad,
                       divisor_override=divisor_override)
    w, acc = c.window, accumulation_dtype(x.dtype)
    total = _reduce(x.astype(acc), c, 0, lax.add, w.kernel, w.stride, _to_reach(w))
    if c.divisor_override is not None:
        return (total / c.divisor_override).astype(x.dtype)
    # the divisor: the same sums over ones that stand for the counted taps, the input
    # alone, or with count_include_pad the padded input (the overhang never counts)
    ones_shape = [1] * x.ndim
    for axis, n, (lo, hi) in zip(c.layout.spatial_axes, w.in_size, w.pad):
        ones_shape[axis] = lo + n + hi if c.count_include_pad else n
    pads = [(0, max(0, -r)) if c.count_include_pad else (lo, hi + max(0, -r))
            for (lo, hi), r in zip(w.pad, w.remainder)]
    count = _reduce(jnp.ones(ones_shape, acc), c, 0, lax.add, w.kernel, w.stride, pads)
    return (total / count).astype(x.dtype)


def avg_pool(x, *, pool, stride=None, pad=0, ceil_mode=False, count_include_pad=True,
             divisor_override=None, layout=None):
    """Twin of :func:`jaxconv.avg_pool`."""
    return _avg("avg_pool", None, x, pool, stride, pad, ceil_mode, count_include_pad,
                divisor_override, layout)


def avg_pool1d(x, *, pool, stride=None, pad=0, ceil_mode=False, count_include_pad=True,
               divisor_override=None, layout="NCW"):
    """Twin of :func:`jaxconv.avg_pool1d`."""
    return _avg("avg_pool1d", 1, x, pool, stride, pad, ceil_mode, count_include_pad,
                divisor_override, layout)


def avg_pool2d(x, *, pool=2, stride=None, pad=0, ceil_mode=False, count_include_pad=True,
               divisor_override=None, layout="NCHW"):
    """Twin of :func:`jaxconv.avg_pool2d`."""
    return _avg("avg_pool2d", 2, x, pool, stride, pad, ceil_mode, count_include_pad,
                divisor_override, layout)


def avg_pool3d(x, *, pool, stride=None, pad=0, ceil_mode=False, count_include_pad=True,
               divisor_override=None, layout="NCDHW"):
    """Twin of :func:`jaxconv.avg_pool3d`."""
    return _avg("avg_pool3d", 3, x, pool, stride, pad, ceil_mode, count_include_pad,
                divisor_override, layout)


def _adaptive(kind, op, ndim, x, out_size, layout):
    """One window at a time, one dim at a time (innermost first, so that a max's
    ties go to the first maximum in row-major order): slice, reduce, concatenate."""
    x, c = adaptive_config(op, x, out_size, layout=layout, ndim=ndim)
    y = x.astype(accumulation_dtype(x.dtype)) if kind == "avg" else x
    for axis, dim in reversed(list(zip(c.layout.spatial_axes, c.dims))):
        pieces = []
        for start, end in zip(dim.starts, dim.ends):
            piece = lax.slice_in_dim(y, start, end, axis=axis)
            if kind == "avg":
                pieces.append(jnp.mean(piece, axis=axis, keepdims=True))
            else:
                dims = [1] * y.ndim
                dims[axis] = end - start
                pieces.append(lax.reduce_window(piece, np.array(-np.inf, y.dtype), lax.max,
                                                dims, [1] * y.ndim, "VALID"))
        y = jnp.concatenate(pieces, axis=axis)
    return y.astype(x.dtype)


def adaptive_avg_pool(x, out_size, *, layout=None):
    """Twin of :func:`jaxconv.adaptive_avg_pool`."""
    return _adaptive("avg", "adaptive_avg_pool", None, x, out_size, layout)


def adaptive_max_pool(x, out_size, *, layout=None):
    """Twin of :func:`jaxconv.adaptive_max_pool`."""
    return _adaptive("max", "adaptive_max_pool", None, x, out_size, layout)


_TWIN_DOC = "Twin of :func:`jaxconv.{name}`."
adaptive_avg_pool1d, adaptive_avg_pool2d, adaptive_avg_pool3d = (
    fixed_adaptive("avg", n, layout, _adaptive, _TWIN_DOC) for n, layout in FIXED_LAYOUTS)
adaptive_max_pool1d, adaptive_max_pool2d, adaptive_max_pool3d = (
    fixed_adaptive("max", n, layout, _adaptive, _TWIN_DOC) for n, layout in FIXED_LAYOUTS)
