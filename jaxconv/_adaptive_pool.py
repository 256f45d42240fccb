"""Adaptive average and max pooling (``torch.nn.AdaptiveAvgPoolNd/MaxPoolNd``).

The output size is given; along a spatial dim of size ``I`` pooled to ``O``, window
``i`` covers rows ``[floor(i I / O), ceil((i + 1) I / O))``
(:func:`jaxconv._geometry.adaptive_windows`): windows differ in length by at most
one, neighbours may share a row, and ``O > I`` repeats rows.

A box window is the product of its per-dim windows, so each dim is handled on its
own: gathering dim ``a`` turns its axis into two, ``(O, L)`` (window, tap), with
``L`` the longest window; shorter windows repeat their last row in the missing
taps, which are masked out. Where ``O`` divides ``I`` the windows are contiguous
blocks and the gather is a reshape. Every backward is the adjoint of these
gathers: a scatter-add of each tap back to its row (a reshape for blocks).
"""
from __future__ import annotations

import dataclasses
import math

import jax.numpy as jnp
import numpy as np

from jaxconv import _geometry
from jaxconv._conv import FIXED_LAYOUTS, named
from jaxconv._geometry import Layout
from jaxconv._norm import accumulation_dtype
from jaxconv._pool import pool_input, winner_dtype
from jaxconv._vjp import custom_vjp_op


@dataclasses.dataclass(frozen=True)
class AdaptiveDim:
    """The windows of one spatial dim: ``starts``/``ends`` per output row."""
    size: int
    starts: tuple[int, ...]
    ends: tuple[int, ...]

    @property
    def out(self) -> int:
        return len(self.starts)

    @property
    def taps(self) -> int:
        return max(e - s for s, e in zip(self.starts, self.ends))

    @property
    def blocks(self) -> bool:
        """Contiguous windows of one length that tile the dim: a reshape."""
        return self.size == self.out * self.taps

    @property
    def lengths(self) -> np.ndarray:
        return np.subtract(self.ends, self.starts)

    def rows(self) -> np.ndarray:
        """``(O, L)``: the row each tap reads; missing taps repeat the last row."""
        taps = np.arange(self.taps)[None, :]
        return np.minimum(np.array(self.starts)[:, None] + taps, np.array(self.ends)[:, None] - 1)

    def present(self) -> np.ndarray:
        """``(O, L)`` bools: the taps that belong to the window."""
        return np.arange(self.taps)[None, :] < self.lengths[:, None]


@dataclasses.dataclass(frozen=True)
class AdaptiveConfig:
    layout: Layout
    dims: tuple[AdaptiveDim, ...]

    @property
    def is_global(self) -> bool:
        return all(d.out == 1 for d in self.dims)


def adaptive_config(op: str, x, out_size, *, layout, ndim: int | None):
    """Validate an adaptive pool's inputs (trace time): ``(x, AdaptiveConfig)``.

    ``out_size``: an int or one per spatial dim, each ``>= 1`` or ``None`` (keep
    that dim's size, as PyTorch)."""
    x, lay = pool_input(op, x, layout, ndim)
    sizes = lay.spatial(x.shape)
    items = tuple(out_size) if isinstance(out_size, (tuple, list)) else (out_size,) * lay.ndim
    if len(items) == lay.ndim:
        items = tuple(n if o is None else o for n, o in zip(sizes, items))
    outs = _geometry.per_dim(op, "out_size", items, lay.ndim, minimum=1,
                             context=f" (x.shape={tuple(x.shape)}, layout={lay.name!r})")
    _geometry.check_extent(op, "output", outs, x.shape[0] * x.shape[lay.channel_axis], "")
    dims = tuple(AdaptiveDim(n, *_geometry.adaptive_windows(n, o)) for n, o in zip(sizes, outs))
    return x, AdaptiveConfig(lay, dims)


# --- per-dim gathers and their adjoints ------------------------------------------------

def _gather(x, axis: int, dim: AdaptiveDim):
    """Axis ``axis`` (size I) of x becomes ``(O, L)``: window, tap."""
    split = x.shape[:axis] + (dim.out, dim.taps) + x.shape[axis + 1:]
    if dim.blocks:
        return x.reshape(split)
    return jnp.take(x, dim.rows().ravel(), axis=axis).reshape(split)


