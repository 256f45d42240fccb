"""Autodiff twins: every op of ``jaxconv`` with the same signature, the same
validation and the same forward semantics, but no custom rule. ``jax.grad`` of
these is what the hand-derived backwards are proven against; they are also the
ops to use for forward-mode differentiation (``jax.jvp``, ``jax.jacfwd``), which
JAX does not support through a ``custom_vjp``.

Each twin is written the most direct way XLA offers, independent of the custom
op's own formulation, so that agreement means something.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxconv._adaptive_pool import adaptive_config
from jaxconv._conv import conv_config
from jaxconv._dense import affine_inputs, relu_input
from jaxconv._dropout import dropout_config, keep_mask
from jaxconv._loss import loss_inputs, nan_unless_valid, svm_config
from jaxconv._norm import (accumulation_dtype, batch_norm_config, group_norm_config,
                           layer_norm_config)
from jaxconv._pool import pool_config


def conv2d(x, w, b=None, *, stride=1, pad=0, layout="NCHW", impl="xla"):
    """Twin of :func:`jaxconv.conv2d` (``impl`` is validated, then ignored)."""
    x, w, b, c = conv_config(x, w, b, stride=stride, pad=pad, layout=layout, impl=impl)
    dims = ("NCHW", "OIHW", "NCHW") if layout == "NCHW" else ("NHWC", "HWIO", "NHWC")
    out = lax.conv_general_dilated(x, w, c.stride, c.pad,
                                   dimension_numbers=dims)
    if b is None:
        return out
    return out + (b[:, None, None] if layout == "NCHW" else b)


# --- pooling ---------------------------------------------------------------------------
# The twins pool with lax.reduce_window, whose gradient (select_and_scatter) sends a
# max window's gradient to its first maximum, as the custom ops do on ties.

def _reduce(x, c, init, reducer, window, stride, pads):
    dims, strides, padding = [1] * x.ndim, [1] * x.ndim, [(0, 0)] * x.ndim
    for axis, k, s, p in zip(c.layout.spatial_axes, window, stride, pads):
        dims[axis], strides[axis], padding[axis] = k, s, p
    return lax.reduce_window(x, np.array(init, x.dtype), reducer, dims, strides, padding)


def _to_reach(w):
    """Pads that make the padded input end where the last window does or later:
    ``(lo, hi)`` plus the ceil_mode overhang."""
    return [(lo, hi + max(0, -r)) for (lo, hi), r in zip(w.pad, w.remainder)]


def _max(op, ndim, x, pool, stride, pad, dilation, ceil_mode, layout):
    x, c = pool_config(op, x, pool=pool, stride=stride, pad=pad, dilation=dilation,
                       ceil_mode=ceil_mode, layout=layout, ndim=ndim)
    w = c.window
    if set(w.dilation) == {1}:
        return _reduce(x, c, -np.inf, lax.max, w.kernel, w.stride, _to_reach(w))
    # JAX has no VJP of a window-dilated reduce_window max: gather every window's taps
    # into contiguous blocks of K rows (jnp.take), then pool the blocks.
    config = [(0, 0)] * x.ndim
    for axis, p in zip(c.layout.spatial_axes, _to_reach(w)):
        config[axis] = p
    xp = jnp.pad(x, config, constant_values=-np.inf)
    for axis, o, k, s, d in zip(c.layout.spatial_axes, w.out_size, w.kernel, w.stride,
                                w.dilation):
        rows = np.arange(o)[:, None] * s + np.arange(k)[None, :] * d
        xp = jnp.take(xp, rows.ravel(), axis=axis)
    return _reduce(xp, c, -np.inf, lax.max, w.kernel, w.kernel, [(0, 0)] * w.ndim)


def max_pool(x, *, pool, stride=None, pad=0, dilation=1, ceil_mode=False, layout=None):
    """Twin of :func:`jaxconv.max_pool`."""
    return _max("max_pool", None, x, pool, stride, pad, dilation, ceil_mode, layout)


def max_pool1d(x, *, pool, stride=None, pad=0, dilation=1, ceil_mode=False, layout="NCW"):
    """Twin of :func:`jaxconv.max_pool1d`."""
    return _max("max_pool1d", 1, x, pool, stride, pad, dilation, ceil_mode, layout)


def max_pool2d(x, *, pool=2, stride=None, pad=0, dilation=1, ceil_mode=False, layout="NCHW"):
    """Twin of :func:`jaxconv.max_pool2d`."""
    return _max("max_pool2d", 2, x, pool, stride, pad, dilation, ceil_mode, layout)


def max_pool3d(x, *, pool, stride=None, pad=0, dilation=1, ceil_mode=False, layout="NCDHW"):
    """Twin of :func:`jaxconv.max_pool3d`."""
    return _max("max_pool3d", 3, x, pool, stride, pad, dilation, ceil_mode, layout)


def _avg(op, ndim, x, pool, stride, pad, ceil_mode, count_include_pad, divisor_override,
         layout):
    x, c = pool_config(op, x, pool=pool, stride=stride, pad=pad, ceil_mode=ceil_mode,
                       layout=layout, ndim=ndim, count_include_pad=count_include_pad,
                       divisor_override=divisor_override)
    w, acc = c.window, accumulation_dtype(x.dtype)
    total = _reduce(x.astype(acc), c, 0, lax.add, w.kernel, w.stride, _to_reach(w))
    if c.divisor_override is not None:
        return (total / c.divisor_override).astype(x.dtype)
    # the divisor: the same sums over ones that stand for the counted taps, the input
    # alone, or with count_include_pad the padded input (the overhang never counts)
    ones_shape = [1] * x.ndim
    for axis, n, (lo, hi) in zip(c.layout.spatial_axes, w.in_size, w.pad):
        ones_shape[axis] = lo + n + hi if c.count_include_pad else n
    pads = [(0, max(0, -r)) if c.count_include_pad else (lo, hi + max(0, -r))
            for (lo, hi), r in zip(w.pad, w.remainder)]
    count = _reduce(jnp.ones(ones_shape, acc), c, 0, lax.add, w.kernel, w.stride, pads)
    return (total / count).astype(x.dtype)


def avg_pool(x, *, pool, stride=None, pad=0, ceil_mode=False, count_include_pad=True,
             divisor_override=None, layout=None):
    """Twin of :func:`jaxconv.avg_pool`."""
    return _avg("avg_pool", None, x, pool, stride, pad, ceil_mode, count_include_pad,
                divisor_override, layout)


def avg_pool1d(x, *, pool, stride=None, pad=0, ceil_mode=False, count_include_pad=True,
               divisor_override=None, layout="NCW"):
    """Twin of :func:`jaxconv.avg_pool1d`."""
    return _avg("avg_pool1d", 1, x, pool, stride, pad, ceil_mode, count_include_pad,
                divisor_override, layout)


def avg_pool2d(x, *, pool=2, stride=None, pad=0, ceil_mode=False, count_include_pad=True,
               divisor_override=None, layout="NCHW"):
    """Twin of :func:`jaxconv.avg_pool2d`."""
    return _avg("avg_pool2d", 2, x, pool, stride, pad, ceil_mode, count_include_pad,
                divisor_override, layout)


def avg_pool3d(x, *, pool, stride=None, pad=0, ceil_mode=False, count_include_pad=True,
               divisor_override=None, layout="NCDHW"):
    """Twin of :func:`jaxconv.avg_pool3d`."""
    return _avg("avg_pool3d", 3, x, pool, stride, pad, ceil_mode, count_include_pad,
                divisor_override, layout)


def _adaptive(kind, op, ndim, x, out_size, layout):
    """One window at a time, one dim at a time (innermost first, so that a max's
    ties go to the first maximum in row-major order): slice, reduce, concatenate."""
    x, c = adaptive_config(op, x, out_size, layout=layout, ndim=ndim)
    y = x.astype(accumulation_dtype(x.dtype)) if kind == "avg" else x
    for axis, dim in reversed(list(zip(c.layout.spatial_axes, c.dims))):
        pieces = []
        for start, end in zip(dim.starts, dim.ends):
            piece = lax.slice_in_dim(y, start, end, axis=axis)
            if kind == "avg":
                pieces.append(jnp.mean(piece, axis=axis, keepdims=True))
            else:
                dims = [1] * y.ndim
                dims[axis] = end - start
                pieces.append(lax.reduce_window(piece, np.array(-np.inf, y.dtype), lax.max,
                                                dims, [1] * y.ndim, "VALID"))
        y = jnp.concatenate(pieces, axis=axis)
    return y.astype(x.dtype)


def adaptive_avg_pool(x, out_size, *, layout=None):
    """Twin of :func:`jaxconv.adaptive_avg_pool`."""
    return _adaptive("avg", "adaptive_avg_pool", None, x, out_size, layout)


def adaptive_avg_pool1d(x, out_size, *, layout="NCW"):
    """Twin of :func:`jaxconv.adaptive_avg_pool1d`."""
    return _adaptive("avg", "adaptive_avg_pool1d", 1, x, out_size, layout)


def adaptive_avg_pool2d(x, out_size, *, layout="NCHW"):
    """Twin of :func:`jaxconv.adaptive_avg_pool2d`."""
    return _adaptive("avg", "adaptive_avg_pool2d", 2, x, out_size, layout)


def adaptive_avg_pool3d(x, out_size, *, layout="NCDHW"):
    """Twin of :func:`jaxconv.adaptive_avg_pool3d`."""
    return _adaptive("avg", "adaptive_avg_pool3d", 3, x, out_size, layout)


def adaptive_max_pool(x, out_size, *, layout=None):
    """Twin of :func:`jaxconv.adaptive_max_pool`."""
    return _adaptive("max", "adaptive_max_pool", None, x, out_size, layout)


def adaptive_max_pool1d(x, out_size, *, layout="NCW"):
    """Twin of :func:`jaxconv.adaptive_max_pool1d`."""
    return _adaptive("max", "adaptive_max_pool1d", 1, x, out_size, layout)


def adaptive_max_pool2d(x, out_size, *, layout="NCHW"):
    """Twin of :func:`jaxconv.adaptive_max_pool2d`."""
    return _adaptive("max", "adaptive_max_pool2d", 2, x, out_size, layout)


def adaptive_max_pool3d(x, out_size, *, layout="NCDHW"):
    """Twin of :func:`jaxconv.adaptive_max_pool3d`."""
    return _adaptive("max", "adaptive_max_pool3d", 3, x, out_size, layout)


# --- dense, norms, dropout, losses ----------------------------------------------------
# Statistics and losses of half-precision inputs are computed in float32, as the
# custom ops do, so the twins agree with them in every dtype.

def affine(x, w, b):
    """Twin of :func:`jaxconv.affine`."""
    x, w, b = affine_inputs(x, w, b)
    return jnp.dot(x.reshape(x.shape[0], -1), w) + b


def relu(x):
    """Twin of :func:`jaxconv.relu` (``jax.nn.relu``: derivative 0 at 0)."""
    return jax.nn.relu(relu_input(x))


def batch_norm(x, gamma, beta, running_mean, running_var, *, train, momentum=0.9,
               eps=1e-5, axis=1):
    """Twin of :func:`jaxconv.batch_norm`; the running outputs are ``stop_gradient``-ed."""
    x, gamma, beta, running_mean, running_var, c = batch_norm_config(
        x, gamma, beta, running_mean, running_var, train=train, momentum=momentum,
        eps=eps, axis=axis)
    acc = accumulation_dtype(x.dtype)
    axes = tuple(i for i in range(x.ndim) if i != c.axis)
    shape = [-1 if i == c.axis else 1 for i in range(x.ndim)]
    xf = x.astype(acc)
    if train:
        mean, var = jnp.mean(xf, axis=axes), jnp.var(xf, axis=axes)
        new_mean = (c.momentum * running_mean + (1 - c.momentum) * mean).astype(running_mean.dtype)
        new_var = (c.momentum * running_var + (1 - c.momentum) * var).astype(running_var.dtype)
    else:
        mean, var = running_mean.astype(acc), running_var.astype(acc)
        new_mean, new_var = running_mean, running_var
    normalized = (xf - mean.reshape(shape)) / jnp.sqrt(var.reshape(shape) + c.eps)
    out = gamma.astype(acc).reshape(shape) * normalized + beta.astype(acc).reshape(shape)
    return (out.astype(x.dtype), lax.stop_gradient(new_mean), lax.stop_gradient(new_var))


def layer_norm(x, gamma, beta, *, eps=1e-5):
    """Twin of :func:`jaxconv.layer_norm`."""
    x, gamma, beta, c = layer_norm_config(x, gamma, beta, eps=eps)
    acc = accumulation_dtype(x.dtype)
    xf = x.astype(acc)
    axes = tuple(range(1, x.ndim))
    normalized = (xf - xf.mean(axes, keepdims=True)) / jnp.sqrt(xf.var(axes, keepdims=True) + c.eps)
    return (gamma.astype(acc) * normalized + beta.astype(acc)).astype(x.dtype)


def group_norm(x, gamma, beta, *, groups, eps=1e-5, layout="NCHW"):
    """Twin of :func:`jaxconv.group_norm` (NHWC is computed as NCHW, transposed)."""
    x, gamma, beta, c = group_norm_config(x, gamma, beta, groups=groups, eps=eps, layout=layout)
    acc = accumulation_dtype(x.dtype)
    xf = x.astype(acc) if layout == "NCHW" else jnp.transpose(x.astype(acc), (0, 3, 1, 2))
    n, ch, h, w = xf.shape
    xg = xf.reshape(n, groups, -1)
    normalized = ((xg - xg.mean(2, keepdims=True)) / jnp.sqrt(xg.var(2, keepdims=True) + c.eps))
    out = (gamma.astype(acc)[:, None, None] * normalized.reshape(n, ch, h, w)
           + beta.astype(acc)[:, None, None])
    out = out if layout == "NCHW" else jnp.transpose(out, (0, 2, 3, 1))
    return out.astype(x.dtype)


def dropout(x, key, *, keep_prob, train=True):
    """Twin of :func:`jaxconv.dropout`: the very same mask from the same key."""
    x, key, c = dropout_config(x, key, keep_prob=keep_prob, train=train)
    if c is None:
        return x
    mask = keep_mask(key, c.keep_prob, x.shape)
    return x * mask.astype(x.dtype) / c.keep_prob


def softmax_loss(scores, y):
    """Twin of :func:`jaxconv.softmax_loss` on ``jax.nn.log_softmax``."""
    scores, y = loss_inputs(scores, y, op="softmax_loss")
    acc = accumulation_dtype(scores.dtype)
    log_p = jax.nn.log_softmax(scores.astype(acc), axis=1)
    picked = log_p[jnp.arange(scores.shape[0]), y]
    valid = nan_unless_valid(y, scores.shape[1], acc)
    return (-jnp.mean(picked) * valid).astype(scores.dtype)


def svm_loss(scores, y, *, margin=1.0):
    """Twin of :func:`jaxconv.svm_loss` (the hinge's kink counts as flat)."""
    scores, y = loss_inputs(scores, y, op="svm_loss")
    c = svm_config(margin)
    acc = accumulation_dtype(scores.dtype)
    s = scores.astype(acc)
    n, classes = s.shape
    correct = s[jnp.arange(n), y]
    margins = s - correct[:, None] + c.margin
    margins = jnp.where(jnp.arange(classes)[None, :] == y[:, None], 0, margins)
    hinge = jnp.where(~(margins <= 0), margins, 0)      # NaN stays in, kink is flat
    valid = nan_unless_valid(y, classes, acc)
    return (jnp.sum(hinge) / n * valid).astype(scores.dtype)
