"""The Solver's checkpoints, in a folder it shares with its user.

What jaxconv puts in ``checkpoint_dir`` (and the only names it ever reads,
replaces or deletes there):

* ``jaxconv-epoch-000003/``: the checkpoint of epoch 3, written by
  orbax-checkpoint atomically (into ``jaxconv-epoch-000003.orbax-checkpoint-tmp-*``,
  renamed when complete). It holds params, state, optimizer state, the key,
  best params/state (``train``) and the epoch, histories and a SHA-256 digest of
  every array (``meta``). The newest ``KEEP`` are kept; older ones are first
  renamed ``*.jaxconv-deleting``, then removed.
* ``jaxconv-checkpoints.json``: a marker saying so.
* ``jaxconv-checkpoints.lock``: ``fcntl.flock``-ed by the run that trains (its
  pid inside), so a second run on the folder fails at once; the kernel drops
  the lock of a dead process, so a killed run leaves nothing stale.

Anything else in the folder (a ``2024/`` of the user's, an empty ``100/``, files)
is never listed as a checkpoint, skipped over, moved or deleted.

Saves refuse non-finite params, state, optimizer state and best params: every
checkpoint is a good one. On resume the newest checkpoint that is complete,
restores, and matches its digest wins; each newer one that does not is named,
with the reason, in one line.
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import re
import shutil
import socket
import sys

import jax
import jax.numpy as jnp
import numpy as np

from jaxconv._devices import host

KEEP = 3
MARKER = "jaxconv-checkpoints.json"
LOCK = "jaxconv-checkpoints.lock"
_EPOCH = re.compile(r"^jaxconv-epoch-(\d{6})$")
_LEFTOVER = re.compile(r"^(jaxconv-epoch-\d{6}(\.orbax-checkpoint-tmp.*|\.jaxconv-deleting)"
                       r"|jaxconv-checkpoints\.json\.tmp-\d+)$")


def epoch_name(epoch: int) -> str:
    return f"jaxconv-epoch-{epoch:06d}"


@jax.jit
def all_finite(tree) -> jax.Array:
    """True when every floating leaf of ``tree`` is free of NaN and inf."""
    leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)
              if jnp.issubdtype(x.dtype, jnp.floating)]
    return jnp.all(jnp.stack(leaves)) if leaves else jnp.bool_(True)


class CheckpointFolder:
    """The Solver's checkpoints in ``directory`` (see the module doc).

    Construction checks that the folder can be used (created if missing; not a
    file; writable): a ValueError in one line otherwise, before any training.
    """

    def __init__(self, directory, *, verbose: bool):
        if not isinstance(directory, (str, os.PathLike)):
            raise TypeError(f"Solver: checkpoint_dir must be a path, got {directory!r}")
        if os.fspath(directory) == "":
            raise ValueError("Solver: checkpoint_dir must name a folder, got '' (use '.' "
                             "for the current one)")
        self.path = os.path.abspath(directory)
        self.verbose = verbose
        self.primary = jax.process_index() == 0
        self.skipped: list[str] = []   # one line per damaged checkpoint passed over
        self._lock_fd: int | None = None
        self._checkpointer = None
        if os.path.exists(self.path) and not os.path.isdir(self.path):
            raise ValueError(f"Solver: checkpoint_dir {self.path} is a file, not a folder")
        try:
            os.makedirs(self.path, exist_ok=True)
        except OSError as error:
            raise ValueError(f"Solver: cannot create checkpoint_dir {self.path}: "
                             f"{error.strerror or error}") from None
        if not os.access(self.path, os.W_OK | os.X_OK):
            raise ValueError(f"Solver: checkpoint_dir {self.path} is not writable")

    # --- the lock -------------------------------------------------------------------

    @contextlib.contextmanager
    def locked(self):
        """Hold the folder's lock (process 0 of a cluster takes it for all)."""
        self._acquire()
        try:
            yield self
        finally:
            self._release()

    def _acquire(self) -> None:
        if not self.primary:
            return
        lock = os.path.join(self.path, LOCK)
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as error:
            raise ValueError(f"Solver: checkpoint_dir {self.path} is not writable "
                             f"({error.strerror or error})") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise ValueError(f"Solver: checkpoint_dir {self.path} is in use by another run "
                             f"(pid {holder}); wait for it or choose another folder") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()} on {socket.gethostname()}\n".encode(), 0)
        self._lock_fd = fd
        if not os.path.exists(os.path.join(self.path, MARKER)):
            _write_atomically(os.path.join(self.path, MARKER), json.dumps({
                "written_by": "jaxconv.Solver", "format": 1,
                "checkpoints": "jaxconv-epoch-NNNNNN folders (orbax), the newest "
                               f"{KEEP} kept", "lock": LOCK,
                "note": "jaxconv reads, writes and deletes only these names; everything "
                        "else in this folder is left alone"}, indent=1) + "\n")
        for name in os.listdir(self.path):   # what a kill during a save or clean-up left
            if _LEFTOVER.match(name):
                path = os.path.join(self.path, name)
                if os.path.isdir(path) and not os.path.islink(path):
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    os.remove(path)

    def _release(self) -> None:
        if self._checkpointer is not None:
            with self._quiet_logs():
                self._checkpointer.close()
            self._checkpointer = None
        if self._lock_fd is not None:
            os.close(self._lock_fd)   # closing drops the flock
            self._lock_fd = None

    # --- reading --------------------------------------------------------------------

    def epochs(self) -> list[int]:
        """Epochs of the checkpoint folders here, newest first (intact or not)."""
        found = (_EPOCH.match(name) for name in os.listdir(self.path))
        return sorted((int(m.group(1)) for m in found
                       if m and os.path.isdir(os.path.join(self.path, m.group(0)))), reverse=True)

    def restore(self, template: dict) -> tuple[dict, dict] | None:
        """``(tree, meta)`` of the newest intact checkpoint, arrays placed like
        ``template``'s leaves; None when the folder holds none of ours. Damaged
        newer ones are passed over, each named in one line (``skipped``);
        checkpoints that are all damaged are a ValueError (nothing is deleted)."""
        epochs = self.epochs()
        for epoch in epochs:
            try:
                return self._read(epoch, template)
            except Exception as error:  # noqa: BLE001 -- any damage: fall back to an older one
                reason = " ".join(str(error).split())[:200] or type(error).__name__
                line = (f"Solver: skipped the damaged checkpoint "
                        f"{os.path.join(self.path, epoch_name(epoch))} ({reason})")
                self.skipped.append(line)
                if self.verbose and self.primary:
                    print(line, file=sys.stderr, flush=True)
        if epochs:
            raise ValueError(f"Solver: none of the {len(epochs)} checkpoints in {self.path} "
                             f"can be restored (newest: {self.skipped[0].split(' (', 1)[1]}; "
                             "move them away to start afresh")
        return None

    def _read(self, epoch: int, template: dict) -> tuple[dict, dict]:
        import orbax.checkpoint as ocp

        path = os.path.join(self.path, epoch_name(epoch))
        if not os.path.isfile(os.path.join(path, "commit_success.txt")):
            raise ValueError("incomplete: no commit_success.txt")
        abstract = jax.tree.map(
            lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), template)
        with self._quiet_logs():
            restored = self._orbax().restore(path, args=ocp.args.Composite(
                train=ocp.args.StandardRestore(abstract), meta=ocp.args.JsonRestore()))
        tree, meta = restored["train"], restored["meta"]
        if not isinstance(meta, dict) or meta.get("epoch") != epoch:
            raise ValueError(f"its metadata does not say epoch {epoch}")
        if meta.get("digest") != _digest(tree):
            raise ValueError("its arrays do not match the digest written with them")
        return tree, meta

    # --- writing --------------------------------------------------------------------

    def save(self, epoch: int, tree: dict, meta: dict) -> None:
        """Write the checkpoint of ``epoch`` (replacing a damaged one of that name),
        then delete all but the newest ``KEEP``. Needs the lock."""
        import orbax.checkpoint as ocp

        if self.primary and self._lock_fd is None:
            raise RuntimeError("CheckpointFolder.save outside locked()")
        if not bool(host(all_finite(tree))):
            raise ValueError(f"Solver: refusing to checkpoint epoch {epoch}: its parameters, "
                             "state or optimizer state are not finite")
        meta = dict(meta, epoch=epoch, digest=_digest(tree))
        with self._quiet_logs():
            self._orbax().save(os.path.join(self.path, epoch_name(epoch)), force=True,
                               args=ocp.args.Composite(train=ocp.args.StandardSave(tree),
                                                       meta=ocp.args.JsonSave(meta)))
        if self.primary:
            for old in self.epochs()[KEEP:]:
                path = os.path.join(self.path, epoch_name(old))
                os.rename(path, path + ".jaxconv-deleting")   # gone at once, whole
                shutil.rmtree(path + ".jaxconv-deleting")

    def _orbax(self):
        import orbax.checkpoint as ocp

        if self._checkpointer is None:
            self._checkpointer = ocp.Checkpointer(ocp.CompositeCheckpointHandler())
        return self._checkpointer

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


def _digest(tree) -> str:
    """SHA-256 over every leaf's dtype, shape and bytes (replicated: this process's copy)."""
    sha = hashlib.sha256()
    for leaf in jax.tree.leaves(tree):
        value = np.ascontiguousarray(host(leaf))
        sha.update(f"{value.dtype}{value.shape}".encode())
        sha.update(value.tobytes())
    return sha.hexdigest()


def _write_atomically(path: str, text: str) -> None:
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
