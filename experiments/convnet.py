"""Convolutional net: ThreeLayerConvNet training curves per conv impl, first-layer filters.

The same ThreeLayerConvNet (``conv - relu - 2x2 max pool - affine - relu - affine``),
the same seed and batches, trained once per ``conv2d`` impl that this jaxconv
has (tried in turn: xla, im2col, naive, native; the ones that exist run, the
others are listed as unavailable). Shows that the impls give the same curve (the
largest loss and parameter differences to xla) at different speeds (a jitted
training step, timed interleaved: CPU and wall milliseconds), and the learned
first-layer filters as an image grid. On digits the step is also timed at
CIFAR-10's shape (random data), where the impls' speeds differ.

    python experiments/convnet.py [--data cifar10 --data-dir DIR] [--tiny --out DIR]
"""
from __future__ import annotations

import math
import sys

if __package__ in (None, ""):
    sys.path.insert(0, __import__("os").path.dirname(__file__))

import numpy as np

import _common as common

CANDIDATE_IMPLS = ("xla", "im2col", "naive", "native")


def filter_grid(W, pad=1):
    """``(F, C, K, K)`` filters as one image: a near-square grid, each filter
    scaled to [0, 1] on its own; grey for one channel, RGB for three."""
    F, C, K, _ = W.shape
    cols = math.ceil(math.sqrt(F))
    rows = math.ceil(F / cols)
    grid = np.ones((rows * (K + pad) + pad, cols * (K + pad) + pad, C if C == 3 else 1))
    for f in range(F):
        w = np.asarray(W[f], np.float64).transpose(1, 2, 0)[..., :3 if C == 3 else 1]
        w = (w - w.min()) / max(w.max() - w.min(), 1e-12)
        r, c = divmod(f, cols)
        grid[pad + r * (K + pad):pad + r * (K + pad) + K,
             pad + c * (K + pad):pad + c * (K + pad) + K] = w
    return grid if C == 3 else grid[..., 0]


def timed_steps(models_by_impl, optimizer, X, y, repeats):
    """Median CPU and wall ms of one jitted training step per impl, interleaved."""
    import jax

    steps = {}
    for impl, model in models_by_impl.items():
        step = common.train_step(model, optimizer)
        params, _ = model.init(jax.random.key(0))
        opt_state = optimizer.init(params)
        steps[impl] = lambda step=step, p=params, o=opt_state: \
            step(p, o, X, y)[2].block_until_ready()
    return common.timed(steps, repeats)


def main(argv=None) -> dict:
    args = common.parser(__doc__).parse_args(argv)
    with common.fast_compile(args.tiny):
        return study(args)


def study(args) -> dict:
    from jaxconv import models, optim

    d = common.load_data(args)
    C, H, W = d["X_train"].shape[1:]
    filter_size = 7 if H >= 32 else 3
    epochs, filters, hidden, repeats = (1, 4, 10, 2) if args.tiny else (6, 32, 100, 20)
    optimizer = optim.adam(1e-3)
    runs, unavailable = {}, {}
    for impl in common.progress(CANDIDATE_IMPLS, desc="conv impls"):
        try:
            model = models.ThreeLayerConvNet(input_dim=(C, H, W), num_filters=filters,
                                             filter_size=filter_size, hidden_dim=hidden,
                                             weight_scale=1e-2, conv_impl=impl)
            s = common.train(model, d, optimizer=optimizer, epochs=epochs, batch_size=50,
                             seed=args.seed)
        except (ValueError, TypeError, NotImplementedError, RuntimeError) as e:
            unavailable[impl] = f"{type(e).__name__}: {e}"
            continue
        runs[impl] = {"model": model, "loss": s.loss_history, "train_acc": s.train_acc_history,
                      "val_acc": s.val_acc_history, "params": common.host(s.params)}

    batch = min(50, len(d["X_train"]))
    times = timed_steps({impl: run["model"] for impl, run in runs.items()}, optimizer,
                        d["X_train"][:batch], d["y_train"][:batch], repeats)
    # The digits' 8x8 images hide the impls' differences; CIFAR-10's shape shows them.
    cifar_times = {} if args.tiny or H >= 32 else timed_steps(
        {impl: models.ThreeLayerConvNet(conv_impl=impl) for impl in runs}, optimizer,
        np.random.default_rng(0).standard_normal((64, 3, 32, 32)).astype(np.float32),
        np.arange(64) % 10, max(repeats // 2, 2))

    first = next(iter(runs))
    fig = common.Figure("convnet", f"ThreeLayerConvNet on {args.data}: conv impls "
                        f"{', '.join(runs)} (same seed), speed, first-layer filters", {
                            "loss": ("training loss", "iteration", "loss"),
                            "acc": ("train (dashed) / val accuracy", "epoch", "accuracy"),
                            "time": (f"training step, batch {batch} (median of {repeats})",
                                     "conv impl", "ms per step"),
                            **({"cifar_time": ("step at CIFAR-10 shape: 64x3x32x32, "
                                               "32 7x7 filters", "conv impl", "ms per step")}
                               if cifar_times else {}),
                            "filters": (f"first-layer filters W1 ({first} run)", "", "")},
                        ncols=5 if cifar_times else 4, panel_size=(4.0, 3.4))
    for impl, run in runs.items():
        fig.line("loss", impl, range(1, len(run["loss"]) + 1), run["loss"], lw=0.8)
        fig.line("acc", f"{impl} val", range(1, epochs + 1), run["val_acc"], marker="o")
        fig.line("acc", f"{impl} train", range(1, epochs + 1), run["train_acc"], ls="--")
    fig.grouped_bars("time", list(runs), {
        "CPU ms": [times[i]["cpu_ms"] for i in runs],
        "wall ms": [times[i]["wall_ms"] for i in runs]})
    if cifar_times:
        fig.grouped_bars("cifar_time", list(runs), {
            "CPU ms": [cifar_times[i]["cpu_ms"] for i in runs],
            "wall ms": [cifar_times[i]["wall_ms"] for i in runs]})
    fig.image("filters", "W1", filter_grid(runs[first]["params"]["W1"]),
              cmap="gray", interpolation="nearest")

    base = runs[first]
    results = {"impls_run": list(runs), "impls_unavailable": unavailable, "step_ms": times,
               "step_ms_cifar_shape_random_data": cifar_times,
               "per_impl": {impl: {
                   "final_loss": run["loss"][-1], "final_val_acc": run["val_acc"][-1],
                   "max_loss_diff_vs_" + first: float(np.max(np.abs(
                       np.subtract(run["loss"], base["loss"])))),
                   "max_param_diff_vs_" + first: common.max_abs_diff(run["params"],
                                                                     base["params"])}
                   for impl, run in runs.items()}}
    settings = {"data": args.data, "num_train": len(d["X_train"]), "num_val": len(d["X_val"]),
                "input_dim": [int(C), int(H), int(W)], "num_filters": filters,
                "filter_size": filter_size, "hidden_dim": hidden, "weight_scale": 1e-2,
                "optimizer": "adam(1e-3)", "epochs": epochs, "batch_size": batch,
                "tried_impls": list(CANDIDATE_IMPLS), "seed": args.seed}
    return common.save_results("convnet", args, [fig], settings, results)


if __name__ == "__main__":
    main()
