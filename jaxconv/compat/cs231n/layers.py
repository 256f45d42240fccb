"""CS231n's ``cs231n/layers.py``, computed by the jaxconv ops.

``from jaxconv.compat.cs231n.layers import *`` brings what ``from cs231n.layers import *``
does: the layer functions and ``np`` (CS231n's module has no ``__all__``).

Every forward is ONE jit-compiled call that runs the op and keeps its custom_vjp
residuals; every backward is one call that applies them (the op's hand-derived rule,
nothing recomputed). A cache is a tuple with CS231n's contents (``(x, w, b)``,
``(x, w, b, conv_param)``, ``(x, pool_param)``, ...) as read-only copies, so writing
to ``x`` after the forward cannot change the gradients (as CS231n's derived caches
cannot), and it carries the residuals the backward uses.

Conventions kept from CS231n: ``conv_param = {"stride", "pad"}``; ``pool_param =
{"pool_height", "pool_width", "stride"}``; ``dropout_param``: ``"p"`` is the KEEP
probability, ``"mode"``, optional ``"seed"``. Where it differs: output sizes round down
when a window does not tile the input (CS231n's asserts would fire); dropout masks come
from ``jax.random`` (the same ``seed`` gives the same mask, not NumPy's); labels out of
range raise ValueError (CS231n's NumPy would index out of bounds or wrap).
"""
from __future__ import annotations

import numbers

import jax
import numpy as np

import jaxconv as jc
from jaxconv.compat import _bridge
from jaxconv.compat.cs231n._norm_layers import (
    batchnorm_backward, batchnorm_backward_alt, batchnorm_forward, layernorm_backward,
    layernorm_forward, spatial_batchnorm_backward, spatial_batchnorm_forward,
    spatial_groupnorm_backward, spatial_groupnorm_forward)

__all__ = [
    "np", "affine_forward", "affine_backward", "relu_forward", "relu_backward",
    "conv_forward_naive", "conv_backward_naive",
    "max_pool_forward_naive", "max_pool_backward_naive",
    "batchnorm_forward", "batchnorm_backward", "batchnorm_backward_alt",
    "spatial_batchnorm_forward", "spatial_batchnorm_backward",
    "layernorm_forward", "layernorm_backward",
    "spatial_groupnorm_forward", "spatial_groupnorm_backward",
    "dropout_forward", "dropout_backward", "svm_loss", "softmax_loss",
]


# --- affine, relu ---------------------------------------------------------------------

AFFINE = _bridge.op(jc.affine)
RELU = _bridge.op(jc.relu)


def affine_forward(x, w, b):
    """``x (N, d_1, ..., d_k)``, ``w (D, M)``, ``b (M,)`` -> ``(out (N, M), cache (x, w, b))``."""
    return _bridge.layer(AFFINE, _bridge.floating(x, w, b))


def affine_backward(dout, cache):
    """``dout (N, M)`` -> ``(dx, dw, db)`` in the shapes of x, w, b."""
    return tuple(_bridge.gradients(dout, cache, AFFINE, count=3))


def relu_forward(x):
    """``max(x, 0)`` -> ``(out, cache)``; the cache is x (a read-only copy), as CS231n's."""
    out, cache = _bridge.layer(RELU, _bridge.floating(x))
    return out, _bridge.SavedArray.of(cache[0], cache.saved)


def relu_backward(dout, cache):
    """``dx = dout * [x > 0]`` (0 at x == 0)."""
    if getattr(cache, "saved", None) is None:
        cache = (cache,)
    return _bridge.gradients(dout, cache, RELU, count=1)[0]


# --- convolution and max pooling ----------------------------------------------------------

def conv_op(conv_param, impl):
    return _bridge.op(jc.conv2d, stride=conv_param["stride"], pad=conv_param["pad"], impl=impl)


def conv_forward(x, w, b, conv_param, impl):
    """``(out, cache (x, w, b, conv_param))`` of ``jc.conv2d(impl=impl)``."""
    return _bridge.layer(conv_op(conv_param, impl), _bridge.floating(x, w, b), (conv_param,))


def conv_backward(dout, cache, impl):
    """``(dx, dw, db)`` by the impl's hand rule."""
    return tuple(_bridge.gradients(dout, cache, conv_op(cache[3], impl), count=3))


def conv_forward_naive(x, w, b, conv_param):
    """Convolution by direct sums over the kernel offsets (``impl="naive"``).

    Args:
      x: ``(N, C, H, W)``; w: ``(F, C, HH, WW)``; b: ``(F,)``.
      conv_param: ``{"stride": int, "pad": int}``.

    Returns:
      ``(out, cache)``: out ``(N, F, H', W')``, ``H' = 1 + (H + 2 pad - HH) // stride``;
      cache ``(x, w, b, conv_param)``.
    """
    return conv_forward(x, w, b, conv_param, "naive")


def conv_backward_naive(dout, cache):
    """``dout (N, F, H', W')`` -> ``(dx, dw, db)`` by the naive impl's hand rule."""
    return conv_backward(dout, cache, "naive")


def pool_op(pool_param):
    return _bridge.op(jc.max_pool2d, pool=(pool_param["pool_height"], pool_param["pool_width"]),
                      stride=pool_param["stride"])


