"""``jaxconv bench``: hand-derived backwards next to autodiff and PyTorch.

Every case times one jitted forward+backward (the VJP of a fixed random
cotangent, all arrays passed as arguments so nothing constant-folds) for:

* ``custom``: the ``jaxconv`` op, i.e. its hand-derived ``custom_vjp`` rule;
* ``autodiff``: ``jax.vjp`` of its ``jaxconv.reference`` twin (XLA's own op);
* ``same_fwd``: for the im2col/naive convs and the pools, ``jax.vjp`` of the very
  forward code the custom op runs (the hand rule removed): the fair measure of
  what the hand-derived backward itself gains over autodiff;
* ``torch``: PyTorch's forward + ``backward`` of the same op, when installed: on the
  CPU, or on the GPU (CUDA-synchronized) when JAX runs on one and PyTorch sees it.

and one whole training step of ThreeLayerConvNet (forward, backward, adam update)
on the custom ops, on the reference twins and in PyTorch.

The cases are the ``bench`` cases of every op's declaration in the registry
(``jaxconv._registry``), PyTorch's side its declared oracle.

The variants run interleaved, one call each per round, the order rotating
from round to round (PyTorch's worker threads spin for a while after each op and
would otherwise always slow the variant that follows it), so that a noisy shared
machine slows them alike. Each call is timed twice: wall time, and the CPU time
of the whole process (every thread: XLA's pool and PyTorch's, whose spinning
threads inflate their wall time on a shared core). The table reports the medians
and the ratios ``custom / autodiff``, ``custom / torch``, ... as the median over
rounds of the ratio within each round (below 1 means custom is faster).
``--cpus 0`` or ``--cpus 0,1`` pins the run to those cores (``os.sched_setaffinity``,
set before JAX and PyTorch start their threads). It also lists the bytes of
residuals each rule keeps between the passes: the arrays held by the pullback
that ``jax.vjp`` returns.
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import platform
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

import jaxconv as jc
from jaxconv._registry import fix_others, torch_args


def cases(quick: bool) -> list:
    """``(OpSpec, Bench)`` for every bench case of every registered op (the
    ``impl="native"`` ones only when JAX computes on the CPU: they are CPU kernels)."""
    from jaxconv import _registry
    on_cpu = jax.default_backend() == "cpu"
    return [(spec, case) for spec in _registry.ops().values() for case in spec.bench(quick)
            if on_cpu or case.hyper.get("impl") != "native"]


def _float32(a):
    """Float arrays (NumPy or JAX) as float32 JAX arrays; labels and keys as JAX arrays."""
    if a is None or not hasattr(a, "dtype"):
        return a
    a = jnp.asarray(a)
    return a.astype(jnp.float32) if jnp.issubdtype(a.dtype, jnp.floating) else a


def _vjp_fn(op, diff):
    """Jitted ``(arrays, g) -> (out, grads)``: the forward of op and its backward for
    the arrays at the indices ``diff``."""
    def fwd_bwd(arrays, g):
        out, pullback = jax.vjp(fix_others(op, arrays, diff), *(arrays[i] for i in diff))
        return out, pullback(g)
    return jc.jit(fwd_bwd)   # + the guarded Eigen option where XLA:CPU convolves


def _residual_bytes(op, args) -> int:
    """Bytes the backward keeps: the arrays closed over by ``jax.vjp``'s pullback.
    Traced abstractly (``eval_shape``): running the vjp eagerly would dispatch the
    op's forward primitive by primitive, slow for the sliced formulations."""
    pullback = jax.eval_shape(lambda *a: jax.vjp(op, *a)[1], *args)
    return int(sum(math.prod(leaf.shape) * leaf.dtype.itemsize
                   for leaf in jax.tree.leaves(pullback)))


def _time_once(fn, calls: int = 1) -> tuple[float, float]:
    """Wall and CPU seconds per call of ``calls`` calls in a row; CPU time is the whole
    process's, every thread (XLA's and PyTorch's pools) included."""
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - wall) / calls, (time.process_time() - cpu) / calls


_ROUND_SECONDS = 2e-3


def _calls_per_round(fn) -> int:
    """Enough calls for a round of ~2 ms: one call of a 0.2 ms op is mostly timer and
    scheduler noise (svm_loss's rounds spread 0.16-0.48 ms, its ratio 0.98x or 1.12x)."""
    return max(1, min(100, round(_ROUND_SECONDS / max(_time_once(fn)[0], 1e-6))))


def torch_device(torch) -> str:
    """Where PyTorch's side runs: the GPU when JAX's default device is one and this
    PyTorch build sees a CUDA device, else the CPU."""
    on_gpu = jax.default_backend() == "gpu" and torch.cuda.is_available()
    return "cuda" if on_gpu else "cpu"


def _synchronized(torch, device: str, step):
    """``step`` that returns only when the device has finished it (CUDA runs async)."""
    if device == "cpu":
        return step

    def synchronized_step():
        step()
        torch.cuda.synchronize()
    return synchronized_step


