"""A seed-style script runs unchanged: the calling code of CS231n notebook cells,
executed against jaxconv.compat.cs231n, meets the notebooks' own printed bars.

Each cell is the notebook's text. Its imports (``from cs231n.fast_layers import ...``,
``from cs231n.optim import ...``) resolve to jaxconv.compat.cs231n through a
``cs231n`` package alias, and the namespace starts as a notebook's does:
``import numpy as np`` and ``from jaxconv.compat.cs231n import *``. The only
edits: smaller inputs in the model gradient check (to fit the test budget), and
lines that keep the printed numbers in variables for the asserts.
"""
import numpy as np

import jaxconv.compat.cs231n as compat


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
