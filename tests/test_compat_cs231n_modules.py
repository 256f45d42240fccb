"""jaxconv.compat.cs231n as a package mirroring CS231n's modules (issue 15), and the
compat items of issue 10: caches that writes to the inputs cannot reach (finding 9),
labels range-checked before any cast (finding 6), dropout settings checked (finding 10).
Oracles: CS231n's signatures and star exports written out from its sources, NumPy
formulas, and eval_numerical_gradient_array in float64."""
import inspect

import numpy as np
import pytest

import jaxconv.compat.cs231n as flat
from jaxconv.compat.cs231n import fast_layers, layer_utils, layers, optim
from _seed_oracles import naive_conv_backward
from _util import randn

# CS231n assignment 2 (2019-2024): each module's public functions and their parameters.
CS231N = {
    "layers": {
        "affine_forward": "x w b", "affine_backward": "dout cache", "relu_forward": "x",
        "relu_backward": "dout cache", "softmax_loss": "x y", "svm_loss": "x y",
        "batchnorm_forward": "x gamma beta bn_param", "batchnorm_backward": "dout cache",
        "batchnorm_backward_alt": "dout cache", "layernorm_forward": "x gamma beta ln_param",
        "layernorm_backward": "dout cache", "dropout_forward": "x dropout_param",
        "dropout_backward": "dout cache", "conv_forward_naive": "x w b conv_param",
        "conv_backward_naive": "dout cache", "max_pool_forward_naive": "x pool_param",
        "max_pool_backward_naive": "dout cache",
        "spatial_batchnorm_forward": "x gamma beta bn_param",
        "spatial_batchnorm_backward": "dout cache",
        "spatial_groupnorm_forward": "x gamma beta G gn_param",
        "spatial_groupnorm_backward": "dout cache"},
    "fast_layers": {
        "conv_forward_im2col": "x w b conv_param", "conv_forward_strides": "x w b conv_param",
        "conv_backward_strides": "dout cache", "conv_backward_im2col": "dout cache",
        "conv_forward_fast": "x w b conv_param", "conv_backward_fast": "dout cache",
        "max_pool_forward_fast": "x pool_param", "max_pool_backward_fast": "dout cache",
        "max_pool_forward_reshape": "x pool_param", "max_pool_backward_reshape": "dout cache",
        "max_pool_forward_im2col": "x pool_param", "max_pool_backward_im2col": "dout cache",
        "im2col_indices": "x field_height field_width padding stride"},
    "layer_utils": {
        "affine_relu_forward": "x w b", "affine_relu_backward": "dout cache",
        "affine_bn_relu_forward": "x w b gamma beta bn_param",
        "affine_ln_relu_forward": "x w b gamma beta ln_param",
        "conv_relu_forward": "x w b conv_param", "conv_relu_backward": "dout cache",
        "conv_bn_relu_forward": "x w b gamma beta conv_param bn_param",
        "conv_bn_relu_backward": "dout cache",
        "conv_relu_pool_forward": "x w b conv_param pool_param",
        "conv_relu_pool_backward": "dout cache", "affine_forward": "x w b"},
    "optim": {"sgd": "w dw config", "sgd_momentum": "w dw config", "rmsprop": "w dw config",
              "adam": "w dw config"},
    "gradient_check": {
        "eval_numerical_gradient": "f x verbose h", "eval_numerical_gradient_array": "f x df h",
        "eval_numerical_gradient_blobs": "f inputs output h",
        "eval_numerical_gradient_net": "net inputs output h",
        "grad_check_sparse": "f x analytic_grad num_checks h"},
    "im2col": {"get_im2col_indices": "x_shape field_height field_width padding stride",
               "im2col_indices": "x field_height field_width padding stride",
               "col2im_indices": "cols x_shape field_height field_width padding stride"},
}


@pytest.mark.parametrize("module", sorted(CS231N))
def test_star_import_brings_cs231ns_names_with_its_parameters_and_np(module):
    namespace = {}
    exec(f"from jaxconv.compat.cs231n.{module} import *", namespace)
    assert namespace["np"] is np                  # CS231n's modules have no __all__
    for name, params in CS231N[module].items():
        assert list(inspect.signature(namespace[name]).parameters) == params.split(), name


def test_flat_namespace_unchanged():
    namespace = {}
    exec("from jaxconv.compat.cs231n import *", namespace)
    assert set(flat.__all__) <= set(namespace) and "rel_error" in namespace
    assert flat.conv_forward_fast is fast_layers.conv_forward_fast


