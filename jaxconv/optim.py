"""CS231n's update rules as ``optax.GradientTransformation``\\ s.

Each rule is a chain of optax's own moment transforms and one learning-rate
transform, :func:`scale_by_learning_rate`, whose state also carries a multiplier
``scale``: it is what :class:`jaxconv.Solver` multiplies by ``lr_decay`` at the
end of every epoch (CS231n's ``config["learning_rate"] *= lr_decay``), so the
decay lands exactly where CS231n's learning rate sits in each formula.

``learning_rate`` may be a float or an optax schedule (``count -> lr``); the
schedule is evaluated at the number of updates done so far (0 for the first).

Example::

    >>> import jax.numpy as jnp
    >>> from jaxconv import optim
    >>> opt = optim.sgd_momentum(0.1, momentum=0.9)
    >>> w = {"W1": jnp.ones(2)}
    >>> state = opt.init(w)
    >>> updates, state = opt.update({"W1": jnp.ones(2)}, state, w)
    >>> updates["W1"]            # v = 0.9 * 0 - 0.1 * 1
    Array([-0.1, -0.1], dtype=float32)

Any optax optimizer also works with the Solver.
"""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax
from optax import GradientTransformation

from jaxconv import _checks

__all__ = ["ScaleByLearningRateState", "adam", "decay_learning_rate", "learning_rate_states",
           "rmsprop", "scale_by_learning_rate", "sgd", "sgd_momentum"]


class ScaleByLearningRateState(NamedTuple):
    """State of :func:`scale_by_learning_rate`.

    Attributes:
      count: int32 scalar, the number of updates done (the schedule's argument).
      scale: float32 scalar multiplying the learning rate (1 until a Solver
        with ``lr_decay`` changes it).
    """
    count: jax.Array
    scale: jax.Array


def scale_by_learning_rate(learning_rate: optax.ScalarOrSchedule) -> GradientTransformation:
    """Multiply updates by ``-learning_rate * scale``.

    Like ``optax.scale_by_learning_rate``, plus the ``scale`` multiplier in the
    state (see :class:`ScaleByLearningRateState`). The step size is cast to each
    update's dtype, so float32 parameters get float32 updates.
    """
    _check_rate("learning_rate", learning_rate)

    def init_fn(params):
        del params
        return ScaleByLearningRateState(count=jnp.zeros([], jnp.int32),
                                        scale=jnp.ones([], jnp.float32))

    def update_fn(updates, state, params=None):
        del params
        lr = learning_rate(state.count) if callable(learning_rate) else learning_rate

        def step(g):
            return -(jnp.asarray(lr, g.dtype) * state.scale.astype(g.dtype)) * g

        updates = jax.tree.map(step, updates)
        return updates, ScaleByLearningRateState(optax.safe_increment(state.count), state.scale)

    return GradientTransformation(init_fn, update_fn)


def sgd(learning_rate: optax.ScalarOrSchedule) -> GradientTransformation:
    r"""Vanilla stochastic gradient descent, CS231n's ``sgd``.

    .. math:: w \leftarrow w - \mathrm{lr}\, dw

    The same as ``optax.sgd(learning_rate)`` and PyTorch's ``SGD``.
    State: ``ScaleByLearningRateState``.
    """
    return scale_by_learning_rate(learning_rate)


def sgd_momentum(learning_rate: optax.ScalarOrSchedule, momentum: float = 0.9
                 ) -> GradientTransformation:
    r"""SGD with momentum, CS231n's ``sgd_momentum``.

    .. math::
        v \leftarrow \mu v - \mathrm{lr}_t\, dw, \qquad w \leftarrow w + v

    Built as ``chain(scale_by_learning_rate, optax.trace(momentum))``: the
    learning rate scales the gradient BEFORE it enters the velocity, so the
    velocity ``v`` is CS231n's (``state[1].trace``).

    .. warning::
        ``optax.sgd(lr, momentum)`` and PyTorch's ``SGD(momentum=...)`` keep
        ``v = mu * v + dw`` and step ``w -= lr_t * v``: the same only while the
        learning rate is constant. With a schedule or ``lr_decay`` CS231n's
        velocity remembers the old learning rates and theirs does not.

    State: ``(ScaleByLearningRateState, optax.TraceState(trace=v))``.
    """
    _check_unit("sgd_momentum", "momentum", momentum)
    return optax.chain(scale_by_learning_rate(learning_rate), optax.trace(decay=momentum))


