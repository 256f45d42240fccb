"""Bad input to the dense, norm, dropout and loss ops: ValueError / TypeError at
trace time (under jit too), naming the op, the argument and the shapes; the
autodiff twins validate identically."""
import jax
import numpy as np
import pytest

import jaxconv as jc

X, X4 = np.ones((4, 3)), np.ones((2, 4, 3, 3))
V3, V4 = np.ones(3), np.ones(4)
KEY = jax.random.key(0)
Y = np.array([0, 1, 2, 0])


def bn(x=X, gamma=V3, beta=V3, rm=V3, rv=V3, **hyper):
    hyper.setdefault("train", True)
    return lambda ops: ops.batch_norm(x, gamma, beta, rm, rv, **hyper)


CASES = {
    # name: (call(ops), error type, regex the message must match)
    "affine-x-1d": (lambda ops: ops.affine(np.ones(6), np.ones((6, 2)), np.ones(2)),
                    ValueError, r"affine: x must be \(N, d1, \.\.\., dk\).*x\.shape=\(6,\)"),
    "affine-features": (lambda ops: ops.affine(np.ones((2, 3, 2)), np.ones((5, 2)), np.ones(2)),
                        ValueError, r"affine: x has 6 features.*w expects 5.*w\.shape=\(5, 2\)"),
    "affine-w-rank": (lambda ops: ops.affine(X, np.ones((3, 2, 1)), np.ones(2)),
                      ValueError, r"affine: w must be 2-D, got w\.shape=\(3, 2, 1\)"),
    "affine-bias": (lambda ops: ops.affine(X, np.ones((3, 2)), np.ones(3)),
                    ValueError, r"affine: b must have shape \(2,\).*b\.shape=\(3,\)"),
    "affine-dtypes": (lambda ops: ops.affine(X.astype(np.float32), np.ones((3, 2)), np.ones(2)),
                      TypeError, r"affine: operands must share one dtype.*x\.dtype=float32"),
    "relu-int": (lambda ops: ops.relu(np.arange(3)), TypeError,
                 r"relu: x must have a floating dtype"),
    "relu-not-array": (lambda ops: ops.relu("x"), TypeError, r"relu: x must be an array"),
    "bn-gamma": (bn(gamma=V4), ValueError, r"batch_norm: gamma must have shape \(3,\), "
                 r"got gamma\.shape=\(4,\).*x\.shape=\(4, 3\)"),
    "bn-beta": (bn(beta=np.ones((1, 3))), ValueError, r"batch_norm: beta must have shape \(3,\)"),
    "bn-running-mean": (bn(rm=V4), ValueError, r"batch_norm: running_mean must have "
                        r"shape \(3,\), got running_mean\.shape=\(4,\)"),
    "bn-running-var": (bn(rv=np.ones(2), train=False), ValueError,
                       r"batch_norm: running_var must have shape \(3,\)"),
    "bn-spatial-gamma": (bn(x=X4, gamma=V3, beta=V4, rm=V4, rv=V4), ValueError,
                         r"gamma must have shape \(4,\).*x\.shape=\(2, 4, 3, 3\), axis=1"),
    "bn-axis": (bn(axis=2), ValueError,
                r"batch_norm: axis=2 is out of range for x\.shape=\(4, 3\)"),
    "bn-x-1d": (bn(x=V3), ValueError, r"batch_norm: x must be at least 2-D"),
    "bn-train-not-bool": (bn(train="yes"), TypeError, r"batch_norm: train must be a Python bool"),
    "bn-momentum": (bn(momentum=1.5), ValueError,
                    r"batch_norm: momentum must be in \[0\.0, 1\.0\]"),
    "bn-eps": (bn(eps=0.0), ValueError, r"batch_norm: eps must be in \(0\.0, inf\)"),
    "bn-gamma-dtype": (bn(gamma=V3.astype(np.float32)), TypeError,
                       r"batch_norm: operands must share one dtype"),
    "ln-gamma": (lambda ops: ops.layer_norm(np.ones((2, 3, 4)), np.ones(12), np.ones((3, 4))),
                 ValueError,
                 r"layer_norm: gamma must have shape \(3, 4\), got gamma\.shape=\(12,\)"),
    "ln-x-1d": (lambda ops: ops.layer_norm(V3, V3, V3), ValueError,
                r"layer_norm: x must be at least 2-D"),
    "gn-groups-divide": (lambda ops: ops.group_norm(X4, V4, V4, groups=3), ValueError,
                         r"group_norm: groups=3 must be >= 1 and divide the 4 channels"
                         r".*x\.shape=\(2, 4, 3, 3\)"),
    "gn-groups-zero": (lambda ops: ops.group_norm(X4, V4, V4, groups=0), ValueError,
                       r"group_norm: groups=0"),
    "gn-groups-float": (lambda ops: ops.group_norm(X4, V4, V4, groups=2.0), TypeError,
                        r"group_norm: groups must be an int"),
    "gn-gamma": (lambda ops: ops.group_norm(X4, V3, V4, groups=2), ValueError,
                 r"group_norm: gamma must have shape \(4,\), got gamma\.shape=\(3,\)"),
    "gn-nhwc-channels": (lambda ops: ops.group_norm(X4, V4, V4, groups=1, layout="NHWC"),
                         ValueError, r"group_norm: gamma must have shape \(3,\).*layout='NHWC'"),
    "gn-layout": (lambda ops: ops.group_norm(X4, V4, V4, groups=2, layout="CHWN"), ValueError,
                  r"group_norm: layout must be one of \('NCHW', 'NHWC'\), got 'CHWN'"),
    "gn-rank": (lambda ops: ops.group_norm(X, V3, V3, groups=1), ValueError,
                r"group_norm: x must be 4-D, got x\.shape=\(4, 3\)"),
    "dropout-keep-0": (lambda ops: ops.dropout(X, KEY, keep_prob=0.0), ValueError,
                       r"dropout: keep_prob must be in \(0\.0, 1\.0\], got 0\.0"),
    "dropout-keep-negative": (lambda ops: ops.dropout(X, KEY, keep_prob=-0.5), ValueError,
                              r"dropout: keep_prob must be in"),
    "dropout-keep-above-1": (lambda ops: ops.dropout(X, KEY, keep_prob=1.5), ValueError,
                             r"dropout: keep_prob must be in \(0\.0, 1\.0\], got 1\.5"),
    "dropout-keep-eval-too": (lambda ops: ops.dropout(X, KEY, keep_prob=2.0, train=False),
                              ValueError, r"dropout: keep_prob"),
    "dropout-keep-string": (lambda ops: ops.dropout(X, KEY, keep_prob="0.5"), TypeError,
                            r"dropout: keep_prob must be a Python float"),
    "dropout-key-float": (lambda ops: ops.dropout(X, np.ones(2), keep_prob=0.5), TypeError,
                          r"dropout: key must be a typed key.*key\.dtype=float64"),
    "dropout-key-batch": (lambda ops: ops.dropout(X, jax.random.split(KEY, 2), keep_prob=0.5),
                          ValueError, r"dropout: key must be a single key, got key\.shape=\(2,\)"),
    "dropout-train": (lambda ops: ops.dropout(X, KEY, keep_prob=0.5, train=1), TypeError,
                      r"dropout: train must be a Python bool"),
}
for loss in ("softmax_loss", "svm_loss"):
    CASES.update({
        f"{loss}-scores-1d": (lambda ops, loss=loss: getattr(ops, loss)(V4, Y), ValueError,
                              rf"{loss}: scores must be 2-D.*scores\.shape=\(4,\)"),
        f"{loss}-scores-3d": (lambda ops, loss=loss: getattr(ops, loss)(np.ones((4, 3, 1)), Y),
                              ValueError, rf"{loss}: scores must be 2-D"),
        f"{loss}-scores-int": (lambda ops, loss=loss: getattr(ops, loss)(np.ones((4, 3), int), Y),
                               TypeError, rf"{loss}: scores must have a floating dtype"),
        f"{loss}-labels-float": (lambda ops, loss=loss: getattr(ops, loss)(X, Y.astype(float)),
                                 TypeError, rf"{loss}: y must hold integer class labels.*float64"),
        f"{loss}-labels-bool": (lambda ops, loss=loss: getattr(ops, loss)(X, Y > 0), TypeError,
                                rf"{loss}: y must hold integer class labels"),
        f"{loss}-labels-2d": (lambda ops, loss=loss: getattr(ops, loss)(X, Y[:, None]),
                              ValueError, rf"{loss}: y must have shape \(4,\).*y\.shape=\(4, 1\)"),
        f"{loss}-batch-mismatch": (lambda ops, loss=loss: getattr(ops, loss)(X, Y[:3]),
                                   ValueError,
                                   rf"{loss}: y must have shape \(4,\).*y\.shape=\(3,\)"
                                   rf".*scores\.shape=\(4, 3\)"),
        f"{loss}-label-range": (lambda ops, loss=loss: getattr(ops, loss)(X, Y + 1),
                                ValueError, rf"{loss}: labels must be in \[0, 3\).*y\[2\]=3"),
    })
