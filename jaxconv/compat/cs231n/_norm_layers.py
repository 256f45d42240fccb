"""CS231n's batch, layer and group normalisation layers (re-exported by ``layers``).

Caches hold read-only copies of the inputs and the op's residuals (its x_hat and
1/std), so writing to ``x`` between forward and backward changes nothing, as with
CS231n's caches of derived values.
"""
from __future__ import annotations

import numpy as np

import jaxconv as jc
from jaxconv.compat import _bridge


def _bn(x, gamma, beta, running_mean, running_var, **hyper):
    out, new_mean, new_var = jc.batch_norm(x, gamma, beta, running_mean, running_var, **hyper)
    return out, (new_mean, new_var)     # the running statistics: outputs, no gradient


def _bn_hyper(bn_param, op):
    mode = bn_param["mode"]
    if mode not in ("train", "test"):
        raise ValueError(f'{op}: Invalid forward batchnorm mode "{mode}"')
    return dict(train=mode == "train", momentum=bn_param.get("momentum", 0.9),
                eps=bn_param.get("eps", 1e-5), axis=1)


def batchnorm_arrays(x, gamma, beta, bn_param):
    """The five arrays of ``jc.batch_norm`` in one floating dtype; the running
    statistics start as zeros of the channel count, as in CS231n."""
    (x,) = _bridge.floating(x)
    channels = x.shape[1] if x.ndim >= 2 else 0
    running_mean = bn_param.get("running_mean", np.zeros(channels, dtype=x.dtype))
    running_var = bn_param.get("running_var", np.zeros(channels, dtype=x.dtype))
    return _bridge.floating(x, gamma, beta, running_mean, running_var)


def batchnorm_op(bn_param, op):
    return _bridge.op(_bn, **_bn_hyper(bn_param, op))


def store_running(bn_param, running):
    # CS231n stores the new running statistics back into the caller's dict.
    bn_param["running_mean"], bn_param["running_var"] = running


def _batchnorm(x, gamma, beta, bn_param, op):
    f = batchnorm_op(bn_param, op)
    arrays = batchnorm_arrays(x, gamma, beta, bn_param)
    out, running, cache = _bridge.layer(f, arrays, (dict(f.hyper),), (0, 1, 2), has_aux=True)
    store_running(bn_param, running)
    return out, cache


def _norm_backward(dout, cache):
    return tuple(_bridge.backward(cache.saved, dout))


def batchnorm_forward(x, gamma, beta, bn_param):
    """Batch normalisation of ``x (N, D)`` with ``gamma, beta (D,)``.

    Train mode normalises with the batch mean and biased variance and sets
    ``bn_param["running_mean"] = momentum * running_mean + (1 - momentum) * mean``
    (and likewise ``running_var``); test mode uses the running statistics.

    Returns:
      ``(out (N, D), cache)``; the cache holds copies of the inputs (the running
      statistics as they were), the hyperparameters, and the op's residuals.
    """
    return _batchnorm(x, gamma, beta, bn_param, "batchnorm_forward")


def batchnorm_backward(dout, cache):
    """``(dx, dgamma, dbeta)`` through batch_norm's hand rule (train or test mode)."""
    return _norm_backward(dout, cache)


def batchnorm_backward_alt(dout, cache):
    """The same gradients as :func:`batchnorm_backward`: jaxconv's rule already is
    the simplified closed form ``dx = (dx_hat - mean(dx_hat) - x_hat mean(dx_hat x_hat)) / std``."""
    return _norm_backward(dout, cache)


def spatial_batchnorm_forward(x, gamma, beta, bn_param):
    """Batch normalisation of ``x (N, C, H, W)`` per channel, ``gamma, beta (C,)``;
    ``bn_param`` as in :func:`batchnorm_forward` (running statistics ``(C,)``)."""
    return _batchnorm(x, gamma, beta, bn_param, "spatial_batchnorm_forward")


def spatial_batchnorm_backward(dout, cache):
    """``(dx, dgamma, dbeta)`` for :func:`spatial_batchnorm_forward`."""
    return _norm_backward(dout, cache)


def layernorm_op(ln_param):
    return _bridge.op(jc.layer_norm, eps=ln_param.get("eps", 1e-5))


def layernorm_forward(x, gamma, beta, ln_param):
    """Layer normalisation of each row of ``x (N, D)``, ``gamma, beta (D,)``;
    ``ln_param`` may hold ``"eps"`` (1e-5). Returns ``(out, cache)``."""
    f = layernorm_op(ln_param)
    return _bridge.layer(f, _bridge.floating(x, gamma, beta), (dict(f.hyper),))


def layernorm_backward(dout, cache):
    """``(dx, dgamma, dbeta)`` for :func:`layernorm_forward`."""
    return _norm_backward(dout, cache)


def _groupnorm(x, gamma, beta, *, groups, eps):
    # gamma and beta arrive as (1, C, 1, 1); reshaping inside the differentiated
    # function makes the pullback return dgamma and dbeta in that shape.
    return jc.group_norm(x, gamma.reshape(-1), beta.reshape(-1), groups=groups, eps=eps)


def spatial_groupnorm_forward(x, gamma, beta, G, gn_param):
    """Group normalisation of ``x (N, C, H, W)`` in ``G`` groups of channels.

    Args:
      gamma, beta: ``(1, C, 1, 1)``.
      G: number of groups, dividing C.
      gn_param: may hold ``"eps"`` (1e-5).

    Returns:
      ``(out (N, C, H, W), cache)``.
    """
    f = _bridge.op(_groupnorm, groups=G, eps=gn_param.get("eps", 1e-5))
    return _bridge.layer(f, _bridge.floating(x, gamma, beta), (dict(f.hyper),))


def spatial_groupnorm_backward(dout, cache):
    """``(dx, dgamma, dbeta)``, dgamma and dbeta of shape ``(1, C, 1, 1)``."""
    return _norm_backward(dout, cache)
