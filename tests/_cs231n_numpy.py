"""CS231n's NumPy layers, the oracle and the benchmark's baseline: the formulas of seed 002
(affine, relu, softmax, batch/layer norm, conv_forward_strides / conv_backward_strides,
max_pool_forward_reshape / backward, the update rules) and CS231n's layer_utils sandwiches.
The one stand-in: CS231n's Cython ``col2im_6d`` is a NumPy loop over kernel offsets here.
``optim`` is a namespace of the update rules, as ``from cs231n import optim`` gives."""
import pathlib
import types

import numpy as np


def affine_forward(x, w, b):
    return x.reshape(x.shape[0], -1).dot(w) + b, (x, w, b)


def affine_backward(dout, cache):
    x, w, b = cache
    return dout.dot(w.T).reshape(x.shape), x.reshape(x.shape[0], -1).T.dot(dout), dout.sum(0)


def relu_forward(x):
    return np.maximum(0, x), x


def relu_backward(dout, cache):
    return dout * (cache > 0)


def softmax_loss(x, y):
    shifted = x - np.max(x, axis=1, keepdims=True)
    log_probs = shifted - np.log(np.sum(np.exp(shifted), axis=1, keepdims=True))
    N = x.shape[0]
    loss = -np.sum(log_probs[np.arange(N), y]) / N
    dx = np.exp(log_probs)
    dx[np.arange(N), y] -= 1
    return loss, dx / N


def _norm_forward(x, gamma, beta, eps, axis):
    mu = x.mean(axis=axis, keepdims=True)
    var = x.var(axis=axis, keepdims=True)
    std = np.sqrt(var + eps)
    x_hat = (x - mu) / std
    return gamma * x_hat + beta, (x_hat, std, gamma, axis), mu, var


def _norm_backward(dout, cache):
    x_hat, std, gamma, axis = cache
    dgamma, dbeta = (dout * x_hat).sum(0), dout.sum(0)        # gamma is per feature
    dx_hat = dout * gamma
    dx = (dx_hat - dx_hat.mean(axis, keepdims=True)
          - x_hat * (dx_hat * x_hat).mean(axis, keepdims=True)) / std
    return dx, dgamma, dbeta


def batchnorm_forward(x, gamma, beta, bn_param):
    mode, eps, momentum = bn_param["mode"], bn_param.get("eps", 1e-5), bn_param.get("momentum", 0.9)
    D = x.shape[1]
    running_mean = bn_param.get("running_mean", np.zeros(D, dtype=x.dtype))
    running_var = bn_param.get("running_var", np.zeros(D, dtype=x.dtype))
    if mode == "train":
        out, cache, mu, var = _norm_forward(x, gamma, beta, eps, 0)
        running_mean = momentum * running_mean + (1 - momentum) * mu[0]
        running_var = momentum * running_var + (1 - momentum) * var[0]
    else:
        out, cache = gamma * (x - running_mean) / np.sqrt(running_var + eps) + beta, None
    bn_param["running_mean"], bn_param["running_var"] = running_mean, running_var
    return out, cache


def layernorm_forward(x, gamma, beta, ln_param):
    out, cache, _, _ = _norm_forward(x, gamma, beta, ln_param.get("eps", 1e-5), 1)
    return out, cache


batchnorm_backward = layernorm_backward = _norm_backward


def _col2im_6d(cols, N, C, H, W, HH, WW, pad, stride):
    """The NumPy stand-in for CS231n's Cython col2im_6d: cols (C, HH, WW, N, Ho, Wo)."""
    x_padded = np.zeros((N, C, H + 2 * pad, W + 2 * pad), dtype=cols.dtype)
    _, _, _, _, out_h, out_w = cols.shape
    for i in range(HH):
        for j in range(WW):
            x_padded[:, :, i:i + stride * out_h:stride, j:j + stride * out_w:stride] += \
                cols[:, i, j].transpose(1, 0, 2, 3)
    return x_padded[:, :, pad:pad + H, pad:pad + W]


def dropout_forward(x, dropout_param):
    p, mode = dropout_param["p"], dropout_param["mode"]
    if "seed" in dropout_param:
        np.random.seed(dropout_param["seed"])
    mask = None
    if mode == "train":
        mask = (np.random.rand(*x.shape) < p) / p
        out = x * mask
    else:
        out = x
    return out.astype(x.dtype, copy=False), (dropout_param, mask)


