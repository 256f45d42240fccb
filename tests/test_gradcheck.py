"""jaxconv.gradcheck: the checker itself, on hand values and known functions, and
proof that it fails when a backward is wrong."""
import functools
import os
import re
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxconv
import jaxconv as jc
from jaxconv import gradcheck
from jaxconv.gradcheck import check_vjp, compare, numerical_grad, numerical_vjp, rel_error
from _util import randn


def test_rel_error_is_cs231n_formula():
    # max over elements of |a - b| / max(1e-8, |a| + |b|), worked by hand:
    # element 0: 0; element 1: 0.2 / 4.2; element 2: 1 / 1 (opposite signs).
    assert rel_error([1.0, 2.0, 0.5], [1.0, 2.2, -0.5]) == pytest.approx(1.0)
    assert rel_error([1.0, 2.0], [1.0, 2.2]) == pytest.approx(0.2 / 4.2, rel=1e-15)
    assert rel_error(np.zeros(3), np.zeros(3)) == 0.0
    assert rel_error([0.0], [1e-9]) == pytest.approx(0.1)      # the 1e-8 floor
    assert rel_error(np.ones((2, 0)), np.ones((2, 0))) == 0.0
    assert isinstance(rel_error(jnp.ones(2), jnp.ones(2)), float)
    with pytest.raises(ValueError, match=r"shapes differ.*\(2,\).*\(3,\)"):
        rel_error(np.ones(2), np.ones(3))


def test_numerical_grad_of_known_functions():
    x = jnp.asarray(randn(30, 3, 4))
    g = numerical_grad(lambda x: jnp.sum(x ** 3), x)
    assert g.shape == x.shape and g.dtype == jnp.float64
    # centered differences of x^3 are exactly 3x^2 + h^2: only h^2 = 1e-10 and
    # rounding separate them
    np.testing.assert_allclose(g, 3 * x ** 2, rtol=1e-8, atol=1e-9)
    assert rel_error(numerical_grad(lambda x: jnp.sum(x ** 3), x, h=1e-3), 3 * x ** 2) > 1e-4
    # a function of all elements at once: d/dx (sum x)^2 = 2 sum(x) everywhere
    g = numerical_grad(lambda x: jnp.sum(x) ** 2, x)
    np.testing.assert_allclose(g, np.full(x.shape, 2 * float(x.sum())), rtol=1e-8)


def test_numerical_vjp_of_known_functions():
    x, dout = jnp.asarray(randn(31, 5)), jnp.asarray(randn(32, 5))
    assert rel_error(numerical_vjp(jnp.sin, x, dout), dout * jnp.cos(x)) < 1e-8
    a = jnp.asarray(randn(33, 4, 5))
    dout = jnp.asarray(randn(34, 4))
    assert rel_error(numerical_vjp(lambda x: a @ x, x, dout), a.T @ dout) < 1e-8


def test_compare_report_structure_and_seed():
    x, w = randn(35, 2, 2, 4, 4), randn(36, 3, 2, 2, 2)
    report = compare("conv2d", x, w, None, stride=2, impl="naive")   # no bias: no "b" entry
    assert list(report) == ["x", "w"]
    for errs in report.values():
        assert set(errs) == {"autodiff", "numerical", "autodiff_rel_error", "numerical_rel_error"}
        assert all(isinstance(e, float) for e in errs.values())
        assert errs["autodiff"] < 1e-10 and errs["numerical"] < 1e-6
    # the cotangent comes from its own key: same seed, same report; another seed,
    # another cotangent (the numerical error moves with it)
    first = compare("avg_pool2d", x, pool=2)
    assert compare("avg_pool2d", x, pool=2) == first
    assert compare("avg_pool2d", x, pool=2, seed=1)["x"]["numerical"] != first["x"]["numerical"]


def _avg_pool_wrong_backward():
    """jc.avg_pool2d's forward with a backward that forgets to divide by the window."""
    forward = jc.avg_pool2d                 # bound now, before the monkeypatch

    @jax.custom_vjp
    def wrong_pool(x):
        return forward(x, pool=2)

    def bwd(_, g):
        return (jnp.repeat(jnp.repeat(g, 2, axis=2), 2, axis=3),)   # should be g / 4

    wrong_pool.defvjp(lambda x: (wrong_pool(x), None), bwd)
    return lambda x, pool=2, stride=None, layout="NCHW": wrong_pool(x)


def test_compare_catches_a_wrong_backward(monkeypatch):
    monkeypatch.setattr(jaxconv, "avg_pool2d", _avg_pool_wrong_backward())
    report = compare("avg_pool2d", randn(37, 1, 2, 4, 4), pool=2)
    # a factor 4 off: |4a - a| / (4|a| + |a|) = 3/5 everywhere (CS231n's measure),
    # ||4a - a|| / ||4a|| = 3/4 norm-wise
    assert report["x"]["autodiff_rel_error"] == pytest.approx(0.6)
    assert report["x"]["numerical_rel_error"] == pytest.approx(0.6, rel=1e-6)
    assert report["x"]["autodiff"] == pytest.approx(0.75)
    assert report["x"]["numerical"] == pytest.approx(0.75, rel=1e-6)


