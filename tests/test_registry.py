"""The registry is complete and coherent: every public op is declared once, with
its twin (same signature), check cases, validation cases, bench cases and a
PyTorch oracle or a stated reason; a declaration's parts agree with each other."""
import inspect

import jax
import numpy as np
import pytest

import jaxconv
from jaxconv import _registry
from _util import on_cpu

SPECS = _registry.ops()
NAMES = list(SPECS)


def _public_ops(module, defined_there=False):
    return {name for name, value in vars(module).items()
            if not name.startswith("_") and inspect.isfunction(value) and name not in TOOLS
            and (not defined_there or value.__module__ == module.__name__)}


# Public functions of jaxconv that are tools, not ops (jit helpers of the CPU speed path).
TOOLS = {"jit", "conv_compiler_options"}


def test_every_public_op_is_registered():
    exported = {name for name in jaxconv.__all__
                if inspect.isfunction(getattr(jaxconv, name)) and name not in TOOLS}
    assert exported == _public_ops(jaxconv), "a public op is missing from jaxconv.__all__"
    missing = exported - set(SPECS)
    assert not missing, f"ops without a registry declaration (jaxconv/_*_cases.py): {missing}"
    assert set(SPECS) <= set(jaxconv.__all__), "a registered op is not exported"


def test_every_twin_is_registered():
    twins = {spec.twin for spec in SPECS.values()}
    orphans = {name for name in _public_ops(jaxconv.reference, defined_there=True)
               if getattr(jaxconv.reference, name) not in twins}
    assert not orphans, f"functions of jaxconv.reference that twin no registered op: {orphans}"


@pytest.mark.parametrize("name", NAMES)
def test_declared_op_and_twin_are_the_public_ones(name):
    spec = SPECS[name]
    assert getattr(jaxconv, name) is spec.op
    assert getattr(jaxconv.reference, name) is spec.twin


@pytest.mark.parametrize("name", NAMES)
def test_twin_signature_equals_the_ops(name):
    spec = SPECS[name]
    assert inspect.signature(spec.twin) == inspect.signature(spec.op)


@pytest.mark.parametrize("name", NAMES)
def test_hyperparameters_are_keyword_only(name):
    """A parameter with a default is an array argument (conv2d's ``b``) or
    keyword-only: nothing static can be passed by position by mistake."""
    for p in inspect.signature(SPECS[name].op).parameters.values():
        if p.default is not p.empty and p.name not in SPECS[name].arrays:
            assert p.kind == p.KEYWORD_ONLY, (name, p.name)


@pytest.mark.parametrize("name", NAMES)
def test_every_op_has_cases_an_oracle_validation_and_bench_cases(name):
    spec = SPECS[name]
    assert spec.check_cases(), f"{name}: no jaxconv check cases"
    assert spec.invalid_cases(), f"{name}: no validation cases"
    assert spec.bench(True) and spec.bench(False), f"{name}: no bench cases"
    assert spec.torch is not None or spec.torch_reason, f"{name}: no torch oracle nor reason"
    assert len({c.name for c in spec.check_cases()}) == len(spec.check_cases())
    assert len({c.name for c in spec.invalid_cases()}) == len(spec.invalid_cases())
    assert any(c.transforms for c in spec.check_cases()), f"{name}: no case under transforms"


@pytest.mark.parametrize("name", NAMES)
def test_cases_fit_the_declaration(name):
    """Check cases: the floating arrays are exactly the arguments declared to get
    gradients, in float64; the hyperparameters are keyword-only parameters;
    ``no_grad_outputs`` index real outputs."""
    spec = SPECS[name]
    params = inspect.signature(spec.op).parameters
    for case in spec.check_cases():
        assert len(case.args) <= len(_registry.positional_names(spec.op))
        assert all(params[k].kind == params[k].KEYWORD_ONLY for k in case.hyper), case.name
        _, _, arrays = spec.bind(case.args, case.hyper)
        floating = {n for n, a in zip(spec.array_names(case.args), arrays)
                    if a is not None and jax.numpy.issubdtype(a.dtype, np.floating)}
        assert floating == set(spec.grads) - {n for n, a in zip(
            spec.array_names(case.args), arrays) if a is None}, case.name
        assert all(a.dtype == np.float64 for a in arrays
                   if a is not None and jax.numpy.issubdtype(a.dtype, np.floating)), case.name
        with on_cpu():   # the twin validates impl, and "native" only traces for a CPU
            outputs = jax.eval_shape(spec.bind(case.args, case.hyper)[1], *arrays)
        assert all(k < len(jax.tree.leaves(outputs)) for k in spec.no_grad_outputs)
    for case in spec.bench(True):
        assert len(case.args) <= len(_registry.positional_names(spec.op))


def _dummy(x, *, k=1):
    return x


def test_declare_rejects_an_incomplete_declaration():
    with pytest.raises(ValueError, match=r"declare\(_dummy\): give a torch oracle or a torch_reason"):
        _registry.declare(_dummy, _dummy, grads=("x",))
    with pytest.raises(ValueError, match=r"grads \['y'\] are not among the array arguments"):
        _registry.declare(_dummy, _dummy, grads=("y",), torch_reason="none")
    assert "_dummy" not in _registry.ops()


def test_unknown_op_is_a_clear_error():
    with pytest.raises(ValueError, match=r"'conv9d' is not a registered op; registered: "):
        _registry.spec("conv9d")
