"""CS231n's networks on the hand-derived ops.

A model is a frozen (hashable) dataclass of hyperparameters, so it can be a
static argument of ``jax.jit``; parameters and state are pytrees passed in and
out, never stored:

    >>> import jax, jaxconv
    >>> model = jaxconv.models.FullyConnectedNet([50], input_dim=64, num_classes=10)
    >>> params, state = model.init(jax.random.key(0))
    >>> sorted(params)
    ['W1', 'W2', 'b1', 'b2']
    >>> X, y = jax.numpy.zeros((4, 1, 8, 8)), jax.numpy.zeros(4, int)
    >>> (loss, state), grads = jax.value_and_grad(model.loss, has_aux=True)(params, state, X, y)

Every layer is a ``jaxconv`` op, so ``jax.grad`` of ``loss`` runs the
hand-derived backward rules end to end. The loss is the mean softmax
cross-entropy plus ``0.5 * reg * sum(W**2)`` over the weight matrices
``W1, W2, ...`` (not the biases, gammas or betas), CS231n's convention.

Parameters are CS231n's names: ``W{l}``, ``b{l}`` per affine/conv layer and
``gamma{l}``, ``beta{l}`` for the normalization after hidden layer ``l``.
Batch-norm running statistics live in ``state`` as ``running_mean{l}`` and
``running_var{l}`` (both start at zeros, as in CS231n).
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxconv import _checks
from jaxconv._conv import IMPLS

__all__ = ["FullyConnectedNet", "ThreeLayerConvNet"]

Params = dict[str, jax.Array]


def _ops():
    """The custom_vjp ops (imported late: ``jaxconv/__init__`` imports this module)."""
    import jaxconv

    return jaxconv


class _Classifier:
    """``loss`` and ``scores`` from a model's ``_forward(ops, ...) -> (scores, state)``."""

    def loss(self, params: Params, state: Params, X, y, *, key=None, train: bool = True
             ) -> tuple[jax.Array, Params]:
        """Mean softmax loss plus L2 regularisation, and the new state.

        Args:
          params, state: from :meth:`init` (or a training step).
          X: ``(N, ...)`` inputs of the model's ``input_dim``; cast to the model dtype.
          y: ``(N,)`` integer labels in ``[0, num_classes)``.
          key: PRNG key for dropout; required when dropout is on and ``train``.
          train: static bool; False uses batch-norm running statistics and no dropout.

        Returns:
          ``(loss, new_state)``: a scalar of the model dtype, and the state with
          updated batch-norm running statistics (unchanged when ``train=False``).
          Ready for ``jax.value_and_grad(model.loss, has_aux=True)``.
        """
        return _loss(self, _ops(), params, state, X, y, key=key, train=train)

    def scores(self, params: Params, state: Params, X) -> jax.Array:
        """Class scores ``(N, num_classes)`` in test mode (running statistics, no dropout)."""
        return self._forward(_ops(), params, state, self._input(X), key=None, train=False)[0]

    def _input(self, X):
        X = jnp.asarray(X, self.dtype)
        if X.ndim < 2 or not self._accepts(X.shape[1:]):
            raise ValueError(f"{type(self).__name__}: X must have shape {self._expected()}, "
                             f"got X.shape={tuple(X.shape)}")
        return X

    def _l2(self, params: Params) -> jax.Array:
        weights = [w for name, w in params.items() if name.startswith("W")]
        return 0.5 * self.reg * sum(jnp.sum(w * w) for w in weights)


def _loss(model, ops, params, state, X, y, *, key=None, train=True):
    """``model.loss`` on the op namespace ``ops`` (``jaxconv`` or ``jaxconv.reference``)."""
    scores, new_state = model._forward(ops, params, state, model._input(X), key=key, train=train)
    loss = ops.softmax_loss(scores, y)
    if model.reg != 0:
        loss = loss + model._l2(params).astype(loss.dtype)
    return loss, new_state


