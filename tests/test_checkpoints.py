"""Issue 10 in the Solver: the checkpoint folder is shared with its user (finding 2),
every checkpoint is a good one (3), resume falls back past damage (4), labels and
other data checked where they are concrete (6, 10), late failures come early (7)."""
import os
import pathlib
import shutil
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxconv import _checkpoints, cli, optim
from jaxconv.solver import NonFiniteLossError, Solver
from test_solver import _assert_trees_equal, _leaves, _ours, _solver, digits, small  # noqa: F401
from test_solver import uninterrupted  # noqa: F401  (4 epochs, no checkpoints)


def _is_ours(name):
    """A name jaxconv writes: checkpoints, what a killed save leaves, marker, lock."""
    return bool(_checkpoints._EPOCH.match(name) or _checkpoints._LEFTOVER.match(name)
                or name in (_checkpoints.MARKER, _checkpoints.LOCK))


def _snapshot(folder, skip_ours=True):
    """Every path under ``folder`` with its bytes (files) or None (folders), but
    for jaxconv's own names at the top (with ``skip_ours``)."""
    out = {}
    for root, dirs, files in os.walk(folder):
        rel = os.path.relpath(root, folder)
        if skip_ours and rel == ".":
            dirs[:] = [d for d in dirs if not _is_ours(d)]
            files = [f for f in files if not _is_ours(f)]
        for d in dirs:
            out[os.path.join(rel, d)] = None
        for f in files:
            with open(os.path.join(root, f), "rb") as fh:
                out[os.path.join(rel, f)] = fh.read()
    return out


def _users_things(folder):
    """What the issue saw lost: a dated folder with files, a 0/, an empty 100/, files."""
    os.makedirs(folder / "2024" / "runs")
    (folder / "2024" / "runs" / "notes.txt").write_text("my experiment notes")
    (folder / "2024" / "commit_success.txt").write_text("not orbax's")
    os.makedirs(folder / "0")
    (folder / "0" / "weights.npy").write_bytes(b"\x93NUMPY fake")
    os.makedirs(folder / "100")
    (folder / "README").write_text("my folder")
    (folder / "jaxconv-epoch-notes.txt").write_text("a name that only looks like ours")


def test_users_files_and_folders_are_never_touched(small, uninterrupted, tmp_path):
    _users_things(tmp_path)
    before = _snapshot(tmp_path)
    assert len(before) == 9
    _solver(small, num_epochs=2, checkpoint_dir=tmp_path).train()
    resumed = _solver(small, num_epochs=4, checkpoint_dir=tmp_path)
    assert resumed.epoch == 2                     # not 100, not 2024: those are not ours
    resumed.train()                               # keep-3 clean-up runs at epoch 4
    _assert_trees_equal(resumed.params, uninterrupted.params)
    assert _snapshot(tmp_path) == before
    assert _ours(tmp_path) == ["jaxconv-epoch-000002", "jaxconv-epoch-000003",
                               "jaxconv-epoch-000004", "jaxconv-epoch-notes.txt"]
    assert _solver(small, num_epochs=4, checkpoint_dir=tmp_path).epoch == 4


def _read_only(path):
    """A folder this process cannot write, and how to undo it: chmod for users, the
    immutable flag for root (or, where root may not set it, /proc/1: not writable)."""
    if os.geteuid() != 0:
        os.chmod(path, 0o555)
        return path, lambda: os.chmod(path, 0o755)
    try:
        subprocess.run(["chattr", "+i", str(path)], check=True, capture_output=True)
        return path, lambda: subprocess.run(["chattr", "-i", str(path)], check=True)
    except (OSError, subprocess.CalledProcessError):
        return pathlib.Path("/proc/1"), lambda: None


def test_unusable_folders_fail_before_the_first_step(small, tmp_path):
    with pytest.raises(ValueError, match=r"checkpoint_dir must name a folder, got ''"):
        _solver(small, checkpoint_dir="")
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match=r"checkpoint_dir .*file is a file, not a folder"):
        _solver(small, checkpoint_dir=tmp_path / "file")
    with pytest.raises(ValueError, match=r"cannot create checkpoint_dir .*file/sub"):
        _solver(small, checkpoint_dir=tmp_path / "file" / "sub")
    (tmp_path / "ro").mkdir()
    locked, undo = _read_only(tmp_path / "ro")
    before = sorted(os.listdir(locked))
    try:
        with pytest.raises(ValueError, match=rf"checkpoint_dir {locked} is not writable"):
            _solver(small, checkpoint_dir=locked)
    finally:
        undo()
    assert sorted(os.listdir(locked)) == before


