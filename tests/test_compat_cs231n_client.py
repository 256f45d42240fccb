"""Real CS231n assignment-2 code on jaxconv.compat.cs231n (issue 15).

tests/cs231n_client is a student's package in the assignment's own style: TwoLayerNet and
FullyConnectedNet (classifiers/fc_net.py), ThreeLayerConvNet (classifiers/cnn.py), the
Solver (solver.py) and the assignment's NumPy gradient checker (gradient_check.py). Only
their import lines name jaxconv (star imports of the mirrored modules). They go through
the notebooks' checks: the initial loss ~ log(10) (and the notebook's printed losses),
float64 gradient checks with the assignment's own eval_numerical_gradient, and
overfitting 50 samples with every update rule. The last test runs the same files with
their ORIGINAL import lines (``from ..layers import *``, ``from cs231n import optim``)
after one ``jaxconv.compat.cs231n.install()``.
"""
import math
import shutil
import sys

import numpy as np
import pytest

from cs231n_client.classifiers.cnn import ThreeLayerConvNet
from cs231n_client.classifiers.fc_net import FullyConnectedNet, TwoLayerNet
from cs231n_client.gradient_check import eval_numerical_gradient
from cs231n_client.solver import Solver
from _cs231n_numpy import client_on_numpy


def rel_error(x, y):      # the notebooks' own
    return np.max(np.abs(x - y) / (np.maximum(1e-8, np.abs(x) + np.abs(y))))


def grad_errors(model, X, y, scale_tol=1e-4):
    """The notebooks' rel_error per parameter; also checks, per parameter, that the
    largest difference is rounding noise against the gradient's own scale (rel_error
    alone is large where an entry is ~0, as the notebooks note for W2)."""
    loss, grads = model.loss(X, y)
    errors = {}
    for name in sorted(grads):
        f = lambda _: model.loss(X, y)[0]                        # noqa: E731
        num = eval_numerical_gradient(f, model.params[name], verbose=False, h=1e-5)
        errors[name] = rel_error(num, grads[name])
        assert np.abs(num - grads[name]).max() <= scale_tol * np.abs(grads[name]).max() + 1e-9, name
    return loss, errors


def test_two_layer_net_notebook_cell():
    N, D, H, C = 3, 5, 50, 7
    X = np.random.randn(N, D)
    y = np.random.randint(C, size=N)
    model = TwoLayerNet(input_dim=D, hidden_dim=H, num_classes=C, weight_scale=1e-3)
    model.params["W1"] = np.linspace(-0.7, 0.3, num=D * H).reshape(D, H)
    model.params["b1"] = np.linspace(-0.1, 0.9, num=H)
    model.params["W2"] = np.linspace(-0.3, 0.4, num=H * C).reshape(H, C)
    model.params["b2"] = np.linspace(-0.9, 0.1, num=C)
    X = np.linspace(-5.5, 4.5, num=N * D).reshape(D, N).T
    scores = model.loss(X)
    want = np.maximum(X @ model.params["W1"] + model.params["b1"], 0) @ model.params["W2"] \
        + model.params["b2"]
    np.testing.assert_allclose(scores, want, rtol=1e-12)
    y = np.asarray([0, 5, 1])
    assert abs(model.loss(X, y)[0] - 3.4702243556) < 1e-10     # the notebook's numbers
    model.reg = 1.0
    assert abs(model.loss(X, y)[0] - 26.5948426952) < 1e-10
    for reg in [0.0, 0.7]:
        np.random.seed(231)
        model = TwoLayerNet(input_dim=D, hidden_dim=H, num_classes=C, weight_scale=1e-1, reg=reg)
        _, errors = grad_errors(model, np.random.randn(N, D), y)
        assert max(errors.values()) < 1e-6, errors


@pytest.mark.parametrize("normalization,keep", [(None, 1), ("batchnorm", 1), ("layernorm", 1),
                                                (None, 0.5)])
def test_fully_connected_net_gradient_checks(normalization, keep):
    np.random.seed(231)
    N, D, H1, H2, C = 2, 15, 20, 30, 10
    X = np.random.randn(N, D)
    y = np.random.randint(C, size=(N,))
    for reg in [0, 3.14] if normalization is None and keep == 1 else [3.14]:
        models = []
        for classes in ({"FullyConnectedNet": FullyConnectedNet}, client_on_numpy()):
            np.random.seed(0)
            models.append(classes["FullyConnectedNet"](
                [H1, H2], input_dim=D, num_classes=C, reg=reg, weight_scale=5e-2,
                dtype=np.float64, normalization=normalization, dropout_keep_ratio=keep, seed=123))
        model, numpy_model = models
        if keep == 1:          # (dropout masks: jax.random's, not NumPy's)
            loss, grads = model.loss(X, y)
            numpy_loss, numpy_grads = numpy_model.loss(X, y)
            assert abs(loss - numpy_loss) < 1e-12 * abs(numpy_loss)
            for name, grad in numpy_grads.items():
                np.testing.assert_allclose(grads[name], grad, rtol=1e-9, atol=1e-12)
        # batch norm of 2 samples is sharply curved: centred differences err by ~1e-4
        loss, errors = grad_errors(model, X, y, 1e-3 if normalization == "batchnorm" else 1e-5)
        if reg == 0 and normalization is None and keep == 1:
            assert abs(loss - math.log(C)) < 0.1                 # small weights: ~log(10)
        expected = {f"{p}{i}" for i in (1, 2, 3) for p in "Wb"}
        if normalization:
            expected |= {f"{p}{i}" for i in (1, 2) for p in ("gamma", "beta")}
        assert set(errors) == expected
        # The notebooks: "on the order of e-7 or smaller ... fine to see e-5 for W2".
        assert max(errors.values()) < (1e-2 if normalization == "batchnorm" else 1e-4), errors


