"""Cross-checks against PyTorch in float64: forward and gradients of conv2d (every
impl, both layouts) and both pools, including max-pool ties."""
import numpy as np
import pytest

import jaxconv as jc
from _util import forward_and_vjp, randn, to_hwio, to_nchw, to_nhwc, to_oihw

IMPLS = ("xla", "im2col", "naive")


def torch_forward_backward(torch, fn, arrays, g, **kw):
    """``fn(*arrays, **kw)`` in PyTorch float64 and the gradients of ``sum(out * g)``."""
    tensors = [None if a is None else torch.tensor(a, dtype=torch.float64, requires_grad=True)
               for a in arrays]
    out = fn(*tensors, **kw)
    out.backward(torch.tensor(g, dtype=torch.float64))
    return out.detach().numpy(), [None if t is None else t.grad.numpy() for t in tensors]


# x (2, 3, 8, 7), w 3x2: every pair leaves a floor in H or W (or both).
@pytest.mark.parametrize("stride, pad", [(2, 0), ((2, 1), (1, 0)), ((1, 3), (2, 1))])
def test_conv2d_matches_torch(torch, stride, pad):
    x, w, b = randn(70, 2, 3, 8, 7), randn(71, 4, 3, 3, 2), randn(72, 4)
    out_shape = torch.nn.functional.conv2d(torch.tensor(x), torch.tensor(w),
                                           stride=stride, padding=pad).shape
    g = randn(73, *out_shape)
    expected_out, expected_grads = torch_forward_backward(
        torch, torch.nn.functional.conv2d, (x, w, b), g, stride=stride, padding=pad)
    for impl in IMPLS:
        for layout in ("NCHW", "NHWC"):
            if layout == "NCHW":
                out, (dx, dw, db) = forward_and_vjp(
                    lambda x, w, b: jc.conv2d(x, w, b, stride=stride, pad=pad, impl=impl),
                    (x, w, b), g)
            else:
                out, (dx, dw, db) = forward_and_vjp(
                    lambda x, w, b: jc.conv2d(x, w, b, stride=stride, pad=pad, impl=impl,
                                              layout="NHWC"),
                    (to_nhwc(x), to_hwio(w), b), to_nhwc(g))
                out, dx, dw = to_nchw(out), to_nchw(dx), to_oihw(dw)
            for got, expected in zip((out, dx, dw, db), (expected_out, *expected_grads)):
                np.testing.assert_allclose(got, expected, rtol=1e-11, atol=1e-12,
                                           err_msg=f"{impl} {layout}")


def test_conv2d_without_bias_matches_torch(torch):
    x, w = randn(74, 2, 1, 6, 7), randn(75, 2, 1, 3, 3)
    g = randn(76, 2, 2, 3, 4)                         # (6 + 2 - 3) // 2 + 1 = 3 rows, 4 columns
    expected_out, (ex_dx, ex_dw) = torch_forward_backward(
        torch, torch.nn.functional.conv2d, (x, w), g, stride=2, padding=1)
    for impl in IMPLS:
        out, (dx, dw) = forward_and_vjp(
            lambda x, w: jc.conv2d(x, w, stride=2, pad=1, impl=impl), (x, w), g)
        for got, expected in ((out, expected_out), (dx, ex_dx), (dw, ex_dw)):
            np.testing.assert_allclose(got, expected, rtol=1e-11, atol=1e-12, err_msg=impl)


POOLS = [(2, None), (3, 2), ((3, 2), (1, 2))]


@pytest.mark.parametrize("pool, stride", POOLS)
@pytest.mark.parametrize("op", ["max_pool2d", "avg_pool2d"])
def test_pools_match_torch(torch, op, pool, stride):
    x = randn(77, 2, 3, 7, 8)
    t_fn = getattr(torch.nn.functional, op)
    t_kw = dict(kernel_size=pool) if stride is None else dict(kernel_size=pool, stride=stride)
    g = randn(78, *t_fn(torch.tensor(x), **t_kw).shape)
    expected_out, (expected_dx,) = torch_forward_backward(torch, t_fn, (x,), g, **t_kw)
    fn = getattr(jc, op)
    for layout in ("NCHW", "NHWC"):
        xl, gl = (x, g) if layout == "NCHW" else (to_nhwc(x), to_nhwc(g))
        out, (dx,) = forward_and_vjp(lambda x: fn(x, pool=pool, stride=stride, layout=layout),
                                     (xl,), gl)
        if layout == "NHWC":
            out, dx = to_nchw(out), to_nchw(dx)
        np.testing.assert_allclose(out, expected_out, rtol=1e-13, atol=1e-14)
        np.testing.assert_allclose(dx, expected_dx, rtol=1e-13, atol=1e-14)


@pytest.mark.parametrize("pool, stride", [(2, 2), (3, 1), (3, 2)])
def test_max_pool_ties_match_torch(torch, pool, stride):
    """Integer inputs with many ties (and an all-equal image): PyTorch, the custom
    rule and the twin route each window's gradient to the same element."""
    x = np.random.default_rng(79).integers(0, 2, (2, 2, 7, 7)).astype(np.float64)
    x[1, 1] = 1.0                                     # one image with every value tied
    t_kw = dict(kernel_size=pool, stride=stride)
    out_shape = torch.nn.functional.max_pool2d(torch.tensor(x), **t_kw).shape
    g = np.random.default_rng(80).integers(1, 9, out_shape).astype(np.float64)   # exact sums
    expected_out, (expected_dx,) = torch_forward_backward(
        torch, torch.nn.functional.max_pool2d, (x,), g, **t_kw)
    for fn in (jc.max_pool2d, jc.reference.max_pool2d):
        out, (dx,) = forward_and_vjp(lambda x: fn(x, pool=pool, stride=stride), (x,), g)
        np.testing.assert_array_equal(out, expected_out)
        np.testing.assert_array_equal(dx, expected_dx)
