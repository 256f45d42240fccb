"""PyTorch's own module test configurations for Conv1d/2d/3d and ConvTranspose1d/2d/3d,
transcribed: forward and the gradients of x, w and b equal torch's in float64 to
1e-10 (relative to the largest entry), for every impl, channels-first and -last.

Source: ``module_inputs_torch_nn_ConvNd`` in torch 2.13's
``torch/testing/_internal/common_modules.py`` (line ~1013), called by the
ModuleInfo entries of ``torch.nn.Conv{1,2,3}d``, ``ConvTranspose{1,2,3}d`` and their
``Lazy`` variants (the same inputs, C_in inferred)::

    conv_kwargs_list = [{}] if transposed else [{}, {'padding': 'same'}]
    kernel_size, C_in, C_out = 3, 4, 5
    input_no_batch_shape = (C_in,) + tuple(i + 3 for i in range(N))
    input_batch_shape = (2,) + input_no_batch_shape
    for with_batch, conv_kwargs in itertools.product([True, False], conv_kwargs_list)

All use zeros padding and the module defaults (bias, stride 1, dilation 1, groups 1).
jaxconv's ops take a batch axis: a "no_batch_dim" input runs as a batch of one,
against torch's module on the unbatched input (whose reference is exactly that).
"""
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxconv as jc
from _util import randn

IMPLS = ("xla", "im2col", "naive")
RUNS = list(itertools.product(IMPLS, (False, True)))      # (impl, channels-last)
KERNEL, C_IN, C_OUT = 3, 4, 5

# (N spatial dims, transposed, with_batch, conv kwargs): every entry, in torch's order
CONFIGS = [(n, transposed, with_batch, kwargs)
           for n in (1, 2, 3) for transposed in (False, True)
           for with_batch, kwargs in itertools.product(
               [True, False], [{}] if transposed else [{}, {"padding": "same"}])]


def _id(config):
    n, transposed, with_batch, kwargs = config
    kind = f"ConvTranspose{n}d" if transposed else f"Conv{n}d"
    return "-".join([kind] + (["no_batch_dim"] if not with_batch else [])
                    + [f"{k}={v}" for k, v in kwargs.items()])


def _to_last(a, weight=False):
    """Channels-first image -> channels-last; weight (O, I, *K) -> (*K, I, O)."""
    nd = a.ndim - 2
    return jnp.transpose(a, (*range(2, 2 + nd), 1, 0)) if weight else jnp.moveaxis(a, 1, -1)


def _all_impls_and_layouts(n, transposed, kwargs):
    """One jitted function per configuration: forward and VJP of every impl in both
    layouts, results returned channels-first."""
    op = jc.conv_transpose if transposed else jc.conv
    hyper = {"pad": "SAME"} if kwargs.get("padding") == "same" else {}
    last = ("NWC", "NHWC", "NDHWC")[n - 1]

    def channels_first_op(impl, channels_last):
        if not channels_last:
            return lambda x, w, b: op(x, w, b, impl=impl, **hyper)
        return lambda x, w, b: jnp.moveaxis(           # the layout moves are autodiffed
            op(_to_last(x), _to_last(w, True), b, layout=last, impl=impl, **hyper), -1, 1)

    def run(x, w, b, g):
        results = []
        for impl, channels_last in RUNS:
            out, pull = jax.vjp(channels_first_op(impl, channels_last), x, w, b)
            results.append((out, *pull(g)))
        return results
    # LLVM's optimizations take half of the compile time of these one-off programs
    return jax.jit(run, compiler_options={"xla_backend_optimization_level": 0})


def _close(got, expected, what):
    expected = np.asarray(expected)
    err = np.max(np.abs(np.asarray(got) - expected)) / np.max(np.abs(expected))
    assert got.shape == expected.shape and err <= 1e-10, (what, err)


@pytest.mark.parametrize("config", CONFIGS, ids=[_id(c) for c in CONFIGS])
def test_torch_module_config(config, torch):
    n, transposed, with_batch, kwargs = config
    torch.manual_seed(0)
    module_cls = getattr(torch.nn, f"ConvTranspose{n}d" if transposed else f"Conv{n}d")
    module = module_cls(C_IN, C_OUT, KERNEL, **kwargs).double()
    shape = (2,) * with_batch + (C_IN,) + tuple(i + 3 for i in range(n))
    x_t = torch.tensor(randn(n, *shape), requires_grad=True)
    out_t = module(x_t)
    g = randn(10 + n, *out_t.shape)
    (out_t * torch.tensor(g)).sum().backward()
    expected = [t.detach().numpy() for t in (out_t, x_t.grad, module.weight.grad, module.bias.grad)]
    batch = (lambda a: a) if with_batch else (lambda a: a[None])
    w, b = module.weight.detach().numpy(), module.bias.detach().numpy()
    runs = _all_impls_and_layouts(n, transposed, kwargs)(batch(x_t.detach().numpy()), w, b,
                                                         batch(g))
    assert len(runs) == len(RUNS) == 6
    for (impl, channels_last), got in zip(RUNS, runs):
        for name, a, e in zip(("out", "dx", "dw", "db"), got, expected):
            _close(a if with_batch or name in ("dw", "db") else a[0], e,
                   (impl, channels_last, name))
