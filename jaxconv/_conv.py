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

from jaxconv import _checks
from jaxconv._patches import pad_spatial, padded_hw, place_windows, window_slices
from jaxconv._vjp import custom_vjp_op

IMPLS = ("xla", "im2col", "naive")


@dataclasses.dataclass(frozen=True)
class ConvConfig:
    stride: tuple[int, int]
    pad: tuple[int, int]
    layout: str
    impl: str
    x_hw: tuple[int, int]
    window: tuple[int, int]
    out_hw: tuple[int, int]

    @property
    def remainder(self) -> tuple[int, int]:
        """Padded rows/columns past the last window (they get zero gradient)."""
        return tuple(n + 2 * p - ((o - 1) * s + k) for n, p, o, s, k in
                     zip(self.x_hw, self.pad, self.out_hw, self.stride, self.window))


def conv_config(x, w, b, *, stride, pad, layout, impl, op="conv2d"):
    """Validate conv2d's inputs (trace time) and build its static config."""
    layout = _checks.choice(op, "layout", layout, _checks.LAYOUTS)
    impl = _checks.choice(op, "impl", impl, IMPLS)
    x = _checks.array(op, "x", x, ndim=4)
    w = _checks.array(op, "w", w, ndim=4)
    shapes = f"x.shape={tuple(x.shape)}, w.shape={tuple(w.shape)}"
    if layout == "NCHW":
        n_filters, w_channels, kh, kw = w.shape
    else:
        kh, kw, w_channels, n_filters = w.shape
    channels = x.shape[_checks.channel_axis(layout)]
    if channels != w_channels:
        raise ValueError(f"{op}: x has {channels} channels but w expects {w_channels} "
                         f"({shapes}, layout={layout!r})")
    if b is not None:
        b = _checks.array(op, "b", b)
        if tuple(b.shape) != (n_filters,):
            raise ValueError(f"{op}: b must have shape ({n_filters},), one per filter, "
                             f"got b.shape={tuple(b.shape)} ({shapes})")
    _checks.same_dtype(op, x=x, w=w, b=b)
    stride = _checks.pair(op, "stride", stride, minimum=1)
    pad = _checks.pair(op, "pad", pad, minimum=0)
    h_axis, w_axis = _checks.spatial_axes(layout)
    x_hw = (x.shape[h_axis], x.shape[w_axis])
    out_hw = _checks.out_size(op, "kernel", x_hw, (kh, kw), stride, pad, shapes)
    config = ConvConfig(stride, pad, layout, impl, x_hw, (kh, kw), out_hw)
    return x, w, b, config


def _add_bias(out, b, layout):
    if b is None:
        return out
    return out + (b[:, None, None] if layout == "NCHW" else b)


def _bias_grad(g, layout):
    return g.sum(axis=(0, 2, 3) if layout == "NCHW" else (0, 1, 2))


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
    return lax.conv_general_dilated(x, w, c.stride, [(p, p) for p in c.pad],
                                    dimension_numbers=_DIMS[c.layout]["fwd"])


def _xla_backward(c: ConvConfig, x, w, g):
    """dx: the transposed convolution, g spread out by the stride, with the flipped kernel.

    The spreading is the conv's own ``lhs_dilation`` and the padding its own
    ``padding`` argument: measured on XLA:CPU (jax 0.10.2, 64x3x32x32 input, 32
    7x7 filters), a VALID conv over an explicitly ``lax.pad``-ed g is ~20x slower,
    and a polyphase split (stride**2 small stride-1 convs) ~3x slower.
    dw: the correlation of xp with g, g dilated by the stride (``rhs_dilation``).
    """
    h_axis, w_axis = _checks.spatial_axes(c.layout)
    w_flipped = lax.rev(w, (h_axis, w_axis) if c.layout == "NCHW" else (0, 1))
    dx = lax.conv_general_dilated(
        g, w_flipped, (1, 1),
        [(k - 1 - p, k - 1 - p + r) for k, p, r in zip(c.window, c.pad, c.remainder)],
        lhs_dilation=c.stride, dimension_numbers=_DIMS[c.layout]["dx"])
    dw = lax.conv_general_dilated(x, g, (1, 1), [(p, p - r) for p, r in zip(c.pad, c.remainder)],
                                  rhs_dilation=c.stride,
                                  dimension_numbers=_DIMS[c.layout]["dw"])
    return dx, dw


