"""max_pool2d / avg_pool2d specifics: unreached rows, hand-worked examples, the
seeds' loops, and max-pool ties (against PyTorch too), which the registry's
cases avoid on purpose (finite differences are not valid at a tie)."""
import numpy as np
import pytest

import jaxconv as jc
from jaxconv._pool_cases import GEOMETRIES, case_name
from _registry_cases import results
from _util import forward_and_vjp, randn, to_nchw, to_nhwc

OPS = ("max_pool2d", "avg_pool2d")
LAYOUTS = ("NCHW", "NHWC")
# custom vs twin vs numerical and vs PyTorch for every geometry x layout: the
# registry's pool cases (jaxconv/_pool_cases.py) in tests/test_ops_*.py.


def _pair(v):
    return v if isinstance(v, tuple) else (v, v)


def unreached_mask(x_shape, pool, stride):
    (_, _, h, w), (ph, pw) = x_shape, _pair(pool)
    sh, sw = _pair(pool if stride is None else stride)
    reached = np.zeros((h, w), bool)
    for y in range((h - ph) // sh + 1):
        for xx in range((w - pw) // sw + 1):
            reached[y * sh:y * sh + ph, xx * sw:xx * sw + pw] = True
    return ~reached


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("op", OPS)
def test_floor_rows_get_exactly_zero_gradient(op, layout):
    for geometry in ("2x2-floor", "overlap-3s2", "asymmetric", "1x1-stride2-C1"):
        g = GEOMETRIES[geometry]
        mask = unreached_mask(g["x"], g["pool"], g["stride"])
        assert mask.any(), geometry
        dx = np.asarray(results(op, case_name(layout, geometry))["grads"][0])
        dx = dx if layout == "NCHW" else to_nchw(dx)
        assert np.all(dx[:, :, mask] == 0.0), geometry
        if op == "avg_pool2d":                         # every reached element gets a share
            assert np.all(dx[:, :, ~mask] != 0.0), geometry


# --- hand-worked examples ---------------------------------------------------------

def _both_layouts(fn, x, g, **kw):
    """Run fn in both layouts (the twin: NCHW only); return NCHW (out, dx) of each."""
    results = []
    for layout in LAYOUTS if fn.__module__ != "jaxconv.reference" else ("NCHW",):
        xl, gl = (x, g) if layout == "NCHW" else (to_nhwc(x), to_nhwc(g))
        out, (dx,) = forward_and_vjp(lambda x: fn(x, layout=layout, **kw), (xl,), gl)
        results.append((out, dx) if layout == "NCHW" else (to_nchw(out), to_nchw(dx)))
    return results


def test_max_pool_hand_worked():
    x = np.array([[1.0, 2.0, 5.0, 0.0],
                  [3.0, 4.0, 1.0, 1.0],
                  [0.0, 0.0, 2.0, 2.0],
                  [9.0, 0.0, 2.0, 2.0]])[None, None]
    g = np.array([[1.0, 2.0], [3.0, 4.0]])[None, None]
    expected_out = np.array([[4.0, 5.0], [9.0, 2.0]])[None, None]
    # each window's gradient lands on its maximum; the all-2 window is a tie and
    # the gradient goes to its first element (row-major), x[2, 2].
    expected_dx = np.array([[0.0, 0.0, 2.0, 0.0],
                            [0.0, 1.0, 0.0, 0.0],
                            [0.0, 0.0, 4.0, 0.0],
                            [3.0, 0.0, 0.0, 0.0]])[None, None]
    for fn in (jc.max_pool2d, jc.reference.max_pool2d):
        for out, dx in _both_layouts(fn, x, g, pool=2):
            np.testing.assert_array_equal(out, expected_out)
            np.testing.assert_array_equal(dx, expected_dx)


def test_avg_pool_hand_worked():
    x = np.arange(16.0).reshape(1, 1, 4, 4)
    # non-overlapping 2x2: mean of each block; each element gets g / 4.
    for out, dx in _both_layouts(jc.avg_pool2d, x, np.ones((1, 1, 2, 2)), pool=2):
        np.testing.assert_array_equal(out, [[[[2.5, 4.5], [10.5, 12.5]]]])
        np.testing.assert_array_equal(dx, np.full((1, 1, 4, 4), 0.25))
    # overlapping 3x3, stride 1: each element gets g / 9 once per window covering it.
    counts = np.array([[1, 2, 2, 1], [2, 4, 4, 2], [2, 4, 4, 2], [1, 2, 2, 1]])
    for out, dx in _both_layouts(jc.avg_pool2d, x, np.ones((1, 1, 2, 2)), pool=3, stride=1):
        np.testing.assert_array_equal(out, [[[[5.0, 6.0], [9.0, 10.0]]]])
        np.testing.assert_allclose(dx[0, 0], counts / 9.0, rtol=1e-15)


def test_overlapping_max_windows_add_gradients():
    # the centre is the maximum of all four 2x2 windows (stride 1): it receives
    # the sum of their gradients, everything else nothing.
    x = np.array([[1.0, 2.0, 3.0], [4.0, 9.0, 5.0], [6.0, 7.0, 8.0]])[None, None]
    g = np.array([[1.0, 10.0], [100.0, 1000.0]])[None, None]
    expected_dx = np.zeros((1, 1, 3, 3))
    expected_dx[0, 0, 1, 1] = 1111.0
    for fn in (jc.max_pool2d, jc.reference.max_pool2d):
        for out, dx in _both_layouts(fn, x, g, pool=2, stride=1):
            np.testing.assert_array_equal(out, np.full((1, 1, 2, 2), 9.0))
            np.testing.assert_array_equal(dx, expected_dx)


def naive_max_pool(x, dout, pool, stride):
    """CS231n's max_pool_forward_naive / backward_naive, loops written out;
    np.argmax picks the first maximum in row-major window order."""
    (ph, pw), (sh, sw) = pool, stride
    n, c, h, w = x.shape
    ho, wo = (h - ph) // sh + 1, (w - pw) // sw + 1
    out, dx = np.zeros((n, c, ho, wo)), np.zeros_like(x)
    for i in range(n):
        for k in range(c):
            for y in range(ho):
                for xx in range(wo):
                    window = x[i, k, y * sh:y * sh + ph, xx * sw:xx * sw + pw]
                    out[i, k, y, xx] = window.max()
                    a, b = np.unravel_index(np.argmax(window), window.shape)
                    dx[i, k, y * sh + a, xx * sw + b] += dout[i, k, y, xx]
    return out, dx


def naive_avg_pool(x, dout, pool, stride):
    (ph, pw), (sh, sw) = pool, stride
    n, c, h, w = x.shape
    ho, wo = (h - ph) // sh + 1, (w - pw) // sw + 1
    out, dx = np.zeros((n, c, ho, wo)), np.zeros_like(x)
    for y in range(ho):
        for xx in range(wo):
            rows, cols = slice(y * sh, y * sh + ph), slice(xx * sw, xx * sw + pw)
            out[:, :, y, xx] = x[:, :, rows, cols].mean(axis=(2, 3))
            dx[:, :, rows, cols] += dout[:, :, y, xx][:, :, None, None] / (ph * pw)
    return out, dx


@pytest.mark.parametrize("pool, stride", [((2, 2), (2, 2)), ((3, 3), (1, 1)), ((3, 2), (2, 1))])
def test_integer_inputs_with_many_ties_match_numpy_loops(pool, stride):
    """Values in {0, 1, 2}: most windows hold ties; windows overlap for two of the
    configurations. Custom max pool, twin and the seeds' loops agree exactly (and
    the average pool, once, with the loops)."""
    rng = np.random.default_rng(13)
    x = rng.integers(0, 3, (2, 2, 6, 7)).astype(np.float64)
    g = rng.integers(1, 5, ((2, 2, (6 - pool[0]) // stride[0] + 1,
                            (7 - pool[1]) // stride[1] + 1))).astype(np.float64)
    expected_out, expected_dx = naive_max_pool(x, g, pool, stride)
    for fn in (jc.max_pool2d, jc.reference.max_pool2d):
        for out, dx in _both_layouts(fn, x, g, pool=pool, stride=stride):
            np.testing.assert_array_equal(out, expected_out)
            np.testing.assert_array_equal(dx, expected_dx)
    if pool == (3, 2):
        expected_out, expected_dx = naive_avg_pool(x, g, pool, stride)
        for out, dx in _both_layouts(jc.avg_pool2d, x, g, pool=pool, stride=stride):
            np.testing.assert_allclose(out, expected_out, rtol=1e-14)
            np.testing.assert_allclose(dx, expected_dx, rtol=1e-14)


def test_max_pool_ties_go_to_first_maximum():
    """All-equal input: every window's gradient goes to its top-left element. With
    overlapping windows (3x3, stride 2) an element shared by two windows gets the
    gradient only of the window it starts; the twin (XLA's select_and_scatter) agrees."""
    x = np.ones((1, 1, 7, 7))
    g = np.arange(1.0, 10.0).reshape(1, 1, 3, 3)
    expected = np.zeros((1, 1, 7, 7))
    expected[0, 0, ::2, ::2][:3, :3] = g[0, 0]
    for fn in (jc.max_pool2d, jc.reference.max_pool2d):
        for out, dx in _both_layouts(fn, x, g, pool=3, stride=2):
            np.testing.assert_array_equal(out, np.ones((1, 1, 3, 3)))
            np.testing.assert_array_equal(dx, expected)
    # stride 1 on a 3x3 of ones: window (y, x) sends its gradient to x[y, x].
    x, g = np.ones((1, 1, 3, 3)), np.array([[[[1.0, 10.0], [100.0, 1000.0]]]])
    expected = np.zeros((1, 1, 3, 3))
    expected[0, 0, :2, :2] = g[0, 0]
    for fn in (jc.max_pool2d, jc.reference.max_pool2d):
        for _, dx in _both_layouts(fn, x, g, pool=2, stride=1):
            np.testing.assert_array_equal(dx, expected)
    # a tie that is not at the window start: the first of the two 3s, in row order.
    x = np.array([[1.0, 3.0], [3.0, 2.0]])[None, None]
    for fn in (jc.max_pool2d, jc.reference.max_pool2d):
        for _, dx in _both_layouts(fn, x, np.ones((1, 1, 1, 1)), pool=2):
            np.testing.assert_array_equal(dx[0, 0], [[0.0, 1.0], [0.0, 0.0]])


def test_stride_defaults_to_pool():
    x = randn(14, 1, 2, 6, 6)
    for op in (jc.max_pool2d, jc.avg_pool2d):
        np.testing.assert_array_equal(op(x, pool=(3, 2)), op(x, pool=(3, 2), stride=(3, 2)))
        assert op(x, pool=(3, 2)).shape == (1, 2, 2, 3)


def test_max_pool_ties_match_torch(torch):
    """Integer inputs with many ties (and an all-equal image): PyTorch, the custom
    rule and the twin route each window's gradient to the same element."""
    x = np.random.default_rng(79).integers(0, 2, (2, 2, 7, 7)).astype(np.float64)
    x[1, 1] = 1.0                                     # one image with every value tied
    for pool, stride in [(2, 2), (3, 1), (3, 2)]:
        t_x = torch.tensor(x, requires_grad=True)
        t_out = torch.nn.functional.max_pool2d(t_x, kernel_size=pool, stride=stride)
        g = np.random.default_rng(80).integers(1, 9, t_out.shape).astype(np.float64)
        t_out.backward(torch.tensor(g))
        for fn in (jc.max_pool2d, jc.reference.max_pool2d):
            out, (dx,) = forward_and_vjp(lambda x: fn(x, pool=pool, stride=stride), (x,), g)
            np.testing.assert_array_equal(out, t_out.detach().numpy())
            np.testing.assert_array_equal(dx, t_x.grad.numpy())
