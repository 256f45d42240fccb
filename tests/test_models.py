"""The models: gradients through the custom ops equal those of the same model on
the autodiff twins (float64); loss at init; CS231n's names, shapes and L2 term."""
import dataclasses
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxconv
from jaxconv import models, reference
from jaxconv.gradcheck import rel_error
from jaxconv.models import FullyConnectedNet, ThreeLayerConvNet


# Jit-compiled entry points (one compile per model instead of one per op).
_init = jax.jit(lambda model, key: model.init(key), static_argnums=0)
_scores = jax.jit(lambda model, params, state, X: model.scores(params, state, X),
                  static_argnums=0)


@functools.partial(jax.jit, static_argnums=0, static_argnames="train")
def _loss(model, params, state, X, y, key=None, train=True):
    return model.loss(params, state, X, y, key=key, train=train)


@functools.partial(jax.jit, static_argnames=("model", "ops", "train"))
def _grads(params, state, X, y, key=None, *, model, ops, train=True):
    def f(p):
        return models._loss(model, ops, p, state, X, y, key=key, train=train)

    (loss, new_state), grads = jax.value_and_grad(f, has_aux=True)(params)
    return loss, new_state, grads


def _assert_custom_equals_reference(model, X, y, key=None, train=True, tol=1e-10,
                                    state_shift=0.0):
    params, state = _init(model, jax.random.key(1))
    state = {k: np.asarray(v) + state_shift for k, v in state.items()}
    rng = np.random.default_rng(1)  # gammas != 1, betas != 0
    params = {k: np.asarray(v) + 0.1 * rng.normal(size=v.shape) for k, v in params.items()}
    loss, new_state, grads = _grads(params, state, X, y, key, model=model, ops=jaxconv,
                                    train=train)
    loss_ref, new_state_ref, grads_ref = _grads(params, state, X, y, key, model=model,
                                                ops=reference, train=train)
    assert rel_error(loss, loss_ref) < tol
    assert set(grads) == set(params)
    for name in params:
        assert grads[name].dtype == params[name].dtype, name
        if name.startswith("W"):
            assert float(jnp.abs(grads[name]).max()) > 1e-3, f"{name}: no gradient reached it"
        # A bias just before train-mode batch norm has a gradient of exactly zero
        # in exact arithmetic: rounding noise (~1e-17) needs the absolute floor.
        np.testing.assert_allclose(grads[name], grads_ref[name], rtol=tol, atol=1e-14,
                                   err_msg=name)
    for name in new_state:
        assert rel_error(new_state[name], new_state_ref[name]) < tol, name
    return params, state, new_state


def _data(shape, n=6, classes=10, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, *shape)), rng.integers(0, classes, n)


@pytest.mark.parametrize("normalization", [None, "batchnorm", "layernorm"])
def test_fcnet_gradients_equal_reference_twins(normalization):
    X, y = _data((2, 3, 2), classes=5)
    model = FullyConnectedNet([7, 4], input_dim=12, num_classes=5, normalization=normalization,
                              dropout_keep_ratio=0.6, reg=0.3, weight_scale=0.5,
                              dtype=jnp.float64)
    _assert_custom_equals_reference(model, X, y, key=jax.random.key(3))


@pytest.mark.parametrize("impl", ["xla", "im2col", "naive"])
def test_convnet_gradients_equal_reference_twins(impl):
    X, y = _data((2, 6, 6), n=3, classes=4)
    model = ThreeLayerConvNet(input_dim=(2, 6, 6), num_filters=3, filter_size=3, hidden_dim=5,
                              num_classes=4, weight_scale=0.3, reg=0.2, dtype=jnp.float64,
                              conv_impl=impl)
    _assert_custom_equals_reference(model, X, y)


def test_batchnorm_eval_mode_gradients_and_state():
    X, y = _data((5,), n=4, classes=3)
    model = FullyConnectedNet([6], input_dim=5, num_classes=3, normalization="batchnorm",
                              weight_scale=0.5, dtype=jnp.float64)
    # Running statistics shifted to 0.5: a positive running variance.
    _, state, new_state = _assert_custom_equals_reference(model, X, y, train=False,
                                                          state_shift=0.5)
    for name in state:
        np.testing.assert_array_equal(new_state[name], state[name])


