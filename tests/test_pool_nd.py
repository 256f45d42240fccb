"""The pooling family in 1, 2 and 3 spatial dims: hand-worked values, NaN and ties,
NumPy loops of PyTorch's kernels, residuals, empty batches, signatures.

The registered cases (jaxconv/_pool_cases.py, _adaptive_pool_cases.py) run in the
generic tests: custom vs twin vs centered differences (test_ops_gradients.py),
transforms and half precision (test_ops_transforms.py), bad input
(test_ops_validation.py), PyTorch (test_ops_torch.py); PyTorch's own module
configurations are in test_torch_modules_pool.py."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxconv as jc
from jaxconv.gradcheck import rel_error
import _pool_oracles as oracle


def distinct(seed, *shape):
    """A shuffled grid 0.1 apart: no window holds two values within 0.1 of each other,
    so finite differences never cross a change of winner."""
    size = int(np.prod(shape))
    return (np.random.default_rng(seed).permutation(size) * 0.1 - size * 0.05).reshape(shape)


def bound(module, name, hyper, layout):
    """``x -> op(x)`` with the hyperparameters (``out_size`` positional)."""
    hyper = dict(hyper, layout=layout)
    out_size = hyper.pop("out_size", None)
    op = getattr(module, name)
    return (lambda x: op(x, out_size, **hyper)) if name.startswith("adaptive") \
        else (lambda x: op(x, **hyper))


# --- hand-worked values -----------------------------------------------------------------

def test_avg_pool_divisors_by_hand():
    """x = 1..5, window 2, stride 2, pad 1, ceil_mode: windows [pad, 1], [2, 3], [4, 5];
    with the padding counted the first divides by 2 (0.5), without by 1 (1.0).
    x = 1..4, window 3, stride 2, pad 1, ceil_mode: the last window [4, pad, past]
    divides by 2: the overhang past the padded input is never counted."""
    x = np.arange(1.0, 6.0)[None, None]
    kw = dict(pool=2, stride=2, pad=1, ceil_mode=True)
    np.testing.assert_allclose(jc.avg_pool1d(x, **kw)[0, 0], [0.5, 2.5, 4.5])
    np.testing.assert_allclose(jc.avg_pool1d(x, count_include_pad=False, **kw)[0, 0],
                               [1.0, 2.5, 4.5])
    x4 = np.arange(1.0, 5.0)[None, None]
    np.testing.assert_allclose(jc.avg_pool1d(x4, pool=3, stride=2, pad=1, ceil_mode=True)[0, 0],
                               [1.0, 3.0, 2.0])
    dx = jax.jit(jax.grad(lambda a: jc.avg_pool1d(a, pool=3, stride=2, pad=1,
                                                  ceil_mode=True).sum()))(x4)
    np.testing.assert_allclose(dx[0, 0], [1 / 3, 2 / 3, 1 / 3, 1 / 3 + 1 / 2])


def test_max_pool_ceil_mode_and_dilation_by_hand():
    """x = 0..9, window 3 dilated by 2 (taps 0, 2, 4), stride 2, pad 1, ceil_mode:
    windows start at -1, 1, 3, 5, 7; the last reads 7, 9 and one tap past the
    padded input."""
    x = np.arange(10.0)[None, None]
    out = jc.max_pool1d(x, pool=3, stride=2, pad=1, dilation=2, ceil_mode=True)
    np.testing.assert_array_equal(out[0, 0], [3, 5, 7, 9, 9])
    floor = jc.max_pool1d(x, pool=3, stride=2, pad=1, dilation=2)
    np.testing.assert_array_equal(floor[0, 0], [3, 5, 7, 9])
    dx = jax.jit(jax.grad(lambda a: jc.max_pool1d(a, pool=3, stride=2, pad=1, dilation=2,
                                                  ceil_mode=True).sum()))(x)
    np.testing.assert_array_equal(dx[0, 0], [0, 0, 0, 1, 0, 1, 0, 1, 0, 2])


def test_adaptive_windows_by_hand():
    """5 rows to 3: windows [0, 2), [1, 4), [3, 5); to 7 (upsampling): rows
    0, 0-1, 1-2, 2, 2-3, 3-4, 4 (PyTorch's rule)."""
    x = np.array([[[1.0, 5.0, 2.0, 4.0, 3.0]]])
    np.testing.assert_allclose(jc.adaptive_avg_pool1d(x, 3)[0, 0], [3.0, 11 / 3, 3.5])
    np.testing.assert_array_equal(jc.adaptive_max_pool1d(x, 3)[0, 0], [5.0, 5.0, 4.0])
    np.testing.assert_array_equal(jc.adaptive_max_pool1d(x, 7)[0, 0],
                                  [1.0, 5.0, 5.0, 2.0, 4.0, 4.0, 3.0])
    dx = jax.jit(jax.grad(lambda a: jc.adaptive_max_pool1d(a, 3).sum()))(x)
    np.testing.assert_array_equal(dx[0, 0], [0, 2, 0, 1, 0])     # row 1 wins twice


def test_max_pool_nan_and_ties_by_hand():
    """Ties: the first maximum in row-major order. NaN: the output is NaN and the
    gradient goes to the window's LAST NaN (PyTorch's scan: larger or NaN wins).
    A window of -inf next to the padding: its first tap on the input."""
    tie = np.array([[[[3.0, 1.0], [3.0, 3.0]]]])
    for f in (lambda a: jc.max_pool2d(a, pool=2), lambda a: jc.adaptive_max_pool2d(a, 1)):
        dx = jax.jit(jax.grad(lambda a: f(a).sum()))(tie)
        np.testing.assert_array_equal(dx[0, 0], [[1, 0], [0, 0]])
    nan = np.array([[[[1.0, np.nan], [np.nan, 2.0]]]])
    for f in (lambda a: jc.max_pool2d(a, pool=2), lambda a: jc.adaptive_max_pool2d(a, 1),
              lambda a: jc.max_pool(a, pool=3, stride=2, pad=1)):
        out, dx = jax.jit(jax.value_and_grad(lambda a: f(a)[0, 0, 0, 0]))(nan)
        assert np.isnan(out)
        np.testing.assert_array_equal(dx[0, 0], [[0, 0], [1, 0]])
    minus_inf = np.full((1, 1, 3), -np.inf)
    dx = jax.jit(jax.grad(lambda a: jc.max_pool1d(a, pool=3, stride=1, pad=1).sum()))(minus_inf)
    np.testing.assert_array_equal(dx[0, 0], [2, 1, 0])


def test_ops_equal_numpy_loops_nd():
    """The custom ops against the NumPy loops of PyTorch's kernels, one 3-D case each."""
    x = distinct(7, 2, 2, 5, 4, 6)
    g = np.random.default_rng(8).standard_normal
    checks = [
        (lambda a: jc.max_pool3d(a, pool=(3, 2, 3), stride=(2, 1, 2), pad=(1, 0, 1),
                                 dilation=(1, 2, 1), ceil_mode=True),
         lambda a, g: oracle.max_pool(a, g, (3, 2, 3), (2, 1, 2), (1, 0, 1), (1, 2, 1), True)),
        (lambda a: jc.avg_pool3d(a, pool=3, stride=2, pad=1, ceil_mode=True,
                                 count_include_pad=False),
         lambda a, g: oracle.avg_pool(a, g, 3, 2, 1, True, False)),
        (lambda a: jc.adaptive_max_pool3d(a, (2, 3, 4)),
         lambda a, g: oracle.adaptive_pool(a, g, (2, 3, 4), "max")),
        (lambda a: jc.adaptive_avg_pool3d(a, (4, 3, 4)),
         lambda a, g: oracle.adaptive_pool(a, g, (4, 3, 4), "avg")),
    ]
    for op, loops in checks:
        gout = g(jax.eval_shape(op, x).shape)
        out, dx = jax.jit(lambda a, g: (op(a), jax.vjp(op, a)[1](g)[0]))(x, gout)
        expected_out, expected_dx = loops(x, gout)
        assert rel_error(out, expected_out) < 1e-12
        assert rel_error(dx, expected_dx) < 1e-12


# --- residuals ----------------------------------------------------------------------------

def residuals(f, x):
    """The arrays the pullback of ``f`` at x keeps (what stays between the passes),
    traced abstractly: no computation."""
    leaves = jax.eval_shape(lambda a: jax.tree.leaves(jax.vjp(f, a)[1]), x)
    return [(np.dtype(leaf.dtype), tuple(leaf.shape)) for leaf in leaves]


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
def test_residuals_max_keeps_one_byte_per_output_avg_nothing(layout):
    x = np.zeros((2, 3, 9, 8)) if layout == "NCHW" else np.zeros((2, 9, 8, 3))
    out_shape = (2, 3, 5, 4) if layout == "NCHW" else (2, 5, 4, 3)
    stem = dict(pool=3, stride=2, pad=1, layout=layout)
    assert residuals(lambda a: jc.max_pool(a, **stem), x) == [(np.dtype(np.uint8), out_shape)]
    dilated_shape = (2, 3, 4, 4) if layout == "NCHW" else (2, 4, 4, 3)  # span 5, ceil
    assert residuals(lambda a: jc.max_pool(a, dilation=2, ceil_mode=True, **stem), x) == \
        [(np.dtype(np.uint8), dilated_shape)]
    assert residuals(lambda a: jc.avg_pool(a, ceil_mode=True, **stem), x) == []
    assert residuals(lambda a: jc.adaptive_avg_pool(a, (3, 5), layout=layout), x) == []
    adaptive_shape = (2, 3, 4, 3) if layout == "NCHW" else (2, 4, 3, 3)
    assert residuals(lambda a: jc.adaptive_max_pool(a, (4, 3), layout=layout), x) == \
        [(np.dtype(np.uint8), adaptive_shape)]
    # global max pooling: 72 taps still fit a byte; 17 x 16 = 272 do not
    assert residuals(lambda a: jc.adaptive_max_pool(a, 1, layout=layout), x)[0][0] == np.uint8
    big = np.zeros((1, 2, 17, 16))
    assert residuals(lambda a: jc.adaptive_max_pool2d(a, 1), big) == \
        [(np.dtype(np.int32), (1, 2, 1, 1))]


def test_global_average_pool_is_one_mean():
    """out_size=1: the forward is one contraction (a sum, or a product with the
    averaging weights) and the backward one broadcast, no window gathers or scatters."""
    x = np.zeros((2, 3, 7, 7))
    jaxpr = str(jax.make_jaxpr(lambda a: jax.vjp(lambda b: jc.adaptive_avg_pool(b, 1), a)[1](
        jnp.ones((2, 3, 1, 1))))(x))
    assert "reduce_sum" in jaxpr or "dot_general" in jaxpr
    assert "broadcast_in_dim" in jaxpr
    assert not any(p in jaxpr for p in ("gather", "scatter", "reduce_window", "pad"))


# --- zero-size and signatures ------------------------------------------------------------

@pytest.mark.parametrize("name", ["max_pool", "avg_pool", "adaptive_avg_pool",
                                  "adaptive_max_pool"])
def test_empty_batch_gives_empty_output(name):
    """As in PyTorch, N = 0 is allowed: the output and the gradient are empty too."""
    f = bound(jc, name, dict(out_size=3) if name.startswith("adaptive") else dict(pool=2), None)
    x = np.zeros((0, 2, 6, 6))
    out, pull = jax.vjp(f, x)
    assert out.shape == (0, 2, 3, 3) and pull(jnp.zeros(out.shape))[0].shape == x.shape


def test_signatures_of_twins_are_identical():
    import inspect
    for name in ["max_pool", "avg_pool", "adaptive_avg_pool", "adaptive_max_pool"]:
        for suffix in ("", "1d", "2d", "3d"):
            op, twin = getattr(jc, name + suffix), getattr(jc.reference, name + suffix)
            assert inspect.signature(op) == inspect.signature(twin), name + suffix


def test_2d_defaults_unchanged():
    """max_pool2d/avg_pool2d keep their defaults: pool=2, stride=pool, layout NCHW."""
    x = distinct(1, 1, 2, 4, 6)
    np.testing.assert_array_equal(jc.max_pool2d(x), x.reshape(1, 2, 2, 2, 3, 2).max((3, 5)))
    np.testing.assert_allclose(jc.avg_pool2d(x), x.reshape(1, 2, 2, 2, 3, 2).mean((3, 5)))
