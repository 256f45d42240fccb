"""The custom_vjp wiring every op shares, written once.

An op is three plain functions of ``(config, *arrays)``:

* ``primal(config, *arrays) -> out``, the forward pass;
* ``fwd(config, *arrays) -> (out, residuals)``, the forward pass that also keeps
  what the backward needs;
* ``bwd(config, residuals, cotangent) -> tuple`` with one cotangent per array
  (``None`` for integer arrays such as labels and PRNG keys).

``config`` is a hashable frozen dataclass of the hyperparameters, passed through
``nondiff_argnums`` (a ``jax.custom_vjp`` cannot take keyword-only arguments, and
arrays must never be static). The public wrapper validates its inputs and builds
the config; it is the only place keyword-only arguments exist.

Two guarantees JAX does not give are added here, once for every op:

* each cotangent is cast to its primal's dtype (JAX does not check this, so a
  float32 rule for a bfloat16 input would otherwise pass silently);
* integer and PRNG-key inputs get ``None``, which JAX turns into float0 zeros;
  an absent optional array (``None``, e.g. no bias) gets ``None`` too.
"""
from __future__ import annotations

import functools
from typing import Callable

import jax
import jax.numpy as jnp
from jax.tree_util import register_static


@register_static
class _Dtypes(tuple):
    """The primal dtypes, carried to ``bwd`` as static (leafless) residual data."""


def _differentiable(dtype) -> bool:
    return dtype is not None and jnp.issubdtype(dtype, jnp.inexact)


def custom_vjp_op(primal: Callable, fwd: Callable, bwd: Callable) -> Callable:
    """``jax.custom_vjp`` of ``primal(config, *arrays)`` with hand-written rules."""

    @functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
    def op(config, *arrays):
        return primal(config, *arrays)

    def op_fwd(config, *arrays):
        out, residuals = fwd(config, *arrays)
        return out, (residuals, _Dtypes(getattr(a, "dtype", None) for a in arrays))

    def op_bwd(config, saved, cotangent):
        residuals, dtypes = saved
        grads = bwd(config, residuals, cotangent)
        return tuple(
            None if g is None or not _differentiable(dt) else g.astype(dt)
            for g, dt in zip(grads, dtypes, strict=True)
        )

    op.defvjp(op_fwd, op_bwd)
    functools.update_wrapper(op, primal)
    return op
