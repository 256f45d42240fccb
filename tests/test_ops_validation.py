"""Bad input to every registered op (the ``invalid`` cases of jaxconv/_*_cases.py,
SPEC section 1): a ValueError or TypeError naming the op, the argument and the
shapes or values, raised by the custom op and its twin alike, and while tracing
under jax.jit (where the arguments are arrays and the error is not about values)."""
import jax
import numpy as np
import pytest

from jaxconv import _registry

CASES = [pytest.param(name, bad.name, id=f"{name}:{bad.name}")
         for name, spec in _registry.ops().items() for bad in spec.invalid_cases()]


def _traceable(spec, bad):
    """Every array argument is an array (or None, not first): jit can take them."""
    arrays = [bad.args[i] for i in spec.split(bad.args)[0]]
    return bad.traced and arrays[0] is not None and all(
        a is None or isinstance(a, (np.ndarray, jax.Array)) for a in arrays)


@pytest.mark.parametrize("side", ["custom", "twin"])
@pytest.mark.parametrize("name, case", CASES)
def test_bad_input_raises(name, case, side):
    spec = _registry.spec(name)
    bad = next(b for b in spec.invalid_cases() if b.name == case)
    fn = spec.op if side == "custom" else spec.twin
    with pytest.raises(bad.error, match=bad.match):
        fn(*bad.args, **bad.hyper)
    if _traceable(spec, bad):
        f, _, arrays = spec.bind(bad.args, bad.hyper, op=fn)
        with pytest.raises(bad.error, match=bad.match):
            jax.jit(f).trace(*arrays)          # tracing alone raises; nothing runs
