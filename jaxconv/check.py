"""``jaxconv check [--dtype float64|float32]``: every op's hand-derived backward
against autodiff of its ``jaxconv.reference`` twin and against centered
differences, in one table; exit status 1 if any error is over tolerance.

Tolerances, on the norm-wise relative error ``||a - b|| / max(||a||, ||b||)`` of
each gradient (``gradcheck.norm_error``; CS231n's element-wise ``rel_error``
divides ~1e-12 of rounding on exactly-zero entries by its 1e-8 floor and cries
wolf on correct rules, so it is reported by ``compare`` but not judged by):

* float64 (the default; turns on ``jax_enable_x64``): custom vs autodiff 1e-10
  (only rounding separates them, ~1e-15 in practice; a rule off by a factor
  1 + 1e-6 shows as 1e-6), custom vs numerical 1e-6 (step ``h = 1e-5``:
  truncation ~h^2, rounding ~1e-16 / h; correct rules measure ~1e-10).
* float32: custom vs autodiff 1e-4 (reassociated float32 sums), custom vs
  numerical 5e-2 with ``h = 1e-2`` (float32 rounding of the loss, ~1e-7 / h,
  against truncation ~h^2; the point is to catch wrong rules, errors of order 1).

The inputs are small and kept away from kinks, where finite differences are
not valid: relu inputs and max-pool windows avoid 0 and ties, every SVM margin
is active, batch-norm running variances are positive.
"""
from __future__ import annotations

import time

import jax
import numpy as np

TOLERANCES = {  # dtype: (autodiff, numerical, step h)
    "float64": (1e-10, 1e-6, 1e-5),
    "float32": (1e-4, 5e-2, 1e-2),
}


def _rng():
    return np.random.default_rng(0)


def _normal(rng, *shape):
    return rng.standard_normal(shape)


def _away_from_zero(rng, *shape):
    """Magnitudes in [0.1, ...): finite differences never cross relu's kink."""
    x = rng.standard_normal(shape)
    return np.sign(x) * (0.1 + np.abs(x))


def _distinct(rng, *shape):
    """A shuffled grid 0.1 apart: no two window elements tie or nearly tie."""
    return (rng.permutation(int(np.prod(shape))) * 0.1 - 1.0).reshape(shape)


def cases():
    """``(op, case, args, hyperparameters)`` for every op of SPEC section 2, in float64."""
    rng = _rng()
    n, p = _normal, rng
    out = [
        ("affine", "x (3, 2, 2)", (n(p, 3, 2, 2), n(p, 4, 5), n(p, 5)), {}),
        ("relu", "x (3, 4)", (_away_from_zero(p, 3, 4),), {}),
    ]
    for impl in ("xla", "im2col", "naive"):
        out.append(("conv2d", f"{impl} NCHW stride 2 pad 1",
                    (n(p, 2, 2, 5, 5), n(p, 3, 2, 3, 3), n(p, 3)),
                    {"impl": impl, "stride": 2, "pad": 1}))
        out.append(("conv2d", f"{impl} NHWC stride 1 pad (1, 0)",
                    (n(p, 2, 4, 5, 2), n(p, 3, 2, 2, 3), n(p, 3)),
                    {"impl": impl, "stride": 1, "pad": (1, 0), "layout": "NHWC"}))
    for op in ("max_pool2d", "avg_pool2d"):
        out.append((op, "NCHW pool 2", (_distinct(p, 2, 2, 4, 4),), {"pool": 2}))
        out.append((op, "NHWC pool 2", (_distinct(p, 2, 4, 4, 2),), {"pool": 2, "layout": "NHWC"}))
        out.append((op, "NCHW pool 3 stride 2 (overlap)", (_distinct(p, 1, 2, 5, 5),),
                    {"pool": 3, "stride": 2}))
    for shape, axis, modes, what in (((5, 3), 1, (True, False), "(N, D)"),
                                     ((3, 3, 2, 2), 1, (True, False), "NCHW"),
                                     ((3, 2, 2, 3), -1, (True,), "NHWC axis=-1")):
        d = shape[axis]
        for train in modes:
            args = (n(p, *shape), n(p, d), n(p, d), n(p, d), 0.5 + np.abs(n(p, d)))
            out.append(("batch_norm", f"{what} {'train' if train else 'eval'}", args,
                        {"train": train, "axis": axis}))
    out += [
        ("layer_norm", "x (3, 2, 3)", (n(p, 3, 2, 3), n(p, 2, 3), n(p, 2, 3)), {}),
        ("group_norm", "NCHW groups 2", (n(p, 2, 4, 2, 3), n(p, 4), n(p, 4)), {"groups": 2}),
        ("group_norm", "NHWC groups 3", (n(p, 2, 2, 3, 6), n(p, 6), n(p, 6)),
         {"groups": 3, "layout": "NHWC"}),
        ("dropout", "keep_prob 0.7", (n(p, 3, 5), jax.random.key(3)), {"keep_prob": 0.7}),
        ("softmax_loss", "scores (4, 5)", (n(p, 4, 5), np.array([0, 4, 2, 2])), {}),
        # Scores 0.1 apart at most, margin 1: every margin active and far from the kink.
        ("svm_loss", "scores (4, 5), all margins active",
         (0.05 * _away_from_zero(p, 4, 5), np.array([1, 0, 4, 1])), {}),
    ]
    return out


def _cast(arg, dtype):
    if isinstance(arg, np.ndarray) and np.issubdtype(arg.dtype, np.floating):
        return arg.astype(dtype)
    return arg


def run_cases(case_list, dtype="float64", *, stream=print):
    """Compare every case; print the table; return True if all are within tolerance."""
    from jaxconv.gradcheck import compare
    tol_auto, tol_num, h = TOLERANCES[dtype]
    header = f"{'op':<13}{'case':<34}{'argument':<14}{'autodiff':>11}{'numerical':>11}  ok"
    stream(header)
    stream("-" * len(header))
    all_ok = True
    for op, case, args, hyper in case_list:
        args = tuple(_cast(a, dtype) for a in args)
        report = compare(op, *args, h=h, **hyper)
        for argument, errors in report.items():
            ok = errors["autodiff"] <= tol_auto and errors["numerical"] <= tol_num
            all_ok &= ok
            stream(f"{op:<13}{case:<34}{argument:<14}{errors['autodiff']:>11.1e}"
                   f"{errors['numerical']:>11.1e}  {'ok' if ok else 'FAIL'}")
    return all_ok


def run(args) -> int:
    """Entry point of ``jaxconv check``; returns the exit status."""
    dtype = getattr(args, "dtype", "float64")
    if dtype == "float64":
        jax.config.update("jax_enable_x64", True)   # before any array is built
    tol_auto, tol_num, h = TOLERANCES[dtype]
    print(f"jaxconv check: {dtype} on {jax.devices()[0].platform}; tolerances: "
          f"autodiff {tol_auto:g}, numerical {tol_num:g} (h = {h:g})")
    start = time.perf_counter()
    ok = run_cases(cases(), dtype)
    verdict = "all within tolerance" if ok else "FAILED: some gradient is over tolerance"
    print(f"{verdict} ({time.perf_counter() - start:.1f} s)")
    return 0 if ok else 1