def _hold_lock(folder):
    """Another process holding the folder's lock, as a running ``jaxconv train`` does."""
    code = ("import fcntl, os, sys, time\n"
            f"fd = os.open({str(folder / _checkpoints.LOCK)!r}, os.O_RDWR | os.O_CREAT)\n"
            "fcntl.flock(fd, fcntl.LOCK_EX)\n"
            "os.write(fd, f'{os.getpid()} on this host'.encode())\n"
            "print('locked', flush=True)\ntime.sleep(600)\n")
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline() == "locked\n"
    return holder


def test_second_run_on_a_folder_fails_at_once_and_a_dead_runs_lock_is_taken(small, tmp_path,
                                                                            capsys):
    holder = _hold_lock(tmp_path)
    try:
        with pytest.raises(ValueError, match=rf"in use by another run \(pid {holder.pid} "):
            _solver(small, checkpoint_dir=tmp_path)
        args = ["train", "--quiet", "--model", "fcnet", "--epochs", "1", "--checkpoint-dir",
                str(tmp_path)]
        with pytest.raises(SystemExit) as info:
            cli.main(args)
        assert info.value.code == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and f"in use by another run (pid {holder.pid}" in err, err
        assert "epoch" not in capsys.readouterr().out
    finally:
        holder.kill()        # SIGKILL: the lock file stays behind, with a dead pid in it
        holder.wait()
    assert str(holder.pid) in (tmp_path / _checkpoints.LOCK).read_text()
    solver = _solver(small, num_epochs=1, checkpoint_dir=tmp_path)
    solver.train()
    assert _ours(tmp_path) == ["jaxconv-epoch-000001"]
    assert (tmp_path / _checkpoints.LOCK).read_text().startswith(f"{os.getpid()} ")


@pytest.mark.parametrize("where", ["file", "read-only"])
def test_cli_bad_checkpoint_folder_is_one_line_before_training(tmp_path, capsys, where):
    target, undo = tmp_path / "ckpt", lambda: None
    if where == "file":
        target.write_text("x")
    else:
        target.mkdir()
        target, undo = _read_only(target)
    try:
        with pytest.raises(SystemExit) as info:
            cli.main(["train", "--quiet", "--model", "fcnet", "--epochs", "1",
                      "--checkpoint-dir", str(target)])
    finally:
        undo()
    out, err = capsys.readouterr()
    assert info.value.code == 2 and err.count("\n") == 1 and "Traceback" not in err
    assert "is a file" in err if where == "file" else "is not writable" in err
    assert "jaxconv train:" in err and "(Epoch" not in out


def test_last_update_making_params_nan_is_not_checkpointed(small, tmp_path):
    # The learning rate is nan for update 20 alone: iteration 20 (the last of epoch 2)
    # has a finite loss but leaves nan parameters behind.
    poisoned = optim.sgd(lambda count: jnp.where(count == 19, jnp.nan, 1e-2))
    solver = _solver(small, optimizer=poisoned, lr_decay=1.0, num_epochs=3,
                     checkpoint_dir=tmp_path)
    with pytest.raises(NonFiniteLossError, match=r"non-finite parameters or optimizer state "
                       r"after iteration 20 \(the last of epoch 2; its loss was finite\).*"
                       r"last good checkpoint \(epoch 1\)") as info:
        solver.train()
    assert info.value.iteration == 20 and len(solver.loss_history) == 20
    assert np.all(np.isfinite(solver.loss_history))
    assert _ours(tmp_path) == ["jaxconv-epoch-000001"]
    survivor = _solver(small, optimizer=poisoned, lr_decay=1.0, num_epochs=3,
                       checkpoint_dir=tmp_path)
    assert survivor.epoch == 1
    for tree in (survivor.params, survivor.best_params, survivor.opt_state):
        assert all(np.all(np.isfinite(x)) for x in _leaves(tree) if x.dtype.kind == "f")


def test_a_non_finite_tree_is_never_saved(tmp_path):
    folder = _checkpoints.CheckpointFolder(tmp_path, verbose=False)
    tree = {"params": {"W": jnp.array([1.0, jnp.inf])}, "key": jnp.zeros(2, jnp.uint32)}
    with folder.locked():
        with pytest.raises(ValueError, match="refusing to checkpoint epoch 1"):
            folder.save(1, tree, {})
    assert _ours(tmp_path) == []


