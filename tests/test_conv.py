"""conv2d: every impl x layout against the autodiff twin, numerical gradients and
hand-worked / NumPy-loop oracles, in float64."""
import functools

import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

import jaxconv as jc
from jaxconv.gradcheck import numerical_vjp, rel_error
from _seed_oracles import naive_conv_backward, naive_conv_forward
from _util import forward_and_vjp, randn, to_hwio, to_nhwc

IMPLS = ("xla", "im2col", "naive")
LAYOUTS = ("NCHW", "NHWC")

# NCHW shapes; NHWC runs the same numbers transposed. Each case names what it covers.
CASES = {
    # Ho = (8 - 3) // 2 + 1 = 3 leaves the last row unreached; W divides.
    "stride2-nondivisible": dict(x=(2, 3, 8, 7), w=(4, 3, 3, 3), bias=True, stride=2, pad=0),
    "asymmetric-stride-pad": dict(x=(2, 2, 6, 5), w=(3, 2, 3, 2), bias=True,
                                  stride=(2, 1), pad=(1, 0)),
    # rows/columns 1, 3 (and column 5) are skipped by a 1x1 kernel with stride 2.
    "1x1-stride2": dict(x=(2, 3, 5, 6), w=(4, 3, 1, 1), bias=True, stride=2, pad=0),
    "7x7-stride3": dict(x=(2, 2, 9, 8), w=(2, 2, 7, 7), bias=True, stride=3, pad=(2, 0)),
    "C1-no-bias": dict(x=(2, 1, 6, 6), w=(3, 1, 3, 3), bias=False, stride=1, pad=1),
}


def _pair(v):
    return v if isinstance(v, tuple) else (v, v)


@functools.lru_cache(maxsize=None)
def case_data(name):
    """Inputs, cotangent and the two independent oracles (twin autodiff and
    centered differences of the twin), all NCHW; computed once per case."""
    c = CASES[name]
    x, w = randn(1, *c["x"]), randn(2, *c["w"])
    b = randn(3, c["w"][0]) if c["bias"] else None
    hyper = dict(stride=c["stride"], pad=c["pad"])
    twin = lambda x, w, b: jc.reference.conv2d(x, w, b, **hyper)   # noqa: E731
    g = randn(4, *jnp.shape(twin(x, w, b)))
    # one centered-difference pass over x, w and b raveled together (one compile)
    flat, unravel = ravel_pytree((x, w, b))
    num = unravel(numerical_vjp(lambda p: twin(*unravel(p)), flat, g))
    return x, w, b, g, hyper, [None if n is None else np.asarray(n) for n in num]


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


def to_layout_grads(layout, dx, dw):
    """NCHW oracle gradients expressed in ``layout``."""
    return (dx, dw) if layout == "NCHW" else (to_nhwc(dx), to_hwio(dw))


@functools.lru_cache(maxsize=None)
def custom_result(case, impl, layout):
    """Forward and VJP of ``jc.conv2d`` (``impl=None``: of the twin) in ``layout``."""
    x, w, b, g, hyper, _ = case_data(case)
    xl, wl, gl = in_layout(layout, x, w, g)
    op = jc.reference.conv2d if impl is None else functools.partial(jc.conv2d, impl=impl)
    return forward_and_vjp(lambda x, w, b: op(x, w, b, layout=layout, **hyper), (xl, wl, b), gl)


# Every case x impl x layout, except that the 7x7 kernel, whose 49 offsets make the
# im2col and naive impls slow to compile, runs those two in NCHW only (their NHWC
# indexing is covered by the other kernels, non-square included).
GRID = [(case, impl, layout) for case in CASES for impl in IMPLS for layout in LAYOUTS
        if not (case == "7x7-stride3" and impl != "xla" and layout == "NHWC")]


@pytest.mark.parametrize("case, impl, layout", GRID)
def test_grads_equal_twin_and_numerical(case, impl, layout):
    x, w, b, g, hyper, (num_dx, num_dw, num_db) = case_data(case)
    xl, wl, gl = in_layout(layout, x, w, g)
    out, grads = custom_result(case, impl, layout)
    out_t, grads_t = custom_result(case, None, layout)
    np.testing.assert_allclose(out, out_t, rtol=1e-10, atol=1e-12)
    num_dx, num_dw = to_layout_grads(layout, num_dx, num_dw)
    for name, got, auto, num, arg in (("x", grads[0], grads_t[0], num_dx, xl),
                                      ("w", grads[1], grads_t[1], num_dw, wl),
                                      ("b", grads[2], grads_t[2], num_db, b)):
        if arg is None:
            assert got is None and auto is None
            continue
        assert got.shape == arg.shape and got.dtype == arg.dtype == jnp.float64, name
        assert rel_error(got, auto) < 1e-10, (name, rel_error(got, auto))
        assert rel_error(got, num) < 1e-6, (name, rel_error(got, num))


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("impl", IMPLS)
def test_floor_rows_get_exactly_zero_gradient(impl, layout):
    for case in ("stride2-nondivisible", "1x1-stride2", "7x7-stride3"):
        if (case, impl, layout) not in GRID:
            continue
        x, w, b, g, hyper, _ = case_data(case)
        mask = unreached_mask(x.shape, w.shape, hyper["stride"], hyper["pad"])
        assert mask.any(), case                       # the case does exercise the floor
        _, (dx, _, _) = custom_result(case, impl, layout)
        dx = np.asarray(dx)
        dx = dx if layout == "NCHW" else np.transpose(dx, (0, 3, 1, 2))
        assert np.all(dx[:, :, mask] == 0.0), case
        assert np.all(dx[:, :, ~mask] != 0.0), case   # and only there


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
