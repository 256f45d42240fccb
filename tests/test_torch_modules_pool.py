"""PyTorch 2.13's own module test configurations for the pools, against jaxconv.

``TORCH_MODULE_INPUTS`` transcribes every entry of ``module_inputs_torch_nn_<Module>``
in torch/testing/_internal/common_modules.py (torch 2.13.0) for MaxPool1d/2d/3d,
AvgPool1d/2d/3d, AdaptiveAvgPool1d/2d/3d and AdaptiveMaxPool1d/2d/3d: the module's
constructor arguments exactly as PyTorch writes them, the input shape and PyTorch's
``desc``. Each builds the torch module with those arguments and compares its forward
and input gradient, in float64, with the jaxconv op (channels-first and
channels-last) to 1e-10 relative.

Mapping decisions, stated once:
* ``no_batch_dim`` / ``3d_input`` entries (an input without the N axis): jaxconv's
  pools take batched input only (x's rank decides the number of spatial dims of the
  N-d ops, so an unbatched form would be ambiguous; ``jax.vmap`` is the way to map
  over examples). The test feeds torch the unbatched input and jaxconv the same
  input with N = 1 added, and compares after removing it.
* ``return_indices=True``: jaxconv returns the pooled values only (the winner is
  kept internally, as a residual); the values and the gradient are compared.
"""
import functools
import zlib

import jax
import numpy as np
import pytest

import jaxconv as jc
from jaxconv.gradcheck import rel_error