def test_install_aliases_the_modules_for_unchanged_imports(monkeypatch):
    import sys
    for name in ["cs231n"] + [f"cs231n.{m}" for m in flat.MODULES]:
        monkeypatch.delitem(sys.modules, name, raising=False)
    flat.install(sync_dispatch=False)    # this process's JAX stays as conftest made it
    namespace = {}
    exec("from cs231n.layers import *\nfrom cs231n import optim\n"
         "from cs231n.layer_utils import affine_relu_forward", namespace)
    assert namespace["optim"] is optim and namespace["np"] is np
    assert namespace["affine_relu_forward"] is layer_utils.affine_relu_forward
    for name in ["cs231n"] + [f"cs231n.{m}" for m in flat.MODULES]:
        sys.modules.pop(name)


SYNC_PROBE = """
import resource, sys, numpy as np
import jaxconv.compat.cs231n as c
c.install("cs231n_probe", sync_dispatch=sys.argv[1] == "1")
import jax, jax.numpy as jnp
f = jax.jit(lambda x, w: jnp.maximum(x @ w, 0))     # 1,200 flops: XLA's thread pool
x, w = np.ones((2, 15)), np.ones((15, 20))
np.asarray(f(x, w))
switches = resource.getrusage(resource.RUSAGE_SELF).ru_nvcsw
for _ in range(200):
    np.asarray(f(x, w))
switches = resource.getrusage(resource.RUSAGE_SELF).ru_nvcsw - switches
print(jax.config.values["jax_cpu_enable_async_dispatch"], switches,
      c.synchronous_cpu_dispatch())
"""


@pytest.mark.parametrize("sync", [True, False])
def test_install_runs_jax_cpu_calls_on_the_calling_thread(sync):
    """In a fresh process install() turns JAX's asynchronous CPU dispatch off before the
    backend starts (no thread switch per call left); sync_dispatch=False leaves it, and
    once the backend runs, synchronous_cpu_dispatch() changes nothing and says so."""
    import subprocess
    import sys
    run = subprocess.run([sys.executable, "-c", SYNC_PROBE, "1" if sync else "0"],
                         capture_output=True, text=True, check=True)
    flag, switches, now_sync = run.stdout.split()
    assert flag == str(not sync) and now_sync == str(sync)
    if sync:
        assert int(switches) <= 5, run.stdout


# --- issue 10, finding 9: writes to the inputs after the forward change nothing -------------

def _overwrite(*arrays):
    for a in arrays:
        a[...] = 7.0 * np.sign(a) + 3.0


def test_conv_fast_cache_is_not_the_callers_array():
    x, w, b = randn(0, 2, 3, 5, 5), randn(1, 4, 3, 3, 3), randn(2, 4)
    pairs = (1, 1), (1, 1)
    want = naive_conv_backward(randn(3, 2, 4, 5, 5), x.copy(), w.copy(), *pairs)
    out, cache = fast_layers.conv_forward_fast(x, w, b, {"stride": 1, "pad": 1})
    _overwrite(x, w, b)
    for got, expect in zip(fast_layers.conv_backward_fast(randn(3, *out.shape), cache), want):
        np.testing.assert_allclose(got, expect, rtol=1e-12, atol=1e-12)


def test_affine_cache_is_not_the_callers_array():
    x, w, b = randn(0, 3, 4), randn(1, 4, 2), randn(2, 2)
    dout = randn(3, 3, 2)
    want = (dout @ w.T, x.T @ dout, dout.sum(0))
    _, cache = layers.affine_forward(x, w, b)
    _overwrite(x, w, b)
    for got, expect in zip(layers.affine_backward(dout, cache), want):
        np.testing.assert_allclose(got, expect, rtol=1e-13)


def _bn_backward_numpy(dout, x, gamma, eps=1e-5):
    mu, var = x.mean(0), x.var(0)
    x_hat = (x - mu) / np.sqrt(var + eps)
    dx_hat = dout * gamma
    dx = (dx_hat - dx_hat.mean(0) - x_hat * (dx_hat * x_hat).mean(0)) / np.sqrt(var + eps)
    return dx, (dout * x_hat).sum(0), dout.sum(0)


@pytest.mark.parametrize("backward", ["batchnorm_backward", "batchnorm_backward_alt"])
def test_batchnorm_cache_is_not_the_callers_array(backward):
    x, gamma, beta, dout = randn(0, 5, 3), randn(1, 3), randn(2, 3), randn(3, 5, 3)
    want = _bn_backward_numpy(dout, x.copy(), gamma.copy())
    _, cache = layers.batchnorm_forward(x, gamma, beta, {"mode": "train"})
    _overwrite(x, gamma, beta)
    for got, expect in zip(getattr(layers, backward)(dout, cache), want):
        np.testing.assert_allclose(got, expect, rtol=1e-10, atol=1e-12)


