"""The registry's cases as pytest parameters, and the results several generic
tests share (one jitted forward + VJP per case and side, computed once)."""
import functools
import hashlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

from jaxconv import _registry
from jaxconv.gradcheck import numerical_grad
from _util import on_cpu


def params(*, transforms=False, torch=False):
    """``pytest.param(op name, case name)`` for every registered case (only those
    with ``transforms=True`` / of ops with a PyTorch oracle when asked)."""
    return [pytest.param(name, case.name, id=f"{name}:{case.name}")
            for name, spec in _registry.ops().items()
            if not (torch and spec.torch is None)
            for case in spec.check_cases() if case.transforms or not transforms]


def case(name, case_name):
    spec = _registry.spec(name)
    return spec, next(c for c in spec.check_cases() if c.name == case_name)


@functools.lru_cache(maxsize=None)
def bound(name, case_name):
    """``(spec, case, custom, twin, arrays, diff)``: ``custom``/``twin`` take the array
    arguments; ``diff`` indexes those that get gradients (floating, not None)."""
    spec, c = case(name, case_name)
    custom, twin, arrays = spec.bind(c.args, c.hyper)
    names = spec.array_names(c.args)
    diff = tuple(i for i, a in enumerate(arrays) if names[i] in spec.grads and a is not None)
    return spec, c, custom, twin, arrays, diff


def cotangent(spec, out_shape, seed=4):
    """Fixed random cotangents (NumPy), zero for the outputs that carry no gradient."""
    rng = np.random.default_rng(seed)
    leaves, tree = jax.tree.flatten(out_shape)
    return tree.unflatten([np.zeros(o.shape, o.dtype) if k in spec.no_grad_outputs
                           else rng.standard_normal(o.shape).astype(o.dtype)
                           for k, o in enumerate(leaves)])


def pairing(out, g):
    """``sum_k <out_k, g_k>``: the scalar whose gradient is the VJP of g."""
    return sum(jnp.sum(o * c) for o, c in zip(jax.tree.leaves(out), jax.tree.leaves(g),
                                              strict=True))


def _forward_and_vjp(f, arrays, diff, g):
    def run(*d):
        out, pull = jax.vjp(_registry.fix_others(f, arrays, diff), *d)
        return out, pull(g)
    return jax.jit(run)(*(arrays[i] for i in diff))


def _fingerprint(name, c):
    """What the twin's results depend on: the op, the arrays and the hyperparameters
    other than ``impl`` (a twin validates ``impl``, then ignores it), so that the
    cases that differ only in the custom op's impl share one twin and one numerical
    pass."""
    def data(a):
        if isinstance(a, np.ndarray):
            return (a.dtype.str, a.shape, hashlib.sha1(np.ascontiguousarray(a)).hexdigest())
        return repr(a)
    hyper = sorted((k, repr(v)) for k, v in c.hyper.items() if k != "impl")
    return name, tuple(data(a) for a in c.args), tuple(hyper)


_TWIN_RESULTS = {}


@functools.lru_cache(maxsize=None)
def results(name, case_name):
    """Forward outputs and gradients (of the arrays in ``diff``) of the custom op (on
    the default device) and of the twin for one cotangent ``g``, and the twin's
    centered-difference VJP (the oracles on the CPU: :func:`on_cpu`)."""
    spec, c, custom, twin, arrays, diff = bound(name, case_name)
    g = cotangent(spec, jax.eval_shape(twin, *arrays))
    out, grads = _forward_and_vjp(custom, arrays, diff, g)
    key = _fingerprint(name, c)
    if key not in _TWIN_RESULTS:
        with on_cpu():
            out_t, grads_t = _forward_and_vjp(twin, arrays, diff, g)
            flat, unravel = ravel_pytree([arrays[i] for i in diff])
            twin_of_diff = _registry.fix_others(twin, arrays, diff)
            num = unravel(numerical_grad(lambda p: pairing(twin_of_diff(*unravel(p)), g), flat))
        _TWIN_RESULTS[key] = out_t, grads_t, num
    out_t, grads_t, num = _TWIN_RESULTS[key]
    return dict(g=g, out=out, grads=grads, out_twin=out_t, grads_twin=grads_t, numerical=num)
