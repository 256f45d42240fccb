"""Issue 10: every public op, called with malformed arguments (wrong ranks, zero
sizes, bad hyperparameters of every kind, mismatched dtypes, NaN/inf, bad labels),
either returns what PyTorch/NumPy gives or raises ValueError/TypeError naming the
op and the argument: never another exception, never a crash of the process.

Each example starts from a valid call and spoils ONE argument. Values that can
abort the process (XLA's SIGABRT on a huge padding) run once, in a subprocess."""
import math
import os
import re
import subprocess
import sys

import jax
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

import jaxconv as jc

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KEY = jax.random.key(0)


def _valid():
    """op -> (positional argument names, valid positional values, valid keywords)."""
    r = np.random.default_rng(0)
    n = lambda *s: r.standard_normal(s)   # noqa: E731
    return {
        "affine": (("x", "w", "b"), (n(2, 3, 2), n(6, 4), n(4)), {}),
        "relu": (("x",), (n(3, 4),), {}),
        "conv2d": (("x", "w", "b"), (n(2, 3, 6, 6), n(4, 3, 3, 3), n(4)),
                   {"stride": 1, "pad": 1, "layout": "NCHW", "impl": "xla"}),
        "max_pool2d": (("x",), (n(2, 3, 6, 6),), {"pool": 2, "stride": None, "layout": "NCHW"}),
        "avg_pool2d": (("x",), (n(2, 3, 6, 6),), {"pool": 2, "stride": None, "layout": "NCHW"}),
        "batch_norm": (("x", "gamma", "beta", "running_mean", "running_var"),
                       (n(4, 3), n(3), n(3), n(3), 1 + r.random(3)),
                       {"train": True, "momentum": 0.9, "eps": 1e-5, "axis": 1}),
        "layer_norm": (("x", "gamma", "beta"), (n(4, 3), n(3), n(3)), {"eps": 1e-5}),
        "group_norm": (("x", "gamma", "beta"), (n(2, 4, 3, 3), n(4), n(4)),
                       {"groups": 2, "eps": 1e-5, "layout": "NCHW"}),
        "dropout": (("x", "key"), (n(3, 4), KEY), {"keep_prob": 0.5, "train": True}),
        "softmax_loss": (("scores", "y"), (n(4, 5), np.array([0, 4, 2, 1])), {}),
        "svm_loss": (("scores", "y"), (n(4, 5), np.array([0, 4, 2, 1])), {"margin": 1.0}),
        "im2col": (("x", "kh", "kw"), (n(2, 3, 5, 5), 3, 3), {"stride": 1, "pad": 1}),
        "col2im": (("cols", "x_shape", "kh", "kw"), (n(27, 50), (2, 3, 5, 5), 3, 3),
                   {"stride": 1, "pad": 1}),
    }


VALID = _valid()
LABEL_ARGS = {"y"}
INT_ARGS = {"stride", "pad", "pool", "groups", "kh", "kw", "axis"}
REAL_ARGS = {"momentum", "eps", "keep_prob", "margin"}
CHOICES = {"layout", "impl"}

# --- malformed values --------------------------------------------------------------------

_JUNK = [None, "2", object(), b"x"]


def _arrays(shape):
    """Spoiled arrays for an argument whose valid shape is ``shape``."""
    shape = tuple(shape)
    zero = [np.ones(shape[:i] + (0,) + shape[i + 1:]) for i in range(len(shape))]
    return [np.ones(shape + (2,)), np.ones(shape[1:]), *zero,            # ranks, zero sizes
            *(np.ones(shape, t) for t in (np.int64, np.bool_, np.float32, np.complex128)),
            *(np.full(shape, v) for v in (np.nan, np.inf, -np.inf)), *_JUNK]


def _ints(name):
    huge = [] if name == "pad" else [10 ** 9, 2 ** 63]   # a huge pad: the subprocess below
    return [-1, 0, 1.5, 2.0, True, np.int64(2), (1,), (1, 2, 3), (1, -1), (2, 1.5), None, "2",
            *huge]


