"""jaxconv.compat.cs231n's gradient-check helpers and layers against NumPy oracles
(CS231n's formulas and loops written out) and, for every backward, against
eval_numerical_gradient_array in float64 (rel_error < 1e-8). Shapes are tiny: each
numerical-gradient step is one compat call. Losses, update rules and dtypes:
test_compat_cs231n_losses_optim.py."""
import numpy as np
import pytest

from jaxconv.compat import cs231n as c
from _seed_oracles import naive_conv_backward, naive_conv_forward
from _util import randn

BAR = 1e-8   # the CS231n notebooks' bar for a float64 gradient check


def numerical(f, x, dout):
    return c.eval_numerical_gradient_array(f, x, dout)


def assert_own_copies(held, given):
    """A cache holds CS231n's contents as read-only copies of its own (issue 10, finding 9)."""
    for h, g in zip(held, given, strict=True):
        np.testing.assert_array_equal(h, g)
        assert not np.shares_memory(h, g) and not h.flags.writeable


# --- the gradient-check helpers themselves, on functions with known derivatives ----------

def test_rel_error_is_cs231ns_measure():
    assert c.rel_error(np.array([1.0, 2.0]), np.array([1.0, 2.2])) == pytest.approx(0.2 / 4.2)
    assert c.rel_error(0.0, 0.0) == 0.0                          # the 1e-8 floor, no 0/0
    assert c.rel_error(np.ones((2, 3)), 1.0) == 0.0              # broadcasting, as in NumPy


def test_eval_numerical_gradient_perturbs_in_place(capsys):
    x = np.array([[1.0, -2.0], [0.5, 3.0]])
    before = x.copy()
    seen = []

    def f(arg):
        assert arg is x                   # the very array, perturbed in place
        seen.append(x.copy())
        return np.sum(x ** 3)

    grad = c.eval_numerical_gradient(f, x, verbose=True)
    np.testing.assert_allclose(grad, 3 * before ** 2, rtol=1e-9)
    np.testing.assert_array_equal(x, before)                     # restored exactly
    assert len(seen) == 1 + 2 * x.size                           # f(x) once, then +h / -h
    assert any(not np.array_equal(s, before) for s in seen)
    printed = capsys.readouterr().out.splitlines()
    assert printed[0].startswith("(0, 0)") and len(printed) == x.size


def test_eval_numerical_gradient_lambda_ignoring_its_argument():
    """CS231n's `f = lambda _: model.loss(X, y)[0]`: f reads the array from outside."""
    w = np.array([0.3, -1.2, 2.0])
    f = lambda _: np.sum(np.sin(w))                               # noqa: E731
    grad = c.eval_numerical_gradient(f, w, verbose=False, h=1e-6)
    np.testing.assert_allclose(grad, np.cos(w), rtol=1e-8)


def test_eval_numerical_gradient_array():
    x = np.array([[0.2, -0.7, 1.5]])
    df = np.array([[1.0, 2.0, -3.0]])
    captured = x
    grad = c.eval_numerical_gradient_array(lambda _: np.exp(captured) * 2.0, x, df)
    np.testing.assert_allclose(grad, 2.0 * np.exp(x) * df, rtol=1e-9)


# --- affine, relu ---------------------------------------------------------------------

def test_affine():
    x, w, b = randn(0, 2, 2, 3), randn(1, 6, 4), randn(2, 4)
    out, cache = c.affine_forward(x, w, b)
    np.testing.assert_allclose(out, x.reshape(2, 6) @ w + b, rtol=1e-13)
    assert_own_copies(cache, (x, w, b))
    dout = randn(3, 2, 4)
    dx, dw, db = c.affine_backward(dout, cache)
    np.testing.assert_allclose(dx, (dout @ w.T).reshape(x.shape), rtol=1e-13)
    np.testing.assert_allclose(dw, x.reshape(2, 6).T @ dout, rtol=1e-13)
    np.testing.assert_allclose(db, dout.sum(0), rtol=1e-13)
    assert c.rel_error(dx, numerical(lambda a: c.affine_forward(a, w, b)[0], x, dout)) < BAR
    assert c.rel_error(dw, numerical(lambda a: c.affine_forward(x, a, b)[0], w, dout)) < BAR
    assert c.rel_error(db, numerical(lambda a: c.affine_forward(x, w, a)[0], b, dout)) < BAR



