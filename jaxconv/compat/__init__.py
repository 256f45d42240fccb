"""Drop-in versions of the seeds' NumPy APIs, computed by the jaxconv ops.

* :mod:`jaxconv.compat.cs231n`: CS231n's layers, fast layers, update rules,
  ``im2col_indices``/``col2im_indices`` and gradient-check helpers;
* :mod:`jaxconv.compat.dlai`: deeplearning.ai's NHWC ``conv_forward``/``pool_forward``;
* :mod:`jaxconv.compat.im2col_net`: the positional im2col ``conv_forward``.

Same names, signatures, caches and dict conventions as the originals; NumPy in,
NumPy out. Forward functions call the jaxconv ops; backward functions pull the
upstream gradient through the ops' hand-derived ``custom_vjp`` rules (``jax.vjp``
at the cached inputs), so there is one implementation of every formula.

dtypes: the result has the inputs' common dtype (NumPy promotion; integer inputs
become float64). float64 inputs are computed in float64: the call runs inside
``jax.enable_x64(True)``, a thread-local context manager, so the global
``jax_enable_x64`` setting seen by the rest of the program is never changed.
"""
from jaxconv.compat import cs231n, dlai, im2col_net

__all__ = ["cs231n", "dlai", "im2col_net"]
