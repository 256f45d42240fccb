"""CS231n's ``cs231n/layer_utils.py``: the "sandwich" layers the classifiers use.

``from jaxconv.compat.cs231n.layer_utils import *`` brings what CS231n's does: every
name of ``layers`` and ``fast_layers`` (its own star imports), ``np``, and the
sandwiches, forward and backward, with CS231n's signatures:

    affine_relu, affine_bn_relu, affine_ln_relu, conv_relu, conv_relu_pool,
    conv_bn_relu, conv_bn_relu_pool

A sandwich is the compat layers' ops composed into ONE jit-compiled forward (which
keeps every op's custom_vjp residuals) and ONE backward (the ops' hand rules chained);
numbers equal the layer-by-layer composition up to float rounding, at a third of the
per-call overhead. Caches hold read-only copies of the inputs and the residuals; a
cache built the CS231n way, e.g. ``(fc_cache, relu_cache)`` from the compat layers, is
also accepted and backpropagated layer by layer, as CS231n's code does.
``conv_bn_relu_pool`` is not in CS231n's file; it is the common student addition with
``conv_bn_relu``'s argument order plus ``pool_param`` last.
"""
from __future__ import annotations

import numpy as np

import jaxconv as jc
from jaxconv.compat import _bridge
from jaxconv.compat.cs231n import _norm_layers as _norm
from jaxconv.compat.cs231n import fast_layers as _fast
from jaxconv.compat.cs231n import layers as _layers
from jaxconv.compat.cs231n.fast_layers import *  # noqa: F401,F403  (as CS231n's star imports)
from jaxconv.compat.cs231n.layers import *  # noqa: F401,F403

_SANDWICHES = ["affine_relu", "affine_bn_relu", "affine_ln_relu", "conv_relu", "conv_relu_pool",
               "conv_bn_relu", "conv_bn_relu_pool"]
__all__ = sorted(set(_layers.__all__) | set(_fast.__all__)
                 | {f"{s}_{d}" for s in _SANDWICHES for d in ("forward", "backward")})


# --- the composed functions (static hyperparameters by keyword) -----------------------------

def _conv(x, w, b, stride, pad):
    return jc.conv2d(x, w, b, stride=stride, pad=pad, impl="auto")


def _pool(a, pool, pool_stride):
    return jc.max_pool2d(a, pool=pool, stride=pool_stride) if pool else a


def _affine_relu(x, w, b):
    return jc.relu(jc.affine(x, w, b))


def _affine_ln_relu(x, w, b, gamma, beta, *, eps):
    return jc.relu(jc.layer_norm(jc.affine(x, w, b), gamma, beta, eps=eps))


def _affine_bn_relu(x, w, b, gamma, beta, mean, var, **bn):
    out, new_mean, new_var = jc.batch_norm(jc.affine(x, w, b), gamma, beta, mean, var, **bn)
    return jc.relu(out), (new_mean, new_var)


def _conv_relu_pool(x, w, b, *, stride, pad, pool=None, pool_stride=None):
    return _pool(jc.relu(_conv(x, w, b, stride, pad)), pool, pool_stride)


def _conv_bn_relu_pool(x, w, b, gamma, beta, mean, var, *, stride, pad, pool=None,
                       pool_stride=None, **bn):
    out, new_mean, new_var = jc.batch_norm(_conv(x, w, b, stride, pad), gamma, beta,
                                           mean, var, **bn)
    return _pool(jc.relu(out), pool, pool_stride), (new_mean, new_var)


def _conv_hyper(conv_param, pool_param=None):
    hyper = dict(stride=conv_param["stride"], pad=conv_param["pad"])
    if pool_param is not None:
        hyper.update(pool=(pool_param["pool_height"], pool_param["pool_width"]),
                     pool_stride=pool_param["stride"])
    return hyper


def _bn_sandwich(fn, x, w, b, gamma, beta, bn_param, op, **hyper):
    """Forward of a sandwich with batch norm: the running statistics come out as aux
    and go into ``bn_param``, as ``batchnorm_forward`` does."""
    hyper.update(_norm.batchnorm_op(bn_param, op).hyper)
    x, w, b = _bridge.floating(x, w, b)
    channels = w.shape[-1] if w.ndim == 2 else w.shape[0]     # affine (D, M); conv (F, ...)
    stats = {k: bn_param.get(k, np.zeros(channels, x.dtype)) for k in ("running_mean", "running_var")}
    arrays = _bridge.floating(x, w, b, gamma, beta, stats["running_mean"], stats["running_var"])
    f = _bridge.op(fn, **hyper)
    out, running, cache = _bridge.layer(f, arrays, wrt=(0, 1, 2, 3, 4), has_aux=True)
    _norm.store_running(bn_param, running)
    return out, cache


def _layerwise(cache):
    """True for a cache built the CS231n way (a tuple of the layers' caches)."""
    return getattr(cache, "saved", None) is None


# --- affine sandwiches ------------------------------------------------------------------------

def affine_relu_forward(x, w, b):
    """``relu(x @ w + b)`` -> ``(out, cache)``."""
    return _bridge.layer(_bridge.op(_affine_relu), _bridge.floating(x, w, b))


