"""Adaptive average and max pooling (``torch.nn.AdaptiveAvgPoolNd/MaxPoolNd``).

The output size is given; along a spatial dim of size ``I`` pooled to ``O``, window
``i`` covers rows ``[floor(i I / O), ceil((i + 1) I / O))``
(:func:`jaxconv._geometry.adaptive_windows`): windows differ in length by at most
one, neighbours may share a row, and ``O > I`` repeats rows.

A box window is the product of its per-dim windows. Where ``O`` divides ``I`` in every
dim, a reshape turns each axis into ``(O, L)`` (window, tap) and the pool reduces the
taps (max pooling with many windows gathers them: :mod:`jaxconv._adaptive_gather`).
Otherwise (the formulations XLA:CPU runs fastest, measured against the twins'):

- average, one pooled trailing dim or global: ``y = x A`` with ``A`` the ``(I, O)``
  averaging matrix (``A[r, i] = 1 / len(window i)`` for the rows ``r`` of window
  ``i``), whose backward is ``dx = g A^T``; else each window's sum of static slices,
  whose backward gives the rows between two window boundaries their windows' shares;
- max: one dim at a time, innermost first, each window a static slice reduced
  along its axis (its maximum and the offset of its winner, carrying the inner
  dims' offsets of the winning row along); the backward writes each window's
  gradient at its winner (a compare with the offset) and pads it into place.
"""

from __future__ import annotations

import dataclasses
import itertools
import math

import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxconv import _adaptive_gather, _geometry
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


@dataclasses.dataclass(frozen=True)
class AdaptiveConfig:
    layout: Layout
    dims: tuple[AdaptiveDim, ...]



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


def _blocks(c: AdaptiveConfig) -> bool:   # (out == size and out == 1 are blocks too)
    return all(d.blocks for d in c.dims)


def _x_shape(c: AdaptiveConfig, g) -> list[int]:   # x's shape from g's (vmap-safe)
    shape = list(g.shape)
    for axis, dim in zip(c.layout.spatial_axes, c.dims):
        shape[axis] = dim.size
    return shape


# --- adaptive average pool ------------------------------------------------------------

# Each sliced window is unrolled into the program (forward and backward): past this many
# windows (e.g. 100 x 100 -> 33 x 33: 25x slower, 27 s to compile) the gathers win.
_MAX_SLICED = 64


def _averaging_matrix(dim: AdaptiveDim) -> np.ndarray:
    """``(I, O)``: ``1 / len(window i)`` on the rows of window ``i``, zero elsewhere."""
    rows = np.arange(dim.size)[:, None]
    inside = (rows >= np.array(dim.starts)) & (rows < np.array(dim.ends))
    return inside / np.subtract(dim.ends, dim.starts)


def _avg_plan(c: AdaptiveConfig) -> tuple[tuple[int, ...], np.ndarray] | None:
    """The averaging as one contraction ``(axes, A)``, ``A`` shaped ``(*I_axes, *O_axes)``,
    where that is the fastest form on XLA:CPU: one pooled dim, or global pooling (a
    column of ``1 / I``), on the trailing axes (a plain matrix product, no transposes).
    ``None``: windowed sums or gathers (several pooled dims: a Kronecker matrix lost)."""
    pooled = [(a, d) for a, d in zip(c.layout.spatial_axes, c.dims) if d.out != d.size]
    trailing = [a for a, _ in pooled] == list(range(len(c.dims) + 2 - len(pooled), len(c.dims) + 2))
    ins, outs = math.prod(d.size for _, d in pooled), math.prod(d.out for _, d in pooled)
    small = outs <= _MAX_SLICED and ins * outs <= 1 << 20   # (A is a constant)
    if trailing and small and (len(pooled) == 1 or all(d.out == 1 for _, d in pooled)):
        kron = np.ones((1, 1))
        for _, d in pooled:
            kron = np.kron(kron, _averaging_matrix(d))
        shape = tuple(d.size for _, d in pooled) + tuple(d.out for _, d in pooled)
        return tuple(a for a, _ in pooled), kron.reshape(shape)
    return None


def _contract(y, axes: tuple[int, ...], matrix: np.ndarray):
    """``y`` with its ``axes`` mapped through ``matrix`` (``(*in, *out)``), in place."""
    k = len(axes)
    out = lax.dot_general(y, jnp.asarray(matrix, y.dtype), ((axes, tuple(range(k))), ((), ())),
                          precision=lax.Precision.HIGHEST, preferred_element_type=y.dtype)
    return jnp.moveaxis(out, tuple(range(out.ndim - k, out.ndim)), axes)


