"""Native conv kernels vs XLA (default and Eigen option) vs PyTorch on the CPU.

Times, interleaved in one process with the order rotating every round (native with
PyTorch, then the XLA variants with PyTorch: see ``BLOCKS``):

* the ThreeLayerConvNet adam step (batch 64, 3x32x32, 32 filters 7x7, hidden 100):
  jaxconv with ``conv_impl="native"``, with ``"xla"`` under plain ``jax.jit``, with
  ``"xla"`` under ``jaxconv.jit`` (the Eigen option), and the same network in PyTorch;
* conv2d forward + backward (dx, dw, db) for a 3-channel 7x7 input and 64-channel 3x3
  convs with stride 1 and 2, the same four ways.

CPU time per call (the whole process, every thread) next to wall time, medians and
medians of per-round paired ratios (the machine may be shared: PyTorch's OpenMP
threads spin when a core is shared, which inflates its wall time, so read CPU time).
PyTorch gets as many threads as the cores the process may use. Run it pinned::

    taskset -c 1 python experiments/bench_native.py           # one core
    python experiments/bench_native.py --repeats 30           # every core

Writes experiments/results/bench_native_cpu.{md,json}.
"""
from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import torch

import jaxconv
from jaxconv import _native, models, optim
from jaxconv.bench import _paired_ratio, _time_once, device_description, torch_convnet_step

VARIANTS = ("native", "xla", "xla+eigen", "torch")
CONVS = {  # name: (x shape, filters, kernel, stride, pad)
    "conv 3ch 7x7 s1 (64x3x32x32 -> 32)": ((64, 3, 32, 32), 32, 7, 1, 3),
    "conv 64ch 3x3 s1 (64x64x16x16 -> 64)": ((64, 64, 16, 16), 64, 3, 1, 1),
    "conv 64ch 3x3 s2 (64x64x16x16 -> 64)": ((64, 64, 16, 16), 64, 3, 2, 1),
}


def _jit(variant, fn):
    return jaxconv.jit(fn) if variant == "xla+eigen" else jax.jit(fn)


def _impl(variant):
    return "native" if variant == "native" else "xla"


def step_variants(n=64, c=3, hw=32, f=32, k=7, hidden=100):
    X = jax.random.normal(jax.random.key(1), (n, c, hw, hw), jnp.float32)
    y = jax.random.randint(jax.random.key(2), (n,), 0, 10)
    optimizer = optim.adam(1e-3)
    variants = {}
    for variant in VARIANTS[:3]:
        model = models.ThreeLayerConvNet(input_dim=(c, hw, hw), num_filters=f, filter_size=k,
                                         hidden_dim=hidden, weight_scale=1e-2,
                                         conv_impl=_impl(variant))
        params, state = model.init(jax.random.key(0))
        opt_state = optimizer.init(params)

        def step(params, opt_state, X, y, model=model, state=state):
            loss, grads = jax.value_and_grad(
                lambda p: models._loss(model, jaxconv, p, state, X, y)[0])(params)
            updates, opt_state = optimizer.update(grads, opt_state, params)
            return optax.apply_updates(params, updates), opt_state, loss
        fn = _jit(variant, step)
        variants[variant] = (lambda fn=fn, a=(params, opt_state, X, y):
                             jax.block_until_ready(fn(*a)))
    variants["torch"] = torch_convnet_step(torch, X, y, f, k, hidden)
    return variants


def conv_variants(x_shape, f, k, stride, pad):
    rng = np.random.default_rng(0)
    x = rng.standard_normal(x_shape).astype(np.float32)
    w = (0.1 * rng.standard_normal((f, x_shape[1], k, k))).astype(np.float32)
    b = rng.standard_normal(f).astype(np.float32)
    out_hw = (x_shape[2] + 2 * pad - k) // stride + 1
    g = rng.standard_normal((x_shape[0], f, out_hw, out_hw)).astype(np.float32)
    variants = {}
    for variant in VARIANTS[:3]:
        def fwd_bwd(x, w, b, g, impl=_impl(variant)):
            out, pullback = jax.vjp(
                lambda x, w, b: jaxconv.conv2d(x, w, b, stride=stride, pad=pad, impl=impl),
                x, w, b)
            return out, pullback(g)
        fn = _jit(variant, fwd_bwd)
        variants[variant] = lambda fn=fn: jax.block_until_ready(fn(x, w, b, g))
    tx, tw, tb = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
    tg = torch.tensor(g)

    def torch_fwd_bwd():
        for t in (tx, tw, tb):
            t.grad = None
        torch.nn.functional.conv2d(tx, tw, tb, stride=stride, padding=pad).backward(tg)
    variants["torch"] = torch_fwd_bwd
    return variants


