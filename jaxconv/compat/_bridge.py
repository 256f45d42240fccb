"""NumPy in, NumPy out: how every compat function calls a jaxconv op, written once.

A compat function hands an :class:`Op` (a module-level function plus its static
hyperparameters, hashable) and NumPy arrays to one of:

* :func:`forward`: run the op, return NumPy arrays (losses, im2col, update rules);
* :func:`forward_saving`: run the op AND ``jax.vjp`` of it in one jit-compiled call;
  return the outputs and a :class:`Saved` pullback whose leaves are the op's own
  custom_vjp residuals (immutable device buffers: what CS231n's caches keep, as
  derived values that mutating the caller's arrays cannot change);
* :func:`backward`: apply a :class:`Saved` pullback to the upstream gradient, in one
  jit-compiled call: this runs the op's hand-derived backward rule and nothing else;
* :func:`pullback`: ``jax.vjp`` of the op at given arrays (for caches built by hand).

The fast path for small calls. One ``jax.jit`` per Op, kept in a dict, so a call is a
dict lookup plus JAX's C++ dispatch (which keys its executables by shape and dtype):
no static-argument hashing inside jit, no retracing, no re-validation (the op
validated while tracing, once per shape), and no forward recomputed in the backward.
What bounds a call is that dispatch and the XLA executable's run: on the 2-core test
machine a tiny jitted function costs ~15-30 us of CPU, plus a few us per NumPy argument
copied in and per output copied out (the seeds' callers update results in place: they
must be writable NumPy arrays of their own); see experiments/bench_compat.py.

Precision: when an input is float64, the call runs inside ``jax.enable_x64(True)``,
JAX's thread-local configuration context (about 1 us). The user's global
``jax_enable_x64`` is untouched; jit caches are keyed on the flag, so a float64 call
never reuses a float32 executable. float32/float16 calls run under the user's own
configuration.
"""
from __future__ import annotations

import contextlib
from typing import Callable, NamedTuple

import jax
import numpy as np

from jaxconv.compat._buffers import ALIGN_FROM_BYTES, aligned, aligned_copy

_NO_CONTEXT = contextlib.nullcontext()


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
    first = arrays[0]
    if type(first) is np.ndarray and first.dtype in _FLOATS and all(
            type(a) is np.ndarray and a.dtype == first.dtype for a in arrays):
        return arrays       # the common case: nothing to promote, nothing to copy
    present = [np.asarray(a) for a in arrays if a is not None]
    dtype = np.result_type(*present)
    if not np.issubdtype(dtype, np.floating):
        dtype = np.result_type(dtype, np.float64)
    return tuple(None if a is None else np.asarray(a, dtype) for a in arrays)


def precision(*arrays):
    """``jax.enable_x64(True)`` when an input is 64-bit, else no change."""
    for a in arrays:
        if getattr(a, "dtype", None) in _WIDE:
            return jax.enable_x64(True)
    return _NO_CONTEXT


def synchronous_cpu_dispatch() -> bool:
    """Run JAX's CPU computations on the calling thread, for the whole process; returns
    whether they do.

    XLA:CPU runs a program of more than ~1,000 flops (a (2, 15) x (15, 20) dot is
    1,200) on its thread pool while the caller waits: two thread switches a call, which
    a NumPy-in, NumPy-out call (it always waits for its result) pays for nothing. One
    core, CPU time: a (25, 100) x (100, 100) affine_relu forward 130 -> 84 us, the
    notebook's 50-sample overfitting run ~2.0x -> ~1.7x NumPy's time.

    This sets JAX's ``jax_cpu_enable_async_dispatch`` to False, which only takes effect
    before JAX starts its CPU backend: afterwards it changes nothing (and returns
    False). It affects every JAX computation of the process (none of their results,
    only whether Python runs ahead of them), which is why the compat layer never calls
    it by itself: :func:`jaxconv.compat.cs231n.install` does, or call it first thing.
    """
    from jax._src import xla_bridge     # no public API says whether the backend started
    if not xla_bridge.backends_are_initialized():
        jax.config.update("jax_cpu_enable_async_dispatch", False)
        return True
    return not jax.config.values["jax_cpu_enable_async_dispatch"]