def test_batchnorm_running_statistics_follow_cs231n():
    X, y = _data((5,), n=8, classes=3)
    model = FullyConnectedNet([6], input_dim=5, num_classes=3, normalization="batchnorm",
                              dtype=jnp.float64)
    params, state = _init(model, jax.random.key(0))
    assert set(state) == {"running_mean1", "running_var1"}
    np.testing.assert_array_equal(state["running_var1"], np.zeros(6))   # CS231n starts at 0
    _, new_state = _loss(model, params, state, X, y)
    h = X @ np.asarray(params["W1"]) + np.asarray(params["b1"])
    np.testing.assert_allclose(new_state["running_mean1"], 0.1 * h.mean(0), rtol=1e-12)
    np.testing.assert_allclose(new_state["running_var1"], 0.1 * h.var(0), rtol=1e-12)
    _, same = _loss(model, params, new_state, X, y, train=False)
    np.testing.assert_array_equal(same["running_mean1"], new_state["running_mean1"])


@pytest.mark.parametrize("model", [
    FullyConnectedNet([30, 20], input_dim=3 * 8 * 8, num_classes=7, weight_scale=1e-3),
    FullyConnectedNet([30], input_dim=3 * 8 * 8, num_classes=7, normalization="batchnorm",
                      dropout_keep_ratio=0.5, weight_scale=1e-3),
    ThreeLayerConvNet(input_dim=(3, 8, 8), num_filters=4, filter_size=5, hidden_dim=10,
                      num_classes=7),
], ids=["fc", "fc-bn-dropout", "conv"])
def test_loss_at_init_is_log_num_classes(model):
    X, y = _data((3, 8, 8), n=20, classes=7)
    params, state = _init(model, jax.random.key(0))
    loss, _ = _loss(model, params, state, X.astype(np.float32), y, key=jax.random.key(1))
    assert loss.dtype == jnp.float32
    assert abs(float(loss) - math.log(7)) < 1e-2


def test_l2_term_is_half_reg_sum_of_weight_matrices():
    X, y = _data((1, 4, 4), n=3, classes=3)
    kwargs = dict(input_dim=(1, 4, 4), num_filters=2, filter_size=3, hidden_dim=4,
                  num_classes=3, weight_scale=0.5, dtype=jnp.float64)
    plain, reg = ThreeLayerConvNet(**kwargs), ThreeLayerConvNet(reg=0.7, **kwargs)
    params, state = _init(plain, jax.random.key(0))
    difference = jax.jit(jax.value_and_grad(
        lambda p: reg.loss(p, state, X, y)[0] - plain.loss(p, state, X, y)[0]))
    value, grads = difference(params)
    weights = sum(np.sum(np.asarray(params[w]) ** 2) for w in ("W1", "W2", "W3"))
    np.testing.assert_allclose(float(value), 0.5 * 0.7 * weights, rtol=1e-12)
    np.testing.assert_allclose(grads["W2"], 0.7 * np.asarray(params["W2"]), rtol=1e-10)
    np.testing.assert_allclose(grads["b2"], 0, atol=1e-15)   # biases are not regularised


def test_parameter_names_and_shapes():
    fc = FullyConnectedNet([5, 4], input_dim=6, num_classes=3, normalization="layernorm")
    params, state = _init(fc, jax.random.key(0))
    shapes = {k: v.shape for k, v in params.items()}
    assert shapes == {"W1": (6, 5), "b1": (5,), "gamma1": (5,), "beta1": (5,),
                      "W2": (5, 4), "b2": (4,), "gamma2": (4,), "beta2": (4,),
                      "W3": (4, 3), "b3": (3,)}
    assert state == {}
    np.testing.assert_array_equal(params["gamma1"], 1.0)
    np.testing.assert_array_equal(params["b3"], 0.0)
    assert params["W1"].dtype == jnp.float32

    conv = ThreeLayerConvNet(input_dim=(3, 9, 7), num_filters=4, filter_size=5, hidden_dim=6,
                             num_classes=2)
    params, state = _init(conv, jax.random.key(0))
    assert {k: v.shape for k, v in params.items()} == {
        "W1": (4, 3, 5, 5), "b1": (4,), "W2": (4 * 4 * 3, 6), "b2": (6,), "W3": (6, 2),
        "b3": (2,)}
    assert _scores(conv, params, state, np.zeros((2, 3, 9, 7))).shape == (2, 2)
    np.testing.assert_allclose(np.std(params["W1"]), 1e-3, rtol=0.2)   # weight_scale * N(0, 1)


