"""``impl="native"`` and ``impl="auto"`` of the convolution family.

``native``: the C++ kernels of :mod:`jaxconv._native` as a ``_conv_impls``
triple over the static config ``c``: forward ``F(x, w)``, input_grad ``I(g, w)``
and weight_grad ``W(x, g)``, each one FFI call. They cover 1-D, 2-D and 3-D
convolutions in float32 and float64, both layouts, any stride, dilation,
per-side padding and groups; conv and conv_transpose alike, to any order of
reverse differentiation (the ops of ``_conv_impls`` differentiate each kernel
into the other two). 1-D runs as 2-D with a height of 1; 3-D as one 2-D kernel
call per depth tap ``kd`` on the depth-strided slices of the input, the output
depths merged into the batch (below). bfloat16/float16 run the float32 kernels
(``impl="auto"`` leaves them to XLA).

3-D by depth taps (depth stride ``s``, dilation ``d``, low pad ``lo``, ``D_o``
output depths; ``xp`` x padded in depth; ``F2``, ``I2``, ``W2`` the 2-D kernels over
height and width, with the output depths ``o`` as batch)::

    F(x, w)[:, :, o]           = sum_kd F2(xp[:, :, s o + d kd], w[:, :, kd])
    I(g, w)[:, :, s o + d kd] += I2(g[:, :, o], w[:, :, kd])     (then cropped by the pads)
    W(x, g)[:, :, kd]          = W2(xp[:, :, s o + d kd], g[:, :, o])   (summed over o too)

the three sums of the 3-D definitions (``_conv_impls``) with the depth sum taken
outside the kernel: the same three bilinear maps, so the rules below still hold.

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
    return layout.ndim in (1, 2, 3) and any(dtype == d for d in DTYPES)


def resolve(op: str, impl: str, layout, dtype) -> str:
    """The impl to record in the config: "auto" becomes "xla" where native cannot run."""
    if impl == "auto":
        return "auto" if covers(layout, dtype) and _native.available() else "xla"
    if impl != "native":
        return impl
    _native.require(op)
    _native.require_cpu(op)
    if layout.ndim not in (1, 2, 3):
        raise ValueError(f"{op}: impl='native' covers 1-D, 2-D and 3-D convolutions, got a "
                         f"{layout.ndim}-D one (layout={layout.name!r}); use impl='auto' or 'xla'")
    return impl


def _size2(c, sizes, one=1):
    """Per-dim values of the kernels' two dims: a 1-D conv gets a height of ``one``, a
    3-D one keeps height and width (the depth is summed outside the kernels)."""
    return (one, *sizes) if c.window.ndim == 1 else tuple(sizes)[-2:]


def _fit(c):
    """``(pads, crops)`` of the kernels' two dims. The kernels count the windows that
    fit in ``lo + size + hi``; where conv_transpose's output_pad reaches a whole stride
    the window has fewer, so they get the window's ``fit_pad`` (the high pad less the
    whole strides no window reads), and a high pad that this makes negative as rows of
    x cropped instead (rows no window reads: their dx is zero)."""
    fitted = _size2(c, c.window.fit_pad, (0, 0))
    return tuple((lo, max(hi, 0)) for lo, hi in fitted), tuple(max(-hi, 0) for _, hi in fitted)


def _geometry(c):
    """The 2-D geometry keywords of :mod:`_native`."""
    win = c.window
    return dict(stride=_size2(c, win.stride), dilation=_size2(c, win.dilation),
                padding=_fit(c)[0], groups=c.groups,
                layout="NCHW" if c.layout.channels_first else "NHWC")


def _spatial2(c, a, edit):
    """``a`` (a lifted image) after ``edit(a, axis, crop)`` for each kernel dim with a crop."""
    first = 2 if c.layout.channels_first else 1
    for k, crop in enumerate(_fit(c)[1]):
        if crop:
            a = edit(a, first + k, crop)
    return a


def _crop(c, x):
    return _spatial2(c, x, lambda a, axis, crop: lax.slice_in_dim(a, 0, a.shape[axis] - crop,
                                                                   axis=axis))


def _pad_axis(a, axis, lo, hi, interior=0):
    """``a`` zero-padded along one axis (negative pads crop)."""
    config = [(0, 0, 0)] * a.ndim
    config[axis] = (lo, hi, interior)
    return lax.pad(a, jnp.zeros((), a.dtype), config)


def _uncrop(c, dx):
    return _spatial2(c, dx, lambda a, axis, crop: _pad_axis(a, axis, 0, crop))


def _lift(c, a, weight=False):
    """Insert the height-1 axis of a 1-D image or weight (nothing for 2-D, or for the
    2-D pieces of a 3-D one)."""
    if c.window.ndim != 1:
        return a
    if weight:
        return a[:, :, None, :] if c.layout.channels_first else a[None]
    return a[:, :, None, :] if c.layout.channels_first else a[:, None, :, :]


def _drop(c, a, weight=False):
    if c.window.ndim != 1:
        return a
    if weight:
        return a[:, :, 0, :] if c.layout.channels_first else a[0]
    return a[:, :, 0, :] if c.layout.channels_first else a[:, 0, :, :]


def _in_float32(kernel):
    """bfloat16/float16 operands run the float32 kernels, the result rounded back once
    (as XLA:CPU computes a half-precision convolution)."""
    @functools.wraps(kernel)
    def run(c, a, b):
        if any(a.dtype == d for d in DTYPES):
            return kernel(c, a, b)
        return kernel(c, a.astype(jnp.float32), b.astype(jnp.float32)).astype(a.dtype)
    return run


def _forward2(c, x, w):
    return _drop(c, _native.forward(_crop(c, _lift(c, x)), _lift(c, w, True), **_geometry(c)))


def _input_grad2(c, g, w):
    x_hw = tuple(n - crop for n, crop in zip(_size2(c, c.window.in_size), _fit(c)[1]))
    dx = _native.input_grad(_lift(c, g), _lift(c, w, True), x_hw=x_hw, **_geometry(c))
    return _drop(c, _uncrop(c, dx))


def _weight_grad2(c, x, g):
    dw = _native.weight_grad(_crop(c, _lift(c, x)), _lift(c, g),
                             window=_size2(c, c.window.kernel), **_geometry(c))
    return _drop(c, dw, True)


# --- 3-D: one 2-D kernel call per depth tap (module docstring) ------------------------

class _Depth:
    """The depth geometry of a 3-D config, images held depth-major: (N, D, C, H, W)
    channels-first (moved there), (N, D, H, W, C) channels-last (as they are)."""

    def __init__(self, c):
        win = c.window
        self.c, self.first = c, c.layout.channels_first
        self.lo, self.taps = win.pad[0][0], win.kernel[0]
        self.stride, self.dilation, self.out = win.stride[0], win.dilation[0], win.out_size[0]
        # the high pad that ends the padded depth at the last window's end (the
        # window's own high pad less what no window reads, or more for an overhang)
        self.hi = (self.out - 1) * self.stride + win.span[0] - self.lo - win.in_size[0]
        self.span = (self.out - 1) * self.stride + 1    # depths one tap's slice spans

    def major(self, a):
        return jnp.moveaxis(a, 2, 1) if self.first else a

    def minor(self, a):
        return jnp.moveaxis(a, 1, 2) if self.first else a

    def tap_slices(self, x):
        """Per depth tap kd, (N D_o, ...) of the padded x at depths s o + d kd."""
        xp = _pad_axis(self.major(x), 1, self.lo, self.hi)
        for kd in range(self.taps):
            start = kd * self.dilation
            part = lax.slice_in_dim(xp, start, start + self.span, self.stride, axis=1)
            yield part.reshape(-1, *part.shape[2:])

    def weight_tap(self, w, kd):
        return w[:, :, kd] if self.first else w[kd]

    def batch(self, a):
        """g (N, F, D_o, ...) as (N D_o, F, ...)."""
        a = self.major(a)
        return a.reshape(-1, *a.shape[2:])

    def unbatch(self, a, n):
        return a.reshape(n, self.out, *a.shape[1:])


def _by_depth_taps(kernel2):
    """The kernel: ``kernel2`` for 1-D and 2-D configs, the decorated sum over depth
    taps (given the config's :class:`_Depth`) for 3-D ones."""
    def decorate(kernel3):
        @functools.wraps(kernel3)
        def run(c, a, b):
            return kernel2(c, a, b) if c.window.ndim < 3 else kernel3(_Depth(c), a, b)
        return _in_float32(run)
    return decorate


@_by_depth_taps(_forward2)
def forward(depth, x, w):
    parts = [_forward2(depth.c, part, depth.weight_tap(w, kd))
             for kd, part in enumerate(depth.tap_slices(x))]
    return depth.minor(depth.unbatch(sum(parts[1:], parts[0]), x.shape[0]))


@_by_depth_taps(_input_grad2)
def input_grad(depth, g, w):
    gb = depth.batch(g)
    reach = depth.lo + depth.c.window.in_size[0] + depth.hi     # the padded input's depth
    padded = 0
    for kd in range(depth.taps):
        part = depth.unbatch(_input_grad2(depth.c, gb, depth.weight_tap(w, kd)), g.shape[0])
        start = kd * depth.dilation      # spread to depths s o + d kd of the padded input
        padded = padded + _pad_axis(part, 1, start, reach - start - depth.span,
                                    depth.stride - 1)
    return depth.minor(_pad_axis(padded, 1, -depth.lo, -depth.hi))


@_by_depth_taps(_weight_grad2)
def weight_grad(depth, x, g):
    gb = depth.batch(g)
    taps = [_weight_grad2(depth.c, part, gb) for part in depth.tap_slices(x)]
    return jnp.stack(taps, axis=2 if depth.first else 0)


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
