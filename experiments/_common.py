"""What every study in ``experiments/`` shares, written once: the command line,
the data, the device's name, interleaved timing, residual bytes, the figures and
the JSON of every plotted number.

A study is a script with ``main(argv=None) -> dict`` (its JSON payload), so the
smoke test can run it in-process with ``--tiny --out DIR``. Each figure is drawn
through :class:`Figure`, which records every series it plots; the JSON therefore
holds exactly the numbers the PNG shows, under ``figures[name]["panels"]``.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import math
import os
import pathlib
import platform
import subprocess
import sys
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

RESULTS = pathlib.Path(__file__).resolve().parent / "results"


# --- command line and data ------------------------------------------------------------

def parser(doc: str, *, data: bool = True) -> argparse.ArgumentParser:
    """The flags every study takes: ``--tiny``/``--smoke``, ``--out``, ``--seed`` and,
    for the studies that train on a dataset, ``--data`` and ``--data-dir``."""
    p = argparse.ArgumentParser(description=doc.strip().splitlines()[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="\n".join(doc.strip().splitlines()[1:]))
    p.add_argument("--tiny", "--smoke", action="store_true",
                   help="one epoch on a few samples (the CI smoke configuration)")
    p.add_argument("--out", type=pathlib.Path, default=RESULTS,
                   help=f"folder for the PNG and JSON (default {RESULTS})")
    p.add_argument("--seed", type=int, default=0)
    if data:
        p.add_argument("--data", choices=("digits", "cifar10"), default="digits",
                       help="digits: scikit-learn's bundled 8x8 digits (no download)")
        p.add_argument("--data-dir", help="the cifar-10-batches-py folder for --data cifar10")
    return p


def load_data(args, *, num_train: int | None = None, tiny_train: int = 60,
              tiny_val: int = 30) -> dict[str, np.ndarray]:
    """The CS231n dict for ``args.data``; ``num_train`` keeps the first that many
    training images; ``--tiny`` keeps ``tiny_train`` and ``tiny_val``."""
    from jaxconv import data

    if args.data == "cifar10":
        if not args.data_dir:
            raise SystemExit("--data cifar10 needs --data-dir (the cifar-10-batches-py folder)")
        d = data.load_cifar10(args.data_dir)
    else:
        d = data.load_digits()
    if args.tiny:
        num_train = tiny_train
        d["X_val"], d["y_val"] = d["X_val"][:tiny_val], d["y_val"][:tiny_val]
    if num_train is not None:
        d["X_train"], d["y_train"] = d["X_train"][:num_train], d["y_train"][:num_train]
    return d


def input_dim(d) -> int:
    return int(np.prod(d["X_train"].shape[1:]))


# --- the device -----------------------------------------------------------------------

def cpu_model() -> str:
    """The CPU's model name, from lscpu, else /proc/cpuinfo, else platform."""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        for line in out.splitlines():
            if line.strip().startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except (OSError, subprocess.SubprocessError):
        pass
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def device_info() -> dict:
    devices = jax.devices()
    return {"platform": devices[0].platform, "jax_devices": [str(d) for d in devices],
            "device_kind": devices[0].device_kind, "cpu": cpu_model(),
            "cores": os.cpu_count(), "jax": jax.__version__, "python": platform.python_version()}


def device_label(info: dict) -> str:
    kind = info["cpu"] if info["platform"] == "cpu" else info["device_kind"]
    return (f"{info['platform'].upper()}: {kind}, {len(info['jax_devices'])} device(s), "
            f"{info['cores']} cores; jax {info['jax']}")


# --- measurements ---------------------------------------------------------------------

def timed(variants: dict[str, Callable[[], Any]], repeats: int) -> dict[str, dict]:
    """Median wall and CPU milliseconds per call of each variant.

    The variants run interleaved, one call each per round, the order rotating,
    so that load on a shared machine slows them alike; CPU time (this process,
    all threads) is reported beside wall time because wall time balloons when
    the cores are shared.
    """
    for fn in variants.values():  # compile and warm up
        fn()
    wall = {k: [] for k in variants}
    cpu = {k: [] for k in variants}
    order = list(variants)
    for r in range(repeats):
        for k in order[r % len(order):] + order[:r % len(order)]:
            w0, c0 = time.perf_counter(), time.process_time()
            variants[k]()
            cpu[k].append(time.process_time() - c0)
            wall[k].append(time.perf_counter() - w0)
    return {k: {"wall_ms": 1e3 * float(np.median(wall[k])),
                "cpu_ms": 1e3 * float(np.median(cpu[k])), "repeats": repeats} for k in variants}


def residual_bytes(f, *args) -> int:
    """Bytes the backward keeps: the arrays closed over by ``jax.vjp``'s pullback
    (how ``jaxconv bench`` counts them), found by ``jax.eval_shape``: nothing runs."""
    pullback = jax.eval_shape(lambda *a: jax.vjp(f, *a)[1], *args)
    return int(sum(leaf.size * np.dtype(leaf.dtype).itemsize
                   for leaf in jax.tree.leaves(pullback)))


