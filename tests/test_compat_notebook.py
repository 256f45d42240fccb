"""A seed-style script runs unchanged: the calling code of CS231n notebook cells,
executed against jaxconv.compat.cs231n, meets the notebooks' own printed bars.

Each cell is the notebook's text. Its imports (``from cs231n.fast_layers import ...``,
``from cs231n.optim import ...``) resolve to jaxconv.compat.cs231n through a
``cs231n`` package alias, and the namespace starts as a notebook's does:
``import numpy as np`` and ``from jaxconv.compat.cs231n import *``. The only
edits: smaller inputs in the model gradient check (to fit the test budget), and
lines that keep the printed numbers in variables for the asserts.
"""
import sys
import textwrap
import types

import numpy as np
import pytest

import jaxconv.compat.cs231n as compat


@pytest.fixture
def run_cell(monkeypatch):
    """Execute a notebook cell in a fresh notebook namespace; return the namespace."""
    package = types.ModuleType("cs231n")
    package.__path__ = []
    monkeypatch.setitem(sys.modules, "cs231n", package)
    for name in ("layers", "fast_layers", "optim", "gradient_check", "im2col"):
        monkeypatch.setitem(sys.modules, f"cs231n.{name}", compat)
        setattr(package, name, compat)

    def run(source, **extra):
        namespace = dict(extra)
        exec("import numpy as np\nfrom jaxconv.compat.cs231n import *\n", namespace)
        exec(compile(textwrap.dedent(source), "<notebook cell>", "exec"), namespace)
        return namespace

    return run


def test_affine_and_relu_cells(run_cell):
    ns = run_cell("""
        # Test the affine_forward function
        num_inputs = 2
        input_shape = (4, 5, 6)
        output_dim = 3

        input_size = num_inputs * np.prod(input_shape)
        weight_size = output_dim * np.prod(input_shape)

        x = np.linspace(-0.1, 0.5, num=input_size).reshape(num_inputs, *input_shape)
        w = np.linspace(-0.2, 0.3, num=weight_size).reshape(np.prod(input_shape), output_dim)
        b = np.linspace(-0.3, 0.1, num=output_dim)

        out, _ = affine_forward(x, w, b)
        correct_out = np.array([[ 1.49834967,  1.70660132,  1.91485297],
                                [ 3.25553199,  3.5141327,   3.77273342]])

        # Compare your output with ours. The error should be around e-9 or less.
        print('Testing affine_forward function:')
        print('difference: ', rel_error(out, correct_out))
        affine_forward_error = rel_error(out, correct_out)

        # Test the affine_backward function
        np.random.seed(231)
        x = np.random.randn(10, 2, 3)
        w = np.random.randn(6, 5)
        b = np.random.randn(5)
        dout = np.random.randn(10, 5)

        dx_num = eval_numerical_gradient_array(lambda x: affine_forward(x, w, b)[0], x, dout)
        dw_num = eval_numerical_gradient_array(lambda w: affine_forward(x, w, b)[0], w, dout)
        db_num = eval_numerical_gradient_array(lambda b: affine_forward(x, w, b)[0], b, dout)

        _, cache = affine_forward(x, w, b)
        dx, dw, db = affine_backward(dout, cache)

        # The error should be around e-10 or less
        print('Testing affine_backward function:')
        print('dx error: ', rel_error(dx_num, dx))
        print('dw error: ', rel_error(dw_num, dw))
        print('db error: ', rel_error(db_num, db))

        # Test the relu_forward function
        x = np.linspace(-0.5, 0.5, num=12).reshape(3, 4)
        out, _ = relu_forward(x)
        correct_out = np.array([[ 0.,          0.,          0.,          0.,        ],
                                [ 0.,          0.,          0.04545455,  0.13636364,],
                                [ 0.22727273,  0.31818182,  0.40909091,  0.5,       ]])

        # Compare your output with ours. The error should be on the order of e-8
        print('Testing relu_forward function:')
        print('difference: ', rel_error(out, correct_out))
        relu_forward_error = rel_error(out, correct_out)

        np.random.seed(231)
        x = np.random.randn(10, 10)
        dout = np.random.randn(*x.shape)

        relu_dx_num = eval_numerical_gradient_array(lambda x: relu_forward(x)[0], x, dout)

        _, cache = relu_forward(x)
        relu_dx = relu_backward(dout, cache)

        # The error should be on the order of e-12
        print('Testing relu_backward function:')
        print('dx error: ', rel_error(relu_dx_num, relu_dx))
    """)
    assert ns["affine_forward_error"] < 1e-8
    for grad, num in (("dx", "dx_num"), ("dw", "dw_num"), ("db", "db_num")):
        assert compat.rel_error(ns[grad], ns[num]) < 1e-9
    assert ns["relu_forward_error"] < 1e-7
    assert compat.rel_error(ns["relu_dx"], ns["relu_dx_num"]) < 1e-11


