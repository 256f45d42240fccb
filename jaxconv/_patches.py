"""Patch extraction and its adjoint, written once for conv and pooling.

A window of size ``(KH, KW)`` sliding with ``stride`` over a (padded) image visits
``KH * KW`` kernel offsets. For each offset ``(i, j)`` the values under it form
one strided slice ``xp[..., i::sh, j::sw]`` of output size ``(Ho, Wo)``. Every
conv and pool here is built on those slices, and every backward on their adjoint:
a strided slice is transposed by a ``lax.pad`` that puts each value back at its
place (interior padding ``stride - 1``) with zeros around it; overlapping windows
then add up, which is exactly what the gradient of overlapping windows must do.
"""
from __future__ import annotations

from typing import Iterator

import jax.numpy as jnp
from jax import lax

from jaxconv import _checks


def pad_spatial(x, pad: tuple[int, int], layout: str):
    """Zero-pad the H and W axes by ``pad`` on both sides (negative crops)."""
    if pad == (0, 0):
        return x
    config = [(0, 0, 0)] * x.ndim
    for axis, p in zip(_checks.spatial_axes(layout), pad):
        config[axis] = (p, p, 0)
    return lax.pad(x, jnp.zeros((), x.dtype), config)


def window_slices(xp, window: tuple[int, int], stride: tuple[int, int],
                  out_hw: tuple[int, int], layout: str) -> Iterator:
    """The ``KH * KW`` strided slices of ``xp``, offsets in row-major order."""
    h_axis, w_axis = _checks.spatial_axes(layout)
    for i in range(window[0]):
        for j in range(window[1]):
            start = [0] * xp.ndim
            limit = list(xp.shape)
            strides = [1] * xp.ndim
            for axis, offset, s, n in ((h_axis, i, stride[0], out_hw[0]),
                                       (w_axis, j, stride[1], out_hw[1])):
                start[axis], limit[axis], strides[axis] = offset, offset + (n - 1) * s + 1, s
            yield lax.slice(xp, start, limit, strides)


def place_windows(pieces, padded_hw: tuple[int, int], window: tuple[int, int],
                  stride: tuple[int, int], layout: str):
    """Adjoint of :func:`window_slices`: scatter-add each offset's piece back.

    ``pieces`` yields one ``(..., Ho, Wo)``-shaped array per offset, in the order
    of ``window_slices``; the result has the padded spatial size ``padded_hw``.
    """
    h_axis, w_axis = _checks.spatial_axes(layout)
    total = None
    offsets = ((i, j) for i in range(window[0]) for j in range(window[1]))
    for (i, j), piece in zip(offsets, pieces, strict=True):
        config = [(0, 0, 0)] * piece.ndim
        for axis, offset, s, n in ((h_axis, i, stride[0], padded_hw[0]),
                                   (w_axis, j, stride[1], padded_hw[1])):
            used = (piece.shape[axis] - 1) * s + 1
            config[axis] = (offset, n - offset - used, s - 1)
        placed = lax.pad(piece, jnp.zeros((), piece.dtype), config)
        total = placed if total is None else total + placed
    return total


def padded_hw(x_hw: tuple[int, int], pad: tuple[int, int]) -> tuple[int, int]:
    return tuple(n + 2 * p for n, p in zip(x_hw, pad))


def im2col(x, kh: int, kw: int, *, stride=1, pad=0):
    """Patch matrix of an NCHW image, the seeds' ``im2col_indices`` order.

    Args:
      x: ``(N, C, H, W)``.
      kh, kw: window size.
      stride, pad: int or ``(h, w)`` pair.

    Returns:
      ``(C * KH * KW, Ho * Wo * N)``: rows ordered ``(C, KH, KW)``, columns
      ``(Ho, Wo, N)``, with ``Ho = (H + 2 * pad - KH) // stride + 1``.
    """
    x = _checks.array("im2col", "x", x, ndim=4)
    window, stride, pad, out_hw = _im2col_args("im2col", x.shape, kh, kw, stride, pad)
    n, c = x.shape[:2]
    slices = window_slices(pad_spatial(x, pad, "NCHW"), window, stride, out_hw, "NCHW")
    patches = jnp.stack(list(slices)).reshape(*window, n, c, *out_hw)
    return patches.transpose(3, 0, 1, 4, 5, 2).reshape(c * kh * kw, -1)


def col2im(cols, x_shape, kh: int, kw: int, *, stride=1, pad=0):
    """Adjoint of :func:`im2col`: each column goes back to its window, overlaps add.

    Args:
      cols: ``(C * KH * KW, Ho * Wo * N)`` in :func:`im2col`'s order.
      x_shape: ``(N, C, H, W)`` of the image.

    Returns:
      ``(N, C, H, W)``; values that fell on the padding are dropped.
    """
    x_shape = tuple(int(d) for d in x_shape)
    if len(x_shape) != 4:
        raise ValueError(f"col2im: x_shape must have 4 entries (N, C, H, W), got {x_shape}")
    window, stride, pad, out_hw = _im2col_args("col2im", x_shape, kh, kw, stride, pad)
    n, c = x_shape[:2]
    expected = (c * kh * kw, out_hw[0] * out_hw[1] * n)
    cols = _checks.array("col2im", "cols", cols, ndim=2)
    if tuple(cols.shape) != expected:
        raise ValueError(f"col2im: cols must have shape {expected} for x_shape={x_shape}, "
                         f"kh={kh}, kw={kw}, got cols.shape={tuple(cols.shape)}")
    pieces = cols.reshape(c, kh, kw, *out_hw, n).transpose(1, 2, 5, 0, 3, 4)
    pieces = pieces.reshape(kh * kw, n, c, *out_hw)
    xp = place_windows(pieces, padded_hw(x_shape[2:], pad), window, stride, "NCHW")
    return pad_spatial(xp, (-pad[0], -pad[1]), "NCHW")


def _im2col_args(op, x_shape, kh, kw, stride, pad):
    window = _checks.pair(op, "(kh, kw)", (kh, kw), minimum=1)
    stride = _checks.pair(op, "stride", stride, minimum=1)
    pad = _checks.pair(op, "pad", pad, minimum=0)
    out_hw = _checks.out_size(op, "window", tuple(x_shape[2:]), window, stride, pad,
                              f"x.shape={tuple(x_shape)}")
    return window, stride, pad, out_hw
