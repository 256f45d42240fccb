"""2-D convolution (cross-correlation, as in CS231n) with hand-derived backwards.

Notation (NCHW; NHWC is the same with the axes moved): x ``(N, C, H, W)``,
w ``(F, C, KH, KW)``, b ``(F,)``, stride ``(sh, sw)``, pad ``(ph, pw)``, xp the
zero-padded x, out/g ``(N, F, Ho, Wo)`` with ``Ho = (H + 2 ph - KH) // sh + 1``::

    out[n, f, y, x] = b[f] + sum_{c, i, j} w[f, c, i, j] * xp[n, c, sh*y + i, sw*x + j]

so, for the upstream gradient g,

    db[f]          = sum_{n, y, x} g[n, f, y, x]
    dw[f, c, i, j] = sum_{n, y, x} g[n, f, y, x] * xp[n, c, sh*y + i, sw*x + j]
    dxp[n, c, u, v] = sum_{f, i, j} g[n, f, y, x] * w[f, c, i, j]  where u = sh*y + i, v = sw*x + j

Rows and columns of xp that no window reaches (the floor in ``Ho``) get zero
gradient. The residuals are x and w only: no impl keeps the patch matrix, which
is ``KH * KW`` times larger than x; the im2col backward rebuilds it.
"""
from __future__ import annotations

import dataclasses

import jax.numpy as jnp
from jax import lax

from jaxconv import _checks, _geometry
from jaxconv._geometry import Layout, Window
from jaxconv._patches import pad_spatial, place_windows, taps, unpad, window_slices
from jaxconv._vjp import custom_vjp_op

IMPLS = ("xla", "im2col", "naive")


@dataclasses.dataclass(frozen=True)
class ConvConfig:
    layout: Layout
    impl: str
    window: Window

    @property
    def stride(self):
        return self.window.stride

    @property
    def pad(self):
        return self.window.pad

    @property
    def remainder(self):
        return self.window.remainder


def conv_config(x, w, b, *, stride, pad, layout, impl, op="conv2d"):
    """Validate conv2d's inputs (trace time) and build its static config."""
    layout = _checks.choice(op, "layout", layout, _geometry.LAYOUTS[2])
    impl = _checks.choice(op, "impl", impl, IMPLS)
    x = _checks.array(op, "x", x, ndim=4)
    w = _checks.array(op, "w", w, ndim=4)
    lay = Layout(layout)
    shapes = f"x.shape={tuple(x.shape)}, w.shape={tuple(w.shape)}"
    n_filters, w_channels = w.shape[lay.weight_out_axis], w.shape[lay.weight_in_axis]
    channels = x.shape[lay.channel_axis]
    if channels != w_channels:
        raise ValueError(f"{op}: x has {channels} channels but w expects {w_channels} "
                         f"({shapes}, layout={layout!r})")
    if b is not None:
        b = _checks.array(op, "b", b)
        if tuple(b.shape) != (n_filters,):
            raise ValueError(f"{op}: b must have shape ({n_filters},), one per filter, "
                             f"got b.shape={tuple(b.shape)} ({shapes})")
    _checks.same_dtype(op, x=x, w=w, b=b)
    window = _geometry.window(op, in_size=lay.spatial(x.shape), kernel=lay.kernel(w.shape),
                              stride=stride, pad=pad, shapes=shapes,
                              outer=x.shape[0] * max(channels, n_filters))
    return x, w, b, ConvConfig(lay, impl, window)


def _add_bias(out, b, layout):
    return out if b is None else out + b.reshape(layout.channel_shape())


def _bias_grad(g, layout):
    return g.sum(axis=tuple(a for a in range(g.ndim) if a != layout.channel_axis))


# The three impls below differ only in how they compute the sums of the module
# docstring; each is a (forward, backward) pair over (x, w) without the bias.

# --- xla: XLA's convolution, backward as two more convolutions ---------------
_DIMS = {  # dimension numbers (lhs, rhs, out) of the forward, dx and dw convs
    "NCHW": {"fwd": ("NCHW", "OIHW", "NCHW"), "dx": ("NCHW", "IOHW", "NCHW"),
             "dw": ("CNHW", "IOHW", "CNHW")},
    "NHWC": {"fwd": ("NHWC", "HWIO", "NHWC"), "dx": ("NHWC", "HWOI", "NHWC"),
             "dw": ("CHWN", "IHWO", "HWNC")},
}


