"""CS231n notebook cells, continued (see test_compat_notebook.py for how a cell runs):
the dropout cells of Dropout.ipynb, the update-rule cells of FullyConnectedNets.ipynb and
the ThreeLayerConvNet cells of ConvolutionalNetworks.ipynb, run unchanged against
jaxconv.compat.cs231n."""
import numpy as np


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
