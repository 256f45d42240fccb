"""The native (C++ through XLA's FFI) convolution kernels against XLA's own
convolution and its autodiff transposes, in float64 to 1e-10 and float32; under
vmap, jit and scan; on every instruction-set path; and the clean fallback when
the extension is not built."""
import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jax import lax

import jaxconv
from jaxconv import _native

# (x NCHW shape, w OIHW shape, stride, dilation, ((ph_lo, ph_hi), (pw_lo, pw_hi)), groups)
CASES = [
    ((2, 3, 9, 8), (4, 3, 3, 2), (1, 1), (1, 1), ((1, 1), (0, 2)), 1),
    ((3, 4, 11, 10), (6, 2, 3, 3), (2, 3), (1, 2), ((0, 1), (2, 0)), 2),
    ((2, 8, 12, 12), (16, 8, 3, 3), (2, 2), (1, 1), ((1, 1), (1, 1)), 1),
    ((1, 3, 16, 16), (8, 3, 7, 7), (1, 1), (1, 1), ((3, 3), (3, 3)), 1),
    ((2, 6, 7, 7), (6, 1, 3, 3), (1, 1), (2, 2), ((2, 2), (2, 2)), 6),
    ((2, 2, 5, 6), (3, 2, 5, 6), (1, 1), (1, 1), ((0, 0), (0, 0)), 1),  # one output pixel
    # NCHW 3x3 stride 1 with 32+ channels: Winograd F(2x2, 3x3) (forward and dx); odd
    # sizes crop the last tiles, per-side pads 0-2 give dx pads 2-0, a 40-wide row is
    # several vectors of tiles, 5 images of 42 tiles share one GEMM block
    ((2, 32, 8, 8), (32, 32, 3, 3), (1, 1), (1, 1), ((1, 1), (1, 1)), 1),
    ((3, 33, 7, 9), (35, 33, 3, 3), (1, 1), (1, 1), ((2, 0), (0, 1)), 1),
    ((1, 32, 2, 3), (40, 32, 3, 3), (1, 1), (1, 1), ((1, 1), (1, 1)), 1),
    ((2, 32, 5, 40), (32, 32, 3, 3), (1, 1), (1, 1), ((1, 1), (2, 2)), 1),
    ((5, 32, 12, 14), (32, 32, 3, 3), (1, 1), (1, 1), ((1, 1), (1, 1)), 1),
    # Stride-2 columns split by whole vectors (16 floats / 8 doubles on AVX-512): rows of
    # 33-40, odd and even left pads; the last: its last column lies past every window
    # (padded width 40 < 1 + 40), so the vector holding it must not be split
    ((2, 3, 5, 37), (4, 3, 3, 3), (2, 2), (1, 1), ((1, 1), (1, 1)), 1),
    ((1, 2, 4, 40), (3, 2, 2, 4), (1, 2), (1, 2), ((0, 0), (2, 0)), 1),
    ((1, 2, 3, 40), (2, 2, 1, 2), (2, 2), (1, 1), ((0, 0), (1, 0)), 1),
]
WINOGRAD = range(6, 11)


def _lax_conv(x, w, stride, dilation, padding, groups, layout):
    dims = ("NCHW", "OIHW", "NCHW") if layout == "NCHW" else ("NHWC", "HWIO", "NHWC")
    return lax.conv_general_dilated(x, w, stride, padding, rhs_dilation=dilation,
                                    dimension_numbers=dims, feature_group_count=groups,
                                    precision=lax.Precision.HIGHEST)


def _operands(case, layout, dtype, seed=0):
    x_shape, w_shape = case[:2]
    rng = np.random.default_rng(seed)
    x, w = rng.standard_normal(x_shape).astype(dtype), rng.standard_normal(w_shape).astype(dtype)
    if layout == "NHWC":
        x, w = x.transpose(0, 2, 3, 1), w.transpose(2, 3, 1, 0)
    return x, w


