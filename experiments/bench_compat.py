"""jaxconv.compat.cs231n next to CS231n's own NumPy layers, side by side in one run (issue 15).

1. Per-call cost of the compat layers on the notebooks' small float64 shapes, against
   CS231n's NumPy implementations (tests/_cs231n_numpy.py: seed 002's formulas), and
   the same for the compat layer as it was before issue 15 (``--before REF``, default
   the commit this work started from, exported with ``git archive`` and measured in a
   subprocess against the same NumPy yardstick).
2. The ThreeLayerConvNet gradient-check cell of ConvolutionalNetworks.ipynb (2 inputs
   (3, 16, 16), 3 filters 3x3, hidden 7, float64, every parameter through the
   assignment's eval_numerical_gradient), run by the CS231n-style client package
   tests/cs231n_client on jaxconv and on NumPy.
3. The notebook's small overfitting run (FullyConnectedNet [100, 100], 50 samples of
   3x32x32, sgd, 20 epochs, batch 25), through the client's Solver.
4. Real-size Solver steps with adam, float32 parameters: ThreeLayerConvNet (3, 32, 32)
   batch 50, and the FullyConnectedNets of the notebooks: [100, 100] batch 200, [100] x 5
   batch 100 (update rules), [100] x 5 with batch norm batch 50 (BatchNormalization),
   [500, 500] with dropout batch 100 (Dropout).

Variants are interleaved round by round; the tables give medians of CPU time
(time.process_time) next to wall time, and the median of the per-round ratios.
Run pinned to one core for stable numbers: ``taskset -c 1 python experiments/bench_compat.py``.
jaxconv runs as after ``jaxconv.compat.cs231n.install()``: JAX's CPU dispatch synchronous
(``--async-dispatch`` keeps JAX's default and writes bench_compat_async_cpu.*).
Writes experiments/results/bench_compat_cpu.md and .json.
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests")]


def clock(fn, number):
    cpu, wall = time.process_time(), time.perf_counter()
    for _ in range(number):
        fn()
    return (time.process_time() - cpu) / number, (time.perf_counter() - wall) / number


def interleaved(variants: dict, number: int, rounds: int, baseline: str = "numpy"):
    """{name: {"cpu": s, "wall": s, "ratio": median(cpu / baseline cpu per round)}}."""
    for fn in variants.values():
        fn()                                         # compile / warm up
    samples = {name: [] for name in variants}
    for r in range(rounds):
        names = list(variants)
        names = names[r % len(names):] + names[:r % len(names)]   # rotate the order
        for name in names:
            samples[name].append(clock(variants[name], number))
    result = {}
    for name, s in samples.items():
        result[name] = {"cpu": statistics.median(c for c, _ in s),
                        "wall": statistics.median(w for _, w in s)}
        if baseline in samples:
            result[name]["ratio"] = statistics.median(
                c / b[0] for (c, _), b in zip(s, samples[baseline]))
    return result


# --- 1. per-call cost ------------------------------------------------------------------------

def small_calls(m, N):
    """name -> (compat call, NumPy call) on the notebooks' small shapes; ``m`` is the
    compat namespace (today's package or the flat module of before), N the NumPy one."""
    rng = np.random.RandomState(0)
    x, w, b = rng.randn(2, 15), rng.randn(15, 20), rng.randn(20)
    dout = rng.randn(2, 20)
    X, W, B = rng.randn(2, 3, 16, 16), rng.randn(3, 3, 3, 3), rng.randn(3)
    cp, pp = {"stride": 1, "pad": 1}, {"pool_height": 2, "pool_width": 2, "stride": 2}
    gamma, beta = np.ones(20), np.zeros(20)
    y = np.array([1, 7])
    calls = {}

    def pair(name, fwd, bwd, args, d):
        for lib, key in ((m, "compat"), (N, "numpy")):
            out, cache = getattr(lib, fwd)(*args)
            calls.setdefault(f"{name} forward", {})[key] = \
                lambda lib=lib: getattr(lib, fwd)(*args)
            calls.setdefault(f"{name} backward", {})[key] = \
                lambda lib=lib, cache=cache: getattr(lib, bwd)(d, cache)

    pair("affine (2,15)x(15,20)", "affine_forward", "affine_backward", (x, w, b), dout)
    pair("relu (2,20)", "relu_forward", "relu_backward", (dout,), dout)
    conv_out = N.conv_forward_fast(X, W, B, cp)[0]
    pair("conv_fast (2,3,16,16) 3x3", "conv_forward_fast", "conv_backward_fast",
         (X, W, B, cp), rng.randn(*conv_out.shape))
    pair("max_pool_fast 2x2", "max_pool_forward_fast", "max_pool_backward_fast",
         (conv_out, pp), rng.randn(2, 3, 8, 8))
    pair("batchnorm (2,20)", "batchnorm_forward", "batchnorm_backward",
         (x @ w, gamma, beta, {"mode": "train"}), dout)
    calls["softmax_loss (2,20)"] = {"compat": lambda: m.softmax_loss(dout, y),
                                    "numpy": lambda: N.softmax_loss(dout, y)}
    for rule in ("sgd", "adam"):
        calls[f"{rule} (15,20)"] = {
            "compat": lambda rule=rule: getattr(m, rule)(w.copy(), w, {"learning_rate": 1e-9}),
            "numpy": lambda rule=rule: getattr(N, rule)(w.copy(), w, {"learning_rate": 1e-9})}
    if hasattr(m, "conv_relu_pool_forward"):
        pair("conv_relu_pool (layer_utils)", "conv_relu_pool_forward", "conv_relu_pool_backward",
             (X, W, B, cp, pp), rng.randn(2, 3, 8, 8))
        pair("affine_relu (layer_utils)", "affine_relu_forward", "affine_relu_backward",
             (x, w, b), dout)
    return calls


def per_call(m, rounds, number):
    import _cs231n_numpy as N
    return {name: interleaved(v, number, rounds) for name, v in small_calls(m, N).items()}


# --- 2.-4. the client package ------------------------------------------------------------------

def gradient_check_cell(classes):
    from cs231n_client.gradient_check import eval_numerical_gradient
    np.random.seed(231)
    X = np.random.randn(2, 3, 16, 16)
    y = np.random.randint(10, size=2)
    model = classes["ThreeLayerConvNet"](num_filters=3, filter_size=3, input_dim=(3, 16, 16),
                                         hidden_dim=7, dtype=np.float64)
    _, grads = model.loss(X, y)
    for name in sorted(grads):
        eval_numerical_gradient(lambda _: model.loss(X, y)[0], model.params[name],
                                verbose=False, h=1e-6)


def overfit_run(classes):
    rng = np.random.RandomState(0)
    data = {"X_train": rng.randn(50, 3, 32, 32), "y_train": rng.randint(10, size=50),
            "X_val": rng.randn(50, 3, 32, 32), "y_val": rng.randint(10, size=50)}
    np.random.seed(231)
    model = classes["FullyConnectedNet"]([100, 100], weight_scale=1e-2)
    classes["Solver"](model, data, print_every=1000, num_epochs=20, batch_size=25,
                      update_rule="sgd", optim_config={"learning_rate": 1e-2},
                      verbose=False).train()


# The real-size Solver steps: the ThreeLayerConvNet of ConvolutionalNetworks.ipynb and the
# FullyConnectedNets of the FullyConnectedNets / BatchNormalization / Dropout notebooks.
SOLVER_STEPS = {
    "Solver step ThreeLayerConvNet batch 50 adam": ("ThreeLayerConvNet", {}, 50),
    "Solver step FullyConnectedNet [100, 100] batch 200 adam": (
        "FullyConnectedNet", {"hidden_dims": [100, 100]}, 200),
    "Solver step FullyConnectedNet [100] x 5 batch 100 adam": (
        "FullyConnectedNet", {"hidden_dims": [100] * 5}, 100),
    "Solver step FullyConnectedNet [100] x 5 batchnorm batch 50 adam": (
        "FullyConnectedNet", {"hidden_dims": [100] * 5, "normalization": "batchnorm"}, 50),
    "Solver step FullyConnectedNet [500, 500] dropout 0.75 batch 100 adam": (
        "FullyConnectedNet", {"hidden_dims": [500, 500], "dropout_keep_ratio": 0.75}, 100),
}


def solver_steps(classes, label):
    model_name, kwargs, batch = SOLVER_STEPS[label]
    rng = np.random.RandomState(0)
    n = 400
    data = {"X_train": rng.randn(n, 3, 32, 32), "y_train": rng.randint(10, size=n),
            "X_val": rng.randn(10, 3, 32, 32), "y_val": rng.randint(10, size=10)}
    np.random.seed(0)
    model = classes[model_name](weight_scale=1e-2, **kwargs)
    solver = classes["Solver"](model, data, update_rule="adam", batch_size=batch, verbose=False,
                               optim_config={"learning_rate": 1e-3})
    return solver._step


def client_cases(classes_by_variant, rounds, steps=tuple(SOLVER_STEPS)):
    out = {}
    out["ThreeLayerConvNet gradient-check cell"] = interleaved(
        {k: (lambda c=c: gradient_check_cell(c)) for k, c in classes_by_variant.items()}, 1, rounds)
    out["overfit 50 samples, FullyConnectedNet, 20 epochs"] = interleaved(
        {k: (lambda c=c: overfit_run(c)) for k, c in classes_by_variant.items()}, 1, rounds)
    for label in steps:
        variants = {k: solver_steps(c, label) for k, c in classes_by_variant.items()}
        out[label] = interleaved(variants, 5, rounds)
    return out


def classes_on(module_names: dict):
    """The client's classes with their layer/optim imports pointed at other modules."""
    import _cs231n_numpy
    return _cs231n_numpy.client_on(module_names)


# --- before: the compat layer at REF, measured in a subprocess -----------------------------------

BEFORE_SCRIPT = r"""
import json, sys, types
sys.path[:0] = [sys.argv[1]]
import numpy as np
import jaxconv.compat.cs231n as flat
import _cs231n_numpy as N
from experiments_bench_compat import per_call, client_cases, classes_on, SOLVER_STEPS
# CS231n's layer_utils sandwiches, built on the compat layer of before
utils = types.ModuleType("before_layer_utils")
utils.__dict__.update({k: getattr(flat, k) for k in dir(flat) if not k.startswith("_")})
for name in ("affine_relu_forward", "affine_relu_backward", "conv_relu_pool_forward",
             "conv_relu_pool_backward"):
    fn = getattr(N, name)
    utils.__dict__[name] = types.FunctionType(fn.__code__, utils.__dict__, name)
utils.optim = flat
sys.modules["before_layer_utils"] = utils
result = {"per_call": per_call(flat, int(sys.argv[2]), int(sys.argv[3]))}
if sys.argv[4] == "1":
    result["client"] = client_cases(
        {"before": classes_on({"layers": "before_layer_utils", "optim": "before_layer_utils"}),
         "numpy": classes_on({"layers": "_cs231n_numpy", "optim": "_cs231n_numpy"})},
        int(sys.argv[5]), steps=list(SOLVER_STEPS)[:2])   # what its layer_utils stand-in has
print("JSON" + json.dumps(result))
"""


def before(ref, rounds, number, client_rounds):
    with tempfile.TemporaryDirectory() as tmp:
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", ref, "jaxconv"],
                                 capture_output=True, check=True).stdout
        with tarfile.open(fileobj=__import__("io").BytesIO(archive)) as tar:
            tar.extractall(tmp, filter="data")
        (pathlib.Path(tmp) / "experiments_bench_compat.py").write_text(
            pathlib.Path(__file__).read_text())
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([tmp, str(ROOT / "tests")]))
        run = subprocess.run([sys.executable, "-c", BEFORE_SCRIPT, tmp, str(rounds), str(number),
                              "1" if client_rounds else "0", str(client_rounds)],
                             env=env, capture_output=True, text=True, check=True)
        return json.loads(run.stdout.split("JSON", 1)[1])


