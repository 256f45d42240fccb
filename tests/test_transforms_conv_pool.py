"""conv2d and the pools under JAX's transformations: vmap (per-example gradients),
lax.scan, jax.checkpoint, grad-of-grad, low precision, and the forward-mode error.
Every check runs under jax.jit; each result is compared with the autodiff twin or
a loop."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxconv as jc
from jaxconv.gradcheck import rel_error
from _util import randn

CONV = dict(stride=2, pad=1)
POOL = dict(pool=3, stride=2)

# name -> (custom op, twin); conv ops take (x, w, b), pools (x,).
OPS = {
    "conv-xla": (functools.partial(jc.conv2d, impl="xla", **CONV),
                 functools.partial(jc.reference.conv2d, **CONV)),
    "conv-im2col": (functools.partial(jc.conv2d, impl="im2col", **CONV),
                    functools.partial(jc.reference.conv2d, **CONV)),
    "conv-naive": (functools.partial(jc.conv2d, impl="naive", **CONV),
                   functools.partial(jc.reference.conv2d, **CONV)),
    "max_pool": (functools.partial(jc.max_pool2d, **POOL),
                 functools.partial(jc.reference.max_pool2d, **POOL)),
    "avg_pool": (functools.partial(jc.avg_pool2d, **POOL),
                 functools.partial(jc.reference.avg_pool2d, **POOL)),
}
NAMES = list(OPS)

X = randn(50, 3, 2, 7, 6)
W, B = randn(51, 3, 2, 3, 3), randn(52, 3)


def args_of(name):
    return (X, W, B) if name.startswith("conv") else (X,)


def loss_fn(op):
    """A nonlinear scalar loss, so that second derivatives are not trivially zero."""
    return lambda *a: jnp.sum(jnp.tanh(op(*a)) ** 2)


def assert_trees_close(a, b, tol=1e-10):
    leaves_a, leaves_b = jax.tree.leaves(a), jax.tree.leaves(b)
    assert len(leaves_a) == len(leaves_b)
    for la, lb in zip(leaves_a, leaves_b):
        assert la.shape == lb.shape and la.dtype == lb.dtype
        assert rel_error(la, lb) < tol, rel_error(la, lb)


@pytest.mark.parametrize("name", NAMES)
def test_vmap_per_example_grads_equal_a_loop(name):
    op, _ = OPS[name]
    is_conv = name.startswith("conv")

    def per_example(op):
        # gradient with respect to the parameters (conv) or the example (pools)
        def loss(xi, *params):
            return loss_fn(op)(xi[None], *params)
        return jax.grad(loss, (1, 2) if is_conv else 0)

    params = (W, B) if is_conv else ()
    batched = jax.jit(jax.vmap(per_example(op), in_axes=(0,) + (None,) * len(params)))(X, *params)
    single = jax.jit(per_example(op))
    looped = [single(X[i], *params) for i in range(X.shape[0])]
    stacked = jax.tree.map(lambda *g: jnp.stack(g), *looped)
    assert_trees_close(batched, stacked, tol=1e-12)
    assert jax.tree.leaves(batched)[0].shape[0] == X.shape[0]


# scan and checkpoint act on the custom_vjp wiring, shared by all impls, so they run
# on a sample of the ops; vmap, grad-of-grad and bfloat16 run every impl.
@pytest.mark.parametrize("name", ["conv-im2col", "max_pool", "avg_pool"])
def test_scan(name):
    op, twin = OPS[name]
    if name.startswith("conv"):
        # a 3-layer residual stack sharing one conv shape: stride 1, pad 1 keeps H, W
        impl = name.removeprefix("conv-")
        ws, bs = randn(54, 3, 2, 2, 3, 3) * 0.3, randn(55, 3, 2)

        def model(conv):
            def f(x, ws, bs):
                def step(h, wb):
                    return h + jnp.tanh(conv(h, *wb, pad=1)), None
                h, _ = jax.lax.scan(step, x, (ws, bs))
                return jnp.sum(h ** 2)
            return f
        conv = functools.partial(jc.conv2d, impl=impl)
        got = jax.jit(jax.grad(model(conv), (0, 1, 2)))(X, ws, bs)
        expected = jax.jit(jax.grad(model(jc.reference.conv2d), (0, 1, 2)))(X, ws, bs)
    else:
        xs = randn(53, 3, *X.shape)                             # three steps

        def model(pool):
            def f(xs):
                def step(total, x):
                    return total + loss_fn(pool)(x), None
                return jax.lax.scan(step, 0.0, xs)[0]
            return f
        got = jax.jit(jax.grad(model(op)))(xs)
        expected = jax.jit(jax.grad(model(twin)))(xs)
    assert_trees_close(got, expected)


@pytest.mark.parametrize("name", ["conv-naive", "max_pool"])
def test_checkpoint(name):
    op, twin = OPS[name]
    args = args_of(name)
    argnums = tuple(range(len(args)))
    got = jax.jit(jax.grad(jax.checkpoint(loss_fn(op)), argnums))(*args)
    expected = jax.jit(jax.grad(loss_fn(twin), argnums))(*args)
    assert_trees_close(got, expected)


@pytest.mark.parametrize("name", NAMES)
def test_grad_of_grad_hessian_vector_products(name):
    """Reverse-over-reverse HVPs in every argument at once equal the twin's: the
    backward rules are differentiable."""
    op, twin = OPS[name]
    args = args_of(name)
    vs = tuple(randn(56 + i, *np.shape(a)) for i, a in enumerate(args))
    argnums = tuple(range(len(args)))

    def hvp_rev(op):
        grad = jax.grad(loss_fn(op), argnums)
        return jax.grad(lambda *a: sum(jnp.vdot(g, v) for g, v in zip(grad(*a), vs)), argnums)

    expected = jax.jit(hvp_rev(twin))(*args)
    assert any(float(jnp.abs(h).max()) > 1e-3 for h in expected)   # not trivially zero
    assert_trees_close(jax.jit(hvp_rev(op))(*args), expected, tol=1e-9)


@pytest.mark.parametrize("name, dtype", [(n, jnp.bfloat16) for n in NAMES]
                         + [("conv-xla", jnp.float16), ("max_pool", jnp.float16)])
def test_low_precision_close_to_float32(name, dtype):
    """Forward and gradients in bfloat16/float16 stay close to float32 at the same
    (rounded) inputs, and every gradient has its input's dtype."""
    op, _ = OPS[name]
    low = tuple(jnp.asarray(a, dtype) for a in args_of(name))
    high = tuple(a.astype(jnp.float32) for a in low)            # same values, float32

    def run(*a):
        out, pull = jax.vjp(op, *a)
        return out, pull(jnp.ones_like(out))
    out_lo, grads_lo = jax.jit(run)(*low)
    out_hi, grads_hi = jax.jit(run)(*high)
    assert out_lo.dtype == dtype
    tol = 2e-2 if dtype == jnp.bfloat16 else 2e-3
    for lo, hi in zip((out_lo, *grads_lo), (out_hi, *grads_hi), strict=True):
        assert hi.dtype == jnp.float32
        scale = float(jnp.abs(hi).max())
        np.testing.assert_allclose(np.asarray(lo, np.float32), hi, rtol=tol, atol=tol * scale)
    for g, a in zip(grads_lo, low):
        assert g.dtype == a.dtype == dtype


