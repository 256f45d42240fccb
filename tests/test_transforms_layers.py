"""Every layer op of this family under jit, vmap (per-example gradients), scan,
checkpoint, grad-of-grad and bfloat16, against the autodiff twins.

Each op is wrapped as a scalar function ``f(ops, *args)`` (``ops`` is ``jaxconv``
or ``jaxconv.reference``); ``DIFF`` names the arguments differentiated. One
"instance" of the arguments is one example (or, for batch norm, one small batch);
``B`` instances are stacked for vmap and scan and compared with a Python loop
over the twin's gradients.
"""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxconv as jc
from _util import randn

B = 3


def _weights(shape, dtype):
    """A fixed, non-trivial upstream gradient built from the shape alone."""
    size = int(np.prod(shape))
    return jnp.cos(jnp.arange(size, dtype=jnp.float32) * 0.7).reshape(shape).astype(dtype)


def _weighted(out):
    return jnp.sum(out * _weights(out.shape, out.dtype))


def _away(x):
    return np.sign(x) * (0.2 + np.abs(x))


SPECS = {
    # name: (make_args(seed) -> args, f(ops, *args) -> scalar, argnums differentiated)
    "affine": (lambda s: (randn(s, 1, 3, 2), randn(s + 1, 6, 4), randn(s + 2, 4)),
               lambda ops, x, w, b: _weighted(ops.affine(x, w, b)), (0, 1, 2)),
    "relu": (lambda s: (_away(randn(s, 1, 5)),),
             lambda ops, x: _weighted(ops.relu(x)), (0,)),
    "batch_norm-train": (
        lambda s: (randn(s, 4, 3), randn(s + 1, 3), randn(s + 2, 3), randn(s + 3, 3),
                   0.5 + np.abs(randn(s + 4, 3))),
        lambda ops, *a: _weighted(ops.batch_norm(*a, train=True)[0]), (0, 1, 2)),
    "batch_norm-eval": (
        lambda s: (randn(s, 2, 3, 2, 2), randn(s + 1, 3), randn(s + 2, 3), randn(s + 3, 3),
                   0.5 + np.abs(randn(s + 4, 3))),
        lambda ops, *a: _weighted(ops.batch_norm(*a, train=False)[0]), (0, 1, 2, 3, 4)),
    "layer_norm": (lambda s: (randn(s, 1, 2, 3), randn(s + 1, 2, 3), randn(s + 2, 2, 3)),
                   lambda ops, *a: _weighted(ops.layer_norm(*a)), (0, 1, 2)),
    "group_norm": (lambda s: (randn(s, 1, 2, 2, 4), randn(s + 1, 4), randn(s + 2, 4)),
                   lambda ops, *a: _weighted(ops.group_norm(*a, groups=2, layout="NHWC")),
                   (0, 1, 2)),
    "dropout": (lambda s: (randn(s, 1, 6), jax.random.key(s)),
                lambda ops, x, key: _weighted(ops.dropout(x, key, keep_prob=0.6)), (0,)),
    "softmax_loss": (lambda s: (2 * randn(s, 1, 4), np.array([s % 4])),
                     lambda ops, s, y: ops.softmax_loss(s, y), (0,)),
    # Scores within 0.4 of each other: every margin active, far from the kink.
    "svm_loss": (lambda s: (0.1 * randn(s, 1, 4).clip(-2, 2), np.array([s % 4])),
                 lambda ops, s, y: ops.svm_loss(s, y), (0,)),
}
NAMES = list(SPECS)


def _args(name, seed=0, dtype=None):
    args = SPECS[name][0](seed)
    return tuple(jnp.asarray(a, dtype) if dtype is not None and isinstance(a, np.ndarray)
                 and a.dtype.kind == "f" else jnp.asarray(a) if isinstance(a, np.ndarray)
                 else a for a in args)


def _stacked(name):
    instances = [_args(name, seed) for seed in range(10, 10 + B)]
    return instances, jax.tree.map(lambda *a: jnp.stack(a), *instances)


