"""jaxconv.jit / conv_compiler_options: the guarded Eigen option for XLA:CPU convs."""
import jax
import numpy as np

import jaxconv
from jaxconv import _cpu_jit


def test_option_is_used_on_cpu_when_this_jaxlib_accepts_it():
    accepted = True
    try:  # the oracle: jax.jit itself, with the option spelled out
        jax.jit(lambda v: v * 2, compiler_options={
            "xla_cpu_experimental_ynn_fusion_type": "LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT",
        }).lower(1.0).compile()
    except Exception:  # noqa: BLE001
        accepted = False
    want = _cpu_jit.EIGEN_CONV_OPTIONS if accepted and jax.default_backend() == "cpu" else {}
    assert jaxconv.conv_compiler_options() == want


def test_a_rejected_option_falls_back_silently(monkeypatch):
    assert not _cpu_jit._accepted({"xla_cpu_no_such_option": "1"})
    monkeypatch.setattr(_cpu_jit, "EIGEN_CONV_OPTIONS", {"xla_cpu_no_such_option": "1"})
    _cpu_jit.conv_compiler_options.cache_clear()
    try:
        assert jaxconv.conv_compiler_options() == {}
        assert float(jaxconv.jit(lambda v: v + 1)(1.0)) == 2.0
    finally:
        monkeypatch.undo()
        _cpu_jit.conv_compiler_options.cache_clear()


def test_jit_with_the_option_computes_the_same_conv_gradients():
    rng = np.random.default_rng(0)
    x, w = rng.standard_normal((2, 3, 9, 9)), rng.standard_normal((4, 3, 3, 3))

    def loss(x, w):
        return (jaxconv.conv2d(x, w, stride=2, pad=1, impl="xla") ** 2).sum()

    grad = jax.grad(loss, argnums=(0, 1))
    for got, want in zip(jaxconv.jit(grad, compiler_options={})(x, w), jax.jit(grad)(x, w)):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


def test_decorating_initialises_no_backend():
    """jaxconv.jit looks the options up at the first call, so a module-level
    decorator leaves jax.distributed.initialize possible."""
    import subprocess
    import sys
    script = ("import jaxconv, jax._src.xla_bridge as xb\n"
              "f = jaxconv.jit(lambda v: v + 1, donate_argnums=0)\n"
              "assert not xb.backends_are_initialized()\n"
              "print(float(f(1.0)))\n")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0 and out.stdout.strip() == "2.0", out.stderr[-2000:]


def _xla_convolves(fn, *args) -> bool:
    """The oracle: does XLA's own lowering of fn (plain jax.jit) hold a convolution?"""
    return "stablehlo.convolution" in jax.jit(fn).lower(*args).as_text()


def test_option_only_where_xla_convolves():
    """The Eigen option slows XLA's elementwise and reduction fusions ~3x, so programs
    without an XLA convolution (losses, dense layers, native convs) compile without it."""
    eigen = jaxconv.conv_compiler_options()
    rng = np.random.default_rng(1)
    x, w = rng.standard_normal((2, 3, 8, 8)), rng.standard_normal((4, 3, 3, 3))
    scores, y = rng.standard_normal((4, 5)), np.array([0, 4, 1, 2])
    programs = {
        "svm": (lambda s, y: jaxconv.svm_loss(s, y), (scores, y)),
        "dense": (lambda a: jaxconv.relu(jaxconv.affine(a, w.reshape(4, 27).T, w[:, 0, 0, 0]))
                  .sum(), (x.reshape(2, -1)[:, :27],)),
        "xla conv": (lambda x: jaxconv.conv2d(x, w, impl="xla").sum(), (x,)),
        "xla conv grad": (jax.grad(lambda x: jaxconv.conv2d(x, w, stride=2, impl="xla").sum()),
                          (x,)),
        "auto conv": (lambda x: jaxconv.conv2d(x, w, impl="auto").sum(), (x,)),
    }
    seen = set()
    for name, (fn, args) in programs.items():
        convolves = _xla_convolves(fn, *args)
        seen.add(convolves)
        jitted = jaxconv.jit(fn)
        assert jitted.compiler_options(*args) == (eigen if convolves else {}), name
        np.testing.assert_allclose(jitted(*args), jax.jit(fn)(*args), rtol=1e-6, atol=1e-6)
    assert seen == {True, False}          # both kinds of program were exercised


def test_option_decided_per_static_argument_value():
    eigen = jaxconv.conv_compiler_options()
    x, w = np.ones((1, 2, 5, 5)), np.ones((3, 2, 3, 3))

    def f(x, *, convolve):
        return jaxconv.conv2d(x, w, impl="xla").sum() if convolve else (x * x).sum()

    own = {"xla_embed_ir_in_executable": False}     # the caller's own options stay
    jitted = jaxconv.jit(f, static_argnames="convolve", compiler_options=own)
    assert jitted.compiler_options(x, convolve=False) == own
    assert jitted.compiler_options(x, convolve=True) == {**eigen, **own}
    assert float(jitted(x, convolve=True)) == 3 * 2 * 9 * 9
    assert float(jitted(x, convolve=False)) == 50.0


def test_static_argument_by_position_counts_too():
    """static_argnames matched to a positional parameter, as jax.jit does."""
    eigen = jaxconv.conv_compiler_options()
    x, w = np.ones((1, 2, 5, 5)), np.ones((3, 2, 3, 3))

    def f(x, convolve):
        return jaxconv.conv2d(x, w, impl="xla").sum() if convolve else (x * x).sum()

    jitted = jaxconv.jit(f, static_argnames="convolve")
    assert jitted.compiler_options(x, False) == {}
    assert jitted.compiler_options(x, True) == eigen
    assert float(jitted(x, True)) == 3 * 2 * 9 * 9
