"""CS231n's layers, update rules and gradient-check helpers, computed by jaxconv.

A drop-in for ``cs231n/layers.py``, ``fast_layers.py``, ``optim.py``,
``im2col.py`` and ``gradient_check.py``: same names, signatures, caches and
dict conventions, NumPy in and NumPy out::

    from jaxconv.compat.cs231n import *

    out, cache = conv_forward_naive(x, w, b, {"stride": 1, "pad": 1})
    dx, dw, db = conv_backward_naive(dout, cache)
    dx_num = eval_numerical_gradient_array(
        lambda x: conv_forward_naive(x, w, b, conv_param)[0], x, dout)
    print(rel_error(dx, dx_num))                # ~1e-9 in float64

How it is computed: every forward calls a jaxconv op (jit-compiled, one
executable per shape); every backward applies ``jax.vjp`` of that op at the
inputs kept in the cache, which runs the op's hand-derived ``custom_vjp`` rule
(the forward is recomputed, the math is written once). The update rules are
one step of the matching :mod:`jaxconv.optim` transformation, with the config
dict's moments as its state. Results are NumPy
arrays in the inputs' dtype; float64 runs in float64 without touching the
global ``jax_enable_x64`` setting (see :mod:`jaxconv.compat`).

Conventions kept from CS231n:

* ``conv_param = {"stride", "pad"}``, ``pool_param = {"pool_height", "pool_width",
  "stride"}``, caches ``(x, w, b, conv_param)`` and ``(x, pool_param)``;
* ``bn_param``: ``"mode"`` (``"train"``/``"test"``, required), ``"eps"`` (1e-5),
  ``"momentum"`` (0.9), and ``"running_mean"``/``"running_var"``, created as
  zeros and replaced in the dict after every call (as CS231n does);
* ``dropout_param``: ``"p"`` is the KEEP probability, ``"mode"``, optional ``"seed"``;
* update rules ``(w, dw, config) -> (next_w, config)``, the config dict filled
  with CS231n's defaults and updated with the new moments;
* ``eval_numerical_gradient*`` perturb ``x`` IN PLACE and call ``f(x)``, so a
  lambda that ignores its argument and reads the same array still works.

Where it differs: output sizes round down when a window does not tile the
input (CS231n's asserts would fire); the fast functions keep the naive
functions' caches (no patch matrix is stored); dropout masks come from
``jax.random`` (the same ``seed`` gives the same mask, for one dtype, but not
NumPy's mask); ``sgd`` returns a new array instead of updating ``w`` in place.
"""
from __future__ import annotations

from typing import NamedTuple

import jax
import numpy as np

import jaxconv as jc
from jaxconv import optim
from jaxconv.compat import _bridge

__all__ = [
    "affine_forward", "affine_backward", "relu_forward", "relu_backward",
    "conv_forward_naive", "conv_backward_naive", "conv_forward_fast", "conv_backward_fast",
    "max_pool_forward_naive", "max_pool_backward_naive",
    "max_pool_forward_fast", "max_pool_backward_fast",
    "batchnorm_forward", "batchnorm_backward", "batchnorm_backward_alt",
    "spatial_batchnorm_forward", "spatial_batchnorm_backward",
    "layernorm_forward", "layernorm_backward",
    "spatial_groupnorm_forward", "spatial_groupnorm_backward",
    "dropout_forward", "dropout_backward", "svm_loss", "softmax_loss",
    "sgd", "sgd_momentum", "rmsprop", "adam",
    "im2col_indices", "col2im_indices",
    "rel_error", "eval_numerical_gradient", "eval_numerical_gradient_array",
]


# --- affine, relu ---------------------------------------------------------------

_AFFINE = _bridge.op(jc.affine)
_RELU = _bridge.op(jc.relu)


