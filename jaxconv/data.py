"""Datasets as CS231n's dict: ``X_train, y_train, X_val, y_val, X_test, y_test``.

Images are NumPy ``float32`` in NCHW, with the TRAINING set's mean image
subtracted from every split (as CS231n's ``get_CIFAR10_data`` does); labels are
``int32`` class indices.
"""
from __future__ import annotations

import os
import pickle

import numpy as np

try:
    from numpy._core.multiarray import _reconstruct
except ImportError:  # NumPy 1
    from numpy.core.multiarray import _reconstruct

__all__ = ["load_cifar10", "load_digits"]

CIFAR10_FILES = tuple(f"data_batch_{i}" for i in range(1, 6)) + ("test_batch",)


def load_digits(*, num_validation: int = 250, num_test: int = 250, seed: int = 0,
                subtract_mean: bool = True) -> dict[str, np.ndarray]:
    """scikit-learn's bundled handwritten digits (1,797 real 8x8 images, 10 classes).

    The images ship inside the scikit-learn package: nothing is downloaded.
    The samples are shuffled once by ``seed`` (the same split on every call),
    then cut into ``num_validation`` validation, ``num_test`` test and the rest
    (1,297 by default) training images.

    Returns:
      ``X_* (N, 1, 8, 8)`` float32 pixel intensities in ``[0, 16]`` minus the
      training mean image; ``y_* (N,)`` int32 in ``[0, 10)``.
    """
    from sklearn.datasets import load_digits as sklearn_digits

    digits = sklearn_digits()
    X = digits.images.astype(np.float32)[:, None]
    y = digits.target.astype(np.int32)
    if num_validation < 1 or num_test < 1 or num_validation + num_test >= len(X):
        raise ValueError(f"load_digits: num_validation={num_validation} and num_test={num_test} "
                         f"must be >= 1 and leave training images out of {len(X)}")
    order = np.random.default_rng(seed).permutation(len(X))
    X, y = X[order], y[order]
    n_train = len(X) - num_validation - num_test
    splits = {"train": slice(0, n_train), "val": slice(n_train, n_train + num_validation),
              "test": slice(n_train + num_validation, None)}
    return _as_dict(X, y, splits, subtract_mean)


def load_cifar10(root: str | os.PathLike, *, num_training: int = 49000,
                 num_validation: int = 1000, num_test: int = 1000,
                 subtract_mean: bool = True) -> dict[str, np.ndarray]:
    """CIFAR-10 from the standard ``cifar-10-batches-py`` pickles.

    ``root`` is that folder (or the folder holding it). As in CS231n, validation
    is the ``num_validation`` training images after the first ``num_training``,
    and the test set is the first ``num_test`` images of ``test_batch``.

    Returns:
      ``X_* (N, 3, 32, 32)`` float32 pixel values in ``[0, 255]`` minus the
      training mean image; ``y_* (N,)`` int32.

    The files are read by an unpickler that admits nothing but what a CIFAR
    batch holds (dicts, lists, strings, numbers, NumPy arrays): a crafted file
    cannot run code. Every batch is validated: ``data`` a uint8 ``(N, 3072)``
    array, ``labels`` N ints in ``[0, 10)``.

    Raises:
      FileNotFoundError: naming the first missing file of ``data_batch_1..5``,
        ``test_batch``.
      ValueError: one line naming a file that is unreadable, truncated, not a
        CIFAR-10 batch, or holds anything else (a refused global, labels that do
        not match the images one to one, out-of-range labels).
    """
    root = os.fspath(root)
    nested = os.path.join(root, "cifar-10-batches-py")
    if not os.path.exists(os.path.join(root, CIFAR10_FILES[0])) and os.path.isdir(nested):
        root = nested
    for name in CIFAR10_FILES:
        path = os.path.join(root, name)
        if not os.path.isfile(path):
            raise FileNotFoundError(
                f"load_cifar10: missing {path} (the cifar-10-batches-py folder must hold "
                f"{', '.join(CIFAR10_FILES)}; get it from "
                "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz)")
    train = [_cifar_batch(os.path.join(root, name)) for name in CIFAR10_FILES[:-1]]
    X_train = np.concatenate([x for x, _ in train])
    y_train = np.concatenate([y for _, y in train])
    X_test, y_test = _cifar_batch(os.path.join(root, CIFAR10_FILES[-1]))
    if num_training + num_validation > len(X_train) or num_test > len(X_test):
        raise ValueError(f"load_cifar10: asked for {num_training} + {num_validation} training "
                         f"and {num_test} test images, the files hold {len(X_train)} and "
                         f"{len(X_test)}")
    X = np.concatenate([X_train[:num_training + num_validation], X_test[:num_test]])
    y = np.concatenate([y_train[:num_training + num_validation], y_test[:num_test]])
    n_trval = num_training + num_validation
    splits = {"train": slice(0, num_training), "val": slice(num_training, n_trval),
              "test": slice(n_trval, None)}
    return _as_dict(X, y, splits, subtract_mean)