def test_loss_cell(run_cell):
    ns = run_cell("""
        np.random.seed(231)
        num_classes, num_inputs = 10, 50
        x = 0.001 * np.random.randn(num_inputs, num_classes)
        y = np.random.randint(num_classes, size=num_inputs)

        dx_num = eval_numerical_gradient(lambda x: svm_loss(x, y)[0], x, verbose=False)
        loss, dx = svm_loss(x, y)

        # Test svm_loss function. Loss should be around 9 and dx error should be around the order of e-9
        print('Testing svm_loss:')
        print('loss: ', loss)
        print('dx error: ', rel_error(dx_num, dx))
        svm = (loss, rel_error(dx_num, dx))

        dx_num = eval_numerical_gradient(lambda x: softmax_loss(x, y)[0], x, verbose=False)
        loss, dx = softmax_loss(x, y)

        # Test softmax_loss function. Loss should be close to 2.3 and dx error should be around e-8
        print('\\nTesting softmax_loss:')
        print('loss: ', loss)
        print('dx error: ', rel_error(dx_num, dx))
        softmax = (loss, rel_error(dx_num, dx))
    """)
    # The notebook prints loss 8.999602749096233 and 2.302545844500738 for this seed.
    np.testing.assert_allclose(ns["svm"][0], 8.999602749096233, rtol=1e-13)
    np.testing.assert_allclose(ns["softmax"][0], 2.302545844500738, rtol=1e-13)
    assert ns["svm"][1] < 1e-8 and ns["softmax"][1] < 1e-7


