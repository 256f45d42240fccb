"""Every registered op with a PyTorch oracle, every check case, float64: the
forward outputs and the gradients (of one random cotangent) equal PyTorch's."""
import jax
import numpy as np
import pytest

from jaxconv._registry import torch_args
from _registry_cases import bound, params, results

TOL = dict(rtol=1e-13, atol=1e-14)


@pytest.mark.parametrize("name, case", params(torch=True))
def test_forward_and_gradients_equal_torch(torch, name, case):
    spec, c, _, _, _, diff = bound(name, case)
    r = results(name, case)
    args = torch_args(torch, spec, c.args)
    outs = spec.torch(torch, *args, **c.hyper)
    outs = list(outs) if isinstance(outs, (tuple, list)) else [outs]
    g = jax.tree.leaves(r["g"])
    carrying = [k for k in range(len(outs)) if k not in spec.no_grad_outputs]
    torch.autograd.backward([outs[k] for k in carrying], [torch.tensor(g[k]) for k in carrying])
    for ours, theirs in zip(jax.tree.leaves(r["out"]), outs, strict=True):
        np.testing.assert_allclose(ours, theirs.detach().numpy(), **TOL)
    array_idx = spec.split(c.args)[0]
    for k, i in enumerate(diff):
        tensor = args[array_idx[i]]
        theirs = np.zeros(tensor.shape) if tensor.grad is None else tensor.grad.numpy()
        np.testing.assert_allclose(r["grads"][k], theirs, **TOL,
                                   err_msg=f"{name} {case}: {spec.array_names(c.args)[i]}")