def _scatter(y, axis: int, dim: AdaptiveDim):
    """Adjoint of :func:`_gather`: axes ``(axis, axis + 1)`` = ``(O, L)`` add back into I."""
    merged = y.reshape(y.shape[:axis] + (dim.out * dim.taps,) + y.shape[axis + 2:])
    if dim.blocks:
        return merged
    out = jnp.zeros(y.shape[:axis] + (dim.size,) + y.shape[axis + 2:], y.dtype)
    return out.at[(slice(None),) * axis + (dim.rows().ravel(),)].add(merged)


def _along(axis: int, rank: int, array: np.ndarray, dtype=None) -> np.ndarray:
    """A ``(O, L)`` (or ``(O,)``) table placed on axes ``axis, ...`` of a rank-``rank`` array."""
    shape = [1] * rank
    shape[axis:axis + array.ndim] = array.shape
    return array.reshape(shape) if dtype is None else array.reshape(shape).astype(dtype)


# --- adaptive average pool ------------------------------------------------------------

def _avg_primal(c: AdaptiveConfig, x):
    acc = accumulation_dtype(x.dtype)
    axes = c.layout.spatial_axes
    y = x.astype(acc)
    if c.is_global:   # global average pooling: one mean, no windows
        return jnp.mean(y, axis=axes, keepdims=True).astype(x.dtype)
    for axis, dim in zip(axes, c.dims):
        if dim.out == dim.size:
            continue
        windows = _gather(y, axis, dim)
        if not dim.blocks:
            windows = jnp.where(_along(axis, windows.ndim, dim.present()), windows, 0)
        y = windows.sum(axis=axis + 1) / _along(axis, y.ndim, dim.lengths, acc)
    return y.astype(x.dtype)


def _avg_fwd(c: AdaptiveConfig, x):
    return _avg_primal(c, x), ()


def _avg_bwd(c: AdaptiveConfig, _, g):
    acc = accumulation_dtype(g.dtype)
    axes = c.layout.spatial_axes
    dx = g.astype(acc)
    if c.is_global:
        shape = list(g.shape)
        for axis, dim in zip(axes, c.dims):
            shape[axis] = dim.size
        return (jnp.broadcast_to(dx / math.prod(d.size for d in c.dims), shape),)
    for axis, dim in zip(axes, c.dims):
        if dim.out == dim.size:
            continue
        share = jnp.expand_dims(dx / _along(axis, dx.ndim, dim.lengths, acc), axis + 1)
        share = jnp.broadcast_to(share, dx.shape[:axis + 1] + (dim.taps,) + dx.shape[axis + 1:])
        if not dim.blocks:
            share = jnp.where(_along(axis, share.ndim, dim.present()), share, 0)
        dx = _scatter(share, axis, dim)
    return (dx,)


_adaptive_avg_pool = custom_vjp_op(_avg_primal, _avg_fwd, _avg_bwd)


# --- adaptive max pool ----------------------------------------------------------------

def first_max_last_nan(windows):
    """Index along the last axis of PyTorch's winner: the first maximum, or, in a
    window holding NaN, the last NaN (PyTorch's scan takes a value that is larger
    or NaN)."""
    nan = jnp.isnan(windows)
    last_nan = windows.shape[-1] - 1 - jnp.argmax(nan[..., ::-1], axis=-1)
    return jnp.where(nan.any(axis=-1), last_nan, jnp.argmax(windows, axis=-1))


def _tap_axes(c: AdaptiveConfig) -> tuple[list[int], list[int]]:
    """After gathering every spatial dim: the axes of the windows and of the taps."""
    axes = c.layout.spatial_axes
    return [a + i for i, a in enumerate(axes)], [a + i + 1 for i, a in enumerate(axes)]


def _max_windows(c: AdaptiveConfig, x):
    """``(..., L1 * ... * Ld)``: each output position's window, taps row-major, last."""
    y = x
    for axis, dim in reversed(list(zip(c.layout.spatial_axes, c.dims))):
        y = _gather(y, axis, dim)
    _, tap_axes = _tap_axes(c)
    y = jnp.moveaxis(y, tap_axes, range(y.ndim - len(tap_axes), y.ndim))
    return y.reshape(y.shape[:x.ndim] + (math.prod(d.taps for d in c.dims),))


