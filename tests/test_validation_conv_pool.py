"""Bad input to conv2d, the pools and im2col/col2im (SPEC section 1): a ValueError
or TypeError naming the op, the argument and the shapes or values, raised while
tracing (so under jax.jit too), by the custom ops and their twins alike."""
import jax
import numpy as np
import pytest

import jaxconv as jc

X = np.zeros((2, 3, 8, 8))
W = np.zeros((4, 3, 3, 3))
B = np.zeros(4)
XS = r"x.shape=\(2, 3, 8, 8\)"

# (op, arrays, hyperparameters, error, message regex)
CONV = [
    ("rank-x", (X[0], W, B), {}, ValueError, r"conv2d: x must be 4-D, got x.shape=\(3, 8, 8\)"),
    ("rank-w", (X, W[None], B), {}, ValueError,
     r"conv2d: w must be 4-D, got w.shape=\(1, 4, 3, 3, 3\)"),
    ("channels", (X, np.zeros((4, 2, 3, 3)), B), {}, ValueError,
     r"conv2d: x has 3 channels but w expects 2 \(" + XS + r", w.shape=\(4, 2, 3, 3\)"),
    ("channels-nhwc", (X, np.zeros((3, 3, 3, 4)), B), dict(layout="NHWC"), ValueError,
     r"conv2d: x has 8 channels but w expects 3 \(" + XS + r", w.shape=\(3, 3, 3, 4\)"),
    ("bias-length", (X, W, np.zeros(5)), {}, ValueError,
     r"conv2d: b must have shape \(4,\).*got b.shape=\(5,\) \(" + XS),
    ("bias-2d", (X, W, np.zeros((4, 1))), {}, ValueError,
     r"conv2d: b must have shape \(4,\).*got b.shape=\(4, 1\)"),
    ("stride-0", (X, W, B), dict(stride=0), ValueError, r"conv2d: stride must be >= 1, got 0"),
    ("stride-pair-0", (X, W, B), dict(stride=(1, 0)), ValueError,
     r"conv2d: stride must be >= 1, got \(1, 0\)"),
    ("pad-negative", (X, W, B), dict(pad=(0, -1)), ValueError,
     r"conv2d: pad must be >= 0, got \(0, -1\)"),
    ("stride-float", (X, W, B), dict(stride=1.5), TypeError,
     r"conv2d: stride must be an int or a pair of ints, got 1.5"),
    ("stride-triple", (X, W, B), dict(stride=(1, 1, 1)), TypeError,
     r"conv2d: stride must be an int or a pair of ints, got \(1, 1, 1\)"),
    ("stride-bool", (X, W, B), dict(stride=True), TypeError, r"conv2d: stride must be an int"),
    ("pad-string", (X, W, B), dict(pad="1"), TypeError, r"conv2d: pad must be an int"),
    ("kernel-too-large", (X, np.zeros((4, 3, 11, 3)), B), dict(pad=1), ValueError,
     r"conv2d: kernel \(11, 3\) is larger than the padded input \(10, 10\) \(" + XS
     + r", w.shape=\(4, 3, 11, 3\)\)"),
    ("layout", (X, W, B), dict(layout="NWHC"), ValueError,
     r"conv2d: layout must be one of \('NCHW', 'NHWC'\), got 'NWHC'"),
    ("impl", (X, W, B), dict(impl="fft"), ValueError,
     r"conv2d: impl must be one of \('xla', 'im2col', 'naive', 'native', 'auto'\), got 'fft'"),
    ("x-int", (X.astype(np.int32), W, B), {}, TypeError,
     r"conv2d: x must have a floating dtype, got int32 \(" + XS + r"\)"),
    ("w-int", (X, W.astype(np.int64), B), {}, TypeError,
     r"conv2d: w must have a floating dtype, got int64 \(w.shape=\(4, 3, 3, 3\)\)"),
    ("b-bool", (X, W, B.astype(bool)), {}, TypeError, r"conv2d: b must have a floating dtype"),
    ("x-complex", (X.astype(np.complex128), W, B), {}, TypeError,
     r"conv2d: x must have a floating dtype, got complex128"),
    ("mixed-x-w", (X.astype(np.float32), W, B), {}, TypeError,
     r"conv2d: operands must share one dtype, got x.dtype=float32, w.dtype=float64, "
     r"b.dtype=float64"),
    ("mixed-b", (X, W, B.astype(np.float32)), {}, TypeError, r"conv2d: .*b.dtype=float32"),
    ("x-not-array", ("image", W, B), {}, TypeError, r"conv2d: x must be an array, got str"),
]

POOL = [
    ("rank-x", (X[0],), {}, ValueError, r"{op}: x must be 4-D, got x.shape=\(3, 8, 8\)"),
    ("pool-0", (X,), dict(pool=0), ValueError, r"{op}: pool must be >= 1, got 0"),
    ("stride-0", (X,), dict(stride=(0, 1)), ValueError, r"{op}: stride must be >= 1, got \(0, 1\)"),
    ("stride-negative", (X,), dict(stride=-1), ValueError, r"{op}: stride must be >= 1, got -1"),
    ("pool-float", (X,), dict(pool=2.0), TypeError, r"{op}: pool must be an int or a pair"),
    ("pool-single", (X,), dict(pool=(2,)), TypeError, r"{op}: pool must be an int or a pair"),
    ("pool-too-large", (X,), dict(pool=(9, 2)), ValueError,
     r"{op}: pool \(9, 2\) is larger than the padded input \(8, 8\) \(" + XS
     + r", layout='NCHW'\)"),
    # in NHWC the same array has H = 3: the layout decides which axes are spatial
    ("pool-too-large-nhwc", (X,), dict(pool=4, layout="NHWC"), ValueError,
     r"{op}: pool \(4, 4\) is larger than the padded input \(3, 8\)"),
    ("layout", (X,), dict(layout="CHWN"), ValueError, r"{op}: layout must be one of"),
    ("x-int", (X.astype(np.int32),), {}, TypeError,
     r"{op}: x must have a floating dtype, got int32 \(" + XS + r"\)"),
    ("x-not-array", (None,), {}, TypeError, r"{op}: x must be an array, got NoneType"),
]

