"""``jaxconv bench``: hand-derived backwards next to autodiff and PyTorch.

Every case times one jitted forward+backward (the VJP of a fixed random
cotangent, all arrays passed as arguments so nothing constant-folds) for:

* ``custom``: the ``jaxconv`` op, i.e. its hand-derived ``custom_vjp`` rule;
* ``autodiff``: ``jax.vjp`` of its ``jaxconv.reference`` twin (XLA's own op);
* ``same_fwd``: for the im2col/naive convs and the pools, ``jax.vjp`` of the very
  forward code the custom op runs (the hand rule removed): the fair measure of
  what the hand-derived backward itself gains over autodiff;
* ``torch``: PyTorch's CPU forward + ``backward`` of the same op, when installed.

and one whole training step of ThreeLayerConvNet (forward, backward, adam update)
on the custom ops, on the reference twins and in PyTorch.

The variants run interleaved, one call each per round, the order rotating
from round to round (PyTorch's worker threads spin for a while after each op and
would otherwise always slow the variant that follows it), so that a noisy shared
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


def _same_forward(case: Case, args) -> Callable | None:
    """The custom op's own forward as plain differentiable jnp (no custom rule)."""
    from jaxconv import _conv, _pool

    if case.op == "conv2d" and case.hyper.get("impl") in ("im2col", "naive"):
        config = _conv.conv_config(*args, layout="NCHW", **case.hyper)[3]
        return lambda *a: _conv._conv_primal(config, *a)
    if case.op in ("max_pool2d", "avg_pool2d"):
        config = _pool.pool_config(case.op, args[0], pool=case.hyper["pool"],
                                   stride=case.hyper.get("stride"), layout="NCHW")[1]
        primal = _pool._max_primal if case.op == "max_pool2d" else _pool._avg_primal
        return lambda x: primal(config, x)
    return None


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
    same_fwd = _same_forward(case, args)
    for name, op in (("custom", custom), ("autodiff", twin), ("same_fwd", same_fwd)):
        if op is not None:
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
    row = _timed_row(case.name, variants, repeats)
    row["residual_bytes_custom"] = _residual_bytes(custom, args)
    row["residual_bytes_autodiff"] = _residual_bytes(twin, args)
    return row


def _timed_row(name: str, variants: dict, repeats: int) -> dict:
    """Median milliseconds of each variant, timed in interleaved rounds, and ratios."""
    for fn in variants.values():   # compile and warm up
        fn()
    times = {variant: [] for variant in variants}
    order = list(variants)
    for round_ in range(repeats):
        for variant in order[round_ % len(order):] + order[:round_ % len(order)]:
            times[variant].append(_time_once(variants[variant]))
    row = {"case": name, **{f"{k}_ms": 1e3 * float(np.median(v)) for k, v in times.items()}}
    for other in ("autodiff", "same_fwd", "torch"):
        if f"{other}_ms" in row:
            row[f"custom/{other}"] = row["custom_ms"] / row[f"{other}_ms"]
    return row


def run_train_step(quick: bool, repeats: int, torch=None) -> dict:
    """One ThreeLayerConvNet adam step (forward, backward, update) on a CIFAR-sized batch.

    ``custom`` runs the model on the hand-derived ops, ``autodiff`` the same model
    code on the ``jaxconv.reference`` twins, ``torch`` the same network in PyTorch.
    """
    import optax

    from jaxconv import models, optim, reference

    n, c, hw, f, k, hidden = (8, 3, 16, 8, 3, 32) if quick else (64, 3, 32, 32, 7, 100)
    model = models.ThreeLayerConvNet(input_dim=(c, hw, hw), num_filters=f, filter_size=k,
                                     hidden_dim=hidden, weight_scale=1e-2)
    params, state = model.init(jax.random.key(0))
    X = jax.random.normal(jax.random.key(1), (n, c, hw, hw), jnp.float32)
    y = jax.random.randint(jax.random.key(2), (n,), 0, 10)
    optimizer = optim.adam(1e-3)
    opt_state = optimizer.init(params)

    def loss_of(ops):
        return lambda p: models._loss(model, ops, p, state, X, y)[0]

    def make_step(ops):
        @jax.jit
        def step(params, opt_state, X, y):
            loss, grads = jax.value_and_grad(
                lambda p: models._loss(model, ops, p, state, X, y)[0])(params)
            updates, opt_state = optimizer.update(grads, opt_state, params)
            return optax.apply_updates(params, updates), opt_state, loss
        return lambda: jax.block_until_ready(step(params, opt_state, X, y))

    variants = {"custom": make_step(jc), "autodiff": make_step(reference)}
    if torch is not None:
        nn = torch.nn
        net = nn.Sequential(nn.Conv2d(c, f, k, padding=k // 2), nn.ReLU(), nn.MaxPool2d(2),
                            nn.Flatten(), nn.Linear(f * (hw // 2) ** 2, hidden), nn.ReLU(),
                            nn.Linear(hidden, 10)).to(torch.float32)
        t_opt = torch.optim.Adam(net.parameters(), lr=1e-3)
        t_X, t_y = torch.tensor(np.asarray(X)), torch.tensor(np.asarray(y), dtype=torch.long)

        def torch_step():
            t_opt.zero_grad()
            nn.functional.cross_entropy(net(t_X), t_y).backward()
            t_opt.step()
        variants["torch"] = torch_step
    row = _timed_row(f"ThreeLayerConvNet adam step, batch {n}", variants, repeats)
    row["residual_bytes_custom"] = _residual_bytes(loss_of(jc), [params])
    row["residual_bytes_autodiff"] = _residual_bytes(loss_of(reference), [params])
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
    rows.append(run_train_step(quick, repeats, torch))
    return {"device": device_description(),
            "torch": None if torch is None else f"{torch.__version__}, "
                                                f"{torch.get_num_threads()} threads",
            "repeats": repeats, "rows": rows}


def format_table(result: dict) -> str:
    rows = result["rows"]
    variants = [v for v in ("custom", "autodiff", "same_fwd", "torch")
                if any(f"{v}_ms" in r for r in rows)]
    ratios = [f"custom/{v}" for v in variants[1:]]
    head = ["case"] + [f"{v} ms" for v in variants] + ratios + \
           ["residual KiB custom", "residual KiB autodiff"]
    lines = [f"device: {result['device']}; torch: {result['torch'] or 'not installed'}; "
             f"median of {result['repeats']} interleaved rounds", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]

    def cell(row, key, fmt):
        return fmt.format(row[key]) if key in row else "-"
    for r in rows:
        cells = [r["case"]] + [cell(r, f"{v}_ms", "{:.2f}") for v in variants] + \
                [cell(r, k, "{:.2f}") for k in ratios] + \
                [f"{r['residual_bytes_custom'] / 1024:.0f}",
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
