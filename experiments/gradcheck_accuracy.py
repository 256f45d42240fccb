"""How accurate is a gradient check? Hand-derived gradients vs centered differences, h swept.

For each op, the gradient of ``sum(op(args) * dout)`` from the hand-derived
``custom_vjp`` rule is compared with centered differences
``(f(x + h e_i) - f(x - h e_i)) / 2h`` (``jaxconv.gradcheck.numerical_vjp``,
evaluated in the dtype under test) as ``h`` sweeps 1e-1 ... 1e-12, in float64,
float32 and bfloat16: truncation error (~h^2) falls as h shrinks until the
rounding error of the differences (~eps / h) takes over: a U-curve whose floor
depends on the dtype. Beside it, the same gradient against ``jax.grad`` of the
op's ``jaxconv.reference`` twin: no h, flat at the dtype's rounding level.

Errors are NORM-WISE, ``||g - g_ref||_2 / max(||g||_2, ||g_ref||_2)`` over all
the op's gradients, because CS231n's element-wise ``rel_error`` (also shown)
turns rounding noise on an exactly-zero gradient entry (relu, max pool, svm)
into an error near 1. The inputs avoid kinks by a margin of 0.1 (relu inputs,
max-pool ties): an h past that margin crosses the kink.

    python experiments/gradcheck_accuracy.py [--tiny --out DIR]
"""
from __future__ import annotations

import sys

if __package__ in (None, ""):
    sys.path.insert(0, __import__("os").path.dirname(__file__))

import jax
import numpy as np

import _common as common

DTYPES = ("float64", "float32", "bfloat16")
CS231N_GOOD = 1e-7  # CS231n: "relative error < 1e-7 and you should be happy"


def op_cases():
    """``{op: (f(ops, *float_args), float64 args)}``; integer/key/statistics inputs
    are fixed inside ``f`` (they carry no gradient)."""
    import jax.numpy as jnp

    rng = np.random.default_rng(0)
    n = lambda *s: rng.standard_normal(s)                                  # noqa: E731
    away = lambda *s: np.sign(n(*s)) * (0.1 + np.abs(n(*s)))               # noqa: E731
    grid = lambda *s: (rng.permutation(int(np.prod(s))) * 0.1 - 1.0).reshape(s)  # noqa: E731
    y = np.array([0, 2, 1, 4, 3, 2])
    key = jax.random.key(0)
    rm, rv = np.zeros(4), np.ones(4)
    scores = n(6, 5)
    svm_scores = scores.copy()
    svm_scores[np.arange(6), y] -= 3.0  # every margin active: away from the hinge
    return {
        "affine": (lambda o, x, w, b: o.affine(x, w, b), (n(4, 6), n(6, 5), n(5))),
        "relu": (lambda o, x: o.relu(x), (away(4, 6),)),
        "conv2d": (lambda o, x, w, b: o.conv2d(x, w, b, pad=1),
                   (n(2, 2, 5, 5), n(3, 2, 3, 3), n(3))),
        "max_pool2d": (lambda o, x: o.max_pool2d(x, pool=2), (grid(2, 2, 4, 4),)),
        "avg_pool2d": (lambda o, x: o.avg_pool2d(x, pool=2), (n(2, 2, 4, 4),)),
        "batch_norm": (lambda o, x, g, b: o.batch_norm(
            x, g, b, rm.astype(x.dtype), rv.astype(x.dtype), train=True)[0],
                       (n(6, 4), n(4), n(4))),
        "layer_norm": (lambda o, x, g, b: o.layer_norm(x, g, b), (n(4, 6), n(6), n(6))),
        "group_norm": (lambda o, x, g, b: o.group_norm(x, g, b, groups=2),
                       (n(2, 4, 3, 3), n(4), n(4))),
        "dropout": (lambda o, x: o.dropout(x, key, keep_prob=0.5), (n(4, 6),)),
        "softmax_loss": (lambda o, s: o.softmax_loss(s, jnp.asarray(y)), (scores,)),
        "svm_loss": (lambda o, s: o.svm_loss(s, jnp.asarray(y)), (svm_scores,)),
    }