def test_large_affine_keeps_its_inputs_values_and_hands_out_aligned_arrays():
    """Large inputs (>= 256 KiB) go to XLA and into the pullback as the cache's own
    read-only copies: writing to the caller's x and w after the forward must not change
    the gradients. Every array of 16 KiB or more handed out is 64-byte aligned (XLA
    reads it in place)."""
    x, w, b = randn(0, 64, 1024), randn(1, 1024, 40), randn(2, 40)
    dout = randn(3, 64, 40)
    want = (dout @ w.T, x.T @ dout, dout.sum(0))
    out, cache = c.affine_forward(x, w, b)
    assert_own_copies(cache, (x, w, b))
    x[...], w[...] = 7.0, -3.0                      # the caller reuses its buffers
    grads = c.affine_backward(dout, cache)
    for got, expected in zip(grads, want, strict=True):
        np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-10)
    next_w, config = c.adam(grads[1], grads[1])
    dx, dw, _ = grads
    for a in (out, dx, dw, *cache[:2], next_w, config["m"], config["v"]):   # the >= 16 KiB
        assert a.ctypes.data % 64 == 0
    assert all(a.flags.writeable for a in (out, *grads, next_w))

def test_relu():
    x = np.array([[-1.5, 0.0, 0.7], [2.0, -0.3, 0.4]])
    out, cache = c.relu_forward(x)
    np.testing.assert_array_equal(out, np.maximum(x, 0))
    dout = randn(4, 2, 3)
    dx = c.relu_backward(dout, cache)
    np.testing.assert_array_equal(dx, dout * (x > 0))             # 0 at x == 0
    x2 = randn(5, 2, 3)
    dx2 = c.relu_backward(dout, c.relu_forward(x2)[1])
    assert c.rel_error(dx2, numerical(lambda a: c.relu_forward(a)[0], x2, dout)) < BAR


# --- convolution: CS231n's naive loops as oracle ------------------------------------------

CONV_CASES = [((1, 2, 4, 4), (2, 2, 3, 3), 1, 1), ((1, 2, 5, 5), (2, 2, 3, 3), 2, 1),
              ((2, 1, 5, 4), (2, 1, 2, 2), 2, 0)]   # the last: W does not tile, floor


@pytest.mark.parametrize("x_shape,w_shape,stride,pad", CONV_CASES)
@pytest.mark.parametrize("kind", ["naive", "fast"])
def test_conv(kind, x_shape, w_shape, stride, pad):
    forward = getattr(c, f"conv_forward_{kind}")
    backward = getattr(c, f"conv_backward_{kind}")
    x, w, b = randn(0, *x_shape), randn(1, *w_shape), randn(2, w_shape[0])
    conv_param = {"stride": stride, "pad": pad}
    out, cache = forward(x, w, b, conv_param)
    pairs = (stride, stride), (pad, pad)
    np.testing.assert_allclose(out, naive_conv_forward(x, w, b, *pairs), rtol=1e-12, atol=1e-13)
    assert_own_copies(cache[:3], (x, w, b))
    assert cache[3] is conv_param
    dout = randn(3, *out.shape)
    grads = backward(dout, cache)
    for got, want in zip(grads, naive_conv_backward(dout, x, w, *pairs)):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-13)
    dx, dw, db = grads
    assert c.rel_error(dx, numerical(lambda a: forward(a, w, b, conv_param)[0], x, dout)) < BAR
    assert c.rel_error(dw, numerical(lambda a: forward(x, a, b, conv_param)[0], w, dout)) < BAR
    assert c.rel_error(db, numerical(lambda a: forward(x, w, a, conv_param)[0], b, dout)) < BAR


def test_conv_fast_equals_naive():
    x, w, b = randn(0, 2, 3, 7, 7), randn(1, 4, 3, 3, 3), randn(2, 4)
    conv_param = {"stride": 2, "pad": 1}
    out_n, cache_n = c.conv_forward_naive(x, w, b, conv_param)
    out_f, cache_f = c.conv_forward_fast(x, w, b, conv_param)
    assert c.rel_error(out_n, out_f) < 1e-12
    dout = randn(3, *out_n.shape)
    for g_n, g_f in zip(c.conv_backward_naive(dout, cache_n), c.conv_backward_fast(dout, cache_f)):
        assert c.rel_error(g_n, g_f) < 1e-12


