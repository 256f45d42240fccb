"""``jaxconv train``: train a CS231n network with the Solver, from one command.

Defaults: ThreeLayerConvNet (16 3x3 filters, 64 hidden units) on scikit-learn's
bundled digits, adam(1e-3), 10 epochs of batches of 50: a few seconds on two
CPU cores, validation accuracy about 0.97.
"""
from __future__ import annotations

import math
import os
import sys
import time

# Per dataset: (epochs, batch size, learning rate) when the flags leave them out.
_DEFAULTS = {"digits": (10, 50, 1e-3), "cifar10": (1, 50, 1e-3)}


def run(args) -> int:
    import jax

    _start_cluster(args)

    from jaxconv import data as datasets, optim
    from jaxconv.solver import NonFiniteLossError, Solver

    if args.plot is not None:
        _check_plot_path(args.plot)
    epochs, batch_size, lr = _DEFAULTS[args.data]
    epochs = args.epochs if args.epochs is not None else epochs
    batch_size = args.batch_size if args.batch_size is not None else batch_size
    lr = args.lr if args.lr is not None else lr

    if args.data == "digits":
        data = datasets.load_digits()
    else:
        if args.data_dir is None:
            raise ValueError("--data cifar10 needs --data-dir DIR (the cifar-10-batches-py folder)")
        data = datasets.load_cifar10(args.data_dir)
    model = _model(args, data["X_train"].shape[1:])
    optimizer = getattr(optim, args.optimizer)(lr)

    solver = Solver(model, data, optimizer=optimizer, batch_size=batch_size, num_epochs=epochs,
                    verbose=not args.quiet, checkpoint_dir=args.checkpoint_dir, seed=args.seed)
    lead = jax.process_index() == 0
    if lead:
        n = {split: len(data[f"y_{split}"]) for split in ("train", "val", "test")}
        device = jax.devices()[0].platform
        print(f"jaxconv train: {type(model).__name__} on {args.data} ({n['train']} train / "
              f"{n['val']} val / {n['test']} test), {args.optimizer} lr {lr:g}, "
              f"{epochs} epoch{'s' * (epochs != 1)} "
              f"of {solver.iterations_per_epoch} batches of {batch_size}, "
              f"{len(jax.devices())} {device} device(s)", flush=True)
        if solver.epoch:
            print(f"resuming from the checkpoint of epoch {solver.epoch} in "
                  f"{solver.checkpoint_dir}", flush=True)
    start = time.perf_counter()
    try:
        solver.train()
    except NonFiniteLossError as error:  # a diverged run: one line, exit status 1
        print(f"jaxconv train: error: {error}", file=sys.stderr, flush=True)
        return 1
    seconds = time.perf_counter() - start

    best = dict(params=solver.best_params, state=solver.best_state)
    acc = {split: solver.check_accuracy(data[f"X_{split}"], data[f"y_{split}"], **best)
           for split in ("train", "val", "test")}
    if lead:
        best_epoch = solver.val_acc_history.index(solver.best_val_acc) + 1
        print(f"train acc {acc['train']:.3f} | val acc {acc['val']:.3f} | test acc "
              f"{acc['test']:.3f}  (parameters of epoch {best_epoch}; trained in "
              f"{seconds:.1f} s)", flush=True)
        if args.plot is not None:
            _plot(solver, args.plot)
            print(f"saved {args.plot}", flush=True)
    return 0


def _start_cluster(args) -> None:
    """``--distributed``: join the JAX cluster before anything touches a device."""
    import jax

    cluster = {"coordinator_address": getattr(args, "coordinator", None),
               "num_processes": getattr(args, "num_processes", None),
               "process_id": getattr(args, "process_id", None)}
    given = [f"--{k.split('_address')[0].replace('_', '-')}" for k, v in cluster.items()
             if v is not None]
    if not args.distributed:
        if given:
            raise ValueError(f"{', '.join(given)} only make sense with --distributed")
        return
    n, i = cluster["num_processes"], cluster["process_id"]
    if i is not None and (i < 0 or (n is not None and i >= n)):
        raise ValueError(f"--process-id {i} must be in [0, {n if n is not None else 'N'})")
    if "JAX_CPU_COLLECTIVES_IMPLEMENTATION" not in os.environ:
        # CPU devices of several processes need a collectives backend; JAX's is
        # gloo. GPU and TPU clients ignore this setting.
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(**cluster)


def _model(args, sample_shape):
    from jaxconv import models

    if args.model == "convnet":
        if args.data == "digits":  # 8x8 images: small filters, few of them
            return models.ThreeLayerConvNet(input_dim=sample_shape, num_filters=16,
                                            filter_size=3, hidden_dim=64, weight_scale=1e-2,
                                            conv_impl=args.conv_impl)
        return models.ThreeLayerConvNet(input_dim=sample_shape, conv_impl=args.conv_impl)
    return models.FullyConnectedNet([100, 100], input_dim=math.prod(sample_shape),
                                    weight_scale=1e-2)


def _check_plot_path(path: str) -> None:
    """Fail before training, not after: the folder must exist, the format be known."""
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"--plot {path}: folder {folder} does not exist")
    if not path.lower().endswith(".png"):
        raise ValueError(f"--plot {path}: the file name must end in .png")


def _plot(solver, path: str) -> None:
    """Loss per iteration and accuracies per epoch, side by side."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    left.plot(range(1, len(solver.loss_history) + 1), solver.loss_history, lw=0.8)
    left.set(xlabel="iteration", ylabel="training loss", title="Loss")
    epochs = range(1, len(solver.val_acc_history) + 1)
    right.plot(epochs, solver.train_acc_history, "o-", label="train")
    right.plot(epochs, solver.val_acc_history, "o-", label="val")
    right.set(xlabel="epoch", ylabel="accuracy", title="Accuracy")
    right.legend()
    fig.suptitle(f"jaxconv: {type(solver.model).__name__}")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