# --- report ----------------------------------------------------------------------------------------

def cpu_name():
    try:
        for line in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines():
            if line.startswith("Model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def table(now, then, ours, theirs, unit):
    """Markdown rows: NumPy, ours (CPU and wall), ours/NumPy, and the same for before."""
    scale, fmt = (1e6, "{:.1f}") if unit == "us" else (1.0, "{:.4f}")

    def cells(r):
        return (f"{fmt.format(r['cpu'] * scale)} ({fmt.format(r['wall'] * scale)}) | "
                f"{r['ratio']:.2f}x") if r else "- | -"

    lines = [f"| | NumPy CPU {unit} | {ours} CPU {unit} (wall) | {ours}/NumPy | "
             f"before CPU {unit} (wall) | before/NumPy |", "|---|---|---|---|---|---|"]
    for name, r in now.items():
        b = (then or {}).get(name)
        lines.append(f"| {name} | {fmt.format(r['numpy']['cpu'] * scale)} | {cells(r[ours])} | "
                     f"{cells(b[theirs] if b else None)} |")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--number", type=int, default=200, help="calls per round (per-call table)")
    parser.add_argument("--client-rounds", type=int, default=3)
    parser.add_argument("--before", default="c627d5a", help="git ref of the compat layer of before")
    parser.add_argument("--async-dispatch", action="store_true",
                        help="keep JAX's asynchronous CPU dispatch (install() turns it off); "
                             "writes bench_compat_async_cpu.*")
    args = parser.parse_args()

    import jax
    import jaxconv.compat.cs231n as compat
    if not args.async_dispatch:
        assert compat.synchronous_cpu_dispatch(), "JAX's CPU backend started too early"
    dispatch = ("asynchronous (JAX's default)" if args.async_dispatch else
                "synchronous (as after jaxconv.compat.cs231n.install())")
    now_calls = per_call(compat, args.rounds, args.number)
    now_client = client_cases(
        {"jaxconv": classes_on({"layers": "jaxconv.compat.cs231n.layer_utils",
                                "optim": "jaxconv.compat.cs231n"}),
         "numpy": classes_on({"layers": "_cs231n_numpy", "optim": "_cs231n_numpy"})},
        args.client_rounds)
    then = before(args.before, args.rounds, args.number, args.client_rounds) if args.before else {}

    header = (f"CPU: {cpu_name()} ({os.cpu_count()} cores visible, affinity "
              f"{sorted(os.sched_getaffinity(0))}); jax {jax.__version__}, numpy {np.__version__}; "
              f"float64 calls; medians of {args.rounds} interleaved rounds x {args.number} calls "
              f"(client runs: {args.client_rounds} rounds); CPU time = time.process_time. "
              f"JAX CPU dispatch: {dispatch}. 'before' = jaxconv.compat.cs231n at "
              f"{args.before}, in its own process (asynchronous dispatch).")
    text = "\n\n".join([
        "# jaxconv.compat.cs231n vs CS231n's NumPy layers", header,
        "## Per call, the notebooks' small shapes",
        table(now_calls, then.get("per_call"), "compat", "compat", "us"),
        "## The client package (tests/cs231n_client) end to end",
        table(now_client, then.get("client"), "jaxconv", "before", "s")]) + "\n"
    print(text)
    out = ROOT / "experiments" / "results"
    out.mkdir(exist_ok=True)
    name = "bench_compat_async_cpu" if args.async_dispatch else "bench_compat_cpu"
    (out / f"{name}.md").write_text(text)
    (out / f"{name}.json").write_text(json.dumps(
        {"header": header, "per_call": now_calls, "client": now_client, "before": then},
        indent=2) + "\n")


if __name__ == "__main__":
    main()