# --- max pooling ----------------------------------------------------------------------------

def pool_loops(x, ph, pw, stride):
    N, C, H, W = x.shape
    Ho, Wo = 1 + (H - ph) // stride, 1 + (W - pw) // stride
    out, where = np.zeros((N, C, Ho, Wo)), {}
    for n in range(N):
        for ch in range(C):
            for i in range(Ho):
                for j in range(Wo):
                    window = x[n, ch, i * stride:i * stride + ph, j * stride:j * stride + pw]
                    k, l = np.unravel_index(np.argmax(window), window.shape)   # first max
                    out[n, ch, i, j] = window[k, l]
                    where[n, ch, i, j] = (n, ch, i * stride + k, j * stride + l)
    return out, where


@pytest.mark.parametrize("ph,pw,stride", [(2, 2, 2), (3, 2, 1), (2, 3, 2)])  # tile, overlap, floor
@pytest.mark.parametrize("kind", ["naive", "fast"])
def test_max_pool(kind, ph, pw, stride):
    forward = getattr(c, f"max_pool_forward_{kind}")
    backward = getattr(c, f"max_pool_backward_{kind}")
    x = randn(0, 2, 2, 5, 5)
    pool_param = {"pool_height": ph, "pool_width": pw, "stride": stride}
    out, cache = forward(x, pool_param)
    want, where = pool_loops(x, ph, pw, stride)
    np.testing.assert_array_equal(out, want)
    assert_own_copies(cache[:1], (x,))
    assert cache[1] is pool_param
    dout = randn(1, *out.shape)
    dx = backward(dout, cache)
    dx_want = np.zeros_like(x)
    for idx, target in where.items():
        dx_want[target] += dout[idx]                       # overlapping windows add up
    np.testing.assert_allclose(dx, dx_want, rtol=1e-14)
    assert c.rel_error(dx, numerical(lambda a: forward(a, pool_param)[0], x, dout)) < BAR


def test_max_pool_ties_go_to_the_first_maximum():
    x = np.ones((1, 1, 2, 2))
    out, cache = c.max_pool_forward_fast(x, {"pool_height": 2, "pool_width": 2, "stride": 2})
    dx = c.max_pool_backward_fast(np.full((1, 1, 1, 1), 5.0), cache)
    np.testing.assert_array_equal(dx[0, 0], [[5.0, 0.0], [0.0, 0.0]])


# --- batch norm: seed 002's formulas as oracle --------------------------------------------

def seed_batchnorm(x, gamma, beta, running_mean, running_var, momentum=0.9, eps=1e-5):
    mu, var = x.mean(axis=0), x.var(axis=0)
    std = np.sqrt(var + eps)
    x_hat = (x - mu) / std
    return (gamma * x_hat + beta, momentum * running_mean + (1 - momentum) * mu,
            momentum * running_var + (1 - momentum) * var, (x, mu, std, gamma, x_hat))


def seed_batchnorm_backward_alt(dout, cache):
    _, _, std, gamma, x_hat = cache
    S = lambda a: a.sum(axis=0)                                     # noqa: E731
    dx = dout * gamma / (len(dout) * std)
    dx = len(dout) * dx - S(dx * x_hat) * x_hat - S(dx)
    return dx, S(dout * x_hat), S(dout)