def _damage(path, how):
    files = [os.path.join(r, f) for r, _, fs in os.walk(path) for f in fs]
    data = [f for f in files if os.sep + "d" + os.sep in f]
    if how == "truncated":
        for f in data:
            with open(f, "r+b") as fh:
                fh.truncate(os.path.getsize(f) // 2)
    elif how == "emptied":
        for f in files:
            open(f, "w").close()
    elif how == "meta deleted":
        shutil.rmtree(os.path.join(path, "meta"))
    elif how == "arrays deleted":
        for f in data:
            os.remove(f)
    elif how == "bit flipped":   # a silent change: only the digest can tell
        biggest = max(data, key=os.path.getsize)
        with open(biggest, "r+b") as fh:
            fh.seek(os.path.getsize(biggest) // 2)
            byte = fh.read(1)
            fh.seek(-1, 1)
            fh.write(bytes([byte[0] ^ 1]))
    elif how == "folder emptied":
        shutil.rmtree(path)
        os.mkdir(path)


def test_resume_falls_back_past_a_damaged_newest_checkpoint(small, uninterrupted, tmp_path,
                                                            capfd):
    base = tmp_path / "base"
    _solver(small, num_epochs=3, checkpoint_dir=base).train()
    for how in ("truncated", "emptied", "meta deleted", "arrays deleted", "bit flipped",
                "folder emptied"):
        folder = tmp_path / how.replace(" ", "-")
        shutil.copytree(base, folder)
        _damage(folder / "jaxconv-epoch-000003", how)
        capfd.readouterr()
        resumed = _solver(small, num_epochs=4, checkpoint_dir=folder, verbose=True)
        err = capfd.readouterr().err
        assert resumed.epoch == 2, how
        lines = [line for line in err.splitlines() if "skipped" in line]
        assert len(lines) == 1 and "jaxconv-epoch-000003 (" in lines[0], (how, err)
        assert resumed.loss_history == uninterrupted.loss_history[:20]
    resumed.verbose = False
    resumed.train()                                  # from epoch 2: the same end
    _assert_trees_equal(resumed.params, uninterrupted.params)
    _assert_trees_equal(resumed.opt_state, uninterrupted.opt_state)


def test_all_checkpoints_damaged_is_an_error_that_deletes_nothing(small, tmp_path):
    _solver(small, num_epochs=2, checkpoint_dir=tmp_path).train()
    for epoch in (1, 2):
        _damage(tmp_path / f"jaxconv-epoch-00000{epoch}", "meta deleted")
    before = _snapshot(tmp_path, skip_ours=False)
    with pytest.raises(ValueError, match=r"none of the 2 checkpoints in .* can be restored"):
        _solver(small, num_epochs=3, checkpoint_dir=tmp_path)
    after = _snapshot(tmp_path, skip_ours=False)
    for snapshot in (before, after):   # the lock file now holds this process's pid
        snapshot.pop(os.path.join(".", _checkpoints.LOCK))
    assert after == before


# --- labels and data where they are concrete (findings 6, 10) ---------------------------

def _data(small, **changes):
    return {**small, **changes}


def test_out_of_range_labels_are_named(small):
    y = small["y_train"].copy()
    y[7] = 10
    with pytest.raises(ValueError, match=r"labels must be in \[0, 10\).*y_train\[7\]=10"):
        _solver(_data(small, y_train=y))
    y = small["y_val"].astype(np.int64)
    y[3] = -1
    with pytest.raises(ValueError, match=r"y_val\[3\]=-1"):
        _solver(_data(small, y_val=y))
    y = small["y_train"].astype(np.int64)
    y[0] = 2 ** 32 + 1                                   # would wrap to 1 as int32
    with pytest.raises(ValueError, match=r"y_train\[0\]=4294967297"):
        _solver(_data(small, y_train=y))


def test_check_accuracy_checks_its_labels(uninterrupted, small):
    X, y = small["X_val"], small["y_val"]
    with pytest.raises(TypeError, match=r"check_accuracy: y must hold integer class labels"):
        uninterrupted.check_accuracy(X, y + 0.5)
    bad = y.copy()
    bad[5] = 11
    with pytest.raises(ValueError, match=r"check_accuracy: labels must be in \[0, 10\).*y\[5\]"):
        uninterrupted.check_accuracy(X, bad)


@pytest.mark.parametrize("change, error, match", [
    (dict(data="complex"), TypeError, r"X_train must hold real numbers, got X_train.dtype=complex"),
    (dict(optimizer="adam"), TypeError, r"optimizer must be an optax.GradientTransformation"),
    (dict(seed=2 ** 70), ValueError, r"seed must be < 2\*\*32"),
    (dict(seed=2 ** 32), ValueError, r"seed must be < 2\*\*32"),
    (dict(lr_decay=float("inf")), ValueError, r"lr_decay must be finite"),
    (dict(num_val_samples=0), ValueError, r"num_val_samples must be >= 1"),
])
def test_small_gaps(small, change, error, match):
    if change.get("data") == "complex":
        change["data"] = _data(small, X_train=small["X_train"] + 1j)
    with pytest.raises(error, match=match):
        _solver(change.pop("data", small), **change)
