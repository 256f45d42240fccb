"""Scaling: the Solver on 1, 2 and 4 forced host devices and on 2 processes (jax.distributed).

The same ThreeLayerConvNet run (same seed, batches and Adam) is trained in one
subprocess per configuration: 1, 2 and 4 CPU devices forced with
``XLA_FLAGS=--xla_force_host_platform_device_count=N`` (the Solver shards each
batch over all of them), and 2 processes of one device each joined by
``jax.distributed`` over gloo on 127.0.0.1 (each feeds half of every batch).
Shows the largest parameter and loss differences to 1 device (data parallelism
reorders the floating-point sums, nothing else) and the time per training step
(wall and CPU ms of ``Solver.train`` divided by its steps, after a warm-up run
has compiled everything; it includes the per-epoch accuracy checks).
On a CPU, forced devices share the same cores: this shows the overhead of
sharding, not a speed-up.

    python experiments/scaling.py [--data cifar10 --data-dir DIR] [--tiny --out DIR]
"""
from __future__ import annotations

import json
import os
import pathlib
import socket
import subprocess
import sys
import tempfile
import time

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(__file__))

import numpy as np

import _common as common

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parent


def worker(args) -> None:
    """One configuration, in its own process: warm up, then time a training run."""
    import jax

    if args.num_processes:
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
        jax.distributed.initialize(f"127.0.0.1:{args.port}", num_processes=args.num_processes,
                                   process_id=args.process_id)
    from jaxconv import models, optim

    with common.fast_compile(args.tiny):
        d = common.load_data(args, tiny_train=64, tiny_val=32)
        C, H, W = d["X_train"].shape[1:]
        epochs, filters, hidden = (1, 4, 10) if args.tiny else (3, 32, 100)
        model = models.ThreeLayerConvNet(input_dim=(C, H, W), num_filters=filters,
                                         filter_size=7 if H >= 32 else 3, hidden_dim=hidden,
                                         weight_scale=1e-2)
        optimizer = optim.adam(1e-3)
        kwargs = dict(optimizer=optimizer, batch_size=64, seed=args.seed, num_train_samples=200)
        common.train(model, d, epochs=1, **kwargs)  # compiles what the timed run uses
        wall, cpu = time.perf_counter(), time.process_time()
        s = common.train(model, d, epochs=epochs, **kwargs)
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    steps = len(s.loss_history)
    params = np.concatenate([np.asarray(x.addressable_data(0)).ravel()
                             for x in jax.tree.leaves(s.params)])
    out = pathlib.Path(args.worker)
    np.save(out.with_suffix(".npy"), params)
    out.write_text(json.dumps({
        "devices": jax.device_count(), "processes": jax.process_count(),
        "local_devices": jax.local_device_count(), "steps": steps,
        "wall_ms_per_step": 1e3 * wall / steps, "cpu_ms_per_step": 1e3 * cpu / steps,
        "loss": s.loss_history, "val_acc": s.val_acc_history, "epochs": epochs,
        "device": common.device_label(common.device_info())}))


def _env(devices: int) -> dict:
    env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}",
               JAX_PLATFORMS="cpu",
               PYTHONPATH=os.pathsep.join([str(ROOT)] + [p for p in os.environ.get(
                   "PYTHONPATH", "").split(os.pathsep) if p]))
    env.pop("JAX_ENABLE_X64", None)  # the worker runs in JAX's default configuration
    return env


def _worker_argv(args, out) -> list:
    argv = [sys.executable, str(HERE / "scaling.py"), "--worker", str(out), "--seed",
            str(args.seed)]
    if args.tiny:
        argv.append("--tiny")
    if args.data == "cifar10":
        argv += ["--data", "cifar10", "--data-dir", args.data_dir]
    return argv


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _load(out: pathlib.Path) -> dict:
    result = json.loads(out.read_text())
    result["params"] = np.load(out.with_suffix(".npy"))
    return result


