"""Side-by-side timings of the hand-derived backwards (issue 4's first look).

For conv2d (each impl, stride 1 and 2) and both pools: jitted forward+backward
of the custom_vjp op, of ``jax.vjp`` of its autodiff twin and, when installed,
PyTorch's CPU forward+backward, interleaved in one process. Writes the table to
``experiments/results/bench_ops_<platform>.md`` and the raw numbers next to it.

    python experiments/bench_ops.py [--quick]
"""
import argparse
import json
import pathlib

import jax

from jaxconv.bench import benchmark, format_table

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--repeats", type=int, default=None)
    args = parser.parse_args()
    result = benchmark(quick=args.quick, repeats=args.repeats)
    table = format_table(result)
    print(table)
    out = pathlib.Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    stem = f"bench_ops_{jax.devices()[0].platform}{'_quick' if args.quick else ''}"
    (out / f"{stem}.md").write_text(table + "\n")
    (out / f"{stem}.json").write_text(json.dumps(result, indent=2) + "\n")
