"""Batch, layer and group normalisation with one hand-derived backward.

All three standardise x over a set of axes ``A`` (``m`` elements per statistic)
and then scale and shift::

    x_hat = (x - mean_A(x)) / std,   std = sqrt(var_A(x) + eps)   (biased variance)
    out   = gamma * x_hat + beta

and all three share CS231n's simplified closed form (``batchnorm_backward_alt``),
with ``dx_hat = g * gamma``::

    dx = (1 / std) * (dx_hat - mean_A(dx_hat) - x_hat * mean_A(dx_hat * x_hat))

They differ only in ``A``: every axis but the feature axis (batch norm), every
axis but the batch axis (layer norm), or the channels of one group and the
spatial axes (group norm).

Residuals: ``x_hat`` (in x's dtype, as large as x) and ``1 / std`` (one value per
statistic), plus gamma, an input that is alive anyway; never x, the mean or the
variance, which the closed form does not need.

Low precision: for bfloat16/float16 inputs the statistics, ``x_hat`` and every
sum of the backward are computed in float32; outputs and gradients come back in
the input dtype (the stored ``x_hat`` is rounded to it).
"""
from __future__ import annotations

import dataclasses
import numbers

import jax.numpy as jnp
from jax import lax

from jaxconv import _checks, _geometry
from jaxconv._vjp import custom_vjp_op


def accumulation_dtype(dtype):
    """float32 for half-precision inputs, the input's own dtype otherwise."""
    return jnp.promote_types(dtype, jnp.float32)


def _param(op, name, p, shape, context):
    p = _checks.array(op, name, p)
    if tuple(p.shape) != tuple(shape):
        raise ValueError(f"{op}: {name} must have shape {tuple(shape)}, got "
                         f"{name}.shape={tuple(p.shape)} ({context})")
    return p


def _standardize(x, axes, eps):
    """``(x_hat, mean, var, 1/std)`` over ``axes`` in the accumulation dtype, keepdims."""
    xf = x.astype(accumulation_dtype(x.dtype))
    mean = xf.mean(axes, keepdims=True)
    centered = xf - mean
    var = jnp.mean(centered * centered, axes, keepdims=True)  # two passes: no cancellation
    inv_std = lax.rsqrt(var + eps)
    return centered * inv_std, mean, var, inv_std


def _closed_form_dx(dx_hat, x_hat, inv_std, axes):
    """CS231n's ``batchnorm_backward_alt``: the gradient through the statistics."""
    return inv_std * (dx_hat - dx_hat.mean(axes, keepdims=True)
                      - x_hat * jnp.mean(dx_hat * x_hat, axes, keepdims=True))


def _along(v, ndim, axis):
    """``(C,)`` reshaped to broadcast along ``axis`` of an ``ndim``-D array."""
    return v.reshape([-1 if i == axis else 1 for i in range(ndim)])


def _others(ndim, axis):
    return tuple(i for i in range(ndim) if i != axis)


# --- batch norm -------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class BatchNormConfig:
    axis: int          # the feature axis, non-negative
    train: bool
    momentum: float
    eps: float


def batch_norm_config(x, gamma, beta, running_mean, running_var, *, train, momentum,
                      eps, axis, op="batch_norm"):
    """Validate batch_norm's inputs (trace time) and build its static config."""
    x = _checks.array(op, "x", x)
    if x.ndim < 2:
        raise ValueError(f"{op}: x must be at least 2-D (N, D, ...), got x.shape={tuple(x.shape)}")
    if not isinstance(axis, numbers.Integral) or isinstance(axis, bool):
        raise TypeError(f"{op}: axis must be an int, got {axis!r}")
    if not -x.ndim <= axis < x.ndim:
        raise ValueError(f"{op}: axis={axis} is out of range for x.shape={tuple(x.shape)}")
    axis = int(axis) % x.ndim
    if not isinstance(train, bool):
        raise TypeError(f"{op}: train must be a Python bool (static), got {train!r}")
    momentum = _checks.real(op, "momentum", momentum, low=0.0, high=1.0)
    eps = _checks.real(op, "eps", eps, low=0.0, low_open=True)
    features = (x.shape[axis],)
    context = f"x.shape={tuple(x.shape)}, axis={axis}"
    gamma = _param(op, "gamma", gamma, features, context)
    beta = _param(op, "beta", beta, features, context)
    running_mean = _param(op, "running_mean", running_mean, features, context)
    running_var = _param(op, "running_var", running_var, features, context)
    _checks.same_dtype(op, x=x, gamma=gamma, beta=beta)
    _checks.same_dtype(op, running_mean=running_mean, running_var=running_var)
    config = BatchNormConfig(axis, train, momentum, eps)
    return x, gamma, beta, running_mean, running_var, config