def affine_forward(x, w, b):
    """``x (N, d_1, ..., d_k)``, ``w (D, M)``, ``b (M,)`` -> ``(out (N, M), cache (x, w, b))``."""
    x, w, b = _bridge.floating(x, w, b)
    return _bridge.forward(_AFFINE, x, w, b), (x, w, b)


def affine_backward(dout, cache):
    """``dout (N, M)`` -> ``(dx, dw, db)`` in the shapes of x, w, b."""
    return _bridge.pullback(_AFFINE, cache, dout, wrt=(0, 1, 2))


def relu_forward(x):
    """``max(x, 0)`` -> ``(out, cache = x)``."""
    (x,) = _bridge.floating(x)
    return _bridge.forward(_RELU, x), x


def relu_backward(dout, cache):
    """``dx = dout * [x > 0]`` (0 at x == 0)."""
    (dx,) = _bridge.pullback(_RELU, (cache,), dout, wrt=(0,))
    return dx


# --- convolution ------------------------------------------------------------------

def _conv_op(conv_param, impl):
    return _bridge.op(jc.conv2d, stride=conv_param["stride"], pad=conv_param["pad"], impl=impl)


def _conv_forward(x, w, b, conv_param, impl):
    x, w, b = _bridge.floating(x, w, b)
    return _bridge.forward(_conv_op(conv_param, impl), x, w, b), (x, w, b, conv_param)


def _conv_backward(dout, cache, impl):
    x, w, b, conv_param = cache[:4]
    return _bridge.pullback(_conv_op(conv_param, impl), (x, w, b), dout, wrt=(0, 1, 2))


def conv_forward_naive(x, w, b, conv_param):
    """Convolution by direct sums over the kernel offsets (``impl="naive"``).

    Args:
      x: ``(N, C, H, W)``; w: ``(F, C, HH, WW)``; b: ``(F,)``.
      conv_param: ``{"stride": int, "pad": int}``.

    Returns:
      ``(out, cache)``: out ``(N, F, H', W')``, ``H' = 1 + (H + 2 pad - HH) // stride``;
      cache ``(x, w, b, conv_param)``.
    """
    return _conv_forward(x, w, b, conv_param, "naive")


def conv_backward_naive(dout, cache):
    """``dout (N, F, H', W')`` -> ``(dx, dw, db)`` by the naive impl's hand rule."""
    return _conv_backward(dout, cache, "naive")


def conv_forward_fast(x, w, b, conv_param):
    """As :func:`conv_forward_naive`, computed by XLA's convolution (``impl="xla"``).

    Same numbers as the naive version up to float rounding; the cache is the
    naive one, ``(x, w, b, conv_param)`` (CS231n's also keeps the patch matrix).
    """
    return _conv_forward(x, w, b, conv_param, "xla")


def conv_backward_fast(dout, cache):
    """``(dx, dw, db)`` by the xla impl's hand rule (two convolutions)."""
    return _conv_backward(dout, cache, "xla")


# --- max pooling ------------------------------------------------------------------

def _pool_op(pool_param):
    return _bridge.op(jc.max_pool2d, pool=(pool_param["pool_height"], pool_param["pool_width"]),
                      stride=pool_param["stride"])


def max_pool_forward_naive(x, pool_param):
    """Max pooling.

    Args:
      x: ``(N, C, H, W)``.
      pool_param: ``{"pool_height", "pool_width", "stride"}``.

    Returns:
      ``(out, cache)``: out ``(N, C, H', W')``, ``H' = 1 + (H - pool_height) // stride``;
      cache ``(x, pool_param)``.
    """
    (x,) = _bridge.floating(x)
    return _bridge.forward(_pool_op(pool_param), x), (x, pool_param)


def max_pool_backward_naive(dout, cache):
    """Each window's gradient goes to its maximum (the first one on ties)."""
    x, pool_param = cache[:2]
    (dx,) = _bridge.pullback(_pool_op(pool_param), (x,), dout, wrt=(0,))
    return dx