def test_conv_and_pool_cells(run_cell):
    ns = run_cell("""
        x_shape = (2, 3, 4, 4)
        w_shape = (3, 3, 4, 4)
        x = np.linspace(-0.1, 0.5, num=np.prod(x_shape)).reshape(x_shape)
        w = np.linspace(-0.2, 0.3, num=np.prod(w_shape)).reshape(w_shape)
        b = np.linspace(-0.1, 0.2, num=3)

        conv_param = {'stride': 2, 'pad': 1}
        out, _ = conv_forward_naive(x, w, b, conv_param)
        correct_out = np.array([[[[-0.08759809, -0.10987781],
                                   [-0.18387192, -0.2109216 ]],
                                  [[ 0.21027089,  0.21661097],
                                   [ 0.22847626,  0.23004637]],
                                  [[ 0.50813986,  0.54309974],
                                   [ 0.64082444,  0.67101435]]],
                                 [[[-0.98053589, -1.03143541],
                                   [-1.19128892, -1.24695841]],
                                  [[ 0.69108355,  0.66880383],
                                   [ 0.59480972,  0.56776003]],
                                  [[ 2.36270298,  2.36904306],
                                   [ 2.38090835,  2.38247847]]]])

        # Compare your output to ours; difference should be around e-8
        print('Testing conv_forward_naive')
        print('difference: ', rel_error(out, correct_out))
        conv_forward_error = rel_error(out, correct_out)

        np.random.seed(231)
        x = np.random.randn(4, 3, 5, 5)
        w = np.random.randn(2, 3, 3, 3)
        b = np.random.randn(2,)
        dout = np.random.randn(4, 2, 5, 5)
        conv_param = {'stride': 1, 'pad': 1}

        dx_num = eval_numerical_gradient_array(lambda x: conv_forward_naive(x, w, b, conv_param)[0], x, dout)
        dw_num = eval_numerical_gradient_array(lambda w: conv_forward_naive(x, w, b, conv_param)[0], w, dout)
        db_num = eval_numerical_gradient_array(lambda b: conv_forward_naive(x, w, b, conv_param)[0], b, dout)

        out, cache = conv_forward_naive(x, w, b, conv_param)
        dx, dw, db = conv_backward_naive(dout, cache)

        # Your errors should be around e-8 or less.
        print('Testing conv_backward_naive function')
        print('dx error: ', rel_error(dx, dx_num))
        print('dw error: ', rel_error(dw, dw_num))
        print('db error: ', rel_error(db, db_num))
        conv_errors = [rel_error(dx, dx_num), rel_error(dw, dw_num), rel_error(db, db_num)]

        x_shape = (2, 3, 4, 4)
        x = np.linspace(-0.3, 0.4, num=np.prod(x_shape)).reshape(x_shape)
        pool_param = {'pool_width': 2, 'pool_height': 2, 'stride': 2}

        out, _ = max_pool_forward_naive(x, pool_param)

        correct_out = np.array([[[[-0.26315789, -0.24842105],
                                  [-0.20421053, -0.18947368]],
                                 [[-0.14526316, -0.13052632],
                                  [-0.08631579, -0.07157895]],
                                 [[-0.02736842, -0.01263158],
                                  [ 0.03157895,  0.04631579]]],
                                [[[ 0.09052632,  0.10526316],
                                  [ 0.14947368,  0.16421053]],
                                 [[ 0.20842105,  0.22315789],
                                  [ 0.26736842,  0.28210526]],
                                 [[ 0.32631579,  0.34105263],
                                  [ 0.38526316,  0.4       ]]]])

        # Compare your output with ours. Difference should be on the order of e-8.
        print('Testing max_pool_forward_naive function:')
        print('difference: ', rel_error(out, correct_out))
        pool_forward_error = rel_error(out, correct_out)

        np.random.seed(231)
        x = np.random.randn(3, 2, 8, 8)
        dout = np.random.randn(3, 2, 4, 4)
        pool_param = {'pool_height': 2, 'pool_width': 2, 'stride': 2}

        dx_num = eval_numerical_gradient_array(lambda x: max_pool_forward_naive(x, pool_param)[0], x, dout)

        out, cache = max_pool_forward_naive(x, pool_param)
        dx = max_pool_backward_naive(dout, cache)

        # Your error should be on the order of e-12
        print('Testing max_pool_backward_naive function:')
        print('dx error: ', rel_error(dx, dx_num))
        pool_error = rel_error(dx, dx_num)
    """)
    assert ns["conv_forward_error"] < 1e-7          # the notebook's run prints 2.2e-08
    assert max(ns["conv_errors"]) < 1e-7            # ... and 1.2e-08, 2.2e-10, 3.4e-11
    assert ns["pool_forward_error"] < 1e-7          # ... and 4.2e-08 (rounded correct_out)
    assert ns["pool_error"] < 1e-11                 # ... and 3.3e-12


