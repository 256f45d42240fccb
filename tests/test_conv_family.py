"""The N-d convolution family beyond the registry's generic cases: hypothesis over
N-d shapes, strides, dilations, groups and paddings against the twins; JAX's
transformations; half-precision gradients; zero-size inputs; and the closed
kernel ops (every derivative of conv and conv_transpose, to any order, comes from
a hand-derived rule, never from autodiff of an impl's code)."""
import functools
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import jaxconv as jc
from jaxconv import _conv_impls
from _util import forward_and_vjp, randn

IMPLS = ("xla", "im2col", "naive")
LAST = {1: "NWC", 2: "NHWC", 3: "NDHWC"}


def rel(a, b):
    """Largest error relative to the largest entry of the oracle."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    assert a.shape == b.shape
    return np.max(np.abs(a - b), initial=0) / max(np.max(np.abs(b), initial=0), 1e-300)


def to_last(x, w):
    nd = x.ndim - 2
    return np.moveaxis(x, 1, -1), np.transpose(w, (*range(2, 2 + nd), 1, 0))


# --- hypothesis: N-d geometry against the twins -------------------------------------

@st.composite
def geometries(draw, transposed):
    nd = draw(st.integers(1, 3))
    dim = lambda lo, hi: tuple(draw(st.integers(lo, hi)) for _ in range(nd))  # noqa: E731
    kernel, stride, dilation = dim(1, 3), dim(1, 3), dim(1, 2)
    groups = draw(st.integers(1, 2))
    c_in, c_out = groups * draw(st.integers(1, 2)), groups * draw(st.integers(1, 2))
    if transposed:
        pad = draw(st.sampled_from([0, 1, "pairs"]))
        size = dim(1, 4)
        if pad == "pairs":
            pad = tuple((draw(st.integers(0, 1)), draw(st.integers(0, 1))) for _ in range(nd))
        output_pad = tuple(draw(st.integers(0, max(s, d) - 1)) for s, d in zip(stride, dilation))
        hyper = dict(pad=pad, output_pad=output_pad)
        w_shape = (c_in, c_out // groups, *kernel)
    else:
        pad = draw(st.sampled_from(["SAME", "VALID", 0, 1, "pairs"]))
        if pad == "pairs":
            pad = tuple((draw(st.integers(0, 2)), draw(st.integers(0, 2))) for _ in range(nd))
        span = [d * (k - 1) + 1 for k, d in zip(kernel, dilation)]
        low = [e - (2 * pad if isinstance(pad, int) else 0) for e in span]
        size = tuple(draw(st.integers(max(1, lo), max(1, lo) + 3)) for lo in low)
        hyper = dict(pad=pad)
        w_shape = (c_out, c_in // groups, *kernel)
    return dict(x=(draw(st.integers(1, 2)), c_in, *size), w=w_shape, bias=draw(st.booleans()),
                hyper=dict(hyper, stride=stride, dilation=dilation, groups=groups),
                channels_last=draw(st.booleans()), impl=draw(st.sampled_from(IMPLS)),
                seed=draw(st.integers(0, 2**16)))


def _against_twin(op, twin, case):
    x, w = randn(case["seed"], *case["x"]), randn(case["seed"] + 1, *case["w"])
    n_bias = case["w"][0] if op is jc.conv else case["w"][1] * case["hyper"]["groups"]
    b = randn(case["seed"] + 2, n_bias) if case["bias"] else None
    hyper = dict(case["hyper"])
    if case["channels_last"]:
        (x, w), hyper["layout"] = to_last(x, w), LAST[x.ndim - 2]
    try:
        out_shape = jax.eval_shape(lambda x, w: twin(x, w, **hyper), x, w).shape
    except ValueError as e:          # e.g. a padded input smaller than the window
        with pytest.raises(ValueError, match=re.escape(str(e))):     # the same validation
            op(x, w, b, impl=case["impl"], **hyper)
        return
    g = randn(case["seed"] + 3, *out_shape)
    out, grads = forward_and_vjp(lambda x, w, b: op(x, w, b, impl=case["impl"], **hyper),
                                 (x, w, b), g)
    out_t, grads_t = forward_and_vjp(lambda x, w, b: twin(x, w, b, **hyper), (x, w, b), g)
    assert rel(out, out_t) <= 1e-10
    for got, expected, a in zip(grads, grads_t, (x, w, b)):
        if a is not None:
            assert got.dtype == a.dtype and rel(got, expected) <= 1e-10


@settings(max_examples=10, deadline=None)
@given(geometries(transposed=False))
def test_conv_equals_twin(case):
    _against_twin(jc.conv, jc.reference.conv, case)


@settings(max_examples=10, deadline=None)
@given(geometries(transposed=True))
def test_conv_transpose_equals_twin(case):
    _against_twin(jc.conv_transpose, jc.reference.conv_transpose, case)


# --- transformations: vmap, scan, checkpoint, grad-of-grad, all under jit ------------

TRANSFORM_CASES = {
    "conv 1d dilated grouped": (jc.conv, jc.reference.conv, (3, 4, 9), (4, 2, 3),
                                dict(stride=2, dilation=2, groups=2, pad=((1, 2),))),
    "conv_transpose 2d": (jc.conv_transpose, jc.reference.conv_transpose, (3, 2, 4, 3),
                          (2, 2, 3, 2), dict(stride=(2, 1), pad=1, output_pad=(1, 0))),
}


def _transformed(op):
    """Per-example gradients (vmap), a scan over layers, a checkpointed loss and the
    gradient of a gradient norm, in one jitted function."""
    loss = lambda x, w, b: jnp.sum(jnp.tanh(op(x, w, b)) ** 2)  # noqa: E731

    def run(x, w, b):
        per_example = jax.vmap(jax.grad(lambda x1, w, b: loss(x1[None], w, b), (0, 1)),
                               (0, None, None))(x, w, b)

        def layer(h, wb):           # each layer scales h by a function of op(h)
            return h * (1 + 0.1 * jnp.tanh(op(h, *wb)).mean()), None

        scanned = jax.grad(lambda x, w: jnp.sum(jax.lax.scan(
            layer, x, (jnp.stack([w, 2 * w]), jnp.stack([b, b])))[0] ** 2), (0, 1))(x, w)
        checkpointed = jax.grad(jax.checkpoint(loss), (0, 1, 2))(x, w, b)
        second = jax.grad(lambda x, w, b: jnp.sum(jax.grad(loss, (0, 1))(x, w, b)[1] ** 2),
                          (0, 1, 2))(x, w, b)
        return per_example, scanned, checkpointed, second
    return jax.jit(run)


@pytest.mark.parametrize("impl", ["xla", "naive"])
@pytest.mark.parametrize("name", list(TRANSFORM_CASES))
def test_transforms_equal_twin(name, impl):
    op, twin, x_shape, w_shape, hyper = TRANSFORM_CASES[name]
    x, w = randn(1, *x_shape), randn(2, *w_shape)
    b = randn(3, w_shape[0] if op is jc.conv else w_shape[1] * hyper.get("groups", 1))
    got = _transformed(functools.partial(op, impl=impl, **hyper))(x, w, b)
    expected = _transformed(functools.partial(twin, **hyper))(x, w, b)
    for a, e in zip(jax.tree.leaves(got), jax.tree.leaves(expected), strict=True):
        assert a.dtype == e.dtype and rel(a, e) <= 1e-10, name


# --- the kernels are closed: no derivative ever differentiates an impl's code --------

def _opaque(kernel):
    """``kernel`` with autodiff through it forbidden (as a compiled native kernel)."""
    def run(c, a, b):
        @jax.custom_vjp
        def k(a, b):
            return kernel(c, a, b)

        def bwd(_, __):
            raise AssertionError(f"{kernel.__name__} was differentiated by autodiff")
        k.defvjp(lambda a, b: (k(a, b), None), bwd)
        return k(a, b)
    return run


@pytest.mark.parametrize("op, twin, w_shape", [(jc.conv, jc.reference.conv, (4, 2, 3, 2)),
                                               (jc.conv_transpose, jc.reference.conv_transpose,
                                                (4, 3, 3, 2))])
def test_second_order_uses_only_hand_rules(monkeypatch, op, twin, w_shape):
    xla = _conv_impls.KERNELS["xla"]
    monkeypatch.setitem(_conv_impls.KERNELS, "opaque",
                        _conv_impls.Kernels(*(_opaque(k) for k in xla)))
    x, w, b = randn(5, 2, 4, 5, 4), randn(6, *w_shape), randn(7, 4 if op is jc.conv else 3)
    hyper = dict(stride=2, groups=2) if op is jc.conv else dict(stride=2, output_pad=1)

    def hessian_vector(fn):
        loss = lambda x, w, b: jnp.sum(jnp.sin(fn(x, w, b, **hyper)))  # noqa: E731
        return jax.jit(jax.grad(lambda x, w, b: jnp.sum(jax.grad(loss, (0, 1))(x, w, b)[0] ** 3),
                                (0, 1, 2)))(x, w, b)
    got = hessian_vector(functools.partial(op, impl="opaque"))
    for a, e in zip(got, hessian_vector(twin), strict=True):
        assert rel(a, e) <= 1e-10


# --- half precision -------------------------------------------------------------------

@pytest.mark.parametrize("dtype, tol", [(jnp.bfloat16, 3e-2), (jnp.float16, 4e-3)])
@pytest.mark.parametrize("op, twin, w_shape", [(jc.conv, jc.reference.conv, (4, 1, 3, 3)),
                                               (jc.conv_transpose, jc.reference.conv_transpose,
                                                (2, 2, 3, 3))])
def test_half_precision_gradients(dtype, tol, op, twin, w_shape):
    """Outputs and gradients keep the dtype; values match the float32 twin on the same
    (rounded) inputs to the dtype's precision. A depthwise / grouped dilated geometry."""
    hyper = dict(stride=2, dilation=(1, 2), groups=2, pad=((1, 0), 2))
    x, w = randn(8, 2, 2, 7, 8).astype(dtype), randn(9, *w_shape).astype(dtype)
    b = randn(10, 4).astype(dtype)
    g32 = randn(11, *jax.eval_shape(lambda: twin(x, w, b, **hyper)).shape)
    for impl in IMPLS:
        out, grads = forward_and_vjp(lambda x, w, b: op(x, w, b, impl=impl, **hyper),
                                     (x, w, b), g32.astype(dtype))
        ref, ref_grads = forward_and_vjp(lambda x, w, b: twin(x, w, b, **hyper),
                                         tuple(a.astype(np.float32) for a in (x, w, b)),
                                         g32.astype(dtype).astype(np.float32))
        assert out.dtype == dtype and rel(out, ref) <= tol, impl
        for got, expected in zip(grads, ref_grads):
            assert got.dtype == dtype and rel(got, expected) <= tol, impl


