"""Drop-in versions of the seeds' NumPy APIs, computed by the jaxconv ops.

* :mod:`jaxconv.compat.cs231n`: CS231n's assignment modules mirrored one for one
  (``layers``, ``fast_layers``, ``layer_utils``, ``optim``, ``gradient_check``,
  ``im2col``) and their flat namespace; ``install()`` aliases them as ``cs231n.*``;
* :mod:`jaxconv.compat.dlai`: deeplearning.ai's NHWC ``conv_forward``/``pool_forward``;
* :mod:`jaxconv.compat.im2col_net`: the positional im2col ``conv_forward``.

Same names, signatures, caches and dict conventions as the originals; NumPy in,
NumPy out. A forward is one jit-compiled call of a jaxconv op that keeps the op's
``custom_vjp`` residuals in the cache (with read-only copies of the inputs); the backward
applies the op's hand-derived rule to them, so there is one implementation of every
formula (see :mod:`jaxconv.compat._bridge`).

dtypes: the result has the inputs' common dtype (NumPy promotion; integer inputs
become float64). float64 inputs are computed in float64: the call runs inside
``jax.enable_x64(True)``, a thread-local context manager, so the global
``jax_enable_x64`` setting seen by the rest of the program is never changed.
"""
from jaxconv.compat import cs231n, dlai, im2col_net
from jaxconv.compat._bridge import synchronous_cpu_dispatch

__all__ = ["cs231n", "dlai", "im2col_net", "synchronous_cpu_dispatch"]