_REALS = [-1.0, 0.0, 1.0, 2, math.nan, math.inf, -math.inf, 1e300, "0.5", None, True,
          np.float32(0.5), 1e-300]
_CHOICES = ["nchw", "NCW", "", None, 1, "NHWC", "naive", "im2col"]
_BOOLS = [1, 0, "yes", None, np.bool_(True), False]
_LABELS = [np.array([0.0, 1.0, 2.0, 0.0]), np.array([True, False, True, True]),
           np.array([0, 5, 1, 1]), np.array([0, -1, 1, 1]), np.array([2 ** 40, 0, 0, 0]),
           np.array([[0, 1, 2, 3]]), np.array([0, 1, 2]), np.array([0, 1, 2, 3], np.uint8),
           [0, 1, 2, 3], None, "0123"]
_X_SHAPES = [(2, 3, 5), (2, 3, 5.5, 5), (2, 3, 0, 5), (0, 3, 5, 5), (2, -3, 5, 5), "2355", None,
             (2, 3, 6, 5)]
_KEYS = [0, np.ones(2), np.ones(3, np.uint32), jax.random.split(KEY, 2), None]


def candidates(name, value) -> list:
    """The malformed values tried for argument ``name`` (valid value ``value``)."""
    fixed = {"train": _BOOLS, "x_shape": _X_SHAPES, "key": _KEYS}
    if name in fixed:
        return fixed[name]
    if name in LABEL_ARGS:
        return _LABELS
    if name in INT_ARGS:
        return _ints(name)
    if name in REAL_ARGS:
        return _REALS
    if name in CHOICES:
        return _CHOICES
    return _arrays(np.shape(value))


def spoil(op, target, value):
    """The valid call of ``op`` with argument ``target`` replaced by ``value``."""
    names, args, hyper = VALID[op]
    args, hyper = list(args), dict(hyper)
    if target in names:
        args[names.index(target)] = value
    else:
        hyper[target] = value
    return tuple(args), hyper


@st.composite
def calls(draw):
    op = draw(st.sampled_from(sorted(VALID)))
    names, args, hyper = VALID[op]
    target = draw(st.sampled_from(list(names) + sorted(hyper)))
    valid = args[names.index(target)] if target in names else hyper[target]
    return (op, target) + spoil(op, target, draw(st.sampled_from(candidates(target, valid))))


# --- the oracles: PyTorch / NumPy, in jaxconv's conventions ------------------------------