def max_pool_forward_fast(x, pool_param):
    """The same computation as :func:`max_pool_forward_naive`.

    jaxconv has one max-pool formulation, and it is the fast one (strided slices,
    the winner's offset kept as one byte per output), so "naive" and "fast"
    return identical numbers; overlapping and non-tiling windows both work.
    """
    return max_pool_forward_naive(x, pool_param)


def max_pool_backward_fast(dout, cache):
    """The same computation as :func:`max_pool_backward_naive`."""
    return max_pool_backward_naive(dout, cache)


# --- batch, layer and group normalisation -------------------------------------------

def _bn_outputs(x, gamma, beta, running_mean, running_var, **hyper):
    return jc.batch_norm(x, gamma, beta, running_mean, running_var, **hyper)


def _bn_out(x, gamma, beta, running_mean, running_var, **hyper):
    return jc.batch_norm(x, gamma, beta, running_mean, running_var, **hyper)[0]


class _NormCache(NamedTuple):
    """What a norm backward needs: the inputs and the static hyperparameters."""
    arrays: tuple
    hyper: dict


def _bn_hyper(bn_param, op):
    mode = bn_param["mode"]
    if mode not in ("train", "test"):
        raise ValueError(f'{op}: Invalid forward batchnorm mode "{mode}"')
    return dict(train=mode == "train", momentum=bn_param.get("momentum", 0.9),
                eps=bn_param.get("eps", 1e-5), axis=1)


def _batchnorm(x, gamma, beta, bn_param, op):
    hyper = _bn_hyper(bn_param, op)
    (x,) = _bridge.floating(x)
    channels = x.shape[1] if x.ndim >= 2 else 0
    running_mean = bn_param.get("running_mean", np.zeros(channels, dtype=x.dtype))
    running_var = bn_param.get("running_var", np.zeros(channels, dtype=x.dtype))
    arrays = _bridge.floating(x, gamma, beta, running_mean, running_var)
    out, new_mean, new_var = _bridge.forward(_bridge.op(_bn_outputs, **hyper), *arrays)
    # CS231n stores the new running statistics back into the caller's dict.
    bn_param["running_mean"] = new_mean
    bn_param["running_var"] = new_var
    return out, _NormCache(arrays, hyper)


def _norm_backward(fn, dout, cache):
    return tuple(_bridge.pullback(_bridge.op(fn, **cache.hyper), cache.arrays, dout,
                                  wrt=(0, 1, 2)))


def batchnorm_forward(x, gamma, beta, bn_param):
    """Batch normalisation of ``x (N, D)`` with ``gamma, beta (D,)``.

    Train mode normalises with the batch mean and biased variance and sets
    ``bn_param["running_mean"] = momentum * running_mean + (1 - momentum) * mean``
    (and likewise ``running_var``); test mode uses the running statistics.

    Returns:
      ``(out (N, D), cache)``; the cache holds the inputs (including the running
      statistics as they were) and the hyperparameters.
    """
    return _batchnorm(x, gamma, beta, bn_param, "batchnorm_forward")


def batchnorm_backward(dout, cache):
    """``(dx, dgamma, dbeta)`` through batch_norm's hand rule (train or test mode)."""
    return _norm_backward(_bn_out, dout, cache)


def batchnorm_backward_alt(dout, cache):
    """The same gradients as :func:`batchnorm_backward`: jaxconv's rule already is
    the simplified closed form ``dx = (dx_hat - mean(dx_hat) - x_hat mean(dx_hat x_hat)) / std``."""
    return _norm_backward(_bn_out, dout, cache)


def spatial_batchnorm_forward(x, gamma, beta, bn_param):
    """Batch normalisation of ``x (N, C, H, W)`` per channel, ``gamma, beta (C,)``;
    ``bn_param`` as in :func:`batchnorm_forward` (running statistics ``(C,)``)."""
    return _batchnorm(x, gamma, beta, bn_param, "spatial_batchnorm_forward")