def rmsprop(learning_rate: optax.ScalarOrSchedule, decay_rate: float = 0.99,
            epsilon: float = 1e-8) -> GradientTransformation:
    r"""RMSProp, CS231n's ``rmsprop``.

    .. math::
        c \leftarrow \rho c + (1 - \rho)\, dw^2, \qquad
        w \leftarrow w - \mathrm{lr}\, \frac{dw}{\sqrt{c} + \epsilon}

    with the cache ``c`` starting at zero.

    .. warning::
        ``optax.rmsprop`` defaults to ``decay=0.9`` and ``eps`` INSIDE the square
        root, ``sqrt(c + eps)``; CS231n (and PyTorch's ``RMSprop``, ``alpha=0.99``)
        use ``decay_rate=0.99`` and ``sqrt(c) + eps``. While the cache is tiny
        the two differ by orders of magnitude. This is
        ``optax.scale_by_rms(decay_rate, epsilon, eps_in_sqrt=False)``.

    State: ``(optax.ScaleByRmsState(nu=c), ScaleByLearningRateState)``.
    """
    _check_unit("rmsprop", "decay_rate", decay_rate)
    _check_rate("epsilon", epsilon, allow_zero=True)
    return optax.chain(
        optax.scale_by_rms(decay=decay_rate, eps=epsilon, initial_scale=0.0, eps_in_sqrt=False),
        scale_by_learning_rate(learning_rate))


def adam(learning_rate: optax.ScalarOrSchedule, beta1: float = 0.9, beta2: float = 0.999,
         epsilon: float = 1e-8) -> GradientTransformation:
    r"""Adam, CS231n's ``adam``: ``t`` incremented first, bias-corrected moments,
    ``eps`` outside the square root.

    .. math::
        t \leftarrow t + 1, \quad
        m \leftarrow \beta_1 m + (1 - \beta_1) dw, \quad
        v \leftarrow \beta_2 v + (1 - \beta_2) dw^2, \\
        w \leftarrow w - \mathrm{lr}\,
            \frac{m / (1 - \beta_1^t)}{\sqrt{v / (1 - \beta_2^t)} + \epsilon}

    Exactly ``optax.adam`` (``optax.scale_by_adam`` with ``eps_root=0``) and
    PyTorch's ``Adam`` without weight decay; the only addition is the
    learning-rate ``scale`` the Solver's ``lr_decay`` uses.

    State: ``(optax.ScaleByAdamState(count=t, mu=m, nu=v), ScaleByLearningRateState)``.
    """
    _check_unit("adam", "beta1", beta1)
    _check_unit("adam", "beta2", beta2)
    _check_rate("epsilon", epsilon, allow_zero=True)
    return optax.chain(optax.scale_by_adam(b1=beta1, b2=beta2, eps=epsilon, eps_root=0.0),
                       scale_by_learning_rate(learning_rate))


def _is_lr_state(node) -> bool:
    return isinstance(node, ScaleByLearningRateState)


def learning_rate_states(opt_state) -> list[ScaleByLearningRateState]:
    """Every :class:`ScaleByLearningRateState` in an optimizer state (none for
    optimizers not built on :func:`scale_by_learning_rate`)."""
    return [n for n in jax.tree.leaves(opt_state, is_leaf=_is_lr_state) if _is_lr_state(n)]


@jax.jit
def decay_learning_rate(opt_state, factor):
    """``opt_state`` with the ``scale`` of every :class:`ScaleByLearningRateState`
    multiplied by ``factor``: CS231n's ``config["learning_rate"] *= lr_decay``,
    at the place each rule uses its learning rate (what the Solver's
    ``lr_decay`` does at the end of every epoch)."""
    return jax.tree.map(
        lambda n: n._replace(scale=n.scale * jnp.asarray(factor, n.scale.dtype))
        if _is_lr_state(n) else n, opt_state, is_leaf=_is_lr_state)


def _check_rate(name: str, value, *, allow_zero: bool = False) -> None:
    """A finite positive (or, with ``allow_zero``, non-negative) number, or a schedule."""
    if not callable(value):
        _checks.finite_real("optim", name, value, low=0.0, low_open=not allow_zero)


def _check_unit(op: str, name: str, value) -> None:
    _checks.real(op, name, value, low=0.0, high=1.0, high_open=True)
