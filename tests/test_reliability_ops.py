"""Issue 10 in the ops: labels range-checked on the original integers (finding 6),
empty batches and degenerate sizes as PyTorch treats them (finding 8), eps and
margin must be finite (finding 10)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxconv as jc

S = np.zeros((4, 3), np.float32)


@pytest.mark.parametrize("loss", ["softmax_loss", "svm_loss"])
def test_int64_labels_beyond_int32_raise_with_x64_off(loss):
    # 2**32 + 1 would wrap to 1, a valid label, once cast to int32.
    y = np.array([0, 2 ** 32 + 1, 0, 0])
    with jax.enable_x64(False):
        with pytest.raises(ValueError, match=r"labels must be in \[0, 3\).*y\[1\]=4294967297"):
            getattr(jc, loss)(S, y)
        with pytest.raises(ValueError, match=r"y\[3\]=-4294967296"):
            getattr(jc, loss)(S, np.array([0, 1, 2, -2 ** 32]))
        # The same labels through the reference twin, which shares the check.
        with pytest.raises(ValueError, match=r"y\[1\]=4294967297"):
            getattr(jc.reference, loss)(S, y)


@pytest.mark.parametrize("loss", ["softmax_loss", "svm_loss"])
def test_concrete_jax_and_uint_labels_are_checked(loss):
    with pytest.raises(ValueError, match=r"y\[2\]=3"):
        getattr(jc, loss)(S, jnp.array([0, 1, 3, 2]))
    with pytest.raises(ValueError, match=r"y\[0\]=18446744073709551615"):
        getattr(jc, loss)(S, np.array([2 ** 64 - 1, 0, 0, 0], np.uint64))
    with pytest.raises(TypeError, match=r"y must hold integer class labels"):
        getattr(jc, loss)(S, [0.0, 1.0, 2.0, 0.5])


def test_affine_empty_batch_like_pytorch(torch):
    x, w, b = np.zeros((0, 2, 3)), np.arange(12.0).reshape(6, 2), np.array([1.0, -1.0])
    out, pull = jax.vjp(jc.affine, x, w, b)
    tx = torch.zeros(0, 6, requires_grad=True)
    tw = torch.tensor(w.T, requires_grad=True)
    tb = torch.tensor(b, requires_grad=True)
    expected = torch.nn.functional.linear(tx, tw, tb)
    expected.sum().backward()
    assert out.shape == tuple(expected.shape) == (0, 2)
    dx, dw, db = pull(jnp.ones((0, 2)))
    assert dx.shape == (0, 2, 3)
    np.testing.assert_array_equal(dw, tw.grad.numpy().T)
    np.testing.assert_array_equal(db, tb.grad.numpy())
    # D = 0 features: every row is b (PyTorch: linear of (2, 0) by (2, 0) plus bias).
    np.testing.assert_array_equal(jc.affine(np.zeros((3, 0)), np.zeros((0, 2)), b),
                                  np.tile(b, (3, 1)))


@pytest.mark.parametrize("shape, axis", [((0, 3), 1), ((0, 3, 2, 2), 1), ((2, 3, 0, 2), 1)])
def test_batch_norm_empty_batch_leaves_running_stats(torch, shape, axis):
    rm, rv = np.array([0.5, -1.0, 2.0]), np.array([2.0, 1.0, 3.0])
    x = np.zeros(shape)
    gamma, beta = np.ones(3), np.zeros(3)
    (out, new_mean, new_var), pull = jax.vjp(
        lambda x, g, b: jc.batch_norm(x, g, b, rm, rv, train=True, axis=axis), x, gamma, beta)
    t_rm, t_rv = torch.tensor(rm), torch.tensor(rv)
    t_out = torch.nn.functional.batch_norm(torch.zeros(shape), t_rm, t_rv, training=True)
    assert out.shape == tuple(t_out.shape)
    np.testing.assert_array_equal(new_mean, t_rm.numpy())
    np.testing.assert_array_equal(new_var, t_rv.numpy())
    dx, dgamma, dbeta = pull((jnp.ones(shape), jnp.zeros(3), jnp.zeros(3)))
    assert dx.shape == shape
    np.testing.assert_array_equal(dgamma, np.zeros(3))
    np.testing.assert_array_equal(dbeta, np.zeros(3))


@pytest.mark.parametrize("call", [
    lambda eps: jc.batch_norm(S, np.ones(3, np.float32), np.zeros(3, np.float32),
                              np.zeros(3, np.float32), np.ones(3, np.float32), train=True,
                              eps=eps),
    lambda eps: jc.layer_norm(S, np.ones(3, np.float32), np.zeros(3, np.float32), eps=eps),
    lambda eps: jc.group_norm(np.zeros((2, 4, 2, 2), np.float32), np.ones(4, np.float32),
                              np.zeros(4, np.float32), groups=2, eps=eps),
], ids=["batch_norm", "layer_norm", "group_norm"])
def test_infinite_eps_is_rejected(call):
    with pytest.raises(ValueError, match=r"eps must be finite, got inf"):
        call(float("inf"))
    with pytest.raises(ValueError, match=r"eps must be in \(0\.0, inf\), got nan"):
        call(float("nan"))


def test_infinite_margin_is_rejected():
    with pytest.raises(ValueError, match=r"svm_loss: margin must be finite, got inf"):
        jc.svm_loss(S, np.zeros(4, int), margin=float("inf"))


def test_legacy_key_of_the_wrong_length_names_the_key():
    # It reached JAX as "invalid PRNG key data", naming neither dropout nor key.
    with pytest.raises(ValueError, match=r"dropout: a legacy uint32 key .* got key.shape=\(3,\)"):
        jc.dropout(np.ones((2, 2)), np.ones(3, np.uint32), keep_prob=0.5)
    out = jc.dropout(np.ones((2, 2)), jax.random.PRNGKey(0), keep_prob=0.5)
    assert set(np.unique(out)) <= {0.0, 2.0}