def spatial_batchnorm_backward(dout, cache):
    """``(dx, dgamma, dbeta)`` for :func:`spatial_batchnorm_forward`."""
    return _norm_backward(_bn_out, dout, cache)


def layernorm_forward(x, gamma, beta, ln_param):
    """Layer normalisation of each row of ``x (N, D)``, ``gamma, beta (D,)``;
    ``ln_param`` may hold ``"eps"`` (1e-5). Returns ``(out, cache)``."""
    hyper = dict(eps=ln_param.get("eps", 1e-5))
    arrays = _bridge.floating(x, gamma, beta)
    return _bridge.forward(_bridge.op(jc.layer_norm, **hyper), *arrays), _NormCache(arrays, hyper)


def layernorm_backward(dout, cache):
    """``(dx, dgamma, dbeta)`` for :func:`layernorm_forward`."""
    return _norm_backward(jc.layer_norm, dout, cache)


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
    hyper = dict(groups=G, eps=gn_param.get("eps", 1e-5))
    arrays = _bridge.floating(x, gamma, beta)
    return _bridge.forward(_bridge.op(_groupnorm, **hyper), *arrays), _NormCache(arrays, hyper)


def spatial_groupnorm_backward(dout, cache):
    """``(dx, dgamma, dbeta)``, dgamma and dbeta of shape ``(1, C, 1, 1)``."""
    return _norm_backward(_groupnorm, dout, cache)


# --- dropout --------------------------------------------------------------------------

class _DropoutDraw(NamedTuple):
    """Stands where CS231n keeps the mask: the backward redraws it from the seed."""
    x: np.ndarray
    seed: np.ndarray
    keep_prob: float
    train: bool


