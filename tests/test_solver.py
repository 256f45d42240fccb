"""The Solver: learning, resuming from orbax checkpoints (also past a half-written
one), non-finite losses, determinism, lr_decay, silence."""
import os
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxconv import data, optim
from jaxconv.models import FullyConnectedNet, ThreeLayerConvNet
from jaxconv.solver import NonFiniteLossError, Solver

# Shared by most tests, so the jit-compiled step is compiled once for all of them:
# batch norm (state), dropout (keys) and momentum (optimizer state) all in play.
MODEL = FullyConnectedNet([32], input_dim=64, normalization="batchnorm",
                          dropout_keep_ratio=0.8, weight_scale=0.1)
OPTIMIZER = optim.sgd_momentum(1e-2)
CONVNET = ThreeLayerConvNet(input_dim=(1, 8, 8), num_filters=16, filter_size=3, hidden_dim=64,
                            weight_scale=1e-2)


@pytest.fixture(scope="module")
def digits():
    return data.load_digits()


@pytest.fixture(scope="module")
def small(digits):
    return {"X_train": digits["X_train"][:400], "y_train": digits["y_train"][:400],
            "X_val": digits["X_val"][:100], "y_val": digits["y_val"][:100]}


def _solver(data_, **kwargs):
    kwargs = {"optimizer": OPTIMIZER, "batch_size": 40, "num_epochs": 4, "lr_decay": 0.9,
              "verbose": False, **kwargs}
    return Solver(kwargs.pop("model", MODEL), data_, **kwargs)


def _leaves(tree):
    return [np.asarray(x) for x in jax.tree.leaves(tree)]


def _assert_trees_equal(a, b):
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for x, y in zip(_leaves(a), _leaves(b)):
        np.testing.assert_array_equal(x, y)


@pytest.fixture(scope="module")
def uninterrupted(small):
    solver = _solver(small)
    solver.train()
    return solver


def _accuracy_numpy(model, params, state, X, y):
    scores = jax.jit(model.scores)(params, state, X)
    return float(np.mean(np.argmax(np.asarray(scores), axis=1) == y))


def test_overfits_50_digits(digits):
    tiny = {"X_train": digits["X_train"][:50], "y_train": digits["y_train"][:50],
            "X_val": digits["X_val"][:50], "y_val": digits["y_val"][:50]}
    solver = Solver(CONVNET, tiny, optimizer=optim.adam(5e-3), batch_size=25, num_epochs=20,
                    verbose=False)
    solver.train()
    assert solver.check_accuracy(tiny["X_train"], tiny["y_train"]) == 1.0
    assert solver.train_acc_history[-1] == 1.0
    assert solver.loss_history[-1] < 0.1 * solver.loss_history[0]


