"""The fully connected layer and the ReLU, with hand-derived backwards.

Notation: x ``(N, d1, ..., dk)`` is read as the matrix X ``(N, D)``,
``D = d1 * ... * dk`` (row-major, as CS231n's ``x.reshape(N, -1)``); w ``(D, M)``;
b ``(M,)``; g the upstream gradient.
"""
from __future__ import annotations

import dataclasses
import math

import jax.numpy as jnp
from jax import lax

from jaxconv import _checks
from jaxconv._vjp import custom_vjp_op


@dataclasses.dataclass(frozen=True)
class DenseConfig:
    """No hyperparameters: the ops take their shapes from the arrays."""


_CONFIG = DenseConfig()


# --- affine ---------------------------------------------------------------------

def affine_inputs(x, w, b, *, op="affine"):
    """Validate affine's inputs (trace time); returns them as JAX arrays."""
    x = _checks.array(op, "x", x)
    w = _checks.array(op, "w", w, ndim=2)
    b = _checks.array(op, "b", b, ndim=1)
    shapes = f"x.shape={tuple(x.shape)}, w.shape={tuple(w.shape)}, b.shape={tuple(b.shape)}"
    if x.ndim < 2:
        raise ValueError(f"{op}: x must be (N, d1, ..., dk) with k >= 1, got {shapes}")
    features = math.prod(x.shape[1:])
    if w.shape[0] != features:
        raise ValueError(f"{op}: x has {features} features per sample (the product of "
                         f"x.shape[1:]) but w expects {w.shape[0]} ({shapes})")
    if b.shape[0] != w.shape[1]:
        raise ValueError(f"{op}: b must have shape ({w.shape[1]},), one per output, "
                         f"got {shapes}")
    _checks.same_dtype(op, x=x, w=w, b=b)
    return x, w, b


def _rows(x):
    """x as the matrix X ``(N, D)``; explicit D, since ``reshape(0, -1)`` is ambiguous."""
    return x.reshape(x.shape[0], math.prod(x.shape[1:]))


def _affine_primal(c: DenseConfig, x, w, b):
    return _rows(x) @ w + b


def _affine_fwd(c: DenseConfig, x, w, b):
    return _affine_primal(c, x, w, b), (x, w)


def _affine_bwd(c: DenseConfig, residuals, g):
    x, w = residuals
    return (g @ w.T).reshape(x.shape), _weight_grad(_rows(x), g), g.sum(axis=0)


def _weight_grad(rows, g):
    """``dw = X.T @ g``, ``(D, M)``. For a tall float32 dw (D >= 8 M, N >= 32) XLA:CPU
    runs this GEMM alone 1.2-10x slower than ``(g.T @ X).T`` with the transpose kept
    out of the dot by a barrier ((64, 3072) x (64, 10) 0.76 -> 0.10 ms). But inside a
    training step XLA fuses that transpose into the optimizer's updates, which then
    read dw column by column: the adam step of the ThreeLayerConvNet (dw (8192, 100))
    took 1.12x the time, of a FullyConnectedNet [100, 100] (dw (3072, 100)) 1.31x. So
    the split form only where dw fits in L2 (512 KiB; a (3072, 10) classifier's step 0.85x),
    where reading it by columns costs little (experiments/affine_weight_grad.py,
    AMD EPYC, one core). Other shapes, float64 and other backends: the single dot."""
    (n, d), m = rows.shape, g.shape[1]
    if rows.dtype != jnp.float32 or n < 32 or d < 8 * m or d * m * 4 > 512 * 1024:
        return rows.T @ g
    return lax.platform_dependent(
        rows, g, cpu=lambda rows, g: lax.optimization_barrier(g.T @ rows).T,
        default=lambda rows, g: rows.T @ g)


_affine = custom_vjp_op(_affine_primal, _affine_fwd, _affine_bwd)


def affine(x, w, b):
    """Fully connected layer ``out = X @ w + b`` with a hand-derived backward.

    Args:
      x: ``(N, d1, ..., dk)``, flattened row-major to ``(N, D)``.
      w: ``(D, M)``.
      b: ``(M,)``.

    Returns:
      ``(N, M)``; ``(0, M)`` for an empty batch (as PyTorch), and ``b`` on every
      row when ``D = 0``.

    Backward::

      dx = (g @ w.T).reshape(x.shape)      dw = X.T @ g      db = sum_n g[n]

    Residuals: x and w themselves (the inputs, alive anyway); nothing derived.
    PyTorch's ``nn.Linear`` stores the weight as ``(M, D)`` and computes
    ``x @ W.T``; here w is ``(D, M)``, as in CS231n.
    """
    x, w, b = affine_inputs(x, w, b)
    return _affine(_CONFIG, x, w, b)


# --- relu -----------------------------------------------------------------------

def relu_input(x, *, op="relu"):
    """Validate relu's input (trace time); returns it as a JAX array."""
    return _checks.array(op, "x", x)


def _relu_primal(c: DenseConfig, x):
    # maximum, not where(x > 0, x, 0): a NaN must come out as NaN, or a diverged
    # layer would hide behind the ReLU and the loss would stay finite.
    return jnp.maximum(x, jnp.zeros((), x.dtype))


def _relu_fwd(c: DenseConfig, x):
    return _relu_primal(c, x), x > 0


def _relu_bwd(c: DenseConfig, positive, g):
    return (jnp.where(positive, g, jnp.zeros((), g.dtype)),)


_relu = custom_vjp_op(_relu_primal, _relu_fwd, _relu_bwd)


def relu(x):
    """Rectified linear unit ``max(x, 0)`` with a hand-derived backward.

    Args:
      x: any shape, floating.

    Returns:
      Same shape and dtype as x; NaN stays NaN (as in ``jax.nn.relu`` and PyTorch).

    Backward: ``dx = g * [x > 0]``; the derivative at ``x == 0`` is taken as 0
    (as ``jax.nn.relu`` and PyTorch do).

    Residuals: the boolean mask ``x > 0`` (one byte per element) instead of a
    float copy of x or the output.
    """
    return _relu(_CONFIG, relu_input(x))
