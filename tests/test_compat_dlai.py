"""jaxconv.compat.dlai against seed 004's printed numbers, its own NumPy loops and
numerical gradients, in float64 (NHWC)."""
import numpy as np
import pytest

from jaxconv.compat import dlai
from jaxconv.compat.cs231n import eval_numerical_gradient_array, rel_error


# --- oracles: seed 004's loops, copied; its backward's `[pad:-pad]` made pad-0 safe ---

def seed_conv_forward(X, weight, b, hparams):
    n, H, W, Cin = X.shape
    f, f, Cin, Cout = weight.shape
    stride, pad = hparams["stride"], hparams["pad"]
    Ho = int((H + 2 * pad - f) / stride) + 1
    Wo = int((W + 2 * pad - f) / stride) + 1
    Z = np.zeros((n, Ho, Wo, Cout))
    X_pad = np.pad(X, ((0, 0), (pad, pad), (pad, pad), (0, 0)), "constant", constant_values=0)
    for i in range(n):
        for h in range(Ho):
            for w in range(Wo):
                for c in range(Cout):
                    vs, hs = h * stride, w * stride
                    s = X_pad[i][vs:vs + f, hs:hs + f, :] * weight[:, :, :, c]
                    Z[i, h, w, c] = np.sum(s) + b[0, 0, 0, c]
    return Z


def seed_conv_backward(dZ, X, weight, hparams):
    n, H, W, Cin = X.shape
    f, f, Cin, Cout = weight.shape
    stride, pad = hparams["stride"], hparams["pad"]
    _, Ho, Wo, _ = dZ.shape
    dW = np.zeros((f, f, Cin, Cout))
    dX = np.zeros((n, H, W, Cin))
    dB = np.zeros((1, 1, 1, Cout))
    X_pad = np.pad(X, ((0, 0), (pad, pad), (pad, pad), (0, 0)), "constant", constant_values=0)
    dX_pad = np.pad(dX, ((0, 0), (pad, pad), (pad, pad), (0, 0)), "constant", constant_values=0)
    for i in range(n):
        x_curr, dx_curr = X_pad[i], dX_pad[i]
        for h in range(Ho):
            for w in range(Wo):
                for c in range(Cout):
                    vs, hs = h * stride, w * stride
                    dx_curr[vs:vs + f, hs:hs + f, :] += weight[:, :, :, c] * dZ[i, h, w, c]
                    dW[:, :, :, c] += x_curr[vs:vs + f, hs:hs + f, :] * dZ[i, h, w, c]
                    dB[:, :, :, c] += dZ[i, h, w, c]
        dX[i] = dx_curr[pad:pad + H, pad:pad + W, :]
    return dX, dW, dB


def course_pool_forward(A_prev, f, stride, mode):
    """The course's pool_forward loops."""
    m, n_H_prev, n_W_prev, n_C = A_prev.shape
    n_H, n_W = (n_H_prev - f) // stride + 1, (n_W_prev - f) // stride + 1
    A = np.zeros((m, n_H, n_W, n_C))
    for i in range(m):
        for h in range(n_H):
            for w in range(n_W):
                for c in range(n_C):
                    window = A_prev[i, h * stride:h * stride + f, w * stride:w * stride + f, c]
                    A[i, h, w, c] = np.max(window) if mode == "max" else np.mean(window)
    return A


def course_pool_backward(dA, A_prev, f, stride, mode):
    """The course's pool_backward: the mask of the max, or an even share."""
    dA_prev = np.zeros_like(A_prev)
    m, n_H, n_W, n_C = dA.shape
    for i in range(m):
        for h in range(n_H):
            for w in range(n_W):
                for c in range(n_C):
                    vs, hs = h * stride, w * stride
                    if mode == "max":
                        window = A_prev[i, vs:vs + f, hs:hs + f, c]
                        mask = window == np.max(window)
                        dA_prev[i, vs:vs + f, hs:hs + f, c] += mask * dA[i, h, w, c]
                    else:
                        dA_prev[i, vs:vs + f, hs:hs + f, c] += dA[i, h, w, c] / (f * f)
    return dA_prev


