"""The adaptive pools' faster formulations (``jaxconv/_adaptive_pool.py``) against
autodiff of the twins, float64: the averaging matrix's exact fallback when the input
or the cotangent holds inf/NaN (``0 * inf`` must not reach rows outside a window), max
windows mixing a block dim (6 -> 3) with an overlapping one (7 -> 3), and the gathers
used for many windows."""
import jax
import numpy as np
import pytest

import jaxconv as jc
from jaxconv import reference


@pytest.mark.parametrize("kind, shape, out", [
    ("avg", (2, 3, 7), 3),          # one pooled trailing dim: the matrix product
    ("avg", (2, 3, 3), 5),          # upsampling: windows repeat rows
    ("avg", (1, 2, 7, 6), (3, 3)),  # several pooled dims: windowed sums
    ("max", (1, 2, 7, 6), (3, 3)),
    ("avg", (1, 2, 70), 65),        # more windows than are sliced one by one: gathers
    ("max", (1, 2, 70), 65),
])
def test_non_finite_values_and_mixed_windows_as_twin(kind, shape, out):
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape)
    # (a max window with NaN picks PyTorch's winner, not the twin's: test_torch_modules_pool)
    x.flat[1], x.flat[-2] = np.inf, np.nan if kind == "avg" else -np.inf
    op, twin = (getattr(m, f"adaptive_{kind}_pool") for m in (jc, reference))
    y, pullback = jax.vjp(lambda v: op(v, out), x)
    y_twin, pullback_twin = jax.vjp(lambda v: twin(v, out), x)
    g = rng.standard_normal(y.shape)
    g.flat[0], g.flat[-1] = np.inf, -np.inf
    np.testing.assert_allclose(y, y_twin, rtol=1e-12, atol=0)   # NaN and inf where the twin's
    (dx,), (dx_twin,) = pullback(g), pullback_twin(g)
    assert dx.dtype == x.dtype
    np.testing.assert_allclose(dx, dx_twin, rtol=1e-12, atol=1e-15)