def _running_update(c: BatchNormConfig, running, batch):
    dtype = jnp.promote_types(running.dtype, batch.dtype)
    new = c.momentum * running.astype(dtype) + (1 - c.momentum) * batch.astype(dtype)
    return new.astype(running.dtype)


def _bn_fwd(c: BatchNormConfig, x, gamma, beta, running_mean, running_var):
    acc = accumulation_dtype(x.dtype)
    ndim, axes = x.ndim, _others(x.ndim, c.axis)
    if c.train:
        x_hat, mean, var, inv_std = _standardize(x, axes, c.eps)
        new_mean = _running_update(c, running_mean, mean.reshape(-1))
        new_var = _running_update(c, running_var, var.reshape(-1))
    else:
        inv_std = _along(lax.rsqrt(running_var.astype(acc) + c.eps), ndim, c.axis)
        x_hat = (x.astype(acc) - _along(running_mean.astype(acc), ndim, c.axis)) * inv_std
        new_mean, new_var = running_mean, running_var
    out = _along(gamma.astype(acc), ndim, c.axis) * x_hat + _along(beta.astype(acc), ndim, c.axis)
    outputs = (out.astype(x.dtype), new_mean, new_var)
    return outputs, (x_hat.astype(x.dtype), inv_std, gamma)


def _bn_primal(c: BatchNormConfig, *arrays):
    return _bn_fwd(c, *arrays)[0]


def _bn_bwd(c: BatchNormConfig, residuals, cotangents):
    x_hat, inv_std, gamma = residuals
    g = cotangents[0]   # the running statistics carry no gradient: ignore theirs
    acc = inv_std.dtype
    ndim, axes = g.ndim, _others(g.ndim, c.axis)
    g, x_hat = g.astype(acc), x_hat.astype(acc)
    dbeta = g.sum(axes)
    dgamma = (g * x_hat).sum(axes)
    dx_hat = g * _along(gamma.astype(acc), ndim, c.axis)
    if c.train:   # the statistics depend on x; the running inputs are not used
        return _closed_form_dx(dx_hat, x_hat, inv_std, axes), dgamma, dbeta, None, None
    dx = dx_hat * inv_std
    d_mean = -dx.sum(axes)
    d_var = -0.5 * (dx_hat * x_hat).sum(axes) * (inv_std * inv_std).reshape(-1)
    return dx, dgamma, dbeta, d_mean, d_var


_batch_norm = custom_vjp_op(_bn_primal, _bn_fwd, _bn_bwd)


def batch_norm(x, gamma, beta, running_mean, running_var, *, train, momentum=0.9,
               eps=1e-5, axis=1):
    """Batch normalisation (plain and spatial) with a hand-derived backward.

    Normalises over every axis except ``axis``: ``(N, D)`` with ``axis=1`` is
    CS231n's batchnorm, ``(N, C, H, W)`` with ``axis=1`` its spatial batchnorm,
    NHWC with ``axis=3`` (or ``-1``).

    Args:
      x: ``(N, ...)`` floating, at least 2-D.
      gamma, beta: ``(C,)`` with ``C = x.shape[axis]``, x's dtype.
      running_mean, running_var: ``(C,)`` floating (may be kept in float32 next
        to a half-precision x).
      train: static bool. True: batch mean and BIASED batch variance, and the
        running statistics are updated. False: the running statistics are used.
      momentum: in ``[0, 1]``; ``running = momentum * running + (1 - momentum) * batch``.
      eps: added to the variance, ``> 0``.
      axis: the feature axis.

    Returns:
      ``(out, new_running_mean, new_running_var)``: out has x's shape and dtype;
      in eval mode the running statistics come back unchanged. The running
      outputs carry no gradient.

    Backward (``A`` = the axes reduced over, ``m`` elements each, ``dx_hat = g * gamma``)::

      dbeta = sum_A g      dgamma = sum_A g * x_hat
      train: dx = (1/std) (dx_hat - mean_A dx_hat - x_hat mean_A(dx_hat x_hat))
      eval:  dx = dx_hat / std,  d running_mean = -sum_A dx,
             d running_var = -1/2 sum_A(dx_hat x_hat) / std^2

    Residuals: ``x_hat`` (x's dtype) and ``1/std`` (``C`` values, float32 or wider)
    and gamma, never x, the mean or the variance.

    Differences from PyTorch (``torch.nn.functional.batch_norm``): the forward
    output and the gradients of train mode are identical. The running statistics
    differ: PyTorch's ``momentum=0.1`` weights the NEW batch value (ours, CS231n's
    ``0.9``, weights the OLD running value: ``momentum_torch = 1 - momentum``),
    and PyTorch stores the UNBIASED variance ``var * m / (m - 1)`` in
    ``running_var`` while this op stores the biased one. CS231n (and the models
    here) start ``running_var`` at zeros, PyTorch at ones.
    """
    *arrays, config = batch_norm_config(x, gamma, beta, running_mean, running_var,
                                        train=train, momentum=momentum, eps=eps, axis=axis)
    return _batch_norm(config, *arrays)


