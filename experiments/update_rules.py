"""Update rules: SGD, SGD+momentum, RMSProp and Adam on a 5-layer fully connected net.

CS231n's comparison (assignment 2, FullyConnectedNets): the same network, the
same initialisation and the same batches, trained with each of jaxconv.optim's
rules at CS231n's learning rates. Plots the training loss per iteration and the
train/val accuracy per epoch.

    python experiments/update_rules.py [--data cifar10 --data-dir DIR] [--tiny --out DIR]
"""
from __future__ import annotations

import sys

if __package__ in (None, ""):  # run as a script: make ``_common`` importable
    sys.path.insert(0, __import__("os").path.dirname(__file__))

import _common as common

# CS231n's learning rates for this comparison.
RULES = {"sgd": 1e-2, "sgd_momentum": 1e-2, "rmsprop": 1e-4, "adam": 1e-3}


def main(argv=None) -> dict:
    args = common.parser(__doc__).parse_args(argv)
    with common.fast_compile(args.tiny):
        return study(args)


def study(args) -> dict:
    from jaxconv import models, optim

    epochs, batch_size = (1, 20) if args.tiny else (10, 50)
    d = common.load_data(args, num_train=4000)
    hidden = [8] if args.tiny else [100] * 4  # tiny: a smoke test, compiled fast
    model = models.FullyConnectedNet(hidden, input_dim=common.input_dim(d),
                                     weight_scale=5e-2)
    runs = {}
    for rule in common.progress(RULES, desc="update rules"):
        solver = common.train(model, d, optimizer=getattr(optim, rule)(RULES[rule]),
                              epochs=epochs, batch_size=batch_size, seed=args.seed)
        runs[rule] = common.histories(solver)

    fig = common.Figure("update_rules", f"Update rules on a {len(hidden) + 1}-layer "
                        f"FullyConnectedNet ({args.data}): SGD vs momentum vs RMSProp vs Adam", {
                            "loss": ("training loss", "iteration", "loss"),
                            "train_acc": ("training accuracy", "epoch", "accuracy"),
                            "val_acc": ("validation accuracy", "epoch", "accuracy")})
    for rule, run in runs.items():
        label = f"{rule} (lr {RULES[rule]:g})"
        fig.line("loss", label, range(1, len(run["loss"]) + 1), run["loss"], lw=0.8)
        for key in ("train_acc", "val_acc"):
            fig.line(key, label, range(1, epochs + 1), run[key], marker="o")
    results = {rule: {"final_loss": run["loss"][-1], "final_train_acc": run["train_acc"][-1],
                      "final_val_acc": run["val_acc"][-1], "best_val_acc": max(run["val_acc"])}
               for rule, run in runs.items()}
    settings = {"data": args.data, "num_train": len(d["X_train"]), "num_val": len(d["X_val"]),
                "hidden_dims": hidden, "weight_scale": 5e-2, "epochs": epochs,
                "batch_size": min(batch_size, len(d["X_train"])), "learning_rates": RULES,
                "seed": args.seed}
    return common.save_results("update_rules", args, [fig], settings, results)


if __name__ == "__main__":
    main()
