"""What each hand rule keeps between the forward and the backward pass, read with
``jax.ad_checkpoint.print_saved_residuals``: conv keeps x and w (never the patch
matrix), max pool one small integer per output, avg pool nothing."""
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.ad_checkpoint import print_saved_residuals

import jaxconv as jc
from _util import randn, to_hwio, to_nhwc

_DTYPES = {"f64": np.float64, "f32": np.float32, "bf16": jnp.bfloat16, "f16": np.float16,
           "u8": np.uint8, "i32": np.int32, "i64": np.int64}


def saved(capsys, f, *args):
    """``[(dtype, shape, source), ...]`` parsed from print_saved_residuals."""
    capsys.readouterr()
    print_saved_residuals(f, *args)
    found = []
    for line in capsys.readouterr().out.splitlines():
        m = re.fullmatch(r"(\w+)\[([\d,]*)\] (.*)", line.strip())
        assert m, line
        shape = tuple(int(d) for d in m.group(2).split(",") if d)
        found.append((np.dtype(_DTYPES[m.group(1)]), shape, m.group(3)))
    return found


def nbytes(residuals):
    return sum(int(np.prod(shape)) * dtype.itemsize for dtype, shape, _ in residuals)


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize("impl", ["xla", "im2col", "naive"])
def test_conv_keeps_only_x_and_w(capsys, impl, layout):
    x, w, b = randn(90, 2, 3, 8, 8), randn(91, 4, 3, 3, 3), randn(92, 4)
    if layout == "NHWC":
        x, w = to_nhwc(x), to_hwio(w)
    res = saved(capsys, lambda x, w, b: jc.conv2d(x, w, b, stride=1, pad=1, impl=impl,
                                                  layout=layout), x, w, b)
    assert sorted(src for _, _, src in res) == ["from the argument w", "from the argument x"]
    assert nbytes(res) == x.nbytes + w.nbytes
    # the im2col patch matrix would be 9x larger than x; it is rebuilt, never kept
    assert max(int(np.prod(shape)) for _, shape, _ in res) == x.size


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize("pool, stride", [(2, None), (3, 2), ((3, 2), (1, 1))])
def test_max_pool_keeps_one_byte_per_output(capsys, pool, stride, layout):
    x = randn(93, 2, 3, 8, 8).astype(np.float32)
    x = x if layout == "NCHW" else to_nhwc(x)
    f = lambda x: jc.max_pool2d(x, pool=pool, stride=stride, layout=layout)   # noqa: E731
    out_shape = jax.eval_shape(f, x).shape
    res = saved(capsys, f, x)
    assert [(dtype, shape) for dtype, shape, _ in res] == [(np.dtype(np.uint8), out_shape)]
    assert nbytes(res) == int(np.prod(out_shape))
    # autodiff of the twin keeps x itself: 4 bytes per input element here
    assert nbytes(saved(capsys, lambda x: jc.reference.max_pool2d(
        x, pool=pool, stride=stride, layout=layout), x)) == x.nbytes


def test_max_pool_windows_over_256_keep_int32(capsys):
    x = randn(94, 1, 2, 17, 16)
    res = saved(capsys, lambda x: jc.max_pool2d(x, pool=(17, 16)), x)   # 272 offsets
    assert [(dtype, shape) for dtype, shape, _ in res] == [(np.dtype(np.int32), (1, 2, 1, 1))]


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
def test_avg_pool_keeps_nothing(capsys, layout):
    x = randn(95, 2, 3, 8, 8)
    x = x if layout == "NCHW" else to_nhwc(x)
    assert nbytes(saved(capsys, lambda x: jc.avg_pool2d(x, pool=3, stride=2, layout=layout),
                        x)) == 0
