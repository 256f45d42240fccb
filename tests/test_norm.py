"""batch_norm, layer_norm, group_norm specifics: the formulas written out in NumPy,
running statistics and PyTorch's other convention, layouts, residuals and half
precision (custom vs twin vs numerical and vs PyTorch: tests/test_ops_*.py)."""
import jax
import jax.ad_checkpoint
import jax.numpy as jnp
import numpy as np
import pytest

import jaxconv as jc
from _util import randn, to_nhwc


def bn_args(shape, axis=1, seed=0):
    d = shape[axis]
    return (randn(seed, *shape), randn(seed + 1, d), randn(seed + 2, d), randn(seed + 3, d),
            0.5 + np.abs(randn(seed + 4, d)))


def np_batch_norm_train(x, gamma, beta, rm, rv, axes, shape, momentum=0.9, eps=1e-5):
    """CS231n's batchnorm_forward (train), written out in NumPy."""
    mu = x.mean(axis=axes)
    var = ((x - mu.reshape(shape)) ** 2).mean(axis=axes)          # biased
    x_hat = (x - mu.reshape(shape)) / np.sqrt(var.reshape(shape) + eps)
    out = gamma.reshape(shape) * x_hat + beta.reshape(shape)
    return out, momentum * rm + (1 - momentum) * mu, momentum * rv + (1 - momentum) * var


@pytest.mark.parametrize("layout", ["ND", "NCHW", "NHWC"])
def test_batch_norm_train_forward_and_running_stats_match_numpy(layout):
    shape, axis, axes, bshape = {
        "ND": ((5, 3), 1, (0,), (1, 3)),
        "NCHW": ((2, 3, 2, 4), 1, (0, 2, 3), (1, 3, 1, 1)),
        "NHWC": ((2, 2, 4, 3), -1, (0, 1, 2), (1, 1, 1, 3)),
    }[layout]
    x, gamma, beta, rm, rv = bn_args(shape, axis=axis, seed=7)
    out, new_mean, new_var = jc.batch_norm(x, gamma, beta, rm, rv, train=True, axis=axis,
                                           momentum=0.8)
    ref = np_batch_norm_train(x, gamma, beta, rm, rv, axes, bshape, momentum=0.8)
    for got, want in zip((out, new_mean, new_var), ref):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


