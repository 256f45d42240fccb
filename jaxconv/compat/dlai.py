"""The NHWC convolution and pooling API of deeplearning.ai's course (seed 004).

Drop-in replacements with the same names, signatures and caches, computed by
:func:`jaxconv.conv2d`, :func:`jaxconv.max_pool2d` and :func:`jaxconv.avg_pool2d`
(``layout="NHWC"``); the backward functions pull ``dZ``/``dA`` back through the
ops' hand-derived ``custom_vjp`` rules. NumPy in, NumPy out, dtype preserved
(see :mod:`jaxconv.compat` for how float64 is handled).

Shapes: ``A_prev (m, n_H_prev, n_W_prev, n_C_prev)``, ``W (f, f, n_C_prev, n_C)``,
``b (1, 1, 1, n_C)``; outputs ``(m, n_H, n_W, n_C)`` with
``n_H = (n_H_prev + 2 * pad - f) // stride + 1``.

Unlike the course's reference code, ``conv_backward`` works with ``pad = 0``
(the original slices ``[pad:-pad]``, which is empty there).

Example (the course's own check)::

    np.random.seed(1)
    A_prev = np.random.randn(10, 4, 4, 3)
    W = np.random.randn(2, 2, 3, 8)
    b = np.random.randn(1, 1, 1, 8)
    Z, cache = conv_forward(A_prev, W, b, {"pad": 2, "stride": 2})
    np.mean(Z)                                  # 0.048995203528855794
    dA, dW, db = conv_backward(Z, cache)        # means 1.4524..., 1.7269..., 7.8392...
"""
from __future__ import annotations

import jaxconv as jc
from jaxconv.compat import _bridge

__all__ = ["conv_forward", "conv_backward", "pool_forward", "pool_backward"]

_MODES = ("max", "average")


def _conv(a_prev, w, b, *, stride, pad):
    # b arrives as (1, 1, 1, n_C); reshaping inside the differentiated function
    # makes the pullback return db in that same shape.
    return jc.conv2d(a_prev, w, b.reshape(-1), stride=stride, pad=pad, layout="NHWC")


def _pool(a_prev, *, f, stride, mode):
    pool = jc.max_pool2d if mode == "max" else jc.avg_pool2d
    return pool(a_prev, pool=f, stride=stride, layout="NHWC")


def _conv_op(hparameters):
    return _bridge.op(_conv, stride=hparameters["stride"], pad=hparameters["pad"])


def _pool_op(hparameters, mode):
    if mode not in _MODES:
        raise ValueError(f"pool_forward: mode must be one of {_MODES}, got {mode!r}")
    return _bridge.op(_pool, f=hparameters["f"], stride=hparameters["stride"], mode=mode)


def conv_forward(A_prev, W, b, hparameters):
    """Convolution forward pass.

    Args:
      A_prev: ``(m, n_H_prev, n_W_prev, n_C_prev)``.
      W: ``(f, f, n_C_prev, n_C)``.
      b: ``(1, 1, 1, n_C)``.
      hparameters: ``{"stride": int, "pad": int}``.

    Returns:
      ``(Z, cache)``: Z ``(m, n_H, n_W, n_C)``; cache ``(A_prev, W, b, hparameters)``
      (read-only copies: later writes to ``A_prev`` cannot change the gradients).
    """
    return _bridge.layer(_conv_op(hparameters), _bridge.floating(A_prev, W, b), (hparameters,))


def conv_backward(dZ, cache):
    """Convolution backward pass: ``(dA_prev, dW, db)`` with the shapes of
    ``A_prev``, ``W`` and ``b`` (db is ``(1, 1, 1, n_C)``)."""
    return tuple(_bridge.gradients(dZ, cache, _conv_op(cache[3]), count=3))


def pool_forward(A_prev, hparameters, mode="max"):
    """Pooling forward pass, ``mode`` ``"max"`` or ``"average"``.

    Args:
      A_prev: ``(m, n_H_prev, n_W_prev, n_C)``.
      hparameters: ``{"f": window size, "stride": int}`` (no padding).

    Returns:
      ``(A, cache)``: A ``(m, n_H, n_W, n_C)``; cache ``(A_prev, hparameters)``.
    """
    return _bridge.layer(_pool_op(hparameters, mode), _bridge.floating(A_prev), (hparameters,))


def pool_backward(dA, cache, mode="max"):
    """Pooling backward pass: ``dA_prev`` with ``A_prev``'s shape. Max pooling sends
    each window's gradient to its (first) maximum; average pooling spreads it evenly."""
    f = _pool_op(cache[1], mode)
    if getattr(cache, "saved", None) is not None and cache.saved.op != f:
        cache = tuple(cache)        # another mode than the forward's: differentiate afresh
    return _bridge.gradients(dA, cache, f, count=1)[0]