def _dropout(x, seed, *, keep_prob, train):
    return jc.dropout(x, jax.random.key(seed), keep_prob=keep_prob, train=train)


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
      ``(out, cache)``; ``cache = (dropout_param, draw)``, where CS231n keeps the
      mask, ``draw`` keeps what regenerates it.
    """
    mode = dropout_param["mode"]
    if mode not in ("train", "test"):
        raise ValueError(f'dropout_forward: mode must be "train" or "test", got {mode!r}')
    if "seed" in dropout_param:
        seed = dropout_param["seed"]
    elif mode == "train":
        seed = np.random.randint(2**31)
    else:
        seed = 0        # no mask in test mode: leave NumPy's generator untouched
    (x,) = _bridge.floating(x)
    draw = _DropoutDraw(x, np.asarray(seed, np.uint32), float(dropout_param["p"]),
                        mode == "train")
    f = _bridge.op(_dropout, keep_prob=draw.keep_prob, train=draw.train)
    return _bridge.forward(f, x, draw.seed), (dropout_param, draw)


def dropout_backward(dout, cache):
    """``dx = dout * mask / p`` in train mode, ``dout`` in test mode."""
    _, draw = cache
    f = _bridge.op(_dropout, keep_prob=draw.keep_prob, train=draw.train)
    (dx,) = _bridge.pullback(f, (draw.x, draw.seed), dout, wrt=(0,))
    return dx


# --- losses -----------------------------------------------------------------------

def _loss_and_grad(x, y, *, loss):
    return jax.value_and_grad(loss)(x, y)


def _loss(loss, name, x, y):
    (x,) = _bridge.floating(x)
    y = _bridge.labels(y)
    if x.ndim == 2 and np.issubdtype(y.dtype, np.integer) and y.size and (
            y.min() < 0 or y.max() >= x.shape[1]):
        # Checked here because under jit the op can only answer NaN.
        raise ValueError(f"{name}: labels must be in [0, {x.shape[1]}) for "
                         f"x.shape={x.shape}, got min {y.min()}, max {y.max()}")
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


# --- update rules -------------------------------------------------------------------
# Each rule is one step of the jaxconv.optim transformation: the config dict's
# moments become its optax state, the new state goes back into the dict. The
# learning rate enters as a traced value (a constant schedule), so a decayed
# rate reuses the compiled step.

def _rule(name, w, learning_rate, **hyper):
    return getattr(optim, name)(lambda count: learning_rate.astype(w.dtype), **hyper)


def _sgd_step(w, dw, lr):
    rule = _rule("sgd", w, lr)
    updates, _ = rule.update(dw, rule.init(w), w)
    return w + updates


def _momentum_step(w, dw, lr, v, *, momentum):
    rule = _rule("sgd_momentum", w, lr, momentum=momentum)
    lr_state, trace = rule.init(w)
    updates, (_, trace) = rule.update(dw, (lr_state, trace._replace(trace=v)), w)
    return w + updates, trace.trace


def _rmsprop_step(w, dw, lr, cache, *, decay_rate, epsilon):
    rule = _rule("rmsprop", w, lr, decay_rate=decay_rate, epsilon=epsilon)
    rms, lr_state = rule.init(w)
    updates, (rms, _) = rule.update(dw, (rms._replace(nu=cache), lr_state), w)
    return w + updates, rms.nu


def _adam_step(w, dw, lr, m, v, t, *, beta1, beta2, epsilon):
    rule = _rule("adam", w, lr, beta1=beta1, beta2=beta2, epsilon=epsilon)
    moments, lr_state = rule.init(w)
    moments = moments._replace(count=t, mu=m, nu=v)
    updates, (moments, _) = rule.update(dw, (moments, lr_state), w)
    return w + updates, moments.mu, moments.nu


def _step(fn, w, dw, config, *state, **hyper):
    w, dw = _bridge.floating(w, dw)
    lr = np.asarray(config["learning_rate"], w.dtype)
    state = tuple(np.asarray(s, w.dtype) for s in state)
    return _bridge.forward(_bridge.op(fn, **hyper), w, dw, lr, *state)


def sgd(w, dw, config=None):
    """Vanilla SGD: ``next_w = w - learning_rate * dw``.

    config: ``learning_rate`` (default 1e-2). Returns ``(next_w, config)``.
    """
    config = {} if config is None else config
    config.setdefault("learning_rate", 1e-2)
    return _step(_sgd_step, w, dw, config), config


def sgd_momentum(w, dw, config=None):
    """SGD with momentum: ``v = momentum * v - learning_rate * dw; next_w = w + v``.

    config: ``learning_rate`` (1e-2), ``momentum`` (0.9), ``velocity`` (zeros),
    updated in place. Returns ``(next_w, config)``.
    """
    config = {} if config is None else config
    config.setdefault("learning_rate", 1e-2)
    config.setdefault("momentum", 0.9)
    v = config.get("velocity", np.zeros_like(w))
    next_w, config["velocity"] = _step(_momentum_step, w, dw, config, v,
                                       momentum=float(config["momentum"]))
    return next_w, config


def rmsprop(w, dw, config=None):
    """RMSProp: ``cache = decay_rate * cache + (1 - decay_rate) * dw**2;
    next_w = w - learning_rate * dw / (sqrt(cache) + epsilon)``.

    config: ``learning_rate`` (1e-2), ``decay_rate`` (0.99), ``epsilon`` (1e-8),
    ``cache`` (zeros), updated in place. Returns ``(next_w, config)``.
    """
    config = {} if config is None else config
    config.setdefault("learning_rate", 1e-2)
    config.setdefault("decay_rate", 0.99)
    config.setdefault("epsilon", 1e-8)
    config.setdefault("cache", np.zeros_like(w))
    next_w, config["cache"] = _step(_rmsprop_step, w, dw, config, config["cache"],
                                    decay_rate=float(config["decay_rate"]),
                                    epsilon=float(config["epsilon"]))
    return next_w, config


def adam(w, dw, config=None):
    """Adam: ``t += 1``; ``m``, ``v`` moving averages of ``dw`` and ``dw**2``;
    ``next_w = w - learning_rate * m_hat / (sqrt(v_hat) + epsilon)`` with the
    bias corrections ``m_hat = m / (1 - beta1**t)``, ``v_hat = v / (1 - beta2**t)``.

    config: ``learning_rate`` (1e-3), ``beta1`` (0.9), ``beta2`` (0.999),
    ``epsilon`` (1e-8), ``m``, ``v`` (zeros), ``t`` (0), updated in place.
    Returns ``(next_w, config)``.
    """
    config = {} if config is None else config
    config.setdefault("learning_rate", 1e-3)
    config.setdefault("beta1", 0.9)
    config.setdefault("beta2", 0.999)
    config.setdefault("epsilon", 1e-8)
    config.setdefault("m", np.zeros_like(w))
    config.setdefault("v", np.zeros_like(w))
    config.setdefault("t", 0)
    w, dw = _bridge.floating(w, dw)
    next_w, config["m"], config["v"] = _bridge.forward(
        _bridge.op(_adam_step, beta1=float(config["beta1"]), beta2=float(config["beta2"]),
                   epsilon=float(config["epsilon"])),
        w, dw, np.asarray(config["learning_rate"], w.dtype), np.asarray(config["m"], w.dtype),
        np.asarray(config["v"], w.dtype), np.asarray(config["t"], np.int32))
    config["t"] = config["t"] + 1
    return next_w, config


# --- im2col -------------------------------------------------------------------------

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
    cols, dtype = _as_float(cols)
    f = _bridge.op(_col2im, x_shape=tuple(int(d) for d in x_shape), kh=field_height,
                   kw=field_width, stride=stride, pad=padding)
    return _bridge.forward(f, cols).astype(dtype, copy=False)


# --- gradient checking (plain NumPy, exactly CS231n's) ---------------------------------

def rel_error(x, y):
    """``max(|x - y| / max(1e-8, |x| + |y|))``, with NumPy broadcasting as in CS231n.

    (``jaxconv.gradcheck.rel_error`` is the same measure but insists on equal shapes.)
    """
    return np.max(np.abs(x - y) / (np.maximum(1e-8, np.abs(x) + np.abs(y))))


def _centered_differences(x, h, value, reduce=lambda d: d, on_slope=None):
    """``reduce(value() at x + h e_i - value() at x - h e_i) / 2h`` for every ``i``.

    ``x`` is perturbed IN PLACE, one element at a time, and restored, as CS231n's
    gradient_check does: ``value`` reads the very same array. The difference is
    taken before ``reduce`` (as CS231n does), which keeps cancellation small.
    """
    grad = np.zeros_like(x)
    it = np.nditer(x, flags=["multi_index"], op_flags=["readwrite"])
    while not it.finished:
        ix = it.multi_index
        oldval = x[ix]
        x[ix] = oldval + h
        pos = np.copy(value())
        x[ix] = oldval - h
        neg = np.copy(value())
        x[ix] = oldval
        grad[ix] = reduce(pos - neg) / (2 * h)
        if on_slope is not None:
            on_slope(ix, grad[ix])
        it.iternext()
    return grad


def eval_numerical_gradient(f, x, verbose=True, h=0.00001):
    """Centered-difference gradient of a scalar ``f`` at ``x``.

    ``x`` is perturbed IN PLACE, one element at a time, and restored; ``f(x)`` is
    called on the very same array, so ``f`` may also read it from elsewhere.
    With ``verbose`` each index and its slope are printed, as CS231n does.
    """
    f(x)  # CS231n evaluates f once at the original point first
    return _centered_differences(x, h, lambda: f(x), on_slope=print if verbose else None)


def eval_numerical_gradient_array(f, x, df, h=1e-5):
    """Centered-difference ``sum(f(x) * df)`` gradient of an array-valued ``f``.

    ``x`` is perturbed IN PLACE and restored, as in :func:`eval_numerical_gradient`.
    """
    return _centered_differences(x, h, lambda: f(x), reduce=lambda d: np.sum(d * df))
