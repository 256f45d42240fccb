"""Inverted dropout with a hand-derived backward.

The mask is :func:`keep_mask`, the very draw ``jaxconv.reference.dropout`` makes,
so the same key gives the same mask in both, in every call, and whether or not
``jax_enable_x64`` is on (the uniforms are always drawn in float32;
``jax.random.bernoulli`` would draw them in the default float dtype, so float64
under x64, and give another mask).
"""
from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from jaxconv import _checks
from jaxconv._vjp import custom_vjp_op


@dataclasses.dataclass(frozen=True)
class DropoutConfig:
    keep_prob: float


def _check_key(op, key):
    if not hasattr(key, "dtype") or not hasattr(key, "shape"):
        raise TypeError(f"{op}: key must be a PRNG key (jax.random.key or "
                        f"jax.random.PRNGKey), got {type(key).__name__}")
    if jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key):
        if key.shape != ():
            raise ValueError(f"{op}: key must be a single key, got key.shape={tuple(key.shape)}")
    elif key.dtype != jnp.uint32 or key.ndim != 1:
        raise TypeError(f"{op}: key must be a typed key (jax.random.key) or a legacy uint32 "
                        f"key (jax.random.PRNGKey), got key.dtype={key.dtype}, "
                        f"key.shape={tuple(key.shape)}")
    elif tuple(key.shape) != _LEGACY_KEY_SHAPE:
        raise ValueError(f"{op}: a legacy uint32 key (jax.random.PRNGKey) has shape "
                         f"{_LEGACY_KEY_SHAPE}, got key.shape={tuple(key.shape)}")
    return key


# The default PRNG implementation's raw key shape ((2,) for threefry), from shapes alone.
_LEGACY_KEY_SHAPE = tuple(jax.eval_shape(lambda: jax.random.PRNGKey(0)).shape)


def dropout_config(x, key, *, keep_prob, train, op="dropout"):
    """Validate dropout's inputs (trace time); the config is None when the op is
    the identity (``train=False`` or ``keep_prob == 1``)."""
    x = _checks.array(op, "x", x)
    key = _check_key(op, key)
    keep_prob = _checks.real(op, "keep_prob", keep_prob, low=0.0, high=1.0, low_open=True)
    if not isinstance(train, bool):
        raise TypeError(f"{op}: train must be a Python bool (static), got {train!r}")
    config = DropoutConfig(keep_prob) if train and keep_prob < 1.0 else None
    return x, key, config


def keep_mask(key, keep_prob: float, shape):
    """Boolean mask, True with probability ``keep_prob``, independent of x64 mode."""
    return jax.random.uniform(key, shape, jnp.float32) < keep_prob


def _mask(c: DropoutConfig, key, shape):
    return keep_mask(key, c.keep_prob, shape)


def _masked(c: DropoutConfig, key, v):
    """``v * mask / keep_prob``; a product, not ``where(mask, v, 0)``, so that a
    dropped NaN stays NaN (as in PyTorch) and a diverged layer cannot hide."""
    return v * _mask(c, key, v.shape).astype(v.dtype) / c.keep_prob


def _dropout_primal(c: DropoutConfig, x, key):
    return _masked(c, key, x)


def _dropout_fwd(c: DropoutConfig, x, key):
    return _dropout_primal(c, x, key), key


def _dropout_bwd(c: DropoutConfig, key, g):
    # The mask is redrawn from the key: 8 bytes kept instead of one per element.
    return _masked(c, key, g), None


_dropout = custom_vjp_op(_dropout_primal, _dropout_fwd, _dropout_bwd)


def dropout(x, key, *, keep_prob, train=True):
    """Inverted dropout with a hand-derived backward.

    Args:
      x: any shape, floating.
      key: a PRNG key, typed (``jax.random.key``) or legacy uint32
        (``jax.random.PRNGKey``); it gets no gradient.
      keep_prob: static float in ``(0, 1]``, the probability of KEEPING a unit
        (CS231n's ``p``; PyTorch's ``p`` is the drop probability ``1 - keep_prob``).
      train: static bool; ``False`` makes the op the identity, as does
        ``keep_prob == 1``.

    Returns:
      x's shape and dtype: ``x * mask / keep_prob`` with
      ``mask = keep_mask(key, keep_prob, x.shape)`` (float32 uniforms ``< keep_prob``).

    Backward: ``dx = g * mask / keep_prob``.

    Residuals: the key only; the backward redraws the mask from it (a little
    recomputation instead of a mask as large as x). The same key always gives
    the same mask, here and in ``jaxconv.reference.dropout``; PyTorch's masks
    come from its own generator and cannot be reproduced.
    """
    x, key, config = dropout_config(x, key, keep_prob=keep_prob, train=train)
    if config is None:
        return x
    return _dropout(config, x, key)