def dropout_backward(dout, cache):
    dropout_param, mask = cache
    return dout * mask if dropout_param["mode"] == "train" else dout


def conv_forward_strides(x, w, b, conv_param):
    N, C, H, W = x.shape
    F, _, HH, WW = w.shape
    stride, pad = conv_param["stride"], conv_param["pad"]
    x_padded = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)), mode="constant")
    H += 2 * pad
    W += 2 * pad
    out_h, out_w = (H - HH) // stride + 1, (W - WW) // stride + 1
    shape = (C, HH, WW, N, out_h, out_w)
    strides = x.itemsize * np.array((H * W, W, 1, C * H * W, stride * W, stride))
    x_cols = np.ascontiguousarray(np.lib.stride_tricks.as_strided(x_padded, shape, strides))
    x_cols.shape = (C * HH * WW, N * out_h * out_w)
    res = w.reshape(F, -1).dot(x_cols) + b.reshape(-1, 1)
    res.shape = (F, N, out_h, out_w)
    return np.ascontiguousarray(res.transpose(1, 0, 2, 3)), (x, w, b, conv_param, x_cols)


def conv_backward_strides(dout, cache):
    x, w, b, conv_param, x_cols = cache
    stride, pad = conv_param["stride"], conv_param["pad"]
    N, C, H, W = x.shape
    F, _, HH, WW = w.shape
    _, _, out_h, out_w = dout.shape
    db = np.sum(dout, axis=(0, 2, 3))
    dout_reshaped = dout.transpose(1, 0, 2, 3).reshape(F, -1)
    dw = dout_reshaped.dot(x_cols.T).reshape(w.shape)
    dx_cols = w.reshape(F, -1).T.dot(dout_reshaped)
    dx_cols.shape = (C, HH, WW, N, out_h, out_w)
    return _col2im_6d(dx_cols, N, C, H, W, HH, WW, pad, stride), dw, db


conv_forward_fast, conv_backward_fast = conv_forward_strides, conv_backward_strides


