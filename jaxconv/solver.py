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
* Devices (``jaxconv._devices``): a 1-D ``jax.sharding.Mesh`` over
  ``jax.devices()`` with the axis ``"batch"``. Parameters, state and optimizer
  state are replicated; each batch is ``NamedSharding(mesh, P("batch"))``, so
  XLA splits the work and sums the gradients. Batch-norm statistics and dropout
  masks are those of the global batch, whatever the device count. After
  ``jax.distributed.initialize()`` the same mesh spans every process's devices
  and each process feeds only its slice of every global batch
  (``jax.make_array_from_process_local_data``).
* ``lr_decay``: at the end of every epoch the Solver multiplies the ``scale``
  of each :class:`jaxconv.optim.ScaleByLearningRateState` in the optimizer state
  by ``lr_decay`` (:func:`jaxconv.optim.decay_learning_rate`: CS231n's
  ``config["learning_rate"] *= lr_decay``, at the place each rule uses its
  learning rate). Other optax optimizers have no such
  state: ``lr_decay != 1`` is then a ValueError; put the decay in an optax
  schedule instead (``optax.exponential_decay(lr, iterations_per_epoch,
  lr_decay, staircase=True)``).
* Accuracy (``jaxconv._evaluation``): once per epoch, on ``num_train_samples``
  training and ``num_val_samples`` validation samples (fixed subsets drawn from
  the key), in jit-compiled batches on the devices; the parameters with the best validation accuracy are
  kept in ``best_params`` (and their batch-norm state in ``best_state``).
* Checkpoints (``checkpoint_dir``, ``jaxconv._checkpoints``): orbax-checkpoint
  at the end of every epoch, atomic, in ``jaxconv-epoch-NNNNNN`` folders
  holding params, state, optimizer state, the key, the epoch, the histories,
  the best params and a digest; nothing else in the folder is touched. The
  folder is checked (not a file, writable) when the Solver is built and locked
  while it restores and trains: a second run on it fails at once. A Solver
  built on a folder that holds checkpoints resumes from the newest INTACT one,
  naming (in one line each, when verbose) newer damaged ones it passes over.
  The checkpoint's key wins over ``seed``.
* A non-finite loss raises :class:`NonFiniteLossError` naming the iteration; the
  losses are checked every ``print_every`` iterations and at the end of each
  epoch, and so are the parameters and optimizer state (the last update of an
  epoch can break them while its loss was finite), before that epoch is
  checkpointed, so every checkpoint is a good one.
