"""The op registry: what the package knows about each public op, declared once.

``jaxconv check``, ``jaxconv bench``, :func:`jaxconv.gradcheck.compare` and the
generic tests (custom vs twin vs numerical, transforms, validation, PyTorch)
iterate :func:`ops`; none of them keeps a list of ops of its own.

Declaring an op
---------------
Each op family has a module ``jaxconv/_<family>_cases.py`` beside its op module
(``_dense.py`` -> ``_dense_cases.py``) that calls :func:`declare` once per public
op. Every ``_*_cases.py`` module of the package is found and imported by
:func:`ops` (nothing else lists them), so a new family needs no edit here::

    from jaxconv import _dense, reference
    from jaxconv._registry import Bench, Case, Invalid, declare, normal

    declare(
        _dense.affine, reference.affine,        # the op and its autodiff twin
        grads=("x", "w", "b"),                  # arguments that get gradients
        cases=lambda: [Case("x (3, 2, 2)",      # jaxconv check cases, float64
                            (normal(1, 3, 2, 2), normal(2, 4, 5), normal(3, 5)))],
        bench=lambda quick: [Bench("affine", (normal(1, 8, 64), normal(2, 64, 32),
                                              normal(3, 32)))],
        torch=lambda torch, x, w, b: x.reshape(x.shape[0], -1) @ w + b,
        invalid=lambda: [Invalid("w-rank", (np.ones((4, 3)), np.ones((3, 2, 1)), np.ones(2)),
                                 {}, ValueError, r"affine: w must be 2-D")],
    )

The fields (see :class:`OpSpec`):

* ``op``, ``twin``: the public op and its ``jaxconv.reference`` twin, with
  identical signatures (a test compares them). The name is ``op.__name__``.
* ``arrays``: the names of the positional ARRAY arguments, in order. Default: every
  positional parameter of ``op``. Positional parameters not listed (im2col's
  ``kh, kw``) are static: passed through as they are, never traced.
* ``grads``: the array arguments that get gradients (not labels, not keys).
* ``no_grad_outputs``: indices of outputs that carry no gradient by contract
  (batch_norm's running statistics): they get a zero cotangent everywhere.
* ``cases()``: the ``jaxconv check`` cases, a list of :class:`Case` of float64
  NumPy arrays (integer labels, uint32 keys) and hyperparameters, kept away from
  kinks (relu's 0, max-pool ties, inactive SVM margins) where finite differences
  are invalid. Every case also runs in the generic tests: ``Case.transforms=False``
  leaves a case out of the (compile-heavy) transforms test only.
* ``bench(quick)``: the ``jaxconv bench`` cases, a list of :class:`Bench`
  (float arrays are cast to float32 there), small when ``quick``.
* ``torch(torch, *args, **hyper)``: the same forward in PyTorch (``torch`` is
  passed in, imported lazily: it is an optional extra); ``args`` are what
  :func:`torch_args` makes of the case's arguments (float tensors, ``requires_grad``
  for those in ``grads``; labels as int64; static positionals as they are); it
  returns the op's output structure, every output in jaxconv's convention. The
  generic test compares forward and gradients in float64; the bench times it.
  ``None`` needs ``torch_reason``.
* ``invalid()``: :class:`Invalid` cases, bad arguments and the exception type and
  message regex expected from the op and its twin, eagerly and under ``jit``.
* ``same_forward(args, hyper)``: for the bench, the custom op's own forward as
  plain differentiable jnp (its hand rule removed), or ``None``.
* ``custom_rule``: False for the ops that are plain JAX (im2col, col2im): JAX's
  forward mode works through them.

Case builders are called lazily (importing the registry builds no array), so a
declaration may use JAX (``jax.random.key``) freely.
"""
from __future__ import annotations

import dataclasses
import functools
import importlib
import inspect
import pkgutil
from typing import Callable

import numpy as np


@dataclasses.dataclass(frozen=True)
class Case:
    """One ``jaxconv check`` case: ``op(*args, **hyper)``."""
    name: str
    args: tuple
    hyper: dict = dataclasses.field(default_factory=dict)
    transforms: bool = True     # False: left out of the transforms test (same code path)


@dataclasses.dataclass(frozen=True)
class Bench:
    """One ``jaxconv bench`` case: float arrays are cast to float32 before timing."""
    name: str
    args: tuple
    hyper: dict = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class Invalid:
    """Bad input: ``op(*args, **hyper)`` raises ``error`` matching ``match``."""
    name: str
    args: tuple
    hyper: dict
    error: type
    match: str
    traced: bool = True         # False: only raised for concrete values (not under jit)


@dataclasses.dataclass(frozen=True)
class OpSpec:
    name: str
    op: Callable
    twin: Callable
    arrays: tuple
    grads: tuple
    no_grad_outputs: tuple
    cases: Callable[[], list]
    bench: Callable[[bool], list]
    torch: Callable | None
    torch_reason: str | None
    invalid: Callable[[], list]
    same_forward: Callable | None
    custom_rule: bool

    def check_cases(self) -> list:
        return _built(self.name, "cases")

    def invalid_cases(self) -> list:
        return _built(self.name, "invalid")

    def split(self, args) -> tuple[list[int], list[int]]:
        """Indices of ``args`` that are arrays and that are static positionals."""
        names = positional_names(self.op)
        arrays = [i for i in range(len(args)) if names[i] in self.arrays]
        return arrays, [i for i in range(len(args)) if i not in arrays]

    def bind(self, args, hyper, *, op=None, twin=None) -> tuple[Callable, Callable, tuple]:
        """``(custom, twin, arrays)``: ``custom(*arrays)`` is ``op(*args, **hyper)``
        with the static positionals closed over (what jit, vjp and vmap may trace),
        ``twin(*arrays)`` the same for the twin (``op``, ``twin``: other functions
        of the same signature in their place)."""
        array_idx, _ = self.split(args)

        def bound(fn):
            return fix_others(lambda *full: fn(*full, **hyper), args, array_idx)
        return (bound(op or self.op), bound(twin or self.twin),
                tuple(args[i] for i in array_idx))

    def array_names(self, args) -> list[str]:
        """The names of the array arguments among ``args``, in order."""
        positional = positional_names(self.op)
        return [positional[i] for i in self.split(args)[0]]


