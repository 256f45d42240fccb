"""conv2d specifics: rows no window reaches get exactly zero gradient, hand-worked
and NumPy-loop oracles (exact, in float64), accepted spellings."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxconv as jc
from jaxconv import _registry
from jaxconv._conv_cases import GEOMETRIES, case_name
from _registry_cases import results
from _seed_oracles import naive_conv_backward, naive_conv_forward
from _util import forward_and_vjp, randn, to_hwio, to_nhwc

IMPLS = ("xla", "im2col", "naive")
LAYOUTS = ("NCHW", "NHWC")
# custom vs twin vs numerical and vs PyTorch for every geometry x impl x layout:
# the registry's conv2d cases (jaxconv/_conv_cases.py) in tests/test_ops_*.py.


def _pair(v):
    return v if isinstance(v, tuple) else (v, v)


def unreached_mask(x_shape, w_shape, stride, pad):
    """True where no window ever reads x (NumPy loops over every window)."""
    (_, _, h, wd), (_, _, kh, kw) = x_shape, w_shape
    (sh, sw), (ph, pw) = _pair(stride), _pair(pad)
    ho, wo = (h + 2 * ph - kh) // sh + 1, (wd + 2 * pw - kw) // sw + 1
    reached = np.zeros((h + 2 * ph, wd + 2 * pw), bool)
    for y in range(ho):
        for xx in range(wo):
            reached[y * sh:y * sh + kh, xx * sw:xx * sw + kw] = True
    return ~reached[ph:ph + h, pw:pw + wd]


def in_layout(layout, x, w, g):
    if layout == "NCHW":
        return x, w, g
    return to_nhwc(x), to_hwio(w), to_nhwc(g)


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("impl", IMPLS)
def test_floor_rows_get_exactly_zero_gradient(impl, layout):
    for geometry in ("stride2-nondivisible", "1x1-stride2", "7x7-stride3"):
        name = case_name(impl, layout, geometry)
        if name not in {c.name for c in _registry.spec("conv2d").check_cases()}:
            continue
        g = GEOMETRIES[geometry]
        mask = unreached_mask(g["x"], g["w"], g["stride"], g["pad"])
        assert mask.any(), geometry                   # the case does exercise the floor
        dx = np.asarray(results("conv2d", name)["grads"][0])
        dx = dx if layout == "NCHW" else np.transpose(dx, (0, 3, 1, 2))
        assert np.all(dx[:, :, mask] == 0.0), geometry
        assert np.all(dx[:, :, ~mask] != 0.0), geometry   # and only there


# --- hand-worked examples ---------------------------------------------------------

def test_hand_worked_integer_example():
    # x[i, j] = 4 i + j; w = [[1, 2], [3, 4]]; stride 2, no padding: each output is
    # 1 x[2y, 2x] + 2 x[2y, 2x+1] + 3 x[2y+1, 2x] + 4 x[2y+1, 2x+1] + b = 80y + 20x + 34 + b.
    x = np.arange(16.0).reshape(1, 1, 4, 4)
    w = np.array([[[[1.0, 2.0], [3.0, 4.0]]]])
    b = np.array([1.0])
    expected_out = np.array([[[[35.0, 55.0], [115.0, 135.0]]]])
    # g = 1 everywhere: the windows tile x, so dx repeats w; dw[i, j] sums the four
    # x values under tap (i, j): 4 (4i + j) + (0 + 2 + 8 + 10); db counts outputs.
    expected_dx = np.tile(w[0, 0], (2, 2))[None, None]
    expected_dw = np.array([[[[20.0, 24.0], [36.0, 40.0]]]])
    g = np.ones((1, 1, 2, 2))
    for impl in IMPLS:
        for layout in LAYOUTS:
            xl, wl, gl = in_layout(layout, x, w, g)
            out, (dx, dw, db) = forward_and_vjp(
                lambda x, w, b: jc.conv2d(x, w, b, stride=2, impl=impl, layout=layout),
                (xl, wl, b), gl)
            ex_out, ex_dx = (expected_out, expected_dx) if layout == "NCHW" else (
                to_nhwc(expected_out), to_nhwc(expected_dx))
            ex_dw = expected_dw if layout == "NCHW" else to_hwio(expected_dw)
            np.testing.assert_array_equal(out, ex_out)
            np.testing.assert_array_equal(dx, ex_dx)
            np.testing.assert_array_equal(dw, ex_dw)
            np.testing.assert_array_equal(db, [4.0])


def test_integer_example_matches_numpy_loops():
    """Small integers (exact in float64): forward and all gradients equal the
    seeds' naive loops exactly, with asymmetric stride/pad and a floor."""
    rng = np.random.default_rng(11)
    x = rng.integers(-3, 4, (2, 2, 6, 7)).astype(np.float64)
    w = rng.integers(-2, 3, (3, 2, 3, 2)).astype(np.float64)
    b = rng.integers(-2, 3, 3).astype(np.float64)
    stride, pad = (2, 3), (1, 2)
    expected = naive_conv_forward(x, w, b, stride, pad)
    g = rng.integers(-2, 3, expected.shape).astype(np.float64)
    ex_dx, ex_dw, ex_db = naive_conv_backward(g, x, w, stride, pad)
    for impl in IMPLS:
        out, (dx, dw, db) = forward_and_vjp(
            lambda x, w, b: jc.conv2d(x, w, b, stride=stride, pad=pad, impl=impl), (x, w, b), g)
        np.testing.assert_array_equal(out, expected)
        np.testing.assert_array_equal(dx, ex_dx)
        np.testing.assert_array_equal(dw, ex_dw)
        np.testing.assert_array_equal(db, ex_db)


