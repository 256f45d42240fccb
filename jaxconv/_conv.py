"""Convolution (cross-correlation, as in CS231n and PyTorch) and transposed
convolution over 1, 2 or 3 spatial dims, with hand-derived backwards.

Notation (channels-first): x ``(N, C, *I)``, w ``(F, C // G, *K)``, b ``(F,)``,
``G`` groups, the window geometry (stride s, dilation d, padding, output size
``O``) of ``_geometry.Window``; xp is the padded x and ``t`` a kernel tap::

    out[n, f, o] = b[f] + sum_{c in group(f), t} w[f, c, t] * xp[n, c, s*o + d*t]

so, for the upstream gradient g (``_conv_impls`` has the three kernels)::

    db = sum_{n, o} g                            the bias gradient
    dw = W(x, g)  (the correlation of xp with g)    weight_grad
    dx = I(g, w)  (the transposed convolution)      input_grad

Padded rows no window reaches (the floor in ``O``) get zero gradient. The
residuals are x and w only: no impl keeps a patch matrix, which is ``prod(K)``
times larger than x; the im2col backward rebuilds it.

The transposed convolution is the adjoint of a convolution: with ``c`` the
config of the convolution from conv_transpose's output back to its input
(``_geometry.transpose_window``), and the very same weight array,
``conv_transpose(x, w) = I(x, w) + b``, and by the adjoint identities of
``_conv_impls``: ``dx = F(g, w)`` (a forward convolution of g) and
``dw = W(g, x)`` (the correlation with the roles of x and g swapped).
"""
from __future__ import annotations

import dataclasses
import math

import jax.numpy as jnp
from jax import lax

from jaxconv import _checks, _conv_native, _geometry
from jaxconv._conv_impls import (KERNELS, forward, forward_op, input_grad, input_grad_op,
                                 weight_grad_op)
from jaxconv._geometry import Layout, Window
from jaxconv._norm import accumulation_dtype
from jaxconv._vjp import custom_vjp_op

IMPLS = tuple(KERNELS)          # at import; validation reads KERNELS, where an impl registers


@dataclasses.dataclass(frozen=True)
class ConvConfig:
    """A convolution's static config; for conv_transpose, that of its adjoint conv."""
    layout: Layout
    window: Window
    groups: int
    impl: str


def _arrays(op, x, w, b, layout, impl, ndim):
    x = _checks.array(op, "x", x)
    lay = _geometry.layout(op, layout, x.shape, ndim=ndim)
    impl = _checks.choice(op, "impl", impl, tuple(KERNELS))
    w = _checks.array(op, "w", w, ndim=lay.rank)
    b = None if b is None else _checks.array(op, "b", b)
    _checks.same_dtype(op, x=x, w=w, b=b)
    return x, w, b, lay, _conv_native.resolve(op, impl, lay, x.dtype)


def _check_bias(op, b, size, what, shapes):
    if b is not None and tuple(b.shape) != (size,):
        raise ValueError(f"{op}: b must have shape ({size},), one per {what}, "
                         f"got b.shape={tuple(b.shape)} ({shapes})")


def conv_config(x, w, b, *, stride=1, pad=0, dilation=1, groups=1, layout=None, impl="auto",
                op="conv", ndim=None):
    """Validate a convolution's inputs (trace time) and build its static config."""
    x, w, b, lay, impl = _arrays(op, x, w, b, layout, impl, ndim)
    shapes = f"x.shape={tuple(x.shape)}, w.shape={tuple(w.shape)}"
    groups = _checks.integer(op, "groups", groups, minimum=1)
    channels, filters = x.shape[lay.channel_axis], w.shape[lay.weight_out_axis]
    per_group = w.shape[lay.weight_in_axis]
    if channels % groups or filters % groups:
        raise ValueError(f"{op}: groups={groups} must divide both the {channels} channels of x "
                         f"and the {filters} filters of w ({shapes}, layout={lay.name!r})")
    if channels != per_group * groups:
        expects = f"{per_group}" if groups == 1 else f"{per_group} per group x {groups} groups"
        raise ValueError(f"{op}: x has {channels} channels but w expects {expects} "
                         f"({shapes}, layout={lay.name!r})")
    _check_bias(op, b, filters, "filter", shapes)
    window = _geometry.window(op, in_size=lay.spatial(x.shape), kernel=lay.kernel(w.shape),
                              stride=stride, dilation=dilation, pad=pad, shapes=shapes,
                              outer=x.shape[0] * max(channels, filters))
    return x, w, b, ConvConfig(lay, window, groups, impl)


