"""Test configuration: float64 everywhere (the gradient checks need it), the PyTorch
cross-checks fail instead of skipping when JAXCONV_REQUIRE_TORCH=1, Hypothesis draws
the same examples on every run, and XLA:CPU's LLVM backend compiles unoptimized."""
import os
import sys
import textwrap
import types

# The suite compiles a few thousand small XLA programs, and LLVM's optimization of the
# generated loops is most of its time (-40% of the suite's time at level 0, measured on
# the training and gradient tests). The level changes how fast the loops run, not what
# they compute: every value is still checked against an oracle compiled the same way.
# JAXCONV_TEST_XLA_OPT=1 keeps XLA's default. Read when the CPU backend starts (after
# this file), and inherited by the tests' subprocesses.
if os.environ.get("JAXCONV_TEST_XLA_OPT") != "1":
    os.environ["XLA_FLAGS"] = " ".join(
        filter(None, [os.environ.get("XLA_FLAGS"), "--xla_backend_optimization_level=0"]))

import jax  # noqa: E402
import pytest  # noqa: E402
from hypothesis import settings  # noqa: E402

import jaxconv.compat.cs231n as compat  # noqa: E402

jax.config.update("jax_enable_x64", True)

# Derandomized: a suite that passed passes again. XLA:CPU (jaxlib 0.10.2) aborts the
# whole process compiling JAX's own gradient of some float64 strided convolutions
# (README, "Known XLA issue"; about 1 in 500 drawn geometries), which the twin oracles
# use: with fresh draws every run, CI would die now and then on a bug that is not
# jaxconv's. JAXCONV_HYPOTHESIS_RANDOM=1 draws fresh examples, to explore.
settings.register_profile(
    "jaxconv", derandomize=os.environ.get("JAXCONV_HYPOTHESIS_RANDOM") != "1")
settings.load_profile("jaxconv")


@pytest.fixture(scope="session")
def torch():
    try:
        import torch as torch_module
    except ImportError:
        if os.environ.get("JAXCONV_REQUIRE_TORCH") == "1":
            pytest.fail("JAXCONV_REQUIRE_TORCH=1 but torch is not installed")
        pytest.skip("torch not installed (pip install torch==2.13.0 to run the cross-checks)")
    torch_module.set_default_dtype(torch_module.float64)
    return torch_module


@pytest.fixture(autouse=True)
def _native_kernels_run_on_the_cpu(request):
    """The native kernels are XLA:CPU kernels: their tests (tests/test_native.py and the
    registry's impl="native" cases) run on the CPU device, on a GPU machine too."""
    if request.node.path.name == "test_native.py" or "native" in request.node.name:
        with jax.default_device(jax.devices("cpu")[0]):
            yield
    else:
        yield


@pytest.fixture(scope="session")
def native():
    """jaxconv's native kernels; CI (JAXCONV_REQUIRE_NATIVE=1) fails if they are not built."""
    from jaxconv import _native
    if not _native.available():
        if os.environ.get("JAXCONV_REQUIRE_NATIVE") == "1":
            pytest.fail("JAXCONV_REQUIRE_NATIVE=1 but jaxconv's native extension is not built")
        pytest.skip("native extension not built (needs a C++ compiler at `pip install -e .`)")
    return _native


@pytest.fixture
def run_cell(monkeypatch):
    """For the CS231n notebook cells (tests/test_compat_notebook*.py): execute a cell in
    a fresh notebook namespace whose ``cs231n.*`` imports resolve to the compat layer;
    return the namespace."""
    package = types.ModuleType("cs231n")
    package.__path__ = []
    monkeypatch.setitem(sys.modules, "cs231n", package)
    for name in ("layers", "fast_layers", "optim", "gradient_check", "im2col"):
        monkeypatch.setitem(sys.modules, f"cs231n.{name}", compat)
        setattr(package, name, compat)

    def run(source, **extra):
        namespace = dict(extra)
        exec("import numpy as np\nfrom jaxconv.compat.cs231n import *\n", namespace)
        exec(compile(textwrap.dedent(source), "<notebook cell>", "exec"), namespace)
        return namespace

    return run