def normwise(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    scale = max(np.linalg.norm(a), np.linalg.norm(b))
    return float(np.linalg.norm(a - b) / scale) if scale > 0 else 0.0


def errors_for(f, args64, dtype, hs, seed=0):
    """Norm-wise and element-wise errors of the custom gradient, per h and vs the twin."""
    import jax.numpy as jnp

    import jaxconv
    from jaxconv import gradcheck

    args = [jnp.asarray(a, dtype) for a in args64]
    custom = lambda *a: f(jaxconv, *a)                                     # noqa: E731
    twin = lambda *a: f(jaxconv.reference, *a)                              # noqa: E731
    out = jax.eval_shape(custom, *args)
    dout = jax.random.normal(jax.random.key(seed), out.shape, dtype)

    @jax.jit
    def grads(args, dout):
        return jax.vjp(custom, *args)[1](dout), jax.vjp(twin, *args)[1](dout)

    @jax.jit
    def numerical(args, dout, h):
        def one(i):
            def fi(a):
                call = list(args)
                call[i] = a
                return custom(*call)
            return gradcheck.numerical_vjp(fi, args[i], dout, h=h)
        return [one(i) for i in range(len(args))]

    flat = lambda gs: np.concatenate([np.asarray(g, np.float64).ravel() for g in gs])  # noqa
    g_custom, g_twin = (flat(g) for g in grads(args, dout))
    norm, elem = [], []
    for h in hs:
        g_num = flat(numerical(args, dout, jnp.asarray(h, dtype)))
        norm.append(normwise(g_custom, g_num))
        elem.append(gradcheck.rel_error(g_custom, g_num))
    return {"normwise": norm, "elementwise": elem,
            "twin_normwise": normwise(g_custom, g_twin),
            "twin_elementwise": gradcheck.rel_error(g_custom, g_twin)}


def main(argv=None) -> dict:
    args = common.parser(__doc__, data=False).parse_args(argv)
    with common.fast_compile(args.tiny), jax.enable_x64(True):
        return study(args)


def study(args) -> dict:
    import jax.numpy as jnp

    cases = op_cases()
    if args.tiny:
        cases = {k: cases[k] for k in ("conv2d", "batch_norm")}  # linear, and a U-curve
        hs = [1e-1, 1e-4, 1e-8]
    else:
        hs = [10.0 ** -k for k in range(1, 13)]
    table = {dt: {} for dt in DTYPES}
    jobs = [(dt, op) for dt in DTYPES for op in cases]
    for dt, op in common.progress(jobs, desc="op x dtype"):
        f, args64 = cases[op]
        table[dt][op] = errors_for(f, args64, getattr(jnp, dt), hs, seed=args.seed)

    panels = {}
    for kind, what in (("normwise", "norm-wise"), ("elementwise", "CS231n element-wise")):
        for dt in DTYPES:
            panels[f"{kind}_{dt}"] = (f"{dt}: {what} error vs differences", "step h",
                                      "relative error")
        if kind == "normwise":
            panels["twin"] = ("vs jax.grad of the twin (no h)", "op", "norm-wise error")
    fig = common.Figure("gradcheck_accuracy", "Hand-derived gradients vs centered "
                        "differences (h swept) and vs autodiff, float64/float32/bfloat16",
                        panels, ncols=4, panel_size=(4.0, 3.3),
                        legend_panels=["normwise_float64", "twin"])
    import matplotlib.pyplot as plt
    tab20 = plt.get_cmap("tab20").colors
    colors = dict(zip(cases, tab20[::2] + tab20[1::2]))
    for kind in ("normwise", "elementwise"):
        for dt in DTYPES:
            key = f"{kind}_{dt}"
            for op in cases:
                fig.line(key, op, hs, np.maximum(table[dt][op][kind], 1e-20), marker=".",
                         lw=0.8, color=colors[op])
            ax = fig.ax(key)
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.axhline(CS231N_GOOD, color="k", ls=":", lw=1)
            ax.invert_xaxis()
    for dt, marker in zip(DTYPES, "os^"):
        fig.line("twin", dt, list(cases), [max(table[dt][op]["twin_normwise"], 1e-20)
                                          for op in cases], marker=marker, ls="none")
    fig.ax("twin").set_yscale("log")
    fig.ax("twin").tick_params(axis="x", labelrotation=70, labelsize=7)

    summary = {}
    for dt in DTYPES:
        summary[dt] = {}
        for op in cases:
            row = table[dt][op]
            best = int(np.argmin(row["normwise"]))
            summary[dt][op] = {
                "best_h": hs[best], "best_normwise": row["normwise"][best],
                "normwise_at_h_1e-5": row["normwise"][hs.index(1e-5)] if 1e-5 in hs else None,
                "elementwise_at_h_1e-5": row["elementwise"][hs.index(1e-5)]
                if 1e-5 in hs else None,
                "best_elementwise": float(np.min(row["elementwise"])),
                "twin_normwise": row["twin_normwise"], "twin_elementwise": row["twin_elementwise"],
                "passes_cs231n_1e-7_at_some_h": bool(np.min(row["elementwise"]) < CS231N_GOOD)}
    settings = {"ops": list(cases), "dtypes": list(DTYPES), "h": hs,
                "error_normwise": "||g_custom - g||_2 / max(||g_custom||_2, ||g||_2)",
                "error_elementwise": "CS231n rel_error: max |a-b| / max(1e-8, |a|+|b|)",
                "cs231n_threshold": CS231N_GOOD, "seed": args.seed}
    return common.save_results("gradcheck_accuracy", args, [fig], settings,
                               {"summary": summary, "table": table})


if __name__ == "__main__":
    main()
