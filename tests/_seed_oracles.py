"""Oracles from the seeds, in NumPy: CS231n's naive convolution loops and seed
003's im2col_indices / col2im_indices with its printed example."""
import numpy as np


# As written in seed 003, less its divisibility asserts (one of which compares W against field_height), so that
# floor output sizes can be checked too: int((n + 2p - k) / s + 1) already floors.

def get_im2col_indices(x_shape, field_height, field_width, padding=1, stride=1):
    N, C, H, W = x_shape
    out_height = int((H + 2 * padding - field_height) / stride + 1)
    out_width = int((W + 2 * padding - field_width) / stride + 1)

    i0 = np.repeat(np.arange(field_height), field_width)
    i0 = np.tile(i0, C)
    i1 = stride * np.repeat(np.arange(out_height), out_width)
    j0 = np.tile(np.arange(field_width), field_height * C)
    j1 = stride * np.tile(np.arange(out_width), out_height)
    i = i0.reshape(-1, 1) + i1.reshape(1, -1)
    j = j0.reshape(-1, 1) + j1.reshape(1, -1)

    k = np.repeat(np.arange(C), field_height * field_width).reshape(-1, 1)

    return (k.astype(int), i.astype(int), j.astype(int))


def im2col_indices(x, field_height, field_width, padding=1, stride=1):
    p = padding
    x_padded = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)), mode='constant')
    k, i, j = get_im2col_indices(x.shape, field_height, field_width, padding, stride)
    cols = x_padded[:, k, i, j]
    C = x.shape[1]
    cols = cols.transpose(1, 2, 0).reshape(field_height * field_width * C, -1)
    return cols


def col2im_indices(cols, x_shape, field_height=3, field_width=3, padding=1, stride=1):
    N, C, H, W = x_shape
    H_padded, W_padded = H + 2 * padding, W + 2 * padding
    x_padded = np.zeros((N, C, H_padded, W_padded), dtype=cols.dtype)
    k, i, j = get_im2col_indices(x_shape, field_height, field_width, padding, stride)
    cols_reshaped = cols.reshape(C * field_height * field_width, -1, N)
    cols_reshaped = cols_reshaped.transpose(2, 0, 1)
    np.add.at(x_padded, (slice(None), k, i, j), cols_reshaped)
    if padding == 0:
        return x_padded
    return x_padded[:, :, padding:-padding, padding:-padding]


# Seed 003's printed example (In [4]-[6], [8]-[9]): im2col_indices(x, 2, 2, 0, 1) of
# two 1x3x3 images gives 4 rows (KH*KW) and 8 columns, 4 windows x 2 images,
# interleaving the images (column order (Ho, Wo, N)); then of one 1x3x3 image.
SEED_003_TWO_IMAGES = np.array([[[[-0.34385368, 0.04359686, -0.62000084],
                                  [0.69803203, -0.44712856, 1.2245077],
                                  [0.40349164, 0.59357852, -1.09491185]]],
                                [[[0.16938243, 0.74055645, -0.9537006],
                                  [-0.26621851, 0.03261455, -1.37311732],
                                  [0.31515939, 0.84616065, -0.85951594]]]])
SEED_003_TWO_IMAGES_COLS = np.array(
    [[-0.34385368, 0.16938243, 0.04359686, 0.74055645, 0.69803203, -0.26621851,
      -0.44712856, 0.03261455],
     [0.04359686, 0.74055645, -0.62000084, -0.9537006, -0.44712856, 0.03261455,
      1.2245077, -1.37311732],
     [0.69803203, -0.26621851, -0.44712856, 0.03261455, 0.40349164, 0.31515939,
      0.59357852, 0.84616065],
     [-0.44712856, 0.03261455, 1.2245077, -1.37311732, 0.59357852, 0.84616065,
      -1.09491185, -0.85951594]])
SEED_003_ONE_IMAGE = np.array([[[[0.35054598, -1.31228341, -0.03869551],
                                 [-1.61577235, 1.12141771, 0.40890054],
                                 [-0.02461696, -0.77516162, 1.27375593]]]])
SEED_003_ONE_IMAGE_COLS = np.array([[0.35054598, -1.31228341, -1.61577235, 1.12141771],
                                    [-1.31228341, -0.03869551, 1.12141771, 0.40890054],
                                    [-1.61577235, 1.12141771, -0.02461696, -0.77516162],
                                    [1.12141771, 0.40890054, -0.77516162, 1.27375593]])


def naive_conv_forward(x, w, b, stride, pad):
    """CS231n's conv_forward_naive, loops written out (stride/pad as pairs)."""
    (sh, sw), (ph, pw) = stride, pad
    n, c, h, wd = x.shape
    f, _, kh, kw = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    ho, wo = (h + 2 * ph - kh) // sh + 1, (wd + 2 * pw - kw) // sw + 1
    out = np.zeros((n, f, ho, wo))
    for i in range(n):
        for k in range(f):
            for y in range(ho):
                for xx in range(wo):
                    window = xp[i, :, y * sh:y * sh + kh, xx * sw:xx * sw + kw]
                    out[i, k, y, xx] = np.sum(window * w[k]) + b[k]
    return out


def naive_conv_backward(dout, x, w, stride, pad):
    """CS231n's conv_backward_naive, loops written out."""
    (sh, sw), (ph, pw) = stride, pad
    n, c, h, wd = x.shape
    f, _, kh, kw = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    dxp, dw = np.zeros_like(xp), np.zeros_like(w)
    _, _, ho, wo = dout.shape
    for i in range(n):
        for k in range(f):
            for y in range(ho):
                for xx in range(wo):
                    rows, cols = slice(y * sh, y * sh + kh), slice(xx * sw, xx * sw + kw)
                    dw[k] += dout[i, k, y, xx] * xp[i, :, rows, cols]
                    dxp[i, :, rows, cols] += dout[i, k, y, xx] * w[k]
    db = dout.sum(axis=(0, 2, 3))
    return dxp[:, :, ph:ph + h, pw:pw + wd], dw, db