_SPECS: dict[str, OpSpec] = {}


def fix_others(f, arrays, idx):
    """``f`` as a function of ``arrays[i] for i in idx`` only, the others fixed."""
    def call(*chosen):
        full = list(arrays)
        for i, a in zip(idx, chosen, strict=True):
            full[i] = a
        return f(*full)
    return call


def positional_names(fn) -> list[str]:
    return [p.name for p in inspect.signature(fn).parameters.values()
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]


def _no_cases():
    return []


def declare(op, twin, *, grads, arrays=None, no_grad_outputs=(), cases=_no_cases,
            bench=lambda quick: [], torch=None, torch_reason=None, invalid=_no_cases,
            same_forward=None, custom_rule=True) -> OpSpec:
    """Register ``op`` (see the module docstring); returns its :class:`OpSpec`."""
    name = op.__name__
    arrays = tuple(positional_names(op) if arrays is None else arrays)
    unknown = set(grads) - set(arrays)
    if unknown:
        raise ValueError(f"declare({name}): grads {sorted(unknown)} are not among the "
                         f"array arguments {arrays}")
    if torch is None and not torch_reason:
        raise ValueError(f"declare({name}): give a torch oracle or a torch_reason")
    if name in _SPECS and _SPECS[name].op is not op:
        raise ValueError(f"declare({name}): declared twice")
    spec = OpSpec(name, op, twin, arrays, tuple(grads), tuple(no_grad_outputs), cases, bench,
                  torch, torch_reason, invalid, same_forward, custom_rule)
    _SPECS[name] = spec
    return spec


@functools.lru_cache(maxsize=None)
def _load_declarations() -> None:
    import jaxconv
    for module in sorted(m.name for m in pkgutil.iter_modules(jaxconv.__path__)):
        if module.startswith("_") and module.endswith("_cases"):
            importlib.import_module(f"jaxconv.{module}")


def ops() -> dict[str, OpSpec]:
    """Every declared op, ``{name: OpSpec}``, in the order the families declare them."""
    _load_declarations()
    return dict(_SPECS)


def spec(name: str) -> OpSpec:
    specs = ops()
    if name not in specs:
        raise ValueError(f"{name!r} is not a registered op; registered: {sorted(specs)}")
    return specs[name]


@functools.lru_cache(maxsize=None)
def _built(name: str, field: str) -> list:
    return list(getattr(spec(name), field)())


# --- data for cases (float64, read-only, one seed per array) -----------------------------

def _frozen(a) -> np.ndarray:
    a = np.asarray(a)
    a.flags.writeable = False
    return a


def normal(seed: int, *shape) -> np.ndarray:
    """Standard normal float64 values."""
    return _frozen(np.random.default_rng(seed).standard_normal(shape))


def away_from_zero(seed: int, *shape, gap: float = 0.1) -> np.ndarray:
    """Magnitudes >= ``gap``: finite differences never cross a kink at 0."""
    x = np.random.default_rng(seed).standard_normal(shape)
    return _frozen(np.sign(x) * (gap + np.abs(x)))


def positive(seed: int, *shape) -> np.ndarray:
    """Values in [0.5, ...): variances."""
    return _frozen(0.5 + np.abs(np.random.default_rng(seed).standard_normal(shape)))


def distinct(seed: int, *shape) -> np.ndarray:
    """A shuffled grid 0.1 apart: no two window elements tie or nearly tie."""
    size = int(np.prod(shape))
    return _frozen((np.random.default_rng(seed).permutation(size) * 0.1 - 1.0).reshape(shape))


def legacy_key(seed: int) -> np.ndarray:
    """``jax.random.PRNGKey(seed)`` as a NumPy uint32 array (no JAX call needed)."""
    return _frozen(np.array([0, seed], np.uint32))


# --- the PyTorch oracles' calling convention ----------------------------------------------

def torch_args(torch, spec: OpSpec, args, device: str = "cpu") -> list:
    """``args`` for ``spec.torch``: float arrays as tensors of their dtype on ``device``
    (``requires_grad`` for the arguments that get gradients), integer arrays (labels)
    as int64 tensors, the rest (None, static positionals) as they are."""
    out = list(args)
    for i, name in zip(spec.split(args)[0], spec.array_names(args)):
        if args[i] is None:
            continue
        a = np.array(args[i])                      # a writable copy, as torch wants
        if np.issubdtype(a.dtype, np.floating):
            out[i] = torch.tensor(a, requires_grad=name in spec.grads, device=device)
        else:
            out[i] = torch.as_tensor(a, device=device).long()
    return out



def channels_first(t, layout: str | None):
    """A channels-last tensor (``"N...C"``) as channels-first (``"NC..."``); else as is."""
    if layout is None or layout[1] == "C":
        return t
    return t.permute(0, t.ndim - 1, *range(1, t.ndim - 1))


def channels_last(t, layout: str | None):
    """Inverse of :func:`channels_first`."""
    if layout is None or layout[1] == "C":
        return t
    return t.permute(0, *range(2, t.ndim), 1)

