# The assignment's own NumPy gradient checker (it does not come from jaxconv).
from __future__ import print_function
from builtins import range

import numpy as np
from random import randrange


def eval_numerical_gradient(f, x, verbose=True, h=0.00001):
    """
    Centered-difference gradient of a scalar function f at the numpy array x.
    x is changed in place one entry at a time and restored afterwards.
    """
    fx = f(x)  # the value at the original point
    grad = np.zeros_like(x)
    it = np.nditer(x, flags=["multi_index"], op_flags=["readwrite"])
    while not it.finished:
        ix = it.multi_index
        saved = x[ix]
        x[ix] = saved + h
        f_plus = f(x)
        x[ix] = saved - h
        f_minus = f(x)
        x[ix] = saved
        grad[ix] = (f_plus - f_minus) / (2 * h)
        if verbose:
            print(ix, grad[ix])
        it.iternext()
    return grad


def eval_numerical_gradient_array(f, x, df, h=1e-5):
    """
    Centered-difference gradient of sum(f(x) * df) for an array-valued f.
    """
    grad = np.zeros_like(x)
    it = np.nditer(x, flags=["multi_index"], op_flags=["readwrite"])
    while not it.finished:
        ix = it.multi_index
        saved = x[ix]
        x[ix] = saved + h
        plus = f(x).copy()
        x[ix] = saved - h
        minus = f(x).copy()
        x[ix] = saved
        grad[ix] = np.sum((plus - minus) * df) / (2 * h)
        it.iternext()
    return grad