# --- zero-size inputs -------------------------------------------------------------------

@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("channels_last", [False, True])
def test_zero_size(impl, channels_last):
    """N = 0: empty output and dx, zero dw and db (PyTorch's result); C = 0: the output
    is the bias alone (an empty sum), db the sum of g; F = 0: an empty output, zero dx."""
    def run(op, x, w, b, **hyper):
        if channels_last:
            x, w = to_last(x, w)
            hyper["layout"] = "NHWC"
        out_shape = jax.eval_shape(lambda: op(x, w, b, impl=impl, **hyper)).shape
        g = randn(12, *out_shape)
        out, (dx, dw, db) = forward_and_vjp(lambda x, w, b: op(x, w, b, impl=impl, **hyper),
                                            (x, w, b), g)
        if channels_last:
            out, g, dx = (np.moveaxis(a, -1, 1) for a in (out, g, dx))
            dw = np.transpose(dw, (3, 2, 0, 1))
        return out, dx, dw, db, g

    b4 = randn(13, 4)
    out, dx, dw, db, _ = run(jc.conv, np.zeros((0, 3, 5, 5)), randn(14, 4, 3, 3, 3), b4, pad=1)
    assert out.shape == (0, 4, 5, 5) and dx.shape == (0, 3, 5, 5)
    assert not np.any(dw) and not np.any(db) and dw.shape == (4, 3, 3, 3)
    out, dx, dw, db, g = run(jc.conv, np.zeros((2, 0, 5, 5)), np.zeros((4, 0, 3, 3)), b4,
                             stride=2)
    np.testing.assert_array_equal(out, np.broadcast_to(b4[:, None, None], (2, 4, 2, 2)))
    np.testing.assert_allclose(db, g.sum((0, 2, 3)), rtol=1e-13)
    assert dx.shape == (2, 0, 5, 5) and dw.shape == (4, 0, 3, 3)
    out, dx, dw, db, _ = run(jc.conv, randn(15, 2, 3, 5, 5), np.zeros((0, 3, 3, 3)), None)
    assert out.shape == (2, 0, 3, 3) and dx.shape == (2, 3, 5, 5) and not np.any(dx)
    out, dx, dw, db, _ = run(jc.conv_transpose, np.zeros((0, 3, 5, 5)), randn(16, 3, 4, 3, 3),
                             b4, stride=2)
    assert out.shape == (0, 4, 11, 11) and dx.shape == (0, 3, 5, 5) and not np.any(dw)
    assert not np.any(db)
    out, dx, dw, db, g = run(jc.conv_transpose, randn(17, 2, 3, 4, 4), np.zeros((3, 0, 3, 3)),
                             None)
    assert out.shape == (2, 0, 6, 6) and not np.any(dx) and dw.shape == (3, 0, 3, 3)


