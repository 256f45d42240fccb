"""jaxconv: the classic CNN layers in JAX, with hand-derived, proven backwards.

Every op is a pure function whose backward is an explicit ``jax.custom_vjp`` rule;
``jaxconv.reference`` holds the autodiff twin of each, and ``jaxconv.gradcheck``
the tools that prove the two agree. Forward-mode differentiation (``jax.jvp``,
``jax.jacfwd``) is not supported by JAX through a ``custom_vjp``: use the
``jaxconv.reference`` twins for it.
"""
from jaxconv import gradcheck, reference
from jaxconv._adaptive_pool import (adaptive_avg_pool, adaptive_avg_pool1d, adaptive_avg_pool2d,
                                    adaptive_avg_pool3d, adaptive_max_pool, adaptive_max_pool1d,
                                    adaptive_max_pool2d, adaptive_max_pool3d)
from jaxconv._conv import (conv, conv1d, conv2d, conv3d, conv_transpose, conv_transpose1d,
                           conv_transpose2d, conv_transpose3d)
from jaxconv._cpu_jit import conv_compiler_options, jit
from jaxconv._dense import affine, relu
from jaxconv._dropout import dropout
from jaxconv._loss import softmax_loss, svm_loss
from jaxconv._norm import batch_norm, group_norm, layer_norm
from jaxconv._patches import col2im, im2col
from jaxconv._pool import (avg_pool, avg_pool1d, avg_pool2d, avg_pool3d, max_pool, max_pool1d,
                           max_pool2d, max_pool3d)
from jaxconv import data, models, optim  # training: ops -> models -> solver
from jaxconv.solver import Solver

__version__ = "0.1.0"

__all__ = [
    # ops (each a custom_vjp op with its twin in jaxconv.reference)
    "affine", "relu", "batch_norm", "layer_norm", "group_norm", "dropout",
    "softmax_loss", "svm_loss",
    "conv", "conv1d", "conv2d", "conv3d",
    "conv_transpose", "conv_transpose1d", "conv_transpose2d", "conv_transpose3d",
    "max_pool", "max_pool1d", "max_pool2d", "max_pool3d",
    "avg_pool", "avg_pool1d", "avg_pool2d", "avg_pool3d",
    "adaptive_avg_pool", "adaptive_avg_pool1d", "adaptive_avg_pool2d", "adaptive_avg_pool3d",
    "adaptive_max_pool", "adaptive_max_pool1d", "adaptive_max_pool2d", "adaptive_max_pool3d",
    "im2col", "col2im",
    # tools and training
    "gradcheck", "reference", "conv_compiler_options", "jit",
    "Solver", "data", "models", "optim",
]
