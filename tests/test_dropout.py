"""dropout: the mask comes from the key (same key, same mask, the twin's mask),
inverted scaling, identity cases, both key kinds, gradients and residuals."""
import jax
import jax.ad_checkpoint
import jax.numpy as jnp
import numpy as np
import pytest

import jaxconv as jc
from _util import randn

KEYS = {"typed": jax.random.key(42), "legacy": jax.random.PRNGKey(42)}


@pytest.mark.parametrize("kind", KEYS)
def test_mask_is_float32_uniforms_of_the_key_and_scaled(kind):
    key, x = KEYS[kind], jnp.asarray(1.0 + np.abs(randn(0, 40, 50)))
    out = jc.dropout(x, key, keep_prob=0.7)
    mask = np.asarray(jax.random.uniform(key, x.shape, jnp.float32)) < 0.7
    np.testing.assert_allclose(out, np.where(mask, x / 0.7, 0.0), rtol=1e-15)
    np.testing.assert_array_equal(jc.reference.dropout(x, key, keep_prob=0.7), out)
    np.testing.assert_array_equal(jc.dropout(x, key, keep_prob=0.7), out)   # same key
    other = jc.dropout(x, jax.random.fold_in(key, 1), keep_prob=0.7)
    assert np.any((np.asarray(other) == 0) != (np.asarray(out) == 0))
    # 2000 units: the kept fraction is 0.7 +- 4 standard deviations (0.041).
    assert abs(np.mean(np.asarray(out) != 0) - 0.7) < 0.041


def test_mask_does_not_depend_on_x64_mode():
    key, x = jax.random.key(9), np.ones((6, 7), np.float32)
    with jax.enable_x64(False):
        without = np.asarray(jc.dropout(x, key, keep_prob=0.5))
    with jax.enable_x64(True):
        with_x64 = np.asarray(jc.dropout(x, key, keep_prob=0.5))
    assert 0 < np.count_nonzero(without) < x.size
    np.testing.assert_array_equal(without, with_x64)


def test_typed_and_legacy_keys_draw_the_same_mask():
    x = jnp.ones((5, 7))
    typed = jc.dropout(x, jax.random.wrap_key_data(jax.random.PRNGKey(3)), keep_prob=0.5)
    np.testing.assert_array_equal(typed, jc.dropout(x, jax.random.PRNGKey(3), keep_prob=0.5))


@pytest.mark.parametrize("hyper", [dict(keep_prob=0.5, train=False), dict(keep_prob=1.0)])
def test_identity_cases(hyper):
    x = randn(1, 3, 4)
    out = jc.dropout(x, jax.random.key(0), **hyper)
    np.testing.assert_array_equal(out, x)
    np.testing.assert_array_equal(jax.grad(lambda x: jc.dropout(x, jax.random.key(0), **hyper)
                                           .sum())(x), np.ones_like(x))


def test_gradient_is_mask_over_keep_prob():
    key, x, g = jax.random.key(5), randn(2, 6, 5), randn(3, 6, 5)
    dx = jax.grad(lambda x: jnp.sum(jc.dropout(x, key, keep_prob=0.4) * g))(x)
    mask = np.asarray(jax.random.uniform(key, x.shape, jnp.float32)) < 0.4
    np.testing.assert_allclose(dx, np.where(mask, g / 0.4, 0.0), rtol=1e-15)


def test_key_gets_no_gradient_and_dtypes_follow():
    x = jnp.ones((3, 3), jnp.bfloat16)
    key = jax.random.PRNGKey(0)
    dx, dkey = jax.grad(lambda x, k: jc.dropout(x, k, keep_prob=0.5).sum(), (0, 1),
                        allow_int=True)(x, key)
    assert dx.dtype == jnp.bfloat16 and jc.dropout(x, key, keep_prob=0.5).dtype == jnp.bfloat16
    assert dkey.dtype == jax.dtypes.float0


def test_residual_is_the_key_not_a_float_mask(capsys):
    key = jax.random.key(0)
    jax.ad_checkpoint.print_saved_residuals(
        lambda x: jc.dropout(x, key, keep_prob=0.5).sum(), jnp.ones((8, 8)))
    saved = capsys.readouterr().out.strip().splitlines()
    assert len(saved) == 1 and saved[0].startswith("key<fry>[]"), saved


def test_dropped_nan_stays_nan_like_pytorch(torch):
    # Dropping must not launder a NaN into 0 (PyTorch multiplies by the mask too).
    x = np.full((4, 50), np.nan)
    out = np.asarray(jc.dropout(x, jax.random.key(2), keep_prob=0.5))
    assert np.isnan(out).all()
    np.testing.assert_array_equal(out, jc.reference.dropout(x, jax.random.key(2), keep_prob=0.5))
    assert torch.isnan(torch.nn.functional.dropout(torch.tensor(x), 0.5)).all()