@dataclasses.dataclass(frozen=True)
class FullyConnectedNet(_Classifier):
    """``{affine - [batch/layer norm] - relu - [dropout]} x (L - 1) - affine - softmax``.

    Args:
      hidden_dims: sizes of the ``L - 1`` hidden layers (may be empty: softmax
        regression).
      input_dim: number of input features; X ``(N, d1, ..., dk)`` is flattened.
      num_classes: number of classes.
      dropout_keep_ratio: probability of KEEPING a unit, in ``(0, 1]``; 1 means
        no dropout.
      normalization: None, ``"batchnorm"`` or ``"layernorm"``.
      reg: L2 strength, ``>= 0``.
      weight_scale: std of the normal initialisation of the weights.
      dtype: floating dtype of parameters and computation.

    Parameters: ``W{l} (d_{l-1}, d_l)``, ``b{l} (d_l,)``, and for ``l < L`` with
    normalization ``gamma{l}``, ``beta{l} (d_l,)`` (ones and zeros).
    """
    hidden_dims: Sequence[int]
    input_dim: int = 3 * 32 * 32
    num_classes: int = 10
    dropout_keep_ratio: float = 1.0
    normalization: str | None = None
    reg: float = 0.0
    weight_scale: float = 1e-2
    dtype: Any = jnp.float32

    def __post_init__(self):
        name = "FullyConnectedNet"
        if isinstance(self.hidden_dims, (str, bytes)) or not isinstance(
                self.hidden_dims, (Sequence, np.ndarray)):
            raise TypeError(f"{name}: hidden_dims must be a sequence of ints, "
                            f"got {self.hidden_dims!r}")
        object.__setattr__(self, "hidden_dims", tuple(
            _checks.integer(name, f"hidden_dims[{i}]", d, minimum=1)
            for i, d in enumerate(self.hidden_dims)))
        _checks.integer(name, "input_dim", self.input_dim, minimum=1)
        _checks.integer(name, "num_classes", self.num_classes, minimum=1)
        _checks.real(name, "dropout_keep_ratio", self.dropout_keep_ratio, low=0.0, high=1.0,
                     low_open=True)
        _checks.choice(name, "normalization", self.normalization, (None, "batchnorm", "layernorm"))
        _common(self, name)

    @property
    def num_layers(self) -> int:
        return len(self.hidden_dims) + 1

    @property
    def use_dropout(self) -> bool:
        return self.dropout_keep_ratio != 1

    def init(self, key) -> tuple[Params, Params]:
        """``(params, state)``: weights ``weight_scale * N(0, 1)``, zero biases."""
        dims = (self.input_dim, *self.hidden_dims, self.num_classes)
        keys = jax.random.split(key, self.num_layers)
        params, state = {}, {}
        for l in range(1, self.num_layers + 1):
            fan_in, fan_out = dims[l - 1], dims[l]
            params[f"W{l}"] = self.weight_scale * jax.random.normal(
                keys[l - 1], (fan_in, fan_out), self.dtype)
            params[f"b{l}"] = jnp.zeros(fan_out, self.dtype)
            if self.normalization is not None and l < self.num_layers:
                params[f"gamma{l}"] = jnp.ones(fan_out, self.dtype)
                params[f"beta{l}"] = jnp.zeros(fan_out, self.dtype)
            if self.normalization == "batchnorm" and l < self.num_layers:
                state[f"running_mean{l}"] = jnp.zeros(fan_out, self.dtype)
                state[f"running_var{l}"] = jnp.zeros(fan_out, self.dtype)
        return params, state

    def _accepts(self, sample_shape) -> bool:
        return math.prod(sample_shape) == self.input_dim

    def _expected(self) -> str:
        return f"(N, d1, ..., dk) with d1 * ... * dk = input_dim = {self.input_dim}"

    def _forward(self, ops, params, state, X, *, key, train):
        if self.use_dropout and train and key is None:
            raise ValueError(f"FullyConnectedNet.loss: dropout_keep_ratio="
                             f"{self.dropout_keep_ratio} needs key= in train mode")
        new_state = dict(state)
        h = X
        for l in range(1, self.num_layers):
            h = ops.affine(h, params[f"W{l}"], params[f"b{l}"])
            if self.normalization == "batchnorm":
                h, new_state[f"running_mean{l}"], new_state[f"running_var{l}"] = ops.batch_norm(
                    h, params[f"gamma{l}"], params[f"beta{l}"], state[f"running_mean{l}"],
                    state[f"running_var{l}"], train=train)
            elif self.normalization == "layernorm":
                h = ops.layer_norm(h, params[f"gamma{l}"], params[f"beta{l}"])
            h = ops.relu(h)
            if self.use_dropout and train:
                # One key per layer, drawn for the whole (global) batch: the masks
                # do not depend on how the batch is sharded across devices.
                h = ops.dropout(h, jax.random.fold_in(key, l),
                                keep_prob=float(self.dropout_keep_ratio), train=True)
        L = self.num_layers
        return ops.affine(h, params[f"W{L}"], params[f"b{L}"]), new_state