def test_three_layer_convnet_notebook_cells():
    np.random.seed(231)
    model = ThreeLayerConvNet()
    X = np.random.randn(50, 3, 32, 32)
    y = np.random.randint(10, size=50)
    loss, _ = model.loss(X, y)
    assert abs(loss - math.log(10)) < 1e-3                       # notebook: 2.3025...
    model.reg = 0.5
    assert model.loss(X, y)[0] > loss

    np.random.seed(231)
    X = np.random.randn(2, 3, 16, 16)
    y = np.random.randint(10, size=2)
    model = ThreeLayerConvNet(num_filters=3, filter_size=3, input_dim=(3, 16, 16),
                              hidden_dim=7, dtype=np.float64)
    loss, grads = model.loss(X, y)
    for name in sorted(grads):
        num = eval_numerical_gradient(lambda _: model.loss(X, y)[0], model.params[name],
                                      verbose=False, h=1e-6)
        # The notebook allows rel_error "up to the order of e-2" (tiny weights: 1e-3);
        # against the gradient's own scale the two agree to rounding noise.
        assert rel_error(num, grads[name]) < 1e-1, name
        assert np.abs(num - grads[name]).max() < max(1e-3 * np.abs(grads[name]).max(), 1e-8)


def _small_data(shape, seed=0, n=50):
    rng = np.random.RandomState(seed)
    return {"X_train": rng.randn(n, *shape), "y_train": rng.randint(10, size=n),
            "X_val": rng.randn(20, *shape), "y_val": rng.randint(10, size=20)}


@pytest.mark.parametrize("rule,lr", [("sgd", 3e-1), ("sgd_momentum", 5e-2),
                                     ("rmsprop", 1e-3), ("adam", 5e-3)])
def test_overfit_fifty_samples_with_every_update_rule(rule, lr):
    """The notebooks' overfitting check, and the loss curve of CS231n's own NumPy layers
    (tests/_cs231n_numpy.py) running the very same client files, step for step."""
    runs = []
    for classes in ({"FullyConnectedNet": FullyConnectedNet, "Solver": Solver},
                    client_on_numpy()):
        np.random.seed(231)
        model = classes["FullyConnectedNet"]([100, 100], input_dim=48, weight_scale=1e-1,
                                             dtype=np.float64)
        solver = classes["Solver"](model, _small_data((3, 4, 4)), update_rule=rule,
                                   optim_config={"learning_rate": lr}, num_epochs=20,
                                   batch_size=25, print_every=1000, verbose=False)
        solver.train()
        runs.append(solver)
    ours, numpy_run = runs
    assert ours.train_acc_history[-1] == 1.0
    assert ours.loss_history[-1] < 0.1 * ours.loss_history[0]
    np.testing.assert_allclose(ours.loss_history, numpy_run.loss_history, rtol=1e-10)
    assert ours.train_acc_history == numpy_run.train_acc_history


def test_overfit_three_layer_convnet():
    np.random.seed(231)
    data = _small_data((3, 8, 8))
    model = ThreeLayerConvNet(input_dim=(3, 8, 8), num_filters=8, filter_size=3,
                              hidden_dim=50, weight_scale=1e-1)
    solver = Solver(model, data, update_rule="adam", optim_config={"learning_rate": 1e-2},
                    num_epochs=15, batch_size=25, verbose=False)
    solver.train()
    assert solver.train_acc_history[-1] >= 0.9


def test_unchanged_assignment_code_after_install(tmp_path, monkeypatch):
    """The same files with the assignment's own import lines, as package `cs231n`."""
    package = tmp_path / "cs231n"
    shutil.copytree(__import__("cs231n_client").__path__[0], package,
                    ignore=shutil.ignore_patterns("__pycache__"))
    for path in package.rglob("*.py"):
        text = path.read_text()
        for module in ("layers", "fast_layers", "layer_utils"):
            text = text.replace(f"from jaxconv.compat.cs231n.{module} import *",
                                f"from ..{module} import *")
        path.write_text(text.replace("from jaxconv.compat.cs231n import optim",
                                     "from cs231n import optim"))
    assert "jaxconv" not in (package / "classifiers" / "cnn.py").read_text().split("class")[0]
    monkeypatch.syspath_prepend(str(tmp_path))
    import jaxconv.compat.cs231n
    jaxconv.compat.cs231n.install()                              # the one line that changes
    try:
        from cs231n.classifiers.fc_net import TwoLayerNet as Unchanged
        from cs231n.solver import Solver as UnchangedSolver
        np.random.seed(0)
        data = _small_data((5,), n=20)
        model = Unchanged(input_dim=5, hidden_dim=20, weight_scale=1e-1)
        solver = UnchangedSolver(model, data, update_rule="sgd",
                                 optim_config={"learning_rate": 0.5}, num_epochs=40,
                                 batch_size=10, verbose=False)
        solver.train()
        assert solver.train_acc_history[-1] >= 0.9
        scores = model.loss(data["X_train"])
        want = np.maximum(data["X_train"] @ model.params["W1"] + model.params["b1"], 0) \
            @ model.params["W2"] + model.params["b2"]
        np.testing.assert_allclose(scores, want, rtol=1e-12)
    finally:
        for name in [n for n in sys.modules if n == "cs231n" or n.startswith("cs231n.")]:
            del sys.modules[name]
