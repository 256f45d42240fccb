"""Max and average pooling over 1, 2 or 3 spatial dims, with hand-derived backwards.

PyTorch's semantics (``torch.nn.MaxPool1d/2d/3d``, ``AvgPool1d/2d/3d``). In one
spatial dim, with the geometry of :mod:`jaxconv._geometry` (kernel ``K``, stride
``s``, dilation ``d``, padding ``(lo, hi)``, output size ``O``), tap ``t`` of window
``o`` reads input row ``o s + t d - lo``; rows outside ``[0, I)`` are padding.
Windows may overlap (``s < K``): their gradients add up. ``ceil_mode`` keeps a last
window that starts inside the input or the left padding even if it runs past the
padded input (the part past it counts as absent, not as padding).

Both ops share one scheme: the input is padded (``-inf`` for max, zeros for
average) just enough for every window to fit, each kernel tap is one strided slice
(``_patches.window_slices``) and every backward is the adjoint of those slices
(``_patches.place_windows``), cropped back to the input.
"""
from __future__ import annotations

import dataclasses
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxconv import _checks, _geometry
from jaxconv._geometry import Layout, Window
from jaxconv._norm import accumulation_dtype
from jaxconv._patches import pad_spatial, place_windows, unpad, window_slices
from jaxconv._vjp import custom_vjp_op


@dataclasses.dataclass(frozen=True)
class PoolConfig:
    layout: Layout
    window: Window
    count_include_pad: bool = True          # average pooling only
    divisor_override: int | None = None     # average pooling only


def pool_input(op: str, x, layout, ndim: int | None):
    """Validate x and its layout, for every pool: ``(x, Layout)``.

    ``ndim`` is the number of spatial dims of the 1d/2d/3d forms; ``None`` (the N-d
    ops) takes it from the layout, or from x's rank when ``layout`` is ``None``.
    As in PyTorch only the batch axis may be empty.
    """
    x = _checks.array(op, "x", x, ndim=None if ndim is None else ndim + 2)
    lay = _geometry.layout(op, layout, x.shape, ndim=ndim)
    if 0 in x.shape[1:]:
        raise ValueError(f"{op}: x may be empty only along the batch axis, got "
                         f"x.shape={tuple(x.shape)} (layout={lay.name!r})")
    return x, lay


def pool_config(op: str, x, *, pool, stride=None, pad=0, dilation=1, ceil_mode=False,
                layout=None, ndim: int | None = None, count_include_pad=True,
                divisor_override=None):
    """Validate a max/avg pool's inputs (trace time): ``(x, PoolConfig)``."""
    x, lay = pool_input(op, x, layout, ndim)
    shapes = f"x.shape={tuple(x.shape)}, layout={lay.name!r}"
    window = _geometry.window(
        op, in_size=lay.spatial(x.shape), kernel=pool, stride=pool if stride is None else stride,
        dilation=dilation, pad=_geometry.pads(op, pad, lay.ndim, strings=False),
        ceil_mode=ceil_mode, kernel_name="pool", shapes=shapes,
        outer=x.shape[0] * x.shape[lay.channel_axis])
    _geometry.check_pool_pad(op, window, shapes)
    if not isinstance(count_include_pad, bool):
        raise TypeError(f"{op}: count_include_pad must be a bool, got {count_include_pad!r}")
    if divisor_override is not None:
        divisor_override = _checks.integer(op, "divisor_override", divisor_override, minimum=1)
    return x, PoolConfig(lay, window, count_include_pad, divisor_override)


def on_spatial_axes(layout: Layout, per_dim, combine) -> np.ndarray:
    """Combine one 1-D array per spatial dim by ``combine.outer`` into an array that
    broadcasts against an image of ``layout`` (size 1 on N and C)."""
    total = functools.reduce(combine.outer, per_dim)
    shape = [1] * layout.rank
    for axis, n in zip(layout.spatial_axes, total.shape):
        shape[axis] = n
    return total.reshape(shape)


def winner_dtype(taps: int):
    """The type of a winner's offset in its window: one byte (``uint8``) for windows
    of up to 256 taps, as every common pool; ``int32`` beyond (windows that large
    have few outputs, and int32 is what JAX indexes with)."""
    return np.dtype(np.uint8) if taps <= 256 else np.dtype(np.int32)


def _crop(c: PoolConfig, dxp):
    """The padded-input gradient back to x's shape (padding gets no gradient)."""
    return pad_spatial(dxp, unpad(c.window.pad), c.layout)


# --- max pool -----------------------------------------------------------------

