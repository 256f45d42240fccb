"""The data loaders: scikit-learn's digits, and CIFAR-10 from fake pickles written
in the real ``cifar-10-batches-py`` format."""
import os
import pickle

import numpy as np
import pytest
from sklearn.datasets import load_digits as sklearn_digits

from jaxconv import data


def test_digits_split_shapes_and_dtypes():
    d = data.load_digits()
    assert set(d) == {"X_train", "y_train", "X_val", "y_val", "X_test", "y_test"}
    assert d["X_train"].shape == (1297, 1, 8, 8)
    assert d["X_val"].shape == (250, 1, 8, 8) and d["X_test"].shape == (250, 1, 8, 8)
    for split in ("train", "val", "test"):
        assert d[f"X_{split}"].dtype == np.float32
        assert d[f"y_{split}"].dtype == np.int32
        assert len(d[f"X_{split}"]) == len(d[f"y_{split}"])
    assert set(np.unique(d["y_train"])) == set(range(10))


def test_digits_are_the_real_images_minus_the_train_mean():
    d = data.load_digits()
    raw = data.load_digits(subtract_mean=False)
    mean = raw["X_train"].mean(axis=0)
    np.testing.assert_allclose(d["X_train"].mean(axis=0), 0, atol=1e-5)
    for split in ("train", "val", "test"):
        np.testing.assert_allclose(d[f"X_{split}"], raw[f"X_{split}"] - mean, atol=1e-5)
        np.testing.assert_array_equal(d[f"y_{split}"], raw[f"y_{split}"])
    # Every scikit-learn image appears exactly once, with its own label.
    digits = sklearn_digits()
    images = np.concatenate([raw[f"X_{s}"] for s in ("train", "val", "test")])[:, 0]
    labels = np.concatenate([raw[f"y_{s}"] for s in ("train", "val", "test")])
    ours = sorted(zip(map(bytes, images.astype(np.uint8).reshape(len(images), -1)), labels))
    theirs = sorted(zip(map(bytes, digits.images.astype(np.uint8).reshape(len(images), -1)),
                        digits.target))
    assert ours == theirs


def test_digits_split_is_deterministic_and_seeded():
    a, b = data.load_digits(), data.load_digits()
    np.testing.assert_array_equal(a["X_val"], b["X_val"])
    c = data.load_digits(seed=1)
    assert not np.array_equal(a["y_val"], c["y_val"])
    small = data.load_digits(num_validation=100, num_test=50)
    assert len(small["y_val"]) == 100 and len(small["y_test"]) == 50
    assert len(small["y_train"]) == 1797 - 150
    with pytest.raises(ValueError, match="num_validation"):
        data.load_digits(num_validation=1000, num_test=1000)


def _write_cifar(folder, n_per_batch=6, seed=0):
    """Six pickles in CIFAR-10's format: dict with 'data' (N, 3072) uint8, 'labels'."""
    rng = np.random.default_rng(seed)
    os.makedirs(folder, exist_ok=True)
    written = {}
    for name in data.CIFAR10_FILES:
        batch = {"batch_label": name, "data": rng.integers(0, 256, (n_per_batch, 3072), np.uint8),
                 "labels": [int(v) for v in rng.integers(0, 10, n_per_batch)],
                 "filenames": [f"{name}_{i}.png" for i in range(n_per_batch)]}
        with open(os.path.join(folder, name), "wb") as f:
            pickle.dump(batch, f, protocol=2)
        written[name] = batch
    return written