def affine_relu_backward(dout, cache):
    """``(dx, dw, db)``."""
    if _layerwise(cache):
        fc_cache, relu_cache = cache
        return _layers.affine_backward(_layers.relu_backward(dout, relu_cache), fc_cache)
    return tuple(_bridge.backward(cache.saved, dout))


def affine_bn_relu_forward(x, w, b, gamma, beta, bn_param):
    """``relu(batchnorm(x @ w + b))``; ``bn_param`` as in ``batchnorm_forward`` (its
    running statistics updated in place)."""
    return _bn_sandwich(_affine_bn_relu, x, w, b, gamma, beta, bn_param, "affine_bn_relu_forward")


def _norm_relu_backward(dout, cache, first_backward=_layers.affine_backward):
    """``{affine, conv} - {batch, layer} norm - relu``, fused or layer by layer."""
    if _layerwise(cache):
        first_cache, norm_cache, relu_cache = cache
        # every norm cache carries its residuals: one backward applies any of them
        da, dgamma, dbeta = _layers.batchnorm_backward(
            _layers.relu_backward(dout, relu_cache), norm_cache)
        return (*first_backward(da, first_cache), dgamma, dbeta)
    return tuple(_bridge.backward(cache.saved, dout))


def affine_bn_relu_backward(dout, cache):
    """``(dx, dw, db, dgamma, dbeta)``."""
    return _norm_relu_backward(dout, cache)


def affine_ln_relu_forward(x, w, b, gamma, beta, ln_param):
    """``relu(layernorm(x @ w + b))``; ``ln_param`` may hold ``"eps"``."""
    f = _bridge.op(_affine_ln_relu, eps=ln_param.get("eps", 1e-5))
    return _bridge.layer(f, _bridge.floating(x, w, b, gamma, beta))


def affine_ln_relu_backward(dout, cache):
    """``(dx, dw, db, dgamma, dbeta)``."""
    return _norm_relu_backward(dout, cache)


# --- convolution sandwiches (conv_forward_fast's convolution) ----------------------------------

def conv_relu_forward(x, w, b, conv_param):
    """``relu(conv(x, w, b))`` -> ``(out, cache)``."""
    f = _bridge.op(_conv_relu_pool, **_conv_hyper(conv_param))
    return _bridge.layer(f, _bridge.floating(x, w, b), (conv_param,))


def conv_relu_backward(dout, cache):
    """``(dx, dw, db)``."""
    if _layerwise(cache):
        conv_cache, relu_cache = cache
        return _fast.conv_backward_fast(_layers.relu_backward(dout, relu_cache), conv_cache)
    return tuple(_bridge.backward(cache.saved, dout))


def conv_relu_pool_forward(x, w, b, conv_param, pool_param):
    """``max_pool(relu(conv(x, w, b)))`` -> ``(out, cache)``."""
    f = _bridge.op(_conv_relu_pool, **_conv_hyper(conv_param, pool_param))
    return _bridge.layer(f, _bridge.floating(x, w, b), (conv_param, pool_param))


def conv_relu_pool_backward(dout, cache):
    """``(dx, dw, db)``."""
    if _layerwise(cache):
        conv_cache, relu_cache, pool_cache = cache
        ds = _fast.max_pool_backward_fast(dout, pool_cache)
        return _fast.conv_backward_fast(_layers.relu_backward(ds, relu_cache), conv_cache)
    return tuple(_bridge.backward(cache.saved, dout))


def conv_bn_relu_forward(x, w, b, gamma, beta, conv_param, bn_param):
    """``relu(spatial_batchnorm(conv(x, w, b)))`` -> ``(out, cache)``."""
    return _bn_sandwich(_conv_bn_relu_pool, x, w, b, gamma, beta, bn_param,
                        "conv_bn_relu_forward", **_conv_hyper(conv_param))


def conv_bn_relu_backward(dout, cache):
    """``(dx, dw, db, dgamma, dbeta)``."""
    return _norm_relu_backward(dout, cache, _fast.conv_backward_fast)


def conv_bn_relu_pool_forward(x, w, b, gamma, beta, conv_param, bn_param, pool_param):
    """``max_pool(relu(spatial_batchnorm(conv(x, w, b))))`` -> ``(out, cache)``."""
    return _bn_sandwich(_conv_bn_relu_pool, x, w, b, gamma, beta, bn_param,
                        "conv_bn_relu_pool_forward", **_conv_hyper(conv_param, pool_param))


def conv_bn_relu_pool_backward(dout, cache):
    """``(dx, dw, db, dgamma, dbeta)``."""
    if _layerwise(cache):
        conv_cache, bn_cache, relu_cache, pool_cache = cache
        ds = _fast.max_pool_backward_fast(dout, pool_cache)
        da, dgamma, dbeta = _layers.spatial_batchnorm_backward(
            _layers.relu_backward(ds, relu_cache), bn_cache)
        return (*_fast.conv_backward_fast(da, conv_cache), dgamma, dbeta)
    return tuple(_bridge.backward(cache.saved, dout))
