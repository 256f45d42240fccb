"""Property tests over random shapes, strides and pads: the custom ops equal their
autodiff twins (forward and VJP); invalid combinations raise ValueError.

Every new shape compiles anew, so the shapes are tiny and the example counts small.
"""
import jax
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import jaxconv as jc
from _util import forward_and_vjp

pair = st.tuples(st.integers(1, 3), st.integers(1, 3))
LAYOUTS = st.sampled_from(["NCHW", "NHWC"])


@st.composite
def conv_cases(draw):
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    ph, pw = draw(st.integers(0, 2)), draw(st.integers(0, 2))
    # H may be smaller than the kernel as long as the padded input holds it
    h = draw(st.integers(max(1, kh - 2 * ph), 7))
    w = draw(st.integers(max(1, kw - 2 * pw), 7))
    return dict(n=draw(st.integers(1, 2)), c=draw(st.integers(1, 3)), f=draw(st.integers(1, 3)),
                h=h, w=w, kh=kh, kw=kw, stride=draw(pair), pad=(ph, pw),
                bias=draw(st.booleans()), layout=draw(LAYOUTS),
                impl=draw(st.sampled_from(["xla", "im2col", "naive"])),
                seed=draw(st.integers(0, 2 ** 16)))


def _close(a, b):
    a, b = np.asarray(a), np.asarray(b)
    assert a.shape == b.shape and a.dtype == b.dtype
    np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12 * max(1.0, np.abs(b).max(initial=0)))


@settings(max_examples=12, deadline=None)
@given(conv_cases())
def test_conv2d_equals_twin(case):
    rng = np.random.default_rng(case["seed"])
    if case["layout"] == "NCHW":
        x_shape, w_shape = (case["n"], case["c"], case["h"], case["w"]), (
            case["f"], case["c"], case["kh"], case["kw"])
    else:
        x_shape, w_shape = (case["n"], case["h"], case["w"], case["c"]), (
            case["kh"], case["kw"], case["c"], case["f"])
    x, w = rng.standard_normal(x_shape), rng.standard_normal(w_shape)
    b = rng.standard_normal(case["f"]) if case["bias"] else None
    kw = dict(stride=case["stride"], pad=case["pad"], layout=case["layout"])
    out_shape = jax.eval_shape(lambda x, w: jc.reference.conv2d(x, w, **kw), x, w).shape
    g = rng.standard_normal(out_shape)
    out, grads = forward_and_vjp(lambda x, w, b: jc.conv2d(x, w, b, impl=case["impl"], **kw),
                                 (x, w, b), g)
    out_t, grads_t = forward_and_vjp(lambda x, w, b: jc.reference.conv2d(x, w, b, **kw),
                                     (x, w, b), g)
    _close(out, out_t)
    for got, expected in zip(grads, grads_t):
        if expected is None:
            assert got is None
        else:
            _close(got, expected)


@st.composite
def pool_cases(draw):
    ph, pw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    return dict(op=draw(st.sampled_from(["max_pool2d", "avg_pool2d"])),
                n=draw(st.integers(1, 2)), c=draw(st.integers(1, 3)),
                h=draw(st.integers(ph, 8)), w=draw(st.integers(pw, 8)), pool=(ph, pw),
                stride=draw(st.none() | pair), layout=draw(LAYOUTS),
                ties=draw(st.booleans()), seed=draw(st.integers(0, 2 ** 16)))


@settings(max_examples=12, deadline=None)
@given(pool_cases())
def test_pools_equal_twin(case):
    rng = np.random.default_rng(case["seed"])
    shape = ((case["n"], case["c"], case["h"], case["w"]) if case["layout"] == "NCHW"
             else (case["n"], case["h"], case["w"], case["c"]))
    # integer values make ties common: the first-maximum rule must agree too
    x = (rng.integers(0, 3, shape).astype(np.float64) if case["ties"]
         else rng.standard_normal(shape))
    kw = dict(pool=case["pool"], stride=case["stride"], layout=case["layout"])
    custom, twin = getattr(jc, case["op"]), getattr(jc.reference, case["op"])
    g = rng.standard_normal(jax.eval_shape(lambda x: twin(x, **kw), x).shape)
    out, (dx,) = forward_and_vjp(lambda x: custom(x, **kw), (x,), g)
    out_t, (dx_t,) = forward_and_vjp(lambda x: twin(x, **kw), (x,), g)
    _close(out, out_t)
    _close(dx, dx_t)


# --- invalid combinations: raised at trace time, nothing is computed -------------

@st.composite
def invalid_cases(draw):
    """A valid (window, stride, pad) for an H x W input, then one thing broken."""
    h, w = draw(st.integers(1, 6)), draw(st.integers(1, 6))
    kh, kw = draw(st.integers(1, h)), draw(st.integers(1, w))
    stride, pad = [draw(st.integers(1, 3)), draw(st.integers(1, 3))], [0, draw(st.integers(0, 2))]
    broken = draw(st.sampled_from(["window", "stride", "pad"]))
    axis = draw(st.integers(0, 1))
    if broken == "window":       # one more than the padded input
        if axis == 0:
            kh = h + 2 * pad[0] + draw(st.integers(1, 3))
        else:
            kw = w + 2 * pad[1] + draw(st.integers(1, 3))
    elif broken == "stride":
        stride[axis] = draw(st.integers(-2, 0))
    else:
        pad[axis] = draw(st.integers(-3, -1))
    return dict(h=h, w=w, kh=kh, kw=kw, stride=tuple(stride), pad=tuple(pad), broken=broken)


@settings(max_examples=25, deadline=None)
@given(invalid_cases(), LAYOUTS)
def test_invalid_combinations_raise_value_error(case, layout):
    x = np.zeros((1, 2, case["h"], case["w"]) if layout == "NCHW" else (1, case["h"], case["w"], 2))
    w = np.zeros((3, 2, case["kh"], case["kw"]) if layout == "NCHW"
                 else (case["kh"], case["kw"], 2, 3))
    what = {"window": "larger than the padded input", "stride": "stride must be >= 1",
            "pad": "pad must be >= 0"}[case["broken"]]
    for impl in ("xla", "im2col", "naive"):
        with pytest.raises(ValueError, match=what):
            jc.conv2d(x, w, stride=case["stride"], pad=case["pad"], layout=layout, impl=impl)
    with pytest.raises(ValueError, match=what):
        jc.reference.conv2d(x, w, stride=case["stride"], pad=case["pad"], layout=layout)
    if layout == "NCHW":
        with pytest.raises(ValueError, match=what):
            jc.im2col(x, case["kh"], case["kw"], stride=case["stride"], pad=case["pad"])
    if case["broken"] != "pad":                     # pools take no padding
        # the broken window axis, without padding: one more than the input
        pool = (min(case["kh"], case["h"] + 1), min(case["kw"], case["w"] + 1))
        for op in (jc.max_pool2d, jc.avg_pool2d, jc.reference.max_pool2d):
            with pytest.raises(ValueError, match=what):
                op(x, pool=pool, stride=case["stride"], layout=layout)