def test_short_run_on_digits_learns(digits):
    solver = Solver(CONVNET, digits, optimizer=optim.adam(1e-3), batch_size=50, num_epochs=5,
                    verbose=False)
    solver.train()
    assert solver.best_val_acc >= 0.9
    assert len(solver.loss_history) == 5 * (len(digits["y_train"]) // 50)
    assert len(solver.val_acc_history) == len(solver.train_acc_history) == 5
    assert solver.best_val_acc == max(solver.val_acc_history)
    # The best parameters are kept and really score best_val_acc (NumPy argmax).
    best = _accuracy_numpy(CONVNET, solver.best_params, solver.best_state,
                           digits["X_val"], digits["y_val"])
    assert best == solver.best_val_acc
    assert solver.check_accuracy(digits["X_test"], digits["y_test"], params=solver.best_params,
                                 state=solver.best_state) >= 0.85


def test_check_accuracy_pads_the_last_batch(uninterrupted, digits):
    # 250 samples in batches of 64: three full batches and a padded one.
    X, y = digits["X_val"], digits["y_val"]
    expected = _accuracy_numpy(MODEL, uninterrupted.params, uninterrupted.state, X, y)
    assert uninterrupted.check_accuracy(X, y, batch_size=64) == expected
    assert uninterrupted.check_accuracy(X, y, batch_size=1000) == expected
    first = _accuracy_numpy(MODEL, uninterrupted.params, uninterrupted.state, X[:30], y[:30])
    assert uninterrupted.check_accuracy(X, y, num_samples=30, batch_size=64) == first


def test_histories_and_state(uninterrupted):
    assert uninterrupted.epoch == 4
    assert len(uninterrupted.loss_history) == 4 * 10
    assert np.all(np.isfinite(uninterrupted.loss_history))
    # Batch norm's running statistics moved away from their zero start.
    assert np.abs(np.asarray(uninterrupted.state["running_var1"])).min() > 0
    # lr_decay = 0.9 applied after each of the 4 epochs.
    assert float(uninterrupted.opt_state[0].scale) == pytest.approx(0.9 ** 4, rel=1e-6)


def test_resume_equals_uninterrupted(small, uninterrupted, tmp_path):
    first = _solver(small, num_epochs=2, checkpoint_dir=tmp_path)
    first.train()
    assert first.epoch == 2
    resumed = _solver(small, num_epochs=4, checkpoint_dir=tmp_path)
    assert resumed.epoch == 2
    assert resumed.loss_history == first.loss_history
    resumed.train()
    _assert_trees_equal(resumed.params, uninterrupted.params)
    _assert_trees_equal(resumed.state, uninterrupted.state)
    _assert_trees_equal(resumed.opt_state, uninterrupted.opt_state)
    _assert_trees_equal(resumed.best_params, uninterrupted.best_params)
    assert resumed.loss_history == uninterrupted.loss_history
    assert resumed.val_acc_history == uninterrupted.val_acc_history
    assert resumed.best_val_acc == uninterrupted.best_val_acc


def _ours(folder):
    """The checkpoint folders jaxconv wrote, by name."""
    return sorted(s for s in os.listdir(folder) if s.startswith("jaxconv-epoch-"))


def test_half_written_checkpoint_is_ignored(small, uninterrupted, tmp_path):
    _solver(small, num_epochs=2, checkpoint_dir=tmp_path).train()
    two = tmp_path / "jaxconv-epoch-000002"
    # What a kill mid-save leaves: orbax's temporary folder (atomic rename), and
    # on filesystems without rename a step folder with no commit_success.txt.
    shutil.copytree(two, tmp_path / "jaxconv-epoch-000003.orbax-checkpoint-tmp-1234")
    shutil.copytree(two, tmp_path / "jaxconv-epoch-000004")
    os.remove(tmp_path / "jaxconv-epoch-000004" / "commit_success.txt")
    with open(tmp_path / "jaxconv-epoch-000004" / "train" / "garbage", "w") as f:
        f.write("half a save")
    resumed = _solver(small, num_epochs=4, checkpoint_dir=tmp_path)
    assert resumed.epoch == 2
    resumed.train()
    _assert_trees_equal(resumed.params, uninterrupted.params)
    # keep 3, leftovers gone (and the half-written epoch 4 replaced by a whole one)
    assert _ours(tmp_path) == [f"jaxconv-epoch-00000{e}" for e in (2, 3, 4)]
    assert all(os.path.isfile(tmp_path / s / "commit_success.txt") for s in _ours(tmp_path))
    assert not os.path.exists(tmp_path / "jaxconv-epoch-000004" / "train" / "garbage")


def test_non_finite_loss_names_the_step_and_keeps_the_last_good_checkpoint(small, tmp_path):
    # The learning rate turns nan at update 26 (count 25): iteration 26 writes nan
    # parameters, so the loss of iteration 27 (epoch 3, batch 7 of 10) is nan.
    poisoned = optim.sgd(lambda count: jnp.where(count < 25, 1e-2, jnp.nan))
    solver = _solver(small, optimizer=poisoned, lr_decay=1.0, num_epochs=5,
                     checkpoint_dir=tmp_path)
    with pytest.raises(NonFiniteLossError, match=r"iteration 27 \(epoch 3, batch 7 of 10\)"
                       ) as info:
        solver.train()
    assert isinstance(info.value, FloatingPointError) and info.value.iteration == 27
    assert "epoch 2" in str(info.value) and str(tmp_path) in str(info.value)
    assert len(solver.loss_history) == 26
    complete = sorted(s for s in _ours(tmp_path)
                      if os.path.isfile(tmp_path / s / "commit_success.txt"))
    assert complete == ["jaxconv-epoch-000001", "jaxconv-epoch-000002"]
    survivor = _solver(small, optimizer=poisoned, lr_decay=1.0, num_epochs=5,
                       checkpoint_dir=tmp_path)
    assert survivor.epoch == 2 and len(survivor.loss_history) == 20
    assert all(np.all(np.isfinite(x)) for x in _leaves(survivor.params))


def test_same_seed_same_parameters(small, uninterrupted):
    again = _solver(small)
    again.train()
    _assert_trees_equal(again.params, uninterrupted.params)
    other = _solver(small, seed=1, num_epochs=1)
    other.train()
    assert not np.array_equal(np.asarray(other.params["W1"]),
                              np.asarray(uninterrupted.params["W1"]))


def test_lr_decay_is_cs231n_per_epoch_decay(small):
    # lr_decay acts where the learning rate sits (inside the momentum velocity),
    # once per epoch: the same as a staircase schedule of the rate itself.
    decayed = _solver(small, num_epochs=3, lr_decay=0.5)
    decayed.train()
    staircase = optim.sgd_momentum(lambda count: 1e-2 * 0.5 ** (count // 10))
    scheduled = _solver(small, num_epochs=3, lr_decay=1.0, optimizer=staircase)
    scheduled.train()
    for a, b in zip(_leaves(decayed.params), _leaves(scheduled.params)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    plain = _solver(small, num_epochs=3, lr_decay=1.0)
    plain.train()
    assert np.abs(np.asarray(plain.params["W1"]) - np.asarray(decayed.params["W1"])).max() > 1e-4


def test_lr_decay_needs_a_reachable_learning_rate(small):
    with pytest.raises(ValueError, match="exponential_decay"):
        _solver(small, optimizer=optax.adam(1e-3), lr_decay=0.9)


def test_verbose_false_prints_nothing(small, tmp_path, capfd):
    _solver(small, num_epochs=1, checkpoint_dir=tmp_path).train()
    _solver(small, num_epochs=2, checkpoint_dir=tmp_path).train()   # resume too
    out, err = capfd.readouterr()
    assert out == "" and err == ""


def test_verbose_shows_progress(small, capfd):
    _solver(small, num_epochs=1, verbose=True).train()
    out, err = capfd.readouterr()
    assert "(Epoch 1 / 1)" in out and "val acc" in out
    assert "epoch 1/1" in err and "10/10" in err   # the tqdm bar, on stderr


@pytest.mark.parametrize("change, match", [
    (dict(batch_size=500), "larger than the 400"),
    (dict(batch_size=0), "batch_size"),
    (dict(num_epochs=-1), "num_epochs"),
    (dict(lr_decay=0.0), "lr_decay"),
    (dict(data={"X_train": np.zeros((4, 64))}), "missing"),
    (dict(data={"X_train": np.zeros((4, 64)), "y_train": np.zeros(3, int),
                "X_val": np.zeros((4, 64)), "y_val": np.zeros(4, int)}), "y_train"),
])
def test_bad_arguments(small, change, match):
    data_ = change.pop("data", small)
    with pytest.raises(ValueError, match=match):
        _solver(data_, **change)


def test_float_labels_are_a_type_error(small):
    # A wrong kind is a TypeError (SPEC section 1); it was a ValueError before issue 10.
    with pytest.raises(TypeError, match="y_train must hold integer class labels"):
        _solver({"X_train": np.zeros((4, 64)), "y_train": np.zeros(4),
                 "X_val": np.zeros((4, 64)), "y_val": np.zeros(4, int)}, batch_size=2)