# (module, constructor args, constructor kwargs, input shape, desc) -- transcribed
TORCH_MODULE_INPUTS = [
    ("MaxPool1d", (4,), {}, (2, 10, 4), "3d_input"),
    ("MaxPool1d", (4, 4), {}, (2, 10, 4), "stride"),
    ("MaxPool1d", (4,), dict(return_indices=True), (2, 10, 4), "return_indices"),
    ("MaxPool2d", ((3, 3), (2, 2), (1, 1)), {}, (3, 7, 7), "3d_input"),
    ("MaxPool2d", ((3, 3), (2, 2), (1, 1)), {}, (1, 3, 7, 7), "4d_input"),
    ("MaxPool2d", ((3, 3), (2, 2), (1, 1)), dict(return_indices=True), (1, 3, 7, 7),
     "return_indices"),
    ("MaxPool3d", ((2, 2, 2),), {}, (2, 3, 5, 5, 5), ""),
    ("MaxPool3d", (2, (2, 2, 2)), {}, (2, 3, 5, 5, 5), "stride"),
    ("MaxPool3d", (2, 2, (1, 1, 1)), {}, (2, 3, 5, 5, 5), "stride_padding"),
    ("MaxPool3d", (2, 2, (1, 1, 1)), dict(return_indices=True), (2, 3, 5, 5, 5),
     "return_indices"),
    ("AvgPool1d", (), dict(kernel_size=2), (3, 6), "no_batch_dim"),
    ("AvgPool1d", (2,), {}, (2, 3, 6), ""),
    ("AvgPool1d", ((2,), (2,)), {}, (2, 3, 6), "stride"),
    ("AvgPool1d", (2, 2, 1), {}, (2, 3, 6), "stride_pad"),
    ("AvgPool2d", ((2, 2),), {}, (3, 6, 6), "no_batch_dim"),
    ("AvgPool2d", ((2, 2),), {}, (2, 3, 6, 6), ""),
    ("AvgPool2d", ((2, 2), (2, 2)), {}, (2, 3, 6, 6), "stride"),
    ("AvgPool2d", ((2, 2), (2, 2), (1, 1)), {}, (2, 3, 6, 6), "stride_pad"),
    ("AvgPool2d", ((2, 2),), dict(divisor_override=1), (2, 3, 6, 6), "divisor"),
    ("AvgPool2d", ((2, 2), (2, 2)), dict(divisor_override=1), (2, 3, 6, 6), "divisor_stride"),
    ("AvgPool2d", ((2, 2), (2, 2), (1, 1)), dict(divisor_override=1), (2, 3, 6, 6),
     "divisor_stride_pad"),
    ("AvgPool3d", ((2, 2, 2),), {}, (3, 4, 4, 4), "no_batch_dim"),
    ("AvgPool3d", ((2, 2, 2),), {}, (2, 3, 4, 4, 4), ""),
    ("AvgPool3d", (2, (2, 2, 2)), {}, (2, 3, 5, 5, 5), "stride"),
    ("AvgPool3d", (2, 2, (1, 1, 1)), {}, (2, 3, 5, 5, 5), "stride_pad"),
    ("AvgPool3d", (4, 2, (1, 2, 1)), {}, (2, 3, 5, 5, 5), "stride_pad_gpu_fixedkw_output"),
    ("AvgPool3d", ((2, 4, 8), 1, (1, 1, 2)), {}, (2, 3, 2, 4, 8),
     "stride_pad_gpu_general_output"),
    ("AvgPool3d", (3, 1, 0), {}, (2, 3, 4, 4, 4), "stride1_pad0_gpu_input"),
    ("AvgPool3d", (2, 2, (1, 1, 1)), {}, (2, 3, 4, 4, 4), "stride_pad_gpu_input_nooverlap"),
    ("AvgPool3d", ((2, 2, 2),), dict(divisor_override=1), (2, 3, 4, 4, 4), "divisor"),
    ("AvgPool3d", (2, (2, 2, 2)), dict(divisor_override=1), (2, 3, 5, 5, 5), "divisor_stride"),
    ("AvgPool3d", (2, 2, (1, 1, 1)), dict(divisor_override=1), (2, 3, 5, 5, 5),
     "divisor_stride_pad"),
    ("AvgPool3d", (4, 2, (1, 2, 1)), dict(divisor_override=1), (2, 3, 5, 5, 5),
     "divisor_stride_pad_gpu_fixedkw_output"),
    ("AvgPool3d", ((2, 4, 8), 1, (1, 1, 2)), dict(divisor_override=1), (2, 3, 2, 4, 8),
     "divisor_stride_pad_gpu_general_output"),
    ("AvgPool3d", (3, 1, 0), dict(divisor_override=1), (2, 3, 4, 4, 4),
     "divisor_stride1_pad0_gpu_input"),
    ("AvgPool3d", (2, 2, (1, 1, 1)), dict(divisor_override=1), (2, 3, 4, 4, 4),
     "divisor_stride_pad_gpu_input_nooverlap"),
    ("AdaptiveAvgPool1d", (3,), {}, (1, 3, 5), "single"),
    ("AdaptiveAvgPool1d", (3,), {}, (3, 5), "no_batch_dim"),
    ("AdaptiveAvgPool1d", (1,), {}, (1, 3, 5), "one_output"),
    ("AdaptiveAvgPool2d", (3,), {}, (1, 3, 5, 6), "single"),
    ("AdaptiveAvgPool2d", (3,), {}, (3, 5, 6), "no_batch_dim"),
    ("AdaptiveAvgPool2d", (1,), {}, (1, 3, 5, 6), "single_1x1output"),
    ("AdaptiveAvgPool2d", ((3, 4),), {}, (1, 3, 5, 6), "tuple"),
    ("AdaptiveAvgPool2d", ((3, None),), {}, (1, 3, 5, 6), "tuple_none"),
    ("AdaptiveAvgPool3d", (3,), {}, (2, 3, 5, 2, 7), "single"),
    ("AdaptiveAvgPool3d", (3,), {}, (3, 5, 2, 7), "no_batch_dim"),
    ("AdaptiveAvgPool3d", ((3, 4, 5),), {}, (2, 3, 5, 3, 7), "tuple"),
    ("AdaptiveAvgPool3d", ((None, 4, 5),), {}, (2, 3, 5, 3, 7), "tuple_none"),
    ("AdaptiveAvgPool3d", ((3, 2, 2),), {}, (1, 1, 3, 2, 6), "last_dim"),
    ("AdaptiveMaxPool1d", (3,), {}, (1, 3, 5), "single"),
    ("AdaptiveMaxPool1d", (3,), {}, (3, 5), "no_batch_dim"),
    ("AdaptiveMaxPool2d", (3,), {}, (1, 3, 5, 6), "single"),
    ("AdaptiveMaxPool2d", (3,), {}, (3, 5, 6), "no_batch_dim"),
    ("AdaptiveMaxPool2d", ((3, 4),), {}, (1, 3, 5, 6), "tuple"),
    ("AdaptiveMaxPool2d", ((3, None),), {}, (1, 3, 5, 6), "tuple_none"),
    ("AdaptiveMaxPool3d", (3,), {}, (2, 3, 5, 6, 7), "single"),
    ("AdaptiveMaxPool3d", (3,), {}, (3, 5, 6, 7), "no_batch_dim"),
    ("AdaptiveMaxPool3d", ((3, 4, 5),), {}, (2, 3, 5, 6, 7), "tuple"),
    ("AdaptiveMaxPool3d", ((3, None, 5),), {}, (2, 3, 5, 6, 7), "tuple_none"),
    ("AdaptiveMaxPool3d", (3,), {}, (2, 3, 12, 9, 3), "single_nonatomic"),
    ("AdaptiveMaxPool3d", ((3, 4, 5),), {}, (2, 3, 6, 4, 10), "tuple_nonatomic"),
]

