"""Window and layout geometry, written once for 1, 2 and 3 spatial dims.

Every windowed op (conv, conv_transpose, the pools, im2col/col2im) describes its
call by two static, hashable values built here at trace time:

* a :class:`Layout` (``"NCW"/"NWC"``, ``"NCHW"/"NHWC"``, ``"NCDHW"/"NDHWC"``): where
  the batch, channel and spatial axes of an image are, where the axes of a conv
  weight are (channels-first ``(F, C // groups, *K)``, channels-last
  ``(*K, C // groups, F)``) and the ``lax`` dimension numbers of the convolution;
* a :class:`Window`: per spatial dim the input size ``I``, kernel ``K``, stride
  ``s``, dilation ``d``, padding ``(lo, hi)`` and output size ``O``, and what
  follows from them. In one dim, with ``span = d (K - 1) + 1`` the extent of a
  dilated window and ``P = lo + I + hi`` the padded size::

      O = (P - span) // s + 1                     (floor, the default)
      O = ceil((P - span) / s) + 1, minus one if the last window would start
          at or past I + lo (PyTorch's ceil_mode: a window starting in the input
          or the left padding is kept, one starting in the right padding is not)
      reach = (O - 1) s + span                    rows of the padded input windows cover
      remainder = P - reach                       >= 0: padded rows no window reaches
                                                  (they get zero gradient); < 0 only
                                                  with ceil_mode: the last window
                                                  overhangs the padded input by -remainder

The one constructor, :func:`window`, validates and normalises the hyperparameters
(int or one per dim; pad an int, one int per dim, one ``(low, high)`` pair per
dim, ``"SAME"`` or ``"VALID"``) and raises ``TypeError``/``ValueError`` naming the
op, the argument and the shapes.
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np
from jax import lax

from jaxconv._checks import _is_int as is_int

# XLA indexes a dimension with 32 bits on some paths and multiplies a shape's
# extents in int64 (an overflow aborts the whole process, e.g. pad=10**9):
# reject such shapes at validation instead.
MAX_SIZE = 2**31 - 1
MAX_ELEMENTS = 2**60

LAYOUTS = {1: ("NCW", "NWC"), 2: ("NCHW", "NHWC"), 3: ("NCDHW", "NDHWC")}
ALL_LAYOUTS = tuple(name for pair in LAYOUTS.values() for name in pair)
_COUNT = {1: "a tuple of 1 int", 2: "a pair of ints", 3: "a tuple of 3 ints"}


@dataclasses.dataclass(frozen=True)
class Layout:
    """Axes of an image and of a conv weight in one of :data:`ALL_LAYOUTS`."""
    name: str

    @property
    def ndim(self) -> int:
        """Number of spatial dims."""
        return len(self.name) - 2

    @property
    def rank(self) -> int:
        return len(self.name)

    @property
    def channels_first(self) -> bool:
        return self.name[1] == "C"

    @property
    def channel_axis(self) -> int:
        return 1 if self.channels_first else self.rank - 1

    @property
    def spatial_axes(self) -> tuple[int, ...]:
        start = 2 if self.channels_first else 1
        return tuple(range(start, start + self.ndim))

    def spatial(self, shape) -> tuple[int, ...]:
        return tuple(int(shape[a]) for a in self.spatial_axes)

    def channel_shape(self, size: int = -1) -> tuple[int, ...]:
        """Shape that broadcasts a per-channel vector (a bias) against an image."""
        return tuple(size if a == self.channel_axis else 1 for a in range(self.rank))

    # conv weights: channels-first (OUT, IN, *K); channels-last (*K, IN, OUT)
    @property
    def weight_spatial_axes(self) -> tuple[int, ...]:
        start = 2 if self.channels_first else 0
        return tuple(range(start, start + self.ndim))

    @property
    def weight_in_axis(self) -> int:
        return 1 if self.channels_first else self.ndim

    @property
    def weight_out_axis(self) -> int:
        return 0 if self.channels_first else self.ndim + 1

    def kernel(self, w_shape) -> tuple[int, ...]:
        return tuple(int(w_shape[a]) for a in self.weight_spatial_axes)

    def weight_shape(self, out: int, inn: int, kernel) -> tuple[int, ...]:
        return (out, inn, *kernel) if self.channels_first else (*kernel, inn, out)

    @property
    def dimension_numbers(self) -> lax.ConvDimensionNumbers:
        """``lax.conv_general_dilated``'s (lhs, rhs, out) specs for this layout."""
        image = (0, self.channel_axis, *self.spatial_axes)
        weight = (self.weight_out_axis, self.weight_in_axis, *self.weight_spatial_axes)
        return lax.ConvDimensionNumbers(image, weight, image)