def run_configs(args, tmp: pathlib.Path) -> dict:
    counts = [1, 2] if args.tiny else [1, 2, 4]
    configs = [(f"{n} device{'s' if n > 1 else ''}", n) for n in counts]
    configs.append(("2 processes x 1 device", None))
    runs = {}
    for name, n in common.progress(configs, desc="device configurations"):
        if n is not None:
            out = tmp / f"devices{n}.json"
            subprocess.run(_worker_argv(args, out), env=_env(n), check=True, timeout=900)
            runs[name] = _load(out)
            continue
        port = _free_port()
        outs = [tmp / f"process{i}.json" for i in range(2)]
        procs = [subprocess.Popen(_worker_argv(args, outs[i]) + [
            "--port", str(port), "--num-processes", "2", "--process-id", str(i)],
            env=_env(1), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            for i in range(2)]
        try:
            logs = [p.communicate(timeout=900)[0] for p in procs]
        finally:
            for p in procs:
                if p.poll() is None:
                    p.kill()
                    p.wait()
        for p, log in zip(procs, logs):
            if p.returncode != 0:
                raise RuntimeError(f"distributed worker failed:\n{log}")
        first, second = _load(outs[0]), _load(outs[1])
        first["max_param_diff_between_processes"] = float(
            np.max(np.abs(first["params"] - second["params"])))
        first["cpu_ms_per_step_other_process"] = second["cpu_ms_per_step"]
        runs[name] = first
    return runs


def main(argv=None) -> dict:
    p = common.parser(__doc__)
    p.add_argument("--worker", help=argparse_hidden())
    p.add_argument("--port", type=int, help=argparse_hidden())
    p.add_argument("--num-processes", type=int, help=argparse_hidden())
    p.add_argument("--process-id", type=int, help=argparse_hidden())
    args = p.parse_args(argv)
    if args.worker:
        return worker(args)
    with tempfile.TemporaryDirectory() as tmp:
        runs = run_configs(args, pathlib.Path(tmp))
    return report(args, runs)


def argparse_hidden():
    import argparse
    return argparse.SUPPRESS


def report(args, runs) -> dict:
    base = runs["1 device"]
    names = list(runs)
    diffs = {n: float(np.max(np.abs(r["params"] - base["params"]))) for n, r in runs.items()}
    loss_diffs = {n: float(np.max(np.abs(np.subtract(r["loss"], base["loss"]))))
                  for n, r in runs.items()}
    fig = common.Figure("scaling", "Solver data parallel: 1/2/4 forced CPU devices and 2 "
                        "processes (jax.distributed) vs 1 device", {
                            "time": ("time per training step (after warm-up)", "",
                                     "ms per step"),
                            "diff": ("largest |parameter difference| to 1 device", "",
                                     "max |difference|"),
                            "loss": ("training loss", "iteration", "loss")})
    fig.grouped_bars("time", names, {"wall ms": [runs[n]["wall_ms_per_step"] for n in names],
                                     "CPU ms": [runs[n]["cpu_ms_per_step"] for n in names]})
    others = [n for n in names if n != "1 device"]
    fig.line("diff", "max |diff|", others, [max(diffs[n], 1e-20) for n in others],
             ls="none", marker="o", ms=8)
    fig.ax("diff").set_yscale("log")
    fig.ax("diff").margins(x=0.3)
    fig.ax("diff").tick_params(axis="x", labelrotation=15, labelsize=8)
    for n in names:
        fig.line("loss", n, range(1, len(runs[n]["loss"]) + 1), runs[n]["loss"], lw=0.8,
                 ls="-" if n == "1 device" else "--")
    results = {n: {"devices": r["devices"], "processes": r["processes"],
                   "local_devices": r["local_devices"], "steps": r["steps"],
                   "wall_ms_per_step": r["wall_ms_per_step"],
                   "cpu_ms_per_step": r["cpu_ms_per_step"],
                   "max_param_diff_vs_1_device": diffs[n],
                   "max_loss_diff_vs_1_device": loss_diffs[n],
                   "final_val_acc": r["val_acc"][-1],
                   **{k: r[k] for k in ("max_param_diff_between_processes",
                                        "cpu_ms_per_step_other_process") if k in r}}
               for n, r in runs.items()}
    settings = {"data": args.data, "model": "ThreeLayerConvNet", "batch_size": 64,
                "epochs": base["epochs"], "optimizer": "adam(1e-3)",
                "configurations": names, "coordinator": "127.0.0.1 (gloo)", "seed": args.seed,
                "worker_device": base["device"]}
    return common.save_results("scaling", args, [fig], settings, results)


if __name__ == "__main__":
    main()
