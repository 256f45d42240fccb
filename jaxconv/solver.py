"""CS231n's ``Solver`` in JAX: jit-compiled steps, data parallel, resumable.

    >>> import jaxconv
    >>> data = jaxconv.data.load_digits()
    >>> model = jaxconv.models.ThreeLayerConvNet(input_dim=(1, 8, 8), filter_size=3)
    >>> solver = jaxconv.Solver(model, data, optimizer=jaxconv.optim.adam(1e-3),
    ...                         num_epochs=5, verbose=False)
    >>> solver.train()                                        # doctest: +SKIP
    >>> solver.check_accuracy(data["X_test"], data["y_test"])  # doctest: +SKIP

How it runs:

* One step (forward, the hand-derived backward, the optimizer update) is ONE
  jit-compiled function whose parameter/optimizer buffers are donated; in a
  single process the training set lives on the device(s) and each step gathers
  its batch there, so Python does nothing per example (and nothing per step
  but one dispatch).
* Epochs of batches: each epoch is a fresh permutation of the training set
  (``N // batch_size`` batches; the remainder waits for a later epoch), drawn
  from the solver's key and the epoch number. Dropout keys come from the key and
  the iteration number. So a run is a pure function of ``seed``, the data and
  the device count, and resuming at an epoch boundary replays the same batches.
* Devices: a 1-D ``jax.sharding.Mesh`` over ``jax.devices()`` with the axis
  ``"batch"``. Parameters, state and optimizer state are replicated; each batch
  is ``NamedSharding(mesh, P("batch"))``, so XLA splits the work and sums the
  gradients. Batch-norm statistics and dropout masks are those of the global
  batch, whatever the device count. After ``jax.distributed.initialize()``
  the same mesh spans every process's devices and each process feeds only its
  slice of every global batch (``jax.make_array_from_process_local_data``).
* ``lr_decay``: at the end of every epoch the Solver multiplies the ``scale``
  of each :class:`jaxconv.optim.ScaleByLearningRateState` in the optimizer state
  by ``lr_decay`` (CS231n's ``config["learning_rate"] *= lr_decay``, at the
  place each rule uses its learning rate). Other optax optimizers have no such
  state: ``lr_decay != 1`` is then a ValueError; put the decay in an optax
  schedule instead (``optax.exponential_decay(lr, iterations_per_epoch,
  lr_decay, staircase=True)``).
* Accuracy: once per epoch, on ``num_train_samples`` training and
  ``num_val_samples`` validation samples (fixed subsets drawn from the key), in
  jit-compiled batches; the parameters with the best validation accuracy are
  kept in ``best_params`` (and their batch-norm state in ``best_state``).
* Checkpoints (``checkpoint_dir``): orbax-checkpoint at the end of every epoch,
  atomic (written to a temporary folder, renamed when complete), holding params,
  state, optimizer state, the key, the epoch, the histories and the best params.
  A Solver built on a folder that holds checkpoints resumes from the newest
  COMPLETE one (orbax's ``commit_success.txt`` present); leftovers of an
  interrupted save are ignored and removed. The checkpoint's key wins over
  ``seed``.
* A non-finite loss raises :class:`NonFiniteLossError` naming the iteration; the
  losses are checked every ``print_every`` iterations and at the end of each
  epoch, before that epoch is checkpointed, so every checkpoint is a good one.
"""
from __future__ import annotations

import contextlib
import functools
import logging
import math
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from jaxconv import _checks, optim

__all__ = ["NonFiniteLossError", "Solver"]

_REQUIRED = ("X_train", "y_train", "X_val", "y_val")


class NonFiniteLossError(FloatingPointError):
    """The training loss became nan or inf; ``iteration`` is 1-based."""

    def __init__(self, message: str, iteration: int):
        super().__init__(message)
        self.iteration = iteration


