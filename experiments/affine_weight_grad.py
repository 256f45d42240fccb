"""The affine layer's weight gradient ``dw = X.T @ g`` on XLA:CPU, in two settings.

1. Alone (dw is what the jit returns): the single dot against ``(g.T @ X).T`` with
   the transpose kept out of the dot by an optimization barrier ("split"), over a grid
   of (N, D, M), float32.
2. Inside a training step: the ThreeLayerConvNet adam step (batch 64, 3x32x32, 32
   filters 7x7, hidden 100: the hidden layer's dw is (8192, 100)) with each form in
   the affine op's backward rule.

Alone, the split form runs tall float32 weights 1.2-10x faster; in the step XLA fuses
its transpose into the optimizer's updates, which then read dw column by column, and
the step took 1.12x the time. ``jaxconv._dense._weight_grad`` (the "jaxconv" column)
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


def in_step(repeats: int) -> dict:
    from jaxconv import models, optim
    model = models.ThreeLayerConvNet(input_dim=(3, 32, 32), num_filters=32, filter_size=7,
                                     hidden_dim=100, weight_scale=1e-2)
    params, state = model.init(jax.random.key(0))
    X = jax.random.normal(jax.random.key(1), (64, 3, 32, 32), jnp.float32)
    y = jax.random.randint(jax.random.key(2), (64,), 0, 10)
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

    times = timed({name: step_with(_ops_with(form)) for name, form in FORMS.items()}, repeats)
    return {k: v["cpu_ms"] for k, v in times.items()}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=31)
    args = p.parse_args(argv)
    step = in_step(args.repeats)
    lines = ["# Affine weight gradient on XLA:CPU: `X.T @ g` (single) vs `(g.T @ X).T` (split)",
             "", f"CPU: {cpu_model()}; jax {jax.__version__}; one thread per call as pinned; "
             f"CPU ms per call, medians of {args.repeats} interleaved rounds.", "",
             "## In the ThreeLayerConvNet adam step (batch 64; dw (8192, 100))", "",
             "| single ms | split ms | split/single |", "|---|---|---|",
             f"| {step['single']:.2f} | {step['split']:.2f} | "
             f"{step['split'] / step['single']:.2f} |", "",
             "## Alone (dw returned), float32", "",
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