def test_cifar10_from_pickles(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    written = _write_cifar(folder)
    d = data.load_cifar10(folder, num_training=25, num_validation=5, num_test=4)
    assert d["X_train"].shape == (25, 3, 32, 32) and d["X_train"].dtype == np.float32
    assert d["X_val"].shape == (5, 3, 32, 32) and d["X_test"].shape == (4, 3, 32, 32)
    train_rows = np.concatenate([written[f"data_batch_{i}"]["data"] for i in range(1, 6)])
    train_labels = np.concatenate([written[f"data_batch_{i}"]["labels"] for i in range(1, 6)])
    mean = train_rows[:25].astype(np.float64).mean(0)
    # Row layout is channel-major: pixel (c, h, w) sits at c*1024 + h*32 + w.
    n, c, h, w = 7, 2, 5, 31
    assert d["X_train"][n, c, h, w] == pytest.approx(
        train_rows[n, c * 1024 + h * 32 + w] - mean[c * 1024 + h * 32 + w], abs=1e-4)
    np.testing.assert_allclose(d["X_val"].reshape(5, -1), train_rows[25:30] - mean, atol=1e-4)
    np.testing.assert_allclose(d["X_test"].reshape(4, -1),
                               written["test_batch"]["data"][:4] - mean, atol=1e-4)
    np.testing.assert_array_equal(d["y_train"], train_labels[:25])
    np.testing.assert_array_equal(d["y_val"], train_labels[25:30])
    np.testing.assert_array_equal(d["y_test"], written["test_batch"]["labels"][:4])
    assert d["y_train"].dtype == np.int32
    # The parent folder works too.
    parent = data.load_cifar10(tmp_path, num_training=25, num_validation=5, num_test=4)
    np.testing.assert_array_equal(parent["X_val"], d["X_val"])


def test_cifar10_missing_file_is_named(tmp_path):
    _write_cifar(tmp_path)
    os.remove(tmp_path / "data_batch_3")
    with pytest.raises(FileNotFoundError, match="data_batch_3"):
        data.load_cifar10(tmp_path)
    with pytest.raises(FileNotFoundError, match="data_batch_1"):
        data.load_cifar10(tmp_path / "nowhere")


def test_cifar10_too_few_images(tmp_path):
    _write_cifar(tmp_path)
    with pytest.raises(ValueError, match="asked for 49000"):
        data.load_cifar10(tmp_path)


def test_cifar10_not_a_batch(tmp_path):
    _write_cifar(tmp_path)
    with open(tmp_path / "test_batch", "wb") as f:
        pickle.dump({"rows": []}, f)
    with pytest.raises(ValueError, match="test_batch is not a CIFAR-10 batch"):
        data.load_cifar10(tmp_path, num_training=25, num_validation=5, num_test=4)


# --- issue 10: data files never run code; every batch validated; one-line errors -------

class _Payload:
    """Unpickling this runs ``os.system(command)`` under a plain ``pickle.load``."""

    def __init__(self, command):
        self.command = command

    def __reduce__(self):
        return os.system, (self.command,)


class _EvalPayload(_Payload):
    def __reduce__(self):
        import builtins
        return builtins.exec, (f"open({self.marker!r}, 'w').write('ran')",)


def _malicious(marker, protocol, where):
    """A pickle whose payload would create ``marker``: as the whole batch, inside
    the dict, or in a numpy object array in place of the data."""
    payload = _Payload(f"touch {marker}")
    if where == "top":
        obj = payload
    elif where == "dict":
        obj = {"data": np.zeros((2, 3072), np.uint8), "labels": [0, 1], "batch_label": payload}
    elif where == "exec":
        obj = _EvalPayload("")
        obj.marker = str(marker)
    else:
        holder = np.empty(1, dtype=object)
        holder[0] = payload
        obj = {"data": holder, "labels": [0]}
    return pickle.dumps(obj, protocol=protocol)


@pytest.mark.parametrize("protocol", [0, 2, 4])
@pytest.mark.parametrize("where", ["top", "dict", "exec", "object-array"])
def test_crafted_pickle_runs_nothing(tmp_path, protocol, where):
    folder = tmp_path / "cifar"
    _write_cifar(folder)
    marker = tmp_path / "PWNED"
    blob = _malicious(marker, protocol, where)
    (folder / "data_batch_2").write_bytes(blob)
    with pytest.raises(ValueError) as info:
        data.load_cifar10(folder, num_training=25, num_validation=5, num_test=4)
    message = str(info.value)
    assert "data_batch_2" in message and "refused global" in message
    assert "\n" not in message
    assert not marker.exists()


def test_crafted_pickle_would_run_under_plain_pickle(tmp_path):
    # The oracle for the test above: the same bytes DO run code when unpickled naively.
    marker = tmp_path / "PWNED"
    pickle.loads(_malicious(marker, 2, "dict"))
    assert marker.exists()


def test_crafted_pickle_through_the_cli(tmp_path):
    import subprocess
    import sys
    folder = tmp_path / "cifar"
    _write_cifar(folder)
    marker = tmp_path / "PWNED"
    (folder / "test_batch").write_bytes(_malicious(marker, 2, "top"))
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    done = subprocess.run([sys.executable, "-m", "jaxconv.cli", "train", "--data", "cifar10",
                           "--data-dir", str(folder), "--epochs", "1"],
                          env=dict(os.environ, PYTHONPATH=root, JAX_PLATFORMS="cpu"),
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("\n") == 1 and "test_batch" in done.stderr, done.stderr
    assert "refused global posix.system" in done.stderr or "refused global os.system" \
        in done.stderr, done.stderr
    assert not marker.exists()


def _rewrite(folder, name, **changes):
    """Rewrite one batch of a fake CIFAR folder with some entries changed (None: removed)."""
    rng = np.random.default_rng(5)
    batch = {"batch_label": name, "data": rng.integers(0, 256, (6, 3072), np.uint8),
             "labels": [int(v) for v in rng.integers(0, 10, 6)]}
    for key, value in changes.items():
        if value is None:
            del batch[key]
        else:
            batch[key] = value
    with open(os.path.join(folder, name), "wb") as f:
        pickle.dump(batch, f, protocol=2)


@pytest.mark.parametrize("changes, message", [
    (dict(labels=[1, 2, 3, 4, 5]), "6 images but 5 labels"),                   # finding 5
    (dict(labels=[1, 2, 3, 4, 5, 6, 7]), "6 images but 7 labels"),
    (dict(labels=[1, 2, 10, 4, 5, 6]), "label 10 at index 2"),
    (dict(labels=[1, 2, 3, -1, 5, 6]), "label -1 at index 3"),
    (dict(labels=np.array([1, 2, 3, 4, 5, 2 ** 33 + 1])), "label 8589934593 at index 5"),
    (dict(labels=[1.0, 2, 3, 4, 5, 6]), "labels that are not a list of ints"),
    (dict(labels=[True, 2, 3, 4, 5, 6]), "labels that are not a list of ints"),
    (dict(labels="012345"), "labels that are not a list of ints"),
    (dict(data=np.zeros((6, 3072), np.float32)), "float32 array of shape (6, 3072)"),
    (dict(data=np.zeros((6, 3071), np.uint8)), "uint8 array of shape (6, 3071)"),
    (dict(data=[[0] * 3072] * 6), "holds data as list"),
    (dict(data=None), "keys 'batch_label', 'labels'"),
])
def test_bad_batches_are_named_in_one_line(tmp_path, changes, message):
    _write_cifar(tmp_path)
    _rewrite(tmp_path, "data_batch_4", **changes)
    with pytest.raises(ValueError) as info:
        data.load_cifar10(tmp_path, num_training=25, num_validation=5, num_test=4)
    assert message in str(info.value) and "data_batch_4" in str(info.value)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("damage", ["truncated", "empty", "garbage", "not a dict"])
def test_corrupt_pickles_are_one_line_value_errors(tmp_path, damage):
    _write_cifar(tmp_path)
    path = tmp_path / "data_batch_1"
    blob = path.read_bytes()
    path.write_bytes({"truncated": blob[:len(blob) // 2], "empty": b"",
                      "garbage": b"\x80\x04not a pickle at all",
                      "not a dict": pickle.dumps([1, 2, 3])}[damage])
    with pytest.raises(ValueError) as info:
        data.load_cifar10(tmp_path, num_training=25, num_validation=5, num_test=4)
    assert "data_batch_1" in str(info.value) and "\n" not in str(info.value)


def test_bytes_keys_and_label_arrays_are_accepted(tmp_path):
    # The official files read with encoding="bytes" have bytes keys; NumPy label arrays too.
    written = _write_cifar(tmp_path)
    with open(tmp_path / "data_batch_1", "wb") as f:
        batch = written["data_batch_1"]
        pickle.dump({b"data": batch["data"], b"labels": np.array(batch["labels"], np.int64)}, f,
                    protocol=4)
    d = data.load_cifar10(tmp_path, num_training=25, num_validation=5, num_test=4,
                          subtract_mean=False)
    np.testing.assert_array_equal(d["y_train"][:6], batch["labels"])
    np.testing.assert_array_equal(d["X_train"][:6].reshape(6, -1), batch["data"])