def conv_transpose_config(x, w, b, *, stride=1, pad=0, output_pad=0, dilation=1, groups=1,
                          layout=None, impl="auto", op="conv_transpose", ndim=None):
    """Validate a transposed convolution's inputs and build its adjoint conv's config."""
    x, w, b, lay, impl = _arrays(op, x, w, b, layout, impl, ndim)
    shapes = f"x.shape={tuple(x.shape)}, w.shape={tuple(w.shape)}"
    groups = _checks.integer(op, "groups", groups, minimum=1)
    channels, w_channels = x.shape[lay.channel_axis], w.shape[lay.weight_out_axis]
    if channels != w_channels:
        w_is = "(C_in, C_out // groups, *K)" if lay.channels_first else "(*K, C_out // groups, C_in)"
        raise ValueError(f"{op}: x has {channels} channels but w expects {w_channels} "
                         f"(w is {w_is}; {shapes}, layout={lay.name!r})")
    if channels % groups:
        raise ValueError(f"{op}: groups={groups} must divide the {channels} channels of x "
                         f"({shapes}, layout={lay.name!r})")
    out_channels = w.shape[lay.weight_in_axis] * groups
    _check_bias(op, b, out_channels, "output channel", shapes)
    window = _geometry.transpose_window(
        op, in_size=lay.spatial(x.shape), kernel=lay.kernel(w.shape), stride=stride,
        dilation=dilation, pad=pad, output_pad=output_pad, shapes=shapes,
        outer=x.shape[0] * max(channels, out_channels))
    return x, w, b, ConvConfig(lay, window, groups, impl)


def _add_bias(out, b, layout: Layout):
    return out if b is None else out + b.reshape(layout.channel_shape())


def _bias_grad(g, layout: Layout):
    """``sum_{n, o} g``. Channels first, each (n, c) row of pixels is summed by a
    matrix-vector product: XLA:CPU merges chained sums into one reduction over
    (N, H, W) and runs that as a slow windowed reduction (1.9 vs 0.5 ms on
    64x32x32x32, one core). The product accumulates in float32 or wider."""
    if not layout.channels_first:
        return g.sum(axis=tuple(range(g.ndim - 1)))
    rows = g.reshape(g.shape[:2] + (math.prod(g.shape[2:]),))
    sums = jnp.einsum("ncp,p->nc", rows, jnp.ones(rows.shape[2], g.dtype),
                      precision=lax.Precision.HIGHEST,
                      preferred_element_type=accumulation_dtype(g.dtype))
    return sums.sum(axis=0).astype(g.dtype)


# --- the two ops: a bilinear kernel plus a bias ----------------------------------------

def _biased_op(kernel, kernel_op, dx_op, dw_op):
    """``out = kernel(c, x, w) + b`` as a custom_vjp op with ``dx = dx_op(c, g, w)``,
    ``dw = dw_op(c, x, g)``, ``db = sum g``; returns ``(primal, op)``. The fwd uses
    ``kernel_op``, the kernel's closed custom_vjp op, not the bare kernel: grad-of-grad
    differentiates the fwd, and must meet a hand rule there too."""
    def primal(c: ConvConfig, x, w, b):
        return _add_bias(kernel(c, x, w), b, c.layout)

    def fwd(c: ConvConfig, x, w, b):
        return _add_bias(kernel_op(c, x, w), b, c.layout), (x, w)

    def bwd(c: ConvConfig, residuals, g):
        x, w = residuals
        return dx_op(c, g, w), dw_op(c, x, g), _bias_grad(g, c.layout)
    return primal, custom_vjp_op(primal, fwd, bwd)


