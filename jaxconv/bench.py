"""``jaxconv bench``: hand-derived backwards next to autodiff and PyTorch.

Every case times one jitted forward+backward (the VJP of a fixed random
cotangent, all arrays passed as arguments so nothing constant-folds) for:

* ``custom``: the ``jaxconv`` op, i.e. its hand-derived ``custom_vjp`` rule;
* ``autodiff``: ``jax.vjp`` of its ``jaxconv.reference`` twin;
* ``torch``: PyTorch's CPU forward + ``backward`` of the same op, when installed.

The variants run interleaved, one call each per round, so that a noisy shared
machine slows them alike; the table reports medians and the ratios
``custom / autodiff`` and ``custom / torch`` (below 1 means custom is faster).
It also lists the bytes of residuals each rule keeps between the passes: the
arrays held by the pullback that ``jax.vjp`` returns.
"""
from __future__ import annotations

import dataclasses
import json
import os
import platform
import time
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

import jaxconv as jc


@dataclasses.dataclass
class Case:
    name: str
    op: str                     # name in jaxconv / jaxconv.reference
    shapes: tuple               # shapes of the float arguments
    hyper: dict
    torch_fn: Callable | None   # (torch, *tensors) -> output


def _torch_conv(stride, pad):
    return lambda torch, x, w, b: torch.nn.functional.conv2d(x, w, b, stride=stride, padding=pad)


def cases(quick: bool) -> list[Case]:
    n, c, hw, f, k = (8, 3, 16, 8, 3) if quick else (64, 3, 32, 32, 7)
    conv_shapes = ((n, c, hw, hw), (f, c, k, k), (f,))
    out = []
    for stride in (1, 2):
        for impl in ("xla", "im2col", "naive"):
            out.append(Case(f"conv2d {impl} s{stride}", "conv2d", conv_shapes,
                            dict(stride=stride, pad=k // 2, impl=impl),
                            _torch_conv(stride, k // 2)))
    pool_shape = ((n, f, hw, hw),)
    out.append(Case("max_pool2d 2x2", "max_pool2d", pool_shape, dict(pool=2),
                    lambda torch, x: torch.nn.functional.max_pool2d(x, 2)))
    out.append(Case("max_pool2d 3x3 s2", "max_pool2d", pool_shape, dict(pool=3, stride=2),
                    lambda torch, x: torch.nn.functional.max_pool2d(x, 3, 2)))
    out.append(Case("avg_pool2d 2x2", "avg_pool2d", pool_shape, dict(pool=2),
                    lambda torch, x: torch.nn.functional.avg_pool2d(x, 2)))
    return out


def _vjp_fn(op):
    """Jitted ``(args, g) -> (out, grads)``: the forward and the backward of op."""
    def fwd_bwd(args, g):
        out, pullback = jax.vjp(op, *args)
        return out, pullback(g)
    return jax.jit(fwd_bwd)


def _residual_bytes(op, args) -> int:
    """Bytes the backward keeps: the arrays closed over by ``jax.vjp``'s pullback."""
    _, pullback = jax.vjp(op, *args)
    return int(sum(leaf.nbytes for leaf in jax.tree.leaves(pullback)))


def _time_once(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def run_case(case: Case, repeats: int, torch=None) -> dict:
    keys = jax.random.split(jax.random.key(0), len(case.shapes) + 1)
    args = [jax.random.normal(k, s, jnp.float32) for k, s in zip(keys, case.shapes)]
    custom = lambda *a: getattr(jc, case.op)(*a, **case.hyper)               # noqa: E731
    twin = lambda *a: getattr(jc.reference, case.op)(*a, **case.hyper)       # noqa: E731
    g = jax.random.normal(keys[-1], jax.eval_shape(custom, *args).shape, jnp.float32)
    variants = {}
    for name, op in (("custom", custom), ("autodiff", twin)):
        fn = _vjp_fn(op)
        variants[name] = lambda fn=fn: jax.block_until_ready(fn(args, g))
    if torch is not None and case.torch_fn is not None:
        t_args = [torch.tensor(np.asarray(a), requires_grad=True) for a in args]
        t_g = torch.tensor(np.asarray(g))

        def torch_step():
            for t in t_args:
                t.grad = None
            case.torch_fn(torch, *t_args).backward(t_g)
        variants["torch"] = torch_step
    for fn in variants.values():   # compile and warm up
        fn()
    times = {name: [] for name in variants}
    for _ in range(repeats):
        for name, fn in variants.items():
            times[name].append(_time_once(fn))
    row = {"case": case.name, **{f"{k}_ms": 1e3 * float(np.median(v)) for k, v in times.items()}}
    row["custom/autodiff"] = row["custom_ms"] / row["autodiff_ms"]
    if "torch_ms" in row:
        row["custom/torch"] = row["custom_ms"] / row["torch_ms"]
    row["residual_bytes_custom"] = _residual_bytes(custom, args)
    row["residual_bytes_autodiff"] = _residual_bytes(twin, args)
    return row


def device_description() -> str:
    device = jax.devices()[0]
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as info:
            cpu = next(line.split(":", 1)[1].strip() for line in info if "model name" in line)
    except (OSError, StopIteration):
        pass
    kind = device.device_kind if device.platform != "cpu" else cpu
    return (f"{device.platform.upper()}: {kind}, {jax.device_count()} device(s), "
            f"{os.cpu_count()} cores; jax {jax.__version__}")


def _import_torch():
    try:
        import torch
    except ImportError:
        return None
    return torch


def benchmark(quick: bool = False, repeats: int | None = None) -> dict:
    torch = _import_torch()
    repeats = repeats or (5 if quick else 15)
    rows = [run_case(case, repeats, torch) for case in cases(quick)]
    return {"device": device_description(),
            "torch": None if torch is None else f"{torch.__version__}, "
                                                f"{torch.get_num_threads()} threads",
            "repeats": repeats, "rows": rows}


def format_table(result: dict) -> str:
    has_torch = any("torch_ms" in r for r in result["rows"])
    head = ["case", "custom ms", "autodiff ms"] + (["torch ms"] if has_torch else []) + \
           ["custom/autodiff"] + (["custom/torch"] if has_torch else []) + \
           ["residual KiB custom", "residual KiB autodiff"]
    lines = [f"device: {result['device']}; torch: {result['torch'] or 'not installed'}; "
             f"median of {result['repeats']} interleaved rounds",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in result["rows"]:
        cells = [r["case"], f"{r['custom_ms']:.2f}", f"{r['autodiff_ms']:.2f}"]
        if has_torch:
            cells.append(f"{r['torch_ms']:.2f}")
        cells.append(f"{r['custom/autodiff']:.2f}")
        if has_torch:
            cells.append(f"{r['custom/torch']:.2f}")
        cells += [f"{r['residual_bytes_custom'] / 1024:.0f}",
                  f"{r['residual_bytes_autodiff'] / 1024:.0f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def run(args) -> int:
    result = benchmark(quick=args.quick)
    print(format_table(result))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
    return 0