# --- im2col: one matmul over the patch matrix, col2im for dx ------------------
# NCHW patches are (N, C*KH*KW, Ho*Wo) and NHWC patches (N*Ho*Wo, KH*KW*C): in
# each layout the window offsets stack next to the channels, so building them
# and contracting them with w.reshape needs no transposes.

def _patch_matrix(c: ConvConfig, x):
    xp = pad_spatial(x, c.pad, c.layout)
    slices = list(window_slices(xp, c.window, c.stride, c.out_hw, c.layout))
    if c.layout == "NCHW":
        n, ch = x.shape[:2]
        return jnp.stack(slices, axis=2).reshape(n, ch * len(slices), -1)
    return jnp.stack(slices, axis=3).reshape(-1, len(slices) * x.shape[3])


def _weight_matrix(c: ConvConfig, w):
    return w.reshape(w.shape[0], -1) if c.layout == "NCHW" else w.reshape(-1, w.shape[3])


def _im2col_forward(c: ConvConfig, x, w):
    patches, wm = _patch_matrix(c, x), _weight_matrix(c, w)
    if c.layout == "NCHW":
        return jnp.einsum("fk,nkp->nfp", wm, patches).reshape(x.shape[0], -1, *c.out_hw)
    return (patches @ wm).reshape(x.shape[0], *c.out_hw, -1)


def _im2col_backward(c: ConvConfig, x, w, g):
    patches, wm = _patch_matrix(c, x), _weight_matrix(c, w)
    n, kk = x.shape[0], c.window[0] * c.window[1]
    if c.layout == "NCHW":
        gm = g.reshape(n, g.shape[1], -1)                           # (N, F, Ho*Wo)
        dw = jnp.einsum("nfp,nkp->fk", gm, patches).reshape(w.shape)
        dpatches = jnp.einsum("fk,nfp->nkp", wm, gm)                # (N, C*KH*KW, Ho*Wo)
        pieces = jnp.moveaxis(dpatches.reshape(n, x.shape[1], kk, *c.out_hw), 2, 0)
    else:
        gm = g.reshape(-1, g.shape[3])                              # (N*Ho*Wo, F)
        dw = (patches.T @ gm).reshape(w.shape)
        dpatches = gm @ wm.T                                        # (N*Ho*Wo, KH*KW*C)
        pieces = jnp.moveaxis(dpatches.reshape(n, *c.out_hw, kk, x.shape[3]), 3, 0)
    return _col2im(c, pieces), dw


def _col2im(c: ConvConfig, pieces):
    """Scatter-add per-offset pieces into the padded image, then drop the padding."""
    xp = place_windows(pieces, padded_hw(c.x_hw, c.pad), c.window, c.stride, c.layout)
    return pad_spatial(xp, (-c.pad[0], -c.pad[1]), c.layout)


# --- naive: the sums over kernel offsets, one small contraction each ----------
_NAIVE = {"NCHW": ("nchw,fc->nfhw", "nfhw,nchw->fc", "nfhw,fc->nchw"),
          "NHWC": ("nhwc,cf->nhwf", "nhwf,nhwc->cf", "nhwf,cf->nhwc")}


def _kernel_tap(c: ConvConfig, w, i, j):
    return w[:, :, i, j] if c.layout == "NCHW" else w[i, j]


def _taps(c: ConvConfig):
    return [(i, j) for i in range(c.window[0]) for j in range(c.window[1])]


def _naive_forward(c: ConvConfig, x, w):
    slices = window_slices(pad_spatial(x, c.pad, c.layout), c.window, c.stride, c.out_hw, c.layout)
    return sum(jnp.einsum(_NAIVE[c.layout][0], s, _kernel_tap(c, w, i, j))
               for (i, j), s in zip(_taps(c), slices))


def _naive_backward(c: ConvConfig, x, w, g):
    slices = window_slices(pad_spatial(x, c.pad, c.layout), c.window, c.stride, c.out_hw, c.layout)
    taps = [jnp.einsum(_NAIVE[c.layout][1], g, s) for s in slices]      # each (F, C) / (C, F)
    dw = jnp.stack(taps, axis=-1).reshape(*taps[0].shape, *c.window)
    dw = dw if c.layout == "NCHW" else jnp.moveaxis(dw, (2, 3), (0, 1))
    pieces = (jnp.einsum(_NAIVE[c.layout][2], g, _kernel_tap(c, w, i, j)) for i, j in _taps(c))
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
