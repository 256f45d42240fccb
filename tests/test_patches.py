"""im2col / col2im against the seeds' fancy-indexing versions (seed 003), and
col2im as the exact adjoint of im2col."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxconv as jc
from _seed_oracles import (SEED_003_ONE_IMAGE, SEED_003_ONE_IMAGE_COLS, SEED_003_TWO_IMAGES,
                           SEED_003_TWO_IMAGES_COLS, col2im_indices, im2col_indices)
from _util import randn

# (x shape, kh, kw, stride, pad): square and non-square windows, strides that
# overlap, tile and skip, with and without a floor in the output size.
CONFIGS = [
    ((2, 3, 5, 5), 3, 3, 1, 1),      # the classic 3x3 "same" conv
    ((2, 2, 6, 7), 2, 3, 2, 0),      # tiles in H, overlaps in W
    ((3, 2, 7, 6), 3, 2, 2, 1),      # overlaps in H, tiles in W, padded
    ((2, 1, 8, 7), 3, 3, 2, 0),      # floor: (8 - 3) / 2 -> the last row is never read
    ((1, 2, 8, 8), 2, 2, 3, 1),      # floor with padding: x's last row/column unread
    ((1, 2, 6, 6), 1, 1, 3, 0),      # 1x1 window skipping rows and columns
    ((2, 2, 4, 5), 2, 2, 1, 2),      # padding wider than the window
]


@pytest.mark.parametrize("shape, kh, kw, stride, pad", CONFIGS)
def test_im2col_col2im_match_seed_and_are_adjoint(shape, kh, kw, stride, pad):
    x = randn(20, *shape)
    # jitted: one compile per configuration instead of one per primitive
    cols = jax.jit(lambda x: jc.im2col(x, kh, kw, stride=stride, pad=pad))(x)
    expected = im2col_indices(x, kh, kw, padding=pad, stride=stride)
    assert cols.shape == expected.shape and cols.dtype == jnp.float64
    np.testing.assert_array_equal(cols, expected)
    c = randn(21, *expected.shape)
    back = jax.jit(lambda c: jc.col2im(c, shape, kh, kw, stride=stride, pad=pad))(c)
    assert back.shape == shape and back.dtype == jnp.float64
    np.testing.assert_allclose(back, col2im_indices(c, shape, kh, kw, padding=pad, stride=stride),
                               rtol=1e-13, atol=1e-14)
    # the adjoint identity <im2col(x), c> == <x, col2im(c)>
    np.testing.assert_allclose(np.vdot(np.asarray(cols), c), np.vdot(x, np.asarray(back)),
                               rtol=1e-12)


def test_seed_003_example():
    """Seed 003, In [4]-[6] and [8]-[9]: the printed matrices, digit for digit."""
    np.testing.assert_array_equal(jc.im2col(SEED_003_TWO_IMAGES, 2, 2, stride=1, pad=0),
                                  SEED_003_TWO_IMAGES_COLS)
    np.testing.assert_array_equal(jc.im2col(SEED_003_ONE_IMAGE, 2, 2), SEED_003_ONE_IMAGE_COLS)


def test_overlapping_patches_add_up():
    # each pixel of a 3x3 image is covered by 1, 2 or 4 of the 2x2 windows (stride 1).
    ones = np.ones((4, 4))
    np.testing.assert_array_equal(jc.col2im(ones, (1, 1, 3, 3), 2, 2)[0, 0],
                                  [[1, 2, 1], [2, 4, 2], [1, 2, 1]])
    # with pad 1 the windows also cover the border; whatever lands there is dropped.
    ones = np.ones((4, 16))
    np.testing.assert_array_equal(jc.col2im(ones, (1, 1, 3, 3), 2, 2, pad=1)[0, 0],
                                  np.full((3, 3), 4.0))


def test_pair_stride_and_pad_match_window_loops():
    """The seed takes one stride and pad; pairs are checked window by window."""
    x = randn(24, 2, 2, 6, 5)
    (sh, sw), (ph, pw), kh, kw = (2, 1), (0, 1), 3, 2
    cols = np.asarray(jc.im2col(x, kh, kw, stride=(sh, sw), pad=(ph, pw)))
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    ho, wo = (6 - kh) // sh + 1, (5 + 2 * pw - kw) // sw + 1
    assert cols.shape == (2 * kh * kw, ho * wo * 2)
    for y in range(ho):
        for xx in range(wo):
            for n in range(2):
                window = xp[n, :, y * sh:y * sh + kh, xx * sw:xx * sw + kw]
                np.testing.assert_array_equal(cols[:, (y * wo + xx) * 2 + n], window.reshape(-1))


def test_jit_and_dtypes():
    x = randn(25, 2, 2, 5, 5).astype(np.float32)
    f = jax.jit(lambda x: jc.im2col(x, 3, 3, stride=2, pad=1))
    cols = f(x)
    assert cols.dtype == jnp.float32
    np.testing.assert_array_equal(cols, im2col_indices(x, 3, 3, padding=1, stride=2))
    back = jax.jit(lambda c: jc.col2im(c, x.shape, 3, 3, stride=2, pad=1))(cols)
    assert back.dtype == jnp.float32 and back.shape == x.shape
    assert jc.im2col(x.astype(jnp.bfloat16), 3, 3).dtype == jnp.bfloat16
