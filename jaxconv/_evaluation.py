"""Evaluation on the device for the Solver: accuracy in jit-compiled batches of
one shape (the last batch padded, the padding masked), each sharded over the
mesh, so a whole split compiles once and never leaves the devices but as one
count per batch."""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P

from jaxconv._devices import Placement, host


def accuracy(placement: Placement, model, params, state, X: np.ndarray, y: np.ndarray,
             batch_size: int) -> float:
    """Fraction of ``X`` that ``model.scores`` classifies as ``y`` (validated
    NumPy arrays, ``len(X) > 0``), in batches of ``batch_size`` rounded up to a
    multiple of the device count."""
    n, devices = len(X), placement.mesh.size
    size = -(-batch_size // devices) * devices
    size = min(size, -(-n // devices) * devices)
    correct = 0
    for start in range(0, n, size):
        xb, yb = X[start:start + size], y[start:start + size]
        valid = np.arange(size) < len(xb)
        if len(xb) < size:  # pad to one shape; the padding is masked out
            xb = np.concatenate([xb, np.zeros((size - len(xb),) + xb.shape[1:], xb.dtype)])
            yb = np.concatenate([yb, np.zeros(size - len(yb), yb.dtype)])
        count = _count_correct(params, state, placement.global_batch(xb),
                               placement.global_batch(yb), placement.global_batch(valid),
                               model=model, mesh=placement.mesh)
        correct += int(host(count))
    return correct / n


@functools.partial(jax.jit, static_argnames=("model", "mesh"))
def _count_correct(params, state, Xb, yb, valid, *, model, mesh):
    predicted = jnp.argmax(model.scores(params, state, Xb), axis=1)
    count = jnp.sum((predicted == yb) & valid)
    return jax.lax.with_sharding_constraint(count, NamedSharding(mesh, P()))


def subset(rng: np.random.Generator, n: int, size: int | None) -> np.ndarray:
    """A fixed random subset of ``range(n)`` (all of it when ``size`` is None or >= n)."""
    if size is None or size >= n:
        return np.arange(n)
    return np.sort(rng.permutation(n)[:size])
