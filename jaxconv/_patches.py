"""Patch extraction and its adjoint, written once for conv and pooling, in N-d.

A window (``_geometry.Window``) of kernel ``K`` sliding with stride ``s`` and
dilation ``d`` over a padded image visits ``prod(K)`` kernel taps. For each tap
``t`` (a tuple of offsets) the values under it form one strided slice
``xp[..., d*t :: s]`` of output size ``O``. Every conv and pool here is built on
those slices, and every backward on their adjoint: a strided slice is transposed
by a ``lax.pad`` that puts each value back at its place (interior padding
``s - 1``) with zeros around it; overlapping windows then add up, which is
exactly what the gradient of overlapping windows must do.
"""
from __future__ import annotations

import itertools
import math
from typing import Iterable, Iterator

import jax.numpy as jnp
from jax import lax

from jaxconv import _checks, _geometry
from jaxconv._geometry import Layout, Window


def pad_spatial(x, pad, layout: Layout, value=0):
    """Pad the spatial axes with ``value`` (zeros by default) by one ``(low, high)``
    pair per dim (negative crops)."""
    if all(p == (0, 0) for p in pad):
        return x
    config = [(0, 0, 0)] * x.ndim
    for axis, (lo, hi) in zip(layout.spatial_axes, pad):
        config[axis] = (lo, hi, 0)
    return lax.pad(x, jnp.asarray(value, x.dtype), config)


def unpad(pad):
    """The pads that undo ``pad``."""
    return tuple((-lo, -hi) for lo, hi in pad)


def taps(window: Window) -> list[tuple[int, ...]]:
    """The kernel taps in row-major order (the order of a flattened kernel)."""
    return list(itertools.product(*(range(k) for k in window.kernel)))


def window_slices(xp, window: Window, layout: Layout) -> Iterator:
    """The ``prod(K)`` strided slices of the padded ``xp``, taps in row-major order."""
    for tap in taps(window):
        start, limit, strides = [0] * xp.ndim, list(xp.shape), [1] * xp.ndim
        for axis, t, s, d, o in zip(layout.spatial_axes, tap, window.stride,
                                    window.dilation, window.out_size):
            start[axis], limit[axis], strides[axis] = d * t, d * t + (o - 1) * s + 1, s
        yield lax.slice(xp, start, limit, strides)


def place_windows(pieces: Iterable, window: Window, layout: Layout):
    """Adjoint of :func:`window_slices`: scatter-add each tap's piece back.

    ``pieces`` yields one output-shaped array per tap, in the order of
    ``window_slices``; the result has the padded spatial size of ``window``.
    """
    total = None
    for tap, piece in zip(taps(window), pieces, strict=True):
        config = [(0, 0, 0)] * piece.ndim
        for axis, t, s, d, p in zip(layout.spatial_axes, tap, window.stride,
                                    window.dilation, window.padded_size):
            used = (piece.shape[axis] - 1) * s + 1
            config[axis] = (d * t, p - d * t - used, s - 1)
        placed = lax.pad(piece, jnp.zeros((), piece.dtype), config)
        total = placed if total is None else total + placed
    return total


_NCHW = Layout("NCHW")
# im2col's columns are ordered (Ho, Wo, N): the image is moved to (C, H, W, N) first
# (a small copy) so that every tap's slice is already in column order and the patch
# matrix is their stack, not a transpose of it. Spatial axes 1, 2, as NHWC's.
_CHWN = Layout("NHWC")


def im2col(x, kh: int, kw: int, *, stride=1, pad=0, dilation=1):
    """Patch matrix of an NCHW image, the seeds' ``im2col_indices`` order.

    Args:
      x: ``(N, C, H, W)``.
      kh, kw: window size.
      stride, dilation: int or ``(h, w)`` pair.
      pad: int, ``(h, w)`` pair, one ``(low, high)`` pair per dim, ``"SAME"`` or
        ``"VALID"``.

    Returns:
      ``(C * KH * KW, Ho * Wo * N)``: rows ordered ``(C, KH, KW)``, columns
      ``(Ho, Wo, N)``, with ``Ho = (H + 2 * pad - dilation * (KH - 1) - 1) // stride + 1``.
    """
    x = _checks.array("im2col", "x", x, ndim=4)
    win = _im2col_window("im2col", x.shape, kh, kw, stride, pad, dilation)
    n, c = x.shape[:2]
    slices = window_slices(pad_spatial(x.transpose(1, 2, 3, 0), win.pad, _CHWN), win, _CHWN)
    return jnp.stack(list(slices), axis=1).reshape(c * win.taps, math.prod(win.out_size) * n)


def col2im(cols, x_shape, kh: int, kw: int, *, stride=1, pad=0, dilation=1):
    """Adjoint of :func:`im2col`: each column goes back to its window, overlaps add.

    Args:
      cols: ``(C * KH * KW, Ho * Wo * N)`` in :func:`im2col`'s order.
      x_shape: ``(N, C, H, W)`` of the image (non-negative ints).

    Returns:
      ``(N, C, H, W)``; values that fell on the padding are dropped.
    """
    x_shape = tuple(x_shape) if hasattr(x_shape, "__len__") else x_shape
    if not isinstance(x_shape, tuple) or len(x_shape) != 4:
        raise ValueError(f"col2im: x_shape must have 4 entries (N, C, H, W), got {x_shape!r}")
    if not all(_geometry.is_int(d) for d in x_shape):
        raise TypeError(f"col2im: x_shape must hold ints, got {x_shape!r}")
    x_shape = tuple(int(d) for d in x_shape)
    if min(x_shape) < 0:
        raise ValueError(f"col2im: x_shape must hold sizes >= 0, got {x_shape}")
    win = _im2col_window("col2im", x_shape, kh, kw, stride, pad, dilation)
    n, c = x_shape[:2]
    expected = (c * win.taps, math.prod(win.out_size) * n)
    cols = _checks.array("col2im", "cols", cols, ndim=2)
    if tuple(cols.shape) != expected:
        raise ValueError(f"col2im: cols must have shape {expected} for x_shape={x_shape}, "
                         f"kh={kh}, kw={kw}, stride={stride}, pad={pad}, dilation={dilation}, "
                         f"got cols.shape={tuple(cols.shape)}")
    pieces = jnp.moveaxis(cols.reshape(c, win.taps, *win.out_size, n), 1, 0)
    image = pad_spatial(place_windows(pieces, win, _CHWN), unpad(win.pad), _CHWN)
    return image.transpose(3, 0, 1, 2)


def _im2col_window(op, x_shape, kh, kw, stride, pad, dilation) -> Window:
    return _geometry.window(op, in_size=x_shape[2:], kernel=(kh, kw), stride=stride,
                            dilation=dilation, pad=pad, kernel_name="(kh, kw)",
                            what="window (kh, kw) =", shapes=f"x.shape={tuple(x_shape)}",
                            outer=x_shape[0] * x_shape[1])