# --- layer norm -------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class LayerNormConfig:
    eps: float


def layer_norm_config(x, gamma, beta, *, eps, op="layer_norm"):
    """Validate layer_norm's inputs (trace time) and build its static config."""
    x = _checks.array(op, "x", x)
    if x.ndim < 2:
        raise ValueError(f"{op}: x must be at least 2-D (N, D, ...), got x.shape={tuple(x.shape)}")
    eps = _checks.real(op, "eps", eps, low=0.0, low_open=True)
    context = f"x.shape[1:] of x.shape={tuple(x.shape)}"
    gamma = _param(op, "gamma", gamma, x.shape[1:], context)
    beta = _param(op, "beta", beta, x.shape[1:], context)
    _checks.same_dtype(op, x=x, gamma=gamma, beta=beta)
    return x, gamma, beta, LayerNormConfig(eps)


def _ln_fwd(c: LayerNormConfig, x, gamma, beta):
    x_hat, _, _, inv_std = _standardize(x, tuple(range(1, x.ndim)), c.eps)
    acc = x_hat.dtype
    out = gamma.astype(acc) * x_hat + beta.astype(acc)
    return out.astype(x.dtype), (x_hat.astype(x.dtype), inv_std, gamma)


def _ln_primal(c: LayerNormConfig, x, gamma, beta):
    return _ln_fwd(c, x, gamma, beta)[0]


def _ln_bwd(c: LayerNormConfig, residuals, g):
    x_hat, inv_std, gamma = residuals
    acc = inv_std.dtype
    g, x_hat = g.astype(acc), x_hat.astype(acc)
    dx_hat = g * gamma.astype(acc)
    dx = _closed_form_dx(dx_hat, x_hat, inv_std, tuple(range(1, g.ndim)))
    return dx, (g * x_hat).sum(0), g.sum(0)


_layer_norm = custom_vjp_op(_ln_primal, _ln_fwd, _ln_bwd)


def layer_norm(x, gamma, beta, *, eps=1e-5):
    """Layer normalisation with a hand-derived backward.

    Each sample is standardised over all its non-batch axes; train and test
    behave the same (no running statistics).

    Args:
      x: ``(N, d1, ..., dk)`` floating, ``k >= 1``.
      gamma, beta: ``(d1, ..., dk)``, x's dtype.
      eps: added to the variance, ``> 0``.

    Returns:
      x's shape and dtype.

    Backward (``A`` = the axes of one sample, ``dx_hat = g * gamma``)::

      dbeta = sum_n g      dgamma = sum_n g * x_hat
      dx = (1/std) (dx_hat - mean_A dx_hat - x_hat mean_A(dx_hat x_hat))

    Residuals: ``x_hat`` (x's dtype), ``1/std`` (N values) and gamma.

    Same as ``torch.nn.functional.layer_norm(x, x.shape[1:], gamma, beta, eps)``.
    """
    x, gamma, beta, config = layer_norm_config(x, gamma, beta, eps=eps)
    return _layer_norm(config, x, gamma, beta)


# --- group norm -------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class GroupNormConfig:
    groups: int
    eps: float
    layout: str


