"""Hand rules vs autodiff in a real training loop: the same ThreeLayerConvNet, same seed.

The network is written once on an op namespace (``_common.three_layer_forward``)
and trained by the Solver twice from the same seed and batches: on the
``jaxconv`` ops (hand-derived ``custom_vjp`` rules) and on ``jaxconv.reference``
(the autodiff twins). Shows the largest parameter difference after every epoch
and the loss difference per iteration, in float32 and float64 (if the rules are
right, only rounding separates the runs: ~1e-7 relative in float32, ~1e-16 in
float64, possibly amplified by training); then the time of one jitted training
step (forward, backward, Adam; CPU and wall ms, interleaved) and the bytes of
residuals each keeps between the passes (leaves of ``jax.vjp``'s pullback).
The loss and gradients of ``jaxconv.models.ThreeLayerConvNet`` itself, at the
initial parameters, check that the experiment's network is the library's.

    python experiments/custom_vs_autodiff.py [--data cifar10 --data-dir DIR] [--tiny --out DIR]
"""
from __future__ import annotations

import sys

if __package__ in (None, ""):
    sys.path.insert(0, __import__("os").path.dirname(__file__))

import jax
import numpy as np

import _common as common


def main(argv=None) -> dict:
    args = common.parser(__doc__).parse_args(argv)
    with common.fast_compile(args.tiny):
        return study(args)


def run_pair(net, d, optimizer, epochs, seed):
    """Train ``net`` on the custom ops and on the twins; per-epoch parameter snapshots."""
    out = {}
    for ops in ("jaxconv", "reference"):
        snaps = []
        s = common.train(common.OpsModel(net, common.three_layer_forward, ops), d,
                         optimizer=optimizer, epochs=epochs, batch_size=50, seed=seed,
                         on_epoch=lambda s: snaps.append(common.host(s.params)))
        out[ops] = {"snaps": snaps, "loss": np.asarray(s.loss_history),
                    "val_acc": s.val_acc_history}
    return out


def study(args) -> dict:
    import jax.numpy as jnp

    from jaxconv import models, optim

    d = common.load_data(args)
    C, H, W = d["X_train"].shape[1:]
    epochs, filters, hidden, repeats = (1, 4, 10, 2) if args.tiny else (8, 32, 100, 20)
    optimizer = optim.adam(1e-3)

    def net(dtype):
        return models.ThreeLayerConvNet(input_dim=(C, H, W), num_filters=filters,
                                        filter_size=7 if H >= 32 else 3, hidden_dim=hidden,
                                        weight_scale=1e-2, dtype=dtype)

    runs = {}
    for dtype in common.progress(("float32", "float64"), desc="custom vs autodiff"):
        with jax.enable_x64(dtype == "float64"):
            runs[dtype] = run_pair(net(getattr(jnp, dtype)), d, optimizer, epochs, args.seed)
    # One training step, timed, and the residuals of its backward (float32).
    batch = min(50, len(d["X_train"]))
    X, y = jnp.asarray(d["X_train"][:batch]), jnp.asarray(d["y_train"][:batch])
    params, _ = net(jnp.float32).init(jax.random.key(args.seed))
    # The experiment's network is the library's: same loss and gradients.
    library_diff = common.max_abs_diff(*(
        jax.jit(jax.value_and_grad(lambda p, m=m: m.loss(p, {}, X, y)[0]))(params)
        for m in (net(jnp.float32), common.OpsModel(net(jnp.float32),
                                                    common.three_layer_forward))))
    opt_state = optimizer.init(params)
    steps, residuals = {}, {}
    for ops, name in (("jaxconv", "custom"), ("reference", "autodiff")):
        model = common.OpsModel(net(jnp.float32), common.three_layer_forward, ops)
        step = common.train_step(model, optimizer)
        steps[name] = lambda step=step: step(params, opt_state, X, y)[2].block_until_ready()
        residuals[name] = common.residual_bytes(lambda p, m=model: m.loss(p, {}, X, y)[0],
                                                params)
    times = common.timed(steps, repeats)

    fig = common.Figure("custom_vs_autodiff", "Hand-derived custom_vjp rules vs autodiff "
                        f"twins, ThreeLayerConvNet on {args.data}, same seed", {
                            "params": ("largest |parameter difference|", "epoch",
                                       "max |custom - autodiff|"),
                            "loss": ("|loss difference| per iteration (0: not shown)",
                                     "iteration",
                                     "|custom - autodiff|"),
                            "time": (f"training step, batch {batch} (median of {repeats})",
                                     "", "ms per step"),
                            "residuals": (f"residual bytes of the step, batch {batch}", "",
                                          "KiB")}, ncols=4, panel_size=(4.2, 3.4))
    results = {"per_dtype": {}, "step_ms": times, "residual_bytes": residuals,
               "library_model_vs_experiment_network_max_loss_grad_diff": library_diff}
    for dtype, run in runs.items():
        a, b = run["jaxconv"], run["reference"]
        per_epoch = [common.max_abs_diff(x, y) for x, y in zip(a["snaps"], b["snaps"])]
        loss_diff = np.abs(a["loss"] - b["loss"])
        fig.line("params", dtype, range(1, epochs + 1), per_epoch, marker="o")
        fig.line("loss", dtype, range(1, len(loss_diff) + 1), loss_diff, ls="none",
                 marker=".", ms=3)  # exact zeros drop off the log axis
        largest = max(float(np.max(np.abs(v))) for v in jax.tree.leaves(a["snaps"][-1]))
        results["per_dtype"][dtype] = {
            "max_param_diff_per_epoch": per_epoch, "max_loss_diff": float(loss_diff.max()),
            "largest_param_magnitude": largest,
            "final_val_acc_custom": a["val_acc"][-1], "final_val_acc_autodiff": b["val_acc"][-1]}
    for key in ("params", "loss"):  # log scale unless every difference is exactly 0
        if any(v for series in fig.panels[key].series.values() for v in series["y"]):
            fig.ax(key).set_yscale("log")
    fig.grouped_bars("time", ["custom", "autodiff"], {
        "CPU ms": [times[k]["cpu_ms"] for k in ("custom", "autodiff")],
        "wall ms": [times[k]["wall_ms"] for k in ("custom", "autodiff")]})
    fig.bar("residuals", ["custom", "autodiff"],
            [residuals["custom"] / 1024, residuals["autodiff"] / 1024], color=["C0", "C1"])
    settings = {"data": args.data, "num_train": len(d["X_train"]), "num_val": len(d["X_val"]),
                "input_dim": [int(C), int(H), int(W)], "num_filters": filters,
                "hidden_dim": hidden, "optimizer": "adam(1e-3)", "epochs": epochs,
                "batch_size": batch, "seed": args.seed}
    return common.save_results("custom_vs_autodiff", args, [fig], settings, results)


if __name__ == "__main__":
    main()
