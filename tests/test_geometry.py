"""The N-d window/layout geometry (jaxconv._geometry) and the patches built on it:
hand-worked cases, PyTorch's output sizes (pools with ceil_mode, convs, transposed
convs), lax's SAME padding, and window_slices/place_windows/im2col against NumPy
loops in 1-3 dims with dilation."""
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

import jaxconv as jc
from jaxconv import _geometry as geo
from jaxconv._patches import pad_spatial, place_windows, unpad, window_slices
from _util import randn


def win(in_size, kernel, **kw):
    return geo.window("op", in_size=in_size, kernel=kernel, **kw)


# (in, kernel, stride, dilation, pad, ceil_mode) -> (out, remainder), worked by hand
HAND = [
    ((7,), 3, 2, 1, 0, False, (3,), (0,)),          # windows at 0, 2, 4: reach 7
    ((8,), 3, 2, 1, 0, False, (3,), (1,)),          # the last row is never read
    ((10,), 3, 1, 2, 0, False, (6,), (0,)),         # dilated span 5
    ((9,), 2, 3, 3, ((1, 2),), False, (3,), (2,)),     # padded 12, span 4: 0, 3, 6 (9 + 4 > 12)
    ((5,), 2, 2, 1, 0, True, (3,), (-1,)),          # ceil: last window starts at 4 < 5, overhangs 1
    ((5,), 2, 2, 1, 0, False, (2,), (1,)),
    ((3,), 2, 2, 1, 1, True, (2,), (1,)),           # ceil would start at 4 = in the right pad: dropped
    ((6,), 3, 3, 1, 1, True, (3,), (-1,)),          # starts at 6 < 6 + 1: kept
    ((5, 8), (3, 2), (2, 3), (1, 2), ((1, 0), (0, 2)), False, (2, 3), (1, 1)),
]


@pytest.mark.parametrize("in_size, k, s, d, p, ceil, out, rem", HAND)
def test_hand_worked_windows(in_size, k, s, d, p, ceil, out, rem):
    w = win(in_size, k, stride=s, dilation=d, pad=p, ceil_mode=ceil)
    assert w.out_size == out and w.remainder == rem
    # fit_pad: lax's floor rule over it gives exactly out_size
    for (lo, hi), n, e, st, o in zip(w.fit_pad, w.in_size, w.span, w.stride, w.out_size):
        assert (lo + n + hi - e) // st + 1 == o