def group_norm_config(x, gamma, beta, *, groups, eps, layout, op="group_norm"):
    """Validate group_norm's inputs (trace time) and build its static config."""
    layout = _checks.choice(op, "layout", layout, _geometry.LAYOUTS[2])
    x = _checks.array(op, "x", x, ndim=4)
    if not isinstance(groups, numbers.Integral) or isinstance(groups, bool):
        raise TypeError(f"{op}: groups must be an int, got {groups!r}")
    channels = x.shape[_geometry.Layout(layout).channel_axis]
    context = f"x.shape={tuple(x.shape)}, layout={layout!r}"
    if groups < 1 or channels % groups:
        raise ValueError(f"{op}: groups={groups} must be >= 1 and divide the {channels} "
                         f"channels ({context})")
    eps = _checks.real(op, "eps", eps, low=0.0, low_open=True)
    gamma = _param(op, "gamma", gamma, (channels,), context)
    beta = _param(op, "beta", beta, (channels,), context)
    _checks.same_dtype(op, x=x, gamma=gamma, beta=beta)
    return x, gamma, beta, GroupNormConfig(int(groups), eps, layout)


def _grouped(c: GroupNormConfig, x):
    """Split the channel axis into ``(groups, C // groups)``; returns the view and
    the axes one statistic spans (its group's channels and the spatial axes)."""
    if c.layout == "NCHW":
        n, ch, h, w = x.shape
        return x.reshape(n, c.groups, ch // c.groups, h, w), (2, 3, 4)
    n, h, w, ch = x.shape
    return x.reshape(n, h, w, c.groups, ch // c.groups), (1, 2, 4)


def _gn_fwd(c: GroupNormConfig, x, gamma, beta):
    xg, axes = _grouped(c, x)
    x_hat, _, _, inv_std = _standardize(xg, axes, c.eps)
    x_hat = x_hat.reshape(x.shape)
    acc, ch = x_hat.dtype, _geometry.Layout(c.layout).channel_axis
    out = _along(gamma.astype(acc), 4, ch) * x_hat + _along(beta.astype(acc), 4, ch)
    return out.astype(x.dtype), (x_hat.astype(x.dtype), inv_std, gamma)


def _gn_primal(c: GroupNormConfig, x, gamma, beta):
    return _gn_fwd(c, x, gamma, beta)[0]


def _gn_bwd(c: GroupNormConfig, residuals, g):
    x_hat, inv_std, gamma = residuals
    acc, ch = inv_std.dtype, _geometry.Layout(c.layout).channel_axis
    g, x_hat = g.astype(acc), x_hat.astype(acc)
    per_channel = _others(4, ch)
    dgamma, dbeta = (g * x_hat).sum(per_channel), g.sum(per_channel)
    dx_hat, axes = _grouped(c, g * _along(gamma.astype(acc), 4, ch))
    dx = _closed_form_dx(dx_hat, _grouped(c, x_hat)[0], inv_std, axes)
    return dx.reshape(g.shape), dgamma, dbeta


_group_norm = custom_vjp_op(_gn_primal, _gn_fwd, _gn_bwd)


def group_norm(x, gamma, beta, *, groups, eps=1e-5, layout="NCHW"):
    """Group normalisation with a hand-derived backward.

    The ``C`` channels are split into ``groups`` consecutive groups; each sample
    is standardised over the channels of a group and all spatial positions,
    then scaled and shifted per channel.

    Args:
      x: ``(N, C, H, W)``, or ``(N, H, W, C)`` with ``layout="NHWC"``.
      gamma, beta: ``(C,)``, x's dtype.
      groups: static int ``>= 1`` dividing ``C``.
      eps: added to the variance, ``> 0``.

    Returns:
      x's shape and dtype.

    Backward (``A`` = one group of one sample, ``dx_hat = g * gamma``)::

      dbeta[c] = sum_{n,h,w} g      dgamma[c] = sum_{n,h,w} g * x_hat
      dx = (1/std) (dx_hat - mean_A dx_hat - x_hat mean_A(dx_hat x_hat))

    Residuals: ``x_hat`` (x's dtype), ``1/std`` (``N * groups`` values) and gamma.

    Same as ``torch.nn.functional.group_norm(x, groups, gamma, beta, eps)`` for
    NCHW. CS231n's ``spatial_groupnorm_forward`` takes gamma as ``(1, C, 1, 1)``;
    here it is ``(C,)``.
    """
    x, gamma, beta, config = group_norm_config(x, gamma, beta, groups=groups, eps=eps,
                                               layout=layout)
    return _group_norm(config, x, gamma, beta)
