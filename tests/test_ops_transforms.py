"""Every registered op under JAX's transformations, on its cases marked
``transforms`` (jaxconv/_*_cases.py): jit, vmap (per-example gradients), lax.scan,
jax.checkpoint, grad-of-grad, bfloat16/float16, and forward mode (refused by a
custom_vjp op with JAX's error; the twin supports it). Each result is compared
with the autodiff twin (or a loop over it, or centered differences).

The loss is ``sum_k <sin(out_k), w_k>`` over the outputs that carry gradients,
fixed weights w: nonlinear, so that second derivatives are not trivially zero
(sin, unlike tanh, does not saturate on the pools' large inputs).
"""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxconv._registry import fix_others
from _registry_cases import bound, params
from _util import on_cpu

CASES = params(transforms=True)
FACTORS = (1.0, 1.5, 0.75)    # instances for vmap and scan: the first argument scaled


def _weights(shape, dtype):
    """Fixed weights in [-1, 1], computed in NumPy (a constant, the same bits in every
    transformation: XLA's float32 cos may differ by an ulp inside a loop)."""
    size = int(np.prod(shape))
    return jnp.asarray(np.cos(np.arange(size) * 0.7 + 0.3).reshape(shape), dtype)


@functools.lru_cache(maxsize=None)
def setup(name, case):
    """``(spec, loss, loss_twin, diff_args)``: the scalar losses of the arrays that
    get gradients (labels, keys, static arguments fixed)."""
    spec, _, custom, twin, arrays, diff = bound(name, case)

    def loss_of(f):
        f = fix_others(f, arrays, diff)

        def loss(*d):
            outs = jax.tree.leaves(f(*d))
            return sum(jnp.sum(jnp.sin(o) * _weights(o.shape, o.dtype))
                       for k, o in enumerate(outs) if k not in spec.no_grad_outputs)
        return loss
    return spec, loss_of(custom), loss_of(twin), tuple(jnp.asarray(arrays[i]) for i in diff)


def _argnums(d):
    return tuple(range(len(d)))


@functools.lru_cache(maxsize=None)
def twin_value_and_grad(name, case):
    _, _, loss_twin, d = setup(name, case)
    return jax.jit(jax.value_and_grad(loss_twin, _argnums(d)))


@functools.lru_cache(maxsize=None)
def instances(name, case):
    """The first argument scaled by each factor, and the twin's losses and gradients
    at each, one instance at a time."""
    _, _, _, d = setup(name, case)
    firsts = jnp.stack([d[0] * f for f in FACTORS])
    per = [twin_value_and_grad(name, case)(firsts[k], *d[1:]) for k in range(len(FACTORS))]
    return firsts, sum(v for v, _ in per), jax.tree.map(lambda *g: jnp.stack(g),
                                                        *(g for _, g in per))


def assert_trees_close(got, want, tol=1e-10):
    """Same structure, shapes and dtypes; values within ``tol`` relative (and
    ``tol / 100`` of the largest magnitude absolute: rounding near zero)."""
    leaves_got, leaves_want = jax.tree.leaves(got), jax.tree.leaves(want)
    assert len(leaves_got) == len(leaves_want)
    for g, w in zip(leaves_got, leaves_want):
        assert g.shape == w.shape and g.dtype == w.dtype
        scale = max(1.0, float(jnp.abs(w).max(initial=0)))
        np.testing.assert_allclose(g, w, rtol=tol, atol=1e-2 * tol * scale)


@pytest.mark.parametrize("name, case", CASES)
def test_jit_and_checkpoint(name, case):
    """jit(grad(checkpoint(loss))): the forward re-run inside the backward. (Every
    test here runs under jax.jit; plain jit(grad) is tests/test_ops_gradients.py.)"""
    _, loss, _, d = setup(name, case)
    want = twin_value_and_grad(name, case)(*d)[1]
    assert_trees_close(jax.jit(jax.grad(jax.checkpoint(loss), _argnums(d)))(*d), want)


@pytest.mark.parametrize("name, case", CASES)
def test_vmap_per_example_gradients_equal_a_loop(name, case):
    """vmap over the first argument only, the others shared (unbatched): the
    per-example gradients of every argument equal the twin's, one at a time."""
    _, loss, _, d = setup(name, case)
    firsts, _, want = instances(name, case)
    in_axes = (0,) + (None,) * (len(d) - 1)
    got = jax.jit(jax.vmap(jax.grad(loss, _argnums(d)), in_axes=in_axes))(firsts, *d[1:])
    assert_trees_close(got, want, tol=1e-10)


@pytest.mark.parametrize("name, case", CASES)
def test_scan(name, case):
    _, loss, _, d = setup(name, case)
    firsts, want_total, want = instances(name, case)
    value_and_grad = jax.value_and_grad(loss, _argnums(d))

    def step(total, first):
        value, grads = value_and_grad(first, *d[1:])
        return total + value, grads

    total, got = jax.jit(lambda xs: jax.lax.scan(step, jnp.zeros((), xs.dtype), xs))(firsts)
    assert_trees_close(got, want)
    np.testing.assert_allclose(total, want_total, rtol=1e-12)