# --- check_vjp ----------------------------------------------------------------------

def _product_op(bump_w_at=None, bump_forward=False):
    """``x * w`` as a custom_vjp; optionally wrong by +1 at one element of dw, or in
    the forward."""
    @jax.custom_vjp
    def op(x, w):
        return x * w + (1.0 if bump_forward else 0.0)

    def bwd(res, g):
        x, w = res
        dw = g * x
        if bump_w_at is not None:
            dw = dw.at[bump_w_at].add(1.0)
        return g * w, dw

    op.defvjp(lambda x, w: (op(x, w), (x, w)), bwd)
    return op


def product_ref(x, w):
    return x * w


def test_check_vjp_passes_a_correct_rule():
    x, w = jnp.arange(1.0, 6.0), jnp.arange(2.0, 7.0)
    worst = check_vjp(_product_op(), product_ref, x, w)
    assert set(worst) == {"x", "w"} and max(worst.values()) < 1e-15
    assert set(check_vjp(_product_op(), product_ref, x, w, argnums=1)) == {"w"}


def _message_values(message):
    number = r"(?:np\.float\d+\()?([-+0-9.e]+)\)?"
    m = re.search(r"index \((\d+),\): f gives " + number + r", f_ref gives " + number, message)
    assert m, message
    return int(m.group(1)), float(m.group(2)), float(m.group(3))


def test_check_vjp_raises_for_a_wrong_rule():
    x, w = jnp.arange(1.0, 6.0), jnp.arange(2.0, 7.0)
    with pytest.raises(AssertionError, match=r"gradient of argument 'w'") as info:
        check_vjp(_product_op(bump_w_at=3), product_ref, x, w)
    index, got, expected = _message_values(str(info.value))
    assert index == 3                                  # the worst element, named
    assert got - expected == pytest.approx(1.0)        # and both values, the bump between them
    with pytest.raises(AssertionError, match=r"forward output #0"):
        check_vjp(_product_op(bump_forward=True), product_ref, x, w)
    # float32 has looser default tolerances, but not loose enough to hide this
    with pytest.raises(AssertionError, match=r"gradient of argument 'w'"):
        check_vjp(_product_op(bump_w_at=0), product_ref, x, w, dtype=jnp.float32)


def test_check_vjp_on_a_jaxconv_op_float32():
    """float32 and its default tolerances, on the library's own conv (jitted:
    check_vjp takes any callable)."""
    x, w, b = randn(38, 2, 2, 5, 5), randn(39, 3, 2, 3, 3), randn(40, 3)
    kw = dict(stride=2, pad=1, impl="xla")
    worst = check_vjp(jax.jit(functools.partial(jc.conv2d, **kw)),
                      jax.jit(functools.partial(jc.reference.conv2d, **kw)), x, w, b,
                      dtype=jnp.float32, num_cotangents=2)
    assert set(worst) == {"x", "w", "b"} and max(worst.values()) < 1e-4


def test_docstring_example_runs_and_checks_something():
    doc = gradcheck.__doc__
    block = doc.split("Checking your own op::", 1)[1].split("``check_vjp`` compares", 1)[0]
    code = textwrap.dedent(block)
    namespace = {}
    exec(compile(code, "gradcheck-docstring", "exec"), namespace)     # raises if wrong
    assert "softplus" in namespace and "check_vjp(softplus, softplus_ref" in code
    # the same example with a wrong derivative is caught
    wrong = code.replace("jax.nn.sigmoid(x)", "jax.nn.sigmoid(2 * x)")
    assert wrong != code
    with pytest.raises(AssertionError, match="gradient of argument 'x'"):
        exec(compile(wrong, "gradcheck-docstring-wrong", "exec"), {})


def test_compare_picks_a_usable_step_for_float32():
    # In float32, h = 1e-5 drowns the differences in rounding (errors ~1); the
    # dtype-aware default step keeps them a few percent at most.
    x = jnp.asarray(randn(40, 2, 2, 6, 6), jnp.float32)
    w = jnp.asarray(randn(41, 3, 2, 3, 3), jnp.float32)
    default = compare("conv2d", x, w, None, stride=2, pad=1)
    tiny_step = compare("conv2d", x, w, None, stride=2, pad=1, h=1e-5)
    assert max(r["numerical"] for r in default.values()) < 5e-2, default
    assert max(r["numerical_rel_error"] for r in default.values()) < 5e-2, default
    assert max(r["numerical_rel_error"] for r in tiny_step.values()) > 0.1, tiny_step
    assert max(r["numerical"] for r in tiny_step.values()) > 1e-2, tiny_step
    assert max(r["autodiff"] for r in default.values()) < 1e-4, default


# --- issue 10 finding 11: no false alarms on exactly-zero entries, bugs still caught --------

