"""Device placement and feeding for the Solver: the mesh, the shardings, the
jit-compiled step, and which rows each process feeds.

* A 1-D ``jax.sharding.Mesh`` over ``jax.devices()`` with the axis ``"batch"``.
  Parameters, state and optimizer state are replicated; each batch is
  ``NamedSharding(mesh, P("batch"))``, so XLA splits the work and sums the
  gradients. Batch-norm statistics and dropout masks are those of the global
  batch, whatever the device count.
* One process: the training set lives on the device(s) and each step gathers
  its batch there (:func:`_step_indexed`), so Python does nothing per example
  and nothing per step but one dispatch.
* After ``jax.distributed.initialize()`` the same mesh spans every process's
  devices and each process feeds only its slice of every global batch
  (``jax.make_array_from_process_local_data``, :func:`_step_fed`).
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from jaxconv import _cpu_jit


class Placement:
    """Where the Solver's arrays live and how batches reach the devices.

    Args:
      X_train, y_train: the training set (NumPy, host memory).
      batch_size: the global batch, a multiple of the device count.
    """

    def __init__(self, X_train: np.ndarray, y_train: np.ndarray, batch_size: int):
        self.mesh = Mesh(np.array(jax.devices()), ("batch",))
        if batch_size % self.mesh.size:
            raise ValueError(f"Solver: batch_size={batch_size} must be a multiple of the "
                             f"{self.mesh.size} devices the batch is split over")
        self.batch_size = batch_size
        self.replicated = NamedSharding(self.mesh, P())
        self.batched = NamedSharding(self.mesh, P("batch"))
        self.multi_process = jax.process_count() > 1
        self.X_train, self.y_train = X_train, y_train
        self._on_device = None   # the training set on the devices, placed on first use

    def initial_state(self, seed: int, model, optimizer):
        """``(params, state, opt_state, key data)``, replicated."""
        return _initial_state(seed, model=model, optimizer=optimizer, mesh=self.mesh)

    def step(self, carry, key_data, perm, it: int, t: int, *, model, optimizer):
        """One update on batch ``perm[it * B:(it + 1) * B]``; ``t`` is the 1-based
        iteration (it seeds dropout). Returns ``(carry, loss)``; ``carry`` is donated."""
        statics = dict(model=model, optimizer=optimizer, mesh=self.mesh)
        if self.multi_process:
            rows = perm[it * self.batch_size:(it + 1) * self.batch_size]
            Xb, yb = self.global_batch(self.X_train[rows]), self.global_batch(self.y_train[rows])
            return _step_fed(carry, key_data, Xb, yb, t, **statics)
        if self._on_device is None:
            self._on_device = jax.device_put((self.X_train, self.y_train), self.replicated)
        X, y = self._on_device
        return _step_indexed(carry, key_data, X, y, perm, it, t, batch_size=self.batch_size,
                             **statics)

    def permutation(self, perm: np.ndarray):
        """An epoch's row order where :meth:`step` reads it (the device, in one process)."""
        perm = perm.astype(np.int32)
        return perm if self.multi_process else jax.device_put(perm, self.replicated)

    def global_batch(self, rows: np.ndarray) -> jax.Array:
        """A global batch, sharded on its first axis; each process gives its rows."""
        if not self.multi_process:
            return jax.device_put(rows, self.batched)
        start, stop = _local_rows(self.batched, rows.shape)
        return jax.make_array_from_process_local_data(self.batched, rows[start:stop], rows.shape)


def host(x) -> np.ndarray:
    """The value of a replicated array, also when other processes hold some devices."""
    return np.asarray(x.addressable_data(0))


def _local_rows(sharding, shape) -> tuple[int, int]:
    """The contiguous rows of a batch-sharded array that this process's devices hold."""
    indices = sharding.addressable_devices_indices_map(shape).values()
    starts = [(i[0].start or 0) for i in indices]
    stops = [shape[0] if i[0].stop is None else i[0].stop for i in indices]
    start, stop = min(starts), max(stops)
    if sum(b - a for a, b in zip(starts, stops)) != stop - start:
        raise ValueError("Solver: this process's devices do not hold a contiguous block of "
                         "the batch; order jax.devices() by process")
    return start, stop


# --- jit-compiled pieces (module level: compiled once per model/optimizer/mesh) --------

@functools.partial(jax.jit, static_argnames=("model", "optimizer", "mesh"))
def _initial_state(seed, *, model, optimizer, mesh):
    """``(params, state, opt_state, key data)``, replicated; the key is what
    ``seed`` leaves after the model's initialisation key."""
    init_key, train_key = jax.random.split(jax.random.key(seed))
    params, state = model.init(init_key)
    out = (params, state, optimizer.init(params), jax.random.key_data(train_key))
    return jax.lax.with_sharding_constraint(out, NamedSharding(mesh, P()))


def _update(carry, key_data, Xb, yb, t, model, optimizer, mesh):
    params, state, opt_state = carry
    key = jax.random.fold_in(jax.random.fold_in(jax.random.wrap_key_data(key_data), 1), t)
    (loss, new_state), grads = jax.value_and_grad(model.loss, has_aux=True)(
        params, state, Xb, yb, key=key, train=True)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    params = optax.apply_updates(params, updates)
    carry = jax.lax.with_sharding_constraint((params, new_state, opt_state),
                                             NamedSharding(mesh, P()))
    return carry, loss


# The steps take XLA:CPU's Eigen convolutions where the jaxlib allows and the model
# convolves on XLA (_cpu_jit): ~1.7x -> ~1.05x PyTorch's step time for XLA convs.
@functools.partial(_cpu_jit.jit, static_argnames=("model", "optimizer", "mesh", "batch_size"),
                   donate_argnames=("carry",))
def _step_indexed(carry, key_data, X, y, perm, it, t, *, model, optimizer, mesh, batch_size):
    """One step on batch ``perm[it * B:(it + 1) * B]`` of the on-device training set."""
    rows = jax.lax.dynamic_slice_in_dim(perm, it * batch_size, batch_size)
    batch = NamedSharding(mesh, P("batch"))
    Xb = jax.lax.with_sharding_constraint(X[rows], batch)
    yb = jax.lax.with_sharding_constraint(y[rows], batch)
    return _update(carry, key_data, Xb, yb, t, model, optimizer, mesh)


@functools.partial(_cpu_jit.jit, static_argnames=("model", "optimizer", "mesh"),
                   donate_argnames=("carry",))
def _step_fed(carry, key_data, Xb, yb, t, *, model, optimizer, mesh):
    """One step on a global batch fed by the processes."""
    return _update(carry, key_data, Xb, yb, t, model, optimizer, mesh)


@jax.jit
def copy(tree):
    """Fresh buffers (the step donates the current ones)."""
    return jax.tree.map(jnp.copy, tree)
