"""Where the ThreeLayerConvNet step loses to PyTorch on CPU: the forward conv.

Times the forward of a 3-channel 7x7 "same" convolution (64x3x32x32 input, 32
filters, float32) in several formulations, interleaved with the order rotating
every round, next to PyTorch's. The backward rules are at parity with autodiff
(see bench_ops.py); this forward is what a faster impl must beat.

    python experiments/conv_forward_formulations.py
"""
import pathlib
import time

import jax
import jax.numpy as jnp
import numpy as np

import jaxconv as jc
from jaxconv.bench import device_description


def row_patches_nhwc(x, w, pad):
    """Patches along W only (KW*C wide, 7x smaller than im2col), KH matmuls."""
    _, h, wd, c = x.shape
    kh, kw, _, f = w.shape
    xp = jnp.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    ho, wo = h + 2 * pad - kh + 1, wd + 2 * pad - kw + 1
    rows = jnp.concatenate([xp[:, :, j:j + wo, :] for j in range(kw)], axis=-1)
    return sum(jnp.einsum("nhwk,kf->nhwf", rows[:, i:i + ho], w[i].reshape(kw * c, f))
               for i in range(kh))


def main(repeats=15):
    key = jax.random.key(0)
    x = jax.random.normal(key, (64, 3, 32, 32), jnp.float32)
    w = 0.1 * jax.random.normal(key, (32, 3, 7, 7), jnp.float32)
    xh, wh = x.transpose(0, 2, 3, 1), w.transpose(2, 3, 1, 0)
    nchw = {  # arrays as arguments: closed-over constants would be folded at compile time
        "xla NCHW": lambda x, w: jc.conv2d(x, w, pad=3),
        "im2col NCHW": lambda x, w: jc.conv2d(x, w, pad=3, impl="im2col"),
    }
    nhwc = {
        "xla NHWC": lambda x, w: jc.conv2d(x, w, pad=3, layout="NHWC"),
        "im2col NHWC": lambda x, w: jc.conv2d(x, w, pad=3, layout="NHWC", impl="im2col"),
        "row patches NHWC": lambda x, w: row_patches_nhwc(x, w, 3),
    }
    variants = {k: (lambda f=jax.jit(f): jax.block_until_ready(f(x, w))) for k, f in nchw.items()}
    variants.update({k: (lambda f=jax.jit(f): jax.block_until_ready(f(xh, wh)))
                     for k, f in nhwc.items()})
    try:
        import torch
        xt, wt = torch.tensor(np.asarray(x)), torch.tensor(np.asarray(w))
        variants["torch NCHW"] = lambda: torch.nn.functional.conv2d(xt, wt, padding=3)
    except ImportError:
        pass
    for f in variants.values():
        f()
    times, order = {k: [] for k in variants}, list(variants)
    for r in range(repeats):
        for k in order[r % len(order):] + order[:r % len(order)]:
            start = time.perf_counter()
            variants[k]()
            times[k].append(time.perf_counter() - start)
    lines = [f"device: {device_description()}; forward only, median of {repeats} rounds", "",
             "| formulation | ms |", "|---|---|"]
    lines += [f"| {k} | {1e3 * np.median(v):.1f} |" for k, v in times.items()]
    table = "\n".join(lines)
    print(table)
    out = pathlib.Path(__file__).parent / "results" / "conv_forward_formulations_cpu.md"
    out.write_text(table + "\n")


if __name__ == "__main__":
    main()