_WIDE = (np.dtype(np.float64), np.dtype(np.int64), np.dtype(np.uint64))
_FLOATS = (np.dtype(np.float64), np.dtype(np.float32), np.dtype(np.float16))


def _to_numpy(outputs):
    """Writable NumPy copies of their own (the seeds' callers update results in place)."""
    if isinstance(outputs, (tuple, list)):
        return tuple(aligned_copy(a) for a in outputs)
    return aligned_copy(outputs)


# --- forward only --------------------------------------------------------------------

_FORWARD: dict = {}


def _forward_jit(f: Op):
    jitted = _FORWARD.get(f)
    if jitted is None:
        jitted = _FORWARD[f] = jax.jit(lambda *arrays: f(*arrays))
    return jitted


def forward(f: Op, *arrays, copy: bool = True):
    """``f(*arrays)`` jit-compiled; the outputs as NumPy arrays: writable copies of their
    own, or with ``copy=False`` read-only views of the result (for a caller that
    copies them into its own arrays anyway)."""
    with precision(*arrays):
        result = _forward_jit(f)(*map(aligned, arrays))
    return _to_numpy(result) if copy else np.asarray(result)


# --- forward that keeps the op's residuals; backward that applies them --------------------

class Saved(NamedTuple):
    """What a backward needs: the op's pullback (its custom_vjp residuals, as device
    buffers of their own), the output's shape and dtype, and the op."""
    pullback: object
    shape: tuple
    dtype: np.dtype
    op: Op


_SAVING: dict = {}


def _name(f: Op) -> str:
    return getattr(f.fn, "__name__", "op").lstrip("_")


class _Argument:
    """In a pullback returned by a jit: the residual that is the call's argument
    ``index`` itself (affine keeps x and w). XLA would copy it out as an output; the
    caller holds it already, read-only, and puts it back (:func:`_with_arguments`).
    Only for large arguments: a NumPy leaf costs the backward's dispatch ~13 us more
    than a device buffer (measured), a copy of 256 KiB about as much."""

    def __init__(self, index: int):
        self.index = index


jax.tree_util.register_pytree_node(_Argument, lambda a: ((), a.index),
                                   lambda index, _: _Argument(index))


def _is_argument(leaf) -> bool:
    return isinstance(leaf, _Argument)


def _with_arguments(pullback, arrays):
    return jax.tree.map(lambda leaf: arrays[leaf.index] if _is_argument(leaf) else leaf,
                        pullback, is_leaf=_is_argument)


_KEEP_ARGUMENT_BYTES = 1 << 18


def _saving_jit(f: Op, wrt: tuple, has_aux: bool, kept: tuple):
    key = (f, wrt, has_aux, kept)
    jitted = _SAVING.get(key)
    if jitted is None:
        def run(*arrays):
            def of_wrt(*diff):
                full = list(arrays)
                for i, d in zip(wrt, diff):
                    full[i] = d
                return f(*full)
            out, pullback, *aux = jax.vjp(of_wrt, *(arrays[i] for i in wrt), has_aux=has_aux)
            if kept:
                position = {id(arrays[i]): i for i in kept}
                pullback = jax.tree.map(
                    lambda leaf: _Argument(position[id(leaf)]) if id(leaf) in position else leaf,
                    pullback)
            return out, pullback, *aux
        jitted = _SAVING[key] = jax.jit(run)
    return jitted