def _xla_forward(c: ConvConfig, x, w):
    return lax.conv_general_dilated(x, w, c.stride, c.pad,
                                    dimension_numbers=_DIMS[c.layout.name]["fwd"])


def _xla_backward(c: ConvConfig, x, w, g):
    """dx: the transposed convolution, g spread out by the stride, with the flipped kernel.

    The spreading is the conv's own ``lhs_dilation`` and the padding its own
    ``padding`` argument: measured on XLA:CPU (jax 0.10.2, 64x3x32x32 input, 32
    7x7 filters), a VALID conv over an explicitly ``lax.pad``-ed g is ~20x slower,
    and a polyphase split (stride**2 small stride-1 convs) ~3x slower.
    dw: the correlation of xp with g, g dilated by the stride (``rhs_dilation``).
    """
    w_flipped = lax.rev(w, c.layout.weight_spatial_axes)
    dx = lax.conv_general_dilated(
        g, w_flipped, (1, 1),
        [(k - 1 - lo, k - 1 - hi + r) for k, (lo, hi), r in zip(c.window.kernel, c.pad, c.remainder)],
        lhs_dilation=c.stride, dimension_numbers=_DIMS[c.layout.name]["dx"])
    dw = lax.conv_general_dilated(x, g, (1, 1), [(lo, hi - r) for (lo, hi), r in zip(c.pad, c.remainder)],
                                  rhs_dilation=c.stride,
                                  dimension_numbers=_DIMS[c.layout.name]["dw"])
    return dx, dw


# --- im2col: one matmul over the patch matrix, col2im for dx ------------------
# NCHW patches are (N, C*KH*KW, Ho*Wo) and NHWC patches (N*Ho*Wo, KH*KW*C): in
# each layout the window offsets stack next to the channels, so building them
# and contracting them with w.reshape needs no transposes.

def _patch_matrix(c: ConvConfig, x):
    xp = pad_spatial(x, c.pad, c.layout)
    slices = list(window_slices(xp, c.window, c.layout))
    if c.layout.name == "NCHW":
        n, ch = x.shape[:2]
        return jnp.stack(slices, axis=2).reshape(n, ch * len(slices), -1)
    return jnp.stack(slices, axis=3).reshape(-1, len(slices) * x.shape[3])


def _weight_matrix(c: ConvConfig, w):
    return w.reshape(w.shape[0], -1) if c.layout.name == "NCHW" else w.reshape(-1, w.shape[3])


def _im2col_forward(c: ConvConfig, x, w):
    patches, wm = _patch_matrix(c, x), _weight_matrix(c, w)
    if c.layout.name == "NCHW":
        return jnp.einsum("fk,nkp->nfp", wm, patches).reshape(x.shape[0], -1, *c.window.out_size)
    return (patches @ wm).reshape(x.shape[0], *c.window.out_size, -1)


def _im2col_backward(c: ConvConfig, x, w, g):
    patches, wm = _patch_matrix(c, x), _weight_matrix(c, w)
    n, kk = x.shape[0], c.window.taps
    if c.layout.name == "NCHW":
        gm = g.reshape(n, g.shape[1], -1)                           # (N, F, Ho*Wo)
        dw = jnp.einsum("nfp,nkp->fk", gm, patches).reshape(w.shape)
        dpatches = jnp.einsum("fk,nfp->nkp", wm, gm)                # (N, C*KH*KW, Ho*Wo)
        pieces = jnp.moveaxis(dpatches.reshape(n, x.shape[1], kk, *c.window.out_size), 2, 0)
    else:
        gm = g.reshape(-1, g.shape[3])                              # (N*Ho*Wo, F)
        dw = (patches.T @ gm).reshape(w.shape)
        dpatches = gm @ wm.T                                        # (N*Ho*Wo, KH*KW*C)
        pieces = jnp.moveaxis(dpatches.reshape(n, *c.window.out_size, kk, x.shape[3]), 3, 0)
    return _col2im(c, pieces), dw