# --- the grouped weight gradient's two forms (CPU: feature groups; GPU/TPU: batch groups)

@pytest.mark.parametrize("layout, hyper", [
    ("NCHW", dict(stride=2, pad=((1, 0), (2, 1)), dilation=(1, 2), groups=3)),
    ("NHWC", dict(stride=(1, 2), pad=1, groups=6)),
    ("NCDHW", dict(stride=2, pad=1, dilation=2, groups=2)),
])
def test_grouped_weight_grad_forms_equal_the_twin(layout, hyper):
    """The regrouped form the CPU runs and the batch-group form GPUs/TPUs run (only
    reachable here by calling it) both equal autodiff of the twin in float64."""
    from jaxconv._conv import conv_config
    nd = len(layout) - 2
    channels_first = layout[1] == "C"
    x = randn(21, 2, 6, *(9,) * nd) if channels_first else randn(21, 2, *(9,) * nd, 6)
    fg, cg = 12, 6 // hyper["groups"]
    w = randn(22, fg, cg, *(3,) * nd) if channels_first else randn(22, *(3,) * nd, cg, fg)
    _, _, _, c = conv_config(x, w, None, layout=layout, impl="xla", ndim=nd, **hyper)
    twin = lambda w: jc.reference.conv(x, w, layout=layout, **hyper)
    out, pull = jax.vjp(twin, w)
    g = randn(23, *out.shape)
    want = pull(g)[0]
    for form in (_conv_impls._weight_grad_regrouped, _conv_impls._weight_grad_batch_groups):
        got = form(c, jnp.asarray(x), jnp.asarray(g))
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12, err_msg=form.__name__)