def forward_saving(f: Op, arrays: tuple, wrt: tuple, has_aux: bool = False,
                   owned: bool = False):
    """``(out, saved)`` or, with ``has_aux`` (f returns ``(out, aux)``), ``(out, aux, saved)``.

    One jit-compiled call runs the op's forward and keeps its residuals; ``out`` and
    ``aux`` come back as NumPy arrays. ``owned``: the large arrays are read-only
    copies of the caller's own (:func:`frozen`), which the pullback may keep instead
    of XLA's copies of the same values.
    """
    kept = tuple(i for i, a in enumerate(arrays)
                 if a is not None and a.nbytes >= _KEEP_ARGUMENT_BYTES) if owned else ()
    with precision(*arrays):
        result = _saving_jit(f, wrt, has_aux, kept)(*map(aligned, arrays))
    out = aligned_copy(result[0])
    pullback = _with_arguments(result[1], arrays) if kept else result[1]
    saved = Saved(pullback, out.shape, out.dtype, f)
    if has_aux:
        return out, _to_numpy(result[2]), saved
    return out, saved


@jax.jit
def _apply(pullback, cotangent):
    return pullback(cotangent)


def backward(saved: Saved, dout):
    """The op's gradients for the upstream gradient ``dout`` (cast to the output's
    dtype, as the seeds' ``dout`` arrays are often float64 next to float32 layers)."""
    dout = np.asarray(dout)
    if dout.shape != saved.shape:
        raise ValueError(f"{_name(saved.op)} backward: the upstream gradient must have the output's "
                         f"shape {saved.shape}, got dout.shape={dout.shape}")
    if dout.dtype != saved.dtype:
        dout = dout.astype(saved.dtype)
    with precision(dout):
        return _to_numpy(_apply(saved.pullback, aligned(dout)))


class Cache(tuple):
    """A tuple with CS231n's cache contents (read-only NumPy copies of the inputs) that
    also carries the :class:`Saved` pullback the backward applies."""

    saved: Saved

    def __new__(cls, contents, saved):
        self = super().__new__(cls, contents)
        self.saved = saved
        return self


class SavedArray(np.ndarray):
    """A read-only array (CS231n's cache is x itself for relu) carrying a :class:`Saved`."""

    saved = None

    @classmethod
    def of(cls, values, saved):
        view = values.view(cls)
        view.saved = saved
        return view


def frozen(a):
    """A read-only NumPy array of the values of ``a`` that no later write to ``a`` reaches."""
    if a is None:
        return None
    a = aligned_copy(a)
    a.flags.writeable = False
    return a


def layer(f: Op, arrays: tuple, extra: tuple = (), wrt=None, has_aux: bool = False):
    """``(out, cache)`` (``(out, aux, cache)`` with ``has_aux``) of op ``f`` at
    ``arrays``: CS231n's cache contents (the arrays, frozen, then ``extra``) carrying
    the op's residuals. Large arrays reach XLA as the frozen copies (aligned, read in
    place, nothing can write to them); small ones as given (a read-only argument
    costs JAX's dispatch ~1.5 us more, and XLA copies small ones anyway)."""
    wrt = tuple(range(len(arrays))) if wrt is None else wrt
    copies, given = [], []
    for a in arrays:
        copy = frozen(a)
        copies.append(copy)
        given.append(copy if copy is not None and copy.nbytes >= ALIGN_FROM_BYTES else a)
    *results, saved = forward_saving(f, tuple(given), wrt, has_aux, owned=True)
    return (*results, Cache(tuple(copies) + tuple(extra), saved))


def gradients(dout, cache, f=None, wrt=None, count=None):
    """The backward of :func:`layer`: the op's rule on its residuals. A cache made by
    hand (a plain tuple) is differentiated afresh with ``f`` at its first ``count`` arrays."""
    saved = getattr(cache, "saved", None)
    if saved is None:
        arrays = floating(*cache[:count])
        return pullback(f, arrays, dout, tuple(range(count)) if wrt is None else wrt)
    return backward(saved, dout)


# --- pullback at given arrays (caches made by hand, dlai, im2col_net) -----------------------

def pullback(f: Op, arrays: tuple, cotangent, wrt: tuple[int, ...]):
    """Gradients of ``<f(*arrays), cotangent>`` for the arrays at positions ``wrt``:
    ``jax.vjp`` of ``f`` at these arrays (the op's custom_vjp rule runs)."""
    _, saved = forward_saving(f, arrays, tuple(wrt))
    return backward(saved, cotangent)
