"""Adaptive max pooling by gathering each dim's windows: :mod:`jaxconv._adaptive_pool`'s
form for block windows (global pooling, 56 -> 7) and for more windows than it slices
one by one (each sliced window is unrolled into the program).

Gathering dim ``a`` turns its axis (size ``I``) into two, ``(O, L)`` (window, tap), with
``L`` the longest window: a reshape where the windows are blocks that tile the dim, else
a ``jnp.take`` of static rows in which shorter windows repeat their last row (a repeated
row cannot change a maximum, and what it receives goes back to that same row). The
winner is PyTorch's, by argmax over the flattened taps. The backward routes ``g`` to the
winner's tap (a one-hot) and adds every tap back to its row (a reshape, or a
scatter-add): the adjoint of the gathers.
"""
from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np


def _rows(dim) -> np.ndarray:
    """``(O, L)``: the row each tap reads; missing taps repeat the window's last row."""
    taps = np.arange(dim.taps)[None, :]
    return np.minimum(np.array(dim.starts)[:, None] + taps, np.array(dim.ends)[:, None] - 1)


def gather(x, axis: int, dim):
    """Axis ``axis`` (size I) of x becomes ``(O, L)``: window, tap."""
    split = x.shape[:axis] + (dim.out, dim.taps) + x.shape[axis + 1:]
    if dim.blocks:
        return x.reshape(split)
    return jnp.take(x, _rows(dim).ravel(), axis=axis).reshape(split)


def scatter(y, axis: int, dim):
    """Adjoint of :func:`gather`: axes ``(axis, axis + 1)`` = ``(O, L)`` add back into I."""
    merged = y.reshape(y.shape[:axis] + (dim.out * dim.taps,) + y.shape[axis + 2:])
    if dim.blocks:
        return merged
    out = jnp.zeros(y.shape[:axis] + (dim.size,) + y.shape[axis + 2:], y.dtype)
    return out.at[(slice(None),) * axis + (_rows(dim).ravel(),)].add(merged)


def first_max_last_nan(windows):
    """Index along the last axis of PyTorch's winner: the first maximum, or, in a window
    holding NaN, the last NaN (PyTorch's scan takes a value that is larger or NaN)."""
    nan = jnp.isnan(windows)
    last_nan = windows.shape[-1] - 1 - jnp.argmax(nan[..., ::-1], axis=-1)
    return jnp.where(nan.any(axis=-1), last_nan, jnp.argmax(windows, axis=-1))


def _tap_axes(c) -> list[int]:
    """After gathering every spatial dim: the axes of the taps."""
    return [a + i + 1 for i, a in enumerate(c.layout.spatial_axes)]


def max_fwd(c, x):
    """``(maxima, winners)``: each window's maximum and its winner's row-major offset on
    the grid of the longest taps."""
    y = x
    for axis, dim in reversed(list(zip(c.layout.spatial_axes, c.dims))):
        y = gather(y, axis, dim)
    y = jnp.moveaxis(y, _tap_axes(c), range(y.ndim - x.ndim + 2, y.ndim))
    windows = y.reshape(y.shape[:x.ndim] + (math.prod(d.taps for d in c.dims),))
    winner = first_max_last_nan(windows)
    return jnp.take_along_axis(windows, winner[..., None], axis=-1)[..., 0], winner


def max_bwd(c, winner, g):
    """``dx``: ``g`` at each window's winner, every tap added back to its row."""
    taps = tuple(d.taps for d in c.dims)
    onehot = winner[..., None] == jnp.arange(math.prod(taps), dtype=winner.dtype)
    routed = jnp.where(onehot, g[..., None], jnp.zeros((), g.dtype)).reshape(g.shape + taps)
    routed = jnp.moveaxis(routed, range(g.ndim, routed.ndim), _tap_axes(c))
    for axis, dim in zip(c.layout.spatial_axes, c.dims):
        routed = scatter(routed, axis, dim)
    return routed


def _along(axis: int, rank: int, table: np.ndarray) -> np.ndarray:
    """A ``(O, L)`` (or ``(O,)``) table placed on axes ``axis, ...`` of a rank-``rank`` array."""
    shape = [1] * rank
    shape[axis:axis + table.ndim] = table.shape
    return table.reshape(shape)


def _lengths(dim) -> np.ndarray:
    return np.subtract(dim.ends, dim.starts)


def mean(c, y):
    """Adaptive average of ``y`` (accumulation dtype): each pooled dim gathered, the
    missing taps of shorter windows zeroed, the taps summed and divided by the length."""
    for axis, dim in zip(c.layout.spatial_axes, c.dims):
        if dim.out != dim.size:
            windows = gather(y, axis, dim)
            if not dim.blocks:
                present = np.arange(dim.taps) < _lengths(dim)[:, None]
                windows = jnp.where(_along(axis, windows.ndim, present), windows, 0)
            y = windows.sum(axis=axis + 1) / _along(axis, y.ndim, _lengths(dim)).astype(y.dtype)
    return y


def mean_share(c, g):
    """Adjoint of :func:`mean`: each window's ``g / length`` on every tap, added back."""
    for axis, dim in zip(c.layout.spatial_axes, c.dims):
        if dim.out != dim.size:
            share = g / _along(axis, g.ndim, _lengths(dim)).astype(g.dtype)
            share = jnp.expand_dims(share, axis + 1)
            share = jnp.broadcast_to(share, g.shape[:axis + 1] + (dim.taps,) + g.shape[axis + 1:])
            if not dim.blocks:
                present = np.arange(dim.taps) < _lengths(dim)[:, None]
                share = jnp.where(_along(axis, share.ndim, present), share, 0)
            g = scatter(share, axis, dim)
    return g