def test_accepts_numpy_and_returns_jax_arrays():
    x, w = randn(8, 1, 2, 4, 4), randn(9, 3, 2, 3, 3)
    out = jc.conv2d(x, w, pad=1)
    assert not isinstance(out, np.ndarray) and out.shape == (1, 3, 4, 4)
    assert out.dtype == jnp.float64


def test_valid_spellings_are_accepted():
    """NumPy integers, lists and pairs are the same hyperparameters as plain ints."""
    x, w = np.ones((1, 2, 6, 6)), np.ones((3, 2, 3, 3))
    expected = jc.conv2d(x, w, stride=2, pad=1)
    for stride, pad in ((np.int64(2), np.int32(1)), ([2, 2], [1, 1]), ((2, 2), (1, 1))):
        np.testing.assert_array_equal(jc.conv2d(x, w, stride=stride, pad=pad), expected)
    np.testing.assert_array_equal(jc.max_pool2d(x, pool=np.int64(2)), jc.max_pool2d(x, pool=(2, 2)))
    # Python lists as data are arrays too (SPEC: NumPy or JAX arrays in)
    assert jc.avg_pool2d(x.tolist(), pool=3).shape == (1, 2, 2, 2)


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
def test_float64_strided_input_gradient_that_aborts_xla_cpu(layout):
    """jaxlib 0.10.2's XLA:CPU aborts the process compiling this float64 dx as an
    ``lhs_dilation`` convolution (README, "Known XLA issue"); the xla impl spreads g by
    ``lax.pad`` there. Oracle: central differences of the forward (which compiles)."""
    x, w = randn(0, 1, 2, 5, 4), randn(1, 4, 1, 4, 2)
    if layout == "NHWC":
        x, w = to_nhwc(x), to_hwio(w)
    u = randn(2, 1, 4, 3, 3) if layout == "NCHW" else to_nhwc(randn(2, 1, 4, 3, 3))

    def loss(x):
        out = jc.conv2d(x, w, stride=2, pad=((2, 2), (1, 1)), groups=2, layout=layout,
                        impl="xla")
        return jnp.sum(out * u)

    dx = jax.jit(jax.grad(loss))(x)
    h, numerical = 1e-6, np.zeros_like(x)
    for i in np.ndindex(x.shape):
        e = np.zeros_like(x)
        e[i] = h
        numerical[i] = (loss(x + e) - loss(x - e)) / (2 * h)
    np.testing.assert_allclose(dx, numerical, rtol=1e-7, atol=1e-9)