# conv: forward F; backward I (dx) and W (dw)
_conv_primal, _conv = _biased_op(forward, forward_op, input_grad_op, weight_grad_op)
# conv_transpose: forward I; backward F (dx) and W with x and g swapped (dw)
_conv_transpose_primal, _conv_transpose = _biased_op(
    input_grad, input_grad_op, forward_op, lambda c, x, g: weight_grad_op(c, g, x))


# --- public ops ---------------------------------------------------------------------

def conv(x, w, b=None, *, stride=1, pad=0, dilation=1, groups=1, layout=None, impl="auto"):
    """N-d convolution (cross-correlation, as PyTorch's ``convNd``), hand-derived backward.

    Args:
      x: ``(N, C, *I)`` with 1, 2 or 3 spatial dims, or channels-last ``(N, *I, C)``.
      w: ``(F, C // groups, *K)``, or channels-last ``(*K, C // groups, F)``.
      b: optional bias ``(F,)``.
      stride, dilation: int or one per spatial dim, ``>= 1``.
      pad: int, one int per spatial dim, one ``(low, high)`` pair per spatial dim,
        ``"SAME"`` or ``"VALID"`` (SAME as ``lax.conv_general_dilated``: output
        ``ceil(I / stride)``, the extra row at the end; with stride 1 PyTorch's
        ``padding="same"``). Zero padding.
      groups: divides C and F; ``groups == C`` is the depthwise convolution (with a
        channel multiplier when ``F = k * C``).
      layout: ``"NCW"/"NWC"``, ``"NCHW"/"NHWC"``, ``"NCDHW"/"NDHWC"``; ``None`` is
        channels-first for the rank of x.
      impl: ``"auto"`` (``"native"`` in CPU compiles when it is built and covers
        the case, else ``"xla"``), ``"native"`` (C++ kernels through XLA's FFI: 1-D,
        2-D and 3-D, float32/float64; see ``_conv_native``), ``"xla"``
        (``lax.conv_general_dilated``), ``"im2col"`` (every kernel tap stacked, one
        contraction) or ``"naive"`` (one contraction per tap).

    Returns:
      ``(N, F, *O)`` (or channels-last), ``O = (I + lo + hi - dilation*(K-1) - 1) // stride + 1``;
      rows no window reaches get zero gradient.

    Backward (g the upstream gradient, xp the padded x)::

      db = sum_{n,o} g     dw[f,c,t] = sum_{n,o} g[n,f,o] xp[n,c,s*o + d*t]
      dxp[n,c,s*o + d*t] += sum_{f in group(c)} g[n,f,o] w[f,c,t]   (a transposed convolution)

    dx and dw are themselves custom_vjp ops (``_conv_impls``), so grad-of-grad uses
    hand-derived rules too. Residuals: x and w. Zero-size inputs (N, C or F = 0)
    give empty outputs, or the bias alone where C = 0, as PyTorch.
    """
    x, w, b, c = conv_config(x, w, b, stride=stride, pad=pad, dilation=dilation, groups=groups,
                             layout=layout, impl=impl)
    return _conv(c, x, w, b)


def fixed_conv(ndim: int, default_layout: str, finish, doc: str):
    """``conv{ndim}d``: conv's signature and validation with the rank fixed, then
    ``finish(config, x, w, b, pad)`` (the op here, the autodiff twin in ``reference``)."""
    name = f"conv{ndim}d"

    def op(x, w, b=None, *, stride=1, pad=0, dilation=1, groups=1, layout=default_layout,
           impl="auto"):
        x, w, b, c = conv_config(x, w, b, stride=stride, pad=pad, dilation=dilation,
                                 groups=groups, layout=layout, impl=impl, op=name, ndim=ndim)
        return finish(c, x, w, b, pad)
    return named(op, name, doc.format(name=name, ndim=ndim, rank=ndim + 2,
                                      layouts=_geometry.LAYOUTS[ndim], layout=default_layout))


