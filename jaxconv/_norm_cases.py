"""Registry declarations of the normalizations (``_norm.py``)."""
import numpy as np

from jaxconv import _norm, reference
from jaxconv._registry import (Bench, Case, Invalid, channels_first, channels_last, declare,
                               normal, positive)

_X, _X4 = np.ones((4, 3)), np.ones((2, 4, 3, 3))
_V3, _V4 = np.ones(3), np.ones(4)


# --- batch_norm ---------------------------------------------------------------------------

def _bn_args(seed, shape, axis=1):
    d = shape[axis]
    return (normal(seed, *shape), normal(seed + 1, d), normal(seed + 2, d),
            normal(seed + 3, d), positive(seed + 4, d))


def _bn_cases():
    out = []
    for seed, shape, axis, modes, what, extra in (
            (10, (5, 3), 1, (True, False), "(N, D)", {}),
            (20, (3, 3, 2, 2), 1, (True, False), "NCHW", {}),
            (30, (3, 2, 2, 3), -1, (True,), "NHWC axis=-1", {}),
            (40, (3, 4, 2, 3), 1, (True, False), "NCHW momentum 0.8 eps 1e-3",
             dict(momentum=0.8, eps=1e-3))):
        for train in modes:
            out.append(Case(f"{what} {'train' if train else 'eval'}",
                            _bn_args(seed, shape, axis), dict(train=train, axis=axis, **extra),
                            transforms=(seed, train) in ((10, True), (20, False))))
    return out


def _torch_batch_norm(torch, x, gamma, beta, running_mean, running_var, *, train,
                      momentum=0.9, eps=1e-5, axis=1):
    xc = x.movedim(axis, 1)
    rm, rv = running_mean.detach(), running_var.detach()
    if train:
        new_mean, new_var = rm.clone(), rv.clone()          # updated in place by torch
        out = torch.nn.functional.batch_norm(xc, new_mean, new_var, gamma, beta, training=True,
                                             momentum=1 - momentum, eps=eps)
        # PyTorch weights the new value by its momentum (1 - ours) and stores the
        # UNBIASED batch variance; converted to CS231n's biased convention:
        m = x.numel() // x.shape[axis]
        new_var = momentum * rv + (new_var - momentum * rv) * (m - 1) / m
    else:
        # F.batch_norm does not differentiate the running statistics (a RuntimeError
        # if they require grad): the eval formula, written in torch ops, does.
        shape = [-1 if i == 1 else 1 for i in range(x.ndim)]
        out = ((xc - running_mean.reshape(shape)) / torch.sqrt(running_var.reshape(shape) + eps)
               * gamma.reshape(shape) + beta.reshape(shape))
        new_mean, new_var = rm, rv
    return out.movedim(1, axis), new_mean, new_var


def _bn_bench(quick):
    shape = (8, 8, 16, 16) if quick else (64, 32, 32, 32)
    return [Bench(f"batch_norm train {shape}", _bn_args(1, shape), dict(train=True))]


def _bn(x=_X, gamma=_V3, beta=_V3, rm=_V3, rv=_V3):
    return (x, gamma, beta, rm, rv)


def _bn_invalid():
    t = dict(train=True)
    return [
        Invalid("gamma", _bn(gamma=_V4), t, ValueError, r"batch_norm: gamma must have shape "
                r"\(3,\), got gamma\.shape=\(4,\).*x\.shape=\(4, 3\)"),
        Invalid("beta", _bn(beta=np.ones((1, 3))), t, ValueError,
                r"batch_norm: beta must have shape \(3,\)"),
        Invalid("running-mean", _bn(rm=_V4), t, ValueError, r"batch_norm: running_mean must "
                r"have shape \(3,\), got running_mean\.shape=\(4,\)"),
        Invalid("running-var", _bn(rv=np.ones(2)), dict(train=False), ValueError,
                r"batch_norm: running_var must have shape \(3,\)"),
        Invalid("spatial-gamma", _bn(x=_X4, gamma=_V3, beta=_V4, rm=_V4, rv=_V4), t, ValueError,
                r"gamma must have shape \(4,\).*x\.shape=\(2, 4, 3, 3\), axis=1"),
        Invalid("axis", _bn(), dict(train=True, axis=2), ValueError,
                r"batch_norm: axis=2 is out of range for x\.shape=\(4, 3\)"),
        Invalid("x-1d", _bn(x=_V3), t, ValueError, r"batch_norm: x must be at least 2-D"),
        Invalid("train-not-bool", _bn(), dict(train="yes"), TypeError,
                r"batch_norm: train must be a Python bool"),
        Invalid("momentum", _bn(), dict(train=True, momentum=1.5), ValueError,
                r"batch_norm: momentum must be in \[0\.0, 1\.0\]"),
        Invalid("eps", _bn(), dict(train=True, eps=0.0), ValueError,
                r"batch_norm: eps must be in \(0\.0, inf\)"),
        Invalid("gamma-dtype", _bn(gamma=_V3.astype(np.float32)), t, TypeError,
                r"batch_norm: operands must share one dtype"),
    ]