def _first_inside(c: PoolConfig):
    """Each window's first tap on the input, row-major (0 where no window touches the
    padding): PyTorch's winner for a window of ``-inf`` only."""
    w = c.window
    strides = np.cumprod((1,) + w.kernel[:0:-1])[::-1]     # of a row-major tap index
    firsts = [_geometry.taps_inside(w, dim).argmax(axis=1) * strides[dim]
              for dim in range(w.ndim)]
    first = on_spatial_axes(c.layout, firsts, np.add)
    return first.astype(winner_dtype(w.taps)) if first.any() else 0


def _max_scan(c: PoolConfig, x):
    """``(out, winner)``: one pass over the taps keeping the running maximum and its
    tap, as PyTorch's kernel does: a tap wins if it is larger or NaN."""
    w, dtype = c.window, winner_dtype(c.window.taps)
    xp = pad_spatial(x, w.fit_pad, c.layout, value=-jnp.inf)
    best = jnp.array(-jnp.inf, x.dtype)
    winner = jnp.asarray(_first_inside(c), dtype)
    for tap, value in enumerate(window_slices(xp, w, c.layout)):
        take = (value > best) | jnp.isnan(value)
        best = jnp.where(take, value, best)
        winner = jnp.where(take, jnp.asarray(tap, dtype), winner)
    return best, _materialized(winner)


def _materialized(a):
    """``a``, computed once. XLA copies cheap elementwise producers (the scan above)
    into each consumer; the backward reads every winner once per tap of dx, so the
    scan would be redone for each (16 vs 3 ms for bias + relu + 2x2 pool fwd + bwd
    on 64x32x32x32, one core). A reduction is never copied into its consumers: a
    max over a pair ``(a, 0)`` of unsigned or non-negative offsets is ``a``."""
    return jnp.max(jnp.stack([a, jnp.zeros_like(a)]), axis=0)


def _max_primal(c: PoolConfig, x):
    return _max_scan(c, x)[0]


def _max_bwd(c: PoolConfig, winner, g):
    w = c.window
    if all((k - 1) * d < s for k, s, d in zip(w.kernel, w.stride, w.dilation)):
        return (_disjoint_bwd(c, winner, g),)
    return (_overlapping_bwd(c, winner, g),)


