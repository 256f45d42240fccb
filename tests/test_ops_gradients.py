"""Every registered op, every check case (jaxconv/_*_cases.py), float64: the
custom_vjp forward equals the twin's, and its gradients equal autodiff of the twin
(<= 1e-10) and centered differences (<= 1e-6), with the inputs' shapes and dtypes."""
import jax
import numpy as np
import pytest

from jaxconv.gradcheck import rel_error
from _registry_cases import bound, params, results


@pytest.mark.parametrize("name, case", params())
def test_custom_equals_twin_and_numerical(name, case):
    spec, c, _, _, arrays, diff = bound(name, case)
    names = spec.array_names(c.args)
    r = results(name, case)
    for out, out_twin in zip(jax.tree.leaves(r["out"]), jax.tree.leaves(r["out_twin"]),
                             strict=True):
        assert out.shape == out_twin.shape and out.dtype == out_twin.dtype
        np.testing.assert_allclose(out, out_twin, rtol=1e-10, atol=1e-12)
    for k, i in enumerate(diff):
        got, auto, num = r["grads"][k], r["grads_twin"][k], r["numerical"][k]
        what = (name, case, names[i])
        assert got.shape == arrays[i].shape and got.dtype == arrays[i].dtype, what
        assert rel_error(got, auto) < 1e-10, (what, rel_error(got, auto))
        assert rel_error(got, num) < 1e-6, (what, rel_error(got, num))