def layout(op: str, value, x_shape, *, ndim: int | None = None) -> Layout:
    """Resolve ``layout`` for an image of shape ``x_shape``.

    ``ndim`` fixes the number of spatial dims (``conv2d``); ``None`` takes it from
    the layout, or from ``len(x_shape)`` when ``value`` is ``None`` (channels-first).
    The rank of x is checked against the layout here.
    """
    shapes = f"x.shape={tuple(x_shape)}"
    allowed = ALL_LAYOUTS if ndim is None else LAYOUTS[ndim]
    if value is None:
        if ndim is None and len(x_shape) - 2 not in LAYOUTS:
            raise ValueError(f"{op}: x must be 3-D, 4-D or 5-D (N, C, *spatial), got {shapes}")
        value = LAYOUTS[len(x_shape) - 2 if ndim is None else ndim][0]
    if value not in allowed:
        raise ValueError(f"{op}: layout must be one of {allowed}, got {value!r}")
    if len(x_shape) != len(value):
        raise ValueError(f"{op}: x must be {len(value)}-D, got {shapes} (layout {value!r})")
    return Layout(value)


def per_dim(op: str, name: str, value, n: int, *, minimum: int,
            context: str = "") -> tuple[int, ...]:
    """Normalise an int or a sequence of ``n`` ints, each ``>= minimum``."""
    items = tuple(value) if isinstance(value, (tuple, list)) else (value,) * n
    if len(items) != n or not all(is_int(v) for v in items):
        raise TypeError(f"{op}: {name} must be an int or {_COUNT[n]}, got {value!r}")
    items = tuple(int(v) for v in items)
    if min(items) < minimum:
        raise ValueError(f"{op}: {name} must be >= {minimum}, got {value!r}{context}")
    if max(items) > MAX_SIZE:     # XLA indexes with 32 bits; 2**63 would overflow C longs
        raise ValueError(f"{op}: {name} must be <= {MAX_SIZE}, got {value!r}{context}")
    return items


def pads(op: str, value, n: int, *, strings: bool = True, name: str = "pad"):
    """Normalise ``pad`` to one ``(low, high)`` pair per dim, or return the
    upper-cased string ``"SAME"``/``"VALID"`` (resolved once the kernel is known)."""
    if isinstance(value, str) and strings and value.upper() in ("SAME", "VALID"):
        return value.upper()
    forms = (f"an int, {n} int(s) (one per spatial dim) or {n} (low, high) pair(s)"
             + (", 'SAME' or 'VALID'" if strings else ""))
    items = tuple(value) if isinstance(value, (tuple, list)) else (value,) * n
    if n == 1 and len(items) == 2 and all(is_int(p) for p in items):
        items = (items,)            # 1-D: a flat (low, high) is unambiguous
    if len(items) != n:
        raise TypeError(f"{op}: {name} must be {forms}, got {value!r}")
    out = []
    for item in items:
        if isinstance(item, (tuple, list)):
            if len(item) != 2:
                raise ValueError(f"{op}: each {name} pair must be (low, high), got {item!r} "
                                 f"in {name}={value!r}")
            pair = tuple(item)
        else:
            pair = (item, item)
        if not all(is_int(p) for p in pair):
            raise TypeError(f"{op}: {name} must be {forms}, got {value!r}")
        out.append(tuple(int(p) for p in pair))
    if min(min(p) for p in out) < 0:
        raise ValueError(f"{op}: {name} must be >= 0, got {value!r}")
    return tuple(out)