def _max_rel(a, b):
    return float(jnp.max(jnp.abs(a - b)) / jnp.maximum(jnp.max(jnp.abs(b)), 1e-300))


def _errors(case, layout, dtype):
    """Max relative errors of (forward, dx, dw) vs lax.conv_general_dilated and its VJP."""
    x, w = _operands(case, layout, dtype)
    _, _, stride, dilation, padding, groups = case
    geom = dict(stride=stride, dilation=dilation, padding=padding, groups=groups, layout=layout)
    y_ref, vjp = jax.vjp(lambda x, w: _lax_conv(x, w, stride, dilation, padding, groups, layout),
                         x, w)
    g = np.random.default_rng(1).standard_normal(y_ref.shape).astype(dtype)
    dx_ref, dw_ref = vjp(g)
    x_hw = x.shape[2:] if layout == "NCHW" else x.shape[1:3]
    y = _native.forward(x, w, **geom)
    dx = _native.input_grad(g, w, x_hw=x_hw, **geom)
    dw = _native.weight_grad(x, g, window=case[1][2:], **geom)
    for out, ref in ((y, y_ref), (dx, dx_ref), (dw, dw_ref)):
        assert out.shape == ref.shape and out.dtype == ref.dtype
    return _max_rel(y, y_ref), _max_rel(dx, dx_ref), _max_rel(dw, dw_ref)


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize("case", CASES, ids=range(len(CASES)))
def test_kernels_match_xla_float64_and_float32(native, case, layout):
    assert max(_errors(case, layout, np.float64)) < 1e-10
    assert max(_errors(case, layout, np.float32)) < 1e-5


@st.composite
def _conv_cases(draw):
    groups = draw(st.sampled_from([1, 1, 2]))
    cg, fg = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    dil = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    pads = tuple((draw(st.integers(0, 3)), draw(st.integers(0, 3))) for _ in range(2))
    span = [d * (k - 1) + 1 for d, k in zip(dil, (kh, kw))]
    hw = [draw(st.integers(max(1, s - p[0] - p[1]), 10)) for s, p in zip(span, pads)]
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    n = draw(st.integers(1, 3))
    return ((n, cg * groups, *hw), (fg * groups, cg, kh, kw), stride, dil, pads, groups)


@settings(max_examples=8, deadline=None)
@given(case=_conv_cases(), layout=st.sampled_from(["NCHW", "NHWC"]))
def test_kernels_match_xla_on_drawn_geometries(native, case, layout):
    assert max(_errors(case, layout, np.float64)) < 1e-10


@st.composite
def _winograd_cases(draw):
    c, f = draw(st.integers(32, 36)), draw(st.integers(32, 36))
    pads = tuple((draw(st.integers(0, 2)), draw(st.integers(0, 2))) for _ in range(2))
    hw = [draw(st.integers(max(1, 4 - p[0] - p[1]), 13)) for p in pads]   # 2+ outputs
    return ((draw(st.integers(1, 4)), c, *hw), (f, c, 3, 3), (1, 1), (1, 1), pads, 1)


@settings(max_examples=4, deadline=None)
@given(case=_winograd_cases())
def test_winograd_matches_xla_on_drawn_geometries(native, case):
    assert max(_errors(case, "NCHW", np.float64)) < 1e-10
    assert max(_errors(case, "NCHW", np.float32)) < 1e-5


