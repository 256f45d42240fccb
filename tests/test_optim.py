"""The update rules against CS231n's formulas written out in NumPy, step by step,
and against optax where the two coincide (and apart where they do not)."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxconv import optim

STEPS = 6


def _params_and_grads(scale=1.0, seed=0):
    rng = np.random.default_rng(seed)
    w0 = {"W1": rng.normal(size=(3, 4)), "b1": rng.normal(size=(4,))}
    grads = [{k: scale * rng.normal(size=v.shape) for k, v in w0.items()} for _ in range(STEPS)]
    return w0, grads


def _run(opt, w0, grads):
    """Apply ``opt`` (jit-compiled) to the gradient sequence; the params after each step."""
    update = jax.jit(opt.update)
    params = jax.tree.map(jnp.asarray, w0)
    state = opt.init(params)
    out = []
    for g in grads:
        updates, state = update(jax.tree.map(jnp.asarray, g), state, params)
        params = optax.apply_updates(params, updates)
        out.append(jax.tree.map(np.asarray, params))
    return out, state


def _assert_trajectory(ours, expected, rtol=1e-13):
    for step, (a, b) in enumerate(zip(ours, expected, strict=True)):
        for k in b:
            np.testing.assert_allclose(a[k], b[k], rtol=rtol, atol=0, err_msg=f"step {step} {k}")


def test_sgd_is_cs231n():
    w0, grads = _params_and_grads()
    lr = 0.05
    expected, w = [], dict(w0)
    for g in grads:
        w = {k: w[k] - lr * g[k] for k in w}   # CS231n: w -= learning_rate * dw
        expected.append(w)
    ours, _ = _run(optim.sgd(lr), w0, grads)
    _assert_trajectory(ours, expected)
    for a in ours:
        assert a["W1"].dtype == np.float64


def _momentum_numpy(w0, grads, lrs, mu):
    expected, w = [], dict(w0)
    v = {k: np.zeros_like(x) for k, x in w0.items()}
    for g, lr in zip(grads, lrs):
        v = {k: mu * v[k] - lr * g[k] for k in w}    # CS231n: v = mu * v - lr * dw
        w = {k: w[k] + v[k] for k in w}               # w += v
        expected.append(w)
    return expected


def test_sgd_momentum_is_cs231n_and_optax_only_for_constant_lr():
    w0, grads = _params_and_grads()
    ours, state = _run(optim.sgd_momentum(0.1, momentum=0.8), w0, grads)
    _assert_trajectory(ours, _momentum_numpy(w0, grads, [0.1] * STEPS, 0.8))
    # The velocity in the state is CS231n's v.
    expected_v = _momentum_numpy(w0, grads, [0.1] * STEPS, 0.8)
    np.testing.assert_allclose(state[1].trace["W1"], expected_v[-1]["W1"] - expected_v[-2]["W1"],
                               rtol=1e-12)
    optax_ours, _ = _run(optax.sgd(0.1, momentum=0.8), w0, grads)
    _assert_trajectory(optax_ours, ours, rtol=1e-12)

    # A schedule, counted per update: CS231n's rule uses lr_t inside the velocity.
    schedule = lambda count: 0.1 * 0.5 ** count
    lrs = [0.1 * 0.5 ** t for t in range(STEPS)]
    ours, _ = _run(optim.sgd_momentum(schedule, momentum=0.8), w0, grads)
    _assert_trajectory(ours, _momentum_numpy(w0, grads, lrs, 0.8))
    theirs, _ = _run(optax.sgd(schedule, momentum=0.8), w0, grads)
    assert np.abs(theirs[-1]["W1"] - ours[-1]["W1"]).max() > 1e-3


def _rmsprop_numpy(w0, grads, lr, decay, eps):
    expected, w = [], dict(w0)
    cache = {k: np.zeros_like(x) for k, x in w0.items()}
    for g in grads:
        cache = {k: decay * cache[k] + (1 - decay) * g[k] ** 2 for k in w}
        w = {k: w[k] - lr * g[k] / (np.sqrt(cache[k]) + eps) for k in w}
        expected.append(w)
    return expected


def test_rmsprop_eps_outside_the_sqrt_with_a_tiny_cache():
    # Gradients ~1e-7: the cache (~1e-15) is far below eps = 1e-8, so
    # sqrt(cache) + eps and sqrt(cache + eps) give wildly different steps.
    w0, grads = _params_and_grads(scale=1e-7)
    lr, decay, eps = 1e-2, 0.99, 1e-8
    expected = _rmsprop_numpy(w0, grads, lr, decay, eps)
    ours, state = _run(optim.rmsprop(lr, decay_rate=decay, epsilon=eps), w0, grads)
    _assert_trajectory(ours, expected, rtol=1e-12)
    np.testing.assert_allclose(state[0].nu["b1"],
                               sum((1 - decay) * decay ** (STEPS - 1 - t) * g["b1"] ** 2
                                   for t, g in enumerate(grads)), rtol=1e-12)
    theirs, _ = _run(optax.rmsprop(lr, decay=decay, eps=eps), w0, grads)
    step_ours = np.abs(ours[0]["W1"] - w0["W1"]).max()
    step_theirs = np.abs(theirs[0]["W1"] - w0["W1"]).max()
    assert step_ours > 100 * step_theirs


def test_rmsprop_defaults_are_cs231n():
    w0, grads = _params_and_grads(seed=1)
    ours, _ = _run(optim.rmsprop(1e-2), w0, grads)
    _assert_trajectory(ours, _rmsprop_numpy(w0, grads, 1e-2, 0.99, 1e-8), rtol=1e-12)


def _adam_numpy(w0, grads, lrs, beta1, beta2, eps):
    expected, w = [], dict(w0)
    m = {k: np.zeros_like(x) for k, x in w0.items()}
    v = {k: np.zeros_like(x) for k, x in w0.items()}
    t = 0
    for g, lr in zip(grads, lrs):
        t = t + 1                                       # t incremented FIRST
        m = {k: beta1 * m[k] + (1 - beta1) * g[k] for k in w}
        v = {k: beta2 * v[k] + (1 - beta2) * g[k] ** 2 for k in w}
        mt = {k: m[k] / (1 - beta1 ** t) for k in w}
        vt = {k: v[k] / (1 - beta2 ** t) for k in w}
        w = {k: w[k] - lr * mt[k] / (np.sqrt(vt[k]) + eps) for k in w}
        expected.append(w)
    return expected


def test_adam_is_cs231n_and_optax_adam():
    w0, grads = _params_and_grads(seed=2)
    expected = _adam_numpy(w0, grads, [1e-2] * STEPS, 0.8, 0.95, 1e-8)
    ours, state = _run(optim.adam(1e-2, beta1=0.8, beta2=0.95), w0, grads)
    _assert_trajectory(ours, expected, rtol=1e-12)
    assert int(state[0].count) == STEPS
    theirs, _ = _run(optax.adam(1e-2, b1=0.8, b2=0.95), w0, grads)
    _assert_trajectory(theirs, ours, rtol=1e-14)


def test_adam_first_step_has_bias_correction():
    # After one step with t = 1, m_hat = dw and v_hat = dw**2: the step is
    # lr * dw / (|dw| + eps), about lr in every coordinate. With t starting at 0
    # (no increment first) the correction would divide by zero.
    w0, grads = _params_and_grads(seed=3)
    ours, _ = _run(optim.adam(1e-3), w0, grads[:1])
    step = w0["W1"] - ours[0]["W1"]
    np.testing.assert_allclose(step, 1e-3 * np.sign(grads[0]["W1"]), rtol=1e-6)


def test_adam_with_a_schedule_counts_updates():
    w0, grads = _params_and_grads(seed=4)
    schedule = optax.exponential_decay(1e-2, transition_steps=2, decay_rate=0.5, staircase=True)
    lrs = [1e-2 * 0.5 ** (t // 2) for t in range(STEPS)]
    ours, _ = _run(optim.adam(schedule), w0, grads)
    # optax's schedules compute in float32: the rates agree to ~1e-8.
    _assert_trajectory(ours, _adam_numpy(w0, grads, lrs, 0.9, 0.999, 1e-8), rtol=1e-6)


def test_learning_rate_scale_multiplies_the_rate_where_cs231n_puts_it():
    # The Solver's lr_decay sets ScaleByLearningRateState.scale; for momentum it
    # must act inside the velocity, as CS231n's config["learning_rate"] does.
    w0, grads = _params_and_grads(seed=5)
    opt = optim.sgd_momentum(0.1, momentum=0.9)
    params = jax.tree.map(jnp.asarray, w0)
    state = opt.init(params)
    lrs = []
    for t, g in enumerate(grads):
        scale = 0.5 ** (t // 2)
        state = (state[0]._replace(scale=jnp.float32(scale)), state[1])
        updates, state = opt.update(jax.tree.map(jnp.asarray, g), state, params)
        params = optax.apply_updates(params, updates)
        lrs.append(0.1 * scale)
    expected = _momentum_numpy(w0, grads, lrs, 0.9)[-1]
    np.testing.assert_allclose(params["W1"], expected["W1"], rtol=1e-12)


def test_float32_params_get_float32_updates():
    params = {"W": jnp.ones((2, 2), jnp.float32)}
    for opt in (optim.sgd(1e-2), optim.sgd_momentum(1e-2), optim.rmsprop(1e-2), optim.adam(1e-2)):
        updates, _ = opt.update(params, opt.init(params), params)
        assert updates["W"].dtype == jnp.float32


@pytest.mark.parametrize("make", [
    lambda: optim.sgd(-1.0),
    lambda: optim.sgd_momentum(0.1, momentum=1.0),
    lambda: optim.rmsprop(0.1, decay_rate=-0.1),
    lambda: optim.rmsprop(0.1, epsilon=-1e-8),
    lambda: optim.adam(0.1, beta1=1.0),
    lambda: optim.adam(0.0),
])
def test_bad_hyperparameters(make):
    with pytest.raises(ValueError, match="must be"):
        make()


def test_a_learning_rate_of_the_wrong_kind_is_a_type_error():
    with pytest.raises(TypeError, match="learning_rate must be a Python float"):
        optim.sgd("fast")