def _windowed_mean(c: AdaptiveConfig, y):
    """Each window's own sum (static slices) over its length: what ``y A`` computes,
    without spreading a non-finite value to windows that do not hold it (``0 * inf``)."""
    for axis, dim in reversed(list(zip(c.layout.spatial_axes, c.dims))):
        if dim.out != dim.size:
            y = jnp.concatenate([lax.slice_in_dim(y, s, e, axis=axis).sum(axis, keepdims=True)
                                 / (e - s) for s, e in zip(dim.starts, dim.ends)], axis=axis)
    return y


def _windowed_share(c: AdaptiveConfig, g):
    """Adjoint of :func:`_windowed_mean`: along each pooled dim, the rows between two
    window boundaries get the shares of the windows that hold them (one concatenation,
    which beat padding each window's share into place and adding)."""
    for axis, dim in zip(c.layout.spatial_axes, c.dims):
        if dim.out != dim.size:
            windows, parts = list(zip(dim.starts, dim.ends)), []
            cuts = sorted({*dim.starts, *dim.ends})
            for lo, hi in zip(cuts[:-1], cuts[1:]):   # rows lo..hi-1 lie in the same windows
                share = sum(lax.slice_in_dim(g, i, i + 1, axis=axis) / (e - s)
                            for i, (s, e) in enumerate(windows) if s <= lo and hi <= e)
                parts.append(jnp.repeat(share, hi - lo, axis))
            g = jnp.concatenate(parts, axis=axis)
    return g


def _through(c: AdaptiveConfig, y, axes, matrix, exact):
    """``y`` through the contraction. Where the matrix has zeros, ``0 * inf`` would
    spread a non-finite value of ``y`` over its whole row of the result: then the exact
    windowed form ``exact(c, y)`` runs instead. The test reads the smaller of ``y`` and
    the result; a full-size result is computed in the branch (not copied out of it)."""
    if np.all(matrix != 0):
        return _contract(y, axes, matrix)
    k = len(axes)
    if matrix[(0,) * k].size >= matrix[(...,) + (0,) * k].size:   # a full-size result
        return lax.cond(jnp.isfinite(y).all(), lambda: _contract(y, axes, matrix),
                        lambda: exact(c, y))
    out = _contract(y, axes, matrix)
    return lax.cond(jnp.isfinite(out).all(), lambda: out, lambda: exact(c, y))


def _avg_primal(c: AdaptiveConfig, x):
    y, plan = x.astype(accumulation_dtype(x.dtype)), _avg_plan(c)
    if plan is not None:
        return _through(c, y, *plan, _windowed_mean).astype(x.dtype)
    return (_windowed_mean(c, y) if _sliced(c) else _adaptive_gather.mean(c, y)).astype(x.dtype)


def _avg_fwd(c: AdaptiveConfig, x):
    return _avg_primal(c, x), ()


def _avg_bwd(c: AdaptiveConfig, _, g):
    dx, plan = g.astype(accumulation_dtype(g.dtype)), _avg_plan(c)
    if plan is None:
        return ((_windowed_share if _sliced(c) else _adaptive_gather.mean_share)(c, dx),)
    axes, matrix = plan
    if matrix.shape[len(axes):] == (1,) * len(axes):   # global: every row gets g / I
        return (jnp.broadcast_to(dx / matrix.size, _x_shape(c, g)),)
    k = len(axes)             # A^T: its output axes first
    return (_through(c, dx, axes, matrix.transpose(*range(k, 2 * k), *range(k)), _windowed_share),)


_adaptive_avg_pool = custom_vjp_op(_avg_primal, _avg_fwd, _avg_bwd)


# --- adaptive max pool ----------------------------------------------------------------

def _sliced(c: AdaptiveConfig) -> bool:
    """Max pool window by window (static slices): not blocks, and not too many windows."""
    return not _blocks(c) and math.prod(d.out for d in c.dims if d.out != d.size) <= _MAX_SLICED


def _tap_strides(c: AdaptiveConfig) -> tuple[int, ...]:   # winner: row-major on the taps
    taps = [d.taps for d in c.dims]
    return tuple(math.prod(taps[i + 1:]) for i in range(len(taps)))