def max_pool_forward_naive(x, pool_param):
    """Max pooling.

    Args:
      x: ``(N, C, H, W)``.
      pool_param: ``{"pool_height", "pool_width", "stride"}``.

    Returns:
      ``(out, cache)``: out ``(N, C, H', W')``, ``H' = 1 + (H - pool_height) // stride``;
      cache ``(x, pool_param)`` (and the winners' offsets, one byte per output).
    """
    return _bridge.layer(pool_op(pool_param), _bridge.floating(x), (pool_param,))


def max_pool_backward_naive(dout, cache):
    """Each window's gradient goes to its maximum (the first one on ties)."""
    return _bridge.gradients(dout, cache, pool_op(cache[1]), count=1)[0]


# --- dropout -------------------------------------------------------------------------------

def _dropout(x, seed, *, keep_prob, train):
    return jc.dropout(x, jax.random.key(seed), keep_prob=keep_prob, train=train)


def _is_real(value):
    return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))


def dropout_settings(dropout_param):
    """``(keep_prob, train, seed)`` from CS231n's dict, each checked: ``p`` a real number
    in (0, 1], ``mode`` "train"/"test", ``seed`` an integer in [0, 2**32) (NumPy's
    ``np.random.seed`` range)."""
    mode, p = dropout_param["mode"], dropout_param["p"]
    if mode not in ("train", "test"):
        raise ValueError(f'dropout_forward: dropout_param["mode"] must be "train" or "test", '
                         f"got {mode!r}")
    if not _is_real(p):
        raise TypeError(f'dropout_forward: dropout_param["p"] (the keep probability) must be '
                        f"a real number, got {p!r} of type {type(p).__name__}")
    if not 0 < p <= 1:
        raise ValueError(f'dropout_forward: dropout_param["p"] (the keep probability) must be '
                         f"in (0, 1], got {p!r}")
    if "seed" in dropout_param:
        seed = dropout_param["seed"]
        if not isinstance(seed, numbers.Integral) or isinstance(seed, (bool, np.bool_)):
            raise TypeError(f'dropout_forward: dropout_param["seed"] must be an integer, '
                            f"got {seed!r} of type {type(seed).__name__}")
        if not 0 <= seed < 2**32:
            raise ValueError(f'dropout_forward: dropout_param["seed"] must be in [0, 2**32) '
                             f"(as for np.random.seed), got {seed}")
    elif mode == "train":
        seed = np.random.randint(2**31)
    else:
        seed = 0        # no mask in test mode: leave NumPy's generator untouched
    return float(p), mode == "train", np.uint32(seed)


def dropout_forward(x, dropout_param):
    """Inverted dropout: keep each unit with probability ``p`` and scale by ``1/p``.

    Args:
      x: any shape.
      dropout_param: ``"p"`` (KEEP probability), ``"mode"`` (``"train"``/``"test"``),
        optional ``"seed"``: the same seed gives the same mask for inputs of the
        same shape and precision (float64 inputs draw in 64 bits, so their mask
        differs from a float32 input's). Without a seed the mask's seed is drawn
        from NumPy's global generator, so ``np.random.seed`` makes runs
        reproducible, as in CS231n.

    Returns:
      ``(out, cache)``; ``cache = (dropout_param, seed)``: where CS231n keeps the
      mask, the backward redraws it from the seed (the op keeps only its key).
    """
    keep_prob, train, seed = dropout_settings(dropout_param)
    (x,) = _bridge.floating(x)
    f = _bridge.op(_dropout, keep_prob=keep_prob, train=train)
    out, saved = _bridge.forward_saving(f, (x, seed), (0,))
    return out, _bridge.Cache((dropout_param, seed), saved)


def dropout_backward(dout, cache):
    """``dx = dout * mask / p`` in train mode, ``dout`` in test mode."""
    return _bridge.backward(cache.saved, dout)[0]


# --- losses ------------------------------------------------------------------------------

def check_labels(name, x, y):
    """``y`` as int32 labels for scores ``x (N, C)``, range-checked on the ORIGINAL array
    before any cast (int64 labels >= 2**32 must not wrap into valid ones). Other kinds
    (floats, wrong shapes) go on to the op's own check."""
    y = np.asarray(y)
    if not (np.issubdtype(y.dtype, np.integer) and x.ndim == 2):
        return y
    bad = (y < 0) | (y >= x.shape[1])
    if bad.any():
        index = np.unravel_index(np.argmax(bad), y.shape)
        where = index[0] if y.ndim == 1 else index
        raise ValueError(f"{name}: labels y must be in [0, {x.shape[1]}) for x.shape={x.shape}; "
                         f"y[{where}] = {y[index]}")
    return y.astype(np.int32)


def _loss_and_grad(x, y, *, loss):
    return jax.value_and_grad(loss)(x, y)


def _loss(loss, name, x, y):
    (x,) = _bridge.floating(x)
    y = check_labels(name, x, y)
    value, dx = _bridge.forward(_bridge.op(_loss_and_grad, loss=loss), x, y)
    return value[()], dx


def svm_loss(x, y):
    """Mean multiclass SVM loss of scores ``x (N, C)`` for labels ``y (N,)``
    -> ``(loss, dx)``, through svm_loss's hand rule."""
    return _loss(jc.svm_loss, "svm_loss", x, y)


def softmax_loss(x, y):
    """Mean softmax cross-entropy of scores ``x (N, C)`` for labels ``y (N,)``
    -> ``(loss, dx)``, through softmax_loss's hand rule."""
    return _loss(jc.softmax_loss, "softmax_loss", x, y)