def _col2im(c: ConvConfig, pieces):
    """Scatter-add per-offset pieces into the padded image, then drop the padding."""
    xp = place_windows(pieces, c.window, c.layout)
    return pad_spatial(xp, unpad(c.pad), c.layout)


# --- naive: the sums over kernel offsets, one small contraction each ----------
_NAIVE = {"NCHW": ("nchw,fc->nfhw", "nfhw,nchw->fc", "nfhw,fc->nchw"),
          "NHWC": ("nhwc,cf->nhwf", "nhwf,nhwc->cf", "nhwf,cf->nhwc")}


def _kernel_tap(c: ConvConfig, w, i, j):
    return w[:, :, i, j] if c.layout.name == "NCHW" else w[i, j]


def _taps(c: ConvConfig):
    return taps(c.window)


def _naive_forward(c: ConvConfig, x, w):
    slices = window_slices(pad_spatial(x, c.pad, c.layout), c.window, c.layout)
    return sum(jnp.einsum(_NAIVE[c.layout.name][0], s, _kernel_tap(c, w, i, j))
               for (i, j), s in zip(_taps(c), slices))


def _naive_backward(c: ConvConfig, x, w, g):
    slices = window_slices(pad_spatial(x, c.pad, c.layout), c.window, c.layout)
    taps = [jnp.einsum(_NAIVE[c.layout.name][1], g, s) for s in slices]      # each (F, C) / (C, F)
    dw = jnp.stack(taps, axis=-1).reshape(*taps[0].shape, *c.window.kernel)
    dw = dw if c.layout.name == "NCHW" else jnp.moveaxis(dw, (2, 3), (0, 1))
    pieces = (jnp.einsum(_NAIVE[c.layout.name][2], g, _kernel_tap(c, w, i, j)) for i, j in _taps(c))
    return _col2im(c, pieces), dw


_IMPLS = {"xla": (_xla_forward, _xla_backward),
          "im2col": (_im2col_forward, _im2col_backward),
          "naive": (_naive_forward, _naive_backward)}


def _conv_primal(c: ConvConfig, x, w, b):
    return _add_bias(_IMPLS[c.impl][0](c, x, w), b, c.layout)


def _conv_fwd(c: ConvConfig, x, w, b):
    return _conv_primal(c, x, w, b), (x, w)


def _conv_bwd(c: ConvConfig, residuals, g):
    x, w = residuals
    dx, dw = _IMPLS[c.impl][1](c, x, w, g)
    return dx, dw, _bias_grad(g, c.layout)


_conv = custom_vjp_op(_conv_primal, _conv_fwd, _conv_bwd)


def conv2d(x, w, b=None, *, stride=1, pad=0, layout="NCHW", impl="xla"):
    """2-D convolution (cross-correlation) with a hand-derived backward.

    Args:
      x: ``(N, C, H, W)``, or ``(N, H, W, C)`` with ``layout="NHWC"``.
      w: ``(F, C, KH, KW)``, or ``(KH, KW, C, F)`` with ``layout="NHWC"``.
      b: optional bias ``(F,)``.
      stride, pad: int or ``(h, w)`` pair; zero padding on both sides.
      layout: ``"NCHW"`` (CS231n) or ``"NHWC"``.
      impl: ``"xla"`` (``lax.conv_general_dilated``), ``"im2col"`` (patch matrix +
        one matmul) or ``"naive"`` (one small contraction per kernel offset).

    Returns:
      ``(N, F, Ho, Wo)`` (or ``(N, Ho, Wo, F)``) with
      ``Ho = (H + 2 * pad_h - KH) // stride_h + 1``; rows that do not fit a
      whole window are dropped and get zero gradient.

    Backward (g the upstream gradient, xp the padded x)::

      db = sum_{n,y,x} g        dw[f,c,i,j] = sum_{n,y,x} g[n,f,y,x] xp[n,c,sh y+i,sw x+j]
      dxp[n,c,sh y+i,sw x+j] += sum_f g[n,f,y,x] w[f,c,i,j]    (a transposed convolution)

    Residuals: x and w. Forward mode (``jax.jvp``) is not available through a
    ``custom_vjp``; use ``jaxconv.reference.conv2d`` for it.
    """
    x, w, b, config = conv_config(x, w, b, stride=stride, pad=pad, layout=layout, impl=impl)
    return _conv(config, x, w, b)
