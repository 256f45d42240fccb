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