def max_abs_diff(a, b) -> float:
    """Largest absolute difference between two pytrees of arrays."""
    diffs = jax.tree.map(lambda x, y: float(np.max(np.abs(np.asarray(x, np.float64)
                                                          - np.asarray(y, np.float64)))), a, b)
    return max(jax.tree.leaves(diffs), default=0.0)


def host(tree):
    """NumPy copies of a (possibly replicated) pytree of arrays."""
    return jax.tree.map(lambda x: np.asarray(x), tree)


def train(model, d, *, optimizer, epochs: int, batch_size: int, seed: int = 0,
          on_epoch: Callable | None = None, **solver_kwargs):
    """A ``jaxconv.Solver`` trained quietly (the study shows its own progress bar).

    With ``on_epoch(solver)``, it is called after every epoch (the Solver trains
    "up to ``num_epochs``", so raising that number one at a time continues it).
    """
    from jaxconv import Solver

    batch_size = min(batch_size, len(d["X_train"]))
    solver = Solver(model, d, optimizer=optimizer, batch_size=batch_size,
                    num_epochs=epochs if on_epoch is None else 0, seed=seed, verbose=False,
                    **solver_kwargs)
    if on_epoch is None:
        solver.train()
        return solver
    for epoch in range(1, epochs + 1):
        solver.num_epochs = epoch
        solver.train()
        on_epoch(solver)
    return solver


@contextlib.contextmanager
def fast_compile(enabled: bool):
    """With ``enabled`` (the ``--tiny`` smoke runs), XLA skips most optimizations:
    compiling, not running, is what a smoke run spends its time on. The numbers
    are the same up to float rounding; the setting is restored afterwards."""
    if not enabled:
        yield
        return
    before = jax.config.read("jax_disable_most_optimizations")
    jax.config.update("jax_disable_most_optimizations", True)
    try:
        yield
    finally:
        jax.config.update("jax_disable_most_optimizations", before)


def histories(solver) -> dict:
    """A Solver's per-iteration losses and per-epoch accuracies."""
    return {"loss": solver.loss_history, "train_acc": solver.train_acc_history,
            "val_acc": solver.val_acc_history}


def progress(iterable=None, *, total=None, desc=None):
    from tqdm.auto import tqdm

    return tqdm(iterable, total=total, desc=desc, file=sys.stderr, dynamic_ncols=True)


# --- a network on the custom ops or on their autodiff twins --------------------------------

def three_layer_forward(ops, net, params, X):
    """``ThreeLayerConvNet``'s forward, written on an op namespace: ``jaxconv``
    (the hand-derived rules) or ``jaxconv.reference`` (their autodiff twins)."""
    h = ops.conv2d(X, params["W1"], params["b1"], stride=1, pad=(net.filter_size - 1) // 2,
                   impl=net.conv_impl)
    h = ops.max_pool2d(ops.relu(h), pool=2, stride=2)
    h = ops.relu(ops.affine(h, params["W2"], params["b2"]))
    return ops.affine(h, params["W3"], params["b3"])


@dataclasses.dataclass(frozen=True)
class OpsModel:
    """A network with ``init``/``loss``/``scores``, run on ``ops``: ``"jaxconv"``
    (custom_vjp rules) or ``"reference"`` (autodiff twins), same parameters.

    ``net`` supplies ``init``, ``reg`` and ``dtype``; ``forward(ops, net, params,
    X) -> scores`` is the network. Frozen and hashable, so the Solver trains it
    like any model (it is a static argument of the jitted step).
    """
    net: Any
    forward: Callable
    ops: str = "jaxconv"

    @property
    def dtype(self):
        return self.net.dtype

    def namespace(self):
        import jaxconv
        return {"jaxconv": jaxconv, "reference": jaxconv.reference}[self.ops]

    def init(self, key):
        return self.net.init(key)

    def scores(self, params, state, X):
        return self.forward(self.namespace(), self.net, params, jnp.asarray(X, self.dtype))

    def loss(self, params, state, X, y, *, key=None, train=True):
        """Mean softmax loss plus ``0.5 * reg * sum(W**2)``, as ``jaxconv.models``."""
        ops = self.namespace()
        loss = ops.softmax_loss(self.scores(params, state, X), y)
        reg = getattr(self.net, "reg", 0.0)
        if reg:
            loss = loss + 0.5 * reg * sum(jnp.sum(w * w) for k, w in params.items()
                                          if k.startswith("W"))
        return loss, dict(state)


def train_step(model, optimizer):
    """A jitted ``(params, opt_state, X, y) -> (params, opt_state, loss)``: forward,
    backward and update, as the Solver's step (for timing and memory)."""
    import optax

    @jax.jit
    def step(params, opt_state, X, y):
        (loss, _), grads = jax.value_and_grad(model.loss, has_aux=True)(params, {}, X, y)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss
    return step


# --- figures and results ----------------------------------------------------------------

def _floats(values) -> list:
    """JSON numbers (None for nan/inf, which JSON has no literal for)."""
    out = []
    for v in np.asarray(values, np.float64).ravel().tolist():
        out.append(v if math.isfinite(v) else None)
    return out


