"""Issue 10: ``jaxconv train --checkpoint-dir D`` killed with SIGKILL at random
moments (also in the middle of a save, and just after one) resumes to parameters
bit-identical to an uninterrupted run, and leaves the user's own files in D alone."""
import os
import random
import subprocess
import sys
import time

import numpy as np
import pytest

from test_checkpoints import _snapshot, _users_things

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EPOCHS = 4   # the keep-3 clean-up runs in the last epoch, so kills can land in it too
COMMAND = [sys.executable, "-m", "jaxconv.cli", "train", "--quiet", "--model", "fcnet",
           "--optimizer", "sgd_momentum", "--lr", "0.01", "--batch-size", "100",
           "--epochs", str(EPOCHS), "--seed", "7", "--checkpoint-dir"]

pytestmark = pytest.mark.slow


def _env():
    env = dict(os.environ, PYTHONPATH=ROOT, JAX_PLATFORMS="cpu")
    for name in ("XLA_FLAGS", "JAX_ENABLE_X64"):
        env.pop(name, None)
    return env


def _start(folder):
    return subprocess.Popen(COMMAND + [str(folder)], env=_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)


def _finish(folder):
    done = subprocess.run(COMMAND + [str(folder)], env=_env(), capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    return done


def _final_arrays(folder):
    """The last checkpoint's arrays, read by orbax directly (not through the Solver)."""
    import orbax.checkpoint as ocp

    path = os.path.join(folder, f"jaxconv-epoch-{EPOCHS:06d}", "train")
    with ocp.PyTreeCheckpointer() as checkpointer:
        tree = checkpointer.restore(path)
    import jax
    return [np.asarray(x) for x in jax.tree.leaves(tree)]


def _wait_for(process, folder, appears, deadline=300.0):
    """Return as soon as ``appears(names in folder)`` holds, or the process ended."""
    start = time.monotonic()
    while time.monotonic() - start < deadline and process.poll() is None:
        if appears(set(os.listdir(folder))):
            return
        time.sleep(0.001)


def _locked_by(folder, pid):
    """The run's Solver holds the folder's lock: its first step is near."""
    try:
        with open(os.path.join(folder, "jaxconv-checkpoints.lock")) as f:
            return f.read().startswith(f"{pid} ")
    except OSError:
        return False


def _ours(names):
    return {n for n in names if n.startswith("jaxconv-epoch-0")}


@pytest.mark.filterwarnings("ignore:Sharding info not provided")
def test_kill_9_at_random_moments_resumes_bit_identical(tmp_path):
    _finish(tmp_path / "reference")
    expected = _final_arrays(tmp_path / "reference")
    folder = tmp_path / "killed"
    folder.mkdir()
    _users_things(folder)
    before = _snapshot(folder)
    rng = random.Random(0)
    moments = [
        # orbax's temporary folder exists: a save is under way
        ("during a save", lambda p, seen: _wait_for(
            p, folder, lambda names: any(".orbax-checkpoint-tmp" in n for n in names))),
        # a checkpoint this run wrote has just been renamed into place
        ("just after a save", lambda p, seen: _wait_for(
            p, folder, lambda names: _ours(names) - seen)),
        # its Solver holds the lock, then a random short delay
        ("at a random moment", lambda p, seen: (
            _wait_for(p, folder, lambda names: _locked_by(folder, p.pid)),
            time.sleep(rng.uniform(0.0, 1.0)))),
    ]
    for name, wait in moments:
        seen = _ours(os.listdir(folder))
        process = _start(folder)
        wait(process, seen)
        process.kill()
        process.wait()
        # The first two moments come while the run still has saves to make: a real kill.
        assert process.returncode == -9 or name == "at a random moment", name
        assert process.returncode in (-9, 0), (name, process.returncode)
        assert _snapshot(folder) == before, name
    _finish(folder)                           # resume to the end
    got = _final_arrays(folder)
    assert len(got) == len(expected) > 10
    for a, b in zip(got, expected):
        np.testing.assert_array_equal(a, b)
    assert _snapshot(folder) == before
    assert sorted(_ours(os.listdir(folder))) == [f"jaxconv-epoch-{e:06d}"
                                                  for e in range(EPOCHS - 2, EPOCHS + 1)]