# What PyTorch's own entries leave out (no entry uses ceil_mode, dilation or
# count_include_pad=False): the same comparison for those options.
MORE_CONFIGS = [
    ("MaxPool1d", (3, 2, 1), dict(dilation=2, ceil_mode=True), (2, 3, 10), "dilation_ceil"),
    ("MaxPool2d", (3, 2, 1), dict(ceil_mode=True), (2, 3, 8, 8), "resnet_stem_ceil"),
    ("MaxPool2d", ((2, 3), (1, 2), (1, 1)), dict(dilation=(2, 1)), (2, 2, 7, 6), "dilation"),
    ("MaxPool3d", (3, 2, 1), dict(dilation=(1, 2, 1), ceil_mode=True), (1, 2, 6, 7, 5),
     "dilation_ceil"),
    ("AvgPool1d", (3, 2, 1), dict(ceil_mode=True, count_include_pad=False), (2, 3, 8),
     "ceil_exclude_pad"),
    ("AvgPool2d", (3, 2, 1), dict(ceil_mode=True), (2, 3, 6, 6), "ceil_include_pad"),
    ("AvgPool2d", ((3, 2), (2, 1), (1, 1)), dict(ceil_mode=True, count_include_pad=False),
     (1, 2, 6, 5), "ceil_exclude_pad"),
    ("AvgPool3d", (3, 2, 1), dict(ceil_mode=True, count_include_pad=False), (1, 2, 4, 5, 6),
     "ceil_exclude_pad"),
    ("AdaptiveAvgPool2d", ((7, 3),), {}, (1, 2, 5, 6), "upsampling"),
    ("AdaptiveMaxPool2d", ((7, 3),), {}, (1, 2, 5, 6), "upsampling"),
]

_NAMES = {  # PyTorch's positional constructor parameters -> jaxconv's keywords
    "MaxPool": ("pool", "stride", "pad", "dilation", "return_indices", "ceil_mode"),
    "AvgPool": ("pool", "stride", "pad", "ceil_mode", "count_include_pad", "divisor_override"),
    "AdaptiveAvgPool": ("out_size",),
    "AdaptiveMaxPool": ("out_size", "return_indices"),
}
_RENAME = {"kernel_size": "pool", "padding": "pad"}
_OPS = {"MaxPool": "max_pool", "AvgPool": "avg_pool", "AdaptiveAvgPool": "adaptive_avg_pool",
        "AdaptiveMaxPool": "adaptive_max_pool"}
_CHANNELS_LAST = {1: "NWC", 2: "NHWC", 3: "NDHWC"}


