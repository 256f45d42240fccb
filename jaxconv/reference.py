"""Autodiff twins: every op of ``jaxconv`` with the same signature, the same
validation and the same forward semantics, but no custom rule. ``jax.grad`` of
these is what the hand-derived backwards are proven against; they are also the
ops to use for forward-mode differentiation (``jax.jvp``, ``jax.jacfwd``), which
JAX does not support through a ``custom_vjp``.

Each twin is written the most direct way XLA offers, independent of the custom
op's own formulation, so that agreement means something.
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxconv import _checks, _geometry
from jaxconv._conv import (FIXED_LAYOUTS, conv_config, conv_transpose_config, fixed_conv,
                           fixed_conv_transpose)
from jaxconv._dense import affine_inputs, relu_input
from jaxconv._dropout import dropout_config, keep_mask
from jaxconv._loss import loss_inputs, nan_unless_valid, svm_config
from jaxconv._norm import (accumulation_dtype, batch_norm_config, group_norm_config,
                           layer_norm_config)
from jaxconv._patches import _im2col_window
from jaxconv._patches import col2im as col2im_op
from jaxconv._reference_pool import (  # noqa: F401  (the pooling twins, re-exported)
    adaptive_avg_pool, adaptive_avg_pool1d, adaptive_avg_pool2d, adaptive_avg_pool3d,
    adaptive_max_pool, adaptive_max_pool1d, adaptive_max_pool2d, adaptive_max_pool3d, avg_pool,
    avg_pool1d, avg_pool2d, avg_pool3d, max_pool, max_pool1d, max_pool2d, max_pool3d)


def _lax_specs(lay):
    """lax's string dimension numbers for a layout: ``("NCHW", "OIHW", "NCHW")``,
    ``("NHWC", "HWIO", "NHWC")`` and their 1-D / 3-D kin."""
    space = lay.name.replace("N", "").replace("C", "")
    return lay.name, ("OI" + space if lay.channels_first else space + "IO"), lay.name


def _bias(out, b, lay):
    return out if b is None else out + b.reshape(lay.channel_shape())


def _conv(x, w, b, pad, c):
    win = c.window
    out = lax.conv_general_dilated(x, w, win.stride, pad if isinstance(pad, str) else win.pad,
                                   rhs_dilation=win.dilation,
                                   dimension_numbers=_lax_specs(c.layout),
                                   feature_group_count=c.groups)
    return _bias(out, b, c.layout)


def conv(x, w, b=None, *, stride=1, pad=0, dilation=1, groups=1, layout=None, impl="auto"):
    """Twin of :func:`jaxconv.conv`: ``lax.conv_general_dilated`` (``impl`` is
    validated, then ignored)."""
    x, w, b, c = conv_config(x, w, b, stride=stride, pad=pad, dilation=dilation, groups=groups,
                             layout=layout, impl=impl)
    return _conv(x, w, b, pad, c)


conv1d, conv2d, conv3d = (
    fixed_conv(n, layout, lambda c, x, w, b, pad: _conv(x, w, b, pad, c),
               "Twin of :func:`jaxconv.{name}`.") for n, layout in FIXED_LAYOUTS)


def _conv_transpose(x, w, b, output_pad, c):
    """PyTorch's definition, literally: the full transposed output (the ``jax.vjp`` of
    a VALID convolution), output_pad zeros appended, then the pads cropped off."""
    lay, win = c.layout, c.window
    shape = list(x.shape)
    shape[lay.channel_axis] = w.shape[lay.weight_in_axis] * c.groups
    for axis, i, s, d, k in zip(lay.spatial_axes, lay.spatial(x.shape), win.stride,
                                win.dilation, win.kernel):
        shape[axis] = (i - 1) * s + d * (k - 1) + 1
    _, pullback = jax.vjp(
        lambda z: lax.conv_general_dilated(z, w, win.stride, "VALID", rhs_dilation=win.dilation,
                                           dimension_numbers=_lax_specs(lay),
                                           feature_group_count=c.groups),
        jnp.zeros(shape, x.dtype))
    full = pullback(x)[0]
    output_pad = _geometry.per_dim("", "output_pad", output_pad, lay.ndim, minimum=0)
    config = [(0, 0, 0)] * x.ndim
    for axis, (lo, hi), q in zip(lay.spatial_axes, win.pad, output_pad):
        config[axis] = (-lo, q - hi, 0)
    return _bias(lax.pad(full, jnp.zeros((), full.dtype), config), b, lay)


def conv_transpose(x, w, b=None, *, stride=1, pad=0, output_pad=0, dilation=1, groups=1,
                   layout=None, impl="auto"):
    """Twin of :func:`jaxconv.conv_transpose`."""
    x, w, b, c = conv_transpose_config(x, w, b, stride=stride, pad=pad, output_pad=output_pad,
                                       dilation=dilation, groups=groups, layout=layout,
                                       impl=impl)
    return _conv_transpose(x, w, b, output_pad, c)


conv_transpose1d, conv_transpose2d, conv_transpose3d = (
    fixed_conv_transpose(n, layout, lambda c, x, w, b, output_pad: _conv_transpose(
        x, w, b, output_pad, c), "Twin of :func:`jaxconv.{name}`.") for n, layout in FIXED_LAYOUTS)


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


# --- patch utilities -----------------------------------------------------------------
# The seeds' fancy-indexing formulation (one gather; its adjoint one scatter-add),
# independent of jaxconv's strided slices: autodiff of im2col is a scatter-add and
# col2im is its adjoint, so each checks the other's hand-built counterpart.

def _patch_index(x_shape, win):
    """Channel, row and column of the padded input under each (row, column) of cols."""
    c, (kh, kw), (sh, sw), (dh, dw), (ho, wo) = (x_shape[1], win.kernel, win.stride,
                                                 win.dilation, win.out_size)
    channel, i, j = (a.reshape(-1, 1) for a in np.meshgrid(
        np.arange(c), np.arange(kh), np.arange(kw), indexing="ij"))
    y, x = (a.reshape(1, -1) for a in np.meshgrid(np.arange(ho), np.arange(wo), indexing="ij"))
    return channel, dh * i + sh * y, dw * j + sw * x


def im2col(x, kh: int, kw: int, *, stride=1, pad=0, dilation=1):
    """Twin of :func:`jaxconv.im2col`: ``x_padded[:, channel, row, col]`` (one gather)."""
    x = _checks.array("im2col", "x", x, ndim=4)
    win = _im2col_window("im2col", x.shape, kh, kw, stride, pad, dilation)
    xp = jnp.pad(x, ((0, 0), (0, 0), *win.pad))
    cols = xp[:, *_patch_index(x.shape, win)]                           # (N, C*KH*KW, L)
    return cols.transpose(1, 2, 0).reshape(cols.shape[1], cols.shape[2] * cols.shape[0])


def col2im(cols, x_shape, kh: int, kw: int, *, stride=1, pad=0, dilation=1):
    """Twin of :func:`jaxconv.col2im`: one scatter-add (``.at[].add``) of the columns."""
    cols = _checks.array("col2im", "cols", cols, ndim=2)
    jax.eval_shape(lambda c: col2im_op(c, x_shape, kh, kw, stride=stride, pad=pad,
                                       dilation=dilation), cols)
    x_shape = tuple(int(d) for d in x_shape)
    win = _im2col_window("col2im", x_shape, kh, kw, stride, pad, dilation)
    n, c, h, w = x_shape
    values = cols.reshape(cols.shape[0], math.prod(win.out_size), n).transpose(2, 0, 1)
    (top, bottom), (left, right) = win.pad
    xp = jnp.zeros((n, c, top + h + bottom, left + w + right), cols.dtype)
    xp = xp.at[:, *_patch_index(x_shape, win)].add(values)
    return xp[:, :, top:top + h, left:left + w]
