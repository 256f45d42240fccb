"""Softmax (cross-entropy) and multiclass SVM (hinge) losses with hand-derived
backwards.

Notation: scores s ``(N, K)``, integer labels y ``(N,)``, the loss a scalar mean
over the N samples, g its (scalar) upstream gradient.

Labels outside ``[0, K)``: a ValueError when they are concrete; under ``jit``
(or ``vmap``) they cannot be inspected, so the loss and every gradient become NaN
instead of a finite wrong number (an out-of-range index would otherwise be
silently clamped or wrapped by the gather).

Low precision: bfloat16/float16 scores are computed in float32; the loss and
the gradient come back in the scores' dtype.
"""
from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from jaxconv import _checks
from jaxconv._norm import accumulation_dtype
from jaxconv._vjp import custom_vjp_op


def loss_inputs(scores, y, *, op):
    """Validate a loss's scores and labels (trace time; the label range too when
    the labels are concrete, on the original integers before any cast)."""
    scores = _checks.array(op, "scores", scores)
    if scores.ndim != 2:
        raise ValueError(f"{op}: scores must be 2-D (N, num_classes), got "
                         f"scores.shape={tuple(scores.shape)}")
    y = _checks.labels(op, "y", y, num_classes=scores.shape[1], shape=(scores.shape[0],),
                       context=f"scores.shape={tuple(scores.shape)}")
    return scores, y


def nan_unless_valid(y, num_classes, dtype):
    """A scalar: 1 when every label is in ``[0, num_classes)``, NaN otherwise."""
    valid = jnp.all((y >= 0) & (y < num_classes))
    return jnp.where(valid, jnp.ones((), dtype), jnp.full((), jnp.nan, dtype))


@dataclasses.dataclass(frozen=True)
class LossConfig:
    margin: float = 1.0   # svm_loss only


# --- softmax ----------------------------------------------------------------------

def _softmax_fwd(c: LossConfig, scores, y):
    acc = accumulation_dtype(scores.dtype)
    s = scores.astype(acc)
    shifted = s - s.max(axis=1, keepdims=True)         # stable for huge scores
    e = jnp.exp(shifted)                                # one exp per score, reused for p
    z = e.sum(axis=1, keepdims=True)
    picked = jnp.take_along_axis(shifted, y[:, None], axis=1, mode="clip") - jnp.log(z)
    valid = nan_unless_valid(y, s.shape[1], acc)
    loss = -picked.mean() * valid
    return loss.astype(scores.dtype), (e / z, y, valid)


def _softmax_primal(c: LossConfig, scores, y):
    return _softmax_fwd(c, scores, y)[0]


def _softmax_bwd(c: LossConfig, residuals, g):
    probs, y, valid = residuals
    one_hot = jax.nn.one_hot(y, probs.shape[1], dtype=probs.dtype)
    scale = g.astype(probs.dtype) * valid / probs.shape[0]
    return (probs - one_hot) * scale, None


_softmax_loss = custom_vjp_op(_softmax_primal, _softmax_fwd, _softmax_bwd)


def softmax_loss(scores, y):
    """Mean softmax cross-entropy with a hand-derived backward.

    Args:
      scores: ``(N, K)`` floating, unnormalised class scores.
      y: ``(N,)`` integer labels in ``[0, K)``; they get no gradient.

    Returns:
      Scalar of scores' dtype: ``-(1/N) sum_n log softmax(s_n)[y_n]``, computed
      with the maximum subtracted, so scores like ``1e4`` do not overflow.

    Backward, with ``p = softmax(s)`` row-wise::

      ds = g * (p - onehot(y)) / N

    Residuals: the probabilities p (``(N, K)``, float32 or wider) and y.

    Same as ``torch.nn.functional.cross_entropy(scores, y)`` (mean reduction).
    """
    scores, y = loss_inputs(scores, y, op="softmax_loss")
    return _softmax_loss(LossConfig(), scores, y)


# --- multiclass SVM ---------------------------------------------------------------

def svm_config(margin, op="svm_loss"):
    return LossConfig(_checks.finite_real(op, "margin", margin, low=0.0))


def _svm_fwd(c: LossConfig, scores, y):
    acc = accumulation_dtype(scores.dtype)
    s = scores.astype(acc)
    correct = jnp.take_along_axis(s, y[:, None], axis=1, mode="clip")
    is_label = jnp.arange(s.shape[1]) == y[:, None]
    margins = s - correct + c.margin
    # The hinge's kink counts as flat; ~(m <= 0), not m > 0, keeps a NaN score
    # in the sum, so the loss is NaN (as NumPy's maximum gives) rather than a finite 0.
    active = ~(margins <= 0) & ~is_label
    valid = nan_unless_valid(y, s.shape[1], acc)
    loss = jnp.where(active, margins, 0).sum() / s.shape[0] * valid
    return loss.astype(scores.dtype), (active, y, valid)


def _svm_primal(c: LossConfig, scores, y):
    return _svm_fwd(c, scores, y)[0]


def _svm_bwd(c: LossConfig, residuals, g):
    active, y, valid = residuals
    scale = g.astype(valid.dtype) * valid / active.shape[0]
    # 0 * valid: NaN everywhere when a label is out of range, as the loss is. The
    # label column gets minus the row's sum by a scatter-add: counting the mask per
    # row instead (an integer reduction on XLA:CPU) made the backward 1.5x autodiff's.
    ds = jnp.where(active, scale, 0 * valid)
    return ds.at[jnp.arange(ds.shape[0]), y].add(-ds.sum(axis=1), mode="drop"), None


_svm_loss = custom_vjp_op(_svm_primal, _svm_fwd, _svm_bwd)


def svm_loss(scores, y, *, margin=1.0):
    """Mean multiclass SVM (hinge) loss, CS231n's, with a hand-derived backward.

    Args:
      scores: ``(N, K)`` floating.
      y: ``(N,)`` integer labels in ``[0, K)``; they get no gradient.
      margin: static float ``>= 0`` (CS231n's ``delta``).

    Returns:
      Scalar of scores' dtype: ``(1/N) sum_n sum_{j != y_n} max(0, s_nj - s_ny_n + margin)``.

    Backward, with ``a_nj = [s_nj - s_ny_n + margin > 0]`` for ``j != y_n``::

      ds_nj = g a_nj / N  (j != y_n)      ds_ny_n = -g (sum_j a_nj) / N

    A margin of exactly 0 counts as inactive (derivative 0 at the kink).

    Residuals: the boolean mask a (``(N, K)``, one byte each) and y.

    PyTorch's ``multi_margin_loss`` differs: it also divides by K.
    """
    scores, y = loss_inputs(scores, y, op="svm_loss")
    return _svm_loss(svm_config(margin), scores, y)