@pytest.mark.parametrize("name, case", CASES)
def test_grad_of_grad_hessian_vector_products(name, case):
    """Reverse-over-reverse HVPs in every argument at once equal the twin's: the
    backward rules are themselves differentiable."""
    _, loss, loss_twin, d = setup(name, case)
    directions = tuple(_weights(a.shape, a.dtype)[::-1] for a in d)

    def hvp(loss):
        grad = jax.grad(loss, _argnums(d))
        return jax.grad(lambda *a: sum(jnp.vdot(g, v) for g, v in zip(grad(*a), directions)),
                        _argnums(d))

    with on_cpu():
        want = jax.jit(hvp(loss_twin))(*(np.asarray(a) for a in d))
    assert max(float(jnp.abs(h).max()) for h in want) > 1e-3   # not trivially zero
    assert_trees_close(jax.jit(hvp(loss))(*d), want, tol=1e-9)


@functools.lru_cache(maxsize=None)
def _weighted_vjp(name, case, dtype, rounded_to=None):
    """Forward and VJP of fixed weights in ``dtype``, the arguments first rounded to
    ``rounded_to`` (so float32 sees the very values a low precision run sees)."""
    spec, _, custom, _, arrays, diff = bound(name, case)
    f = fix_others(custom, arrays, diff)
    args = tuple(jnp.asarray(arrays[i]).astype(rounded_to or dtype).astype(dtype) for i in diff)

    def run(*a):
        out, pull = jax.vjp(f, *a)
        g = jax.tree.map(lambda o: _weights(o.shape, o.dtype), out)
        if spec.no_grad_outputs:
            g = tuple(jnp.zeros_like(o) if k in spec.no_grad_outputs else o
                      for k, o in enumerate(g))
        return out, pull(g)
    return args, *jax.jit(run)(*args)


@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float16], ids=["bfloat16", "float16"])
@pytest.mark.parametrize("name, case", CASES)
def test_low_precision_close_to_float32(name, case, dtype):
    """Forward and gradients in bfloat16/float16 stay close to float32 at the same
    (rounded) inputs, and every output and gradient keeps its input's dtype."""
    low, out_low, grads_low = _weighted_vjp(name, case, dtype)
    _, out_32, grads_32 = _weighted_vjp(name, case, jnp.float32, rounded_to=dtype)
    tol = 2e-2 if dtype == jnp.bfloat16 else 2e-3
    highs = jax.tree.leaves((out_32, grads_32))
    # absolute error relative to the largest value anywhere: a gradient that is a sum
    # of cancelling terms (a bias's) carries the rounding of the terms, not of the sum
    scale = max(float(jnp.abs(hi).max()) for hi in highs)
    for lo, hi in zip(jax.tree.leaves((out_low, grads_low)), highs, strict=True):
        assert hi.dtype == jnp.float32 and lo.dtype == dtype
        np.testing.assert_allclose(np.asarray(lo, np.float32), hi, rtol=tol, atol=tol * scale)
    for g, a in zip(grads_low, low, strict=True):
        assert g.dtype == a.dtype == dtype


@pytest.mark.parametrize("name, case", CASES)
def test_forward_mode(name, case):
    """A custom_vjp op refuses jax.jvp / jax.jacfwd with JAX's own error; its twin
    supports them, and its JVP is the directional derivative."""
    spec, _, custom, twin, arrays, diff = bound(name, case)
    f, f_twin = fix_others(custom, arrays, diff), fix_others(twin, arrays, diff)
    d = tuple(jnp.asarray(arrays[i]) for i in diff)
    tangents = tuple(_weights(a.shape, a.dtype) for a in d)
    if spec.custom_rule:    # raised while lowering: jit, so that nothing runs op by op
        message = r"can't apply forward-mode autodiff \(jvp\) to a custom_vjp function"
        with pytest.raises(TypeError, match=message):
            jax.jit(lambda *a: jax.jvp(f, a, tangents)).lower(*d)
        with pytest.raises(TypeError, match=message):
            jax.jit(jax.jacfwd(f)).lower(*d)
    eps = 1e-6

    def jvp_and_difference(*a):
        plus = f_twin(*(x + eps * t for x, t in zip(a, tangents)))
        minus = f_twin(*(x - eps * t for x, t in zip(a, tangents)))
        return (jax.jvp(f_twin, a, tangents),
                jax.tree.map(lambda p, m: (p - m) / (2 * eps), plus, minus))
    (_, tangent_out), expected = jax.jit(jvp_and_difference)(*d)
    for k, (got, want) in enumerate(zip(jax.tree.leaves(tangent_out), jax.tree.leaves(expected),
                                        strict=True)):
        if k in spec.no_grad_outputs:          # stop_gradient-ed in the twin: no tangent
            np.testing.assert_array_equal(got, 0.0)
            continue
        np.testing.assert_allclose(got, want, rtol=1e-6,
                                   atol=1e-8 * max(1.0, float(jnp.abs(want).max())))
    if not spec.custom_rule:       # plain JAX: forward mode works through the op itself
        custom_tangent = jax.jit(lambda *a: jax.jvp(f, a, tangents)[1])(*d)
        assert_trees_close(custom_tangent, tangent_out, tol=1e-12)