CASES = {   # forward on (x, *params) -> the backward; every other cache of the package
    "relu": (lambda x: layers.relu_forward(x), layers.relu_backward, [(2, 3)]),
    "conv_naive": (lambda x, w, b: layers.conv_forward_naive(x, w, b, {"stride": 1, "pad": 0}),
                   layers.conv_backward_naive, [(1, 2, 4, 4), (2, 2, 3, 3), (2,)]),
    "pool": (lambda x: layers.max_pool_forward_naive(
        x, {"pool_height": 2, "pool_width": 2, "stride": 2}), layers.max_pool_backward_naive,
        [(1, 2, 4, 4)]),
    "layernorm": (lambda x, g, b: layers.layernorm_forward(x, g, b, {}),
                  layers.layernorm_backward, [(3, 4), (4,), (4,)]),
    "groupnorm": (lambda x, g, b: layers.spatial_groupnorm_forward(x, g, b, 2, {}),
                  layers.spatial_groupnorm_backward, [(2, 4, 2, 2), (1, 4, 1, 1), (1, 4, 1, 1)]),
    "spatial_bn": (lambda x, g, b: layers.spatial_batchnorm_forward(x, g, b, {"mode": "train"}),
                   layers.spatial_batchnorm_backward, [(2, 3, 2, 2), (3,), (3,)]),
    "dropout": (lambda x: layers.dropout_forward(x, {"mode": "train", "p": 0.5, "seed": 3}),
                layers.dropout_backward, [(4, 5)]),
    "conv_relu_pool": (lambda x, w, b: layer_utils.conv_relu_pool_forward(
        x, w, b, {"stride": 1, "pad": 1}, {"pool_height": 2, "pool_width": 2, "stride": 2}),
        layer_utils.conv_relu_pool_backward, [(1, 2, 4, 4), (2, 2, 3, 3), (2,)]),
    "affine_bn_relu": (lambda x, w, b, g, be: layer_utils.affine_bn_relu_forward(
        x, w, b, g, be, {"mode": "train"}), layer_utils.affine_bn_relu_backward,
        [(4, 3), (3, 5), (5,), (5,), (5,)]),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_every_cache_is_unchanged_by_writes_to_the_inputs(name):
    forward, backward, shapes = CASES[name]
    arrays = [randn(i, *s) for i, s in enumerate(shapes)]
    out, cache = forward(*[a.copy() for a in arrays])
    dout = randn(9, *out.shape)
    want = backward(dout, cache)                      # from pristine inputs
    mutable = [a.copy() for a in arrays]
    out2, cache2 = forward(*mutable)
    _overwrite(*mutable)
    got = backward(dout, cache2)
    for g, w in zip(got if isinstance(got, tuple) else (got,), want if isinstance(want, tuple)
                    else (want,)):
        np.testing.assert_array_equal(g, w)
    # and the pristine gradient of x is the numerical one (a real check, not a tautology)
    x = arrays[0].copy()
    num = flat.eval_numerical_gradient_array(lambda a: forward(a, *arrays[1:])[0], x, dout)
    dx = want[0] if isinstance(want, tuple) else want
    assert flat.rel_error(dx, num) < 1e-7


# --- issue 10, finding 6: labels checked on the original array ---------------------------------

@pytest.mark.parametrize("loss", [layers.softmax_loss, layers.svm_loss])
def test_labels_beyond_int32_raise_naming_value_and_index(loss):
    scores = np.zeros((4, 3), np.float32)
    with pytest.raises(ValueError, match=r"y\[0\] = 4294967297"):
        loss(scores, np.array([2**32 + 1, 0, 0, 0], np.int64))
    with pytest.raises(ValueError, match=r"labels y .*y\[2\] = -1"):
        loss(scores, np.array([0, 1, -1, 0]))
    value, _ = loss(scores, np.array([2, 0, 1, 1], np.int64))
    assert np.isfinite(value)


# --- issue 10, finding 10: dropout settings -------------------------------------------------------

@pytest.mark.parametrize("param,error", [({"seed": 1.7}, TypeError), ({"p": "0.5"}, TypeError),
                                         ({"seed": -1}, ValueError), ({"seed": 2**32}, ValueError),
                                         ({"p": 1.5}, ValueError), ({"seed": True}, TypeError)])
def test_dropout_settings_are_checked(param, error):
    dropout_param = {"mode": "train", "p": 0.5, "seed": 0, **param}
    name = "seed" if "seed" in param else "p"
    with pytest.raises(error, match=f'dropout_param\\["{name}"\\]'):
        layers.dropout_forward(np.ones((2, 3)), dropout_param)


def test_dropout_largest_seed_is_fine():
    out, _ = layers.dropout_forward(np.ones((20, 30)), {"mode": "train", "p": 0.5,
                                                       "seed": np.uint32(2**32 - 1)})
    assert set(np.unique(out)) <= {0.0, 2.0} and 0.3 < (out == 0).mean() < 0.7


# --- update rules: CS231n's in-place sgd and NumPy's dtypes ------------------------------------

def test_sgd_in_place_keeps_float32_with_float64_gradient():
    w = randn(0, 3, 4).astype(np.float32)
    dw = randn(1, 3, 4)
    expected = w.copy()
    expected -= 0.1 * dw                              # what CS231n's `w -= lr * dw` does
    next_w, _ = optim.sgd(w, dw, {"learning_rate": 0.1})
    assert next_w is w and w.dtype == np.float32
    np.testing.assert_array_equal(w, expected)


@pytest.mark.parametrize("rule", ["sgd_momentum", "rmsprop", "adam"])
def test_other_rules_promote_as_numpy(rule):
    w, dw = randn(0, 3).astype(np.float32), randn(1, 3).astype(np.float32)
    next_w, _ = getattr(optim, rule)(w, dw, {"learning_rate": 0.1})
    assert next_w.dtype == np.float32 and next_w is not w
    next_w, _ = getattr(optim, rule)(w, dw.astype(np.float64), {"learning_rate": 0.1})
    assert next_w.dtype == np.result_type(w, dw.astype(np.float64))    # float64, as NumPy


# --- layer_utils: the sandwiches against the layers composed, and numerically --------------------

def test_sandwiches_equal_the_layers_composed_and_numerical_gradients():
    x, w, b = randn(0, 2, 2, 6, 6), randn(1, 3, 2, 3, 3), randn(2, 3)
    conv_param, pool_param = {"stride": 1, "pad": 1}, {"pool_height": 2, "pool_width": 2,
                                                        "stride": 2}
    out, cache = layer_utils.conv_relu_pool_forward(x, w, b, conv_param, pool_param)
    a, c1 = fast_layers.conv_forward_fast(x, w, b, conv_param)
    r, c2 = layers.relu_forward(a)
    p, c3 = fast_layers.max_pool_forward_fast(r, pool_param)
    np.testing.assert_allclose(out, p, rtol=1e-13)
    dout = randn(3, *out.shape)
    fused = layer_utils.conv_relu_pool_backward(dout, cache)
    layerwise = layer_utils.conv_relu_pool_backward(dout, (c1, c2, c3))   # CS231n-built cache
    for f, lw in zip(fused, layerwise):
        np.testing.assert_allclose(f, lw, rtol=1e-12, atol=1e-14)
    num = flat.eval_numerical_gradient_array(
        lambda a: layer_utils.conv_relu_pool_forward(x, a, b, conv_param, pool_param)[0],
        w.copy(), dout)
    assert flat.rel_error(fused[1], num) < 1e-7

    xa, wa, ba, g, be = randn(4, 4, 3), randn(5, 3, 5), randn(6, 5), randn(7, 5), randn(8, 5)
    bn_param = {"mode": "train"}
    out, cache = layer_utils.affine_bn_relu_forward(xa, wa, ba, g, be, bn_param)
    h = xa @ wa + ba
    mu, var = h.mean(0), h.var(0)
    np.testing.assert_allclose(out, np.maximum(g * (h - mu) / np.sqrt(var + 1e-5) + be, 0),
                               rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(bn_param["running_mean"], 0.1 * mu, rtol=1e-13)
    dout = randn(9, *out.shape)
    grads = layer_utils.affine_bn_relu_backward(dout, cache)
    num = flat.eval_numerical_gradient_array(
        lambda a: layer_utils.affine_bn_relu_forward(a, wa, ba, g, be, {"mode": "train"})[0],
        xa.copy(), dout)
    assert len(grads) == 5 and flat.rel_error(grads[0], num) < 1e-7


# --- the other seeds' compat caches (dlai, im2col_net): the same promise ------------------------

def test_dlai_and_im2col_net_caches_are_not_the_callers_arrays():
    from jaxconv.compat import dlai, im2col_net
    from _seed_oracles import naive_conv_backward as conv_backward_loops
    X, W, b = randn(0, 1, 2, 5, 5), randn(1, 3, 2, 3, 3), randn(2, 3, 1)
    dout = randn(3, 1, 3, 5, 5)
    want = conv_backward_loops(dout, X.copy(), W.copy(), (1, 1), (1, 1))
    out, cache = im2col_net.conv_forward(X, W, b, stride=1, padding=1)
    _overwrite(X, W, b)
    for got, expect in zip(im2col_net.conv_backward(dout, cache), want):
        np.testing.assert_allclose(got.reshape(expect.shape), expect, rtol=1e-12, atol=1e-12)

    A = randn(4, 1, 4, 4, 2)                       # NHWC
    A_nchw = A.transpose(0, 3, 1, 2).copy()
    dA = randn(5, 1, 2, 2, 2)
    _, cache = dlai.pool_forward(A, {"f": 2, "stride": 2}, mode="max")
    _overwrite(A)
    got = dlai.pool_backward(dA, cache, mode="max")
    windows = A_nchw.reshape(1, 2, 2, 2, 2, 2).transpose(0, 1, 2, 4, 3, 5).reshape(1, 2, 2, 2, 4)
    first = windows.argmax(-1)                     # the first maximum of each window
    expect = np.zeros((1, 2, 2, 2, 4))
    np.put_along_axis(expect, first[..., None], dA.transpose(0, 3, 1, 2)[..., None], -1)
    expect = expect.reshape(1, 2, 2, 2, 2, 2).transpose(0, 1, 2, 4, 3, 5).reshape(1, 2, 4, 4)
    np.testing.assert_array_equal(got, expect.transpose(0, 2, 3, 1))


def test_sandwich_backward_accepts_caches_built_layer_by_layer():
    """CS231n's own layer_utils code builds (conv_cache, bn_cache, relu_cache); the
    backward here takes that too, and agrees with the fused cache."""
    x, w, b = randn(0, 2, 2, 4, 4), randn(1, 3, 2, 3, 3), randn(2, 3)
    gamma, beta, conv_param = randn(3, 3), randn(4, 3), {"stride": 1, "pad": 1}
    out, fused = layer_utils.conv_bn_relu_forward(x, w, b, gamma, beta, conv_param,
                                                  {"mode": "train"})
    a, c1 = fast_layers.conv_forward_fast(x, w, b, conv_param)
    n, c2 = layers.spatial_batchnorm_forward(a, gamma, beta, {"mode": "train"})
    r, c3 = layers.relu_forward(n)
    np.testing.assert_allclose(out, r, rtol=1e-12, atol=1e-13)
    dout = randn(5, *out.shape)
    for f, lw in zip(layer_utils.conv_bn_relu_backward(dout, fused),
                     layer_utils.conv_bn_relu_backward(dout, (c1, c2, c3))):
        np.testing.assert_allclose(f, lw, rtol=1e-11, atol=1e-13)
    xa, wa, ba = randn(6, 3, 4), randn(7, 4, 5), randn(8, 5)
    ga, be = randn(9, 5), randn(10, 5)
    out, fused = layer_utils.affine_ln_relu_forward(xa, wa, ba, ga, be, {})
    h, c1 = layers.affine_forward(xa, wa, ba)
    n, c2 = layers.layernorm_forward(h, ga, be, {})
    r, c3 = layers.relu_forward(n)
    dout = randn(11, *out.shape)
    for f, lw in zip(layer_utils.affine_ln_relu_backward(dout, fused),
                     layer_utils.affine_ln_relu_backward(dout, (c1, c2, c3))):
        np.testing.assert_allclose(f, lw, rtol=1e-11, atol=1e-13)
    mu, sd = h.mean(1, keepdims=True), h.std(1, keepdims=True)
    np.testing.assert_allclose(out, np.maximum(ga * (h - mu) / np.sqrt(sd ** 2 + 1e-5) + be, 0),
                               rtol=1e-12, atol=1e-13)


def test_col2im_fractional_x_shape_is_a_type_error():
    from jaxconv.compat.cs231n import im2col
    cols = np.ones((9, 16))
    with pytest.raises(TypeError, match="x_shape"):
        im2col.col2im_indices(cols, (1, 1, 4.5, 4), 3, 3, padding=1, stride=1)
    k, i, j = im2col.get_im2col_indices((1, 1, 4, 4), 3, 3, padding=1, stride=1)
    x = randn(0, 1, 1, 4, 4)
    padded = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    np.testing.assert_array_equal(padded[:, k, i, j].transpose(1, 2, 0).reshape(9, -1),
                                  im2col.im2col_indices(x, 3, 3, padding=1, stride=1))
