"""The three convolution kernels of every impl, and their closed custom_vjp ops.

Notation (channels-first; channels-last is the same with the axes moved): a
convolution over ``n`` spatial dims with window geometry ``c.window`` (stride
``s``, dilation ``d``, padding, output size ``O``; see ``_geometry``) and
``G = c.groups`` groups maps x ``(N, C, *I)`` and w ``(F, C // G, *K)`` to
``(N, F, *O)``. Writing ``xp`` for the padded x, ``t`` for a kernel tap and
``f`` a filter of group ``g(f)``::

    F(x, w)[n, f, o]      = sum_{c in g(f), t} w[f, c, t] xp[n, c, s*o + d*t]     forward
    I(g, w)[n, c, s*o+d*t] += sum_{f in g(c)} g[n, f, o] w[f, c, t]              input_grad
    W(x, g)[f, c, t]      = sum_{n, o} g[n, f, o] xp[n, c, s*o + d*t]            weight_grad

(``I`` is the transposed convolution, ``W`` the correlation of x with g.) All
three are bilinear and ``<F(x, w), g> = <x, I(g, w)> = <w, W(x, g)>``, so each
one's vector-Jacobian product is made of the other two::

    F(x, w), cotangent u:  dx = I(u, w)   dw = W(x, u)
    I(g, w), cotangent u:  dg = F(u, w)   dw = W(u, g)
    W(x, g), cotangent u:  dx = I(g, u)   dg = F(x, u)

:data:`forward_op`, :data:`input_grad_op` and :data:`weight_grad_op` are those three
kernels as ``custom_vjp`` ops with exactly these rules: conv (F forward; I, W
backward) and conv_transpose (I forward; F, W backward) are differentiated to
any order by hand-derived rules, whatever the impl. An impl is a :class:`Kernels`
triple over the static config ``c`` (``layout``, ``window``, ``groups``); a new
impl (e.g. native kernels) registers one in :data:`KERNELS`.
"""
from __future__ import annotations

import functools
from typing import Callable, NamedTuple

import jax.numpy as jnp
from jax import lax

from jaxconv import _conv_native
from jaxconv._patches import pad_spatial, place_windows, taps, unpad, window_slices
from jaxconv._vjp import custom_vjp_op


class Kernels(NamedTuple):
    forward: Callable        # (c, x, w) -> out
    input_grad: Callable     # (c, g, w) -> dx
    weight_grad: Callable    # (c, x, g) -> dw


def _swap(spec):
    """A lax dimension spec with its first two entries (batch/feature, out/in) swapped."""
    return (spec[1], spec[0], *spec[2:])


# --- xla: XLA's convolution; input_grad and weight_grad as two more convolutions ---

def _xla_forward(c, x, w):
    win = c.window
    return lax.conv_general_dilated(x, w, win.stride, win.fit_pad, rhs_dilation=win.dilation,
                                    dimension_numbers=c.layout.dimension_numbers,
                                    feature_group_count=c.groups)