@functools.lru_cache(maxsize=None)
def _grad(name, reference):
    _, f, diff = SPECS[name]
    ops = jc.reference if reference else jc
    return jax.grad(functools.partial(f, ops), argnums=diff)


@functools.lru_cache(maxsize=None)
def _twin_grad(name):
    """The twin's gradient, jitted once per op (one compile beats op-by-op dispatch)."""
    return jax.jit(_grad(name, True))


@functools.lru_cache(maxsize=None)
def _loop_reference(name):
    """Per-instance twin gradients, in a Python loop."""
    instances, _ = _stacked(name)
    per = [_twin_grad(name)(*a) for a in instances]
    return [np.stack([p[k] for p in per]) for k in range(len(per[0]))]


def assert_close(got, want, rtol=1e-10):
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert g.dtype == w.dtype
        np.testing.assert_allclose(np.asarray(g), np.asarray(w), rtol=rtol, atol=1e-12)


@pytest.mark.parametrize("name", NAMES)
def test_jit(name):
    args = _args(name)
    assert_close(jax.jit(_grad(name, False))(*args), _twin_grad(name)(*args))


@pytest.mark.parametrize("name", NAMES)
def test_vmap_per_example_gradients(name):
    _, stacked = _stacked(name)
    got = jax.jit(jax.vmap(_grad(name, False)))(*stacked)
    assert_close(got, _loop_reference(name))


@pytest.mark.parametrize("name", NAMES)
def test_scan(name):
    _, stacked = _stacked(name)
    grad = _grad(name, False)

    def body(total, args):
        return total + SPECS[name][1](jc, *args), grad(*args)

    total, got = jax.jit(lambda s: jax.lax.scan(body, 0.0, s))(stacked)
    assert_close(got, _loop_reference(name))
    instances, _ = _stacked(name)
    want_total = sum(jax.jit(functools.partial(SPECS[name][1], jc.reference))(*a)
                     for a in instances)
    np.testing.assert_allclose(total, want_total, rtol=1e-12)


@pytest.mark.parametrize("name", NAMES)
def test_checkpoint(name):
    _, f, diff = SPECS[name]
    args = _args(name)
    remat = jax.grad(jax.checkpoint(functools.partial(f, jc)), argnums=diff)
    assert_close(jax.jit(remat)(*args), _twin_grad(name)(*args))


@pytest.mark.parametrize("name", NAMES)
def test_grad_of_grad(name):
    args = _args(name)
    diff = SPECS[name][2]
    directions = [_weights(args[i].shape, args[i].dtype)[::-1] for i in diff]

    def second(reference):
        def directional(*a):       # <grad f, v>: its gradient is the Hessian times v
            grads = _grad(name, reference)(*a)
            return sum(jnp.vdot(g, v) for g, v in zip(grads, directions))
        return jax.grad(directional, argnums=diff)

    got, want = jax.jit(second(False))(*args), jax.jit(second(True))(*args)
    assert_close(got, want, rtol=1e-9)
    if name in ("batch_norm-train", "layer_norm", "softmax_loss"):
        assert max(float(jnp.abs(w).max()) for w in want) > 1e-3   # a real second order


@pytest.mark.parametrize("name", NAMES)
def test_bfloat16_close_to_float32(name):
    _, f, diff = SPECS[name]
    args16, args32 = _args(name, dtype=jnp.bfloat16), _args(name, dtype=jnp.float32)
    value16, grads16 = jax.jit(jax.value_and_grad(functools.partial(f, jc), argnums=diff))(*args16)
    value32, grads32 = jax.jit(jax.value_and_grad(functools.partial(f, jc.reference),
                                                  argnums=diff))(*args32)
    assert value16.dtype == jnp.bfloat16
    np.testing.assert_allclose(np.float32(value16), value32,
                               rtol=2e-2, atol=2e-2 * max(1.0, float(jnp.abs(value32))))
    for i, g16, g32 in zip(diff, grads16, grads32):
        assert g16.dtype == jnp.bfloat16 == args16[i].dtype
        scale = float(jnp.abs(g32).max())
        np.testing.assert_allclose(np.asarray(g16, np.float32), g32, atol=3e-2 * max(scale, 1e-3))
