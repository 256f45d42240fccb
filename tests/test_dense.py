"""affine and relu specifics: hand-worked values, the relu convention at 0 and NaN,
residuals and dtypes (custom vs twin vs numerical, transforms, validation and
PyTorch: the registry's cases in tests/test_ops_*.py)."""
import jax
import jax.ad_checkpoint
import jax.numpy as jnp
import numpy as np
import pytest

import jaxconv as jc
from _util import randn


def test_affine_hand_worked():
    x = np.arange(6.0).reshape(2, 1, 3)           # rows [0, 1, 2], [3, 4, 5]
    w = np.array([[1.0, 0.0], [0.0, 2.0], [1.0, -1.0]])
    b = np.array([10.0, 20.0])
    out = jc.affine(x, w, b)
    np.testing.assert_array_equal(out, [[12.0, 20.0], [18.0, 23.0]])
    g = np.array([[1.0, 0.0], [0.0, 1.0]])
    dx, dw, db = jax.grad(lambda x, w, b: jnp.sum(jc.affine(x, w, b) * g), (0, 1, 2))(x, w, b)
    np.testing.assert_array_equal(dx, [[[1.0, 0.0, 1.0]], [[0.0, 2.0, -1.0]]])   # g @ w.T
    np.testing.assert_array_equal(dw, [[0.0, 3.0], [1.0, 4.0], [2.0, 5.0]])       # X.T @ g
    np.testing.assert_array_equal(db, [1.0, 1.0])
    assert dx.shape == x.shape


def test_relu_gradient_is_zero_at_zero():
    x = jnp.array([-1.0, 0.0, 2.0, 0.0, -0.0])
    np.testing.assert_array_equal(jc.relu(x), [0.0, 0.0, 2.0, 0.0, 0.0])
    np.testing.assert_array_equal(jax.grad(lambda x: jc.relu(x).sum())(x), [0, 0, 1, 0, 0])
    np.testing.assert_array_equal(jax.grad(lambda x: jc.reference.relu(x).sum())(x),
                                  [0, 0, 1, 0, 0])


def test_relu_propagates_nan_like_pytorch(torch):
    # A NaN must not be turned into 0: a diverged layer would hide behind the ReLU.
    x = np.array([np.nan, -np.inf, -1.0, 0.0, 2.0, np.inf])
    expected = torch.relu(torch.tensor(x)).numpy()        # [nan, 0, 0, 0, 2, inf]
    np.testing.assert_array_equal(jc.relu(x), expected)
    np.testing.assert_array_equal(jc.reference.relu(x), expected)
    grad = jax.grad(lambda x: jc.relu(x).sum())(jnp.asarray(x))
    np.testing.assert_array_equal(grad, [0.0, 0.0, 0.0, 0.0, 1.0, 1.0])


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64, jnp.bfloat16, jnp.float16])
def test_gradient_dtypes_follow_inputs(dtype):
    x, w, b = (jnp.asarray(randn(i, *s), dtype) for i, s in enumerate([(2, 3), (3, 4), (4,)]))
    grads = jax.grad(lambda x, w, b: jc.relu(jc.affine(x, w, b)).sum(), (0, 1, 2))(x, w, b)
    assert jc.affine(x, w, b).dtype == dtype
    assert [g.dtype for g in grads] == [dtype] * 3


def test_relu_keeps_a_boolean_mask(capsys):
    jax.ad_checkpoint.print_saved_residuals(lambda x: jc.relu(x).sum(), jnp.ones((3, 4)))
    saved = capsys.readouterr().out.strip().splitlines()
    assert len(saved) == 1 and saved[0].startswith("bool[3,4]"), saved


@pytest.mark.parametrize("shape, m, split", [
    ((40, 3, 4, 4), 5, True), ((40, 12), 5, False), ((16, 48), 5, False),
    ((32, 4096), 32, True),     # dw of 512 KiB: the largest split
    ((32, 4096), 33, False),    # larger: a training step reads it faster unsplit
])
def test_tall_float32_weight_gradient_equals_float64_product(shape, m, split):
    """affine's dw for a tall float32 weight (D >= 8 M, N >= 32) of at most 512 KiB is
    computed on CPUs as ``(g.T @ X).T`` (faster there); either form must equal X.T @ g,
    done here in float64."""
    x, g = randn(0, *shape), randn(1, shape[0], m)
    w, b = randn(2, int(np.prod(shape[1:])), m), np.zeros(m)
    f32 = [jnp.asarray(a, jnp.float32) for a in (x, w, b)]
    dw = jax.jit(jax.grad(lambda w: jnp.sum(jc.affine(f32[0], w, f32[2]) * g)))(f32[1])
    rows = np.asarray(f32[0], np.float64).reshape(shape[0], -1)
    np.testing.assert_allclose(dw, rows.T @ np.asarray(g, np.float32), rtol=2e-5, atol=2e-5)
    hlo = jax.jit(jax.grad(lambda w: jnp.sum(jc.affine(f32[0], w, f32[2]) * g))).lower(
        f32[1]).as_text()
    assert ("optimization_barrier" in hlo) == (split and jax.default_backend() == "cpu")


def test_tall_float32_weight_gradient_under_transforms():
    """The split dw form under grad-of-grad, jvp-of-grad and vmap equals the twin's."""
    x, w = (jnp.asarray(randn(i, *s), jnp.float32) for i, s in enumerate([(40, 48), (48, 5)]))
    b = jnp.zeros(5, jnp.float32)
    ours = lambda w, x=x: jnp.sum(jnp.tanh(jc.affine(x, w, b)))              # noqa: E731
    twin = lambda w, x=x: jnp.sum(jnp.tanh(jc.reference.affine(x, w, b)))    # noqa: E731
    v = jnp.asarray(randn(2, 48, 5), jnp.float32)
    want = jax.jvp(jax.grad(twin), (w,), (v,))[1]
    scale = float(jnp.abs(want).max())
    for got in (jax.jvp(jax.grad(ours), (w,), (v,))[1],
                jax.grad(lambda w: jnp.vdot(jax.grad(ours)(w), v))(w)):
        np.testing.assert_allclose(got, want, atol=1e-5 * scale)
    xs = jnp.stack([x, -2 * x])
    per_x = jax.vmap(lambda x: jax.grad(ours)(w, x))(xs)
    np.testing.assert_allclose(per_x, jax.vmap(lambda x: jax.grad(twin)(w, x))(xs),
                               atol=1e-5 * float(jnp.abs(per_x).max()))
