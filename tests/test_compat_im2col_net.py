"""jaxconv.compat.im2col_net (seed 003) and the seeds' im2col_indices / col2im_indices
column order, against seed 003's printed numbers and its NumPy code copied as oracle."""
import numpy as np
import pytest

from jaxconv.compat import im2col_net
from jaxconv.compat.cs231n import (col2im_indices, eval_numerical_gradient_array,
                                   im2col_indices, rel_error)


from _seed_oracles import (SEED_003_ONE_IMAGE, SEED_003_ONE_IMAGE_COLS, SEED_003_TWO_IMAGES,
                           SEED_003_TWO_IMAGES_COLS)
from _seed_oracles import col2im_indices as seed_col2im_indices
from _seed_oracles import im2col_indices as seed_im2col_indices


def seed_conv_forward(X, W, b, stride=1, padding=1):
    """Seed 003's conv_forward with its bias line enabled (b of shape (F, 1))."""
    n_filters, d_filter, h_filter, w_filter = W.shape
    n_x, d_x, h_x, w_x = X.shape
    h_out = int((h_x - h_filter + 2 * padding) / stride + 1)
    w_out = int((w_x - w_filter + 2 * padding) / stride + 1)
    X_col = seed_im2col_indices(X, h_filter, w_filter, padding=padding, stride=stride)
    out = W.reshape(n_filters, -1) @ X_col + b
    out = out.reshape(n_filters, h_out, w_out, n_x).transpose(3, 0, 1, 2)
    return out, X_col


def seed_conv_backward(dout, X, W, X_col, stride, padding):
    n_filter, d_filter, h_filter, w_filter = W.shape
    db = np.sum(dout, axis=(0, 2, 3)).reshape(n_filter, -1)
    dout_reshaped = dout.transpose(1, 2, 3, 0).reshape(n_filter, -1)
    dW = (dout_reshaped @ X_col.T).reshape(W.shape)
    dX_col = W.reshape(n_filter, -1).T @ dout_reshaped
    dX = seed_col2im_indices(dX_col, X.shape, h_filter, w_filter, padding=padding, stride=stride)
    return dX, dW, db


# --- seed 003's printed example ----------------------------------------------------------

def test_seed_003_printed_examples():
    """Two 1x3x3 images, 2x2 field, pad 0, stride 1: a 4x8 matrix whose columns
    interleave the images (column order (H', W', N)); then one image."""
    cols = im2col_indices(SEED_003_TWO_IMAGES, 2, 2, 0, 1)
    assert cols.shape == (4, 8) and cols.dtype == np.float64
    np.testing.assert_array_equal(cols, SEED_003_TWO_IMAGES_COLS)   # a rearrangement: exact
    np.testing.assert_array_equal(cols, seed_im2col_indices(SEED_003_TWO_IMAGES, 2, 2, 0, 1))
    np.testing.assert_array_equal(im2col_indices(SEED_003_ONE_IMAGE, 2, 2, 0, 1),
                                  SEED_003_ONE_IMAGE_COLS)


IM2COL_CASES = [  # x shape, field_height, field_width, padding, stride
    ((2, 3, 4, 4), 3, 3, 1, 1),
    ((3, 2, 5, 7), 3, 2, 1, 2),
    ((1, 1, 6, 6), 2, 2, 0, 2),
    ((2, 2, 5, 5), 1, 1, 0, 1),
    ((2, 1, 4, 5), 3, 3, 2, 3),
]


@pytest.mark.parametrize("shape,fh,fw,pad,stride", IM2COL_CASES)
def test_im2col_col2im_match_seed_oracle(shape, fh, fw, pad, stride):
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape)
    cols = im2col_indices(x, field_height=fh, field_width=fw, padding=pad, stride=stride)
    np.testing.assert_array_equal(cols, seed_im2col_indices(x, fh, fw, pad, stride))
    c = rng.standard_normal(cols.shape)
    np.testing.assert_allclose(col2im_indices(c, shape, fh, fw, pad, stride),
                               seed_col2im_indices(c, shape, fh, fw, pad, stride),
                               rtol=1e-14, atol=1e-14)


def test_im2col_integer_input_keeps_its_dtype():
    x = np.arange(1, 37).reshape(2, 2, 3, 3)
    cols = im2col_indices(x, 2, 2, 1, 1)
    assert cols.dtype == x.dtype
    np.testing.assert_array_equal(cols, seed_im2col_indices(x, 2, 2, 1, 1))


# --- conv_forward / conv_backward --------------------------------------------------------