@pytest.mark.parametrize("name", ["conv-xla", "max_pool", "avg_pool"])
def test_forward_mode_raises_jax_error_and_reference_works(name):
    op, twin = OPS[name]
    args = args_of(name)
    tangents = tuple(randn(60 + i, *np.shape(a)) for i, a in enumerate(args))
    message = r"can't apply forward-mode autodiff \(jvp\) to a custom_vjp function"
    with pytest.raises(TypeError, match=message):
        jax.jvp(op, args, tangents)
    with pytest.raises(TypeError, match=message):
        jax.jacfwd(op)(*args)
    # the twin supports forward mode, and its JVP is the directional derivative:
    # conv is bilinear (d conv = conv(dx, w) + conv(x, dw) + db), avg pool linear,
    # max pool linear on each piece (compared with a centered difference).
    out, tangent_out = jax.jvp(twin, args, tangents)
    np.testing.assert_allclose(out, op(*args), rtol=1e-12, atol=1e-12)
    if name.startswith("conv"):
        x, w, b = args
        tx, tw, tb = tangents
        expected = twin(tx, w, tb) + twin(x, tw, None)
    elif name == "avg_pool":
        expected = twin(tangents[0])
    else:
        x, t, eps = args[0], tangents[0], 1e-7
        expected = (twin(x + eps * t) - twin(x - eps * t)) / (2 * eps)
    np.testing.assert_allclose(tangent_out, expected, rtol=1e-6, atol=1e-8)