def _xla_input_grad(c, g, w):
    """The transposed convolution: g spread out by the stride, the flipped kernel.

    The spreading is the conv's own ``lhs_dilation`` and the padding its own
    ``padding`` argument: measured on XLA:CPU (jax 0.10.2, 64x3x32x32 input, 32
    7x7 filters), a VALID conv over an explicitly ``lax.pad``-ed g is ~20x slower,
    and a polyphase split (stride**2 small stride-1 convs) ~3x slower. With groups,
    each group's filters become the transposed conv's input channels (the filter
    axis split into ``(G, F // G)``, G moved in front of the channels).
    """
    lay, win = c.layout, c.window
    if c.groups > 1:
        o, i = lay.weight_out_axis, lay.weight_in_axis
        w = jnp.moveaxis(w, (o, i), (0, 1))
        f, cg = w.shape[:2]
        w = w.reshape(c.groups, f // c.groups, cg, *w.shape[2:]).swapaxes(0, 1)
        w = jnp.moveaxis(w.reshape(f // c.groups, c.groups * cg, *w.shape[3:]), (0, 1), (o, i))
    lhs, rhs, out = lay.dimension_numbers
    pads = [(d * (k - 1) - lo, d * (k - 1) - hi + r) for k, d, (lo, hi), r in
            zip(win.kernel, win.dilation, win.pad, win.remainder)]
    conv = functools.partial(
        lax.conv_general_dilated, rhs=lax.rev(w, lay.weight_spatial_axes),
        window_strides=(1,) * win.ndim, rhs_dilation=win.dilation,
        dimension_numbers=lax.ConvDimensionNumbers(out, _swap(rhs), lhs),
        feature_group_count=c.groups)
    spread = functools.partial(conv, padding=pads, lhs_dilation=win.stride)
    if g.dtype != jnp.float64 or all(s == 1 for s in win.stride):
        return spread(g)
    return lax.platform_dependent(g, cpu=functools.partial(_spread_by_pad, conv, lay, win, pads),
                                  default=spread)


def _spread_by_pad(conv, lay, win, pads, g):
    """float64 on XLA:CPU: g spread and padded by ``lax.pad`` (interior padding), then a
    plain convolution. jaxlib 0.10.2's XLA:CPU aborts the process compiling some float64
    ``lhs_dilation`` convolutions (README, "Known XLA issue"); this form is the same
    sums and compiles."""
    config = [(0, 0, 0)] * g.ndim
    for axis, (lo, hi), s in zip(lay.spatial_axes, pads, win.stride):
        config[axis] = (lo, hi, s - 1)
    return conv(lax.pad(g, jnp.zeros((), g.dtype), config), padding=[(0, 0)] * win.ndim)


def _xla_weight_grad(c, x, g):
    """The correlation of xp with g, g dilated by the stride (``rhs_dilation``).

    With groups, XLA's own transpose rule makes the groups batch groups of x's
    channels (``batch_group_count``), which XLA:CPU runs ~70-170x slower than the
    same sums as feature groups (depthwise 3x3, 8x16x16x16: 87 ms vs 0.5 ms; 32x32x32x32:
    5.7 s vs 84 ms, one core): so on the CPU x is regrouped, its channels ``(G, C // G)``
    split and ``C // G`` made the batch, ``(G, N)`` the features (one transpose of x),
    and the groups become feature groups. cuDNN is the other way round (on an H200 the
    regrouped form made a depthwise layer's forward+backward 3.2x slower than autodiff's:
    experiments/results/gpu_h200.md), so GPUs and TPUs get the batch groups.
    """
    if c.groups == 1:
        return _weight_grad_batch_groups(c, x, g)
    return lax.platform_dependent(x, g, cpu=functools.partial(_weight_grad_regrouped, c),
                                  default=functools.partial(_weight_grad_batch_groups, c))


def _weight_grad_batch_groups(c, x, g):
    """XLA's own form: x's batch and channels swapped, the groups batch groups."""
    lay, win = c.layout, c.window
    lhs, rhs, out = lay.dimension_numbers
    return lax.conv_general_dilated(
        x, g, win.dilation, _weight_grad_pads(win), rhs_dilation=win.stride,
        dimension_numbers=lax.ConvDimensionNumbers(_swap(lhs), _swap(out), _swap(rhs)),
        batch_group_count=c.groups)


def _weight_grad_regrouped(c, x, g):
    """The groups as feature groups over x regrouped to ``(C // G, G * N, *I)``."""
    lay, win = c.layout, c.window
    _, rhs, out = lay.dimension_numbers
    xt = jnp.moveaxis(x, lay.channel_axis, 0)                       # (C, N, *I)
    xt = xt.reshape(c.groups, -1, *xt.shape[1:]).swapaxes(0, 1)     # (C // G, G, N, *I)
    xt = xt.reshape(xt.shape[0], -1, *xt.shape[3:])                 # (C // G, G * N, *I)
    return lax.conv_general_dilated(
        xt, g, win.dilation, _weight_grad_pads(win), rhs_dilation=win.stride,
        dimension_numbers=lax.ConvDimensionNumbers(tuple(range(x.ndim)), _swap(out), _swap(rhs)),
        feature_group_count=c.groups)


def _weight_grad_pads(win):
    return [(lo, hi - r) for (lo, hi), r in zip(win.pad, win.remainder)]


# --- einsum subscripts shared by im2col and naive ------------------------------------
# Images: "n", the channel letters, the tap "t" when the taps are stacked (after C
# channels-first, before C channels-last) and the spatial letters "xyz". Weights:
# out, in, tap (channels-first) or tap, in, out (channels-last). With groups, the
# channel and filter axes are split into (G, C // G) / (G, F // G): letters "gc", "gf".

def _image(c, channels: str, tap: str = "") -> str:
    space = "xyz"[:c.layout.ndim]
    return f"n{channels}{tap}{space}" if c.layout.channels_first else f"n{space}{tap}{channels}"


def _weight(c, tap: str = "") -> str:
    out, inn = _letters(c)[1], "c"
    return f"{out}{inn}{tap}" if c.layout.channels_first else f"{tap}{inn}{out}"


def _letters(c) -> tuple[str, str]:
    """Channel letters of x and of the output / g."""
    return ("gc", "gf") if c.groups > 1 else ("c", "f")


def _split(c, a, axis):
    """Split ``axis`` into ``(groups, size // groups)`` (nothing with one group)."""
    if c.groups == 1:
        return a
    return a.reshape(*a.shape[:axis], c.groups, a.shape[axis] // c.groups, *a.shape[axis + 1:])


def _merge(c, a, axis):
    """Undo :func:`_split` at ``axis``."""
    if c.groups == 1:
        return a
    return a.reshape(*a.shape[:axis], a.shape[axis] * a.shape[axis + 1], *a.shape[axis + 2:])


def _w_out_axis(c, tap_axis_added: bool) -> int:
    """Out axis of a weight whose spatial axes became one tap axis (or none)."""
    if c.layout.channels_first:
        return 0
    return 2 if tap_axis_added else 1


def _patches(c, x):
    """The tap slices of the padded x stacked next to the channels (axis ``t``)."""
    slices = window_slices(pad_spatial(x, c.window.pad, c.layout), c.window, c.layout)
    return jnp.stack(list(slices), axis=_tap_axis(c))


def _tap_axis(c) -> int:
    return c.layout.channel_axis + (1 if c.layout.channels_first else 0)


def _from_pieces(c, pieces):
    """Scatter-add per-tap pieces into the padded image, then drop the padding."""
    return pad_spatial(place_windows(pieces, c.window, c.layout), unpad(c.window.pad), c.layout)


def _image_channel_axis(c, stacked: bool) -> int:
    """Channel axis of an image, after stacking taps next to it when ``stacked``."""
    return c.layout.channel_axis + (1 if stacked and not c.layout.channels_first else 0)


# --- im2col: every tap stacked, one contraction (a matmul) -------------------------

def _tap_weight(c, w):
    """w with its spatial axes flattened into one tap axis, filters split by group."""
    shape = (*w.shape[:2], c.window.taps) if c.layout.channels_first else (c.window.taps, *w.shape[-2:])
    return _split(c, w.reshape(shape), _w_out_axis(c, True))


def _im2col_forward(c, x, w):
    xc, gc = _letters(c)
    patches = _split(c, _patches(c, x), _image_channel_axis(c, True))
    out = jnp.einsum(f"{_image(c, xc, 't')},{_weight(c, 't')}->{_image(c, gc)}",
                     patches, _tap_weight(c, w))
    return _merge(c, out, c.layout.channel_axis)


def _im2col_input_grad(c, g, w):
    xc, gc = _letters(c)
    g = _split(c, g, c.layout.channel_axis)
    stacked = jnp.einsum(f"{_image(c, gc)},{_weight(c, 't')}->{_image(c, xc, 't')}",
                         g, _tap_weight(c, w))
    stacked = _merge(c, stacked, _image_channel_axis(c, True))
    return _from_pieces(c, jnp.moveaxis(stacked, _tap_axis(c), 0))


def _im2col_weight_grad(c, x, g):
    xc, gc = _letters(c)
    patches = _split(c, _patches(c, x), _image_channel_axis(c, True))
    g = _split(c, g, c.layout.channel_axis)
    dw = jnp.einsum(f"{_image(c, gc)},{_image(c, xc, 't')}->{_weight(c, 't')}", g, patches)
    dw = _merge(c, dw, _w_out_axis(c, True))
    return dw.reshape(c.layout.weight_shape(dw.shape[_w_out_axis(c, True)],
                                            dw.shape[1], c.window.kernel))


# --- naive: one small contraction per kernel tap, summed ----------------------------

def _tap_of(c, w, tap):
    """``w[..., t]``: the (out, in) matrix of one tap, filters split by group."""
    index = [slice(None)] * w.ndim
    for axis, t in zip(c.layout.weight_spatial_axes, tap):
        index[axis] = t
    return _split(c, w[tuple(index)], _w_out_axis(c, False))


def _naive_forward(c, x, w):
    xc, gc = _letters(c)
    slices = window_slices(pad_spatial(x, c.window.pad, c.layout), c.window, c.layout)
    spec = f"{_image(c, xc)},{_weight(c)}->{_image(c, gc)}"
    out = sum(jnp.einsum(spec, _split(c, s, c.layout.channel_axis), _tap_of(c, w, t))
              for t, s in zip(taps(c.window), slices))
    return _merge(c, out, c.layout.channel_axis)


def _naive_input_grad(c, g, w):
    xc, gc = _letters(c)
    g = _split(c, g, c.layout.channel_axis)
    spec = f"{_image(c, gc)},{_weight(c)}->{_image(c, xc)}"
    pieces = (_merge(c, jnp.einsum(spec, g, _tap_of(c, w, t)), c.layout.channel_axis)
              for t in taps(c.window))
    return _from_pieces(c, pieces)


def _naive_weight_grad(c, x, g):
    xc, gc = _letters(c)
    g = _split(c, g, c.layout.channel_axis)
    slices = window_slices(pad_spatial(x, c.window.pad, c.layout), c.window, c.layout)
    spec = f"{_image(c, gc)},{_image(c, xc)}->{_weight(c)}"
    per_tap = [_merge(c, jnp.einsum(spec, g, _split(c, s, c.layout.channel_axis)),
                      _w_out_axis(c, False)) for s in slices]
    dw = jnp.stack(per_tap, axis=2 if c.layout.channels_first else 0)
    out_axis = _w_out_axis(c, True)
    return dw.reshape(c.layout.weight_shape(dw.shape[out_axis], dw.shape[1], c.window.kernel))


KERNELS: dict[str, Kernels] = {
    "xla": Kernels(_xla_forward, _xla_input_grad, _xla_weight_grad),
    "im2col": Kernels(_im2col_forward, _im2col_input_grad, _im2col_weight_grad),
    "naive": Kernels(_naive_forward, _naive_input_grad, _naive_weight_grad),
    # C++ through XLA's FFI (_conv_native); "auto" is native in CPU compiles, else xla.
    "native": Kernels(*_conv_native.NATIVE),
}
KERNELS["auto"] = Kernels(*map(_conv_native.on_cpu_else, KERNELS["native"], KERNELS["xla"]))


# --- the three kernels as closed custom_vjp ops --------------------------------------

def _image_shape(c, n, channels, spatial):
    shape = [n] * c.layout.rank
    shape[c.layout.channel_axis] = channels
    for axis, size in zip(c.layout.spatial_axes, spatial):
        shape[axis] = size
    return tuple(shape)


def _forward_shape(c, x, w):
    return _image_shape(c, x.shape[0], w.shape[c.layout.weight_out_axis], c.window.out_size)


def _input_grad_shape(c, g, w):
    channels = w.shape[c.layout.weight_in_axis] * c.groups
    return _image_shape(c, g.shape[0], channels, c.window.in_size)


def _weight_grad_shape(c, x, g):
    ch = c.layout.channel_axis
    return c.layout.weight_shape(g.shape[ch], x.shape[ch] // c.groups, c.window.kernel)


def _kernel(name: str, shape: Callable):
    """Run impl ``c.impl``'s kernel ``name``; a zero-size operand makes every sum
    empty, so the result is zeros (XLA's degenerate convolutions are avoided)."""
    def run(c, a, b):
        if a.size == 0 or b.size == 0:
            return jnp.zeros(shape(c, a, b), a.dtype)
        return getattr(KERNELS[c.impl], name)(c, a, b)
    run.__name__ = name
    return run


forward = _kernel("forward", _forward_shape)
input_grad = _kernel("input_grad", _input_grad_shape)
weight_grad = _kernel("weight_grad", _weight_grad_shape)


# Each op's fwd calls the op itself (not the bare kernel), so that differentiating a
# fwd -- which reverse-over-reverse does -- meets a custom rule again at every order.
forward_op = custom_vjp_op(forward, lambda c, a, b: (forward_op(c, a, b), (a, b)),
                           lambda c, r, u: (input_grad_op(c, u, r[1]), weight_grad_op(c, r[0], u)))
input_grad_op = custom_vjp_op(input_grad, lambda c, a, b: (input_grad_op(c, a, b), (a, b)),
                              lambda c, r, u: (forward_op(c, u, r[1]), weight_grad_op(c, u, r[0])))
weight_grad_op = custom_vjp_op(weight_grad, lambda c, a, b: (weight_grad_op(c, a, b), (a, b)),
                               lambda c, r, u: (input_grad_op(c, r[1], u), forward_op(c, r[0], u)))