def _cifar_batch(path: str) -> tuple[np.ndarray, np.ndarray]:
    """One pickle: ``data`` ``(N, 3072)`` uint8 rows in CHW order, ``labels`` ``N``
    ints in ``[0, 10)``. Read by :class:`_CifarUnpickler` (no code from the file
    runs); anything else is a ValueError naming the file, in one line."""
    try:
        with open(path, "rb") as f:
            batch = _CifarUnpickler(f).load()
    except OSError as error:
        raise ValueError(f"load_cifar10: cannot read {path}: {error.strerror or error}") from None
    except Exception as error:  # noqa: BLE001 -- truncated or crafted: any unpickling error
        reason = " ".join(str(error).split()) or type(error).__name__
        raise ValueError(f"load_cifar10: {path} is not a readable CIFAR-10 batch "
                         f"(pickle: {reason})") from None
    return _validated_batch(path, batch)


def _validated_batch(path: str, batch) -> tuple[np.ndarray, np.ndarray]:
    """Keys, dtypes, shapes and label range of one unpickled batch."""
    if not isinstance(batch, dict):
        raise ValueError(f"load_cifar10: {path} is not a CIFAR-10 batch (a "
                         f"{type(batch).__name__}, expected a dict)")
    # Python 2 pickles give str keys with encoding="latin1"; Python 3 ones may give bytes.
    batch = {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in batch.items()}
    if "data" not in batch or "labels" not in batch:
        keys = sorted(map(repr, batch))
        raise ValueError(f"load_cifar10: {path} is not a CIFAR-10 batch "
                         f"(keys {', '.join(keys) or 'none'}; expected 'data' and 'labels')")
    data, labels = batch["data"], batch["labels"]
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 \
            or data.shape[1] != 3 * 32 * 32:
        what = (f"{data.dtype} array of shape {data.shape}" if isinstance(data, np.ndarray)
                else type(data).__name__)
        raise ValueError(f"load_cifar10: {path} holds data as {what}, expected a uint8 "
                         f"array of shape (N, 3072)")
    if isinstance(labels, np.ndarray):
        ok = labels.ndim == 1 and np.issubdtype(labels.dtype, np.integer)
    else:
        ok = isinstance(labels, list) and all(
            isinstance(v, int) and not isinstance(v, bool) for v in labels)
    if not ok:
        raise ValueError(f"load_cifar10: {path} holds labels that are not a list of ints")
    if len(labels) != len(data):
        raise ValueError(f"load_cifar10: {path} holds {len(data)} images but {len(labels)} "
                         f"labels; each image needs exactly one")
    values = labels.tolist() if isinstance(labels, np.ndarray) else labels
    bad = next((i for i, v in enumerate(values) if not 0 <= v < 10), None)
    if bad is not None:
        raise ValueError(f"load_cifar10: {path} holds label {values[bad]} at index {bad}; "
                         "CIFAR-10 labels are in [0, 10)")
    X = data.reshape(-1, 3, 32, 32).astype(np.float32)
    return X, np.array(values, dtype=np.int32).reshape(-1)


def _latin1_encode(text, encoding="latin1"):
    """What Python 3 pickles of ``bytes`` call (``_codecs.encode(text, "latin1")``),
    for that one encoding only."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError(f"refused _codecs.encode(..., {encoding!r})")
    return text.encode("latin1")


class _CifarUnpickler(pickle.Unpickler):
    """An unpickler that can build nothing but a CIFAR batch: dicts, lists,
    strings, numbers and NumPy arrays. Every other global (``os.system``,
    ``builtins.eval``, any class) is refused before it is looked up, so no code
    from the file can run."""

    _ALLOWED = {
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("numpy.core.multiarray", "_reconstruct"): _reconstruct,  # pickled by NumPy 1
        ("numpy._core.multiarray", "_reconstruct"): _reconstruct,  # pickled by NumPy 2
        ("_codecs", "encode"): _latin1_encode,                     # bytes, protocol <= 2
    }

    def __init__(self, file):
        super().__init__(file, encoding="latin1")

    def find_class(self, module, name):
        try:
            return self._ALLOWED[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(
                f"refused global {module}.{name} (a CIFAR-10 batch holds only arrays, "
                "lists, strings and numbers)") from None


def _as_dict(X, y, splits, subtract_mean):
    out = {}
    for split, rows in splits.items():
        out[f"X_{split}"] = X[rows]
        out[f"y_{split}"] = y[rows]
    if subtract_mean:
        mean_image = out["X_train"].mean(axis=0, dtype=np.float64).astype(np.float32)
        for split in splits:
            out[f"X_{split}"] = out[f"X_{split}"] - mean_image
    return out