def test_fast_layers_cells(run_cell):
    ns = run_cell("""
        # Rel errors should be around e-9 or less
        from cs231n.fast_layers import conv_forward_fast, conv_backward_fast
        from time import time
        np.random.seed(231)
        x = np.random.randn(100, 3, 31, 31)
        w = np.random.randn(25, 3, 3, 3)
        b = np.random.randn(25,)
        dout = np.random.randn(100, 25, 16, 16)
        conv_param = {'stride': 2, 'pad': 1}

        t0 = time()
        out_naive, cache_naive = conv_forward_naive(x, w, b, conv_param)
        t1 = time()
        out_fast, cache_fast = conv_forward_fast(x, w, b, conv_param)
        t2 = time()

        print('Testing conv_forward_fast:')
        print('Naive: %fs' % (t1 - t0))
        print('Fast: %fs' % (t2 - t1))
        print('Difference: ', rel_error(out_naive, out_fast))
        conv_differences = [rel_error(out_naive, out_fast)]

        t0 = time()
        dx_naive, dw_naive, db_naive = conv_backward_naive(dout, cache_naive)
        t1 = time()
        dx_fast, dw_fast, db_fast = conv_backward_fast(dout, cache_fast)
        t2 = time()

        print('\\nTesting conv_backward_fast:')
        print('Naive: %fs' % (t1 - t0))
        print('Fast: %fs' % (t2 - t1))
        print('dx difference: ', rel_error(dx_naive, dx_fast))
        print('dw difference: ', rel_error(dw_naive, dw_fast))
        print('db difference: ', rel_error(db_naive, db_fast))
        conv_differences += [rel_error(dx_naive, dx_fast), rel_error(dw_naive, dw_fast),
                             rel_error(db_naive, db_fast)]

        # Relative errors should be close to 0.0
        from cs231n.fast_layers import max_pool_forward_fast, max_pool_backward_fast
        np.random.seed(231)
        x = np.random.randn(100, 3, 32, 32)
        dout = np.random.randn(100, 3, 16, 16)
        pool_param = {'pool_height': 2, 'pool_width': 2, 'stride': 2}

        out_naive, cache_naive = max_pool_forward_naive(x, pool_param)
        out_fast, cache_fast = max_pool_forward_fast(x, pool_param)
        print('difference: ', rel_error(out_naive, out_fast))
        dx_naive = max_pool_backward_naive(dout, cache_naive)
        dx_fast = max_pool_backward_fast(dout, cache_fast)
        print('dx difference: ', rel_error(dx_naive, dx_fast))
        pool_differences = [rel_error(out_naive, out_fast), rel_error(dx_naive, dx_fast)]
    """)
    assert max(ns["conv_differences"]) < 1e-9
    assert ns["pool_differences"] == [0.0, 0.0]


