"""``jaxconv train`` end to end: the real command in a subprocess, the defaults'
accuracy, --plot, --checkpoint-dir, --distributed, and bad input -> exit 2."""
import os
import re
import socket
import subprocess
import sys

import pytest

from jaxconv import cli

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _env():
    env = dict(os.environ, PYTHONPATH=ROOT, JAX_PLATFORMS="cpu")
    env.pop("XLA_FLAGS", None)
    return env


def _accuracies(text):
    match = re.search(r"train acc (\S+) \| val acc (\S+) \| test acc (\S+)", text)
    assert match, text
    return [float(v) for v in match.groups()]


def test_train_one_epoch_with_plot(tmp_path):
    plot = tmp_path / "curves.png"
    result = subprocess.run(
        [sys.executable, "-m", "jaxconv.cli", "train", "--epochs", "1", "--plot", str(plot)],
        env=_env(), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "ThreeLayerConvNet on digits (1297 train / 250 val / 250 test)" in result.stdout
    assert "(Epoch 1 / 1)" in result.stdout
    train, val, test = _accuracies(result.stdout)
    assert val > 0.3 and test > 0.3   # ten classes: chance is 0.1
    assert "epoch 1/1" in result.stderr   # the progress bar
    with open(plot, "rb") as f:
        head = f.read(8)
    assert head == PNG_SIGNATURE and os.path.getsize(plot) > 5000
    assert f"saved {plot}" in result.stdout


def test_defaults_reach_val_accuracy_095(capsys):
    assert cli.main(["train", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "10 epochs of 25 batches of 50" in out
    train, val, test = _accuracies(out)
    assert val >= 0.95 and test >= 0.9


def test_checkpoint_dir_resumes(tmp_path, capsys):
    args = ["train", "--quiet", "--model", "fcnet", "--optimizer", "sgd_momentum", "--lr", "0.01",
            "--batch-size", "100", "--checkpoint-dir", str(tmp_path)]
    assert cli.main(args + ["--epochs", "1"]) == 0
    first = capsys.readouterr().out
    assert "FullyConnectedNet" in first and "resuming" not in first
    assert cli.main(args + ["--epochs", "2"]) == 0
    second = capsys.readouterr().out
    assert f"resuming from the checkpoint of epoch 1 in {tmp_path}" in second
    assert "parameters of epoch" in second
    assert sorted(os.listdir(tmp_path)) == ["jaxconv-checkpoints.json", "jaxconv-checkpoints.lock",
                                            "jaxconv-epoch-000001", "jaxconv-epoch-000002"]


def test_diverging_run_exits_1_with_the_step(capsys):
    status = cli.main(["train", "--quiet", "--optimizer", "sgd", "--lr", "1e9", "--epochs", "1"])
    assert status == 1
    err = capsys.readouterr().err
    assert re.fullmatch(r"jaxconv train: error: Solver: non-finite loss \S+ at iteration \d+ "
                        r"\(epoch 1, batch \d+ of 25\); training stopped\n", err), err


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_distributed_two_processes(tmp_path):
    port = _free_port()
    command = [sys.executable, "-m", "jaxconv.cli", "train", "--distributed", "--coordinator",
               f"127.0.0.1:{port}", "--num-processes", "2", "--epochs", "1", "--quiet",
               "--model", "fcnet", "--checkpoint-dir", str(tmp_path), "--process-id"]
    procs = [subprocess.Popen(command + [str(i)], env=_env(), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for i in range(2)]
    try:
        outputs = [p.communicate(timeout=300) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    for p, (out, err) in zip(procs, outputs):
        assert p.returncode == 0, err
    assert "2 cpu device(s)" in outputs[0][0]
    _accuracies(outputs[0][0])
    # saved by both, together
    assert os.path.isfile(tmp_path / "jaxconv-epoch-000001" / "commit_success.txt")
    # Only process 0 reports (gloo's own connection line aside).
    assert "jaxconv train" not in outputs[1][0] and "acc" not in outputs[1][0]


@pytest.mark.parametrize("argv, message", [
    (["train", "--epochs", "0"], "--epochs: must be >= 1"),
    (["train", "--optimizer", "lbfgs"], "--optimizer: invalid choice"),
    (["train", "--lr", "-1"], "--lr: must be > 0"),
    (["train", "--data", "cifar10"], "--data cifar10 needs --data-dir"),
    (["train", "--data", "cifar10", "--data-dir", "{tmp}"], "missing {tmp}/data_batch_1"),
    (["train", "--plot", "{tmp}/no/such/folder/x.png"], "folder {tmp}/no/such/folder"),
    (["train", "--plot", "{tmp}/x.jpg"], "must end in .png"),
    (["train", "--process-id", "1"], "only make sense with --distributed"),
    # issue 10: non-finite rates, seeds JAX would fold, an output folder that is not there
    (["train", "--lr", "inf"], "--lr: must be > 0 and finite, got inf"),
    (["train", "--seed", str(2 ** 70)], "--seed: must be in [0, 2**32)"),
    (["bench", "--json", "{tmp}/missing/x.json"], "folder {tmp}/missing does not exist"),
])
def test_bad_input_exits_2_with_one_line(argv, message, tmp_path, capsys):
    argv = [a.format(tmp=tmp_path) for a in argv]
    with pytest.raises(SystemExit) as info:
        cli.main(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert message.format(tmp=tmp_path) in err
    assert err.count("\n") == 1 and "Traceback" not in err