IM2COL = [
    ("rank-x", (X[0],), (3, 3), {}, ValueError, r"im2col: x must be 4-D, got x.shape=\(3, 8, 8\)"),
    ("window-0", (X,), (0, 3), {}, ValueError, r"im2col: \(kh, kw\) must be >= 1, got \(0, 3\)"),
    ("window-too-large", (X,), (9, 3), {}, ValueError,
     r"im2col: window \(9, 3\) is larger than the padded input \(8, 8\) \(" + XS + r"\)"),
    ("stride-0", (X,), (3, 3), dict(stride=0), ValueError, r"im2col: stride must be >= 1"),
    ("pad-negative", (X,), (3, 3), dict(pad=-1), ValueError, r"im2col: pad must be >= 0"),
    ("x-int", (X.astype(np.int32),), (3, 3), {}, TypeError, r"im2col: x must have a floating"),
]

COLS = np.zeros((27, 72))          # (C*KH*KW, Ho*Wo*N) for X and a 3x3 window
COL2IM = [
    ("x-shape-rank", (COLS,), ((3, 8, 8), 3, 3), {}, ValueError,
     r"col2im: x_shape must have 4 entries \(N, C, H, W\), got \(3, 8, 8\)"),
    ("cols-shape", (COLS[:, :70],), (X.shape, 3, 3), {}, ValueError,
     r"col2im: cols must have shape \(27, 72\) for x_shape=\(2, 3, 8, 8\), kh=3, kw=3, "
     r"got cols.shape=\(27, 70\)"),
    ("cols-stride", (COLS,), (X.shape, 3, 3), dict(stride=2), ValueError,
     r"col2im: cols must have shape \(27, 18\)"),
    ("cols-rank", (COLS[None],), (X.shape, 3, 3), {}, ValueError,
     r"col2im: cols must be 2-D, got cols.shape=\(1, 27, 72\)"),
    ("window-too-large", (COLS,), (X.shape, 3, 9), {}, ValueError,
     r"col2im: window \(3, 9\) is larger than the padded input \(8, 8\)"),
    ("pad-negative", (COLS,), (X.shape, 3, 3), dict(pad=(0, -2)), ValueError,
     r"col2im: pad must be >= 0"),
    ("cols-int", (COLS.astype(np.int32),), (X.shape, 3, 3), {}, TypeError,
     r"col2im: cols must have a floating dtype"),
]


def _all_arrays(arrays):
    return all(a is None or isinstance(a, np.ndarray) for a in arrays) and arrays[0] is not None


@pytest.mark.parametrize("module", [jc, jc.reference], ids=["custom", "twin"])
@pytest.mark.parametrize("name, arrays, kw, error, message", CONV, ids=[c[0] for c in CONV])
def test_conv2d_bad_input(module, name, arrays, kw, error, message):
    with pytest.raises(error, match=message):
        module.conv2d(*arrays, **kw)
    if _all_arrays(arrays):                  # the same error while tracing under jit
        with pytest.raises(error, match=message):
            jax.jit(lambda *a: module.conv2d(*a, **kw))(*arrays)


@pytest.mark.parametrize("op", ["max_pool2d", "avg_pool2d"])
@pytest.mark.parametrize("module", [jc, jc.reference], ids=["custom", "twin"])
@pytest.mark.parametrize("name, arrays, kw, error, message", POOL, ids=[c[0] for c in POOL])
def test_pool_bad_input(op, module, name, arrays, kw, error, message):
    fn, message = getattr(module, op), message.format(op=op)
    with pytest.raises(error, match=message):
        fn(*arrays, **kw)
    if _all_arrays(arrays):
        with pytest.raises(error, match=message):
            jax.jit(lambda *a: fn(*a, **kw))(*arrays)


PATCHES = [(jc.im2col, c) for c in IM2COL] + [(jc.col2im, c) for c in COL2IM]


@pytest.mark.parametrize("fn, case", PATCHES, ids=[f"{f.__name__}-{c[0]}" for f, c in PATCHES])
def test_patches_bad_input(fn, case):
    _, arrays, static, kw, error, message = case
    with pytest.raises(error, match=message):
        fn(*arrays, *static, **kw)
    with pytest.raises(error, match=message):
        jax.jit(lambda *a: fn(*a, *static, **kw))(*arrays)


def test_valid_spellings_are_accepted():
    """NumPy integers, lists and pairs are the same hyperparameters as plain ints."""
    x, w = np.ones((1, 2, 6, 6)), np.ones((3, 2, 3, 3))
    expected = jc.conv2d(x, w, stride=2, pad=1)
    for stride, pad in ((np.int64(2), np.int32(1)), ([2, 2], [1, 1]), ((2, 2), (1, 1))):
        np.testing.assert_array_equal(jc.conv2d(x, w, stride=stride, pad=pad), expected)
    np.testing.assert_array_equal(jc.max_pool2d(x, pool=np.int64(2)), jc.max_pool2d(x, pool=(2, 2)))
    # Python lists as data are arrays too (SPEC: NumPy or JAX arrays in)
    assert jc.avg_pool2d(x.tolist(), pool=3).shape == (1, 2, 2, 2)