def test_vmap_broadcasts_leading_dims_and_runs_under_jit_and_scan(native):
    case = CASES[1]
    _, _, stride, dilation, padding, groups = case
    geom = dict(stride=stride, dilation=dilation, padding=padding, groups=groups, layout="NCHW")
    rng = np.random.default_rng(2)
    xs = rng.standard_normal((2, 3, *case[0]))
    ws = rng.standard_normal((3, *case[1]))

    def ref(x, w):
        return _lax_conv(x, w, stride, dilation, padding, groups, "NCHW")

    def mine(x, w):
        return _native.forward(x, w, **geom)

    # x batched twice, w once (the inner vmap) and not at all; all under jit.
    for w_axes in (0, None):
        w_arg = ws if w_axes == 0 else ws[0]
        want = jax.vmap(jax.vmap(ref, (0, w_axes)), (0, None))(xs, w_arg)
        got = jax.jit(jax.vmap(jax.vmap(mine, (0, w_axes)), (0, None)))(xs, w_arg)
        assert _max_rel(got, want) < 1e-12
    # dw per example (vmap over x and g) and dx for a batch of weights.
    g = rng.standard_normal((3, *want.shape[2:]))
    dw = jax.vmap(lambda x, g: _native.weight_grad(x, g, window=case[1][2:], **geom))(xs[0], g)
    dw_ref = jax.vmap(lambda x, g: jax.vjp(lambda w: ref(x, w), ws[0])[1](g)[0])(xs[0], g)
    assert _max_rel(dw, dw_ref) < 1e-12
    dx = jax.vmap(lambda w: _native.input_grad(g[0], w, x_hw=case[0][2:], **geom))(ws)
    dx_ref = jax.vmap(lambda w: jax.vjp(lambda x: ref(x, w), xs[0, 0])[1](g[0])[0])(ws)
    assert _max_rel(dx, dx_ref) < 1e-12
    # scan: the same kernel applied in a loop body.
    total = lax.scan(lambda c, x: (c + mine(x, ws[0]).sum(), None), 0.0, xs[0])[0]
    assert abs(total - sum(float(ref(x, ws[0]).sum()) for x in xs[0])) < 1e-9


_ISA_SCRIPT = textwrap.dedent("""
    import jax, numpy as np, json, sys
    jax.config.update("jax_enable_x64", True)
    sys.path.insert(0, {tests!r})
    import test_native as t
    from jaxconv import _native
    # Winograd runs for NCHW only; two of its cases: asymmetric pads, several row vectors
    runs = [(t.CASES[i], layout) for i in (1, 4) for layout in ("NCHW", "NHWC")]
    runs += [(t.CASES[i], "NCHW") for i in (7, 9, 11, 13)]
    errs = [max(t._errors(c, layout, np.float64)) for c, layout in runs]
    print(json.dumps({{"isa": _native.isa(), "err": max(errs)}}))
""")


@pytest.mark.parametrize("isa", ["avx2", "generic"])
def test_lower_instruction_sets_match_xla(native, isa):
    """The AVX2 and baseline kernels (forced; the machine may have AVX-512) agree too."""
    import json
    script = _ISA_SCRIPT.format(tests=os.path.dirname(__file__))
    env = dict(os.environ, JAXCONV_NATIVE_ISA=isa, JAX_PLATFORMS="cpu")   # CPU kernels
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                         text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    if isa == "avx2":
        assert result["isa"] in ("avx2", "generic")  # generic only on a CPU without AVX2
    else:
        assert result["isa"] == "generic"
    assert result["err"] < 1e-10


def test_without_the_extension_native_is_a_clear_error_and_auto_is_xla():
    """With the library absent (as after an install without a compiler), impl="native"
    raises a RuntimeError that says how to build it, and the default impl="auto" is
    XLA's convolution, bit for bit."""
    script = textwrap.dedent("""
        import jax, numpy as np
        import jaxconv
        from jaxconv import _native
        assert not _native.available() and _native.isa() is None
        x, w = np.random.default_rng(0).standard_normal((2, 2, 5, 5, 3))[..., 0], np.ones((3, 2, 3, 3))
        loss = lambda impl: lambda x, w: (jaxconv.conv2d(x, w, stride=2, impl=impl) ** 2).sum()
        auto, xla = jax.grad(loss("auto"), (0, 1))(x, w), jax.grad(loss("xla"), (0, 1))(x, w)
        assert all((a == b).all() for a, b in zip(auto, xla))
        assert "jaxconv_conv" not in jax.jit(loss("auto")).lower(x, w).as_text()
        try:
            jaxconv.conv2d(x, w, impl="native")
        except RuntimeError as e:
            print(e)
        else:
            raise SystemExit("no error")
    """)
    env = dict(os.environ, JAXCONV_NATIVE_LIB=os.path.join(os.sep, "nonexistent", "lib.so"),
               JAX_PLATFORMS="cpu")
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                         text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "conv2d: impl='native'" in out.stdout and "pip install -e ." in out.stdout


