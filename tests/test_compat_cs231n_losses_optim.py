"""jaxconv.compat.cs231n's losses and update rules against NumPy oracles (CS231n's
vectorised formulas, seed 002's update rules copied), and its dtypes and precision
handling (split from test_compat_cs231n.py, which has the layers)."""
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from jaxconv.compat import cs231n as c
from _util import randn

BAR = 1e-8   # the CS231n notebooks' bar for a float64 gradient check

# --- losses: CS231n's vectorised formulas as oracle -----------------------------------------

def softmax_oracle(x, y):
    shifted = x - x.max(axis=1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    N = x.shape[0]
    dx = np.exp(log_probs)
    dx[np.arange(N), y] -= 1
    return -log_probs[np.arange(N), y].mean(), dx / N


def svm_oracle(x, y):
    N = x.shape[0]
    margins = np.maximum(0, x - x[np.arange(N), y][:, None] + 1.0)
    margins[np.arange(N), y] = 0
    dx = (margins > 0).astype(x.dtype)
    dx[np.arange(N), y] -= dx.sum(axis=1)
    return margins.sum() / N, dx / N


@pytest.mark.parametrize("name,oracle", [("softmax_loss", softmax_oracle),
                                         ("svm_loss", svm_oracle)])
def test_losses(name, oracle):
    loss_fn = getattr(c, name)
    x, y = randn(0, 4, 3), np.array([0, 2, 1, 2])
    loss, dx = loss_fn(x, y)
    want_loss, want_dx = oracle(x, y)
    assert isinstance(loss, np.floating) and loss.dtype == np.float64
    np.testing.assert_allclose(loss, want_loss, rtol=1e-13)
    np.testing.assert_allclose(dx, want_dx, rtol=1e-12, atol=1e-15)
    dx_num = c.eval_numerical_gradient(lambda _: loss_fn(x, y)[0], x, verbose=False)
    assert c.rel_error(dx, dx_num) < BAR
    with pytest.raises(ValueError, match="labels"):
        loss_fn(x, np.array([0, 1, 3, 0]))


# --- update rules: seed 002's formulas, copied, as oracle ---------------------------------

def seed_sgd_momentum(w, dw, config):
    v = config.get("velocity", np.zeros_like(w))
    v = config["momentum"] * v - config["learning_rate"] * dw
    config["velocity"] = v          # (seed 002 forgets to store it back)
    return w + v


def seed_rmsprop(w, dw, config):
    keys = ["learning_rate", "decay_rate", "epsilon", "cache"]
    lr, dr, eps, cache = (config.get(key) for key in keys)
    cache = dr * cache + (1 - dr) * dw ** 2
    config["cache"] = cache          # (seed 002 forgets to store it back)
    return w - lr * dw / (np.sqrt(cache) + eps)


def seed_adam(w, dw, config):
    keys = ["learning_rate", "beta1", "beta2", "epsilon", "m", "v", "t"]
    lr, beta1, beta2, eps, m, v, t = (config.get(k) for k in keys)
    config["t"] = t = t + 1
    config["m"] = m = beta1 * m + (1 - beta1) * dw
    mt = m / (1 - beta1 ** t)
    config["v"] = v = beta2 * v + (1 - beta2) * (dw ** 2)
    vt = v / (1 - beta2 ** t)
    return w - lr * mt / (np.sqrt(vt) + eps)


DEFAULTS = {
    "sgd": {"learning_rate": 1e-2},
    "sgd_momentum": {"learning_rate": 1e-2, "momentum": 0.9},
    "rmsprop": {"learning_rate": 1e-2, "decay_rate": 0.99, "epsilon": 1e-8},
    "adam": {"learning_rate": 1e-3, "beta1": 0.9, "beta2": 0.999, "epsilon": 1e-8, "t": 0},
}
ORACLES = {"sgd": lambda w, dw, cfg: w - cfg["learning_rate"] * dw,
           "sgd_momentum": seed_sgd_momentum, "rmsprop": seed_rmsprop, "adam": seed_adam}
STATE = {"sgd": (), "sgd_momentum": ("velocity",), "rmsprop": ("cache",), "adam": ("m", "v", "t")}


@pytest.mark.parametrize("rule", ["sgd", "sgd_momentum", "rmsprop", "adam"])
def test_update_rules_follow_seed_002_over_several_steps(rule):
    update = getattr(c, rule)
    w = randn(0, 3, 4)
    ours = {"learning_rate": 5e-2}
    w_ours, config = update(w, randn(1, 3, 4), ours)
    assert config is ours                                         # the caller's dict, updated
    expected = dict(DEFAULTS[rule], learning_rate=5e-2)           # CS231n's defaults filled in
    if rule == "adam":
        expected["t"] = 1                                         # incremented by the step
    assert {k: config[k] for k in expected} == expected
    # From the same defaults, the seed's formulas step for step (lr decayed midway,
    # as the Solver's lr_decay does).
    theirs = {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in config.items()}
    w_theirs = w_ours.copy()
    for step in range(2, 7):
        dw = randn(step, 3, 4)
        if step == 4:
            ours["learning_rate"] *= 0.5
            theirs["learning_rate"] *= 0.5
        w_ours, _ = update(w_ours, dw, ours)
        w_theirs = ORACLES[rule](w_theirs, dw, theirs)
        np.testing.assert_allclose(w_ours, w_theirs, rtol=1e-12, atol=1e-15)
        for key in STATE[rule]:
            np.testing.assert_allclose(ours[key], theirs[key], rtol=1e-12, atol=1e-15)
    assert type(w_ours) is np.ndarray and w_ours.dtype == np.float64
    w_ours += 1.0                                                 # writable, as CS231n's arrays


def test_update_rule_defaults_without_config():
    w, dw = randn(0, 2, 2), randn(1, 2, 2)
    next_w, config = c.adam(w, dw)
    assert config["learning_rate"] == 1e-3 and config["t"] == 1
    np.testing.assert_allclose(next_w, w - 1e-3 * np.sign(dw), rtol=1e-6)  # first Adam step
    next_w, config = c.sgd(w, dw)                                 # in place, as CS231n's
    assert next_w is w                                            # `w -= lr * dw`
    np.testing.assert_allclose(w, randn(0, 2, 2) - 1e-2 * dw, rtol=1e-15)


# --- dtypes and the global configuration ---------------------------------------------------

def test_float32_in_float32_out():
    f32 = lambda *shape: randn(sum(shape), *shape).astype(np.float32)  # noqa: E731
    x, w, b = f32(1, 2, 4, 4), f32(2, 2, 3, 3), f32(2)
    out, cache = c.conv_forward_fast(x, w, b, {"stride": 1, "pad": 1})
    results = [out, *c.conv_backward_fast(np.ones(out.shape), cache)]   # float64 dout
    p, pcache = c.max_pool_forward_naive(x, {"pool_height": 2, "pool_width": 2, "stride": 2})
    results += [p, c.max_pool_backward_naive(np.ones(p.shape, np.float32), pcache)]
    g, beta = np.ones(2, np.float32), np.zeros(2, np.float32)
    bn_param = {"mode": "train"}
    bn, bcache = c.spatial_batchnorm_forward(x, g, beta, bn_param)
    results += [bn, *c.spatial_batchnorm_backward(np.ones(bn.shape, np.float32), bcache),
                bn_param["running_mean"], bn_param["running_var"]]
    scores = f32(3, 4)
    loss, dscores = c.softmax_loss(scores, np.array([0, 1, 2]))
    results += [np.asarray(loss), dscores]
    results += [c.dropout_forward(x, {"mode": "train", "p": 0.5, "seed": 1})[0]]
    results += [c.adam(w, w)[0], c.im2col_indices(x, 2, 2, 0, 1)]
    assert all(type(r) is np.ndarray or np.isscalar(r) for r in results)
    assert [r.dtype for r in results] == [np.float32] * len(results)


def test_global_x64_setting_is_untouched():
    """With x64 off (JAX's default; conftest turns it on here), float64 NumPy still
    computes in float64 and the global flag stays off afterwards."""
    script = textwrap.dedent("""
        import jax, jax.numpy as jnp, numpy as np
        assert not jax.config.jax_enable_x64
        from jaxconv.compat import cs231n as c
        x = np.random.default_rng(0).standard_normal((1, 1, 4, 4))
        w = np.random.default_rng(1).standard_normal((1, 1, 3, 3))
        out, cache = c.conv_forward_naive(x, w, np.zeros(1), {"stride": 1, "pad": 0})
        dx, dw, db = c.conv_backward_naive(np.ones(out.shape), cache)
        ref = sum(w[0, 0, i, j] * x[0, 0, i:i + 2, j:j + 2] for i in range(3) for j in range(3))
        assert out.dtype == dx.dtype == np.float64, (out.dtype, dx.dtype)
        assert np.abs(out[0, 0] - ref).max() < 1e-13          # float64 accuracy, not float32
        next_w, config = c.adam(w, w, {"t": 0})
        assert next_w.dtype == np.float64 and config["m"].dtype == np.float64
        assert not jax.config.jax_enable_x64
        assert jnp.ones(1).dtype == jnp.float32                # the rest of JAX: still 32-bit
        print("ok")
    """)
    env = dict(os.environ, JAX_ENABLE_X64="0", JAX_PLATFORMS="cpu")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