def _torch_variant(torch, spec, case, args):
    """PyTorch's forward + backward of the op's oracle, on the same float32 values."""
    device = torch_device(torch)
    t_args = torch_args(torch, spec, args, device)
    diff = [t for t in t_args if getattr(t, "requires_grad", False)]
    with torch.no_grad():
        shapes = [o.shape for o in _outputs(spec.torch(torch, *t_args, **case.hyper))]
    rng = np.random.default_rng(0)
    grads = {k: torch.tensor(rng.standard_normal(shape).astype(np.float32), device=device)
             for k, shape in enumerate(shapes) if k not in spec.no_grad_outputs}

    def torch_step():
        for t in diff:
            t.grad = None
        outs = _outputs(spec.torch(torch, *t_args, **case.hyper))
        torch.autograd.backward([outs[k] for k in grads], list(grads.values()))
    return _synchronized(torch, device, torch_step)


def _outputs(out):
    return list(out) if isinstance(out, (tuple, list)) else [out]


def run_case(spec, case, repeats: int, torch=None) -> dict:
    args = tuple(_float32(a) for a in case.args)
    custom, twin, arrays = spec.bind(args, case.hyper)
    names = spec.array_names(args)
    diff = [i for i, a in enumerate(arrays) if names[i] in spec.grads and a is not None]
    out_shape = jax.eval_shape(custom, *arrays)
    keys = jax.random.split(jax.random.key(0), len(jax.tree.leaves(out_shape)))
    g = jax.tree.unflatten(jax.tree.structure(out_shape), [
        jax.random.normal(k, o.shape, o.dtype) for k, o in zip(keys, jax.tree.leaves(out_shape))])
    same_fwd = spec.same_forward(args, case.hyper) if spec.same_forward else None
    variants = {}
    for name, op in (("custom", custom), ("autodiff", twin), ("same_fwd", same_fwd)):
        if op is not None:
            fn = _vjp_fn(op, diff)
            variants[name] = lambda fn=fn: jax.block_until_ready(fn(arrays, g))
    if torch is not None and spec.torch is not None:
        variants["torch"] = _torch_variant(torch, spec, case, args)
    row = _timed_row(case.name, variants, repeats)
    row["op"] = spec.name
    diff_args = [arrays[i] for i in diff]
    row["residual_bytes_custom"] = _residual_bytes(fix_others(custom, arrays, diff), diff_args)
    row["residual_bytes_autodiff"] = _residual_bytes(fix_others(twin, arrays, diff), diff_args)
    return row


def _timed_row(name: str, variants: dict, repeats: int) -> dict:
    """Median wall and CPU milliseconds per call of each variant, timed in interleaved
    rounds (the order rotating; a round of a fast variant is several calls, ~2 ms), and
    each ratio as the median over rounds of the ratio within the round (paired: both
    sides saw the same moment of a noisy machine)."""
    for fn in variants.values():   # compile and warm up
        fn()
    calls = {variant: _calls_per_round(fn) for variant, fn in variants.items()}
    wall = {variant: [] for variant in variants}
    cpu = {variant: [] for variant in variants}
    order = list(variants)
    for round_ in range(repeats):
        for variant in order[round_ % len(order):] + order[:round_ % len(order)]:
            w, c = _time_once(variants[variant], calls[variant])
            wall[variant].append(1e3 * w)
            cpu[variant].append(1e3 * c)
    row = {"case": name}
    for v in variants:
        row[f"{v}_ms"] = float(np.median(wall[v]))
        row[f"{v}_cpu_ms"] = float(np.median(cpu[v]))
    for other in ("autodiff", "same_fwd", "torch"):
        if other in variants:
            row[f"custom/{other}"] = _paired_ratio(wall["custom"], wall[other])
            row[f"custom/{other} cpu"] = _paired_ratio(cpu["custom"], cpu[other])
    row["rounds"] = {v: {"wall_ms": wall[v], "cpu_ms": cpu[v]} for v in variants}
    return row


def _paired_ratio(mine, theirs) -> float:
    """Median of the per-round ratios (a round that measured 0 s counts as 1 µs)."""
    return float(np.median(np.asarray(mine) / np.maximum(np.asarray(theirs), 1e-3)))


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
        @jc.jit
        def step(params, opt_state, X, y):
            loss, grads = jax.value_and_grad(
                lambda p: models._loss(model, ops, p, state, X, y)[0])(params)
            updates, opt_state = optimizer.update(grads, opt_state, params)
            return optax.apply_updates(params, updates), opt_state, loss
        return lambda: jax.block_until_ready(step(params, opt_state, X, y))

    variants = {"custom": make_step(jc), "autodiff": make_step(reference)}
    if torch is not None:
        variants["torch"] = torch_convnet_step(torch, X, y, f, k, hidden)
    row = _timed_row(f"ThreeLayerConvNet adam step, batch {n}", variants, repeats)
    row["residual_bytes_custom"] = _residual_bytes(loss_of(jc), [params])
    row["residual_bytes_autodiff"] = _residual_bytes(loss_of(reference), [params])
    return row


