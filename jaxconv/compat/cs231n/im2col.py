"""CS231n's ``cs231n/im2col.py``: ``get_im2col_indices``, ``im2col_indices``,
``col2im_indices`` (and ``np``, as its star import brings). The patch matrices are
computed by ``jc.im2col``/``jc.col2im``, in the seeds' fancy-indexing order; the
index helper is NumPy, as CS231n's.
"""
from __future__ import annotations

import numbers

import numpy as np

import jaxconv as jc
from jaxconv.compat import _bridge

__all__ = ["np", "get_im2col_indices", "im2col_indices", "col2im_indices"]


def get_im2col_indices(x_shape, field_height, field_width, padding=1, stride=1):
    """``(k, i, j)``: channel, row and column indices into the padded image such that
    ``x_padded[:, k, i, j]`` gathers every patch; rows ordered ``(C, fh, fw)``,
    columns ``(H', W')``. Output sizes round down."""
    _, C, H, W = x_shape
    out_height = (H + 2 * padding - field_height) // stride + 1
    out_width = (W + 2 * padding - field_width) // stride + 1
    rows = np.tile(np.repeat(np.arange(field_height), field_width), C)[:, None]
    cols = np.tile(np.arange(field_width), field_height * C)[:, None]
    i = rows + stride * np.repeat(np.arange(out_height), out_width)[None, :]
    j = cols + stride * np.tile(np.arange(out_width), out_height)[None, :]
    k = np.repeat(np.arange(C), field_height * field_width)[:, None]
    return k, i, j


def _as_float(x):
    """Patches of integer arrays are computed in float64 (exact below 2**53) and
    cast back, so any dtype goes through, as with the seeds' fancy indexing."""
    x = np.asarray(x)
    return (x, x.dtype) if np.issubdtype(x.dtype, np.floating) else (x.astype(np.float64), x.dtype)


def im2col_indices(x, field_height, field_width, padding=1, stride=1):
    """Patch matrix of ``x (N, C, H, W)``, the seeds' fancy-indexing order.

    Returns:
      ``(C * field_height * field_width, H' * W' * N)``: rows ordered
      ``(C, field_height, field_width)``, columns ``(H', W', N)`` (the images of a
      batch interleave), ``H' = (H + 2 padding - field_height) // stride + 1``.
    """
    x, dtype = _as_float(x)
    f = _bridge.op(jc.im2col, kh=field_height, kw=field_width, stride=stride, pad=padding)
    return _bridge.forward(f, x).astype(dtype, copy=False)


def _col2im(cols, *, x_shape, kh, kw, stride, pad):
    return jc.col2im(cols, x_shape, kh, kw, stride=stride, pad=pad)


def col2im_indices(cols, x_shape, field_height=3, field_width=3, padding=1, stride=1):
    """Adjoint of :func:`im2col_indices`: columns back into an image of shape
    ``x_shape``, overlapping patches summed, padding dropped."""
    if not all(isinstance(d, numbers.Integral) for d in x_shape):
        raise TypeError(f"col2im_indices: x_shape must be integers, got {tuple(x_shape)!r}")
    cols, dtype = _as_float(cols)
    f = _bridge.op(_col2im, x_shape=tuple(int(d) for d in x_shape), kh=field_height,
                   kw=field_width, stride=stride, pad=padding)
    return _bridge.forward(f, cols).astype(dtype, copy=False)