def test_models_are_hashable_static_arguments():
    a = FullyConnectedNet([5, 4], input_dim=6)
    b = FullyConnectedNet((5, 4), input_dim=6, dtype=np.float32)
    assert a == b and hash(a) == hash(b)
    with pytest.raises(dataclasses.FrozenInstanceError):
        a.reg = 1.0


def test_dropout_only_in_train_mode_and_needs_a_key():
    X, y = _data((4,), n=5, classes=3)
    model = FullyConnectedNet([50], input_dim=4, num_classes=3, dropout_keep_ratio=0.5,
                              weight_scale=0.5, dtype=jnp.float64)
    params, state = _init(model, jax.random.key(0))
    with pytest.raises(ValueError, match="needs key="):
        _loss(model, params, state, X, y)
    a, _ = _loss(model, params, state, X, y, key=jax.random.key(1))
    b, _ = _loss(model, params, state, X, y, key=jax.random.key(2))
    assert float(a) != float(b)
    # Test mode: no dropout, the plain network.
    plain = FullyConnectedNet([50], input_dim=4, num_classes=3, weight_scale=0.5,
                              dtype=jnp.float64)
    np.testing.assert_allclose(_scores(model, params, state, X),
                               _scores(plain, params, state, X), rtol=1e-14)
    h = np.maximum(X @ np.asarray(params["W1"]) + np.asarray(params["b1"]), 0)
    np.testing.assert_allclose(_scores(model, params, state, X),
                               h @ np.asarray(params["W2"]) + np.asarray(params["b2"]),
                               rtol=1e-12)


@pytest.mark.parametrize("make, error, match", [
    (lambda: FullyConnectedNet([0]), ValueError, "hidden_dims"),
    (lambda: FullyConnectedNet(5), TypeError, "hidden_dims"),
    (lambda: FullyConnectedNet([5], dropout_keep_ratio=0.0), ValueError, "dropout_keep_ratio"),
    (lambda: FullyConnectedNet([5], dropout_keep_ratio=1.5), ValueError, "dropout_keep_ratio"),
    (lambda: FullyConnectedNet([5], normalization="groupnorm"), ValueError, "normalization"),
    (lambda: FullyConnectedNet([5], reg=-1.0), ValueError, "reg"),
    (lambda: FullyConnectedNet([5], weight_scale=0), ValueError, "weight_scale"),
    (lambda: FullyConnectedNet([5], dtype=jnp.int32), TypeError, "dtype"),
    (lambda: ThreeLayerConvNet(filter_size=4), ValueError, "filter_size must be odd"),
    (lambda: ThreeLayerConvNet(input_dim=(3, 32)), TypeError, "input_dim"),
    (lambda: ThreeLayerConvNet(input_dim=(3, 1, 8)), ValueError, "too small"),
    (lambda: ThreeLayerConvNet(conv_impl="fft"), ValueError, "conv_impl"),
    (lambda: ThreeLayerConvNet(num_filters=2.5), TypeError, "num_filters"),
    (lambda: ThreeLayerConvNet(hidden_dim=0), ValueError, "hidden_dim"),
])
def test_bad_hyperparameters(make, error, match):
    with pytest.raises(error, match=match):
        make()


def test_input_of_the_wrong_shape_names_it():
    model = ThreeLayerConvNet(input_dim=(1, 8, 8), num_filters=2, filter_size=3, hidden_dim=3)
    params, state = _init(model, jax.random.key(0))
    with pytest.raises(ValueError, match=r"\(N, 1, 8, 8\).*X.shape=\(2, 3, 8, 8\)"):
        _loss(model, params, state, np.zeros((2, 3, 8, 8)), np.zeros(2, int))
    fc = FullyConnectedNet([3], input_dim=10)
    with pytest.raises(ValueError, match="input_dim = 10"):
        _scores(fc, *_init(fc, jax.random.key(0)), np.zeros((2, 3, 3)))
