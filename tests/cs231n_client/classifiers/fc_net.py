from builtins import range
from builtins import object
import numpy as np

# The assignment: from ..layers import * / from ..layer_utils import *
from jaxconv.compat.cs231n.layers import *
from jaxconv.compat.cs231n.layer_utils import *


class TwoLayerNet(object):
    """
    A two-layer fully-connected neural network with ReLU nonlinearity and
    softmax loss: affine - relu - affine - softmax.
    """

    def __init__(self, input_dim=3 * 32 * 32, hidden_dim=100, num_classes=10,
                 weight_scale=1e-3, reg=0.0):
        self.params = {}
        self.reg = reg
        self.params["W1"] = weight_scale * np.random.randn(input_dim, hidden_dim)
        self.params["b1"] = np.zeros(hidden_dim)
        self.params["W2"] = weight_scale * np.random.randn(hidden_dim, num_classes)
        self.params["b2"] = np.zeros(num_classes)

    def loss(self, X, y=None):
        W1, b1, W2, b2 = (self.params[k] for k in ("W1", "b1", "W2", "b2"))
        hidden, cache1 = affine_relu_forward(X, W1, b1)
        scores, cache2 = affine_forward(hidden, W2, b2)
        if y is None:
            return scores

        grads = {}
        loss, dscores = softmax_loss(scores, y)
        loss += 0.5 * self.reg * (np.sum(W1 * W1) + np.sum(W2 * W2))
        dhidden, grads["W2"], grads["b2"] = affine_backward(dscores, cache2)
        _, grads["W1"], grads["b1"] = affine_relu_backward(dhidden, cache1)
        grads["W1"] += self.reg * W1
        grads["W2"] += self.reg * W2
        return loss, grads


class FullyConnectedNet(object):
    """
    A multi-layer fully-connected neural network:

    {affine - [batch/layer norm] - relu - [dropout]} x (L - 1) - affine - softmax
    """

    def __init__(self, hidden_dims, input_dim=3 * 32 * 32, num_classes=10,
                 dropout_keep_ratio=1, normalization=None, reg=0.0,
                 weight_scale=1e-2, dtype=np.float32, seed=None):
        self.normalization = normalization
        self.use_dropout = dropout_keep_ratio != 1
        self.reg = reg
        self.num_layers = 1 + len(hidden_dims)
        self.dtype = dtype
        self.params = {}

        dims = [input_dim] + list(hidden_dims) + [num_classes]
        for i in range(self.num_layers):
            self.params["W%d" % (i + 1)] = weight_scale * np.random.randn(dims[i], dims[i + 1])
            self.params["b%d" % (i + 1)] = np.zeros(dims[i + 1])
            if self.normalization and i < self.num_layers - 1:
                self.params["gamma%d" % (i + 1)] = np.ones(dims[i + 1])
                self.params["beta%d" % (i + 1)] = np.zeros(dims[i + 1])

        self.dropout_param = {}
        if self.use_dropout:
            self.dropout_param = {"mode": "train", "p": dropout_keep_ratio}
            if seed is not None:
                self.dropout_param["seed"] = seed

        self.bn_params = []
        if self.normalization == "batchnorm":
            self.bn_params = [{"mode": "train"} for i in range(self.num_layers - 1)]
        if self.normalization == "layernorm":
            self.bn_params = [{} for i in range(self.num_layers - 1)]

        for k, v in self.params.items():
            self.params[k] = v.astype(dtype)

    def loss(self, X, y=None):
        X = X.astype(self.dtype)
        mode = "test" if y is None else "train"

        if self.use_dropout:
            self.dropout_param["mode"] = mode
        if self.normalization == "batchnorm":
            for bn_param in self.bn_params:
                bn_param["mode"] = mode

        caches = []
        out = X
        for i in range(1, self.num_layers):
            W, b = self.params["W%d" % i], self.params["b%d" % i]
            if self.normalization == "batchnorm":
                out, cache = affine_bn_relu_forward(out, W, b, self.params["gamma%d" % i],
                                                    self.params["beta%d" % i], self.bn_params[i - 1])
            elif self.normalization == "layernorm":
                out, cache = affine_ln_relu_forward(out, W, b, self.params["gamma%d" % i],
                                                    self.params["beta%d" % i], self.bn_params[i - 1])
            else:
                out, cache = affine_relu_forward(out, W, b)
            caches.append(cache)
            if self.use_dropout:
                out, cache = dropout_forward(out, self.dropout_param)
                caches.append(cache)
        L = self.num_layers
        scores, cache = affine_forward(out, self.params["W%d" % L], self.params["b%d" % L])
        caches.append(cache)

        if mode == "test":
            return scores

        loss, grads = 0.0, {}
        loss, dout = softmax_loss(scores, y)
        for i in range(1, L + 1):
            W = self.params["W%d" % i]
            loss += 0.5 * self.reg * np.sum(W * W)

        dout, grads["W%d" % L], grads["b%d" % L] = affine_backward(dout, caches.pop())
        grads["W%d" % L] += self.reg * self.params["W%d" % L]
        for i in range(L - 1, 0, -1):
            if self.use_dropout:
                dout = dropout_backward(dout, caches.pop())
            if self.normalization == "batchnorm":
                dout, dW, db, dgamma, dbeta = affine_bn_relu_backward(dout, caches.pop())
            elif self.normalization == "layernorm":
                dout, dW, db, dgamma, dbeta = affine_ln_relu_backward(dout, caches.pop())
            else:
                dout, dW, db = affine_relu_backward(dout, caches.pop())
            if self.normalization:
                grads["gamma%d" % i], grads["beta%d" % i] = dgamma, dbeta
            grads["W%d" % i] = dW + self.reg * self.params["W%d" % i]
            grads["b%d" % i] = db

        return loss, grads