# --- seed 004's own printed numbers --------------------------------------------------

def test_seed_004_printed_numbers():
    np.random.seed(1)
    A_prev = np.random.randn(10, 4, 4, 3)
    W = np.random.randn(2, 2, 3, 8)
    b = np.random.randn(1, 1, 1, 8)
    hparameters = {"pad": 2, "stride": 2}

    Z, cache_conv = dlai.conv_forward(A_prev, W, b, hparameters)
    np.testing.assert_allclose(np.mean(Z), 0.048995203528855794, rtol=1e-12)
    np.testing.assert_allclose(Z[3, 2, 1], [-0.61490741, -6.7439236, -2.55153897, 1.75698377,
                                            3.56208902, 0.53036437, 5.18531798, 8.75898442],
                               rtol=0, atol=5e-9)                      # printed to 8 digits
    np.testing.assert_allclose(cache_conv[0][1][2][3], [-0.20075807, 0.18656139, 0.41005165],
                               rtol=0, atol=5e-9)

    dA, dW, db = dlai.conv_backward(Z, cache_conv)
    np.testing.assert_allclose(np.mean(dA), 1.4524377775388075, rtol=1e-12)
    np.testing.assert_allclose(np.mean(dW), 1.7269914583139097, rtol=1e-12)
    np.testing.assert_allclose(np.mean(db), 7.839232564616838, rtol=1e-12)
    assert (dA.shape, dW.shape, db.shape) == (A_prev.shape, W.shape, (1, 1, 1, 8))
    assert all(type(a) is np.ndarray and a.dtype == np.float64 for a in (Z, dA, dW, db))


# --- the seed's loops on other shapes, pad 0 included ---------------------------------

CONV_CASES = [  # (A_prev shape, W shape, stride, pad)
    ((2, 5, 5, 2), (3, 3, 2, 3), 1, 0),     # pad 0: the seed's own backward breaks here
    ((2, 6, 5, 3), (2, 2, 3, 2), 2, 1),     # stride 2, width not divisible: floor
    ((1, 4, 4, 1), (3, 3, 1, 2), 3, 2),
]


@pytest.mark.parametrize("a_shape,w_shape,stride,pad", CONV_CASES)
def test_conv_matches_seed_loops(a_shape, w_shape, stride, pad):
    rng = np.random.default_rng(0)
    A_prev, W = rng.standard_normal(a_shape), rng.standard_normal(w_shape)
    b = rng.standard_normal((1, 1, 1, w_shape[3]))
    hp = {"stride": stride, "pad": pad}
    Z, cache = dlai.conv_forward(A_prev, W, b, hp)
    np.testing.assert_allclose(Z, seed_conv_forward(A_prev, W, b, hp), rtol=1e-12, atol=1e-12)
    dZ = rng.standard_normal(Z.shape)
    for got, want in zip(dlai.conv_backward(dZ, cache), seed_conv_backward(dZ, A_prev, W, hp)):
        assert got.shape == want.shape and got.dtype == np.float64
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


def test_conv_backward_numerical_pad0():
    rng = np.random.default_rng(1)
    A_prev, W = rng.standard_normal((2, 4, 4, 2)), rng.standard_normal((2, 2, 2, 3))
    b = rng.standard_normal((1, 1, 1, 3))
    hp = {"stride": 1, "pad": 0}
    Z, cache = dlai.conv_forward(A_prev, W, b, hp)
    dZ = rng.standard_normal(Z.shape)
    dA, dW, db = dlai.conv_backward(dZ, cache)
    assert rel_error(dA, eval_numerical_gradient_array(
        lambda a: dlai.conv_forward(a, W, b, hp)[0], A_prev, dZ)) < 1e-8
    assert rel_error(dW, eval_numerical_gradient_array(
        lambda w: dlai.conv_forward(A_prev, w, b, hp)[0], W, dZ)) < 1e-8
    assert rel_error(db, eval_numerical_gradient_array(
        lambda c: dlai.conv_forward(A_prev, W, c, hp)[0], b, dZ)) < 1e-8


