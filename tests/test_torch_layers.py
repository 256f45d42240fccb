"""Forward values and gradients against PyTorch in float64: batch norm (train
and eval, running statistics converted between the conventions), layer norm,
group norm, cross-entropy."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxconv as jc
from _util import randn, to_nchw, to_nhwc

TOL = dict(rtol=1e-10, atol=1e-12)


def torch_forward_and_grads(torch, f, arrays, g):
    """``f(*tensors)`` and the gradients of ``sum(f * g)`` w.r.t. every tensor."""
    tensors = [torch.tensor(np.asarray(a), requires_grad=True) for a in arrays]
    out = f(*tensors)
    (out * torch.tensor(np.asarray(g))).sum().backward()
    return out.detach().numpy(), [t.grad.numpy() for t in tensors]


def jax_forward_and_grads(f, arrays, g):
    out, pull = jax.vjp(f, *arrays)
    return np.asarray(out), [np.asarray(d) for d in pull(jnp.asarray(g))]


def assert_same(jax_result, torch_result):
    np.testing.assert_allclose(jax_result[0], torch_result[0], **TOL)
    for ours, theirs in zip(jax_result[1], torch_result[1], strict=True):
        np.testing.assert_allclose(ours, theirs, **TOL)


@pytest.mark.parametrize("shape", [(6, 4), (3, 4, 2, 3)], ids=["ND", "spatial"])
def test_batch_norm_train_matches_torch(torch, shape):
    F = torch.nn.functional
    x, gamma, beta = randn(0, *shape), randn(1, 4), randn(2, 4)
    rm, rv, g = randn(3, 4), 0.5 + np.abs(randn(4, 4)), randn(5, *shape)
    momentum, eps = 0.9, 1e-3
    m = x.size // 4                                  # elements per statistic

    ours = jc.batch_norm(x, gamma, beta, rm, rv, train=True, momentum=momentum, eps=eps)
    result = jax_forward_and_grads(
        lambda x, gamma, beta: jc.batch_norm(x, gamma, beta, rm, rv, train=True,
                                             momentum=momentum, eps=eps)[0], (x, gamma, beta), g)
    t_mean, t_var = torch.tensor(rm), torch.tensor(rv)    # updated in place by torch
    theirs = torch_forward_and_grads(
        torch, lambda x, gamma, beta: F.batch_norm(x, t_mean, t_var, gamma, beta, training=True,
                                                   momentum=1 - momentum, eps=eps),
        (x, gamma, beta), g)
    assert_same(result, theirs)
    # Running statistics: PyTorch's momentum weights the new value (1 - ours) and
    # it stores the UNBIASED batch variance; converted, the two agree.
    np.testing.assert_allclose(ours[1], t_mean.numpy(), **TOL)
    np.testing.assert_allclose(ours[2] - momentum * rv,
                               (t_var.numpy() - momentum * rv) * (m - 1) / m, **TOL)
    assert not np.allclose(ours[2], t_var.numpy())     # the conventions do differ


def test_batch_norm_eval_matches_torch(torch):
    x, gamma, beta = randn(0, 3, 4, 2, 2), randn(1, 4), randn(2, 4)
    rm, rv, g = randn(3, 4), 0.5 + np.abs(randn(4, 4)), randn(5, 3, 4, 2, 2)
    result = jax_forward_and_grads(
        lambda x, gamma, beta: jc.batch_norm(x, gamma, beta, rm, rv, train=False)[0],
        (x, gamma, beta), g)
    theirs = torch_forward_and_grads(
        torch, lambda x, gamma, beta: torch.nn.functional.batch_norm(
            x, torch.tensor(rm), torch.tensor(rv), gamma, beta, training=False, eps=1e-5),
        (x, gamma, beta), g)
    assert_same(result, theirs)


def test_layer_norm_matches_torch(torch):
    x, gamma, beta, g = randn(0, 3, 2, 5), randn(1, 2, 5), randn(2, 2, 5), randn(3, 3, 2, 5)
    result = jax_forward_and_grads(lambda *a: jc.layer_norm(*a, eps=1e-4), (x, gamma, beta), g)
    theirs = torch_forward_and_grads(
        torch, lambda x, gamma, beta: torch.nn.functional.layer_norm(x, (2, 5), gamma, beta,
                                                                     eps=1e-4),
        (x, gamma, beta), g)
    assert_same(result, theirs)


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
def test_group_norm_matches_torch(torch, layout):
    x, gamma, beta, g = randn(0, 2, 6, 3, 2), randn(1, 6), randn(2, 6), randn(3, 2, 6, 3, 2)
    theirs = torch_forward_and_grads(
        torch, lambda x, gamma, beta: torch.nn.functional.group_norm(x, 3, gamma, beta, eps=1e-5),
        (x, gamma, beta), g)
    if layout == "NHWC":
        out, (dx, dgamma, dbeta) = jax_forward_and_grads(
            lambda *a: jc.group_norm(*a, groups=3, layout="NHWC"),
            (to_nhwc(x), gamma, beta), to_nhwc(g))
        result = to_nchw(out), [to_nchw(dx), dgamma, dbeta]
    else:
        result = jax_forward_and_grads(lambda *a: jc.group_norm(*a, groups=3), (x, gamma, beta), g)
    assert_same(result, theirs)


def test_softmax_loss_matches_torch_cross_entropy(torch):
    scores, y = 3 * randn(0, 6, 4), np.array([0, 3, 1, 1, 2, 3])
    loss, ds = jax.value_and_grad(jc.softmax_loss)(scores, y)
    t_scores = torch.tensor(scores, requires_grad=True)
    t_loss = torch.nn.functional.cross_entropy(t_scores, torch.tensor(y))
    t_loss.backward()
    np.testing.assert_allclose(loss, t_loss.item(), **TOL)
    np.testing.assert_allclose(ds, t_scores.grad.numpy(), **TOL)