def jaxconv_call(module, args, kwargs):
    """``(jaxconv op, positional args, keywords)`` for a torch module's constructor."""
    family, dims = module[:-2], int(module[-2])
    hyper = dict(zip(_NAMES[family], args))
    hyper.update({_RENAME.get(k, k): v for k, v in kwargs.items()})
    hyper.pop("return_indices", None)
    op = getattr(jc, f"{_OPS[family]}{dims}d")
    positional = (hyper.pop("out_size"),) if family.startswith("Adaptive") else ()
    return op, positional, hyper, dims


def _seed(module, desc):
    return zlib.crc32(f"{module}-{desc}".encode())


def _ids(table):
    return [f"{m}-{d or 'default'}" for m, _, _, _, d in table]


@pytest.mark.parametrize("layout", ["channels_first", "channels_last"])
@pytest.mark.parametrize("module, args, kwargs, shape, desc",
                         TORCH_MODULE_INPUTS + MORE_CONFIGS,
                         ids=_ids(TORCH_MODULE_INPUTS + MORE_CONFIGS))
def test_pool_equals_torch_module(torch, module, args, kwargs, shape, desc, layout):
    rng = np.random.default_rng(_seed(module, desc))
    x = rng.standard_normal(shape)
    out_t, dx_t, g = torch_forward_backward(torch, module, args, kwargs, x, rng)
    out, dx = jaxconv_forward_backward(module, args, kwargs, x, g, layout)
    assert out.shape == out_t.shape and dx.dtype == np.float64
    assert rel_error(out, out_t) < 1e-10
    assert rel_error(dx, dx_t) < 1e-10


def torch_forward_backward(torch, module, args, kwargs, x, rng):
    """``(out, dx, g)`` of the torch module for a random upstream gradient g."""
    xt = torch.tensor(x, requires_grad=True)
    out_t = getattr(torch.nn, module)(*args, **kwargs)(xt)
    out_t = out_t[0] if kwargs.get("return_indices") else out_t
    g = rng.standard_normal(tuple(out_t.shape))
    out_t.backward(torch.tensor(g))
    return out_t.detach().numpy(), xt.grad.numpy(), g


def jaxconv_forward_backward(module, args, kwargs, x, g, layout):
    """``(out, dx)`` of the jaxconv op, channels-first, whatever ``layout`` it ran in."""
    dims = int(module[-2])
    unbatched = x.ndim == dims + 1
    xb, gb = (x[None], g[None]) if unbatched else (x, g)
    if layout == "channels_last":
        xb, gb = np.moveaxis(xb, 1, -1), np.moveaxis(gb, 1, -1)
    run = _compiled(module, args, tuple(sorted(kwargs.items())), layout)
    out, dx = (np.asarray(a) for a in run(xb, gb))
    if layout == "channels_last":
        out, dx = np.moveaxis(out, -1, 1), np.moveaxis(dx, -1, 1)
    return (out[0], dx[0]) if unbatched else (out, dx)


@functools.lru_cache(maxsize=None)
def _compiled(module, args, kwargs, layout):
    """The jitted forward + VJP of one entry, compiled once for all the tests here."""
    op, positional, hyper, dims = jaxconv_call(module, args, dict(kwargs))
    if layout == "channels_last":
        hyper = dict(hyper, layout=_CHANNELS_LAST[dims])

    def run(x, g):
        out, pullback = jax.vjp(lambda a: op(a, *positional, **hyper), x)
        return out, pullback(g)[0]
    return jax.jit(run)


MAX_ENTRIES = [e for e in TORCH_MODULE_INPUTS + MORE_CONFIGS if "Max" in e[0]]


