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
convolutions run; ``impl="native"`` convolutions are FFI calls it does not touch. It
also slows XLA's elementwise and reduction code, so :func:`jit` uses it only for
programs with XLA convolutions.
"""
from __future__ import annotations

import functools
import inspect
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
    """``jax.jit(fun, **jit_kwargs)`` plus :func:`conv_compiler_options` where the
    compiled program has XLA convolutions (options given in
    ``jit_kwargs["compiler_options"]`` win).

    The Eigen option also takes XLA:CPU's elementwise and reduction fusions away from
    YNNPACK, which ran them ~3x faster here (an svm_loss forward + backward on (256,
    1000) scores: 0.10 ms plain, 0.34 ms with the option). So the options are used only
    for programs that convolve on XLA: at the first call for each value of the static
    arguments, the function is lowered once without them and its StableHLO searched for
    a convolution (``impl="native"``/``"auto"`` convolutions on the CPU are FFI calls,
    not convolutions; other platforms' branches of ``lax.platform_dependent`` are not
    lowered). ``call.compiler_options(*args, **kwargs)`` says what a call uses.

    The options are looked up at the first call (or ``.lower``), not here, so that
    decorating a module-level function initialises no JAX backend at import time
    (``jax.distributed.initialize`` must come first).

    >>> import jax.numpy as jnp, jaxconv
    >>> jaxconv.jit(lambda x: 2 * x)(jnp.arange(3.0)).tolist()
    [0.0, 2.0, 4.0]
    """
    own = jit_kwargs.pop("compiler_options", None) or {}
    static_names = _as_tuple(jit_kwargs.get("static_argnames"))
    static_nums = _static_positions(fun, static_names, _as_tuple(jit_kwargs.get("static_argnums")))

    @functools.cache
    def variant(with_conv_options: bool):
        options = {**(conv_compiler_options() if with_conv_options else {}), **own}
        return jax.jit(fun, compiler_options=options or None, **jit_kwargs)

    chosen: dict = {}   # static arguments -> the jitted variant for them

    def jitted(args, kwargs):
        key = (tuple(args[i] for i in static_nums if i < len(args)),
               tuple(kwargs.get(name) for name in static_names))
        try:
            choice = chosen.get(key)
        except TypeError:       # an unhashable static argument: jax.jit's error says so
            return variant(False)
        if choice is None:
            plain = variant(False)
            convolves = bool(conv_compiler_options()) and _has_convolution(
                plain.lower(*args, **kwargs).as_text())
            choice = chosen[key] = variant(True) if convolves else plain
        return choice

    @functools.wraps(fun)
    def call(*args, **kwargs):
        return jitted(args, kwargs)(*args, **kwargs)

    call.lower = lambda *args, **kwargs: jitted(args, kwargs).lower(*args, **kwargs)
    call.compiler_options = lambda *args, **kwargs: (
        {**conv_compiler_options(), **own} if jitted(args, kwargs) is variant(True) else own)
    return call


def _as_tuple(names) -> tuple:
    if names is None:
        return ()
    return (names,) if isinstance(names, (str, int)) else tuple(names)


def _static_positions(fun: Callable, names: tuple, nums: tuple) -> tuple:
    """The positions static arguments may come at: ``static_argnums`` and, as jax.jit
    reads them, the positions of the parameters named in ``static_argnames``."""
    try:
        parameters = list(inspect.signature(fun).parameters.values())
    except (TypeError, ValueError):     # no signature (a builtin): numbers only
        return nums
    named = [i for i, p in enumerate(parameters) if p.name in names
             and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return tuple(sorted(set(nums) | set(named)))


def _has_convolution(stablehlo: str) -> bool:
    return "stablehlo.convolution" in stablehlo