def test_norm_error_by_hand():
    assert gradcheck.norm_error([3.0, 0.0], [3.0, 4.0]) == pytest.approx(4 / 5)
    assert gradcheck.norm_error(np.zeros(3), np.zeros(3)) == 0.0
    assert gradcheck.norm_error([1.0, 1e-12], [1.0, 0.0]) == pytest.approx(1e-12)
    assert rel_error([1.0, 1e-12], [1.0, 0.0]) == pytest.approx(1e-4)   # CS231n's, for contrast
    assert gradcheck.norm_error(np.ones(4) * (1 + 1e-6), np.ones(4)) == pytest.approx(1e-6, 1e-5)


def _svm_scores_with_inactive_margins():
    rng = np.random.default_rng(0)
    return rng.standard_normal((8, 6)), rng.integers(0, 6, 8)


@pytest.mark.parametrize("op, args, hyper", [
    ("svm_loss", _svm_scores_with_inactive_margins(), {}),
    ("relu", (100 * randn(1, 16, 16),), {}),                       # half the inputs negative
    ("max_pool2d", (randn(2, 2, 2, 8, 8),), {"pool": 2}),          # 3 of 4 window entries lose
    ("max_pool2d", (randn(3, 1, 2, 7, 7),), {"pool": 3, "stride": 2}),
])
def test_compare_does_not_cry_wolf_on_zero_gradient_entries(op, args, hyper):
    from jaxconv.check import TOLERANCES
    tol_auto, tol_num, h = TOLERANCES["float64"]
    report = compare(op, *args, h=h, **hyper)
    for errors in report.values():
        assert errors["autodiff"] <= tol_auto and errors["numerical"] <= tol_num, report
    # CS231n's element-wise measure raised the false alarm here, with XLA:CPU's optimized
    # rounding (its vectorised sums); the centred differences of the inactive margins
    # cancel exactly on an H200 and with the suite's unoptimized XLA:CPU (conftest)
    if (op == "svm_loss" and jax.default_backend() == "cpu"
            and os.environ.get("JAXCONV_TEST_XLA_OPT") == "1"):
        assert report["scores"]["numerical_rel_error"] > tol_num


def _scaled_svm(factor):
    """jc.svm_loss's forward with its own backward scaled by ``factor``."""
    forward = jc.svm_loss                   # bound now, before the monkeypatch

    @jax.custom_vjp
    def scaled(s, y):
        return forward(s, y)

    def fwd(s, y):
        out, pull = jax.vjp(lambda s: forward(s, y), s)
        return out, pull

    def bwd(pull, g):
        return (pull(g)[0] * factor, None)

    scaled.defvjp(fwd, bwd)
    return lambda s, y, margin=1.0: scaled(s, y)


def test_compare_still_catches_a_bug_of_one_part_in_a_million(monkeypatch):
    from jaxconv.check import TOLERANCES
    tol_auto, _, h = TOLERANCES["float64"]
    scores, labels = _svm_scores_with_inactive_margins()
    monkeypatch.setattr(jaxconv, "svm_loss", _scaled_svm(1.0))     # the harness itself
    honest = compare("svm_loss", scores, labels, h=h)["scores"]
    assert honest["autodiff"] < 1e-15 and honest["numerical"] < 1e-9
    monkeypatch.setattr(jaxconv, "svm_loss", _scaled_svm(1 + 1e-6))
    bug = compare("svm_loss", scores, labels, h=h)["scores"]
    assert bug["autodiff"] == pytest.approx(1e-6, rel=1e-3) and bug["autodiff"] > tol_auto
    assert bug["numerical"] == pytest.approx(1e-6, rel=1e-2)
    assert bug["numerical"] > 100 * honest["numerical"]


def _cos_op(bug=1.0):
    """1e6 * sum(sin(x)) with the derivative written as sin(pi/2 - x): exactly
    cos(x) in real numbers, exactly 0.0 at x = pi/2 where jnp.cos gives 6e-17."""
    @jax.custom_vjp
    def op(x):
        return 1e6 * jnp.sum(jnp.sin(x))

    def bwd(x, g):
        return (g * 1e6 * jnp.sin(jnp.pi / 2 - x) * bug,)

    op.defvjp(lambda x: (op(x), x), bwd)
    return op


def _cos_ref(x):
    return 1e6 * jnp.sum(jnp.sin(x))


def test_check_vjp_floor_scales_with_the_gradient():
    x = jnp.array([0.3, np.pi / 2, -1.0, -np.pi / 2, 2.0])
    worst = check_vjp(_cos_op(), _cos_ref, x)      # 6e-11 of rounding on a zero: no alarm
    assert worst["x"] < 1e-15
    with pytest.raises(AssertionError, match=r"gradient of argument 'x'"):
        check_vjp(_cos_op(1 + 1e-6), _cos_ref, x)  # one part in a million: caught
    with pytest.raises(AssertionError, match=r"gradient of argument 'x'"):
        check_vjp(_cos_op(1 + 1e-3), _cos_ref, x, dtype=jnp.float32)
