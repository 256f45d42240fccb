"""NumPy in, NumPy out: how every compat function calls a jaxconv op, written once.

A compat function hands an :class:`Op` (a module-level function plus its static
hyperparameters, hashable so that one jit-compiled executable serves every call
with the same shapes) and NumPy arrays to :func:`forward` or :func:`pullback`:

* :func:`forward` runs the op and returns NumPy arrays;
* :func:`pullback` runs ``jax.vjp`` of the op on the cached inputs and pulls the
  upstream gradient back: this is what invokes the op's hand-derived
  ``custom_vjp`` rule (no second implementation of any backward).

Precision: when an input is float64, the call runs inside ``jax.enable_x64(True)``,
a thread-local context manager of JAX's configuration. The user's global
``jax_enable_x64`` setting is untouched, and code outside the call (or in other
threads) sees no difference; jit caches are keyed on the flag, so a float64 call
never reuses a float32 executable. float32/float16 calls run under the
configuration the user already has.

Results are returned as writable NumPy copies (the seeds' callers update arrays
in place, e.g. ``w -= lr * dw``), in the common dtype of the inputs.
"""
from __future__ import annotations

import contextlib
import functools
from typing import Callable, NamedTuple

import jax
import numpy as np


class Op(NamedTuple):
    """A function of arrays with frozen keyword hyperparameters (a jit static)."""

    fn: Callable
    hyper: tuple = ()

    def __call__(self, *arrays):
        return self.fn(*arrays, **dict(self.hyper))


def op(fn: Callable, **hyper) -> Op:
    """``Op(fn, hyper)`` with the hyperparameters in a canonical, hashable order
    (a list, e.g. ``conv_param["pad"] = [1, 2]``, becomes a tuple)."""
    return Op(fn, tuple(sorted((k, tuple(v) if isinstance(v, list) else v)
                               for k, v in hyper.items())))


def floating(*arrays):
    """The arrays as NumPy arrays of one floating dtype, as NumPy would promote them.

    Integer inputs (a seed example convolves ``np.arange`` images) promote like
    NumPy's true division does: to float64, or to the float dtype they meet.
    ``None`` (an absent bias) passes through.
    """
    present = [np.asarray(a) for a in arrays if a is not None]
    dtype = np.result_type(*present)
    if not np.issubdtype(dtype, np.floating):
        dtype = np.result_type(dtype, np.float64)
    return tuple(None if a is None else np.asarray(a, dtype) for a in arrays)


def labels(y):
    """Integer labels as int32 (no x64 needed); other kinds go on to the op's check."""
    y = np.asarray(y)
    return y.astype(np.int32) if np.issubdtype(y.dtype, np.integer) else y


def precision(*arrays):
    """``jax.enable_x64(True)`` when an input is 64-bit floating, else no change."""
    wide = any(a is not None and np.asarray(a).dtype == np.float64 for a in arrays)
    return jax.enable_x64(True) if wide else contextlib.nullcontext()


@functools.partial(jax.jit, static_argnums=0)
def _apply(f: Op, *arrays):
    return f(*arrays)


@functools.partial(jax.jit, static_argnums=(0, 1))
def _pull(f: Op, wrt: tuple, cotangent, *arrays):
    def of_wrt(*diff):
        full = list(arrays)
        for i, d in zip(wrt, diff):
            full[i] = d
        return f(*full)

    out, vjp = jax.vjp(of_wrt, *(arrays[i] for i in wrt))
    if cotangent.shape != out.shape:  # checked while tracing: a clear error, not a broadcast
        name = getattr(f.fn, "__name__", "backward").lstrip("_")
        raise ValueError(f"{name} backward: the upstream gradient must have the output's "
                         f"shape {tuple(out.shape)}, got dout.shape={tuple(cotangent.shape)}")
    return vjp(cotangent)


def _to_numpy(tree):
    return jax.tree.map(lambda a: np.array(a), tree)


def forward(f: Op, *arrays):
    """``f(*arrays)`` jit-compiled; the outputs as NumPy arrays."""
    with precision(*arrays):
        return _to_numpy(_apply(f, *arrays))


def pullback(f: Op, arrays: tuple, cotangent, wrt: tuple[int, ...]):
    """Gradients of ``<f(*arrays), cotangent>`` for the arrays at positions ``wrt``.

    ``jax.vjp`` of ``f`` at the cached inputs: the op's custom_vjp rule runs.
    The cotangent is cast to the inputs' floating dtype (the output's), as the
    seeds' ``dout`` arrays are often float64 next to float32 layers.
    """
    dtype = np.result_type(*(a for a in arrays if np.issubdtype(a.dtype, np.floating)))
    with precision(*arrays):
        return _to_numpy(_pull(f, tuple(wrt), np.asarray(cotangent, dtype), *arrays))