@pytest.mark.parametrize("mode", ["max", "average"])
@pytest.mark.parametrize("f,stride", [(2, 2), (3, 1)])     # tiling, and overlapping windows
def test_pool_matches_course_loops_and_numerical(mode, f, stride):
    rng = np.random.default_rng(2)
    A_prev = rng.standard_normal((2, 5, 5, 2))
    hp = {"f": f, "stride": stride}
    A, cache = dlai.pool_forward(A_prev, hp, mode=mode)
    np.testing.assert_allclose(A, course_pool_forward(A_prev, f, stride, mode), rtol=1e-14)
    np.testing.assert_array_equal(cache[0], A_prev)           # a read-only copy of its own
    assert not np.shares_memory(cache[0], A_prev) and cache[1] is hp
    dA = rng.standard_normal(A.shape)
    dA_prev = dlai.pool_backward(dA, cache, mode=mode)
    np.testing.assert_allclose(dA_prev, course_pool_backward(dA, A_prev, f, stride, mode),
                               rtol=1e-12, atol=1e-14)
    num = eval_numerical_gradient_array(lambda a: dlai.pool_forward(a, hp, mode=mode)[0],
                                        A_prev, dA)
    assert rel_error(dA_prev, num) < 1e-8


def test_pool_default_mode_is_max():
    A_prev = np.arange(16.0).reshape(1, 4, 4, 1)
    A, cache = dlai.pool_forward(A_prev, {"f": 2, "stride": 2})
    np.testing.assert_array_equal(A[0, :, :, 0], [[5.0, 7.0], [13.0, 15.0]])
    dA_prev = dlai.pool_backward(np.ones((1, 2, 2, 1)), cache)
    np.testing.assert_array_equal(dA_prev[0, :, :, 0], [[0, 0, 0, 0], [0, 1, 0, 1],
                                                        [0, 0, 0, 0], [0, 1, 0, 1]])


def test_float32_stays_float32():
    rng = np.random.default_rng(3)
    A_prev = rng.standard_normal((1, 4, 4, 2)).astype(np.float32)
    W = rng.standard_normal((2, 2, 2, 3)).astype(np.float32)
    b = rng.standard_normal((1, 1, 1, 3)).astype(np.float32)
    Z, cache = dlai.conv_forward(A_prev, W, b, {"stride": 1, "pad": 1})
    grads = dlai.conv_backward(np.ones(Z.shape), cache)              # a float64 dZ
    A, pcache = dlai.pool_forward(A_prev, {"f": 2, "stride": 2}, mode="average")
    dA = dlai.pool_backward(np.ones(A.shape, np.float32), pcache, mode="average")
    assert all(a.dtype == np.float32 for a in (Z, *grads, A, dA))
    np.testing.assert_allclose(Z, seed_conv_forward(A_prev.astype(np.float64), W, b,
                                                    {"stride": 1, "pad": 1}), rtol=1e-5, atol=1e-5)


def test_bad_input_names_the_problem():
    A_prev = np.zeros((1, 4, 4, 2))
    with pytest.raises(ValueError, match="mode"):
        dlai.pool_forward(A_prev, {"f": 2, "stride": 2}, mode="min")
    with pytest.raises(ValueError, match="channels"):
        dlai.conv_forward(A_prev, np.zeros((2, 2, 3, 1)), np.zeros((1, 1, 1, 1)),
                          {"stride": 1, "pad": 0})
    Z, cache = dlai.conv_forward(A_prev, np.zeros((2, 2, 2, 1)), np.zeros((1, 1, 1, 1)),
                                 {"stride": 1, "pad": 0})
    with pytest.raises(ValueError, match="shape"):
        dlai.conv_backward(np.zeros((1, 2, 2, 1)), cache)
