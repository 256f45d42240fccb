"""Gradient checking: is a hand-derived backward equal to autodiff's?

The measure is CS231n's relative error, ``max |a - b| / max(1e-8, |a| + |b|)``.
Three sources of gradients are compared: a ``custom_vjp`` rule, plain JAX autodiff
of a reference implementation, and centered finite differences.

Checking your own op::

    import jax, jax.numpy as jnp
    from jaxconv.gradcheck import check_vjp

    @jax.custom_vjp
    def softplus(x):
        return jnp.logaddexp(x, 0.0)

    def softplus_fwd(x):
        return softplus(x), x

    def softplus_bwd(x, g):
        return (g * jax.nn.sigmoid(x),)        # d/dx log(1 + e^x) = sigmoid(x)

    softplus.defvjp(softplus_fwd, softplus_bwd)

    def softplus_ref(x):                       # same function, autodiff only
        return jnp.logaddexp(x, 0.0)

    check_vjp(softplus, softplus_ref, jnp.linspace(-3.0, 3.0, 7))  # raises if wrong

``check_vjp`` compares the forward outputs and the VJPs of several random
cotangents and raises an ``AssertionError`` naming the argument, the worst
element and both values when they disagree.
"""
from __future__ import annotations

import inspect

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

__all__ = ["rel_error", "numerical_grad", "numerical_vjp", "compare", "check_vjp"]

# Custom rule vs autodiff: no finite differences, so only rounding separates them.
# Values chosen like JAX's own test tolerances, loosened for reassociated sums.
_TOLERANCES = {  # dtype: (rtol, atol)
    np.dtype("float64"): (1e-9, 1e-12),
    np.dtype("float32"): (1e-4, 1e-6),
    np.dtype(jnp.bfloat16): (5e-2, 1e-2),
    np.dtype("float16"): (1e-2, 1e-3),
}


