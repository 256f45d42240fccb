"""Batch normalization: with and without, the weight-scale sweep, and batch size vs layer norm.

CS231n's three batch-norm experiments (assignment 2, BatchNormalization), on a
6-layer FullyConnectedNet trained with Adam, layer norm beside batch norm:

1. the same network without normalization, with batch norm and with layer norm:
   training loss per iteration and validation accuracy per epoch;
2. the initialisation-scale sweep: final train/val accuracy against
   ``weight_scale`` (log axis) for each normalization;
3. batch size: final validation accuracy of batch norm and layer norm (and no
   normalization) for small and large batches (batch norm's statistics get
   noisy as the batch shrinks; layer norm's do not depend on it).

    python experiments/batchnorm.py [--data cifar10 --data-dir DIR] [--tiny --out DIR]
"""
from __future__ import annotations

import sys

if __package__ in (None, ""):
    sys.path.insert(0, __import__("os").path.dirname(__file__))

import numpy as np

import _common as common

NORMS = {"none": None, "batchnorm": "batchnorm", "layernorm": "layernorm"}
HIDDEN = [100] * 5
WEIGHT_SCALE = 2e-2


def main(argv=None) -> dict:
    args = common.parser(__doc__).parse_args(argv)
    with common.fast_compile(args.tiny):
        return study(args)


def study(args) -> dict:
    from jaxconv import models, optim

    tiny = args.tiny
    epochs, sweep_epochs, batch_epochs = (1, 1, 1) if tiny else (10, 6, 6)
    hidden = [8] if tiny else HIDDEN  # tiny: a smoke test, compiled fast
    scales = [WEIGHT_SCALE, 1e-1] if tiny else list(np.logspace(-4, 0, 7)) + [WEIGHT_SCALE]
    scales = sorted(set(float(s) for s in scales))
    batch_sizes = [10, 50] if tiny else [5, 10, 50, 200]
    d = common.load_data(args, num_train=1000)
    optimizer = optim.adam(1e-3)  # one object: runs of the same model share compilations

    def model(norm, scale=WEIGHT_SCALE):
        return models.FullyConnectedNet(hidden, input_dim=common.input_dim(d),
                                        normalization=NORMS[norm], weight_scale=scale)

    runs = [("curves", norm, WEIGHT_SCALE, 50) for norm in NORMS]
    runs += [("sweep", norm, s, 50) for s in scales for norm in NORMS]
    runs += [("batch", norm, WEIGHT_SCALE, b) for b in batch_sizes for norm in NORMS]
    out = {"curves": {}, "sweep": {n: {} for n in NORMS}, "batch": {n: {} for n in NORMS}}
    for part, norm, scale, batch in common.progress(runs, desc="batch norm runs"):
        n_epochs = {"curves": epochs, "sweep": sweep_epochs, "batch": batch_epochs}[part]
        s = common.train(model(norm, scale), d, optimizer=optimizer, epochs=n_epochs,
                         batch_size=batch, seed=args.seed)
        if part == "curves":
            out["curves"][norm] = common.histories(s)
        else:
            key = scale if part == "sweep" else min(batch, len(d["X_train"]))
            out[part][norm][key] = {"train_acc": s.train_acc_history[-1],
                                    "val_acc": s.val_acc_history[-1],
                                    "final_loss": s.loss_history[-1]}

    fig = common.Figure("batchnorm", f"Batch norm vs layer norm vs none, {len(hidden) + 1}-layer "
                        f"FullyConnectedNet, Adam ({args.data})", {
                            "loss": ("training loss (weight_scale 2e-2)", "iteration", "loss"),
                            "val_acc": ("validation accuracy", "epoch", "accuracy"),
                            "sweep_train": ("final train accuracy vs init scale",
                                            "weight_scale", "accuracy"),
                            "sweep_val": ("final val accuracy vs init scale",
                                          "weight_scale", "accuracy"),
                            "batch": ("final val accuracy vs batch size", "batch size",
                                      "accuracy")}, ncols=3)
    for norm, run in out["curves"].items():
        fig.line("loss", norm, range(1, len(run["loss"]) + 1), run["loss"], lw=0.7)
        fig.line("val_acc", norm, range(1, epochs + 1), run["val_acc"], marker="o")
    for norm in NORMS:
        xs = sorted(out["sweep"][norm])
        for metric in ("train", "val"):
            fig.line(f"sweep_{metric}", norm, xs,
                     [out["sweep"][norm][x][f"{metric}_acc"] for x in xs], marker="o")
        bs = sorted(out["batch"][norm])
        fig.line("batch", norm, bs, [out["batch"][norm][b]["val_acc"] for b in bs], marker="o")
    for key in ("sweep_train", "sweep_val", "batch"):
        fig.ax(key).set_xscale("log")
    results = {
        "curves": {n: {"final_loss": r["loss"][-1], "final_val_acc": r["val_acc"][-1],
                       "final_train_acc": r["train_acc"][-1]} for n, r in out["curves"].items()},
        "sweep": {n: {f"{k:.3g}": v for k, v in out["sweep"][n].items()} for n in NORMS},
        "batch": out["batch"],
    }
    settings = {"data": args.data, "num_train": len(d["X_train"]), "num_val": len(d["X_val"]),
                "hidden_dims": hidden, "optimizer": "adam(1e-3)", "epochs_curves": epochs,
                "epochs_sweep": sweep_epochs, "epochs_batch": batch_epochs,
                "weight_scales": scales, "batch_sizes": batch_sizes, "seed": args.seed}
    return common.save_results("batchnorm", args, [fig], settings, results)


if __name__ == "__main__":
    main()
