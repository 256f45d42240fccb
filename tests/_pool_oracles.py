"""NumPy loop oracles of PyTorch's pooling, channels-first, any number of spatial dims.

Each is a transcription of PyTorch's CPU kernels (aten/src/ATen/native/cpu/
MaxPoolKernel.cpp, AvgPoolKernel.cpp, AdaptiveMaxPoolKernel.cpp,
AdaptiveAvgPoolKernel.cpp) as plain loops over output positions, written from those
kernels and independent of jaxconv's geometry: the output size, the ceil_mode rule,
the divisor rules and the max-pool scan order (``val > max or isnan(val)``: ties go
to the first maximum, NaN to the last NaN) are all re-derived here.
Each returns ``(out, dx)`` for an upstream gradient ``g``.
"""
import itertools
import math

import numpy as np


def out_size(n, k, s, p, d, ceil_mode):
    """PyTorch's ``pooling_output_shape``."""
    span = n + 2 * p - d * (k - 1) - 1 + (s - 1 if ceil_mode else 0)
    o = span // s + 1
    if ceil_mode and (o - 1) * s >= n + p:
        o -= 1
    return o


def _spatial(x, pool, *more):
    dims = x.ndim - 2
    expand = lambda v: tuple(v) if isinstance(v, (tuple, list)) else (v,) * dims  # noqa: E731
    return dims, expand(pool), *(expand(v) for v in more)


def max_pool(x, g, pool, stride=None, pad=0, dilation=1, ceil_mode=False):
    dims, k, s, p, d = _spatial(x, pool, pool if stride is None else stride, pad, dilation)
    sizes = x.shape[2:]
    outs = [out_size(n, *a, ceil_mode) for n, *a in zip(sizes, k, s, p, d)]
    out = np.empty(x.shape[:2] + tuple(outs))
    dx = np.zeros_like(x)
    for nc in np.ndindex(*x.shape[:2]):
        for o in np.ndindex(*outs):
            starts = [oi * si - pi for oi, si, pi in zip(o, s, p)]
            ends = [min(st + (ki - 1) * di + 1, n) for st, ki, di, n in zip(starts, k, d, sizes)]
            firsts = [st + math.ceil(-st / di) * di if st < 0 else st for st, di in zip(starts, d)]
            best, where = -np.inf, tuple(firsts)
            for pos in itertools.product(*(range(f, e, di) for f, e, di in zip(firsts, ends, d))):
                val = x[nc + pos]
                if val > best or np.isnan(val):
                    best, where = val, pos
            out[nc + o] = best
            if all(0 <= w < n for w, n in zip(where, sizes)):   # else a window of padding
                dx[nc + where] += g[nc + o]                     # only: -inf, no gradient
    return out, dx


def avg_pool(x, g, pool, stride=None, pad=0, ceil_mode=False, count_include_pad=True,
             divisor_override=None):
    dims, k, s, p = _spatial(x, pool, pool if stride is None else stride, pad)
    sizes = x.shape[2:]
    outs = [out_size(n, ki, si, pi, 1, ceil_mode) for n, ki, si, pi in zip(sizes, k, s, p)]
    out = np.empty(x.shape[:2] + tuple(outs))
    dx = np.zeros_like(x)
    for nc in np.ndindex(*x.shape[:2]):
        for o in np.ndindex(*outs):
            starts = [oi * si - pi for oi, si, pi in zip(o, s, p)]
            ends = [min(st + ki, n + pi) for st, ki, n, pi in zip(starts, k, sizes, p)]
            pool_size = math.prod(e - st for st, e in zip(starts, ends))
            starts = [max(st, 0) for st in starts]
            ends = [min(e, n) for e, n in zip(ends, sizes)]
            box = tuple(slice(st, e) for st, e in zip(starts, ends))
            if divisor_override is not None:
                divisor = divisor_override
            elif count_include_pad:
                divisor = pool_size
            else:
                divisor = math.prod(e - st for st, e in zip(starts, ends))
            out[nc + o] = x[nc + box].sum() / divisor
            dx[nc + box] += g[nc + o] / divisor
    return out, dx


def adaptive_windows(n, o):
    """PyTorch's adaptive window of output i: ``[floor(i*n/o), ceil((i+1)*n/o))``."""
    return [(i * n // o, -(-(i + 1) * n // o)) for i in range(o)]


def adaptive_pool(x, g, out_size, kind):
    dims = x.ndim - 2
    outs = tuple(out_size) if isinstance(out_size, (tuple, list)) else (out_size,) * dims
    outs = tuple(n if o is None else o for n, o in zip(x.shape[2:], outs))
    windows = [adaptive_windows(n, o) for n, o in zip(x.shape[2:], outs)]
    out = np.empty(x.shape[:2] + outs)
    dx = np.zeros_like(x)
    for nc in np.ndindex(*x.shape[:2]):
        for o in np.ndindex(*outs):
            box = tuple(slice(*windows[d][o[d]]) for d in range(dims))
            if kind == "avg":
                count = x[nc + box].size
                out[nc + o] = x[nc + box].sum() / count
                dx[nc + box] += g[nc + o] / count
                continue
            best, where = -np.inf, tuple(b.start for b in box)
            for pos in itertools.product(*(range(b.start, b.stop) for b in box)):
                if x[nc + pos] > best or np.isnan(x[nc + pos]):
                    best, where = x[nc + pos], pos
            out[nc + o] = best
            dx[nc + where] += g[nc + o]
    return out, dx
