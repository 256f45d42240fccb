"""Memory: residual bytes and compiled peak memory of a training step vs batch size.

For ThreeLayerConvNet and a deeper conv net (four 3x3 convs, two max pools, two
affine layers), each built on the hand-derived ops and on the autodiff twins
(``_common.OpsModel``), for a range of batch sizes:

* residual bytes: what the backward keeps between the passes, the leaves of the
  pullback ``jax.vjp`` returns for the loss w.r.t. the parameters (counted with
  ``jax.eval_shape``; nothing runs);
* the compiled step (forward, backward, Adam update) as XLA plans it:
  ``jax.jit(step).lower(...).compile().memory_analysis()``: temporary buffers
  and the peak of live buffers (``peak_memory_in_bytes``) when the backend
  reports them (the JSON says when it does not). This is XLA's buffer
  assignment, not a measurement of the process's resident memory.

The input shape is the dataset's (digits 1x8x8 by default; ``--data cifar10``
3x32x32); the batches are real images from it.

    python experiments/memory.py [--data cifar10 --data-dir DIR] [--tiny --out DIR]
"""
from __future__ import annotations

import dataclasses
import sys
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, __import__("os").path.dirname(__file__))

import jax
import numpy as np

import _common as common

MEMORY_FIELDS = ("temp_size_in_bytes", "argument_size_in_bytes", "output_size_in_bytes",
                 "alias_size_in_bytes", "peak_memory_in_bytes")