def test_batchnorm_cells(run_cell):
    ns = run_cell("""
        # Check the test-time forward pass by running the training-time
        # forward pass many times to warm up the running averages, and then
        # checking the means and variances of activations after a test-time
        # forward pass.
        np.random.seed(231)
        N, D1, D2, D3 = 200, 50, 60, 3
        W1 = np.random.randn(D1, D2)
        W2 = np.random.randn(D2, D3)

        bn_param = {'mode': 'train'}
        gamma = np.ones(D3)
        beta = np.zeros(D3)

        for t in range(50):
          X = np.random.randn(N, D1)
          a = np.maximum(0, X.dot(W1)).dot(W2)
          batchnorm_forward(a, gamma, beta, bn_param)

        bn_param['mode'] = 'test'
        X = np.random.randn(N, D1)
        a = np.maximum(0, X.dot(W1)).dot(W2)
        a_norm, _ = batchnorm_forward(a, gamma, beta, bn_param)

        # Means should be close to zero and stds close to one, but will be
        # noisier than training-time forward passes.
        print('After batch normalization (test-time):')
        print('  means: ', a_norm.mean(axis=0))
        print('  stds:  ', a_norm.std(axis=0))

        # Gradient check batchnorm backward pass
        np.random.seed(231)
        N, D = 4, 5
        x = 5 * np.random.randn(N, D) + 12
        gamma = np.random.randn(D)
        beta = np.random.randn(D)
        dout = np.random.randn(N, D)

        bn_param = {'mode': 'train'}
        fx = lambda x: batchnorm_forward(x, gamma, beta, bn_param)[0]
        fg = lambda a: batchnorm_forward(x, a, beta, bn_param)[0]
        fb = lambda b: batchnorm_forward(x, gamma, b, bn_param)[0]

        dx_num = eval_numerical_gradient_array(fx, x, dout)
        da_num = eval_numerical_gradient_array(fg, gamma.copy(), dout)
        db_num = eval_numerical_gradient_array(fb, beta.copy(), dout)

        _, cache = batchnorm_forward(x, gamma, beta, bn_param)
        dx, dgamma, dbeta = batchnorm_backward(dout, cache)
        #You should expect to see relative errors between 1e-13 and 1e-8
        print('dx error: ', rel_error(dx_num, dx))
        print('dgamma error: ', rel_error(da_num, dgamma))
        print('dbeta error: ', rel_error(db_num, dbeta))
        bn_errors = [rel_error(dx_num, dx), rel_error(da_num, dgamma), rel_error(db_num, dbeta)]

        dx2, dgamma2, dbeta2 = batchnorm_backward_alt(dout, cache)
        print('dx difference: ', rel_error(dx, dx2))
        alt_differences = [rel_error(dx, dx2), rel_error(dgamma, dgamma2), rel_error(dbeta, dbeta2)]

        np.random.seed(231)
        N, C, H, W = 2, 3, 4, 5
        x = 5 * np.random.randn(N, C, H, W) + 12
        gamma = np.random.randn(C)
        beta = np.random.randn(C)
        dout = np.random.randn(N, C, H, W)

        bn_param = {'mode': 'train'}
        fx = lambda x: spatial_batchnorm_forward(x, gamma, beta, bn_param)[0]
        fg = lambda a: spatial_batchnorm_forward(x, gamma, beta, bn_param)[0]
        fb = lambda b: spatial_batchnorm_forward(x, gamma, beta, bn_param)[0]

        dx_num = eval_numerical_gradient_array(fx, x, dout)
        da_num = eval_numerical_gradient_array(fg, gamma, dout)
        db_num = eval_numerical_gradient_array(fb, beta, dout)

        #You should expect errors of magnitudes between 1e-12~1e-06
        _, cache = spatial_batchnorm_forward(x, gamma, beta, bn_param)
        dx, dgamma, dbeta = spatial_batchnorm_backward(dout, cache)
        print('dx error: ', rel_error(dx_num, dx))
        print('dgamma error: ', rel_error(da_num, dgamma))
        print('dbeta error: ', rel_error(db_num, dbeta))
        sbn_errors = [rel_error(dx_num, dx), rel_error(da_num, dgamma), rel_error(db_num, dbeta)]

        np.random.seed(231)
        N, C, H, W = 2, 6, 4, 5
        G = 2
        x = 5 * np.random.randn(N, C, H, W) + 12
        gamma = np.random.randn(1,C,1,1)
        beta = np.random.randn(1,C,1,1)
        dout = np.random.randn(N, C, H, W)

        gn_param = {}
        fx = lambda x: spatial_groupnorm_forward(x, gamma, beta, G, gn_param)[0]
        fg = lambda a: spatial_groupnorm_forward(x, gamma, beta, G, gn_param)[0]
        fb = lambda b: spatial_groupnorm_forward(x, gamma, beta, G, gn_param)[0]

        dx_num = eval_numerical_gradient_array(fx, x, dout)
        da_num = eval_numerical_gradient_array(fg, gamma, dout)
        db_num = eval_numerical_gradient_array(fb, beta, dout)

        _, cache = spatial_groupnorm_forward(x, gamma, beta, G, gn_param)
        dx, dgamma, dbeta = spatial_groupnorm_backward(dout, cache)
        #You should expect errors of magnitudes between 1e-12~1e-07
        print('dx error: ', rel_error(dx_num, dx))
        print('dgamma error: ', rel_error(da_num, dgamma))
        print('dbeta error: ', rel_error(db_num, dbeta))
        gn_errors = [rel_error(dx_num, dx), rel_error(da_num, dgamma), rel_error(db_num, dbeta)]
    """)
    # The running averages were warmed up in place through the one bn_param dict.
    assert np.all(np.abs(ns["a_norm"].mean(axis=0)) < 0.15)
    assert np.all(np.abs(ns["a_norm"].std(axis=0) - 1) < 0.15)
    assert max(ns["bn_errors"]) < 1e-8
    assert max(ns["alt_differences"]) < 1e-12
    # fg and fb ignore their argument: the perturbed gamma / beta are read by name.
    assert max(ns["sbn_errors"]) < 1e-6             # the notebook prints 2.8e-07, 7e-12, 3e-12
    assert max(ns["gn_errors"]) < 1e-7              # ... and 5.1e-08, 3.9e-12, 1.3e-11


