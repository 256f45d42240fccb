"""softmax_loss and svm_loss specifics: hand-worked values, the SVM written out in
NumPy loops (inactive margins included), huge scores, labels out of range under
jit, NaN scores (the generic checks: tests/test_ops_*.py)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxconv as jc
from _util import randn

Y = np.array([0, 4, 2, 2, 1])


def test_softmax_hand_worked():
    scores = np.array([[0.0, np.log(3.0)], [np.log(4.0), 0.0]])   # p = [1/4, 3/4], [4/5, 1/5]
    y = np.array([1, 1])
    loss = jc.softmax_loss(scores, y)
    np.testing.assert_allclose(loss, -(np.log(0.75) + np.log(0.2)) / 2, rtol=1e-14)
    ds = jax.grad(jc.softmax_loss)(scores, y)
    np.testing.assert_allclose(ds, [[0.125, -0.125], [0.4, -0.4]], rtol=1e-14)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64, jnp.bfloat16])
def test_softmax_is_stable_for_huge_scores(dtype):
    scores = jnp.asarray([[1e4, 0.0, -1e4], [5e3, 5e3, 0.0]], dtype)
    y = jnp.array([1, 0])
    loss, ds = jax.value_and_grad(jc.softmax_loss)(scores, y)
    # Row 0: log-probability of class 1 is -1e4; row 1: log(1/2).
    rtol = 8e-3 if dtype == jnp.bfloat16 else 1e-6      # bfloat16: 8 mantissa bits
    np.testing.assert_allclose(float(loss), (1e4 + np.log(2.0)) / 2, rtol=rtol)
    np.testing.assert_allclose(np.asarray(ds, np.float64),
                               [[0.5, -0.5, 0.0], [-0.25, 0.25, 0.0]], atol=1e-3)
    assert loss.dtype == dtype and ds.dtype == dtype


def np_svm_loss_naive(scores, y, margin):
    """CS231n's svm_loss_naive on scores, loops written out."""
    n, k = scores.shape
    loss, ds = 0.0, np.zeros_like(scores)
    for i in range(n):
        for j in range(k):
            if j == y[i]:
                continue
            m = scores[i, j] - scores[i, y[i]] + margin
            if m > 0:
                loss += m
                ds[i, j] += 1
                ds[i, y[i]] -= 1
    return loss / n, ds / n


@pytest.mark.parametrize("margin", [1.0, 0.5])
def test_svm_matches_numpy_loops(margin):
    scores = randn(3, 5, 5)
    loss, ds = jax.value_and_grad(lambda s: jc.svm_loss(s, Y, margin=margin))(scores)
    want_loss, want_ds = np_svm_loss_naive(scores, Y, margin)
    assert 0 < want_loss and np.count_nonzero(want_ds) > 5      # the case is not trivial
    np.testing.assert_allclose(loss, want_loss, rtol=1e-14)
    np.testing.assert_allclose(ds, want_ds, rtol=1e-14)


def test_svm_kink_counts_as_inactive():
    scores = np.array([[1.0, 0.0, 2.5]])        # margin of class 1 is exactly 0
    ds = jax.grad(lambda s: jc.svm_loss(s, np.array([0])))(scores)
    np.testing.assert_array_equal(ds, [[-1.0, 0.0, 1.0]])


_loss_and_grad = {name: jax.jit(jax.value_and_grad(getattr(jc, name)))
                  for name in ("softmax_loss", "svm_loss")}


@pytest.mark.parametrize("name", ["softmax_loss", "svm_loss"])
def test_labels_out_of_range_under_jit_give_nan(name):
    scores = randn(0, 3, 5)
    for labels in ([0, 5, 1], [0, -1, 1], [9, 9, 9]):
        loss, ds = _loss_and_grad[name](scores, jnp.array(labels))
        assert np.isnan(loss) and np.all(np.isnan(ds)), (labels, loss, ds)
    loss, ds = _loss_and_grad[name](scores, jnp.array([0, 4, 1]))   # same compile, valid
    assert np.isfinite(loss) and np.all(np.isfinite(ds))


def test_labels_get_no_gradient():
    _, dy = jax.grad(jc.softmax_loss, (0, 1), allow_int=True)(randn(0, 2, 3), np.array([0, 2]))
    assert dy.dtype == jax.dtypes.float0


@pytest.mark.parametrize("name", ["softmax_loss", "svm_loss"])
def test_nan_scores_give_a_nan_loss(name):
    # CS231n's NumPy gives NaN; a finite loss here would hide a diverged network.
    for bad in ([[1.0, np.nan, 0.0], [0.0, 1.0, 2.0]], [[np.nan, 1.0, 0.0], [0.0, 1.0, 2.0]]):
        scores, y = jnp.asarray(bad), jnp.array([0, 2])
        assert np.isnan(getattr(jc, name)(scores, y))
        assert np.isnan(getattr(jc.reference, name)(scores, y))
