"""The positional im2col convolution API of seed 003 (hipsternet style).

``conv_forward(X, W, b, stride=1, padding=1)`` and ``conv_backward(dout, cache)``
with the seed's cache ``(X, W, b, stride, padding, X_col)``, computed by
:func:`jaxconv.conv2d` with ``impl="im2col"`` (one matmul over the patch
matrix); the backward pulls ``dout`` through its hand-derived ``custom_vjp``
rule. ``X_col`` in the cache is :func:`jaxconv.im2col`'s patch matrix, in the
seed's ``im2col_indices`` order (see :func:`jaxconv.compat.cs231n.im2col_indices`).

Two things differ from the seed on purpose: the bias IS added (the seed has
``out = W_col @ X_col + b`` commented out), and ``b`` may be given as ``(F,)`` or
``(F, 1)``; ``db`` is ``(F, 1)`` either way, as the seed returns it.
As in the seed, an output size that is not a whole number is an error.
"""
from __future__ import annotations

import jaxconv as jc
from jaxconv.compat import _bridge

__all__ = ["conv_forward", "conv_backward"]


def _conv(X, W, b, *, stride, padding):
    # Any b with F entries; the pullback returns db in b's own shape.
    return jc.conv2d(X, W, b.reshape(-1), stride=stride, pad=padding, impl="im2col")


def _check(X, W, b, stride, padding):
    n_filters, _, h_filter, w_filter = W.shape
    if X.ndim != 4:
        raise ValueError(f"conv_forward: X must be (N, C, H, W), got X.shape={X.shape}")
    if b.size != n_filters:
        raise ValueError(f"conv_forward: b must have one entry per filter ({n_filters}), "
                         f"got b.shape={b.shape} (W.shape={W.shape})")
    for name, size, k in (("height", X.shape[2], h_filter), ("width", X.shape[3], w_filter)):
        if (size + 2 * padding - k) % stride:
            raise ValueError(f"conv_forward: invalid output dimension: output {name} "
                             f"({size} + 2 * {padding} - {k}) / {stride} + 1 is not an integer "
                             f"(X.shape={X.shape}, W.shape={W.shape})")


def conv_forward(X, W, b, stride=1, padding=1):
    """Convolution forward pass.

    Args:
      X: ``(N, C, H, W)``.
      W: ``(F, C, HH, WW)``.
      b: ``(F, 1)`` or ``(F,)``.
      stride, padding: ints; ``(H + 2 * padding - HH) / stride`` must be whole.

    Returns:
      ``(out, cache)``: out ``(N, F, H', W')``; cache
      ``(X, W, b, stride, padding, X_col)`` with X_col ``(C*HH*WW, H'*W'*N)``.
    """
    X, W, b = _bridge.floating(X, W, b)
    _check(X, W, b, stride, padding)
    X_col = _bridge.forward(
        _bridge.op(jc.im2col, kh=W.shape[2], kw=W.shape[3], stride=stride, pad=padding), X)
    return _bridge.layer(_bridge.op(_conv, stride=stride, padding=padding), (X, W, b),
                         (stride, padding, X_col))


def conv_backward(dout, cache):
    """Convolution backward pass: ``(dX, dW, db)``, db of shape ``(F, 1)``."""
    f = _bridge.op(_conv, stride=cache[3], padding=cache[4])
    dX, dW, db = _bridge.gradients(dout, cache, f, count=3)
    return dX, dW, db.reshape(dW.shape[0], 1)