def max_pool_forward_fast(x, pool_param):
    """The reshape method (square pools that tile the input, as in the classifiers)."""
    N, C, H, W = x.shape
    p = pool_param["pool_height"]
    x_reshaped = x.reshape(N, C, H // p, p, W // p, p)
    out = x_reshaped.max(axis=3).max(axis=4)
    return out, (x, x_reshaped, out)


def max_pool_backward_fast(dout, cache):
    x, x_reshaped, out = cache
    dx_reshaped = np.zeros_like(x_reshaped)
    mask = x_reshaped == out[:, :, :, np.newaxis, :, np.newaxis]
    dout_broadcast, _ = np.broadcast_arrays(dout[:, :, :, np.newaxis, :, np.newaxis], dx_reshaped)
    dx_reshaped[mask] = dout_broadcast[mask]
    dx_reshaped /= np.sum(mask, axis=(3, 5), keepdims=True)
    return dx_reshaped.reshape(x.shape)


# --- layer_utils --------------------------------------------------------------------------

def affine_relu_forward(x, w, b):
    a, fc_cache = affine_forward(x, w, b)
    out, relu_cache = relu_forward(a)
    return out, (fc_cache, relu_cache)


def affine_relu_backward(dout, cache):
    fc_cache, relu_cache = cache
    return affine_backward(relu_backward(dout, relu_cache), fc_cache)


def _affine_norm_relu_forward(norm_forward, x, w, b, gamma, beta, param):
    a, fc_cache = affine_forward(x, w, b)
    n, norm_cache = norm_forward(a, gamma, beta, param)
    out, relu_cache = relu_forward(n)
    return out, (fc_cache, norm_cache, relu_cache)


def _affine_norm_relu_backward(dout, cache):
    fc_cache, norm_cache, relu_cache = cache
    dn, dgamma, dbeta = _norm_backward(relu_backward(dout, relu_cache), norm_cache)
    return (*affine_backward(dn, fc_cache), dgamma, dbeta)


def affine_bn_relu_forward(x, w, b, gamma, beta, bn_param):
    return _affine_norm_relu_forward(batchnorm_forward, x, w, b, gamma, beta, bn_param)


def affine_ln_relu_forward(x, w, b, gamma, beta, ln_param):
    return _affine_norm_relu_forward(layernorm_forward, x, w, b, gamma, beta, ln_param)


affine_bn_relu_backward = affine_ln_relu_backward = _affine_norm_relu_backward


def conv_relu_pool_forward(x, w, b, conv_param, pool_param):
    a, conv_cache = conv_forward_fast(x, w, b, conv_param)
    s, relu_cache = relu_forward(a)
    out, pool_cache = max_pool_forward_fast(s, pool_param)
    return out, (conv_cache, relu_cache, pool_cache)


def conv_relu_pool_backward(dout, cache):
    conv_cache, relu_cache, pool_cache = cache
    ds = max_pool_backward_fast(dout, pool_cache)
    return conv_backward_fast(relu_backward(ds, relu_cache), conv_cache)


# --- optim (seed 002's rules; sgd in place) --------------------------------------------------

def sgd(w, dw, config=None):
    config = {} if config is None else config
    config.setdefault("learning_rate", 1e-2)
    w -= config["learning_rate"] * dw
    return w, config


def sgd_momentum(w, dw, config=None):
    config = {} if config is None else config
    config.setdefault("learning_rate", 1e-2)
    config.setdefault("momentum", 0.9)
    v = config.get("velocity", np.zeros_like(w))
    v = config["momentum"] * v - config["learning_rate"] * dw
    config["velocity"] = v
    return w + v, config


def rmsprop(w, dw, config=None):
    config = {} if config is None else config
    config.setdefault("learning_rate", 1e-2)
    config.setdefault("decay_rate", 0.99)
    config.setdefault("epsilon", 1e-8)
    config.setdefault("cache", np.zeros_like(w))
    cache = config["decay_rate"] * config["cache"] + (1 - config["decay_rate"]) * dw ** 2
    config["cache"] = cache
    return w - config["learning_rate"] * dw / (np.sqrt(cache) + config["epsilon"]), config


def adam(w, dw, config=None):
    config = {} if config is None else config
    for key, value in (("learning_rate", 1e-3), ("beta1", 0.9), ("beta2", 0.999),
                       ("epsilon", 1e-8), ("t", 0)):
        config.setdefault(key, value)
    config.setdefault("m", np.zeros_like(w))
    config.setdefault("v", np.zeros_like(w))
    config["t"] = t = config["t"] + 1
    config["m"] = m = config["beta1"] * config["m"] + (1 - config["beta1"]) * dw
    config["v"] = v = config["beta2"] * config["v"] + (1 - config["beta2"]) * dw ** 2
    m_hat, v_hat = m / (1 - config["beta1"] ** t), v / (1 - config["beta2"] ** t)
    return w - config["learning_rate"] * m_hat / (np.sqrt(v_hat) + config["epsilon"]), config


optim = types.SimpleNamespace(sgd=sgd, sgd_momentum=sgd_momentum, rmsprop=rmsprop, adam=adam)


def client_on(modules):
    """The classes of tests/cs231n_client with their import lines pointed elsewhere:
    ``modules["layers"]`` for the layer star imports, ``modules["optim"]`` for
    ``from ... import optim``. Returns {class name: class}."""
    root = pathlib.Path(__file__).parent / "cs231n_client"
    namespace = {}
    for name in ("classifiers/fc_net.py", "classifiers/cnn.py", "solver.py"):
        source = (root / name).read_text()
        for module in ("layers", "fast_layers", "layer_utils"):
            source = source.replace(f"from jaxconv.compat.cs231n.{module} import *",
                                    f"from {modules['layers']} import *")
        source = source.replace("from jaxconv.compat.cs231n import optim",
                                f"from {modules['optim']} import optim")
        module_namespace = {"__name__": f"client_on.{name}"}
        exec(compile(source, str(root / name), "exec"), module_namespace)
        namespace.update({k: v for k, v in module_namespace.items() if isinstance(v, type)})
    return namespace


def client_on_numpy():
    """The classes of tests/cs231n_client run on these NumPy layers."""
    return client_on({"layers": "_cs231n_numpy", "optim": "_cs231n_numpy"})
