"""CS231n's layers, update rules and gradient-check helpers, computed by jaxconv.

A drop-in for CS231n assignment 2's modules, mirrored one for one, each exporting what
the original's star import exports (``np`` included, as CS231n's modules have no
``__all__``), with CS231n's names, signatures, caches and dict conventions, NumPy in
and NumPy out:

=====================================  ====================================================
``jaxconv.compat.cs231n.layers``       affine, relu, naive conv/pool, batch/layer/group
                                       norm, dropout, svm_loss, softmax_loss
``...cs231n.fast_layers``              conv_forward_fast/strides/im2col, max_pool_*_fast
``...cs231n.layer_utils``              affine_relu, affine_bn_relu, conv_relu_pool, ...
``...cs231n.optim``                    sgd (in place), sgd_momentum, rmsprop, adam
``...cs231n.gradient_check``           eval_numerical_gradient(_array), grad_check_sparse
``...cs231n.im2col``                   get_im2col_indices, im2col_indices, col2im_indices
=====================================  ====================================================

This package itself is the flat namespace (``from jaxconv.compat.cs231n import *``
brings the names of ``__all__`` below, as before the split). To run an assignment's
code unchanged, alias the modules once (:func:`install`)::

    import jaxconv.compat.cs231n
    jaxconv.compat.cs231n.install()      # cs231n.layers, cs231n.optim, ... -> jaxconv
    from cs231n.classifiers.cnn import ThreeLayerConvNet   # the assignment's own file
    from cs231n.solver import Solver                         # the assignment's own file

How it is computed: every forward is one jit-compiled call of a jaxconv op that keeps
the op's custom_vjp residuals in the cache; every backward is one call that applies
the op's hand-derived rule to them. Update rules are one step of the matching
:mod:`jaxconv.optim` transformation. float64 runs in float64 without touching the
global ``jax_enable_x64`` setting (see :mod:`jaxconv.compat._bridge`).
"""
from __future__ import annotations

import importlib.util
import sys
import types

from jaxconv.compat._bridge import synchronous_cpu_dispatch
from jaxconv.compat.cs231n import (fast_layers, gradient_check, im2col, layer_utils, layers,
                                   optim)
from jaxconv.compat.cs231n.fast_layers import *  # noqa: F401,F403
from jaxconv.compat.cs231n.gradient_check import *  # noqa: F401,F403
from jaxconv.compat.cs231n.gradient_check import rel_error
from jaxconv.compat.cs231n.im2col import *  # noqa: F401,F403
from jaxconv.compat.cs231n.layer_utils import *  # noqa: F401,F403
from jaxconv.compat.cs231n.layers import *  # noqa: F401,F403
from jaxconv.compat.cs231n.optim import *  # noqa: F401,F403

MODULES = {"layers": layers, "fast_layers": fast_layers, "layer_utils": layer_utils,
           "optim": optim, "gradient_check": gradient_check, "im2col": im2col}

__all__ = [
    "affine_forward", "affine_backward", "relu_forward", "relu_backward",
    "conv_forward_naive", "conv_backward_naive", "conv_forward_fast", "conv_backward_fast",
    "max_pool_forward_naive", "max_pool_backward_naive",
    "max_pool_forward_fast", "max_pool_backward_fast",
    "batchnorm_forward", "batchnorm_backward", "batchnorm_backward_alt",
    "spatial_batchnorm_forward", "spatial_batchnorm_backward",
    "layernorm_forward", "layernorm_backward",
    "spatial_groupnorm_forward", "spatial_groupnorm_backward",
    "dropout_forward", "dropout_backward", "svm_loss", "softmax_loss",
    "sgd", "sgd_momentum", "rmsprop", "adam",
    "im2col_indices", "col2im_indices",
    "rel_error", "eval_numerical_gradient", "eval_numerical_gradient_array",
]


def install(package: str = "cs231n", *, sync_dispatch: bool = True) -> None:
    """Make ``package.layers``, ``.fast_layers``, ``.layer_utils``, ``.optim``,
    ``.gradient_check`` and ``.im2col`` these modules, for every later import, and
    (``sync_dispatch``) run this process's JAX CPU computations on the calling thread.

    Only those six names are aliased (in ``sys.modules``); the rest of an assignment's
    package (``classifiers``, ``solver``, ``data_utils``) stays the assignment's own.
    Without such a package on the path an empty one is registered. Equivalent to
    ``sys.modules["cs231n.layers"] = jaxconv.compat.cs231n.layers`` and so on, plus
    :func:`jaxconv.compat.synchronous_cpu_dispatch` (see there: every compat call waits
    for its result, so JAX's asynchronous CPU dispatch only costs it two thread
    switches a call); ``sync_dispatch=False`` leaves JAX's setting alone.
    """
    if sync_dispatch:
        synchronous_cpu_dispatch()
    parent = sys.modules.get(package)
    if parent is None and importlib.util.find_spec(package) is None:
        parent = sys.modules[package] = types.ModuleType(package)
        parent.__path__ = []
    for name, module in MODULES.items():
        sys.modules[f"{package}.{name}"] = module
        if parent is not None:
            setattr(parent, name, module)