@dataclasses.dataclass(frozen=True)
class Window:
    """One windowed op's geometry, per spatial dim (see the module docstring)."""
    in_size: tuple[int, ...]
    kernel: tuple[int, ...]
    stride: tuple[int, ...]
    dilation: tuple[int, ...]
    pad: tuple[tuple[int, int], ...]
    out_size: tuple[int, ...]

    @property
    def ndim(self) -> int:
        return len(self.in_size)

    @property
    def span(self) -> tuple[int, ...]:
        """Extent of one dilated window, ``d (K - 1) + 1``."""
        return tuple(d * (k - 1) + 1 for k, d in zip(self.kernel, self.dilation))

    @property
    def padded_size(self) -> tuple[int, ...]:
        return tuple(lo + n + hi for n, (lo, hi) in zip(self.in_size, self.pad))

    @property
    def reach(self) -> tuple[int, ...]:
        """Rows of the padded input from its start to the end of the last window."""
        return tuple((o - 1) * s + e for o, s, e in zip(self.out_size, self.stride, self.span))

    @property
    def remainder(self) -> tuple[int, ...]:
        """Padded rows past the last window (negative: the ceil_mode overhang)."""
        return tuple(p - r for p, r in zip(self.padded_size, self.reach))

    @property
    def taps(self) -> int:
        return math.prod(self.kernel)

    @property
    def fit_pad(self) -> tuple[tuple[int, int], ...]:
        """Pads whose floor rule ``(P - span) // s + 1`` gives exactly ``out_size``:
        the high pad less whole strides of the remainder (only when ``out_size`` was
        given, as conv_transpose's output_pad >= stride does) or plus the ceil_mode
        overhang. The pads themselves for every plain floor-mode window."""
        return tuple((lo, hi - (r // s) * s if r >= 0 else hi - r)
                     for (lo, hi), r, s in zip(self.pad, self.remainder, self.stride))


def window(op: str, *, in_size, kernel, stride=1, dilation=1, pad=0, ceil_mode=False,
           kernel_name: str = "kernel", what: str | None = None, shapes: str = "",
           outer: int = 1) -> Window:
    """Validate and normalise one call's window geometry (see the module docstring).

    Args:
      in_size: spatial sizes of the input (static ints).
      kernel: int or one per dim (named ``kernel_name`` in messages; ``what`` names
        it in the "larger than the padded input" message).
      stride, dilation: int or one per dim, ``>= 1``.
      pad: int, one int per dim, one ``(low, high)`` pair per dim, or ``"SAME"`` /
        ``"VALID"`` (SAME as ``lax.padtype_to_pads`` with the dilated kernel).
      ceil_mode: PyTorch's pooling rule (see the module docstring).
      shapes: the op's array shapes, appended to every message.
      outer: the product of the non-spatial dims of the largest array (batch times
        channels), to reject shapes XLA cannot index.
    """
    in_size = tuple(int(n) for n in in_size)
    n = len(in_size)
    context = f" ({shapes})" if shapes else ""
    kernel = per_dim(op, kernel_name, kernel, n, minimum=1, context=context)
    stride = per_dim(op, "stride", stride, n, minimum=1)
    dilation = per_dim(op, "dilation", dilation, n, minimum=1)
    if not isinstance(ceil_mode, bool):
        raise TypeError(f"{op}: ceil_mode must be a bool, got {ceil_mode!r}")
    span = tuple(d * (k - 1) + 1 for k, d in zip(kernel, dilation))
    pad = pads(op, pad, n)
    if pad == "VALID":
        pad = ((0, 0),) * n
    elif pad == "SAME":
        pad = tuple(tuple(p) for p in lax.padtype_to_pads(in_size, span, stride, "SAME"))
    padded = tuple(lo + m + hi for m, (lo, hi) in zip(in_size, pad))
    what = what or kernel_name
    if any(e > p for e, p in zip(span, padded)):
        size = (f"{kernel} is" if set(dilation) == {1}
                else f"{kernel} with dilation {dilation} spans {span},")
        raise ValueError(f"{op}: {what} {size} larger than the padded input {padded}{context}")
    out = []
    for m, (lo, _), p, e, s in zip(in_size, pad, padded, span, stride):
        o = (p - e + (s - 1 if ceil_mode else 0)) // s + 1
        if ceil_mode and (o - 1) * s >= m + lo:
            o -= 1
        out.append(o)
    check_extent(op, "padded input", padded, outer, context)
    check_extent(op, "output", out, outer, context)
    return Window(in_size, kernel, stride, dilation, pad, tuple(out))


def check_extent(op: str, what: str, sizes, outer: int, context: str) -> None:
    """Reject spatial sizes XLA cannot index (a clean error instead of an abort)."""
    sizes = tuple(sizes)
    if max(sizes, default=0) > MAX_SIZE or outer * math.prod(sizes) > MAX_ELEMENTS:
        raise ValueError(f"{op}: the {what} {sizes} is too large for XLA to index "
                         f"(at most {MAX_SIZE} per dim and {MAX_ELEMENTS} elements){context}")


def transpose_window(op: str, *, in_size, kernel, stride=1, dilation=1, pad=0, output_pad=0,
                     shapes: str = "", outer: int = 1) -> Window:
    """The window of the convolution whose adjoint a transposed convolution is.

    ``conv_transpose`` maps an input of size ``I`` to the full transposed output
    ``(I - 1) s + d (K - 1) + 1 + output_pad`` and crops ``(low, high)`` = ``pad``
    from it (an int or one int per dim crops both ends alike, as PyTorch; a pair
    per dim crops each end on its own; no "SAME"/"VALID"). The returned window is
    that of the forward convolution from the transposed output (``in_size``) back
    to ``I`` (``out_size``), with ``pad`` as its padding and ``output_pad`` as its
    remainder, the rows no window reaches.
    """
    in_size = tuple(int(n) for n in in_size)
    n = len(in_size)
    context = f" ({shapes})" if shapes else ""
    kernel = per_dim(op, "kernel", kernel, n, minimum=1, context=context)
    stride = per_dim(op, "stride", stride, n, minimum=1)
    dilation = per_dim(op, "dilation", dilation, n, minimum=1)
    pad = pads(op, pad, n, strings=False)
    output_pad = per_dim(op, "output_pad", output_pad, n, minimum=0)
    if any(q >= s and q >= d for q, s, d in zip(output_pad, stride, dilation)):
        raise ValueError(f"{op}: output_pad must be smaller than stride or dilation in every "
                         f"dim, got output_pad={output_pad}, stride={stride}, "
                         f"dilation={dilation}{context}")
    full = tuple((m - 1) * s + d * (k - 1) + 1 + q for m, s, d, k, q in
                 zip(in_size, stride, dilation, kernel, output_pad))
    size = tuple(f - lo - hi for f, (lo, hi) in zip(full, pad))
    if min(size) < 1:
        raise ValueError(f"{op}: pad={pad} crops the transposed output {full} to {size}, "
                         f"which is not positive{context}")
    check_extent(op, "output", size, outer, context)
    return Window(size, kernel, stride, dilation, pad, in_size)


# --- pooling: where each window's taps fall, PyTorch's padding rule, adaptive windows ---

def taps_inside(window: Window, dim: int, *, padded: bool = False) -> np.ndarray:
    """``(O, K)`` bools along ``dim``: does tap ``t`` of window ``o`` read the input
    (row ``o s + t d - lo`` in ``[0, I)``), or with ``padded`` the padded input
    (``[-lo, I + hi)``; only a ceil_mode overhang lies past it)?"""
    rows = (np.arange(window.out_size[dim])[:, None] * window.stride[dim]
            + np.arange(window.kernel[dim])[None, :] * window.dilation[dim]
            - window.pad[dim][0])
    low, high = (-window.pad[dim][0], window.in_size[dim] + window.pad[dim][1]) if padded \
        else (0, window.in_size[dim])
    return (rows >= low) & (rows < high)


def check_pool_pad(op: str, window: Window, shapes: str = "") -> None:
    """PyTorch's pooling rule: each pad at most half the window, ``pad <= K // 2``
    (the kernel size, whatever the dilation), so that no window is padding only."""
    half = tuple(k // 2 for k in window.kernel)
    if any(max(p) > h for p, h in zip(window.pad, half)):
        pad = tuple(p if p[0] != p[1] else p[0] for p in window.pad)
        raise ValueError(f"{op}: pad must be at most half the pool window (pool // 2 = "
                         f"{half}), got pad={pad} for pool={window.kernel}"
                         + (f" ({shapes})" if shapes else ""))


def adaptive_windows(size: int, out: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """``(starts, ends)`` of adaptive pooling's ``out`` windows over ``size`` rows,
    PyTorch's rule: window ``i`` is ``[floor(i size / out), ceil((i + 1) size / out))``
    (adjacent windows may share a row; ``out > size`` repeats rows)."""
    starts = tuple(i * size // out for i in range(out))
    ends = tuple(-(-(i + 1) * size // out) for i in range(out))
    return starts, ends
