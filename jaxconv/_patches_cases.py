"""Registry declarations of the patch utilities (``_patches.py``): im2col and col2im.

They are plain JAX (no custom rule): their gradients are autodiff's, checked against
the twins' (a gather and a scatter-add) and against PyTorch's unfold and fold.
"""
import numpy as np

from jaxconv import _patches, reference
from jaxconv._registry import Bench, Case, Invalid, declare, normal

# (x shape, kh, kw, hyperparameters): a padded 3x3 and a strided, floored, non-square one.
GEOMETRIES = (((2, 3, 5, 5), 3, 3, dict(stride=1, pad=1), "3x3 pad 1"),
              ((2, 2, 6, 7), 3, 2, dict(stride=2, pad=(1, 0)), "3x2 stride 2 pad (1, 0) floor"))


def _cols_shape(x_shape, kh, kw, stride, pad):
    (n, c, h, w), (sh, sw), (ph, pw) = x_shape, np.broadcast_to(stride, 2), np.broadcast_to(pad, 2)
    return c * kh * kw, ((h + 2 * ph - kh) // sh + 1) * ((w + 2 * pw - kw) // sw + 1) * n


def _im2col_cases():
    return [Case(what, (normal(k, *shape), kh, kw), hyper, transforms=k == 0)
            for k, (shape, kh, kw, hyper, what) in enumerate(GEOMETRIES)]


def _col2im_cases():
    return [Case(what, (normal(k, *_cols_shape(shape, kh, kw, **hyper)), shape, kh, kw), hyper,
                 transforms=k == 0)
            for k, (shape, kh, kw, hyper, what) in enumerate(GEOMETRIES)]


def _torch_im2col(torch, x, kh, kw, *, stride=1, pad=0):
    cols = torch.nn.functional.unfold(x, (kh, kw), padding=pad, stride=stride)  # (N, CKK, L)
    return cols.permute(1, 2, 0).reshape(cols.shape[1], -1)


def _torch_col2im(torch, cols, x_shape, kh, kw, *, stride=1, pad=0):
    blocks = cols.reshape(cols.shape[0], -1, x_shape[0]).permute(2, 0, 1)      # (N, CKK, L)
    return torch.nn.functional.fold(blocks, tuple(x_shape[2:]), (kh, kw), padding=pad,
                                    stride=stride)


def _shape(quick):
    return (8, 3, 16, 16) if quick else (64, 3, 32, 32)


X = np.zeros((2, 3, 8, 8))
XS = r"x.shape=\(2, 3, 8, 8\)"
COLS = np.zeros((27, 72))          # (C*KH*KW, Ho*Wo*N) for X and a 3x3 window

declare(
    _patches.im2col, reference.im2col, arrays=("x",), grads=("x",), custom_rule=False,
    cases=_im2col_cases,
    bench=lambda quick: [Bench("im2col 3x3", (normal(1, *_shape(quick)), 3, 3), dict(pad=1))],
    torch=_torch_im2col,
    invalid=lambda: [
        Invalid("rank-x", (X[0], 3, 3), {}, ValueError,
                r"im2col: x must be 4-D, got x.shape=\(3, 8, 8\)"),
        Invalid("window-0", (X, 0, 3), {}, ValueError,
                r"im2col: \(kh, kw\) must be >= 1, got \(0, 3\)"),
        Invalid("window-too-large", (X, 9, 3), {}, ValueError,
                r"im2col: window \(kh, kw\) = \(9, 3\) is larger than the padded input \(8, 8\) \(" + XS + r"\)"),
        Invalid("stride-0", (X, 3, 3), dict(stride=0), ValueError, r"im2col: stride must be >= 1"),
        Invalid("pad-negative", (X, 3, 3), dict(pad=-1), ValueError, r"im2col: pad must be >= 0"),
        Invalid("x-int", (X.astype(np.int32), 3, 3), {}, TypeError,
                r"im2col: x must have a floating"),
    ],
)

declare(
    _patches.col2im, reference.col2im, arrays=("cols",), grads=("cols",), custom_rule=False,
    cases=_col2im_cases,
    bench=lambda quick: [Bench("col2im 3x3", (normal(1, *_cols_shape(_shape(quick), 3, 3, 1, 1)),
                                              _shape(quick), 3, 3), dict(pad=1))],
    torch=_torch_col2im,
    invalid=lambda: [
        Invalid("x-shape-rank", (COLS, (3, 8, 8), 3, 3), {}, ValueError,
                r"col2im: x_shape must have 4 entries \(N, C, H, W\), got \(3, 8, 8\)"),
        Invalid("cols-shape", (COLS[:, :70], X.shape, 3, 3), {}, ValueError,
                r"col2im: cols must have shape \(27, 72\) for x_shape=\(2, 3, 8, 8\), kh=3, "
                r"kw=3, stride=1, pad=0, dilation=1, got cols.shape=\(27, 70\)"),
        Invalid("cols-stride", (COLS, X.shape, 3, 3), dict(stride=2), ValueError,
                r"col2im: cols must have shape \(27, 18\)"),
        Invalid("cols-rank", (COLS[None], X.shape, 3, 3), {}, ValueError,
                r"col2im: cols must be 2-D, got cols.shape=\(1, 27, 72\)"),
        Invalid("window-too-large", (COLS, X.shape, 3, 9), {}, ValueError,
                r"col2im: window \(kh, kw\) = \(3, 9\) is larger than the padded input \(8, 8\)"),
        Invalid("pad-negative", (COLS, X.shape, 3, 3), dict(pad=(0, -2)), ValueError,
                r"col2im: pad must be >= 0"),
        Invalid("cols-int", (COLS.astype(np.int32), X.shape, 3, 3), {}, TypeError,
                r"col2im: cols must have a floating dtype"),
    ],
)
