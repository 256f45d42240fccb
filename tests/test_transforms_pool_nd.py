"""The pooling family under JAX's transformations: vmap (per-example gradients),
lax.scan, jax.checkpoint and grad-of-grad (a Hessian-vector product), all inside one
jit per op, each result compared with the same transformation of the autodiff twin
(float64, <= 1e-10)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxconv as jc
from jaxconv.gradcheck import rel_error


def distinct(seed, *shape):
    """Distinct values in (-2, 2): no ties, and tanh far from saturation."""
    size = int(np.prod(shape))
    return ((np.random.default_rng(seed).permutation(size) / size - 0.5) * 4).reshape(shape)


# op -> (channels-first x shape, arguments after x, hyperparameters)
OPS = {
    "max_pool": ((3, 2, 7, 6), (), dict(pool=3, stride=2, pad=1, dilation=(1, 2),
                                        ceil_mode=True, layout="NHWC")),
    "avg_pool": ((3, 2, 5, 4, 6), (), dict(pool=(2, 3, 2), stride=2, pad=1, ceil_mode=True,
                                           count_include_pad=False)),
    "adaptive_avg_pool": ((3, 2, 7, 5), ((3, 4),), {}),
    "adaptive_max_pool": ((3, 2, 9), (4,), dict(layout="NWC")),
}


def loss_of(op):
    """A nonlinear scalar loss, so that second derivatives are not trivially zero."""
    return lambda x: jnp.sum(jnp.tanh(op(x)) ** 2)


@pytest.mark.parametrize("name", list(OPS))
def test_transforms_equal_the_twins(name):
    shape, args, hyper = OPS[name]
    x = distinct(9, *shape)
    if hyper.get("layout", "NC")[-1] == "C":
        x = np.moveaxis(x, 1, -1)
    custom = lambda a: getattr(jc, name)(a, *args, **hyper)            # noqa: E731
    twin = lambda a: getattr(jc.reference, name)(a, *args, **hyper)    # noqa: E731
    v = np.cos(np.arange(x.size)).reshape(x.shape)

    def transformed(op):
        loss = loss_of(op)
        per_example = jax.vmap(jax.grad(lambda xi: loss(xi[None])))(x)
        step = lambda carry, xi: (carry + loss(xi[None]), jax.grad(  # noqa: E731
            lambda a: loss(a[None]))(xi))
        total, scanned = jax.lax.scan(step, 0.0, x)
        remat = jax.grad(jax.checkpoint(loss))(x)
        hvp = jax.grad(lambda a: jnp.vdot(jax.grad(loss)(a), v))(x)
        return per_example, total, scanned, remat, hvp

    mine, theirs = jax.jit(lambda: (transformed(custom), transformed(twin)))()
    for what, a, b in zip(("vmap", "scan loss", "scan grads", "checkpoint", "grad-of-grad"),
                          mine, theirs):
        assert a.shape == b.shape and a.dtype == b.dtype, what
        assert rel_error(a, b) < 1e-10, (what, rel_error(a, b))
    assert rel_error(mine[0], mine[3]) < 1e-10     # stacked per-example grads: the batch grad
    assert np.abs(mine[4]).max() > 0               # the HVP checks something


def test_forward_mode_raises_and_the_twin_supports_it():
    """Forward mode through a custom_vjp op is JAX's documented limit; the twin works."""
    x = distinct(1, 1, 1, 4, 4)
    with pytest.raises(TypeError, match="can't apply forward-mode autodiff"):
        jax.jvp(lambda a: jc.max_pool(a, pool=2), (x,), (x,))
    out, tangent = jax.jvp(lambda a: jc.reference.avg_pool(a, pool=2), (x,), (np.ones_like(x),))
    np.testing.assert_allclose(tangent, np.ones((1, 1, 2, 2)))