def test_dropout_cells(run_cell):
    ns = run_cell("""
        np.random.seed(231)
        x = np.random.randn(500, 500) + 10

        stats = []
        for p in [0.25, 0.4, 0.7]:
          out, _ = dropout_forward(x, {'mode': 'train', 'p': p})
          out_test, _ = dropout_forward(x, {'mode': 'test', 'p': p})

          print('Running tests with p = ', p)
          print('Mean of input: ', x.mean())
          print('Mean of train-time output: ', out.mean())
          print('Mean of test-time output: ', out_test.mean())
          print('Fraction of train-time output set to zero: ', (out == 0).mean())
          print('Fraction of test-time output set to zero: ', (out_test == 0).mean())
          print()
          stats.append((p, x.mean(), out.mean(), out_test.mean(), (out == 0).mean(),
                        (out_test == 0).mean()))

        np.random.seed(231)
        x = np.random.randn(10, 10) + 10
        dout = np.random.randn(*x.shape)

        dropout_param = {'mode': 'train', 'p': 0.2, 'seed': 123}
        out, cache = dropout_forward(x, dropout_param)
        dx = dropout_backward(dout, cache)
        dx_num = eval_numerical_gradient_array(lambda xx: dropout_forward(xx, dropout_param)[0], x, dout)

        # Error should be around e-10 or less
        print('dx relative error: ', rel_error(dx, dx_num))
        dropout_error = rel_error(dx, dx_num)
    """)
    for p, x_mean, train_mean, test_mean, train_zeros, test_zeros in ns["stats"]:
        assert abs(train_zeros - (1 - p)) < 0.01        # p keeps; 250,000 draws
        assert abs(train_mean - x_mean) < 0.02 * x_mean  # inverted dropout keeps the mean
        assert test_mean == x_mean and test_zeros == 0
    assert ns["dropout_error"] < 1e-9