def test_batch_norm_nhwc_is_nchw_transposed():
    x, gamma, beta, rm, rv = bn_args((2, 3, 2, 4))
    g = randn(9, 2, 3, 2, 4)

    def grads(x, g, axis):
        f = lambda *a: jnp.sum(jc.batch_norm(*a, train=True, axis=axis)[0] * g)  # noqa: E731
        return jax.grad(f, (0, 1, 2))(x, gamma, beta, rm, rv)

    nchw, nhwc = grads(x, g, 1), grads(to_nhwc(x), to_nhwc(g), 3)
    np.testing.assert_allclose(to_nhwc(nchw[0]), nhwc[0], rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(nchw[1], nhwc[1], rtol=1e-12)
    np.testing.assert_allclose(nchw[2], nhwc[2], rtol=1e-12)


def test_batch_norm_eval_uses_and_returns_running_stats():
    x, gamma, beta, rm, rv = bn_args((4, 3), seed=3)
    out, new_mean, new_var = jc.batch_norm(x, gamma, beta, rm, rv, train=False, eps=1e-3)
    np.testing.assert_allclose(out, gamma * (x - rm) / np.sqrt(rv + 1e-3) + beta, rtol=1e-13)
    np.testing.assert_array_equal(new_mean, rm)
    np.testing.assert_array_equal(new_var, rv)
    # Hand-derived: d out / d running_mean = -gamma / std, summed over the batch.
    d_mean = jax.grad(lambda m: jc.batch_norm(x, gamma, beta, m, rv, train=False,
                                              eps=1e-3)[0].sum())(rm)
    np.testing.assert_allclose(d_mean, -4 * gamma / np.sqrt(rv + 1e-3), rtol=1e-13)


@pytest.mark.parametrize("train", [True, False], ids=["train", "eval"])
def test_running_outputs_carry_no_gradient(train):
    args = bn_args((5, 3), seed=5)

    def state_only(*a):
        _, m, v = jc.batch_norm(*a, train=train)
        return jnp.sum(m) + jnp.sum(v)

    for grad in jax.grad(state_only, argnums=(0, 1, 2, 3, 4))(*args):
        np.testing.assert_array_equal(grad, 0.0)


def test_batch_norm_residuals_are_x_hat_and_inverse_std(capsys):
    x, gamma, beta, rm, rv = (jnp.asarray(a) for a in bn_args((6, 4)))
    def f(x, gamma, beta):
        return jc.batch_norm(x, gamma, beta, rm, rv, train=True)[0].sum()

    jax.ad_checkpoint.print_saved_residuals(f, x, gamma, beta)
    saved = capsys.readouterr().out.strip().splitlines()
    kinds = sorted(line.split(" ")[0] for line in saved)
    # x_hat (6, 4), 1/std (1, 4), gamma (4,): no x, no mean, no variance.
    assert kinds == ["f64[1,4]", "f64[4]", "f64[6,4]"], saved
    assert not any("argument x" in line for line in saved), saved


def test_layer_norm_matches_numpy():
    x, gamma, beta = randn(0, 3, 2, 4), randn(1, 2, 4), randn(2, 2, 4)
    flat = x.reshape(3, -1)
    x_hat = (flat - flat.mean(1, keepdims=True)) / np.sqrt(flat.var(1, keepdims=True) + 1e-5)
    np.testing.assert_allclose(jc.layer_norm(x, gamma, beta),
                               gamma * x_hat.reshape(x.shape) + beta, rtol=1e-12, atol=1e-12)


def np_group_norm(x, gamma, beta, groups, eps=1e-5):
    n, c, h, w = x.shape
    out = np.empty_like(x)
    for i in range(n):
        for k in range(groups):
            block = x[i, k * c // groups:(k + 1) * c // groups]
            out[i, k * c // groups:(k + 1) * c // groups] = (
                (block - block.mean()) / np.sqrt(block.var() + eps))
    return out * gamma[:, None, None] + beta[:, None, None]


@pytest.mark.parametrize("groups", [1, 2, 6])
def test_group_norm_matches_numpy_loops(groups):
    x, gamma, beta = randn(0, 2, 6, 3, 2), randn(1, 6), randn(2, 6)
    want = np_group_norm(x, gamma, beta, groups)
    np.testing.assert_allclose(jc.group_norm(x, gamma, beta, groups=groups), want,
                               rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(
        jc.group_norm(to_nhwc(x), gamma, beta, groups=groups, layout="NHWC"),
        to_nhwc(want), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float16])
def test_half_precision_statistics_accumulate_in_float32(dtype):
    # A large common offset: half-precision sums of squares would lose the
    # variance entirely (bfloat16 has 8 bits of mantissa).
    x_half = jnp.asarray(300.0 + randn(0, 64, 3), dtype)
    x32 = x_half.astype(jnp.float32)
    gamma, beta = jnp.ones(3, dtype), jnp.zeros(3, dtype)
    stats = jnp.zeros(3, jnp.float32), jnp.ones(3, jnp.float32)
    out, new_mean, new_var = jc.batch_norm(x_half, gamma, beta, *stats, train=True)
    want, want_mean, want_var = jc.batch_norm(x32, gamma.astype(jnp.float32),
                                              beta.astype(jnp.float32), *stats, train=True)
    assert out.dtype == dtype and new_mean.dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(out, np.float32), want, atol=2e-2)
    np.testing.assert_allclose(new_var, want_var, rtol=1e-5)
    weights = jnp.arange(3.0)

    def weighted(x, gamma, beta):
        return jnp.sum(jc.layer_norm(x, gamma, beta) * weights.astype(x.dtype))

    dx = jax.grad(weighted)(x_half, gamma, beta)
    dx32 = jax.grad(weighted)(x32, gamma.astype(jnp.float32), beta.astype(jnp.float32))
    assert dx.dtype == dtype
    np.testing.assert_allclose(np.asarray(dx, np.float32), dx32, atol=3e-2 * np.abs(dx32).max())


def test_batch_norm_running_stats_follow_cs231n_not_pytorch(torch):
    """PyTorch's momentum weights the new value (1 - ours) and it stores the UNBIASED
    batch variance: its running variance differs from ours, and agrees once converted
    (the conversion the registry's PyTorch oracle makes)."""
    x, gamma, beta, rm, rv = bn_args((6, 4), seed=11)
    _, new_mean, new_var = jc.batch_norm(x, gamma, beta, rm, rv, train=True, momentum=0.9)
    t_mean, t_var = torch.tensor(rm), torch.tensor(rv)          # updated in place by torch
    torch.nn.functional.batch_norm(torch.tensor(x), t_mean, t_var, torch.tensor(gamma),
                                   torch.tensor(beta), training=True, momentum=0.1)
    np.testing.assert_allclose(new_mean, t_mean.numpy(), rtol=1e-12)
    assert not np.allclose(new_var, t_var.numpy())               # the conventions do differ
    m = x.shape[0]
    np.testing.assert_allclose(new_var - 0.9 * rv, (t_var.numpy() - 0.9 * rv) * (m - 1) / m,
                               rtol=1e-12)