@pytest.mark.parametrize("layout", ["channels_first", "channels_last"])
@pytest.mark.parametrize("module, args, kwargs, shape, desc", MAX_ENTRIES, ids=_ids(MAX_ENTRIES))
def test_max_pool_ties_inf_and_nan_as_torch(torch, module, args, kwargs, shape, desc, layout):
    """Inputs from {-1, 0, 1} (ties everywhere), with -inf and NaN sprinkled in: the
    same outputs (NaN where torch has NaN) and exactly the same gradient, i.e. the
    same winner in every window: the first maximum, the last NaN, and for a window
    of -inf only its first tap on the input."""
    rng = np.random.default_rng(_seed(module, desc) + 1)
    x = rng.integers(-1, 2, size=shape).astype(np.float64)
    x[rng.random(shape) < 0.15] = -np.inf
    x[rng.random(shape) < 0.05] = np.nan
    out_t, dx_t, g = torch_forward_backward(torch, module, args, kwargs, x, rng)
    out, dx = jaxconv_forward_backward(module, args, kwargs, x, g, layout)
    np.testing.assert_array_equal(out, out_t)     # NaN == NaN here
    # a wrong winner moves a whole g value; overlapping windows add in another order
    np.testing.assert_allclose(dx, dx_t, rtol=1e-12, atol=1e-12)


def test_all_minus_inf_window_next_to_padding_as_torch(torch):
    """A window of -inf only that overlaps the padding sends its gradient to its first
    tap on the input (PyTorch), never to the padding."""
    x = np.full((1, 1, 3, 3), -np.inf)
    args = ((3, 3), 1, 1)
    out_t, dx_t, g = torch_forward_backward(torch, "MaxPool2d", args, {}, x,
                                            np.random.default_rng(0))
    for layout in ("channels_first", "channels_last"):
        out, dx = jaxconv_forward_backward("MaxPool2d", args, {}, x, g, layout)
        np.testing.assert_array_equal(out, out_t)
        np.testing.assert_array_equal(dx, dx_t)
    assert dx_t[0, 0, 0, 0] == g[0, 0, :2, :2].sum()   # the four windows around (0, 0)


def test_window_of_padding_only_as_torch(torch):
    """Dilation can leave a window with no tap on the input (pool 2, dilation 2, pad 1
    over one element): -inf out, and its gradient goes nowhere, as in torch."""
    x = np.array([[[5.0]]])
    out_t, dx_t, g = torch_forward_backward(torch, "MaxPool1d", (2, 1, 1, 2), {}, x,
                                            np.random.default_rng(0))
    out, dx = jaxconv_forward_backward("MaxPool1d", (2, 1, 1, 2), {}, x, g, "channels_first")
    assert out_t.tolist() == [[[-np.inf]]] and dx_t.tolist() == [[[0.0]]]
    np.testing.assert_array_equal(out, out_t)
    np.testing.assert_array_equal(dx, dx_t)


AVG_ENTRIES = [e for e in TORCH_MODULE_INPUTS + MORE_CONFIGS if "Avg" in e[0]][::3]


@pytest.mark.parametrize("module, args, kwargs, shape, desc", AVG_ENTRIES, ids=_ids(AVG_ENTRIES))
def test_avg_pool_inf_and_nan_as_torch(torch, module, args, kwargs, shape, desc):
    """inf, -inf and NaN propagate to exactly the windows that hold them (inf - inf
    is NaN), as in torch; the gradient does not depend on x."""
    rng = np.random.default_rng(_seed(module, desc) + 2)
    x = rng.standard_normal(shape)
    x[rng.random(shape) < 0.05] = -np.inf
    x[rng.random(shape) < 0.05] = np.inf
    x[rng.random(shape) < 0.03] = np.nan
    out_t, dx_t, g = torch_forward_backward(torch, module, args, kwargs, x, rng)
    out, dx = jaxconv_forward_backward(module, args, kwargs, x, g, "channels_first")
    np.testing.assert_array_equal(np.isnan(out), np.isnan(out_t))
    np.testing.assert_array_equal(np.isinf(out), np.isinf(out_t))
    finite = np.isfinite(out_t)
    assert rel_error(out[finite], out_t[finite]) < 1e-10
    assert rel_error(dx, dx_t) < 1e-10