@dataclasses.dataclass(frozen=True)
class ThreeLayerConvNet(_Classifier):
    """``conv - relu - 2x2 max pool - affine - relu - affine - softmax``.

    Args:
      input_dim: ``(C, H, W)`` of one image (NCHW), ``H, W >= 2``.
      num_filters: ``F``, filters of the convolution.
      filter_size: odd ``K``; the convolution (stride 1, pad ``(K - 1) // 2``)
        keeps the spatial size, and the pool halves it (rounding down).
      hidden_dim: width of the hidden affine layer.
      num_classes: number of classes.
      weight_scale: std of the normal initialisation of the weights.
      reg: L2 strength, ``>= 0``.
      dtype: floating dtype of parameters and computation.
      conv_impl: ``"auto"`` (native C++ kernels on the CPU when built, else XLA),
        ``"native"``, ``"xla"``, ``"im2col"`` or ``"naive"``, passed to ``jaxconv.conv2d``.

    Parameters: ``W1 (F, C, K, K)``, ``b1 (F,)``,
    ``W2 (F * (H // 2) * (W // 2), hidden_dim)``, ``b2 (hidden_dim,)``,
    ``W3 (hidden_dim, num_classes)``, ``b3 (num_classes,)``; the state is empty.
    """
    input_dim: tuple[int, int, int] = (3, 32, 32)
    num_filters: int = 32
    filter_size: int = 7
    hidden_dim: int = 100
    num_classes: int = 10
    weight_scale: float = 1e-3
    reg: float = 0.0
    dtype: Any = jnp.float32
    conv_impl: str = "auto"

    def __post_init__(self):
        name = "ThreeLayerConvNet"
        dims = self.input_dim
        if not isinstance(dims, (tuple, list)) or len(dims) != 3:
            raise TypeError(f"{name}: input_dim must be a (C, H, W) tuple, got {dims!r}")
        dims = tuple(_checks.integer(name, f"input_dim[{i}]", d, minimum=1)
                     for i, d in enumerate(dims))
        if min(dims[1:]) < 2:
            raise ValueError(f"{name}: input_dim {dims} is too small for the 2x2 pool "
                             f"(H and W must be >= 2)")
        object.__setattr__(self, "input_dim", dims)
        _checks.integer(name, "num_filters", self.num_filters, minimum=1)
        if _checks.integer(name, "filter_size", self.filter_size, minimum=1) % 2 == 0:
            raise ValueError(f"{name}: filter_size must be odd so that padding "
                             f"(filter_size - 1) // 2 keeps the spatial size, "
                             f"got {self.filter_size}")
        _checks.integer(name, "hidden_dim", self.hidden_dim, minimum=1)
        _checks.integer(name, "num_classes", self.num_classes, minimum=1)
        _checks.choice(name, "conv_impl", self.conv_impl, IMPLS)
        _common(self, name)

    def init(self, key) -> tuple[Params, Params]:
        """``(params, state)``: weights ``weight_scale * N(0, 1)``, zero biases, no state."""
        C, H, W = self.input_dim
        F, K = self.num_filters, self.filter_size
        k1, k2, k3 = jax.random.split(key, 3)
        normal = lambda k, shape: self.weight_scale * jax.random.normal(k, shape, self.dtype)
        params = {
            "W1": normal(k1, (F, C, K, K)), "b1": jnp.zeros(F, self.dtype),
            "W2": normal(k2, (F * (H // 2) * (W // 2), self.hidden_dim)),
            "b2": jnp.zeros(self.hidden_dim, self.dtype),
            "W3": normal(k3, (self.hidden_dim, self.num_classes)),
            "b3": jnp.zeros(self.num_classes, self.dtype),
        }
        return params, {}

    def _accepts(self, sample_shape) -> bool:
        return tuple(sample_shape) == self.input_dim

    def _expected(self) -> str:
        return "(N, {}, {}, {})".format(*self.input_dim)

    def _forward(self, ops, params, state, X, *, key, train):
        del key, train  # no dropout or batch norm in this model
        h = ops.conv2d(X, params["W1"], params["b1"], stride=1,
                       pad=(self.filter_size - 1) // 2, impl=self.conv_impl)
        h = ops.max_pool2d(ops.relu(h), pool=2, stride=2)
        h = ops.relu(ops.affine(h, params["W2"], params["b2"]))
        return ops.affine(h, params["W3"], params["b3"]), dict(state)


def _common(model, name: str) -> None:
    """reg, weight_scale and dtype, shared by both models; dtype becomes a np.dtype."""
    _checks.real(name, "reg", model.reg, low=0.0)
    _checks.real(name, "weight_scale", model.weight_scale, low=0.0, low_open=True)
    try:
        dtype = np.dtype(model.dtype)
    except TypeError:
        dtype = None
    if dtype is None or not jnp.issubdtype(dtype, jnp.floating):
        raise TypeError(f"{name}: dtype must be a floating dtype, got {model.dtype!r}")
    object.__setattr__(model, "dtype", dtype)
