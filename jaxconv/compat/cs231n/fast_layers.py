"""CS231n's ``cs231n/fast_layers.py``, computed by the jaxconv ops.

``from jaxconv.compat.cs231n.fast_layers import *`` brings what CS231n's star import
does: the fast layers, the im2col helpers (CS231n's module star-imports ``im2col``)
and ``np``. No Cython extension is needed.

* ``conv_forward_fast``/``conv_forward_strides``: ``jc.conv2d(impl="auto")``, jaxconv's
  default (the native C++ kernels on a CPU where they are built, XLA's convolution
  elsewhere);
  ``conv_forward_im2col``: ``impl="im2col"`` (patch matrix + one matmul). Their caches
  are ``(x, w, b, conv_param)`` (read-only copies) carrying the op's residuals, where
  CS231n's also keep the patch matrix; a cache from one works with any backward here.
* ``max_pool_forward_fast``/``_reshape``/``_im2col``: jaxconv has one max-pool
  formulation, and it is the fast one (the winner's offset kept as one byte per
  output), so all return the same numbers; overlapping and non-tiling windows work.
"""
from __future__ import annotations

import numpy as np

from jaxconv.compat.cs231n import layers as _layers
from jaxconv.compat.cs231n.im2col import col2im_indices, get_im2col_indices, im2col_indices

__all__ = [
    "np", "get_im2col_indices", "im2col_indices", "col2im_indices",
    "conv_forward_fast", "conv_backward_fast", "conv_forward_strides", "conv_backward_strides",
    "conv_forward_im2col", "conv_backward_im2col",
    "max_pool_forward_fast", "max_pool_backward_fast",
    "max_pool_forward_reshape", "max_pool_backward_reshape",
    "max_pool_forward_im2col", "max_pool_backward_im2col",
]


def conv_forward_strides(x, w, b, conv_param):
    """As :func:`~jaxconv.compat.cs231n.layers.conv_forward_naive`, computed by jaxconv's
    default convolution (``impl="auto"``); same numbers up to float rounding."""
    return _layers.conv_forward(x, w, b, conv_param, "auto")


def conv_backward_strides(dout, cache):
    """``(dx, dw, db)`` by the hand rule of the impl the forward ran (two convolutions)."""
    return _layers.conv_backward(dout, cache, "auto")


def conv_forward_im2col(x, w, b, conv_param):
    """Convolution as one matmul with the patch matrix (``impl="im2col"``)."""
    return _layers.conv_forward(x, w, b, conv_param, "im2col")


def conv_backward_im2col(dout, cache):
    """``(dx, dw, db)`` by the im2col impl's hand rule (matmuls + col2im)."""
    return _layers.conv_backward(dout, cache, "im2col")


conv_forward_fast = conv_forward_strides      # as in CS231n
conv_backward_fast = conv_backward_strides


def max_pool_forward_fast(x, pool_param):
    """Max pooling, as :func:`~jaxconv.compat.cs231n.layers.max_pool_forward_naive`."""
    return _layers.max_pool_forward_naive(x, pool_param)


def max_pool_backward_fast(dout, cache):
    """The gradient to each window's (first) maximum."""
    return _layers.max_pool_backward_naive(dout, cache)


max_pool_forward_reshape = max_pool_forward_im2col = max_pool_forward_fast
max_pool_backward_reshape = max_pool_backward_im2col = max_pool_backward_fast
