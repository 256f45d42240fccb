"""Property tests of the pooling family over drawn N-d shapes, pools, strides, pads,
dilations, ceil_mode and layouts: forward and VJP equal the NumPy loops of PyTorch's
kernels (tests/_pool_oracles.py, which re-derive sizes, windows and divisors on their
own); combinations PyTorch rejects raise ValueError.

Inputs come from {-2, ..., 2} with -inf and NaN mixed in, so ties, infinities and
NaN windows are drawn too. Every new shape compiles anew: shapes are tiny and the
example counts small.
"""
import jax
import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import jaxconv as jc
import _pool_oracles as oracle

_LAST = {1: "NWC", 2: "NHWC", 3: "NDHWC"}


@st.composite
def windows(draw, dilated):
    dims = draw(st.integers(1, 3))
    k = [draw(st.integers(1, 3)) for _ in range(dims)]
    d = [draw(st.integers(1, 2)) if dilated else 1 for _ in range(dims)]
    return dict(
        dims=dims, pool=k, dilation=d,
        stride=[draw(st.integers(1, 3)) for _ in range(dims)],
        pad=[draw(st.integers(0, ki // 2)) for ki in k],
        size=[draw(st.integers(1, 6)) for _ in range(dims)],
        ceil_mode=draw(st.booleans()), last=draw(st.booleans()),
        count_include_pad=draw(st.booleans()), seed=draw(st.integers(0, 2 ** 16)))


def data(seed, shape):
    rng = np.random.default_rng(seed)
    x = rng.integers(-2, 3, size=shape).astype(np.float64)
    x[rng.random(shape) < 0.1] = -np.inf
    x[rng.random(shape) < 0.05] = np.nan
    return x


def run(op, x, last, dims, g_seed):
    """``(out, dx)`` channels-first, op run channels-last when ``last``."""
    xl = np.moveaxis(x, 1, -1) if last else x
    out_shape = jax.eval_shape(op, xl).shape
    g = np.random.default_rng(g_seed).standard_normal(out_shape)
    out, dx = jax.jit(lambda a, g: (op(a), jax.vjp(op, a)[1](g)[0]))(xl, g)
    if last:
        out, dx, g = (np.moveaxis(np.asarray(a), -1, 1) for a in (out, dx, g))
    return np.asarray(out), np.asarray(dx), np.asarray(g)


def _fits(w):
    span = [d * (k - 1) + 1 for k, d in zip(w["pool"], w["dilation"])]
    return all(e <= n + 2 * p for e, n, p in zip(span, w["size"], w["pad"]))


@settings(max_examples=15, deadline=None)
@given(windows(dilated=True))
def test_max_pool_equals_numpy_loops(w):
    assume(_fits(w))
    x = data(w["seed"], (2, 2, *w["size"]))
    layout = _LAST[w["dims"]] if w["last"] else None
    op = lambda a: jc.max_pool(a, pool=w["pool"], stride=w["stride"], pad=w["pad"],  # noqa: E731
                               dilation=w["dilation"], ceil_mode=w["ceil_mode"], layout=layout)
    out, dx, g = run(op, x, w["last"], w["dims"], w["seed"] + 1)
    expected_out, expected_dx = oracle.max_pool(x, g, w["pool"], w["stride"], w["pad"],
                                                w["dilation"], w["ceil_mode"])
    np.testing.assert_array_equal(out, expected_out)
    np.testing.assert_allclose(dx, expected_dx, rtol=1e-12, atol=1e-12)


@settings(max_examples=15, deadline=None)
@given(windows(dilated=False))
def test_avg_pool_equals_numpy_loops(w):
    assume(_fits(w))
    x = np.random.default_rng(w["seed"]).standard_normal((2, 2, *w["size"]))
    layout = _LAST[w["dims"]] if w["last"] else None
    op = lambda a: jc.avg_pool(a, pool=w["pool"], stride=w["stride"], pad=w["pad"],  # noqa: E731
                               ceil_mode=w["ceil_mode"], layout=layout,
                               count_include_pad=w["count_include_pad"])
    out, dx, g = run(op, x, w["last"], w["dims"], w["seed"] + 1)
    expected_out, expected_dx = oracle.avg_pool(x, g, w["pool"], w["stride"], w["pad"],
                                                w["ceil_mode"], w["count_include_pad"])
    np.testing.assert_allclose(out, expected_out, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(dx, expected_dx, rtol=1e-12, atol=1e-14)


@settings(max_examples=15, deadline=None)
@given(st.integers(1, 3).flatmap(lambda dims: st.tuples(
    st.just(dims), st.lists(st.integers(1, 7), min_size=dims, max_size=dims),
    st.lists(st.integers(1, 8), min_size=dims, max_size=dims),
    st.sampled_from(["avg", "max"]), st.booleans(), st.integers(0, 2 ** 16))))
def test_adaptive_pool_equals_numpy_loops(case):
    dims, size, out_size, kind, last, seed = case
    x = data(seed, (2, 2, *size)) if kind == "max" else \
        np.random.default_rng(seed).standard_normal((2, 2, *size))
    layout = _LAST[dims] if last else None
    fn = getattr(jc, f"adaptive_{kind}_pool")
    out, dx, g = run(lambda a: fn(a, tuple(out_size), layout=layout), x, last, dims, seed + 1)
    expected_out, expected_dx = oracle.adaptive_pool(x, g, out_size, kind)
    np.testing.assert_allclose(out, expected_out, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(dx, expected_dx, rtol=1e-12, atol=1e-14)


@settings(max_examples=20, deadline=None)
@given(windows(dilated=True), st.integers(1, 3))
def test_rejected_where_pytorch_rejects(w, extra):
    """A window past the padded input, or a pad over half the window: ValueError."""
    too_much_pad = list(w["pad"])
    too_much_pad[0] = w["pool"][0] // 2 + extra
    x = np.zeros((1, 1, *w["size"]))
    with pytest.raises(ValueError, match="pad must be at most half|larger than the padded"):
        jc.max_pool(x, pool=w["pool"], pad=too_much_pad, dilation=w["dilation"])
    if not _fits(w):
        with pytest.raises(ValueError, match="larger than the padded input"):
            jc.max_pool(x, pool=w["pool"], pad=w["pad"], dilation=w["dilation"])