@dataclasses.dataclass(frozen=True)
class DeepConvNet:
    """``[conv3x3 - relu] x 2 - pool - [conv3x3 - relu] x 2 - pool - affine - relu - affine``."""
    input_dim: tuple = (1, 8, 8)
    widths: tuple = (16, 16, 32, 32)
    hidden_dim: int = 64
    num_classes: int = 10
    weight_scale: float = 1e-2
    reg: float = 0.0
    dtype: Any = np.dtype("float32")
    conv_impl: str = "xla"

    def init(self, key):
        import jax.numpy as jnp

        C, H, W = self.input_dim
        shapes, c = {}, C
        for i, f in enumerate(self.widths, start=1):
            shapes[f"W{i}"], shapes[f"b{i}"], c = (f, c, 3, 3), (f,), f
        n = len(self.widths)
        shapes[f"W{n + 1}"] = (c * (H // 4) * (W // 4), self.hidden_dim)
        shapes[f"b{n + 1}"] = (self.hidden_dim,)
        shapes[f"W{n + 2}"], shapes[f"b{n + 2}"] = (self.hidden_dim, self.num_classes), \
            (self.num_classes,)
        keys = jax.random.split(key, len(shapes))
        params = {k: (self.weight_scale * jax.random.normal(kk, s, self.dtype) if k[0] == "W"
                      else jnp.zeros(s, self.dtype)) for (k, s), kk in zip(shapes.items(), keys)}
        return params, {}


def deep_forward(ops, net, params, X):
    h = X
    for i in range(1, len(net.widths) + 1):
        h = ops.relu(ops.conv2d(h, params[f"W{i}"], params[f"b{i}"], pad=1, impl=net.conv_impl))
        if i % 2 == 0:
            h = ops.max_pool2d(h, pool=2)
    n = len(net.widths)
    h = ops.relu(ops.affine(h, params[f"W{n + 1}"], params[f"b{n + 1}"]))
    return ops.affine(h, params[f"W{n + 2}"], params[f"b{n + 2}"])


def measure(model, optimizer, params, X, y) -> dict:
    """Residual bytes of the loss's backward, and XLA's memory plan of the whole step."""
    opt_state = optimizer.init(params)
    out = {"residual_bytes": common.residual_bytes(lambda p: model.loss(p, {}, X, y)[0], params)}
    compiled = common.train_step(model, optimizer).lower(params, opt_state, X, y).compile()
    stats = compiled.memory_analysis()
    out["memory_analysis_reported"] = stats is not None
    for field in MEMORY_FIELDS:
        value = getattr(stats, field, None) if stats is not None else None
        out[field] = None if value is None else int(value)
    return out


def main(argv=None) -> dict:
    args = common.parser(__doc__).parse_args(argv)
    with common.fast_compile(args.tiny):
        return study(args)


def study(args) -> dict:
    import jax.numpy as jnp

    from jaxconv import models, optim

    d = common.load_data(args, tiny_train=16)
    C, H, W = (int(v) for v in d["X_train"].shape[1:])
    batches = [4, 8] if args.tiny else [16, 32, 64, 128, 256]
    nets = {
        "ThreeLayerConvNet": (models.ThreeLayerConvNet(
            input_dim=(C, H, W), num_filters=4 if args.tiny else 32,
            filter_size=7 if H >= 32 else 3, hidden_dim=100), common.three_layer_forward),
        "DeepConvNet": (DeepConvNet(input_dim=(C, H, W), widths=(4, 4, 4, 4) if args.tiny
                                    else (16, 16, 32, 32)), deep_forward),
    }
    optimizer = optim.adam(1e-3)
    table = {}
    jobs = [(name, ops, b) for name in nets for ops in ("custom", "autodiff") for b in batches]
    for name, ops, b in common.progress(jobs, desc="net x ops x batch"):
        net, forward = nets[name]
        model = common.OpsModel(net, forward, "jaxconv" if ops == "custom" else "reference")
        params, _ = net.init(jax.random.key(args.seed))
        X = jnp.asarray(np.resize(d["X_train"], (b, C, H, W)))
        y = jnp.asarray(np.resize(d["y_train"], (b,)))
        table.setdefault(name, {}).setdefault(ops, {})[b] = measure(model, optimizer, params,
                                                                    X, y)

    reported = all(m["peak_memory_in_bytes"] is not None
                   for n in table.values() for o in n.values() for m in o.values())
    panels = {"residual": ("residual bytes of the backward", "batch size", "MiB"),
              "temp": ("XLA temp buffers of the step", "batch size", "MiB"),
              "peak": ("XLA peak_memory_in_bytes of the step" + ("" if reported else
                                                       " (not reported: shown as 0)"),
                       "batch size", "MiB"),
              "ratio": ("autodiff / custom", "batch size", "ratio")}
    fig = common.Figure("memory", f"Memory of one training step vs batch size, hand-derived "
                        f"rules vs autodiff ({args.data} {C}x{H}x{W})", panels, ncols=4,
                        panel_size=(4.0, 3.3))
    mib = lambda v: (v or 0) / 2 ** 20                                      # noqa: E731
    for name in nets:
        for ops, style in (("custom", "-"), ("autodiff", "--")):
            rows = table[name][ops]
            for key, field in (("residual", "residual_bytes"), ("temp", "temp_size_in_bytes"),
                               ("peak", "peak_memory_in_bytes")):
                fig.line(key, f"{name} {ops}", batches, [mib(rows[b][field]) for b in batches],
                         ls=style, marker="o")
        for field, label in (("residual_bytes", "residual"), ("temp_size_in_bytes", "temp")):
            c, a = table[name]["custom"], table[name]["autodiff"]
            fig.line("ratio", f"{name} {label}", batches,
                     [(a[b][field] or 0) / max(c[b][field] or 0, 1) for b in batches], marker="o")
    for key in panels:
        fig.ax(key).set_xscale("log", base=2)
        if key != "ratio":
            fig.ax(key).set_yscale("log")
    settings = {"data": args.data, "input_dim": [C, H, W], "batch_sizes": batches,
                "nets": list(nets), "optimizer": "adam(1e-3)",
                "memory_analysis_reported": reported, "fields": list(MEMORY_FIELDS),
                "seed": args.seed}
    return common.save_results("memory", args, [fig], settings, {"table": table})


if __name__ == "__main__":
    main()