@pytest.mark.parametrize("backward", ["batchnorm_backward", "batchnorm_backward_alt"])
def test_batchnorm_train(backward):
    x, gamma, beta = randn(0, 5, 3) * 2 + 1, randn(1, 3), randn(2, 3)
    bn_param = {"mode": "train", "momentum": 0.8}
    out, cache = c.batchnorm_forward(x, gamma, beta, bn_param)
    want, rm, rv, seed_cache = seed_batchnorm(x, gamma, beta, np.zeros(3), np.zeros(3), 0.8)
    np.testing.assert_allclose(out, want, rtol=1e-12, atol=1e-13)
    # The dict is updated in place, starting from zeros, as CS231n does.
    np.testing.assert_allclose(bn_param["running_mean"], rm, rtol=1e-13)
    np.testing.assert_allclose(bn_param["running_var"], rv, rtol=1e-13)
    c.batchnorm_forward(x + 1, gamma, beta, bn_param)
    np.testing.assert_allclose(bn_param["running_mean"], 0.8 * rm + 0.2 * (x + 1).mean(0),
                               rtol=1e-13)

    dout = randn(3, 5, 3)
    grads = getattr(c, backward)(dout, cache)
    for got, ref in zip(grads, seed_batchnorm_backward_alt(dout, seed_cache)):
        np.testing.assert_allclose(got, ref, rtol=1e-10, atol=1e-12)
    dx, dgamma, dbeta = grads
    fresh = lambda: {"mode": "train"}                               # noqa: E731
    assert c.rel_error(dx, numerical(
        lambda a: c.batchnorm_forward(a, gamma, beta, fresh())[0], x, dout)) < BAR
    assert c.rel_error(dgamma, numerical(
        lambda a: c.batchnorm_forward(x, a, beta, fresh())[0], gamma, dout)) < BAR
    assert c.rel_error(dbeta, numerical(
        lambda a: c.batchnorm_forward(x, gamma, a, fresh())[0], beta, dout)) < BAR


def test_batchnorm_test_mode_uses_running_statistics():
    x, gamma, beta = randn(0, 4, 3), randn(1, 3), randn(2, 3)
    rm, rv = randn(3, 3), np.abs(randn(4, 3)) + 0.5
    bn_param = {"mode": "test", "running_mean": rm, "running_var": rv, "eps": 1e-3}
    out, cache = c.batchnorm_forward(x, gamma, beta, bn_param)
    np.testing.assert_allclose(out, gamma * (x - rm) / np.sqrt(rv + 1e-3) + beta, rtol=1e-12)
    np.testing.assert_array_equal(bn_param["running_mean"], rm)    # unchanged in test mode
    dout = randn(5, 4, 3)
    dx, dgamma, dbeta = c.batchnorm_backward(dout, cache)
    np.testing.assert_allclose(dx, dout * gamma / np.sqrt(rv + 1e-3), rtol=1e-12)
    np.testing.assert_allclose(dgamma, (dout * (x - rm) / np.sqrt(rv + 1e-3)).sum(0), rtol=1e-12)
    np.testing.assert_allclose(dbeta, dout.sum(0), rtol=1e-12)
    with pytest.raises(ValueError, match="Invalid forward batchnorm mode"):
        c.batchnorm_forward(x, gamma, beta, {"mode": "eval"})


def test_spatial_batchnorm():
    x, gamma, beta = randn(0, 2, 3, 2, 2), randn(1, 3), randn(2, 3)
    bn_param = {"mode": "train"}
    out, cache = c.spatial_batchnorm_forward(x, gamma, beta, bn_param)
    flat = x.transpose(0, 2, 3, 1).reshape(-1, 3)                  # CS231n's reshape trick
    want, rm, rv, seed_cache = seed_batchnorm(flat, gamma, beta, np.zeros(3), np.zeros(3))
    np.testing.assert_allclose(out, want.reshape(2, 2, 2, 3).transpose(0, 3, 1, 2), rtol=1e-12,
                               atol=1e-13)
    np.testing.assert_allclose(bn_param["running_var"], rv, rtol=1e-13)
    assert bn_param["running_mean"].shape == (3,)
    dout = randn(3, *x.shape)
    dx, dgamma, dbeta = c.spatial_batchnorm_backward(dout, cache)
    ref = seed_batchnorm_backward_alt(dout.transpose(0, 2, 3, 1).reshape(-1, 3), seed_cache)
    np.testing.assert_allclose(dx, ref[0].reshape(2, 2, 2, 3).transpose(0, 3, 1, 2),
                               rtol=1e-10, atol=1e-12)
    f = lambda a, g, b: c.spatial_batchnorm_forward(a, g, b, {"mode": "train"})[0]  # noqa: E731
    assert c.rel_error(dx, numerical(lambda a: f(a, gamma, beta), x, dout)) < BAR
    assert c.rel_error(dgamma, numerical(lambda a: f(x, a, beta), gamma, dout)) < BAR
    assert c.rel_error(dbeta, numerical(lambda a: f(x, gamma, a), beta, dout)) < BAR


# --- layer norm, group norm ----------------------------------------------------------------