# --- the native impl of the conv family (conv, conv_transpose; 1-D, 2-D and 3-D) --------

def _grads(op, args, g):
    out, pullback = jax.vjp(op, *args)
    return out, pullback(g)


FAMILY = [  # (op, x shape, w shape, hyperparameters); weights in the op's own layout
    (jaxconv.conv2d, (2, 4, 9, 8), (6, 2, 3, 3),
     dict(stride=2, pad=((1, 0), (2, 1)), dilation=(1, 2), groups=2)),
    (jaxconv.conv2d, (2, 9, 8, 3), (3, 3, 3, 4), dict(stride=(1, 2), pad="SAME", layout="NHWC")),
    (jaxconv.conv1d, (3, 10, 4), (3, 4, 5), dict(stride=2, pad=(1, 2), layout="NWC")),
    (jaxconv.conv_transpose2d, (2, 4, 5, 5), (4, 3, 3, 3), dict(stride=2, pad=1, output_pad=1)),
    (jaxconv.conv_transpose1d, (2, 4, 6), (4, 2, 3), dict(stride=3, groups=2, dilation=2)),
    # output_pad >= stride (< dilation): fewer windows than the kernels' floor rule; in
    # height the fitted high pad is negative (rows of x that no window reads)
    (jaxconv.conv_transpose2d, (2, 4, 3, 5), (4, 3, 2, 3),
     dict(stride=(1, 2), dilation=(2, 1), output_pad=(1, 1))),
    (jaxconv.conv_transpose2d, (2, 4, 3, 4), (3, 2, 1, 4),
     dict(stride=(2, 1), dilation=(1, 3), groups=2, pad=((1, 0), 2), output_pad=(1, 2),
          layout="NHWC")),
    # 3-D: one 2-D kernel call per depth tap (depth stride, dilation, pads, groups)
    (jaxconv.conv3d, (2, 4, 9, 6, 7), (6, 2, 3, 2, 3),
     dict(stride=(2, 1, 2), pad=((2, 1), (0, 1), (1, 1)), dilation=(2, 1, 1), groups=2)),
    (jaxconv.conv3d, (2, 7, 5, 6, 3), (2, 3, 3, 3, 4), dict(stride=3, pad="SAME", layout="NDHWC")),
    (jaxconv.conv3d, (1, 2, 4, 5, 5), (3, 2, 4, 1, 2), dict(pad=((3, 0), (0, 0), (1, 0)))),
    (jaxconv.conv_transpose3d, (2, 4, 5, 4, 3), (4, 3, 3, 2, 3),
     dict(stride=(2, 3, 1), pad=1, output_pad=(1, 2, 0), dilation=(1, 1, 2))),
]


@pytest.mark.parametrize("k", range(len(FAMILY)))
def test_native_conv_family_matches_the_twin_in_float64(native, k):
    op, x_shape, w_shape, hyper = FAMILY[k]
    rng = np.random.default_rng(k)
    x, w = rng.standard_normal(x_shape), rng.standard_normal(w_shape)
    twin = getattr(jaxconv.reference, op.__name__)
    want_out, vjp = jax.vjp(lambda x, w: twin(x, w, **hyper), x, w)
    g = rng.standard_normal(want_out.shape)
    out, grads = _grads(lambda x, w: op(x, w, **hyper, impl="native"), (x, w), g)
    assert _max_rel(out, want_out) < 1e-10
    for got, want in zip(grads, vjp(g)):
        assert got.dtype == want.dtype and _max_rel(got, want) < 1e-10


