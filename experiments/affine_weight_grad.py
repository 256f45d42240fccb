"""The affine layer's weight gradient ``dw = X.T @ g`` on XLA:CPU: the single dot
against ``(g.T @ X).T`` with the transpose kept out of the dot (an optimization
barrier), over a grid of (N, D, M), float32 and float64, side by side in one run.

This is what ``jaxconv._dense._weight_grad`` chooses from: the second form for
float32 when D >= 8 M and N >= 32. Run pinned to one core on a quiet machine:
``taskset -c 1 python experiments/affine_weight_grad.py``; writes
experiments/results/affine_weight_grad_cpu.md.
"""
from __future__ import annotations

import argparse
import pathlib
import sys

import jax
import numpy as np
from jax import lax

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from _common import RESULTS, cpu_model, timed  # noqa: E402

GRID_N, GRID_D, GRID_M = (16, 32, 64, 200, 1000), (100, 400, 3072, 8192), (10, 100, 400)


def measure(dtype, repeats: int) -> dict:
    single = jax.jit(lambda x, g: x.T @ g)
    split = jax.jit(lambda x, g: lax.optimization_barrier(g.T @ x).T)
    jaxconv_form = jax.jit(_jaxconv_weight_grad())
    rng = np.random.default_rng(0)
    rows = {}
    with jax.enable_x64(dtype == np.float64):
        for n in GRID_N:
            for d in GRID_D:
                for m in GRID_M:
                    x = jax.device_put(rng.standard_normal((n, d)).astype(dtype))
                    g = jax.device_put(rng.standard_normal((n, m)).astype(dtype))
                    times = timed({name: (lambda f=f: f(x, g).block_until_ready())
                                   for name, f in (("single", single), ("split", split),
                                                   ("jaxconv", jaxconv_form))}, repeats)
                    rows[(n, d, m)] = {k: v["cpu_ms"] for k, v in times.items()}
    return rows


def _jaxconv_weight_grad():
    from jaxconv._dense import _weight_grad
    return _weight_grad


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=31)
    args = p.parse_args(argv)
    lines = ["# Affine weight gradient on XLA:CPU: `X.T @ g` vs `(g.T @ X).T` (barrier)", "",
             f"CPU: {cpu_model()}; jax {jax.__version__}; one thread per call as pinned; "
             f"CPU ms per call, medians of {args.repeats} interleaved rounds. "
             "split/single < 1: the split form is faster; 'jaxconv' is what jaxconv runs.", ""]
    for dtype in (np.float32, np.float64):
        rows = measure(dtype, args.repeats)
        lines += [f"## {np.dtype(dtype).name}", "",
                  "| N | D | M | single ms | split ms | split/single | jaxconv ms |",
                  "|---|---|---|---|---|---|---|"]
        for (n, d, m), r in rows.items():
            lines.append(f"| {n} | {d} | {m} | {r['single']:.3f} | {r['split']:.3f} | "
                         f"{r['split'] / r['single']:.2f} | {r['jaxconv']:.3f} |")
        lines.append("")
    out = RESULTS / "affine_weight_grad_cpu.md"
    out.write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
