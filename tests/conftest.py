"""Test configuration: float64 everywhere (the gradient checks need it), and the
PyTorch cross-checks fail instead of skipping when JAXCONV_REQUIRE_TORCH=1."""
import os

import jax
import pytest

jax.config.update("jax_enable_x64", True)


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