# Interleaved in two blocks, each with its own PyTorch rounds: native next to PyTorch,
# then the two XLA variants next to PyTorch. One block of all four let the XLA variants'
# large temporary buffers (released and re-mapped by glibc between steps) cost the
# native step ~2,200 page faults per step, ~10% of its time, that it never has alone.
BLOCKS = (("native", "torch"), ("xla", "xla+eigen", "torch"))


def _interleaved(variants, names, repeats):
    for v in names:
        variants[v]()
    rounds = {v: {"wall_ms": [], "cpu_ms": []} for v in names}
    for r in range(repeats):
        for v in names[r % len(names):] + names[:r % len(names)]:
            wall, cpu = _time_once(variants[v])
            rounds[v]["wall_ms"].append(1e3 * wall)
            rounds[v]["cpu_ms"].append(1e3 * cpu)
    return rounds


def timed(name, variants, repeats):
    row, rounds = {"case": name}, {}
    for block in BLOCKS:
        block_rounds = _interleaved(variants, list(block), repeats)
        for v in block[:-1]:
            rounds[v] = block_rounds[v]
            for kind, suffix in (("wall_ms", ""), ("cpu_ms", " cpu")):
                row[f"{v}/torch{suffix}"] = _paired_ratio(block_rounds[v][kind],
                                                          block_rounds["torch"][kind])
        rounds.setdefault("torch", block_rounds["torch"])   # the native block's
    row["rounds"] = rounds
    for v in variants:
        row[f"{v}_ms"] = float(np.median(rounds[v]["wall_ms"]))
        row[f"{v}_cpu_ms"] = float(np.median(rounds[v]["cpu_ms"]))
    return row


def table(result) -> str:
    lines = [f"device: {result['device']}; native ISA: {result['isa']}; cores: "
             f"{result['cores']}; torch threads: {result['torch_threads']}; "
             f"median of {result['repeats']} interleaved rounds (blocks: native + torch, "
             "xla + xla+eigen + torch; the torch column is the native block's)", "",
             "| case | " + " | ".join(f"{v} cpu ms (wall)" for v in VARIANTS)
             + " | " + " | ".join(f"{v}/torch cpu (wall)" for v in VARIANTS[:3]) + " |",
             "|---" * (1 + len(VARIANTS) + 3) + "|"]
    for row in result["rows"]:
        times = [f"{row[f'{v}_cpu_ms']:.1f} ({row[f'{v}_ms']:.1f})" for v in VARIANTS]
        ratios = [f"{row[f'{v}/torch cpu']:.2f} ({row[f'{v}/torch']:.2f})" for v in VARIANTS[:3]]
        lines.append(f"| {row['case']} | " + " | ".join(times + ratios) + " |")
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "bench_native_cpu"))
    args = parser.parse_args(argv)
    _native.require("bench_native")
    cores = sorted(os.sched_getaffinity(0))
    torch.set_num_threads(len(cores))
    rows = [timed("ThreeLayerConvNet adam step, batch 64", step_variants(), args.repeats)]
    rows += [timed(name, conv_variants(*spec), args.repeats) for name, spec in CONVS.items()]
    result = dict(device=device_description(), isa=_native.isa(), cores=cores,
                  torch_threads=torch.get_num_threads(), repeats=args.repeats, rows=rows)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out + ".json").write_text(json.dumps(result, indent=1))
    Path(args.out + ".md").write_text(table(result))
    print(table(result))


if __name__ == "__main__":
    main()