class Solver:
    """Train a ``jaxconv.models`` model (anything with ``init``/``loss``/``scores``).

    Args:
      model: a hashable model with ``init``, ``loss``, ``scores`` and ``dtype``,
        e.g. :class:`jaxconv.models.ThreeLayerConvNet` (a static jit argument).
      data: CS231n dict with ``X_train, y_train, X_val, y_val`` (NumPy or JAX
        arrays; X ``(N, ...)``, y ``(N,)`` integer labels).
      optimizer: any ``optax.GradientTransformation``; default CS231n's adam(1e-3).
      batch_size: global batch size, a multiple of the device count.
      num_epochs: total epochs (a resumed run continues up to this number).
      lr_decay: learning-rate multiplier applied after every epoch (see module doc).
      num_train_samples: training samples for the per-epoch train accuracy
        (None: all).
      num_val_samples: validation samples for the per-epoch val accuracy (None: all).
      print_every: iterations between progress-bar loss updates (and NaN checks).
      verbose: False prints nothing at all.
      checkpoint_dir: folder for orbax checkpoints; resumes from it if not empty.
      seed: the key every random choice derives from (init, shuffles, dropout).

    Attributes:
      params, state, opt_state: the current training state (replicated arrays).
      epoch: epochs done so far.
      loss_history: one float per iteration; train_acc_history,
        val_acc_history: one float per epoch.
      best_params, best_state, best_val_acc: the best validation accuracy seen.
    """

    def __init__(self, model, data, *, optimizer: optax.GradientTransformation = optim.adam(1e-3),
                 batch_size: int = 100, num_epochs: int = 10, lr_decay: float = 1.0,
                 num_train_samples: int | None = 1000, num_val_samples: int | None = None,
                 print_every: int = 10, verbose: bool = True,
                 checkpoint_dir: str | os.PathLike | None = None, seed: int = 0):
        self.model = model
        self.optimizer = optimizer
        self.batch_size = _int("batch_size", batch_size, 1)
        self.num_epochs = _int("num_epochs", num_epochs, 0)
        self.print_every = _int("print_every", print_every, 1)
        self.lr_decay = float(lr_decay)
        if not self.lr_decay > 0:
            raise ValueError(f"Solver: lr_decay must be > 0, got {lr_decay!r}")
        self.verbose = bool(verbose)
        self.checkpoint_dir = None if checkpoint_dir is None else os.path.abspath(checkpoint_dir)

        self.X_train, self.y_train, self.X_val, self.y_val = _check_data(data, model.dtype)
        n_train = len(self.X_train)
        if self.batch_size > n_train:
            raise ValueError(f"Solver: batch_size={self.batch_size} is larger than the "
                             f"{n_train} training samples")
        self.mesh = Mesh(np.array(jax.devices()), ("batch",))
        n_devices = self.mesh.size
        if self.batch_size % n_devices:
            raise ValueError(f"Solver: batch_size={self.batch_size} must be a multiple of the "
                             f"{n_devices} devices the batch is split over")
        self._replicated = NamedSharding(self.mesh, P())
        self._batch_sharding = NamedSharding(self.mesh, P("batch"))
        self._multi_process = jax.process_count() > 1
        self.iterations_per_epoch = n_train // self.batch_size

        if self.lr_decay != 1 and not _learning_rate_states(jax.eval_shape(
                lambda: optimizer.init(model.init(jax.random.key(0))[0]))):
            raise ValueError(
                "Solver: lr_decay needs a jaxconv.optim rule (its learning-rate scale is what "
                "decays); for another optax optimizer put the decay in a schedule, e.g. "
                "optax.exponential_decay(lr, transition_steps=iterations_per_epoch, "
                f"decay_rate={self.lr_decay}, staircase=True)")
        params, state, opt_state, key_data = _initial_state(
            _int("seed", seed, 0), model=model, optimizer=optimizer, mesh=self.mesh)
        self.params, self.state, self.opt_state = params, state, opt_state
        self._key_data = key_data
        self.best_params = self.best_state = None  # set after the first epoch
        self.best_val_acc = -1.0
        self.epoch = 0
        self.loss_history: list[float] = []
        self.train_acc_history: list[float] = []
        self.val_acc_history: list[float] = []
        if self.checkpoint_dir is not None:
            self._restore()

        self._train_subset = self._subset(1, n_train, num_train_samples)
        self._val_subset = self._subset(2, len(self.X_val), num_val_samples)
        if not self._multi_process:  # the training set lives on the device(s)
            self._X_dev = jax.device_put(self.X_train, self._replicated)
            self._y_dev = jax.device_put(self.y_train, self._replicated)

    # --- training ---------------------------------------------------------------------

    def train(self) -> None:
        """Run the remaining epochs up to ``num_epochs``."""
        remaining = self.num_epochs - self.epoch
        if remaining <= 0:
            return
        show = self.verbose and jax.process_index() == 0
        from tqdm.auto import tqdm

        bar = tqdm(total=remaining * self.iterations_per_epoch, disable=not show,
                   file=sys.stderr, dynamic_ncols=True, leave=False)
        manager = self._manager() if self.checkpoint_dir is not None else None
        try:
            for epoch in range(self.epoch + 1, self.num_epochs + 1):
                bar.set_description(f"epoch {epoch}/{self.num_epochs}")
                self._train_epoch(epoch, bar)
                self._end_epoch(epoch, bar, show)
                if manager is not None:
                    with self._quiet_logs():
                        self._save(manager)
        finally:
            bar.close()
            if manager is not None:
                with self._quiet_logs():
                    manager.close()

    def _train_epoch(self, epoch: int, bar) -> None:
        perm = self._rng(0, epoch).permutation(len(self.X_train)).astype(np.int32)
        statics = dict(model=self.model, optimizer=self.optimizer, mesh=self.mesh)
        if not self._multi_process:
            perm = jax.device_put(perm, self._replicated)
        carry = (self.params, self.state, self.opt_state)
        first = (epoch - 1) * self.iterations_per_epoch
        pending: list[tuple[int, jax.Array]] = []
        for it in range(self.iterations_per_epoch):
            t = first + it + 1  # 1-based iteration, as CS231n prints it
            if self._multi_process:
                rows = perm[it * self.batch_size:(it + 1) * self.batch_size]
                Xb = self._global_batch(self.X_train[rows])
                yb = self._global_batch(self.y_train[rows])
                carry, loss = _step_fed(carry, self._key_data, Xb, yb, t, **statics)
            else:
                carry, loss = _step_indexed(carry, self._key_data, self._X_dev, self._y_dev, perm,
                                            it, t, batch_size=self.batch_size, **statics)
            self.params, self.state, self.opt_state = carry
            pending.append((t, loss))
            bar.update(1)
            if t % self.print_every == 0:
                self._flush(pending, epoch)
                bar.set_postfix(loss=f"{self.loss_history[-1]:.4f}", refresh=False)
        self._flush(pending, epoch)

    def _flush(self, pending: list, epoch: int) -> None:
        """Move pending losses to the history; stop at the first non-finite one."""
        for t, loss in pending:
            value = float(_host(loss))
            if not math.isfinite(value):
                where = (f"; the last good checkpoint (epoch {self.epoch}) is kept in "
                         f"{self.checkpoint_dir}" if self.checkpoint_dir and self.epoch else "")
                raise NonFiniteLossError(
                    f"Solver: non-finite loss {value} at iteration {t} (epoch {epoch}, batch "
                    f"{t - (epoch - 1) * self.iterations_per_epoch} of "
                    f"{self.iterations_per_epoch}); training stopped{where}", t)
            self.loss_history.append(value)
        pending.clear()

    def _end_epoch(self, epoch: int, bar, show: bool) -> None:
        if self.lr_decay != 1:
            self.opt_state = _decay(self.opt_state, self.lr_decay)
        train_acc = self.check_accuracy(self.X_train[self._train_subset],
                                        self.y_train[self._train_subset])
        val_acc = self.check_accuracy(self.X_val[self._val_subset], self.y_val[self._val_subset])
        self.train_acc_history.append(train_acc)
        self.val_acc_history.append(val_acc)
        if val_acc > self.best_val_acc:
            self.best_val_acc = val_acc
            self.best_params, self.best_state = _copy((self.params, self.state))
        self.epoch = epoch
        bar.set_postfix(loss=f"{self.loss_history[-1]:.4f}", val_acc=f"{val_acc:.3f}")
        if show:
            bar.write(f"(Epoch {epoch} / {self.num_epochs}) loss {self.loss_history[-1]:.4f}; "
                      f"train acc {train_acc:.3f}; val acc {val_acc:.3f}", file=sys.stdout)

    # --- accuracy ---------------------------------------------------------------------

    def check_accuracy(self, X, y, *, num_samples: int | None = None, batch_size: int = 100,
                       params=None, state=None) -> float:
        """Fraction of ``X`` classified as ``y`` (by ``params``/``state``, default
        the current ones; e.g. pass ``params=solver.best_params,
        state=solver.best_state``).

        Runs in jit-compiled batches of ``batch_size`` (rounded up to a multiple
        of the device count; the last batch is padded and the padding masked),
        so every batch has one shape and compiles once. ``num_samples`` takes
        the first that many samples.
        """
        params = self.params if params is None else params
        state = self.state if state is None else state
        return self._accuracy(params, state, X, y, num_samples, batch_size)

    def _accuracy(self, params, state, X, y, num_samples, batch_size) -> float:
        X = np.asarray(X, self.model.dtype)
        y = np.asarray(y).astype(np.int32)
        if num_samples is not None:
            X, y = X[:num_samples], y[:num_samples]
        n = len(X)
        if n == 0:
            raise ValueError("Solver.check_accuracy: X is empty")
        devices = self.mesh.size
        size = -(-_int("batch_size", batch_size, 1) // devices) * devices
        size = min(size, -(-n // devices) * devices)
        correct = 0
        for start in range(0, n, size):
            xb, yb = X[start:start + size], y[start:start + size]
            valid = np.arange(size) < len(xb)
            if len(xb) < size:  # pad to one shape; the padding is masked out
                xb = np.concatenate([xb, np.zeros((size - len(xb),) + xb.shape[1:], xb.dtype)])
                yb = np.concatenate([yb, np.zeros(size - len(yb), yb.dtype)])
            count = _count_correct(params, state, self._global_batch(xb), self._global_batch(yb),
                                   self._global_batch(valid), model=self.model, mesh=self.mesh)
            correct += int(_host(count))
        return correct / n

    # --- devices ----------------------------------------------------------------------

    def _global_batch(self, rows: np.ndarray) -> jax.Array:
        """A global batch, sharded on its first axis; each process gives its rows."""
        if not self._multi_process:
            return jax.device_put(rows, self._batch_sharding)
        start, stop = _local_rows(self._batch_sharding, rows.shape)
        return jax.make_array_from_process_local_data(self._batch_sharding, rows[start:stop],
                                                      rows.shape)

    def _rng(self, *salt: int) -> np.random.Generator:
        """A NumPy generator seeded by the solver's key and ``salt`` (host-side
        shuffles: identical in every process, nothing to compile)."""
        words = [int(w) for w in np.asarray(_host(self._key_data)).ravel()]
        return np.random.default_rng(words + list(salt))

    def _subset(self, salt: int, n: int, size: int | None) -> np.ndarray:
        """A fixed random subset of ``range(n)`` (all of it when ``size`` is None or >= n)."""
        if size is None or _int("num_samples", size, 1) >= n:
            return np.arange(n)
        return np.sort(self._rng(salt).permutation(n)[:size])

    # --- checkpoints ------------------------------------------------------------------

    @contextlib.contextmanager
    def _quiet_logs(self):
        """orbax logs through absl; verbose=False means nothing is printed."""
        if self.verbose:
            yield
            return
        logger = logging.getLogger("absl")
        level = logger.level
        logger.setLevel(logging.ERROR)
        try:
            yield
        finally:
            logger.setLevel(level)

    def _manager(self):
        import orbax.checkpoint as ocp

        options = ocp.CheckpointManagerOptions(
            max_to_keep=3, enable_async_checkpointing=False, cleanup_tmp_directories=True)
        with self._quiet_logs():
            return ocp.CheckpointManager(self.checkpoint_dir, options=options,
                                         item_names=("train", "meta"))

    def _tree(self) -> dict:
        return {"params": self.params, "state": self.state, "opt_state": self.opt_state,
                "key": self._key_data, "best_params": self.best_params,
                "best_state": self.best_state}

    def _meta(self) -> dict:
        return {"epoch": self.epoch, "loss_history": self.loss_history,
                "train_acc_history": self.train_acc_history,
                "val_acc_history": self.val_acc_history, "best_val_acc": self.best_val_acc}

    def _save(self, manager) -> None:
        import orbax.checkpoint as ocp

        manager.save(self.epoch, args=ocp.args.Composite(
            train=ocp.args.StandardSave(self._tree()), meta=ocp.args.JsonSave(self._meta())))
        manager.wait_until_finished()

    def _restore(self) -> None:
        import orbax.checkpoint as ocp

        manager = self._manager()
        with self._quiet_logs():
            try:
                steps = sorted(manager.all_steps(), reverse=True)
                complete = [s for s in steps if _is_complete(self.checkpoint_dir, s)]
                if not complete:
                    return
                newest = complete[0]
                for step in steps:  # drop the leftovers of an interrupted save (every
                    if step > newest:  # process calls; orbax deletes on the primary one)
                        manager.delete(step)
                tree = dict(self._tree(), best_params=self.params, best_state=self.state)
                abstract = jax.tree.map(
                    lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), tree)
                restored = manager.restore(newest, args=ocp.args.Composite(
                    train=ocp.args.StandardRestore(abstract), meta=ocp.args.JsonRestore()))
            finally:
                manager.close()
        tree, meta = restored["train"], restored["meta"]
        self.params, self.state, self.opt_state = tree["params"], tree["state"], tree["opt_state"]
        self._key_data = tree["key"]
        self.best_params, self.best_state = tree["best_params"], tree["best_state"]
        self.epoch = int(meta["epoch"])
        self.loss_history = [float(v) for v in meta["loss_history"]]
        self.train_acc_history = [float(v) for v in meta["train_acc_history"]]
        self.val_acc_history = [float(v) for v in meta["val_acc_history"]]
        self.best_val_acc = float(meta["best_val_acc"])


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


@functools.partial(jax.jit, static_argnames=("model", "optimizer", "mesh", "batch_size"),
                   donate_argnames=("carry",))
def _step_indexed(carry, key_data, X, y, perm, it, t, *, model, optimizer, mesh, batch_size):
    """One step on batch ``perm[it * B:(it + 1) * B]`` of the on-device training set."""
    rows = jax.lax.dynamic_slice_in_dim(perm, it * batch_size, batch_size)
    batch = NamedSharding(mesh, P("batch"))
    Xb = jax.lax.with_sharding_constraint(X[rows], batch)
    yb = jax.lax.with_sharding_constraint(y[rows], batch)
    return _update(carry, key_data, Xb, yb, t, model, optimizer, mesh)


@functools.partial(jax.jit, static_argnames=("model", "optimizer", "mesh"),
                   donate_argnames=("carry",))
def _step_fed(carry, key_data, Xb, yb, t, *, model, optimizer, mesh):
    """One step on a global batch fed by the processes."""
    return _update(carry, key_data, Xb, yb, t, model, optimizer, mesh)


@functools.partial(jax.jit, static_argnames=("model", "mesh"))
def _count_correct(params, state, Xb, yb, valid, *, model, mesh):
    predicted = jnp.argmax(model.scores(params, state, Xb), axis=1)
    count = jnp.sum((predicted == yb) & valid)
    return jax.lax.with_sharding_constraint(count, NamedSharding(mesh, P()))


@jax.jit
def _copy(tree):
    """Fresh buffers (the step donates the current ones)."""
    return jax.tree.map(jnp.copy, tree)


def _learning_rate_states(opt_state) -> list:
    is_lr = lambda node: isinstance(node, optim.ScaleByLearningRateState)
    return [n for n in jax.tree.leaves(opt_state, is_leaf=is_lr) if is_lr(n)]


@jax.jit
def _decay(opt_state, lr_decay):
    is_lr = lambda node: isinstance(node, optim.ScaleByLearningRateState)
    return jax.tree.map(
        lambda n: n._replace(scale=n.scale * jnp.asarray(lr_decay, n.scale.dtype)) if is_lr(n)
        else n, opt_state, is_leaf=is_lr)


# --- helpers -----------------------------------------------------------------------------

def _host(x) -> np.ndarray:
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


def _is_complete(directory: str, step: int) -> bool:
    """orbax writes ``commit_success.txt`` last, so it marks a finished save."""
    return os.path.isfile(os.path.join(directory, str(step), "commit_success.txt"))


def _int(name: str, value, minimum: int) -> int:
    return _checks.integer("Solver", name, value, minimum=minimum)


def _check_data(data, dtype):
    missing = [k for k in _REQUIRED if k not in data]
    if missing:
        raise ValueError(f"Solver: data is missing {missing} (needs {list(_REQUIRED)})")
    out = []
    for split in ("train", "val"):
        X, y = np.asarray(data[f"X_{split}"]), np.asarray(data[f"y_{split}"])
        if X.ndim < 2 or y.ndim != 1 or len(X) != len(y) or len(X) == 0:
            raise ValueError(f"Solver: X_{split} must be (N, ...) and y_{split} (N,) with N > 0, "
                             f"got X_{split}.shape={X.shape}, y_{split}.shape={y.shape}")
        if not np.issubdtype(y.dtype, np.integer):
            raise ValueError(f"Solver: y_{split} must hold integer labels, got {y.dtype}")
        out += [X.astype(dtype), y.astype(np.int32)]
    return out
