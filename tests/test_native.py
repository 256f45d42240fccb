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

from jaxconv import _native

# (x NCHW shape, w OIHW shape, stride, dilation, ((ph_lo, ph_hi), (pw_lo, pw_hi)), groups)
CASES = [
    ((2, 3, 9, 8), (4, 3, 3, 2), (1, 1), (1, 1), ((1, 1), (0, 2)), 1),
    ((3, 4, 11, 10), (6, 2, 3, 3), (2, 3), (1, 2), ((0, 1), (2, 0)), 2),
    ((2, 8, 12, 12), (16, 8, 3, 3), (2, 2), (1, 1), ((1, 1), (1, 1)), 1),
    ((1, 3, 16, 16), (8, 3, 7, 7), (1, 1), (1, 1), ((3, 3), (3, 3)), 1),
    ((2, 6, 7, 7), (6, 1, 3, 3), (1, 1), (2, 2), ((2, 2), (2, 2)), 6),
    ((2, 2, 5, 6), (3, 2, 5, 6), (1, 1), (1, 1), ((0, 0), (0, 0)), 1),  # one output pixel
]


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


@settings(max_examples=12, deadline=None)
@given(case=_conv_cases(), layout=st.sampled_from(["NCHW", "NHWC"]))
def test_kernels_match_xla_on_drawn_geometries(native, case, layout):
    assert max(_errors(case, layout, np.float64)) < 1e-10


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
    cases = [t.CASES[i] for i in (0, 1, 4)]
    errs = [max(t._errors(c, layout, np.float64)) for c in cases for layout in ("NCHW", "NHWC")]
    print(json.dumps({{"isa": _native.isa(), "err": max(errs)}}))
""")


@pytest.mark.parametrize("isa", ["avx2", "generic"])
def test_lower_instruction_sets_match_xla(native, isa):
    """The AVX2 and baseline kernels (forced; the machine may have AVX-512) agree too."""
    import json
    script = _ISA_SCRIPT.format(tests=os.path.dirname(__file__))
    env = dict(os.environ, JAXCONV_NATIVE_ISA=isa)
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                         text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    if isa == "avx2":
        assert result["isa"] in ("avx2", "generic")  # generic only on a CPU without AVX2
    else:
        assert result["isa"] == "generic"
    assert result["err"] < 1e-10


def test_without_the_extension_native_is_a_clear_error():
    """With the library absent (as after an install without a compiler), the native
    kernels raise a RuntimeError that says how to build them."""
    script = textwrap.dedent("""
        import numpy as np
        from jaxconv import _native
        assert not _native.available() and _native.isa() is None
        try:
            _native.forward(np.ones((1, 1, 3, 3)), np.ones((1, 1, 2, 2)), stride=(1, 1),
                            dilation=(1, 1), padding=((0, 0), (0, 0)), groups=1, layout="NCHW")
        except RuntimeError as e:
            print(e)
        else:
            raise SystemExit("no error")
    """)
    env = dict(os.environ, JAXCONV_NATIVE_LIB=os.path.join(os.sep, "nonexistent", "lib.so"))
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                         text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "impl='native'" in out.stdout and "pip install -e ." in out.stdout