@dataclasses.dataclass
class Panel:
    title: str
    xlabel: str
    ylabel: str
    series: dict = dataclasses.field(default_factory=dict)


class Figure:
    """A matplotlib figure whose plotted numbers are recorded for the JSON.

    ``panels``: ``{key: (title, xlabel, ylabel)}``, laid out in a row (or in
    ``ncols`` columns). ``line``/``bar``/``image`` draw on a panel and record
    the series under ``panels[key]["series"][label]``. Legends go on
    ``legend_panels`` (default: every panel).
    """

    def __init__(self, name: str, title: str, panels: dict, *, ncols: int | None = None,
                 panel_size=(4.6, 3.4), legend_panels: list | None = None):
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        self.name, self.title = name, title
        self.legend_panels = list(panels) if legend_panels is None else legend_panels
        ncols = ncols or len(panels)
        nrows = -(-len(panels) // ncols)
        self.fig, axes = plt.subplots(nrows, ncols, squeeze=False,
                                      figsize=(panel_size[0] * ncols, panel_size[1] * nrows + 0.9))
        flat = list(axes.ravel())
        for ax in flat[len(panels):]:
            ax.set_visible(False)
        self.axes, self.panels = {}, {}
        for (key, (ptitle, xlabel, ylabel)), ax in zip(panels.items(), flat):
            ax.set_title(ptitle, fontsize=10)
            ax.set_xlabel(xlabel)
            ax.set_ylabel(ylabel)
            ax.grid(True, alpha=0.3)
            self.axes[key] = ax
            self.panels[key] = Panel(ptitle, xlabel, ylabel)

    def line(self, key, label, x, y, **style):
        self.axes[key].plot(list(x), np.asarray(y, np.float64), label=label, **style)
        x = list(x)
        xs = x if x and isinstance(x[0], str) else _floats(x)  # categories or numbers
        self.panels[key].series[label] = {"x": xs, "y": _floats(y)}

    def bar(self, key, labels, values, **style):
        ax = self.axes[key]
        ax.bar(range(len(labels)), np.asarray(values, np.float64), **style)
        ax.set_xticks(range(len(labels)), labels, rotation=20, fontsize=8)
        self.panels[key].series[style.get("label", "bars")] = {
            "x": list(labels), "y": _floats(values)}

    def grouped_bars(self, key, groups, series: dict):
        """Bars per group (x) for each series (colour); ``series[label]`` one value per group."""
        ax = self.axes[key]
        width = 0.8 / max(len(series), 1)
        for i, (label, values) in enumerate(series.items()):
            ax.bar(np.arange(len(groups)) + (i - (len(series) - 1) / 2) * width,
                   np.asarray(values, np.float64), width, label=label)
            self.panels[key].series[label] = {"x": list(groups), "y": _floats(values)}
        ax.set_xticks(range(len(groups)), groups, rotation=15, fontsize=8)

    def image(self, key, label, array, **style):
        ax = self.axes[key]
        ax.imshow(np.asarray(array), **style)
        ax.set_xticks([])
        ax.set_yticks([])
        a = np.asarray(array, np.float64)
        self.panels[key].series[label] = {"shape": list(a.shape),
                                          "values": _floats(a)}

    def ax(self, key):
        return self.axes[key]

    def save(self, out: pathlib.Path, device: dict) -> dict:
        """Write ``out/<name>.png`` (legends, the device in a footer); return the record."""
        for key, ax in self.axes.items():
            if key in self.legend_panels and ax.get_legend_handles_labels()[1]:
                ax.legend(fontsize=7)
        self.fig.suptitle(self.title, fontsize=11)
        self.fig.text(0.5, 0.005, device_label(device), ha="center", va="bottom", fontsize=7,
                      color="0.35")
        self.fig.tight_layout(rect=(0, 0.03, 1, 0.97))
        out.mkdir(parents=True, exist_ok=True)
        path = out / f"{self.name}.png"
        self.fig.savefig(path, dpi=72)
        import matplotlib.pyplot as plt
        plt.close(self.fig)
        return {"png": path.name, "title": self.title,
                "panels": {k: dataclasses.asdict(p) for k, p in self.panels.items()}}


def save_results(study: str, args, figures: list[Figure], settings: dict, results: dict
                 ) -> dict:
    """Save the figures and ``out/<study>.json``: the device, the settings, every
    plotted series (``figures``) and the study's summary numbers (``results``)."""
    device = device_info()
    payload = {"study": study, "device": device, "device_label": device_label(device),
               "tiny": bool(args.tiny), "settings": settings,
               "figures": {f.name: f.save(args.out, device) for f in figures},
               "results": results}
    path = args.out / f"{study}.json"
    path.write_text(json.dumps(_jsonable(payload), indent=1) + "\n")
    print(f"wrote {path} and {', '.join(f.name + '.png' for f in figures)}", file=sys.stderr)
    return payload


def _jsonable(obj):
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (np.generic, jax.Array)):
        obj = np.asarray(obj).item() if np.asarray(obj).ndim == 0 else np.asarray(obj).tolist()
        return _jsonable(obj)
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, pathlib.Path):
        return str(obj)
    return obj
