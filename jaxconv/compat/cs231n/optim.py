"""CS231n's ``cs231n/optim.py``: ``sgd``, ``sgd_momentum``, ``rmsprop``, ``adam`` (and ``np``).

Each rule is ``(w, dw, config) -> (next_w, config)``: one step of the matching
:mod:`jaxconv.optim` transformation, the config dict's moments as its state, the
config filled with CS231n's defaults and updated in place. The learning rate enters
as a traced value, so a decayed rate reuses the compiled step.

dtypes and in-place updates as CS231n's NumPy: ``sgd`` updates ``w`` IN PLACE
(``w -= learning_rate * dw``: w keeps its dtype, e.g. float32 with a float64 gradient,
and ``next_w is w``); the other rules return a new ``next_w`` and new moments in NumPy's
promoted dtype of ``w``, ``dw`` and the moments (float32 ``w`` with float64 ``dw``
gives float64, as ``w + v`` does in NumPy).
"""
from __future__ import annotations

import numpy as np

from jaxconv import optim as _optim
from jaxconv.compat import _bridge

__all__ = ["np", "sgd", "sgd_momentum", "rmsprop", "adam"]


def _rule(name, w, learning_rate, **hyper):
    return getattr(_optim, name)(lambda count: learning_rate.astype(w.dtype), **hyper)


def _sgd_updates(dw, lr):
    rule = _rule("sgd", dw, lr)
    updates, _ = rule.update(dw, rule.init(dw))
    return updates


def _sgd_step(w, dw, lr):
    return w + _sgd_updates(dw, lr)


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


def _step(fn, w, dw, config, *state, count=None, **hyper):
    """One step in NumPy's promoted dtype of w, dw and the moments."""
    w, dw, *state = _bridge.floating(w, dw, *state)
    lr = np.asarray(config["learning_rate"], w.dtype)
    extra = () if count is None else (np.asarray(count, np.int32),)
    return _bridge.forward(_bridge.op(fn, **hyper), w, dw, lr, *state, *extra)


_SGD_UPDATES = _bridge.op(_sgd_updates)


def _state(config, key, w):
    """``config[key]``, or zeros like w the first time (a ``setdefault`` would build
    the zeros on every call: 0.08 ms for a (3072, 100) weight)."""
    value = config.get(key)
    return np.zeros_like(w) if value is None else value


def sgd(w, dw, config=None):
    """Vanilla SGD, in place as CS231n's: ``w -= learning_rate * dw``.

    config: ``learning_rate`` (default 1e-2). Returns ``(w, config)``: the same array,
    updated, in its own dtype (a NumPy array; anything else gets a new array).
    """
    if config is None:
        config = {}
    config.setdefault("learning_rate", 1e-2)
    if isinstance(w, np.ndarray):
        # the rule's update from JAX, added to w where it lies (NumPy's `-=` casting):
        # w never travels to XLA and back (for a (3072, 100) float32 weight that was
        # two 1.2 MB copies and a third pass; the sums are the same, w + (-lr * dw))
        dw = np.asarray(dw)
        (dw,) = _bridge.floating(dw.astype(np.result_type(w, dw), copy=False))
        lr = np.asarray(config["learning_rate"], dw.dtype)
        np.add(w, _bridge.forward(_SGD_UPDATES, dw, lr, copy=False), out=w, casting="same_kind")
        return w, config
    return _step(_sgd_step, w, dw, config), config


def sgd_momentum(w, dw, config=None):
    """SGD with momentum: ``v = momentum * v - learning_rate * dw; next_w = w + v``.

    config: ``learning_rate`` (1e-2), ``momentum`` (0.9), ``velocity`` (zeros),
    updated in place. Returns ``(next_w, config)``.
    """
    if config is None:
        config = {}
    config.setdefault("learning_rate", 1e-2)
    config.setdefault("momentum", 0.9)
    v = _state(config, "velocity", w)
    next_w, config["velocity"] = _step(_momentum_step, w, dw, config, v,
                                       momentum=float(config["momentum"]))
    return next_w, config


def rmsprop(w, dw, config=None):
    """RMSProp: ``cache = decay_rate * cache + (1 - decay_rate) * dw**2;
    next_w = w - learning_rate * dw / (sqrt(cache) + epsilon)``.

    config: ``learning_rate`` (1e-2), ``decay_rate`` (0.99), ``epsilon`` (1e-8),
    ``cache`` (zeros), updated in place. Returns ``(next_w, config)``.
    """
    if config is None:
        config = {}
    config.setdefault("learning_rate", 1e-2)
    config.setdefault("decay_rate", 0.99)
    config.setdefault("epsilon", 1e-8)
    next_w, config["cache"] = _step(_rmsprop_step, w, dw, config, _state(config, "cache", w),
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
    if config is None:
        config = {}
    config.setdefault("learning_rate", 1e-3)
    config.setdefault("beta1", 0.9)
    config.setdefault("beta2", 0.999)
    config.setdefault("epsilon", 1e-8)
    config.setdefault("t", 0)
    next_w, config["m"], config["v"] = _step(
        _adam_step, w, dw, config, _state(config, "m", w), _state(config, "v", w),
        count=config["t"],
        beta1=float(config["beta1"]), beta2=float(config["beta2"]),
        epsilon=float(config["epsilon"]))
    config["t"] = config["t"] + 1
    return next_w, config