def test_update_rule_cells(run_cell):
    ns = run_cell("""
        from cs231n.optim import sgd_momentum

        N, D = 4, 5
        w = np.linspace(-0.4, 0.6, num=N*D).reshape(N, D)
        dw = np.linspace(-0.6, 0.4, num=N*D).reshape(N, D)
        v = np.linspace(0.6, 0.9, num=N*D).reshape(N, D)

        config = {'learning_rate': 1e-3, 'velocity': v}
        next_w, _ = sgd_momentum(w, dw, config=config)

        expected_next_w = np.asarray([
          [ 0.1406,      0.20738947,  0.27417895,  0.34096842,  0.40775789],
          [ 0.47454737,  0.54133684,  0.60812632,  0.67491579,  0.74170526],
          [ 0.80849474,  0.87528421,  0.94207368,  1.00886316,  1.07565263],
          [ 1.14244211,  1.20923158,  1.27602105,  1.34281053,  1.4096    ]])
        expected_velocity = np.asarray([
          [ 0.5406,      0.55475789,  0.56891579, 0.58307368,  0.59723158],
          [ 0.61138947,  0.62554737,  0.63970526,  0.65386316,  0.66802105],
          [ 0.68217895,  0.69633684,  0.71049474,  0.72465263,  0.73881053],
          [ 0.75296842,  0.76712632,  0.78128421,  0.79544211,  0.8096    ]])

        # Should see relative errors around e-8 or less
        print('next_w error: ', rel_error(next_w, expected_next_w))
        print('velocity error: ', rel_error(expected_velocity, config['velocity']))
        momentum_errors = [rel_error(next_w, expected_next_w),
                           rel_error(expected_velocity, config['velocity'])]

        # Test RMSProp implementation
        from cs231n.optim import rmsprop

        N, D = 4, 5
        w = np.linspace(-0.4, 0.6, num=N*D).reshape(N, D)
        dw = np.linspace(-0.6, 0.4, num=N*D).reshape(N, D)
        cache = np.linspace(0.6, 0.9, num=N*D).reshape(N, D)

        config = {'learning_rate': 1e-2, 'cache': cache}
        next_w, _ = rmsprop(w, dw, config=config)

        expected_next_w = np.asarray([
          [-0.39223849, -0.34037513, -0.28849239, -0.23659121, -0.18467247],
          [-0.132737,   -0.08078555, -0.02881884,  0.02316247,  0.07515774],
          [ 0.12716641,  0.17918792,  0.23122175,  0.28326742,  0.33532447],
          [ 0.38739248,  0.43947102,  0.49155973,  0.54365823,  0.59576619]])
        expected_cache = np.asarray([
          [ 0.5976,      0.6126277,   0.6277108,   0.64284931,  0.65804321],
          [ 0.67329252,  0.68859723,  0.70395734,  0.71937285,  0.73484377],
          [ 0.75037008,  0.7659518,   0.78158892,  0.79728144,  0.81302936],
          [ 0.82883269,  0.84469141,  0.86060554,  0.87657507,  0.8926    ]])

        # You should see relative errors around e-7 or less
        print('next_w error: ', rel_error(expected_next_w, next_w))
        print('cache error: ', rel_error(expected_cache, config['cache']))
        rmsprop_errors = [rel_error(expected_next_w, next_w),
                          rel_error(expected_cache, config['cache'])]

        # Test Adam implementation
        from cs231n.optim import adam

        N, D = 4, 5
        w = np.linspace(-0.4, 0.6, num=N*D).reshape(N, D)
        dw = np.linspace(-0.6, 0.4, num=N*D).reshape(N, D)
        m = np.linspace(0.6, 0.9, num=N*D).reshape(N, D)
        v = np.linspace(0.7, 0.5, num=N*D).reshape(N, D)

        config = {'learning_rate': 1e-2, 'm': m, 'v': v, 't': 5}
        next_w, _ = adam(w, dw, config=config)

        expected_next_w = np.asarray([
          [-0.40094747, -0.34836187, -0.29577703, -0.24319299, -0.19060977],
          [-0.1380274,  -0.08544591, -0.03286534,  0.01971428,  0.0722929],
          [ 0.1248705,   0.17744702,  0.23002243,  0.28259667,  0.33516969],
          [ 0.38774145,  0.44031188,  0.49288093,  0.54544852,  0.59801459]])
        expected_v = np.asarray([
          [ 0.69966,     0.68908382,  0.67851319,  0.66794809,  0.65738853,],
          [ 0.64683452,  0.63628604,  0.6257431,   0.61520571,  0.60467385,],
          [ 0.59414753,  0.58362676,  0.57311152,  0.56260183,  0.55209767,],
          [ 0.54159906,  0.53110598,  0.52061845,  0.51013645,  0.49966,   ]])
        expected_m = np.asarray([
          [ 0.48,        0.49947368,  0.51894737,  0.53842105,  0.55789474],
          [ 0.57736842,  0.59684211,  0.61631579,  0.63578947,  0.65526316],
          [ 0.67473684,  0.69421053,  0.71368421,  0.73315789,  0.75263158],
          [ 0.77210526,  0.79157895,  0.81105263,  0.83052632,  0.85      ]])

        # You should see relative errors around e-7 or less
        print('next_w error: ', rel_error(expected_next_w, next_w))
        print('v error: ', rel_error(expected_v, config['v']))
        print('m error: ', rel_error(expected_m, config['m']))
        adam_errors = [rel_error(expected_next_w, next_w), rel_error(expected_v, config['v']),
                       rel_error(expected_m, config['m'])]
        adam_t = config['t']
    """)
    assert max(ns["momentum_errors"]) < 1e-8
    assert max(ns["rmsprop_errors"]) < 1e-6       # correct values printed to 8 digits
    assert max(ns["adam_errors"]) < 1e-6
    assert ns["adam_t"] == 6


