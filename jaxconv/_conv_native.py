"""``impl="native"`` and ``impl="auto"`` of the convolution family.

``native``: the C++ kernels of :mod:`jaxconv._native` as a ``_conv_impls``
triple over the static config ``c``: forward ``F(x, w)``, input_grad ``I(g, w)``
and weight_grad ``W(x, g)``, each one FFI call. They cover 1-D and 2-D
convolutions (1-D runs as 2-D with a height of 1) in float32 and float64, both
layouts, any stride, dilation, per-side padding and groups; conv and
conv_transpose alike, to any order of reverse differentiation (the ops of
``_conv_impls`` differentiate each kernel into the other two). 3-D convolutions
are an error with ``impl="native"``; bfloat16/float16 run the float32 kernels
(``impl="auto"`` leaves them to XLA).

``auto`` (the default): ``native`` where it covers the case and the extension is
built, else ``xla``. The choice between the two is made per platform by
``lax.platform_dependent``: a compile for the CPU runs the native kernels, a
compile for a GPU or TPU only ever sees XLA's convolution.

Forward mode (``jax.jvp``, ``jax.hessian``) does not go through the conv ops'
``custom_vjp`` rules with any impl; use ``jaxconv.reference`` (XLA's convolution)
for it. (The FFI calls themselves have no JVP either: they are only ever
differentiated through those rules.)
"""
from __future__ import annotations

import functools

import jax.numpy as jnp
from jax import lax

from jaxconv import _native
from jaxconv._vjp import custom_vjp_op

DTYPES = (jnp.float32, jnp.float64)


def covers(layout, dtype) -> bool:
    """Whether the native kernels can run this convolution."""
    return layout.ndim in (1, 2) and any(dtype == d for d in DTYPES)


def resolve(op: str, impl: str, layout, dtype) -> str:
    """The impl to record in the config: "auto" becomes "xla" where native cannot run."""
    if impl == "auto":
        return "auto" if covers(layout, dtype) and _native.available() else "xla"
    if impl != "native":
        return impl
    _native.require(op)
    _native.require_cpu(op)
    if layout.ndim not in (1, 2):
        raise ValueError(f"{op}: impl='native' covers 1-D and 2-D convolutions, got a "
                         f"{layout.ndim}-D one (layout={layout.name!r}); use impl='auto' or 'xla'")
    return impl


def _geometry(c):
    """The 2-D geometry keywords of :mod:`_native` (a 1-D conv gets height 1)."""
    win, one = c.window, (c.window.ndim == 1)
    lift = (lambda t, v: (v, *t)) if one else (lambda t, v: tuple(t))
    return dict(stride=lift(win.stride, 1), dilation=lift(win.dilation, 1),
                padding=lift(win.pad, (0, 0)), groups=c.groups,
                layout="NCHW" if c.layout.channels_first else "NHWC")


def _lift(c, a, weight=False):
    """Insert the height-1 axis of a 1-D image or weight (nothing for 2-D)."""
    if c.window.ndim == 2:
        return a
    if weight:
        return a[:, :, None, :] if c.layout.channels_first else a[None]
    return a[:, :, None, :] if c.layout.channels_first else a[:, None, :, :]


def _drop(c, a, weight=False):
    if c.window.ndim == 2:
        return a
    if weight:
        return a[:, :, 0, :] if c.layout.channels_first else a[0]
    return a[:, :, 0, :] if c.layout.channels_first else a[:, 0, :, :]


def _size2(c, sizes):
    return (1, *sizes) if c.window.ndim == 1 else tuple(sizes)


def _in_float32(kernel):
    """bfloat16/float16 operands run the float32 kernels, the result rounded back once
    (as XLA:CPU computes a half-precision convolution)."""
    @functools.wraps(kernel)
    def run(c, a, b):
        if any(a.dtype == d for d in DTYPES):
            return kernel(c, a, b)
        return kernel(c, a.astype(jnp.float32), b.astype(jnp.float32)).astype(a.dtype)
    return run


@_in_float32
def forward(c, x, w):
    return _drop(c, _native.forward(_lift(c, x), _lift(c, w, True), **_geometry(c)))


@_in_float32
def input_grad(c, g, w):
    dx = _native.input_grad(_lift(c, g), _lift(c, w, True), x_hw=_size2(c, c.window.in_size),
                            **_geometry(c))
    return _drop(c, dx)


@_in_float32
def weight_grad(c, x, g):
    dw = _native.weight_grad(_lift(c, x), _lift(c, g), window=_size2(c, c.window.kernel),
                             **_geometry(c))
    return _drop(c, dw, True)


def _closed(fwd, dx, dw):
    """The FFI kernels as custom_vjp ops closed under reverse differentiation.

    The conv ops' own rules call their impl's raw kernels in ``fwd``, and grad of
    grad differentiates that ``fwd`` again; XLA's convolution is differentiable,
    an FFI call is not. So each native kernel gets the rules of the identities
    ``<F(x, w), g> = <x, I(g, w)> = <w, W(x, g)>`` (each one's VJP is the other
    two, the same rules as ``_conv_impls``' ops), in native kernels again.
    """
    ops = {}

    def op(kernel, rule):
        return custom_vjp_op(kernel, lambda c, a, b: (kernel(c, a, b), (a, b)), rule)

    ops["F"] = op(fwd, lambda c, r, u: (ops["I"](c, u, r[1]), ops["W"](c, r[0], u)))
    ops["I"] = op(dx, lambda c, r, u: (ops["F"](c, u, r[1]), ops["W"](c, u, r[0])))
    ops["W"] = op(dw, lambda c, r, u: (ops["I"](c, r[1], u), ops["F"](c, r[0], u)))
    return ops["F"], ops["I"], ops["W"]


NATIVE = _closed(forward, input_grad, weight_grad)


def on_cpu_else(native_kernel, xla_kernel):
    """A kernel that runs ``native_kernel`` in CPU compiles and ``xla_kernel`` elsewhere."""
    def kernel(c, a, b):
        return lax.platform_dependent(a, b, cpu=functools.partial(native_kernel, c),
                                      default=functools.partial(xla_kernel, c))
    kernel.__name__ = f"auto_{native_kernel.__name__}"
    return kernel