def _window_max(window, axis: int, length: int):
    """Max of ``window`` along ``axis`` and PyTorch's winner's offset, both keepdims.

    One min-reduction picks the winner: a NaN tap ``t`` scores ``-1 - t`` (the last NaN
    is least), a tap equal to the maximum ``t`` (the first wins), any other ``length``.
    NaN is decided by the score: XLA:CPU's vectorised max need not propagate NaN."""
    tap = lax.broadcasted_iota(jnp.int32, window.shape, axis)
    top = jnp.max(window, axis=axis, keepdims=True)
    score = jnp.where(window != window, -1 - tap, jnp.where(window == top, tap, length))
    score = score.min(axis=axis, keepdims=True)
    nan = score < 0
    top = jnp.where(nan, jnp.asarray(jnp.nan, window.dtype), top)
    return top, jnp.where(nan, -1 - score, score)


def _max_along(y, axis: int, dim: AdaptiveDim, carried: list):
    """Pool axis ``axis`` of y window by window (static slices); each array in
    ``carried`` (the inner dims' winner offsets, y's shape) is read at the winning row."""
    values, offsets, kept = [], [], [[] for _ in carried]
    for start, end in zip(dim.starts, dim.ends):
        top, offset = _window_max(lax.slice_in_dim(y, start, end, axis=axis), axis, end - start)
        values, offsets = values + [top], offsets + [offset]
        shape = top.shape[:axis] + (end - start,) + top.shape[axis + 1:]
        tap = lax.broadcasted_iota(jnp.int32, shape, axis)
        for out, inner in zip(kept, carried):
            row = jnp.where(tap == offset, lax.slice_in_dim(inner, start, end, axis=axis), 0)
            out.append(row.sum(axis=axis, keepdims=True))
    join = lambda parts: jnp.concatenate(parts, axis=axis)  # noqa: E731
    return join(values), [join(offsets)] + [join(parts) for parts in kept]


def _windows_max_fwd(c: AdaptiveConfig, x):
    """Any windows: one dim at a time, innermost first (so that ties and NaN resolve in
    row-major order); returns the maxima and the flat winner offsets."""
    y, offsets, strides = x, [], []
    for axis, dim, stride in reversed(list(zip(c.layout.spatial_axes, c.dims, _tap_strides(c)))):
        if dim.out != dim.size:
            y, offsets = _max_along(y, axis, dim, offsets)
            strides.insert(0, stride)
    return y, sum(o * s for o, s in zip(offsets, strides))   # (some dim is pooled)


def _max_fwd(c: AdaptiveConfig, x):
    out, winner = (_windows_max_fwd if _sliced(c) else _adaptive_gather.max_fwd)(c, x)
    return out, winner.astype(winner_dtype(math.prod(d.taps for d in c.dims)))


def _max_primal(c: AdaptiveConfig, x):
    return _max_fwd(c, x)[0]


def _windows_max_bwd(c: AdaptiveConfig, winner, g):
    """Each window's gradient at its winner, padded into place; overlaps add up."""
    pooled = [(a, d, s) for a, d, s in zip(c.layout.spatial_axes, c.dims, _tap_strides(c))
              if d.out != d.size]
    winner, pieces = winner.astype(jnp.int32), []
    for window in itertools.product(*(range(d.out) for _, d, _ in pooled)):
        index, shape, pads = [slice(None)] * g.ndim, _x_shape(c, g), [(0, 0, 0)] * g.ndim
        for (axis, dim, _), i in zip(pooled, window):
            start, end = dim.starts[i], dim.ends[i]
            index[axis], shape[axis] = slice(i, i + 1), end - start
            pads[axis] = (start, dim.size - end, 0)
        tap = sum(lax.broadcasted_iota(jnp.int32, shape, a) * stride for a, _, stride in pooled)
        piece = jnp.where(tap == winner[tuple(index)], g[tuple(index)], jnp.zeros((), g.dtype))
        pieces.append(lax.pad(piece, jnp.zeros((), g.dtype), pads))
    return sum(pieces[1:], pieces[0])


def _max_bwd(c: AdaptiveConfig, winner, g):
    return ((_windows_max_bwd if _sliced(c) else _adaptive_gather.max_bwd)(c, winner, g),)


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
        that dim). ``out_size=1`` is global average pooling.

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
