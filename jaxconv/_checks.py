"""Trace-time validation shared by every op.

Every check runs on static information only (shapes, dtypes, Python values), so
it fires while tracing, before any computation, and under ``jit`` too. Messages
name the op, the argument and the offending shapes or values. Window and layout
geometry (int-or-per-dim hyperparameters, padding, output sizes) is in ``_geometry``.
"""
from __future__ import annotations

import numbers

import jax.numpy as jnp
import numpy as np


def _is_int(v) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def choice(op: str, name: str, value, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise ValueError(f"{op}: {name} must be one of {allowed}, got {value!r}")
    return value


def array(op: str, name: str, x, *, ndim: int | None = None, floating: bool = True):
    """Convert to a JAX array (tracers pass through) and check rank and kind."""
    if not hasattr(x, "shape") or not hasattr(x, "dtype"):
        if isinstance(x, (numbers.Number, list, tuple)):
            x = np.asarray(x)
        else:
            raise TypeError(f"{op}: {name} must be an array, got {type(x).__name__}")
    if floating and not jnp.issubdtype(x.dtype, jnp.floating):
        raise TypeError(f"{op}: {name} must have a floating dtype, got {x.dtype} "
                        f"({name}.shape={tuple(x.shape)})")
    if ndim is not None and x.ndim != ndim:
        raise ValueError(f"{op}: {name} must be {ndim}-D, got {name}.shape={tuple(x.shape)}")
    return jnp.asarray(x)


def same_dtype(op: str, **arrays) -> None:
    """Operands must share one dtype: mixing would silently promote or round."""
    dtypes = {name: a.dtype for name, a in arrays.items() if a is not None}
    if len(set(dtypes.values())) > 1:
        listed = ", ".join(f"{n}.dtype={d}" for n, d in dtypes.items())
        raise TypeError(f"{op}: operands must share one dtype, got {listed}")


def integer(op: str, name: str, value, *, minimum: int) -> int:
    """A plain Python (or NumPy) int hyperparameter, ``>= minimum``."""
    if not _is_int(value):
        raise TypeError(f"{op}: {name} must be an int, got {value!r}")
    if value < minimum:
        raise ValueError(f"{op}: {name} must be >= {minimum}, got {value!r}")
    return int(value)


def real(op: str, name: str, value, *, low: float, high: float | None = None,
         low_open: bool = False, high_open: bool = False) -> float:
    """A plain Python real hyperparameter in ``[low, high]``; ``low_open`` and
    ``high_open`` exclude the ends."""
    if not isinstance(value, numbers.Real) or isinstance(value, bool):
        raise TypeError(f"{op}: {name} must be a Python float, got {value!r}")
    value = float(value)
    above = value > low if low_open else value >= low
    below = high is None or (value < high if high_open else value <= high)
    if not (above and below):   # also rejects nan
        upper = "inf)" if high is None else f"{high}{')' if high_open else ']'}"
        raise ValueError(f"{op}: {name} must be in {'(' if low_open else '['}{low}, {upper}, "
                         f"got {value!r}")
    return value