@pytest.mark.parametrize("stride,padding", [(1, 1), (2, 0), (1, 0)])
def test_conv_matches_seed(stride, padding):
    rng = np.random.default_rng(1)
    X = rng.standard_normal((2, 2, 5, 5))
    W = rng.standard_normal((3, 2, 3, 3))
    b = rng.standard_normal((3, 1))
    out, cache = im2col_net.conv_forward(X, W, b, stride=stride, padding=padding)
    want, X_col = seed_conv_forward(X, W, b, stride, padding)
    np.testing.assert_allclose(out, want, rtol=1e-12, atol=1e-12)
    for held, given in zip(cache[:3], (X, W, b)):                    # the seed's contents,
        np.testing.assert_array_equal(held, given)                   # as copies of its own
        assert not np.shares_memory(held, given)
    assert cache[3:5] == (stride, padding)
    np.testing.assert_array_equal(cache[5], X_col)

    dout = rng.standard_normal(out.shape)
    grads = im2col_net.conv_backward(dout, cache)
    for got, ref in zip(grads, seed_conv_backward(dout, X, W, X_col, stride, padding)):
        assert got.shape == ref.shape and got.dtype == np.float64
        np.testing.assert_allclose(got, ref, rtol=1e-12, atol=1e-12)
    assert grads[2].shape == (3, 1)


@pytest.mark.parametrize("x_shape,stride,padding", [((1, 2, 4, 4), 1, 1), ((1, 2, 5, 5), 2, 0),
                                                    ((1, 2, 4, 4), 1, 0)])
def test_conv_backward_numerical(x_shape, stride, padding):
    # Few outputs per input keep the finite differences' rounding near 1e-10.
    rng = np.random.default_rng(4)
    X = rng.standard_normal(x_shape)
    W = rng.standard_normal((2, 2, 3, 3))
    b = rng.standard_normal((2, 1))
    out, cache = im2col_net.conv_forward(X, W, b, stride=stride, padding=padding)
    dout = rng.standard_normal(out.shape)
    dX, dW, db = im2col_net.conv_backward(dout, cache)
    f = lambda X_, W_, b_: im2col_net.conv_forward(X_, W_, b_, stride, padding)[0]  # noqa: E731
    assert rel_error(dX, eval_numerical_gradient_array(lambda a: f(a, W, b), X, dout)) < 1e-8
    assert rel_error(dW, eval_numerical_gradient_array(lambda a: f(X, a, b), W, dout)) < 1e-8
    assert rel_error(db, eval_numerical_gradient_array(lambda a: f(X, W, a), b, dout)) < 1e-8


def test_seed_003_integer_images_and_flat_bias():
    """The seed's own call: X = np.arange(1, 37) (integers), b of shape (F,)."""
    X = np.arange(1, 37).reshape(2, 2, 3, 3)
    W = np.random.default_rng(2).standard_normal((2, 2, 2, 2))
    b = np.array([0.5, -1.5])
    out, cache = im2col_net.conv_forward(X, W, b, stride=1, padding=1)
    assert out.shape == (2, 2, 4, 4) and out.dtype == np.float64
    want, X_col = seed_conv_forward(X.astype(np.float64), W, b.reshape(2, 1), 1, 1)
    np.testing.assert_allclose(out, want, rtol=1e-12)
    _, _, db = im2col_net.conv_backward(np.ones(out.shape), cache)
    np.testing.assert_array_equal(db, np.full((2, 1), 2 * 4 * 4.0))


def test_float32_stays_float32():
    rng = np.random.default_rng(3)
    X = rng.standard_normal((1, 2, 4, 4)).astype(np.float32)
    W = rng.standard_normal((2, 2, 3, 3)).astype(np.float32)
    b = np.zeros((2, 1), np.float32)
    out, cache = im2col_net.conv_forward(X, W, b)
    grads = im2col_net.conv_backward(np.ones(out.shape, np.float32), cache)
    assert all(a.dtype == np.float32 for a in (out, cache[5], *grads))


def test_invalid_output_dimension_is_an_error():
    X, W, b = np.zeros((1, 1, 4, 4)), np.zeros((1, 1, 3, 3)), np.zeros((1, 1))
    with pytest.raises(ValueError, match="invalid output dimension"):
        im2col_net.conv_forward(X, W, b, stride=2, padding=0)       # (4 - 3) / 2 + 1
    with pytest.raises(ValueError, match="one entry per filter"):
        im2col_net.conv_forward(X, W, np.zeros((2, 1)))
