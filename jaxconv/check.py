"""``jaxconv check [--dtype float64|float32]``: every op's hand-derived backward
against autodiff of its ``jaxconv.reference`` twin and against centered
differences, in one table; exit status 1 if any error is over tolerance.

Tolerances (CS231n's relative error, worst element of each gradient):

* float64 (the default; turns on ``jax_enable_x64``): custom vs autodiff 1e-10
  (only rounding separates them, ~1e-15 in practice), custom vs numerical 1e-6
  (step ``h = 1e-5``: truncation ~h^2, rounding ~1e-16 / h).
* float32: custom vs autodiff 1e-4 (reassociated float32 sums, measured on an
  element-wise relative scale that magnifies small entries), custom vs numerical
  5e-2 with ``h = 1e-2`` (float32 rounding of the loss, ~1e-7 / h, against
  truncation ~h^2; the point is to catch wrong rules, errors of order 1).

The cases are the ``cases`` of each op's declaration in the registry
(``jaxconv/_<family>_cases.py``; see ``jaxconv._registry``): small, and kept away
from kinks, where finite differences are not valid: relu inputs and max-pool
windows avoid 0 and ties, every SVM margin is active, batch-norm running
variances are positive. ``--op NAME`` (repeatable) checks only the ops named.
"""
from __future__ import annotations

import time

import jax
import numpy as np

TOLERANCES = {  # dtype: (autodiff, numerical, step h)
    "float64": (1e-10, 1e-6, 1e-5),
    "float32": (1e-4, 5e-2, 1e-2),
}


def cases(ops=None):
    """``(op, case, args, hyperparameters)`` for every registered op (or those named
    in ``ops``), in float64: the ``cases`` of each op's registry declaration."""
    from jaxconv import _registry
    specs = _registry.ops()
    unknown = sorted(set(ops or ()) - set(specs))
    if unknown:
        raise ValueError(f"--op {', '.join(unknown)}: not a registered op; "
                         f"registered: {', '.join(specs)}")
    return [(name, case.name, case.args, case.hyper)
            for name, spec in specs.items() if not ops or name in ops
            for case in spec.check_cases()]


def _cast(arg, dtype):
    if isinstance(arg, np.ndarray) and np.issubdtype(arg.dtype, np.floating):
        return arg.astype(dtype)
    return arg


def run_cases(case_list, dtype="float64", *, stream=print):
    """Compare every case; print the table; return True if all are within tolerance."""
    from jaxconv.gradcheck import compare
    tol_auto, tol_num, h = TOLERANCES[dtype]
    header = f"{'op':<13}{'case':<36}{'argument':<14}{'autodiff':>11}{'numerical':>11}  ok"
    stream(header)
    stream("-" * len(header))
    all_ok = True
    for op, case, args, hyper in case_list:
        args = tuple(_cast(a, dtype) for a in args)
        report = compare(op, *args, h=h, **hyper)
        for argument, errors in report.items():
            ok = errors["autodiff"] <= tol_auto and errors["numerical"] <= tol_num
            all_ok &= ok
            stream(f"{op:<13}{case:<36}{argument:<14}{errors['autodiff']:>11.1e}"
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
    ok = run_cases(cases(getattr(args, "op", None)), dtype)
    verdict = "all within tolerance" if ok else "FAILED: some gradient is over tolerance"
    print(f"{verdict} ({time.perf_counter() - start:.1f} s)")
    return 0 if ok else 1
