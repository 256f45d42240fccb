"""The affine layer's weight gradient ``dw = X.T @ g`` on XLA:CPU, in two settings.

1. Alone (dw is what the jit returns): the single dot against ``(g.T @ X).T`` with
   the transpose kept out of the dot by an optimization barrier ("split"), over a grid
   of (N, D, M), float32.
2. Inside adam training steps (``STEPS``: the ThreeLayerConvNet, whose hidden dw is
   (8192, 100); a FullyConnectedNet [100, 100] on 3072 inputs; a softmax classifier,
   dw (3072, 10)) with each form in the affine op's backward rule.

Alone, the split form runs tall float32 weights 1.2-10x faster; in the step XLA fuses
its transpose into the optimizer's updates, which then read dw column by column: the
ThreeLayerConvNet step took 1.12x the time, the FC net's 1.27x; the classifier's small
dw (120 KiB) read by columns costs little (0.88x). ``jaxconv._dense._weight_grad`` (the "jaxconv" column)
uses the split form only for a tall float32 dw of at most 512 KiB (N >= 32, D >= 8 M).
Run pinned to one core on a quiet machine:
``taskset -c 1 python experiments/affine_weight_grad.py``; writes
experiments/results/affine_weight_grad_cpu.md.
"""
from __future__ import annotations

import argparse
import pathlib
import sys
import types

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax import lax

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from _common import RESULTS, cpu_model, timed  # noqa: E402

GRID_N, GRID_D, GRID_M = (32, 64, 200), (3072, 8192), (10, 100)
FORMS = {"single": lambda x, g: x.T @ g,
         "split": lambda x, g: lax.optimization_barrier(g.T @ x).T}


def alone(repeats: int) -> dict:
    from jaxconv._dense import _weight_grad
    jitted = {name: jax.jit(form) for name, form in {**FORMS, "jaxconv": _weight_grad}.items()}
    rng = np.random.default_rng(0)
    rows = {}
    for n in GRID_N:
        for d in GRID_D:
            for m in GRID_M:
                x = jax.device_put(rng.standard_normal((n, d)).astype(np.float32))
                g = jax.device_put(rng.standard_normal((n, m)).astype(np.float32))
                times = timed({name: (lambda f=f: f(x, g).block_until_ready())
                               for name, f in jitted.items()}, repeats)
                rows[(n, d, m)] = {k: v["cpu_ms"] for k, v in times.items()}
    return rows


def _ops_with(form):
    """jaxconv's ops with affine's backward computing dw by ``form``."""
    import jaxconv as jc
    from jaxconv import _dense
    from jaxconv._vjp import custom_vjp_op

    def bwd(c, residuals, g):
        x, w = residuals
        rows = _dense._rows(x)
        return (g @ w.T).reshape(x.shape), form(rows, g), g.sum(axis=0)

    affine = custom_vjp_op(_dense._affine_primal, _dense._affine_fwd, bwd)
    ops = types.SimpleNamespace(**{k: getattr(jc, k) for k in dir(jc) if not k.startswith("_")})
    ops.affine = lambda x, w, b: affine(_dense._CONFIG, *_dense.affine_inputs(x, w, b))
    return ops


STEPS = {   # name: (model, batch shape); the layers whose dw the two forms differ on
    "ThreeLayerConvNet, batch 64, dw (8192, 100)":
        (lambda m: m.ThreeLayerConvNet(input_dim=(3, 32, 32), num_filters=32, filter_size=7,
                                       hidden_dim=100, weight_scale=1e-2), (64, 3, 32, 32)),
    "FullyConnectedNet [100, 100], batch 200, dw (3072, 100)":
        (lambda m: m.FullyConnectedNet(hidden_dims=[100, 100], input_dim=3072,
                                       weight_scale=1e-2), (200, 3072)),
    "softmax classifier (FullyConnectedNet []), batch 200, dw (3072, 10)":
        (lambda m: m.FullyConnectedNet(hidden_dims=[], input_dim=3072, weight_scale=1e-2),
         (200, 3072)),
}


def in_step(name: str, repeats: int) -> dict:
    """CPU ms of one adam step of a model with each form in affine's backward."""
    from jaxconv import models, optim
    make, shape = STEPS[name]
    model = make(models)
    params, state = model.init(jax.random.key(0))
    X = jax.random.normal(jax.random.key(1), shape, jnp.float32)
    y = jax.random.randint(jax.random.key(2), (shape[0],), 0, 10)
    optimizer = optim.adam(1e-3)
    opt_state = optimizer.init(params)

    def step_with(ops):
        @jax.jit
        def step(params, opt_state):
            loss, grads = jax.value_and_grad(
                lambda p: models._loss(model, ops, p, state, X, y)[0])(params)
            updates, opt_state = optimizer.update(grads, opt_state, params)
            return optax.apply_updates(params, updates), opt_state, loss
        return lambda: jax.block_until_ready(step(params, opt_state))

    times = timed({form: step_with(_ops_with(f)) for form, f in FORMS.items()}, repeats)
    return {k: v["cpu_ms"] for k, v in times.items()}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=31)
    args = p.parse_args(argv)
    lines = ["# Affine weight gradient on XLA:CPU: `X.T @ g` (single) vs `(g.T @ X).T` (split)",
             "", f"CPU: {cpu_model()}; jax {jax.__version__}; one thread per call as pinned; "
             f"CPU ms per call, medians of {args.repeats} interleaved rounds.", "",
             "## In an adam training step (dw consumed by the update)", "",
             "| model | single ms | split ms | split/single |", "|---|---|---|---|"]
    for name in STEPS:
        step = in_step(name, args.repeats)
        lines.append(f"| {name} | {step['single']:.2f} | {step['split']:.2f} | "
                     f"{step['split'] / step['single']:.2f} |")
    lines += ["", "## Alone (dw returned), float32", "",
             "| N | D | M | single ms | split ms | split/single | jaxconv ms |",
             "|---|---|---|---|---|---|---|"]
    for (n, d, m), r in alone(args.repeats).items():
        lines.append(f"| {n} | {d} | {m} | {r['single']:.3f} | {r['split']:.3f} | "
                     f"{r['split'] / r['single']:.2f} | {r['jaxconv']:.3f} |")
    out = RESULTS / "affine_weight_grad_cpu.md"
    out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