def named(fn, name: str, doc: str):
    """``fn`` as the public function ``name`` (the rank-fixed ops and their twins)."""
    fn.__name__ = fn.__qualname__ = name
    fn.__doc__ = doc
    return fn


FIXED_LAYOUTS = ((1, "NCW"), (2, "NCHW"), (3, "NCDHW"))   # rank, default layout
_DOC = ("{ndim}-D :func:`{family}`: x must be {rank}-D, layout one of {layouts} "
        "(default {layout!r}).")
conv1d, conv2d, conv3d = (
    fixed_conv(n, layout, lambda c, x, w, b, pad: _conv(c, x, w, b),
               _DOC.replace("{family}", "conv")) for n, layout in FIXED_LAYOUTS)


def conv_transpose(x, w, b=None, *, stride=1, pad=0, output_pad=0, dilation=1, groups=1,
                   layout=None, impl="auto"):
    """N-d transposed convolution (PyTorch's ``conv_transposeNd``), hand-derived backward.

    Args:
      x: ``(N, C_in, *I)``, or channels-last ``(N, *I, C_in)``.
      w: ``(C_in, C_out // groups, *K)`` as PyTorch's, or channels-last
        ``(*K, C_out // groups, C_in)`` -- the weight of the convolution whose
        adjoint this is.
      b: optional bias ``(C_out,)``.
      stride, dilation: int or one per spatial dim.
      pad: int or one int per spatial dim (cropped from both ends, as PyTorch), or one
        ``(low, high)`` pair per spatial dim (cropped from each end on its own); no
        ``"SAME"``/``"VALID"``.
      output_pad: int or one per dim, added at the high end; smaller than stride or
        dilation in each dim (as PyTorch).
      groups, layout, impl: as :func:`conv`.

    Returns:
      ``(N, C_out, *O)`` with ``O = (I - 1) * stride - lo - hi + dilation * (K - 1)
      + output_pad + 1``.

    Backward: the transposed convolution is the adjoint of the convolution ``F`` from
    its output back to its input, ``out = I(x, w) + b``; so ``dx = F(g, w)`` (a plain
    convolution of g), ``dw = W(g, x)`` (the correlation, g and x in each other's
    roles), ``db = sum g``. Residuals: x and w.
    """
    x, w, b, c = conv_transpose_config(x, w, b, stride=stride, pad=pad, output_pad=output_pad,
                                       dilation=dilation, groups=groups, layout=layout,
                                       impl=impl)
    return _conv_transpose(c, x, w, b)


def fixed_conv_transpose(ndim: int, default_layout: str, finish, doc: str):
    """``conv_transpose{ndim}d``, as :func:`fixed_conv`; ``finish(config, x, w, b,
    output_pad)``."""
    name = f"conv_transpose{ndim}d"

    def op(x, w, b=None, *, stride=1, pad=0, output_pad=0, dilation=1, groups=1,
           layout=default_layout, impl="auto"):
        x, w, b, c = conv_transpose_config(x, w, b, stride=stride, pad=pad,
                                           output_pad=output_pad, dilation=dilation,
                                           groups=groups, layout=layout, impl=impl, op=name,
                                           ndim=ndim)
        return finish(c, x, w, b, output_pad)
    return named(op, name, doc.format(name=name, ndim=ndim, rank=ndim + 2,
                                      layouts=_geometry.LAYOUTS[ndim], layout=default_layout))


conv_transpose1d, conv_transpose2d, conv_transpose3d = (
    fixed_conv_transpose(n, layout, lambda c, x, w, b, output_pad: _conv_transpose(c, x, w, b),
                         _DOC.replace("{family}", "conv_transpose"))
    for n, layout in FIXED_LAYOUTS)
