"""CS231n's ``cs231n/gradient_check.py`` (plain NumPy, as CS231n's), plus ``rel_error``.

``from jaxconv.compat.cs231n.gradient_check import *`` brings CS231n's star exports:
``eval_numerical_gradient``, ``eval_numerical_gradient_array``,
``eval_numerical_gradient_blobs``, ``eval_numerical_gradient_net``,
``grad_check_sparse``, ``np`` and ``randrange``. (``rel_error`` is defined in the
notebooks; it is here as an attribute and in the flat namespace.)

Each perturbs ``x`` IN PLACE and calls ``f(x)`` on the very same array, so a lambda
that ignores its argument and reads the array from elsewhere still works.
"""
from __future__ import annotations

from random import randrange

import numpy as np

__all__ = ["np", "randrange", "eval_numerical_gradient", "eval_numerical_gradient_array",
           "eval_numerical_gradient_blobs", "eval_numerical_gradient_net", "grad_check_sparse"]


def rel_error(x, y):
    """``max(|x - y| / max(1e-8, |x| + |y|))``, with NumPy broadcasting as in CS231n.

    (``jaxconv.gradcheck.rel_error`` is the same measure but insists on equal shapes.)
    """
    return np.max(np.abs(x - y) / (np.maximum(1e-8, np.abs(x) + np.abs(y))))


def _centered_differences(x, h, value, reduce=lambda d: d, on_slope=None):
    """``reduce(value() at x + h e_i - value() at x - h e_i) / 2h`` for every ``i``.

    ``x`` is perturbed IN PLACE, one element at a time, and restored, as CS231n's
    gradient_check does: ``value`` reads the very same array. The difference is
    taken before ``reduce`` (as CS231n does), which keeps cancellation small.
    """
    grad = np.zeros_like(x)
    it = np.nditer(x, flags=["multi_index"], op_flags=["readwrite"])
    while not it.finished:
        ix = it.multi_index
        oldval = x[ix]
        x[ix] = oldval + h
        pos = np.copy(value())
        x[ix] = oldval - h
        neg = np.copy(value())
        x[ix] = oldval
        grad[ix] = reduce(pos - neg) / (2 * h)
        if on_slope is not None:
            on_slope(ix, grad[ix])
        it.iternext()
    return grad


def eval_numerical_gradient(f, x, verbose=True, h=0.00001):
    """Centered-difference gradient of a scalar ``f`` at ``x``.

    ``x`` is perturbed IN PLACE, one element at a time, and restored; ``f(x)`` is
    called on the very same array, so ``f`` may also read it from elsewhere.
    With ``verbose`` each index and its slope are printed, as CS231n does.
    """
    f(x)  # CS231n evaluates f once at the original point first
    return _centered_differences(x, h, lambda: f(x), on_slope=print if verbose else None)


def eval_numerical_gradient_array(f, x, df, h=1e-5):
    """Centered-difference ``sum(f(x) * df)`` gradient of an array-valued ``f``.

    ``x`` is perturbed IN PLACE and restored, as in :func:`eval_numerical_gradient`.
    """
    return _centered_differences(x, h, lambda: f(x), reduce=lambda d: np.sum(d * df))


def eval_numerical_gradient_blobs(f, inputs, output, h=1e-5):
    """Numerical gradients for blobs (objects with ``.vals`` and ``.diffs``): ``f(*inputs,
    output)`` writes ``output.vals``; returns one array per input blob, the centered
    difference of ``sum(output.vals * output.diffs)``."""
    def one(blob):
        def value():
            f(*(tuple(inputs) + (output,)))
            return output.vals
        return _centered_differences(blob.vals, h, value,
                                     reduce=lambda d: np.sum(d * output.diffs))
    return [one(blob) for blob in inputs]


def eval_numerical_gradient_net(net, inputs, output, h=1e-5):
    """:func:`eval_numerical_gradient_blobs` of ``net.forward()``."""
    return eval_numerical_gradient_blobs(lambda *args: net.forward(), inputs, output, h=h)


def grad_check_sparse(f, x, analytic_grad, num_checks=10, h=1e-5):
    """Compare ``analytic_grad`` with centered differences of ``f`` at ``num_checks``
    random elements of ``x`` (Python's ``random``), printing each, as CS231n does."""
    for _ in range(num_checks):
        ix = tuple(randrange(m) for m in x.shape)
        oldval = x[ix]
        x[ix] = oldval + h
        fxph = f(x)
        x[ix] = oldval - h
        fxmh = f(x)
        x[ix] = oldval
        numerical = (fxph - fxmh) / (2 * h)
        analytic = analytic_grad[ix]
        error = abs(numerical - analytic) / (abs(numerical) + abs(analytic))
        print("numerical: %f analytic: %f, relative error: %e" % (numerical, analytic, error))