def _oracle(torch, op, args, hyper):
    F, t = torch.nn.functional, lambda a: torch.as_tensor(np.asarray(a))
    nhwc = hyper.get("layout") == "NHWC"
    to_nchw = (lambda a: t(a).permute(0, 3, 1, 2)) if nhwc else t
    back = (lambda a: a.permute(0, 2, 3, 1).numpy()) if nhwc else (lambda a: a.numpy())
    if op == "affine":
        x, w, b = map(np.asarray, args)
        return x.reshape(len(x), math.prod(x.shape[1:])) @ w + b
    if op == "relu":
        return np.maximum(np.asarray(args[0]), 0)
    if op == "conv2d":
        x, w, b = args
        w = t(w).permute(3, 2, 0, 1) if nhwc else t(w)
        b = None if b is None else t(b)
        return back(F.conv2d(to_nchw(x), w, b, stride=hyper["stride"], padding=hyper["pad"]))
    if op in ("max_pool2d", "avg_pool2d"):
        x, k = to_nchw(args[0]), hyper["pool"]
        s = hyper["stride"] or k
        if x.numel() == 0:   # PyTorch refuses C = 0; the output is empty all the same
            k, s = (k, k) if isinstance(k, int) else k, (s, s) if isinstance(s, int) else s
            shape = (*x.shape[:2], *((n - q) // t + 1 for n, q, t in zip(x.shape[2:], k, s)))
            return back(torch.zeros(shape))
        return back(getattr(F, op)(x, k, s))
    if op == "batch_norm":
        x, gamma, beta, rm, rv = map(np.asarray, args)
        axes = tuple(i for i in range(x.ndim) if i != hyper["axis"] % x.ndim)
        if hyper["train"] and x.size == 0:   # PyTorch: an empty batch leaves them
            mean, var, stats = 0.0, 1.0, (rm, rv)
        elif hyper["train"]:
            mean, var = x.mean(axes), x.var(axes)
            m = hyper["momentum"]
            stats = (m * rm + (1 - m) * mean, m * rv + (1 - m) * var)
        else:
            mean, var, stats = rm, rv, (rm, rv)
        shape = [-1 if i == hyper["axis"] % x.ndim else 1 for i in range(x.ndim)]
        mean, var = (np.reshape(v, shape) if np.ndim(v) else v for v in (mean, var))
        return (_normalized(x, mean, var, hyper["eps"], gamma.reshape(shape),
                            beta.reshape(shape)), *stats)
    # The norms in NumPy's plain formula: PyTorch's fused kernels turn an inf gamma into
    # nan (inf - inf) where the formula gives +-inf.
    if op == "layer_norm":
        x, g, b = map(np.asarray, args)
        axes = tuple(range(1, x.ndim))
        return _normalized(x, x.mean(axes, keepdims=True), x.var(axes, keepdims=True),
                           hyper["eps"], g, b)
    if op == "group_norm":
        x, g, b = (np.asarray(to_nchw(a)) if i == 0 else np.asarray(a) for i, a in enumerate(args))
        n, c, h, w = x.shape
        xg = x.reshape(n, hyper["groups"], c // hyper["groups"] * h * w)
        x_hat = ((xg - xg.mean(2, keepdims=True)) / np.sqrt(xg.var(2, keepdims=True)
                                                            + hyper["eps"])).reshape(x.shape)
        out = g[:, None, None] * x_hat + b[:, None, None]
        return out.transpose(0, 2, 3, 1) if nhwc else out
    if op == "softmax_loss":
        return F.cross_entropy(t(args[0]), t(np.asarray(args[1], np.int64))).numpy()
    if op == "svm_loss":
        s, y = np.asarray(args[0]), np.asarray(args[1])
        correct = s[np.arange(len(s)), y][:, None]
        margins = np.maximum(0, s - correct + hyper["margin"])
        margins[np.arange(len(s)), y] = 0
        return margins.sum() / len(s)
    if op in ("im2col", "col2im"):
        kh, kw = args[-2:]
        k, s, p = (kh, kw), hyper["stride"], hyper["pad"]
        if op == "im2col":
            x = np.asarray(args[0])
            if x.size == 0:   # PyTorch refuses C = 0; the patch matrix is empty all the same
                (sh, sw), (ph, pw) = ((v, v) if isinstance(v, int) else v for v in (s, p))
                out_h = (x.shape[2] + 2 * ph - kh) // sh + 1
                out_w = (x.shape[3] + 2 * pw - kw) // sw + 1
                return np.zeros((x.shape[1] * kh * kw, x.shape[0] * out_h * out_w))
            cols = F.unfold(t(x), k, padding=p, stride=s)                # (N, CKK, L)
            return cols.permute(1, 2, 0).reshape(cols.shape[1], -1).numpy()
        n, c, h, w = args[1]
        cols = t(args[0]).reshape(c * kh * kw, -1, n).permute(2, 0, 1)
        return F.fold(cols, (h, w), k, padding=p, stride=s).numpy()
    raise AssertionError(op)


def _normalized(x, mean, var, eps, gamma, beta):
    return gamma * ((x - mean) / np.sqrt(var + eps)) + beta


def _check_dropout(out, args, hyper):
    x, keep = np.asarray(args[0]), hyper["keep_prob"]
    out = np.asarray(out)
    assert out.shape == x.shape
    if hyper["train"] is False or keep == 1:
        np.testing.assert_array_equal(out, x)
    else:   # every unit dropped (x * 0, as PyTorch: nan for an inf) or kept (x / keep_prob)
        kept = np.isclose(out, x / keep, equal_nan=True)
        dropped = np.isclose(out, x * 0.0, equal_nan=True)
        assert (kept | dropped).all(), (out, x, keep)


def _judge(torch, op, target, args, hyper):
    try:
        out = getattr(jc, op)(*args, **hyper)
    except (ValueError, TypeError) as error:
        message = str(error)
        assert message.startswith(f"{op}:"), f"{type(error).__name__} not naming {op}: {message}"
        assert re.search(rf"\b{re.escape(target)}\b", message), \
            f"{op}: spoiled {target!r} but the message does not name it: {message}"
        return "raised"
    except Exception as error:   # noqa: BLE001 -- the failure this test exists to find
        raise AssertionError(f"{op}({target} spoiled): {type(error).__name__}: {error}") from None
    if op == "dropout":
        _check_dropout(out, args, hyper)
        return "returned"
    try:
        expected = _oracle(torch, op, args, hyper)
    except Exception as error:   # noqa: BLE001
        raise AssertionError(f"{op} accepted {target}={_short(args, hyper, op, target)} that "
                             f"PyTorch/NumPy reject: {type(error).__name__}: {error}") from None
    for got, want in zip(jax.tree.leaves(out), jax.tree.leaves(expected), strict=True):
        got, want = np.asarray(got), np.asarray(want)
        assert got.shape == want.shape, (op, target, got.shape, want.shape)
        tol = 1e-5 if got.dtype == np.float64 else 1e-3
        np.testing.assert_allclose(got, want.astype(got.dtype), rtol=tol, atol=tol,
                                   equal_nan=True, err_msg=f"{op}, {target} spoiled")
    return "returned"


def _short(args, hyper, op, target):
    names = VALID[op][0]
    value = args[names.index(target)] if target in names else hyper[target]
    return f"array{np.shape(value)}" if hasattr(value, "shape") and np.ndim(value) else repr(value)


@settings(max_examples=300, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(calls())
def test_malformed_calls_return_the_oracle_or_name_the_argument(torch, call):
    op, target, args, hyper = call
    _judge(torch, op, target, args, hyper)


# --- values that can abort the process: once, in a subprocess ----------------------------

CRASHERS = """
import sys, numpy as np, jaxconv as jc
x, w, cols = np.ones((1, 1, 4, 4)), np.ones((1, 1, 3, 3)), np.ones((9, 16))
cases = {
    "conv2d pad": lambda: jc.conv2d(x, w, pad=10 ** 9),
    "conv2d pad im2col": lambda: jc.conv2d(x, w, pad=10 ** 9, impl="im2col"),
    "conv2d pad (1, 2**40)": lambda: jc.conv2d(x, w, pad=(1, 2 ** 40)),
    "conv2d stride": lambda: jc.conv2d(x, w, stride=2 ** 63),
    "im2col pad": lambda: jc.im2col(x, 3, 3, pad=10 ** 9),
    "col2im pad": lambda: jc.col2im(cols, (1, 1, 4, 4), 3, 3, pad=10 ** 9),
    "col2im x_shape": lambda: jc.col2im(cols, (1, 1, 10 ** 9, 4), 3, 3),
    "max_pool2d pool": lambda: jc.max_pool2d(x, pool=2 ** 62),
}
for name, call in cases.items():
    print("start", name, flush=True)
    try:
        call()
        print("returned", name, flush=True)
    except (ValueError, TypeError) as error:
        print("raised", name, "|", " ".join(str(error).split()), flush=True)
"""


def test_huge_sizes_never_crash_the_process():
    done = subprocess.run([sys.executable, "-c", CRASHERS], capture_output=True, text=True,
                          timeout=300, env=dict(os.environ, PYTHONPATH=ROOT))
    started = re.findall(r"^start (.*)$", done.stdout, re.M)
    assert done.returncode == 0, (f"the process died (status {done.returncode}) during "
                                  f"{started[-1] if started else '?'!r}: {done.stderr[-2000:]}")
    outcomes = re.findall(r"^(raised|returned) (.*?)(?: \| (.*))?$", done.stdout, re.M)
    assert len(outcomes) == len(started) == 8, done.stdout
    for kind, name, message in outcomes:
        op, argument = name.split()[:2]
        assert kind == "raised", f"{name}: returned instead of a clear error"
        assert message.startswith(f"{op}:") and argument in message, (name, message)