def test_native_conv2d_matches_torch(native, torch):
    rng = np.random.default_rng(5)
    x, w, b = rng.standard_normal((2, 4, 9, 8)), rng.standard_normal((6, 2, 3, 3)), rng.standard_normal(6)
    hyper = dict(stride=2, pad=(1, 2), dilation=(2, 1), groups=2)
    out, grads = _grads(lambda *a: jaxconv.conv2d(*a, **hyper, impl="native"), (x, w, b),
                        np.ones((2, 6, 4, 5)))
    tx, tw, tb = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
    t_out = torch.nn.functional.conv2d(tx, tw, tb, stride=2, padding=(1, 2), dilation=(2, 1),
                                       groups=2)
    t_out.sum().backward()
    assert _max_rel(out, t_out.detach().numpy()) < 1e-10
    for got, t in zip(grads, (tx, tw, tb)):
        assert _max_rel(got, t.grad.numpy()) < 1e-10


@pytest.mark.parametrize("name", ["conv3d", "conv_transpose3d"])
def test_native_3d_matches_torch(native, torch, name):
    rng = np.random.default_rng(7)
    transpose = name == "conv_transpose3d"
    x, b = rng.standard_normal((2, 4, 7, 5, 6)), rng.standard_normal(6)
    w = rng.standard_normal((4, 3, 3, 2, 3) if transpose else (6, 2, 3, 2, 3))
    hyper = dict(stride=(2, 1, 2), pad=(1, 0, 2), dilation=(2, 1, 1), groups=2)
    extra = dict(output_pad=(1, 0, 1)) if transpose else {}
    out, vjp = jax.vjp(lambda *a: getattr(jaxconv, name)(*a, **hyper, **extra, impl="native"),
                       x, w, b)
    g = rng.standard_normal(out.shape)
    tx, tw, tb = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
    torch_op = getattr(torch.nn.functional, name)
    t_out = torch_op(tx, tw, tb, stride=(2, 1, 2), padding=(1, 0, 2), dilation=(2, 1, 1),
                     groups=2, **({"output_padding": (1, 0, 1)} if transpose else {}))
    t_out.backward(torch.tensor(g))
    assert _max_rel(out, t_out.detach().numpy()) < 1e-10
    for got, t in zip(vjp(g), (tx, tw, tb)):
        assert _max_rel(got, t.grad.numpy()) < 1e-10


def test_native_3d_grad_of_grad(native):
    """Reverse over reverse through the 3-D composition (each depth-tap kernel's rules)."""
    rng = np.random.default_rng(8)
    x, w = rng.standard_normal((2, 3, 6, 5, 5)), rng.standard_normal((4, 3, 3, 2, 3))

    def grad_norm(impl, w):
        loss = lambda w: (jnp.tanh(jaxconv.conv3d(x, w, stride=(2, 1, 2), pad=1, impl=impl))
                          ** 2).sum()
        return (jax.grad(loss)(w) ** 2).sum()

    run = jax.jit(jax.grad(grad_norm, 1), static_argnums=0)
    assert _max_rel(run("native", w), run("xla", w)) < 1e-10


