"""``jax.jit`` with XLA:CPU's convolutions sent to Eigen instead of YNNPACK.

XLA:CPU (jax 0.10) hands every convolution to its YNNPACK library, which is slow
per core for few-channel, large-kernel convolutions (a 3-channel 7x7 forward ran
about 3x PyTorch's time here). One experimental per-jit compiler option sends
them to Eigen instead::

    compiler_options={"xla_cpu_experimental_ynn_fusion_type":
                      "LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT"}

which took the ThreeLayerConvNet training step from ~1.7x to ~1.05x PyTorch's
time (it makes input-dilated convolutions, i.e. the dx of a strided conv,
slower; a first layer never computes its dx). The option is experimental: it is
probed once with a tiny compile, and where the jaxlib rejects it (or the default
backend is not the CPU) no options are used at all. It changes where XLA's own
convolutions run; ``impl="native"`` convolutions are FFI calls it does not touch.
"""
from __future__ import annotations

import functools
from typing import Any, Callable

import jax

EIGEN_CONV_OPTIONS = {"xla_cpu_experimental_ynn_fusion_type": "LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT"}


def _accepted(options: dict[str, str]) -> bool:
    """Whether this jaxlib compiles a tiny function with these options."""
    try:
        jax.jit(lambda v: v + 1, compiler_options=options).lower(1.0).compile()
    except Exception:  # noqa: BLE001 - any rejection means: do not use them
        return False
    return True


@functools.cache
def conv_compiler_options() -> dict[str, str]:
    """The compiler options for CPU convolutions: the Eigen option on a CPU backend
    whose jaxlib accepts it, else ``{}``. Pass them to your own ``jax.jit``::

        step = jax.jit(step, compiler_options=jaxconv.conv_compiler_options())
    """
    if jax.default_backend() != "cpu" or not _accepted(EIGEN_CONV_OPTIONS):
        return {}
    return dict(EIGEN_CONV_OPTIONS)


def jit(fun: Callable, **jit_kwargs: Any) -> Callable:
    """``jax.jit(fun, **jit_kwargs)`` plus :func:`conv_compiler_options` (options
    given in ``jit_kwargs["compiler_options"]`` win).

    The options are looked up at the first call (or ``.lower``), not here, so that
    decorating a module-level function initialises no JAX backend at import time
    (``jax.distributed.initialize`` must come first).

    >>> import jax.numpy as jnp, jaxconv
    >>> jaxconv.jit(lambda x: 2 * x)(jnp.arange(3.0)).tolist()
    [0.0, 2.0, 4.0]
    """
    own = jit_kwargs.pop("compiler_options", None) or {}

    @functools.cache
    def jitted():
        options = {**conv_compiler_options(), **own}
        return jax.jit(fun, compiler_options=options or None, **jit_kwargs)

    @functools.wraps(fun)
    def call(*args, **kwargs):
        return jitted()(*args, **kwargs)

    call.lower = lambda *args, **kwargs: jitted().lower(*args, **kwargs)
    return call