def test_ceil_mode_matches_torch_pool_sizes(torch):
    """PyTorch's pooling output size (ceil_mode and floor) over a grid."""
    for n, k, s, d, ceil in itertools.product(range(1, 9), (1, 2, 3), (1, 2, 3), (1, 2),
                                              (False, True)):
        for p in range(0, k // 2 + 1):
            if d * (k - 1) + 1 > n + 2 * p:
                continue
            x = torch.zeros(1, 1, n)
            expected = torch.nn.functional.max_pool1d(x, k, s, p, d, ceil_mode=ceil).shape[-1]
            got = win((n,), k, stride=s, dilation=d, pad=p, ceil_mode=ceil).out_size
            assert got == (expected,), (n, k, s, p, d, ceil)


def test_conv_and_transpose_sizes_match_torch(torch):
    F = torch.nn.functional
    for n, k, s, d, p in itertools.product((1, 4, 7), (1, 2, 3), (1, 2, 3), (1, 2), (0, 1, 2)):
        x = torch.zeros(1, 1, n)
        if d * (k - 1) + 1 <= n + 2 * p:
            expected = F.conv1d(x, torch.zeros(1, 1, k), stride=s, padding=p, dilation=d)
            assert win((n,), k, stride=s, dilation=d, pad=p).out_size == (expected.shape[-1],)
        for op in range(max(s, d)):
            size = (n - 1) * s - 2 * p + d * (k - 1) + op + 1
            if size < 1:
                continue
            t = F.conv_transpose1d(x, torch.zeros(1, 1, k), stride=s, padding=p,
                                   output_padding=op, dilation=d)
            tw = geo.transpose_window("op", in_size=(n,), kernel=k, stride=s, dilation=d,
                                      pad=p, output_pad=op)
            assert tw.in_size == (t.shape[-1],) and tw.out_size == (n,) and tw.remainder == (op,)


@pytest.mark.parametrize("n, k, s, d", [(5, 4, 1, 1), (5, 3, 2, 1), (6, 3, 2, 1), (7, 2, 3, 2),
                                        (4, 5, 1, 1), (9, 3, 2, 3)])
def test_same_is_lax_same(n, k, s, d):
    w = win((n, n + 1), k, stride=s, dilation=d, pad="same")
    x, kern = jnp.zeros((1, 1, n, n + 1)), jnp.zeros((1, 1, k, k))
    expected = lax.conv_general_dilated(x, kern, (s, s), "SAME", rhs_dilation=(d, d))
    via_pads = lax.conv_general_dilated(x, kern, (s, s), w.pad, rhs_dilation=(d, d))
    assert w.out_size == expected.shape[2:] == via_pads.shape[2:]
    assert w.pad == tuple(tuple(p) for p in lax.padtype_to_pads((n, n + 1), w.span, (s, s), "SAME"))
    assert win((n + d * k,), k, stride=s, dilation=d, pad="valid").pad == ((0, 0),)


@pytest.mark.filterwarnings("ignore:Using padding=.same. with even kernel")
def test_torch_padding_same(torch):
    """Stride 1: SAME is PyTorch's padding="same", odd kernels and even."""
    for n, k, d in ((5, 4, 1), (6, 3, 2), (7, 2, 3)):
        w = win((n,), k, dilation=d, pad="SAME")
        x = torch.arange(float(n)).reshape(1, 1, n)
        kern = torch.arange(1.0, k + 1).reshape(1, 1, k)
        expected = torch.nn.functional.conv1d(x, kern, padding="same", dilation=d)
        padded = torch.nn.functional.pad(x, w.pad[0])
        np.testing.assert_array_equal(torch.nn.functional.conv1d(padded, kern, dilation=d), expected)


BAD = [
    (dict(kernel=3, dilation=0), ValueError, r"op: dilation must be >= 1, got 0"),
    (dict(kernel=3, dilation=(1, 1, 1)), TypeError, r"op: dilation must be an int or a pair of ints"),
    (dict(kernel=3, pad=((1, 2, 3), 0)), ValueError, r"op: each pad pair must be \(low, high\)"),
    (dict(kernel=3, pad="full"), TypeError, r"op: pad must be an int, 2 int\(s\) \(one per spatial "
                                            r"dim\) or 2 \(low, high\) pair\(s\), 'SAME' or "
                                            r"'VALID', got 'full'"),
    (dict(kernel=3, pad=(1, 2, 3)), TypeError, r"op: pad must be an int"),
    (dict(kernel=3, pad=1.5), TypeError, r"op: pad must be an int"),
    (dict(kernel=3, pad=((0, -1), 0)), ValueError, r"op: pad must be >= 0"),
    (dict(kernel=(0, 3)), ValueError, r"op: kernel must be >= 1, got \(0, 3\)"),
    (dict(kernel=3, dilation=4), ValueError,
     r"op: kernel \(3, 3\) with dilation \(4, 4\) spans \(9, 9\), larger than the padded "
     r"input \(8, 8\)"),
    (dict(kernel=3, pad=10**9), ValueError, r"op: the padded input .* is too large for XLA"),
    (dict(kernel=3, pad=2**31), ValueError, r"op: the padded input .* is too large for XLA"),
    (dict(kernel=3, ceil_mode=1), TypeError, r"op: ceil_mode must be a bool"),
]


@pytest.mark.parametrize("kw, error, message", BAD)
def test_bad_windows(kw, error, message):
    with pytest.raises(error, match=message):
        geo.window("op", in_size=(8, 8), outer=6, **kw)


def test_bad_transpose_windows():
    t = dict(in_size=(4,), kernel=3)
    with pytest.raises(ValueError, match=r"op: output_pad must be smaller than stride or "
                                         r"dilation in every dim, got output_pad=\(2,\)"):
        geo.transpose_window("op", **t, stride=2, output_pad=2)
    with pytest.raises(ValueError, match=r"op: pad=\(\(4, 4\),\) crops the transposed output "
                                         r"\(6,\) to \(-2,\), which is not positive"):
        geo.transpose_window("op", **t, pad=4)
    with pytest.raises(TypeError, match=r"op: pad must be an int, 1 int\(s\) \(one per spatial dim\) "
                                        r"or 1 \(low, high\) pair\(s\), got 'SAME'"):
        geo.transpose_window("op", **t, pad="SAME")


LAYOUT_SPECS = [("NCW", "OIW"), ("NWC", "WIO"), ("NCHW", "OIHW"), ("NHWC", "HWIO"),
                ("NCDHW", "OIDHW"), ("NDHWC", "DHWIO")]


@pytest.mark.parametrize("name, weight", LAYOUT_SPECS)
def test_layouts(name, weight):
    lay = geo.Layout(name)
    assert lay.channel_axis == name.index("C") and lay.ndim == len(name) - 2
    assert [name[a] for a in lay.spatial_axes] == [c for c in name if c not in "NC"]
    assert lay.weight_out_axis == weight.index("O") and lay.weight_in_axis == weight.index("I")
    assert [weight[a] for a in lay.weight_spatial_axes] == [c for c in weight if c not in "OI"]
    assert lay.dimension_numbers == lax.conv_dimension_numbers(
        (1,) * len(name), (1,) * len(name), (name, weight, name))
    shape = tuple(range(2, 2 + len(name)))
    assert geo.layout("op", None if name[1] == "C" else name, shape) == lay


def test_layout_errors():
    with pytest.raises(ValueError, match=r"op: x must be 3-D, 4-D or 5-D \(N, C, \*spatial\), "
                                         r"got x.shape=\(2, 3\)"):
        geo.layout("op", None, (2, 3))
    with pytest.raises(ValueError, match=r"op: x must be 4-D, got x.shape=\(2, 3, 4\) \(layout 'NHWC'\)"):
        geo.layout("op", "NHWC", (2, 3, 4))
    with pytest.raises(ValueError, match=r"op: layout must be one of \('NCHW', 'NHWC'\), got 'NCW'"):
        geo.layout("op", "NCW", (2, 3, 4), ndim=2)


def _loop_slices(xp, w, spatial):
    """NumPy loops: piece[tap][..., o] = xp[..., o*s + t*d] over the spatial axes."""
    out = []
    for tap in itertools.product(*(range(k) for k in w.kernel)):
        piece = np.zeros(xp.shape[:2] + w.out_size)
        for o in itertools.product(*(range(m) for m in w.out_size)):
            idx = tuple(oi * s + t * d for oi, s, t, d in zip(o, w.stride, tap, w.dilation))
            piece[(slice(None), slice(None)) + o] = xp[(slice(None), slice(None)) + idx]
        out.append(piece)
    return out


@pytest.mark.parametrize("name, in_size, kw", [
    ("NCW", (9,), dict(kernel=3, stride=2, dilation=2, pad=(1, 0))),
    ("NCHW", (7, 6), dict(kernel=(2, 3), stride=(3, 1), dilation=(2, 1), pad=((0, 2), (1, 1)))),
    ("NCDHW", (5, 4, 6), dict(kernel=2, stride=(1, 2, 3), dilation=(2, 1, 2), pad=1)),
])
def test_window_slices_and_place_windows_are_loops_and_adjoint(name, in_size, kw):
    lay, w = geo.Layout(name), win(in_size, **kw)
    x = randn(0, 2, 3, *in_size)
    xp = np.asarray(pad_spatial(jnp.asarray(x), w.pad, lay))
    slices = [np.asarray(s) for s in window_slices(jnp.asarray(xp), w, lay)]
    for got, expected in zip(slices, _loop_slices(xp, w, lay.spatial_axes), strict=True):
        np.testing.assert_array_equal(got, expected)
    pieces = [randn(1 + i, *s.shape) for i, s in enumerate(slices)]
    placed = np.asarray(place_windows([jnp.asarray(p) for p in pieces], w, lay))
    assert placed.shape == xp.shape
    lhs = sum(np.vdot(s, p) for s, p in zip(slices, pieces))
    np.testing.assert_allclose(lhs, np.vdot(xp, placed), rtol=1e-12)
    assert pad_spatial(jnp.asarray(xp), unpad(w.pad), lay).shape == x.shape


def test_im2col_dilation_matches_loops():
    x = randn(3, 2, 3, 9, 8)
    cols = jc.im2col(x, 3, 2, stride=(2, 1), pad=((1, 0), 2), dilation=(2, 3))
    xp = np.pad(x, ((0, 0), (0, 0), (1, 0), (2, 2)))
    ho, wo = (10 - 5) // 2 + 1, (12 - 4) // 1 + 1
    expected = np.zeros((3 * 3 * 2, ho * wo * 2))
    for c, i, j, y, z, n in itertools.product(range(3), range(3), range(2), range(ho), range(wo),
                                              range(2)):
        expected[(c * 3 + i) * 2 + j, (y * wo + z) * 2 + n] = xp[n, c, 2 * y + 2 * i, z + 3 * j]
    np.testing.assert_array_equal(cols, expected)
    g = randn(4, *expected.shape)
    back = jc.col2im(g, x.shape, 3, 2, stride=(2, 1), pad=((1, 0), 2), dilation=(2, 3))
    np.testing.assert_allclose(np.vdot(cols, g), np.vdot(x, back), rtol=1e-12)


def test_zero_size_and_bad_shapes_in_patches():
    x = np.zeros((2, 0, 5, 5))
    assert jc.im2col(x, 3, 3).shape == (0, 18)
    assert jc.col2im(np.zeros((0, 18)), (2, 0, 5, 5), 3, 3).shape == (2, 0, 5, 5)
    cols = np.zeros((27, 18))
    with pytest.raises(TypeError, match=r"col2im: x_shape must hold ints, got \(2, 3, 5.5, 5\)"):
        jc.col2im(cols, (2, 3, 5.5, 5), 3, 3)
    with pytest.raises(ValueError, match=r"col2im: x_shape must hold sizes >= 0"):
        jc.col2im(cols, (2, -3, 5, 5), 3, 3)
    with pytest.raises(ValueError, match=r"im2col: \(kh, kw\) must be >= 1, got \(3, 0\)"):
        jc.im2col(np.zeros((2, 3, 5, 5)), 3, 0)
    with pytest.raises(ValueError, match=r"im2col: the padded input .* too large"):
        jc.im2col(np.zeros((2, 3, 5, 5)), 3, 3, pad=10**9)