def test_layernorm():
    x, gamma, beta = randn(0, 3, 4), randn(1, 4), randn(2, 4)
    ln_param = {"eps": 1e-4}
    out, cache = c.layernorm_forward(x, gamma, beta, ln_param)
    mu, var = x.mean(1, keepdims=True), x.var(1, keepdims=True)
    np.testing.assert_allclose(out, gamma * (x - mu) / np.sqrt(var + 1e-4) + beta, rtol=1e-12)
    dout = randn(3, 3, 4)
    dx, dgamma, dbeta = c.layernorm_backward(dout, cache)
    f = lambda a, g, b: c.layernorm_forward(a, g, b, ln_param)[0]  # noqa: E731
    assert c.rel_error(dx, numerical(lambda a: f(a, gamma, beta), x, dout)) < BAR
    assert c.rel_error(dgamma, numerical(lambda a: f(x, a, beta), gamma, dout)) < BAR
    assert c.rel_error(dbeta, numerical(lambda a: f(x, gamma, a), beta, dout)) < BAR


def test_spatial_groupnorm():
    N, C, H, W, G = 2, 4, 2, 2, 2
    x, gamma, beta = randn(0, N, C, H, W), randn(1, 1, C, 1, 1), randn(2, 1, C, 1, 1)
    out, cache = c.spatial_groupnorm_forward(x, gamma, beta, G, {})
    xg = x.reshape(N, G, -1)
    x_hat = ((xg - xg.mean(2, keepdims=True)) / np.sqrt(xg.var(2, keepdims=True) + 1e-5))
    np.testing.assert_allclose(out, gamma * x_hat.reshape(x.shape) + beta, rtol=1e-12,
                               atol=1e-13)
    dout = randn(3, *x.shape)
    dx, dgamma, dbeta = c.spatial_groupnorm_backward(dout, cache)
    assert dgamma.shape == dbeta.shape == (1, C, 1, 1)
    f = lambda a, g, b: c.spatial_groupnorm_forward(a, g, b, G, {})[0]  # noqa: E731
    assert c.rel_error(dx, numerical(lambda a: f(a, gamma, beta), x, dout)) < BAR
    assert c.rel_error(dgamma, numerical(lambda a: f(x, a, beta), gamma, dout)) < BAR
    assert c.rel_error(dbeta, numerical(lambda a: f(x, gamma, a), beta, dout)) < BAR


# --- dropout -----------------------------------------------------------------------------

def test_dropout_keep_probability_and_scaling():
    x = randn(0, 100, 100) + 10
    out, _ = c.dropout_forward(x, {"mode": "train", "p": 0.3, "seed": 7})
    kept = out != 0
    assert abs(kept.mean() - 0.3) < 0.02                       # p is the KEEP probability
    np.testing.assert_allclose(out[kept], x[kept] / 0.3, rtol=1e-14)
    out_test, _ = c.dropout_forward(x, {"mode": "test", "p": 0.3})
    np.testing.assert_array_equal(out_test, x)


def test_dropout_seed_and_backward():
    x, dout = randn(0, 3, 4) + 5, randn(1, 3, 4)
    param = {"mode": "train", "p": 0.5, "seed": 123}
    out, cache = c.dropout_forward(x, param)
    np.testing.assert_array_equal(c.dropout_forward(x, param)[0], out)      # same seed, same mask
    assert cache[0] is param
    dx = c.dropout_backward(dout, cache)
    np.testing.assert_allclose(dx, dout * (out != 0) / 0.5, rtol=1e-14)      # the forward's mask
    assert c.rel_error(dx, numerical(lambda a: c.dropout_forward(a, param)[0], x, dout)) < BAR
    test_out, test_cache = c.dropout_forward(x, {"mode": "test", "p": 0.5})
    np.testing.assert_array_equal(c.dropout_backward(dout, test_cache), dout)


def test_dropout_without_seed_follows_numpys_global_seed():
    x = randn(0, 4, 5) + 5
    np.random.seed(3)
    a, _ = c.dropout_forward(x, {"mode": "train", "p": 0.5})
    b, _ = c.dropout_forward(x, {"mode": "train", "p": 0.5})
    np.random.seed(3)
    a2, _ = c.dropout_forward(x, {"mode": "train", "p": 0.5})
    np.testing.assert_array_equal(a, a2)
    assert not np.array_equal(a, b)
