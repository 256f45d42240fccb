"""Dropout: keep ratios 1.0, 0.75, 0.5, 0.25 and the gap between train and val accuracy.

CS231n's dropout experiment (assignment 2, Dropout): a 2-layer net with a wide
hidden layer trained on few examples so that it overfits, once per keep ratio
(``dropout_keep_ratio`` is the probability of KEEPING a unit). Plots train and
validation accuracy per epoch and the train - val gap.

    python experiments/dropout.py [--data cifar10 --data-dir DIR] [--tiny --out DIR]
"""
from __future__ import annotations

import sys

if __package__ in (None, ""):
    sys.path.insert(0, __import__("os").path.dirname(__file__))

import _common as common

KEEP = (1.0, 0.75, 0.5, 0.25)


def main(argv=None) -> dict:
    args = common.parser(__doc__).parse_args(argv)
    with common.fast_compile(args.tiny):
        return study(args)


def study(args) -> dict:
    from jaxconv import models, optim

    epochs, hidden, num_train = (1, [16], None) if args.tiny else (25, [500], 200)
    d = common.load_data(args, num_train=num_train)
    optimizer = optim.adam(5e-4)
    runs = {}
    for keep in common.progress(KEEP, desc="keep ratios"):
        model = models.FullyConnectedNet(hidden, input_dim=common.input_dim(d),
                                         dropout_keep_ratio=keep, weight_scale=5e-2)
        s = common.train(model, d, optimizer=optimizer, epochs=epochs, batch_size=50,
                         seed=args.seed, num_train_samples=None)
        runs[keep] = common.histories(s)

    fig = common.Figure("dropout", f"Dropout keep ratios on a 2-layer FullyConnectedNet "
                        f"({len(d['X_train'])} {args.data} training images)", {
                            "train_acc": ("training accuracy", "epoch", "accuracy"),
                            "val_acc": ("validation accuracy", "epoch", "accuracy"),
                            "gap": ("train - val accuracy (overfitting)", "epoch",
                                    "accuracy gap")})
    epochs_x = range(1, epochs + 1)
    for keep, run in runs.items():
        label = f"keep {keep:g}"
        fig.line("train_acc", label, epochs_x, run["train_acc"], marker=".")
        fig.line("val_acc", label, epochs_x, run["val_acc"], marker=".")
        fig.line("gap", label, epochs_x,
                 [t - v for t, v in zip(run["train_acc"], run["val_acc"])], marker=".")
    results = {f"keep {keep:g}": {
        "final_train_acc": r["train_acc"][-1], "final_val_acc": r["val_acc"][-1],
        "final_gap": r["train_acc"][-1] - r["val_acc"][-1], "best_val_acc": max(r["val_acc"]),
        "final_loss": r["loss"][-1]} for keep, r in runs.items()}
    settings = {"data": args.data, "num_train": len(d["X_train"]), "num_val": len(d["X_val"]),
                "hidden_dims": hidden, "optimizer": "adam(5e-4)", "epochs": epochs,
                "batch_size": min(50, len(d["X_train"])), "keep_ratios": list(KEEP),
                "seed": args.seed}
    return common.save_results("dropout", args, [fig], settings, results)


if __name__ == "__main__":
    main()