def torch_convnet_step(torch, X, y, f, k, hidden):
    """One adam step of ThreeLayerConvNet's network in PyTorch (float32) on (X, y)."""
    nn, (c, hw), device = torch.nn, X.shape[1:3], torch_device(torch)
    net = nn.Sequential(nn.Conv2d(c, f, k, padding=k // 2), nn.ReLU(), nn.MaxPool2d(2),
                        nn.Flatten(), nn.Linear(f * (hw // 2) ** 2, hidden), nn.ReLU(),
                        nn.Linear(hidden, 10)).to(torch.float32).to(device)
    t_opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    t_X = torch.tensor(np.asarray(X), device=device)
    t_y = torch.tensor(np.asarray(y), dtype=torch.long, device=device)

    def torch_step():
        t_opt.zero_grad()
        nn.functional.cross_entropy(net(t_X), t_y).backward()
        t_opt.step()
    return _synchronized(torch, device, torch_step)


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


def parse_cpus(text: str) -> set[int]:
    """``"0"``, ``"0,1"``, ``"0-3,6"`` -> the set of core numbers."""
    cpus = set()
    try:
        for part in text.split(","):
            low, _, high = part.strip().partition("-")
            cpus.update(range(int(low), int(high or low) + 1))
    except ValueError:
        raise ValueError(f"--cpus must be core numbers like 0 or 0,1 or 0-3, got {text!r}")
    if not cpus or min(cpus) < 0:
        raise ValueError(f"--cpus must name at least one core >= 0, got {text!r}")
    return cpus


@contextlib.contextmanager
def pinned(cpus: set[int] | None):
    """Run this process on ``cpus`` only, for the ``with`` block (None: as it is).

    Enter it before JAX computes anything and before PyTorch is imported: both
    size their thread pools from the affinity mask when they start (PyTorch's
    pool is also resized here, in case it had started already)."""
    if cpus is None:
        yield
        return
    available = os.sched_getaffinity(0)
    if not cpus <= available:
        raise ValueError(f"--cpus {sorted(cpus)}: this process may only use cores "
                         f"{sorted(available)}")
    torch = _import_torch() if "torch" in sys.modules else None
    threads = torch.get_num_threads() if torch is not None else None
    os.sched_setaffinity(0, cpus)
    try:
        yield
    finally:
        os.sched_setaffinity(0, available)
        if threads is not None:
            torch.set_num_threads(threads)


def benchmark(quick: bool = False, repeats: int | None = None,
              cpus: set[int] | None = None) -> dict:
    with pinned(cpus):
        torch = _import_torch()
        if torch is not None and cpus is not None:
            torch.set_num_threads(len(cpus))
        repeats = repeats or (3 if quick else 15)
        rows = [run_case(spec, case, repeats, torch) for spec, case in cases(quick)]
        rows.append(run_train_step(quick, repeats, torch))
        return {"device": device_description(),
                "cpus": sorted(os.sched_getaffinity(0)), "pinned": cpus is not None,
                "torch": None if torch is None else f"{torch.__version__} on "
                f"{torch_device(torch)}, {torch.get_num_threads()} threads",
                "repeats": repeats, "rows": rows}


def format_table(result: dict) -> str:
    """Markdown table; each time is ``wall / CPU`` milliseconds per call (median),
    each ratio the median of the paired per-round ratios, ``wall / CPU``."""
    rows = result["rows"]
    variants = [v for v in ("custom", "autodiff", "same_fwd", "torch")
                if any(f"{v}_ms" in r for r in rows)]
    ratios = [f"custom/{v}" for v in variants[1:]]
    head = ["case"] + [f"{v} ms" for v in variants] + ratios + \
           ["residual KiB custom", "residual KiB autodiff"]
    cpus = ",".join(map(str, result["cpus"])) + (" (pinned)" if result["pinned"] else "")
    lines = [f"device: {result['device']}; cores used: {cpus}; "
             f"torch: {result['torch'] or 'not installed'}; median of {result['repeats']} "
             f"interleaved rounds (of ~2 ms, or one call); each cell wall / CPU per call "
             f"(whole process)", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]

    def cell(row, key, cpu_key):
        return f"{row[key]:.2f} / {row[cpu_key]:.2f}" if key in row else "-"
    for r in rows:
        cells = [r["case"]] + [cell(r, f"{v}_ms", f"{v}_cpu_ms") for v in variants] + \
                [cell(r, k, f"{k} cpu") for k in ratios] + \
                [f"{r['residual_bytes_custom'] / 1024:.0f}",
                 f"{r['residual_bytes_autodiff'] / 1024:.0f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def run(args) -> int:
    cpus = parse_cpus(args.cpus) if getattr(args, "cpus", None) else None
    result = benchmark(quick=args.quick, cpus=cpus)
    print(format_table(result))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
    return 0