def _max_fwd(c: AdaptiveConfig, x):
    windows = _max_windows(c, x)
    winner = first_max_last_nan(windows)
    out = jnp.take_along_axis(windows, winner[..., None], axis=-1)[..., 0]
    taps = math.prod(d.taps for d in c.dims)
    return out, winner.astype(winner_dtype(taps))


def _max_primal(c: AdaptiveConfig, x):
    return _max_fwd(c, x)[0]


def _max_bwd(c: AdaptiveConfig, winner, g):
    taps = tuple(d.taps for d in c.dims)
    onehot = winner[..., None] == jnp.arange(math.prod(taps), dtype=winner.dtype)
    routed = jnp.where(onehot, g[..., None], jnp.zeros((), g.dtype))
    routed = routed.reshape(g.shape + taps)
    _, tap_axes = _tap_axes(c)
    routed = jnp.moveaxis(routed, range(g.ndim, routed.ndim), tap_axes)
    for axis, dim in zip(c.layout.spatial_axes, c.dims):
        routed = _scatter(routed, axis, dim)
    return (routed,)


_adaptive_max_pool = custom_vjp_op(_max_primal, _max_fwd, _max_bwd)


# --- public ops -------------------------------------------------------------------------

def _adaptive(kind, op, ndim, x, out_size, layout):
    x, c = adaptive_config(op, x, out_size, layout=layout, ndim=ndim)
    return (_adaptive_avg_pool if kind == "avg" else _adaptive_max_pool)(c, x)


def adaptive_avg_pool(x, out_size, *, layout=None):
    """Adaptive average pooling to a given output size (``torch.nn.AdaptiveAvgPoolNd``).

    Args:
      x: ``(N, C, *spatial)``, or channels-last; layout as :func:`jaxconv.max_pool`.
      out_size: an int or one per spatial dim, each ``>= 1`` or ``None`` (keep
        that dim). ``out_size=1`` is global average pooling (computed as one mean).

    Returns:
      ``(N, C, *out_size)`` (or channels-last): output ``i`` is the mean of rows
      ``[floor(i I / O), ceil((i + 1) I / O))`` in every dim.

    Backward: every row of a window receives the window's share::

      dx[n, c, r] += g[n, c, i] / len(window i)   for every row r of window i

    Residuals: none. Half-precision inputs are averaged in float32.
    """
    return _adaptive("avg", "adaptive_avg_pool", None, x, out_size, layout)


def adaptive_max_pool(x, out_size, *, layout=None):
    """Adaptive max pooling to a given output size (``torch.nn.AdaptiveMaxPoolNd``).

    Args and windows as :func:`adaptive_avg_pool`.

    Backward: each window sends its gradient to its winner, chosen as PyTorch does
    (the first maximum in row-major window order; in a window holding NaN, the last
    NaN)::

      dx[n, c, r*] += g[n, c, i],  r* = the winning row of window i

    Residuals: the winner's offset in its window, one byte per output (``uint8``;
    ``int32`` for windows over 256 taps, e.g. global max pooling).
    """
    return _adaptive("max", "adaptive_max_pool", None, x, out_size, layout)


def fixed_adaptive(kind: str, ndim: int, default_layout: str, run, doc: str):
    """``adaptive_{kind}_pool{ndim}d``: ``run(kind, op, ndim, x, out_size, layout)`` with
    the rank fixed (the op here, the autodiff twin in ``_reference_pool``)."""
    name = f"adaptive_{kind}_pool{ndim}d"

    def op(x, out_size, *, layout=default_layout):
        return run(kind, name, ndim, x, out_size, layout)
    return named(op, name, doc.format(name=name, kind=kind, ndim=ndim, rank=ndim + 2,
                                      layouts=_geometry.LAYOUTS[ndim], layout=default_layout))


_DOC = ("{ndim}-D :func:`adaptive_{kind}_pool`: x must be {rank}-D, layout one of {layouts} "
        "(default {layout!r}).")
adaptive_avg_pool1d, adaptive_avg_pool2d, adaptive_avg_pool3d = (
    fixed_adaptive("avg", n, layout, _adaptive, _DOC) for n, layout in FIXED_LAYOUTS)
adaptive_max_pool1d, adaptive_max_pool2d, adaptive_max_pool3d = (
    fixed_adaptive("max", n, layout, _adaptive, _DOC) for n, layout in FIXED_LAYOUTS)