declare(
    _norm.batch_norm, reference.batch_norm,
    grads=("x", "gamma", "beta", "running_mean", "running_var"), no_grad_outputs=(1, 2),
    cases=_bn_cases, bench=_bn_bench, invalid=_bn_invalid, torch=_torch_batch_norm,
)


# --- layer_norm ---------------------------------------------------------------------------

def _ln_bench(quick):
    n, d = (8, 256) if quick else (64, 4096)
    return [Bench(f"layer_norm ({n}, {d})", (normal(1, n, d), normal(2, d), normal(3, d)))]


declare(
    _norm.layer_norm, reference.layer_norm, grads=("x", "gamma", "beta"),
    cases=lambda: [
        Case("x (3, 2, 3)", (normal(1, 3, 2, 3), normal(2, 2, 3), normal(3, 2, 3))),
        Case("x (3, 2, 5) eps 1e-4", (normal(4, 3, 2, 5), normal(5, 2, 5), normal(6, 2, 5)),
             dict(eps=1e-4), transforms=False),
    ],
    bench=_ln_bench,
    invalid=lambda: [
        Invalid("gamma", (np.ones((2, 3, 4)), np.ones(12), np.ones((3, 4))), {}, ValueError,
                r"layer_norm: gamma must have shape \(3, 4\), got gamma\.shape=\(12,\)"),
        Invalid("x-1d", (_V3, _V3, _V3), {}, ValueError, r"layer_norm: x must be at least 2-D"),
    ],
    torch=lambda torch, x, gamma, beta, *, eps=1e-5: torch.nn.functional.layer_norm(
        x, tuple(x.shape[1:]), gamma, beta, eps=eps),
)


# --- group_norm ---------------------------------------------------------------------------

def _torch_group_norm(torch, x, gamma, beta, *, groups, eps=1e-5, layout="NCHW"):
    out = torch.nn.functional.group_norm(channels_first(x, layout), groups, gamma, beta, eps=eps)
    return channels_last(out, layout)


def _gn_bench(quick):
    shape = (8, 8, 16, 16) if quick else (64, 32, 32, 32)
    return [Bench(f"group_norm groups 4 {shape}", (normal(1, *shape), normal(2, shape[1]),
                                                   normal(3, shape[1])), dict(groups=4))]


def _gn_invalid():
    return [
        Invalid("groups-divide", (_X4, _V4, _V4), dict(groups=3), ValueError,
                r"group_norm: groups=3 must be >= 1 and divide the 4 channels"
                r".*x\.shape=\(2, 4, 3, 3\)"),
        Invalid("groups-zero", (_X4, _V4, _V4), dict(groups=0), ValueError, r"group_norm: groups=0"),
        Invalid("groups-float", (_X4, _V4, _V4), dict(groups=2.0), TypeError,
                r"group_norm: groups must be an int"),
        Invalid("gamma", (_X4, _V3, _V4), dict(groups=2), ValueError,
                r"group_norm: gamma must have shape \(4,\), got gamma\.shape=\(3,\)"),
        Invalid("nhwc-channels", (_X4, _V4, _V4), dict(groups=1, layout="NHWC"), ValueError,
                r"group_norm: gamma must have shape \(3,\).*layout='NHWC'"),
        Invalid("layout", (_X4, _V4, _V4), dict(groups=2, layout="CHWN"), ValueError,
                r"group_norm: layout must be one of \('NCHW', 'NHWC'\), got 'CHWN'"),
        Invalid("rank", (_X, _V3, _V3), dict(groups=1), ValueError,
                r"group_norm: x must be 4-D, got x\.shape=\(4, 3\)"),
    ]


declare(
    _norm.group_norm, reference.group_norm, grads=("x", "gamma", "beta"),
    cases=lambda: [
        Case("NCHW groups 2", (normal(1, 2, 4, 2, 3), normal(2, 4), normal(3, 4)),
             dict(groups=2), transforms=False),
        Case("NHWC groups 3", (normal(4, 2, 2, 3, 6), normal(5, 6), normal(6, 6)),
             dict(groups=3, layout="NHWC")),
        Case("NCHW groups 6 (one channel each)", (normal(7, 2, 6, 3, 2), normal(8, 6),
                                                  normal(9, 6)), dict(groups=6),
             transforms=False),
    ],
    bench=_gn_bench, invalid=_gn_invalid, torch=_torch_group_norm,
)
