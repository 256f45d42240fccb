"""Data parallel and multi-host: 4 forced CPU devices, and two processes forming one
JAX cluster on 127.0.0.1, train to the same parameters as one device."""
import os
import socket
import subprocess
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORKER = os.path.join(ROOT, "tests", "_train_worker.py")

pytestmark = pytest.mark.slow
_EPOCHS = 3  # tests/_train_worker.py's


def _run(out, devices):
    subprocess.run([sys.executable, WORKER, str(out)], env=_env(devices), check=True,
                   timeout=300)
    return np.load(out)


@pytest.fixture(scope="module")
def one_device(tmp_path_factory):
    # In a subprocess too, not in this one: the test session enables x64, and
    # dropout masks drawn under x64 differ from those drawn without it.
    result = _run(tmp_path_factory.mktemp("one") / "one.npz", devices=1)
    assert int(result["devices"]) == 1
    return result["params"], result["losses"], result["val_acc"]


def _env(devices):
    env = dict(os.environ, PYTHONPATH=ROOT, XLA_FLAGS=f"--xla_force_host_platform_device_count="
                                                      f"{devices}", JAX_PLATFORMS="cpu")
    env.pop("JAX_ENABLE_X64", None)
    return env


def _check(result, one_device, devices, processes):
    params, losses, val_acc = one_device
    assert int(result["devices"]) == devices and int(result["processes"]) == processes
    assert len(result["losses"]) == len(losses) == 10 * _EPOCHS
    # Same batches, same dropout masks, global batch-norm statistics: only the
    # order of the floating-point sums differs.
    np.testing.assert_allclose(result["losses"], losses, rtol=1e-5)
    np.testing.assert_allclose(result["params"], params, rtol=1e-4, atol=1e-5)
    assert np.abs(result["params"] - params).max() < 1e-4
    np.testing.assert_allclose(result["val_acc"], val_acc, atol=0.011)


def test_four_devices_equal_one(one_device, tmp_path):
    _check(_run(tmp_path / "four.npz", devices=4), one_device, devices=4, processes=1)


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_equal_one(one_device, tmp_path):
    port = _free_port()
    # Two processes of two CPU devices each: a 4-device global mesh; each
    # process feeds its 20 rows of every 40-row batch.
    procs = [subprocess.Popen([sys.executable, WORKER, str(tmp_path / f"p{i}.npz"), str(port),
                               "2", str(i)], env=_env(2), stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True) for i in range(2)]
    try:
        logs = [p.communicate(timeout=300)[0] for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    for p, log in zip(procs, logs):
        assert p.returncode == 0, log
    first, second = (np.load(tmp_path / f"p{i}.npz") for i in range(2))
    np.testing.assert_array_equal(first["params"], second["params"])
    _check(first, one_device, devices=4, processes=2)