"""
from __future__ import annotations

import contextlib
import math
import os
import sys

import jax
import numpy as np
import optax

from jaxconv import _checks, optim
from jaxconv._checkpoints import CheckpointFolder, all_finite
from jaxconv._devices import Placement, copy, host
from jaxconv._evaluation import accuracy, subset

__all__ = ["NonFiniteLossError", "Solver"]

_REQUIRED = ("X_train", "y_train", "X_val", "y_val")
_SEEDS = 2 ** 32   # JAX folds larger seeds with x64 off: 2**32 would be seed 0


class NonFiniteLossError(FloatingPointError):
    """The training loss (or the parameters) became nan or inf; ``iteration`` is 1-based."""

    def __init__(self, message: str, iteration: int):
        super().__init__(message)
        self.iteration = iteration


class Solver:
    """Train a ``jaxconv.models`` model (anything with ``init``/``loss``/``scores``).

    Args:
      model: a hashable model with ``init``, ``loss``, ``scores`` and ``dtype``,
        e.g. :class:`jaxconv.models.ThreeLayerConvNet` (a static jit argument).
      data: CS231n dict with ``X_train, y_train, X_val, y_val`` (NumPy or JAX
        arrays; X ``(N, ...)`` real, y ``(N,)`` integer labels in
        ``[0, num_classes)``).
      optimizer: any ``optax.GradientTransformation``; default CS231n's adam(1e-3).
      batch_size: global batch size, a multiple of the device count.
      num_epochs: total epochs (a resumed run continues up to this number).
      lr_decay: learning-rate multiplier applied after every epoch (see module doc).
      num_train_samples: training samples for the per-epoch train accuracy
        (None: all).
      num_val_samples: validation samples for the per-epoch val accuracy (None: all).
      print_every: iterations between progress-bar loss updates (and NaN checks).
      verbose: False prints nothing at all.
      checkpoint_dir: folder for orbax checkpoints; resumes from it if it holds some.
      seed: the key every random choice derives from (init, shuffles, dropout),
        in ``[0, 2**32)``.

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
        if not (callable(getattr(optimizer, "init", None))
                and callable(getattr(optimizer, "update", None))):
            raise TypeError(f"Solver: optimizer must be an optax.GradientTransformation "
                            f"(e.g. jaxconv.optim.adam(1e-3)), got {optimizer!r}")
        self.model = model
        self.optimizer = optimizer
        self.batch_size = _int("batch_size", batch_size, 1)
        self.num_epochs = _int("num_epochs", num_epochs, 0)
        self.print_every = _int("print_every", print_every, 1)
        self.lr_decay = _checks.finite_real("Solver", "lr_decay", lr_decay, low=0.0,
                                            low_open=True)
        self.verbose = bool(verbose)
        seed = _int("seed", seed, 0)
        if seed >= _SEEDS:
            raise ValueError(f"Solver: seed must be < 2**32, got {seed}")
        for name, value in (("num_train_samples", num_train_samples),
                            ("num_val_samples", num_val_samples)):
            if value is not None:
                _int(name, value, 1)
        # The folder is checked before anything is computed: a bad one fails at once.
        self._checkpoints = (None if checkpoint_dir is None
                             else CheckpointFolder(checkpoint_dir, verbose=self.verbose))
        self.checkpoint_dir = None if checkpoint_dir is None else self._checkpoints.path

        self.X_train, self.y_train, self.X_val, self.y_val = self._check_data(data)
        n_train = len(self.X_train)
        if self.batch_size > n_train:
            raise ValueError(f"Solver: batch_size={self.batch_size} is larger than the "
                             f"{n_train} training samples")
        self._placement = Placement(self.X_train, self.y_train, self.batch_size)
        self.mesh = self._placement.mesh
        self.iterations_per_epoch = n_train // self.batch_size
        if self.lr_decay != 1 and not optim.learning_rate_states(jax.eval_shape(
                lambda: optimizer.init(model.init(jax.random.key(0))[0]))):
            raise ValueError(
                "Solver: lr_decay needs a jaxconv.optim rule (its learning-rate scale is what "
                "decays); for another optax optimizer put the decay in a schedule, e.g. "
                "optax.exponential_decay(lr, transition_steps=iterations_per_epoch, "
                f"decay_rate={self.lr_decay}, staircase=True)")

        self.params, self.state, self.opt_state, self._key_data = \
            self._placement.initial_state(seed, model, optimizer)
        self.best_params = self.best_state = None  # set after the first epoch
        self.best_val_acc = -1.0
        self.epoch = 0
        self.loss_history: list[float] = []
        self.train_acc_history: list[float] = []
        self.val_acc_history: list[float] = []
        if self._checkpoints is not None:
            with self._checkpoints.locked():
                self._restore()
        self._train_subset = subset(self._rng(1), n_train, num_train_samples)
        self._val_subset = subset(self._rng(2), len(self.X_val), num_val_samples)

    # --- training ---------------------------------------------------------------------

    def train(self) -> None:
        """Run the remaining epochs up to ``num_epochs``."""
        remaining = self.num_epochs - self.epoch
        if remaining <= 0:
            return
        show = self.verbose and jax.process_index() == 0
        from tqdm.auto import tqdm

        folder = self._checkpoints
        with folder.locked() if folder is not None else contextlib.nullcontext():
            bar = tqdm(total=remaining * self.iterations_per_epoch, disable=not show,
                       file=sys.stderr, dynamic_ncols=True, leave=False)
            try:
                for epoch in range(self.epoch + 1, self.num_epochs + 1):
                    bar.set_description(f"epoch {epoch}/{self.num_epochs}")
                    self._train_epoch(epoch, bar)
                    self._end_epoch(epoch, bar, show)
                    if folder is not None:
                        folder.save(self.epoch, self._tree(), self._meta())
            finally:
                bar.close()

    def _train_epoch(self, epoch: int, bar) -> None:
        perm = self._placement.permutation(self._rng(0, epoch).permutation(len(self.X_train)))
        carry = (self.params, self.state, self.opt_state)
        first = (epoch - 1) * self.iterations_per_epoch
        pending: list[tuple[int, jax.Array]] = []
        for it in range(self.iterations_per_epoch):
            t = first + it + 1  # 1-based iteration, as CS231n prints it
            carry, loss = self._placement.step(carry, self._key_data, perm, it, t,
                                               model=self.model, optimizer=self.optimizer)
            self.params, self.state, self.opt_state = carry
            pending.append((t, loss))
            bar.update(1)
            if t % self.print_every == 0:
                self._flush(pending, epoch)
                bar.set_postfix(loss=f"{self.loss_history[-1]:.4f}", refresh=False)
        self._flush(pending, epoch)
        if not bool(host(all_finite(carry))):   # the last update broke them, loss finite
            t = first + self.iterations_per_epoch
            raise NonFiniteLossError(
                f"Solver: non-finite parameters or optimizer state after iteration {t} (the "
                f"last of epoch {epoch}; its loss was finite); training stopped"
                f"{self._kept()}", t)

    def _flush(self, pending: list, epoch: int) -> None:
        """Move pending losses to the history; stop at the first non-finite one."""
        for t, loss in pending:
            value = float(host(loss))
            if not math.isfinite(value):
                raise NonFiniteLossError(
                    f"Solver: non-finite loss {value} at iteration {t} (epoch {epoch}, batch "
                    f"{t - (epoch - 1) * self.iterations_per_epoch} of "
                    f"{self.iterations_per_epoch}); training stopped{self._kept()}", t)
            self.loss_history.append(value)
        pending.clear()

    def _kept(self) -> str:
        if not (self.checkpoint_dir and self.epoch):
            return ""
        return f"; the last good checkpoint (epoch {self.epoch}) is kept in {self.checkpoint_dir}"

    def _end_epoch(self, epoch: int, bar, show: bool) -> None:
        if self.lr_decay != 1:
            self.opt_state = optim.decay_learning_rate(self.opt_state, self.lr_decay)
        train_acc = self.check_accuracy(self.X_train[self._train_subset],
                                        self.y_train[self._train_subset])
        val_acc = self.check_accuracy(self.X_val[self._val_subset], self.y_val[self._val_subset])
        self.train_acc_history.append(train_acc)
        self.val_acc_history.append(val_acc)
        if val_acc > self.best_val_acc:
            self.best_val_acc = val_acc
            self.best_params, self.best_state = copy((self.params, self.state))
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
        the first that many samples. ``y`` must hold integer labels in
        ``[0, num_classes)`` (a TypeError / ValueError otherwise).
        """
        params = self.params if params is None else params
        state = self.state if state is None else state
        X, y = self._split("Solver.check_accuracy", "X", "y", X, y)
        if num_samples is not None:
            X, y = X[:_int("num_samples", num_samples, 1)], y[:num_samples]
        return accuracy(self._placement, self.model, params, state, X, y,
                        _int("batch_size", batch_size, 1))

    def _rng(self, *salt: int) -> np.random.Generator:
        """A NumPy generator seeded by the solver's key and ``salt`` (host-side
        shuffles: identical in every process, nothing to compile)."""
        words = [int(w) for w in np.asarray(host(self._key_data)).ravel()]
        return np.random.default_rng(words + list(salt))

    # --- data ----------------------------------------------------------------------

    def _check_data(self, data) -> list[np.ndarray]:
        missing = [k for k in _REQUIRED if not isinstance(data, dict) or k not in data]
        if missing:
            raise ValueError(f"Solver: data is missing {missing} (needs {list(_REQUIRED)})")
        X = np.asarray(data["X_train"])
        # The width of the model's scores, from shapes alone (labels are checked against it).
        params, state = jax.eval_shape(self.model.init, jax.random.key(0))
        scores = jax.eval_shape(self.model.scores, params, state,
                                jax.ShapeDtypeStruct((1, *X.shape[1:]), self.model.dtype))
        self._num_classes = int(scores.shape[-1])
        out = []
        for split in ("train", "val"):
            out += self._split("Solver", f"X_{split}", f"y_{split}", data[f"X_{split}"],
                               data[f"y_{split}"])
        return out

    def _split(self, op: str, x_name: str, y_name: str, X, y) -> tuple[np.ndarray, np.ndarray]:
        """One split's images (real, ``(N, ...)``, N > 0) and labels (integers in
        range, checked before any cast), as the model's dtype and int32 NumPy arrays."""
        X = np.asarray(X)
        if not (np.issubdtype(X.dtype, np.floating) or np.issubdtype(X.dtype, np.integer)):
            raise TypeError(f"{op}: {x_name} must hold real numbers, got "
                            f"{x_name}.dtype={X.dtype}")
        if X.ndim < 2 or len(X) == 0:
            raise ValueError(f"{op}: {x_name} must be (N, ...) with N > 0, got "
                             f"{x_name}.shape={X.shape}")
        y = _checks.labels(op, y_name, y if hasattr(y, "dtype") else np.asarray(y),
                           num_classes=self._num_classes, shape=(len(X),),
                           context=f"{x_name}.shape={X.shape}")
        return X.astype(self.model.dtype), np.asarray(y).astype(np.int32)

    # --- checkpoints (what is saved; how: jaxconv._checkpoints) ---------------------

    def _tree(self) -> dict:
        return {"params": self.params, "state": self.state, "opt_state": self.opt_state,
                "key": self._key_data, "best_params": self.best_params,
                "best_state": self.best_state}

    def _meta(self) -> dict:
        return {"epoch": self.epoch, "loss_history": self.loss_history,
                "train_acc_history": self.train_acc_history,
                "val_acc_history": self.val_acc_history, "best_val_acc": self.best_val_acc}

    def _restore(self) -> None:
        template = dict(self._tree(), best_params=self.params, best_state=self.state)
        restored = self._checkpoints.restore(template)
        if restored is None:
            return
        tree, meta = restored
        self.params, self.state, self.opt_state = tree["params"], tree["state"], tree["opt_state"]
        self._key_data = tree["key"]
        self.best_params, self.best_state = tree["best_params"], tree["best_state"]
        self.epoch = int(meta["epoch"])
        self.loss_history = [float(v) for v in meta["loss_history"]]
        self.train_acc_history = [float(v) for v in meta["train_acc_history"]]
        self.val_acc_history = [float(v) for v in meta["val_acc_history"]]
        self.best_val_acc = float(meta["best_val_acc"])


# --- validation ------------------------------------------------------------------------

def _int(name: str, value, minimum: int) -> int:
    return _checks.integer("Solver", name, value, minimum=minimum)