# A student's ThreeLayerConvNet (cs231n/classifiers/cnn.py) written on the compat layers.
CNN_PY = """
class ThreeLayerConvNet(object):
    def __init__(self, input_dim=(3, 32, 32), num_filters=32, filter_size=7,
                 hidden_dim=100, num_classes=10, weight_scale=1e-3, reg=0.0,
                 dtype=np.float32):
        self.params = {}
        self.reg = reg
        self.dtype = dtype
        C, H, W = input_dim
        self.params['W1'] = weight_scale * np.random.randn(num_filters, C, filter_size, filter_size)
        self.params['b1'] = np.zeros(num_filters)
        self.params['W2'] = weight_scale * np.random.randn(num_filters * (H // 2) * (W // 2), hidden_dim)
        self.params['b2'] = np.zeros(hidden_dim)
        self.params['W3'] = weight_scale * np.random.randn(hidden_dim, num_classes)
        self.params['b3'] = np.zeros(num_classes)
        for k, v in self.params.items():
            self.params[k] = v.astype(dtype)

    def loss(self, X, y=None):
        W1, b1 = self.params['W1'], self.params['b1']
        W2, b2 = self.params['W2'], self.params['b2']
        W3, b3 = self.params['W3'], self.params['b3']
        filter_size = W1.shape[2]
        conv_param = {'stride': 1, 'pad': (filter_size - 1) // 2}
        pool_param = {'pool_height': 2, 'pool_width': 2, 'stride': 2}

        a, conv_cache = conv_forward_fast(X, W1, b1, conv_param)
        r, relu1_cache = relu_forward(a)
        p, pool_cache = max_pool_forward_fast(r, pool_param)
        h, affine1_cache = affine_forward(p, W2, b2)
        hr, relu2_cache = relu_forward(h)
        scores, affine2_cache = affine_forward(hr, W3, b3)
        if y is None:
            return scores

        loss, dscores = softmax_loss(scores, y)
        loss += 0.5 * self.reg * (np.sum(W1 * W1) + np.sum(W2 * W2) + np.sum(W3 * W3))
        grads = {}
        dhr, grads['W3'], grads['b3'] = affine_backward(dscores, affine2_cache)
        dh = relu_backward(dhr, relu2_cache)
        dp, grads['W2'], grads['b2'] = affine_backward(dh, affine1_cache)
        dr = max_pool_backward_fast(dp, pool_cache)
        da = relu_backward(dr, relu1_cache)
        _, grads['W1'], grads['b1'] = conv_backward_fast(da, conv_cache)
        grads['W1'] += self.reg * W1
        grads['W2'] += self.reg * W2
        grads['W3'] += self.reg * W3
        return loss, grads
"""


def test_three_layer_convnet_cells(run_cell):
    cnn = run_cell(CNN_PY)
    ns = run_cell("""
        np.random.seed(231)
        model = ThreeLayerConvNet()

        N = 50
        X = np.random.randn(N, 3, 32, 32)
        y = np.random.randint(10, size=N)

        loss, grads = model.loss(X, y)
        print('Initial loss (no regularization): ', loss)
        initial_loss = loss

        model.reg = 0.5
        loss, grads = model.loss(X, y)
        print('Initial loss (with regularization): ', loss)
        regularized_loss = loss

        num_inputs = 2
        input_dim = (3, 6, 6)          # the notebook uses (3, 16, 16)
        reg = 0.0
        num_classes = 10
        np.random.seed(231)
        X = np.random.randn(num_inputs, *input_dim)
        y = np.random.randint(num_classes, size=num_inputs)

        model = ThreeLayerConvNet(num_filters=3, filter_size=3,
                                  input_dim=input_dim, hidden_dim=7,
                                  dtype=np.float64)
        loss, grads = model.loss(X, y)
        # Errors should be small, but correct implementations may have
        # relative errors up to the order of e-2
        errors, numerical = {}, {}
        for param_name in sorted(grads):
            f = lambda _: model.loss(X, y)[0]
            param_grad_num = eval_numerical_gradient(f, model.params[param_name], verbose=False, h=1e-6)
            e = rel_error(param_grad_num, grads[param_name])
            print('%s max relative error: %e' % (param_name, rel_error(param_grad_num, grads[param_name])))
            errors[param_name], numerical[param_name] = e, param_grad_num
    """, ThreeLayerConvNet=cnn["ThreeLayerConvNet"])
    assert abs(ns["initial_loss"] - np.log(10)) < 1e-2          # float32 model, tiny weights
    assert ns["regularized_loss"] > ns["initial_loss"]
    assert sorted(ns["errors"]) == ["W1", "W2", "W3", "b1", "b2", "b3"]
    # The notebook's bar, "up to the order of e-2" (its own run prints 1.8e-02 for W2).
    assert max(ns["errors"].values()) < 1e-1
    # rel_error is large only where a gradient entry is tiny (weight_scale 1e-3): the
    # differences' rounding, ~1e-16 * loss / h = 2e-10, swamps it. Measured against the
    # gradient's own scale, analytic and numerical agree to that noise (a wrong rule
    # would differ by O(1) of the scale).
    for name, num in ns["numerical"].items():
        grad = ns["grads"][name]
        assert np.abs(num - grad).max() < max(1e-3 * np.abs(grad).max(), 1e-8), name