def _disjoint_bwd(c: PoolConfig, winner, g):
    """Windows that do not overlap (``(K - 1) d < s`` in every dim, as the usual 2x2
    stride-2 pool): each output's stride block ``s`` of the padded input gets ``g``
    where its tap is the winner, one elementwise pass, then the blocks are cropped to
    x (1.4 vs 3.6 ms for the scatter on 64x32x32x32, one core).

    Block position ``p`` in ``[0, s)`` of a dim is tap ``p / d`` when ``d`` divides
    ``p`` and ``p / d < K``; the tap index is row-major over the kernel."""
    w, lay = c.window, c.layout
    expand = lambda a: jnp.expand_dims(a, [axis + i + 1 for i, axis in enumerate(lay.spatial_axes)])
    tap, valid, blocks = 0, True, list(expand(g).shape)
    for i, (axis, k, s, d) in enumerate(zip(lay.spatial_axes, w.kernel, w.stride, w.dilation)):
        shape = [1] * len(blocks)
        shape[axis + i + 1] = blocks[axis + i + 1] = s
        pos = np.arange(s).reshape(shape)
        valid = valid & (pos % d == 0) & (pos // d < k)
        tap = tap * k + pos // d
    take = valid & (expand(winner).astype(jnp.int32) == jnp.asarray(tap, jnp.int32))
    dblocks = jnp.where(take, expand(g), jnp.zeros((), g.dtype))
    covered = [o * s for o, s in zip(w.out_size, w.stride)]   # padded rows the blocks span
    crop = tuple((-lo, n + lo - m) for (lo, _), n, m in zip(w.pad, w.in_size, covered))
    return pad_spatial(dblocks.reshape(_x_shape(lay, w, g.shape, covered)), crop, lay)


def _overlapping_bwd(c: PoolConfig, winner, g):
    """One scatter-add of each window's gradient onto its winner's input element.

    (Not ``place_windows``: its K shifted copies each read the winner array, and XLA
    then fuses the whole forward scan into that backward, recomputing it K times per
    element of dx: measured 2.5x slower for a 3x3 window.)"""
    w, lay = c.window, c.layout
    rest, position, inside = winner.astype(jnp.int32), 0, True
    for dim in reversed(range(w.ndim)):        # the tap index is row-major over K
        tap, rest = rest % w.kernel[dim], rest // w.kernel[dim]
        out_row = lax.broadcasted_iota(jnp.int32, winner.shape, lay.spatial_axes[dim])
        row = out_row * w.stride[dim] + tap * w.dilation[dim] - w.pad[dim][0]
        inside = inside & (row >= 0) & (row < w.in_size[dim])
        position = position + row * math.prod(w.in_size[dim + 1:])
    size = math.prod(w.in_size)
    position = jnp.where(inside, position, size)   # a window of padding only: dropped
    return _scatter_add(lay, position, g, size).reshape(_x_shape(lay, w, g.shape))


def _x_shape(lay: Layout, w: Window, out_shape, sizes=None) -> tuple[int, ...]:
    """out_shape with its spatial sizes replaced (by x's, unless ``sizes``)."""
    shape = list(out_shape)
    for axis, n in zip(lay.spatial_axes, w.in_size if sizes is None else sizes):
        shape[axis] = n
    return tuple(shape)


def _scatter_add(lay: Layout, position, g, size):
    """``dx[n, c, position] += g`` over the flattened spatial axes (N, C stay as they
    are, as batch dims of the scatter)."""
    first, count = lay.spatial_axes[0], len(lay.spatial_axes)
    def flat(a):
        spatial = math.prod(a.shape[first:first + count])
        return a.reshape(a.shape[:first] + (spatial,) + a.shape[first + count:])

    def one(p, v):
        return jnp.zeros(size, v.dtype).at[p].add(v, mode="drop")
    for axis in (0, 1 if lay.channels_first else first + 1):   # N inside, C outside
        one = jax.vmap(one, in_axes=(axis, axis), out_axes=axis)
    return one(flat(position), flat(g))


_max_pool = custom_vjp_op(_max_primal, _max_scan, _max_bwd)


def _max(op, ndim, x, pool, stride, pad, dilation, ceil_mode, layout):
    x, c = pool_config(op, x, pool=pool, stride=stride, pad=pad, dilation=dilation,
                       ceil_mode=ceil_mode, layout=layout, ndim=ndim)
    return _max_pool(c, x)


def max_pool(x, *, pool, stride=None, pad=0, dilation=1, ceil_mode=False, layout=None):
    """Max pooling over 1, 2 or 3 spatial dims (``torch.nn.MaxPoolNd``).

    Args:
      x: ``(N, C, *spatial)``, or ``(N, *spatial, C)`` with a channels-last layout.
      pool: window size, an int or one per spatial dim.
      stride: int or one per dim; defaults to ``pool``. Smaller than ``pool`` overlaps.
      pad: int, one per dim, or one ``(low, high)`` pair per dim, each at most
        ``pool // 2`` (PyTorch's rule); padding counts as ``-inf``, never selected.
      dilation: spacing of the window's taps, int or one per dim.
      ceil_mode: round the output size up (PyTorch's rule, see :mod:`jaxconv._geometry`).
      layout: ``"NCW"/"NWC"``, ``"NCHW"/"NHWC"`` or ``"NCDHW"/"NDHWC"``; ``None``:
        channels-first for x's rank.

    Returns:
      ``(N, C, *O)`` (or channels-last), ``O = (I + lo + hi - d (K - 1) - 1) // s + 1``
      (rounded up with ``ceil_mode``).

    Backward: each window sends its upstream gradient to its winner::

      dx[n, c, o s + t* d - lo] += g[n, c, o],  t* = the winning tap of window o

    The winner is PyTorch's: the running maximum over the taps in row-major order
    takes a tap that is larger or NaN, so ties go to the FIRST maximum (as XLA and
    ``np.argmax``), a window holding NaN outputs NaN and sends its gradient to its
    LAST NaN, and a window of ``-inf`` only to its first tap on the input. A window
    with no tap on the input (dilation can make one) outputs ``-inf`` and passes no
    gradient, as in PyTorch.

    Residuals: the winner's tap, one byte per output (``uint8``; ``int32`` for
    windows over 256 taps), instead of x and the output.
    """
    return _max("max_pool", None, x, pool, stride, pad, dilation, ceil_mode, layout)


def max_pool1d(x, *, pool, stride=None, pad=0, dilation=1, ceil_mode=False, layout="NCW"):
    """:func:`max_pool` of ``(N, C, W)`` (or ``layout="NWC"``)."""
    return _max("max_pool1d", 1, x, pool, stride, pad, dilation, ceil_mode, layout)


def max_pool2d(x, *, pool=2, stride=None, pad=0, dilation=1, ceil_mode=False, layout="NCHW"):
    """:func:`max_pool` of ``(N, C, H, W)`` (or ``layout="NHWC"``); ``pool`` defaults to 2."""
    return _max("max_pool2d", 2, x, pool, stride, pad, dilation, ceil_mode, layout)


def max_pool3d(x, *, pool, stride=None, pad=0, dilation=1, ceil_mode=False, layout="NCDHW"):
    """:func:`max_pool` of ``(N, C, D, H, W)`` (or ``layout="NDHWC"``)."""
    return _max("max_pool3d", 3, x, pool, stride, pad, dilation, ceil_mode, layout)


# --- average pool ---------------------------------------------------------------

def divisor(c: PoolConfig, dtype):
    """Each window's divisor, PyTorch's rule: ``divisor_override`` if given, else the
    taps on the padded input (``count_include_pad``; the ceil_mode overhang is not
    counted) or on the input alone. A scalar when every window has the same."""
    if c.divisor_override is not None:
        return c.divisor_override
    w = c.window
    counts = [_geometry.taps_inside(w, dim, padded=c.count_include_pad).sum(axis=1)
              for dim in range(w.ndim)]
    div = on_spatial_axes(c.layout, counts, np.multiply)
    return int(div.flat[0]) if (div == div.flat[0]).all() else div.astype(dtype)


def _avg_primal(c: PoolConfig, x):
    acc = accumulation_dtype(x.dtype)
    xp = pad_spatial(x.astype(acc), c.window.fit_pad, c.layout)
    total = sum(window_slices(xp, c.window, c.layout))
    return (total / divisor(c, acc)).astype(x.dtype)


def _avg_fwd(c: PoolConfig, x):
    return _avg_primal(c, x), ()


def _avg_bwd(c: PoolConfig, _, g):
    acc = accumulation_dtype(g.dtype)
    share = g.astype(acc) / divisor(c, acc)
    return (_crop(c, place_windows((share for _ in range(c.window.taps)), c.window, c.layout)),)


_avg_pool = custom_vjp_op(_avg_primal, _avg_fwd, _avg_bwd)


def _avg(op, ndim, x, pool, stride, pad, ceil_mode, count_include_pad, divisor_override, layout):
    x, c = pool_config(op, x, pool=pool, stride=stride, pad=pad, ceil_mode=ceil_mode,
                       layout=layout, ndim=ndim, count_include_pad=count_include_pad,
                       divisor_override=divisor_override)
    return _avg_pool(c, x)


def avg_pool(x, *, pool, stride=None, pad=0, ceil_mode=False, count_include_pad=True,
             divisor_override=None, layout=None):
    """Average pooling over 1, 2 or 3 spatial dims (``torch.nn.AvgPoolNd``).

    Args as :func:`max_pool` (no dilation; padding counts as zeros), and
      count_include_pad: divide by the taps on the padded input (True) or on the
        input alone (False). Taps past the padded input (``ceil_mode``) never count.
      divisor_override: a fixed divisor (an int >= 1) instead.

    Backward: every tap of a window receives the window's share::

      dx[n, c, o s + t - lo] += g[n, c, o] / divisor[o]   for every tap t on the input

    Residuals: none (the divisors are static). Half-precision inputs are summed
    and divided in float32.
    """
    return _avg("avg_pool", None, x, pool, stride, pad, ceil_mode, count_include_pad,
                divisor_override, layout)


def avg_pool1d(x, *, pool, stride=None, pad=0, ceil_mode=False, count_include_pad=True,
               divisor_override=None, layout="NCW"):
    """:func:`avg_pool` of ``(N, C, W)`` (or ``layout="NWC"``)."""
    return _avg("avg_pool1d", 1, x, pool, stride, pad, ceil_mode, count_include_pad,
                divisor_override, layout)


def avg_pool2d(x, *, pool=2, stride=None, pad=0, ceil_mode=False, count_include_pad=True,
               divisor_override=None, layout="NCHW"):
    """:func:`avg_pool` of ``(N, C, H, W)`` (or ``layout="NHWC"``); ``pool`` defaults to 2."""
    return _avg("avg_pool2d", 2, x, pool, stride, pad, ceil_mode, count_include_pad,
                divisor_override, layout)


def avg_pool3d(x, *, pool, stride=None, pad=0, ceil_mode=False, count_include_pad=True,
               divisor_override=None, layout="NCDHW"):
    """:func:`avg_pool` of ``(N, C, D, H, W)`` (or ``layout="NDHWC"``)."""
    return _avg("avg_pool3d", 3, x, pool, stride, pad, ceil_mode, count_include_pad,
                divisor_override, layout)