def test_native_conv_under_transforms(native):
    """vmap of grad, scan, checkpoint and grad-of-grad (reverse over reverse) through
    impl="native", all under jit, against the same with impl="xla"."""
    rng = np.random.default_rng(6)
    xs, w = rng.standard_normal((3, 2, 3, 7, 7)), rng.standard_normal((4, 3, 3, 3))

    def loss(impl, x, w):
        return (jnp.tanh(jaxconv.conv2d(x, w, stride=2, pad=1, impl=impl)) ** 2).sum()

    def transforms(impl, xs, w):
        per_example = jax.vmap(jax.grad(lambda x, w: loss(impl, x, w), 1), (0, None))(xs, w)
        scanned = lax.scan(lambda c, x: (c + jax.checkpoint(
            lambda x, w: loss(impl, x, w))(x, w), None), 0.0, xs)[0]
        grad_norm = lambda w: (jax.grad(lambda w: loss(impl, xs[0], w))(w) ** 2).sum()
        return per_example, scanned, jax.grad(grad_norm)(w)

    run = jax.jit(transforms, static_argnums=0)
    for got, want in zip(run("native", xs, w), run("xla", xs, w)):
        assert _max_rel(got, want) < 1e-10


def test_auto_is_native_in_cpu_compiles_and_xla_elsewhere(native):
    x, w = np.ones((1, 2, 6, 6), np.float32), np.ones((3, 2, 3, 3), np.float32)
    step = jax.jit(jax.grad(lambda x, w: (jaxconv.conv2d(x, w, stride=2) ** 2).sum(), (0, 1)))
    assert step.lower(x, w).as_text().count("jaxconv_conv") == 3   # forward, dx, dw
    for platform in ("cuda", "tpu"):
        exported = jax.export.export(step, platforms=[platform])(x, w)
        assert "jaxconv_conv" not in exported.mlir_module()
        assert "convolution" in exported.mlir_module()


def test_native_traced_for_a_gpu_is_a_clear_error(native, monkeypatch):
    """On a GPU machine (default backend "gpu", no CPU default device) impl="native"
    is a trace-time ValueError, not XLA's "no FFI handler" at run time; auto is XLA."""
    monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
    x, w = np.ones((1, 2, 6, 6), np.float32), np.ones((3, 2, 3, 3), np.float32)
    with jax.default_device(None):
        with pytest.raises(ValueError, match=r"conv2d: impl='native' runs jaxconv's CPU "
                                             r"kernels, but this computation goes to the "
                                             r"'gpu' backend; use impl='auto'"):
            jax.jit(lambda x, w: jaxconv.conv2d(x, w, impl="native")).lower(x, w)
        jax.jit(lambda x, w: jaxconv.conv2d(x, w, impl="auto")).lower(x, w)
    jax.jit(lambda x, w: jaxconv.conv2d(x, w, impl="native")).lower(x, w)   # fixture: CPU


def test_native_covers_1d_to_3d_and_half_precision_only_explicitly(native):
    x3, w3 = np.ones((1, 1, 4, 3, 3), np.float32), np.ones((1, 1, 2, 2, 2), np.float32)
    lowered = jax.jit(lambda x, w: jaxconv.conv3d(x, w, stride=(2, 1, 1))).lower(x3, w3)
    assert lowered.as_text().count("jaxconv_conv_forward") == 2   # auto: one per depth tap
    # bfloat16 with impl="native": the float32 kernels, rounded back once (vs XLA in float32)
    xb = jnp.asarray(np.arange(9.0).reshape(1, 1, 3, 3) / 8, jnp.bfloat16)
    wb = jnp.asarray([[[[0.5, -1.0], [0.25, 2.0]]]], jnp.bfloat16)
    out = jaxconv.conv2d(xb, wb, impl="native")
    expected = jaxconv.reference.conv2d(xb.astype(jnp.float32), wb.astype(jnp.float32))
    assert out.dtype == jnp.bfloat16
    np.testing.assert_array_equal(np.asarray(out, np.float32),
                                  np.asarray(expected.astype(jnp.bfloat16), np.float32))
    lowered = jax.jit(lambda x, w: jaxconv.conv2d(x, w)).lower(
        jnp.ones((1, 1, 3, 3), jnp.bfloat16), jnp.ones((1, 1, 2, 2), jnp.bfloat16))
    assert "jaxconv_conv" not in lowered.as_text()       # auto: XLA for bfloat16