def rel_error(a, b) -> float:
    """CS231n's relative error: ``max(|a - b| / max(1e-8, |a| + |b|))``."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape:
        raise ValueError(f"rel_error: shapes differ, a.shape={a.shape}, b.shape={b.shape}")
    if a.size == 0:
        return 0.0
    return float(np.max(np.abs(a - b) / np.maximum(1e-8, np.abs(a) + np.abs(b))))


def _centered_differences(scalar_f, x, h):
    """``d scalar_f / dx`` by centered differences, all perturbations batched."""
    x = jnp.asarray(x)
    flat = x.reshape(-1)

    def partial(i):
        step = jnp.zeros_like(flat).at[i].set(h).reshape(x.shape)
        return (scalar_f(x + step) - scalar_f(x - step)) / (2 * h)

    slopes = jax.lax.map(jax.jit(partial), jnp.arange(flat.size), batch_size=64)
    return slopes.reshape(x.shape).astype(x.dtype)


def numerical_grad(f, x, *, h=1e-5):
    """Centered-difference gradient of a scalar function ``f`` at ``x``.

    ``(f(x + h e_i) - f(x - h e_i)) / 2h`` for every element ``i``; evaluate in
    float64 for errors around ``h**2``. ``f`` must be traceable by JAX.
    """
    return _centered_differences(lambda z: jnp.asarray(f(z)).reshape(()), x, h)


def numerical_vjp(f, x, dout, *, h=1e-5):
    """Centered-difference vector-Jacobian product: the gradient of ``sum(f(x) * dout)``."""
    dout = jnp.asarray(dout)
    return _centered_differences(lambda z: jnp.sum(f(z) * dout), x, h)


def _is_float(a) -> bool:
    return hasattr(a, "dtype") and jnp.issubdtype(a.dtype, jnp.floating)


def _cotangent_like(tree, key):
    """Random normal cotangents for every floating leaf (zeros for integer outputs)."""
    leaves, treedef = jax.tree.flatten(tree)
    keys = jax.random.split(key, len(leaves))
    return treedef.unflatten([
        jax.random.normal(k, leaf.shape, leaf.dtype) if _is_float(leaf)
        else jnp.zeros(leaf.shape, leaf.dtype)
        for k, leaf in zip(keys, leaves)])


def compare(name: str, *args, h: float | None = None, seed: int = 0, **hyper):
    """Largest relative errors of ``jaxconv.<name>``'s custom gradients.

    For each floating argument that gets a gradient, the VJP of the custom op
    against (a) ``jax.vjp`` of ``jaxconv.reference.<name>`` and (b) centered
    differences of the twin, all with one random cotangent drawn from
    ``jax.random.key(seed)`` (never from the data); outputs that carry no gradient
    by contract (batch_norm's running statistics) get a zero cotangent. ``name`` is
    any op of the registry (``jaxconv._registry``), which says which positional
    arguments are arrays and which are static (im2col's ``kh, kw``).
    Run it in float64 (``jax_enable_x64``): in float32 the rounding error of the
    differences is ``~1e-7 / h``, so the default step ``h`` is 1e-5 for float64
    and 1e-2 for lower precisions, and numerical errors of a few 1e-2 are normal.

    Returns:
      ``{argument name: {"autodiff": err, "numerical": err}}``.
    """
    import jaxconv
    from jaxconv import _registry
    spec = _registry.spec(name)
    # the ops as jaxconv and jaxconv.reference hold them now (a patched op is checked)
    custom, twin, arrays = spec.bind(args, hyper, op=getattr(jaxconv, name),
                                     twin=getattr(jaxconv.reference, name))
    names = spec.array_names(args)
    arrays = [None if a is None else jnp.asarray(a) for a in arrays]
    argnums = [i for i, a in enumerate(arrays) if _is_float(a) and names[i] in spec.grads]
    cotangent = _cotangent_like(jax.eval_shape(twin, *arrays), jax.random.key(seed))
    if spec.no_grad_outputs:   # finite differences would see them: no cotangent
        cotangent = tuple(jnp.zeros_like(c) if k in spec.no_grad_outputs else c
                          for k, c in enumerate(cotangent))

    def of_diff(f):            # f as a function of the differentiated arrays only
        return _registry.fix_others(f, arrays, argnums)

    def pullback(f):
        return jax.jit(lambda *diff: jax.vjp(of_diff(f), *diff)[1](cotangent))

    diff = [arrays[i] for i in argnums]
    g_custom, g_auto = pullback(custom)(*diff), pullback(twin)(*diff)
    flat, unravel = ravel_pytree(diff)

    def scalar_ref(z):         # <twin(arrays), cotangent> as a function of all of them
        outs = jax.tree.leaves(of_diff(twin)(*unravel(z)))
        return sum(jnp.sum(o * c) for o, c in zip(outs, jax.tree.leaves(cotangent), strict=True))
    step = h if h is not None else _default_step(flat.dtype)
    g_num = unravel(_centered_differences(scalar_ref, flat, step))
    return {names[i]: {"autodiff": rel_error(c, a), "numerical": rel_error(c, n)}
            for i, c, a, n in zip(argnums, g_custom, g_auto, g_num)}


def _default_step(dtype) -> float:
    return 1e-5 if np.dtype(dtype) == np.float64 else 1e-2


def _default_tolerance(dtype):
    return _TOLERANCES.get(np.dtype(dtype), _TOLERANCES[np.dtype("float32")])


def _assert_close(what, a, b, rtol, atol):
    """Raise naming ``what``, the worst element and both values."""
    a64, b64 = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a64.shape != b64.shape:
        raise AssertionError(f"{what}: shapes differ, f gives {a64.shape}, f_ref {b64.shape}")
    if a64.size == 0:
        return 0.0
    excess = np.abs(a64 - b64) - (atol + rtol * np.abs(b64))
    excess = np.where(np.isnan(a64) != np.isnan(b64), np.inf, np.nan_to_num(excess, nan=-1.0))
    worst = np.unravel_index(np.argmax(excess), a64.shape)
    if excess[worst] > 0:
        raise AssertionError(
            f"{what}: worst element at index {tuple(int(i) for i in worst)}: "
            f"f gives {float(a64[worst])!r}, f_ref gives {float(b64[worst])!r} "
            f"(|diff| = {abs(a64[worst] - b64[worst]):.3g}; rtol={rtol}, atol={atol}; "
            f"rel_error over the array {rel_error(a64, b64):.3g})")
    return rel_error(a64, b64)


def check_vjp(f, f_ref, *args, argnums=None, dtype=None, rtol=None, atol=None,
              num_cotangents: int = 3, seed: int = 0):
    """Check that ``f``'s VJP (e.g. a hand-written ``custom_vjp``) equals ``f_ref``'s.

    Args:
      f: the function under test.
      f_ref: a reference with the same signature and outputs, e.g. the plain
        ``jnp`` version differentiated by autodiff.
      *args: the point to check at.
      argnums: which positional arguments to differentiate; default all floating ones.
      dtype: cast the floating arguments to this dtype first (e.g. ``jnp.float64``).
      rtol, atol: tolerances; default by dtype (float64 1e-9, float32 1e-4,
        bfloat16 5e-2, float16 1e-2 relative).
      num_cotangents: how many random cotangents to pull back.

    Returns:
      ``{argument name or index: worst rel_error}`` over all cotangents.

    Raises:
      AssertionError: a forward output or a gradient is over tolerance; the
        message names the argument, the worst element and both values.
    """
    args = [jnp.asarray(a, dtype) if dtype is not None and _is_float(jnp.asarray(a))
            else a for a in args]
    if argnums is None:
        argnums = tuple(i for i, a in enumerate(args) if _is_float(a))
    argnums = (argnums,) if isinstance(argnums, int) else tuple(argnums)
    try:
        names = list(inspect.signature(f_ref).parameters)
    except (TypeError, ValueError):
        names = []
    label = {i: (repr(names[i]) if i < len(names) else f"#{i}") for i in argnums}

    def tol(a):
        default = _default_tolerance(a.dtype)
        return (default[0] if rtol is None else rtol, default[1] if atol is None else atol)

    out, out_ref = f(*args), f_ref(*args)
    for k, (o, o_ref) in enumerate(zip(jax.tree.leaves(out), jax.tree.leaves(out_ref),
                                       strict=True)):
        _assert_close(f"check_vjp: forward output #{k}", o, o_ref, *tol(o_ref))

    _, vjp = jax.vjp(lambda *a: f(*a), *args)
    _, vjp_ref = jax.vjp(lambda *a: f_ref(*a), *args)
    worst = {}
    for t, key in enumerate(jax.random.split(jax.random.key(seed), num_cotangents)):
        cotangent = jax.tree.map(
            lambda o, k: jax.random.normal(k, o.shape, o.dtype) if _is_float(o)
            else np.zeros(o.shape, jax.dtypes.float0),
            out_ref, _split_like(out_ref, key))
        grads, grads_ref = vjp(cotangent), vjp_ref(cotangent)
        for i in argnums:
            err = _assert_close(f"check_vjp: gradient of argument {label[i]} (argnum {i}), "
                                f"cotangent #{t}", grads[i], grads_ref[i], *tol(args[i]))
            worst[names[i] if i < len(names) else i] = max(
                err, worst.get(names[i] if i < len(names) else i, 0.0))
    return worst


def _split_like(tree, key):
    leaves, treedef = jax.tree.flatten(tree)
    return treedef.unflatten(list(jax.random.split(key, len(leaves))))