CASES["svm-margin"] = (lambda ops: ops.svm_loss(X, Y, margin=-1.0), ValueError,
                       r"svm_loss: margin must be in \[0\.0, inf\)")


@pytest.mark.parametrize("ops", [jc, jc.reference], ids=["custom", "twin"])
@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_raises(name, ops):
    call, error, message = CASES[name]
    with pytest.raises(error, match=message):
        call(ops)


@pytest.mark.parametrize("name", ["bn-gamma", "gn-groups-divide", "dropout-keep-0",
                                  "softmax_loss-labels-float", "svm_loss-batch-mismatch"])
def test_bad_input_raises_at_trace_time_under_jit(name):
    call, error, message = CASES[name]
    with pytest.raises(error, match=message):
        jax.jit(lambda: call(jc)).lower()      # tracing alone raises; nothing runs


def test_hyperparameters_are_keyword_only():
    with pytest.raises(TypeError):
        jc.batch_norm(X, V3, V3, V3, V3, True)              # noqa: the point of the test
    with pytest.raises(TypeError):
        jc.dropout(X, KEY, 0.5)
    with pytest.raises(TypeError):
        jc.group_norm(X4, V4, V4, 2)
    with pytest.raises(TypeError):
        jc.svm_loss(X, Y, 1.0)
