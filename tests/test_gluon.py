"""dualgraph.gluon against MXNet Gluon 1.x's documented behaviour.

MXNet is not installed: expected values are computed by hand or with numpy from the formulas in
MXNet's docs (the optimizers' update rules, the losses' definitions, initializer scales), and
compared with PyTorch where the math is shared and torch is installed."""
import ast
import os

import numpy as np
import pytest

import dualgraph as dg
from dualgraph import autograd, gluon, init, nd
from dualgraph.errors import DualgraphError, ShapeError
from dualgraph.gluon import nn


def _mlp(hybrid=False, seed=0):
    dg.manual_seed(seed)
    net = nn.HybridSequential() if hybrid else nn.Sequential()
    net.add(nn.Dense(16, activation="relu"), nn.Dense(3))
    net.initialize(init.Xavier())
    return net


# ---- layers, parameters, deferred initialization ------------------------------------------------

def test_dense_infers_in_units_on_first_call_and_computes_x_wT_plus_b():
    layer = nn.Dense(2)
    layer.initialize()
    assert layer.weight.shape == (2, 0) and "None -> 2" in repr(layer)
    with pytest.raises(gluon.DeferredInitializationError, match="deferred"):
        layer.weight.data()
    x = nd.random.uniform(-1, 1, (3, 4))
    y = layer(x)
    assert y.shape == (3, 2) and layer.weight.data().shape == (2, 4) and repr(layer) == "Dense(4 -> 2, linear)"
    w, b = layer.weight.data().numpy(), layer.bias.data().numpy()
    assert np.all(np.abs(w) <= 0.07) and np.all(b == 0)              # Gluon's default Uniform(0.07), zero bias
    np.testing.assert_allclose(y.numpy(), x.numpy() @ w.T + b, rtol=1e-5, atol=1e-6)


def test_dense_flatten_option():
    dg.manual_seed(0)
    flat = nn.Dense(5)
    flat.initialize()
    assert flat(nd.ones((2, 3, 4))).shape == (2, 5) and flat.weight.shape == (5, 12)
    last = nn.Dense(5, flatten=False, in_units=4)
    last.initialize()
    assert last.weight.shape == (5, 4) and last(nd.ones((2, 3, 4))).shape == (2, 3, 5)
    with pytest.raises(ShapeError, match="Dense"):
        last(nd.ones((2, 3)))


def test_uninitialized_parameter_error_names_collect_params():
    layer = nn.Dense(2, in_units=3)
    with pytest.raises(gluon.ParameterError, match="collect_params"):
        layer.weight.data()
    with pytest.raises(gluon.ParameterError, match="not been initialized"):
        layer(nd.ones((1, 3)))


def test_crash_course_network_shapes():
    net = nn.Sequential()
    net.add(nn.Conv2D(channels=6, kernel_size=5, activation="relu"),
            nn.MaxPool2D(pool_size=2, strides=2),
            nn.Conv2D(channels=16, kernel_size=3, activation="relu"),
            nn.MaxPool2D(pool_size=2, strides=2),
            nn.Flatten(),
            nn.Dense(120, activation="relu"),
            nn.Dense(84, activation="relu"),
            nn.Dense(10))
    net.initialize()
    y = net(nd.random.uniform(shape=(4, 1, 28, 28)))
    assert y.shape == (4, 10)
    assert net[0].weight.data().shape == (6, 1, 5, 5) and net[5].bias.data().shape == (120,)
    assert net[2].weight.data().shape == (16, 6, 3, 3) and net[5].weight.shape == (120, 400)


def test_conv_and_pool_match_torch():
    torch = pytest.importorskip("torch")
    dg.manual_seed(1)
    conv = nn.Conv2D(4, kernel_size=3, strides=2, padding=1, in_channels=2)
    conv.initialize(init.Normal(0.5))
    x = nd.random.normal(shape=(2, 2, 7, 7))
    tconv = torch.nn.functional.conv2d(torch.tensor(x.numpy()), torch.tensor(conv.weight.data().numpy()),
                                       torch.tensor(conv.bias.data().numpy()), stride=2, padding=1)
    np.testing.assert_allclose(conv(x).numpy(), tconv.numpy(), rtol=1e-4, atol=1e-5)
    pooled = nn.MaxPool2D(pool_size=3, strides=2)(x)
    np.testing.assert_allclose(pooled.numpy(), torch.nn.functional.max_pool2d(torch.tensor(x.numpy()), 3, 2).numpy())
    avg = nn.AvgPool2D()(x)
    np.testing.assert_allclose(avg.numpy(), torch.nn.functional.avg_pool2d(torch.tensor(x.numpy()), 2).numpy(),
                               rtol=1e-6)


def test_global_pools_flatten_activation_by_hand():
    x = nd.arange(16).reshape((1, 1, 4, 4))
    assert nn.GlobalAvgPool2D()(x).reshape(-1).tolist() == [7.5]
    assert nn.GlobalMaxPool2D()(x).reshape(-1).tolist() == [15.0]
    assert nn.MaxPool2D()(x).reshape(-1).tolist() == [5, 7, 13, 15]
    assert nn.Flatten()(x).shape == (1, 16)
    assert nn.Activation("relu")(nd.array([-1, 2])).tolist() == [0, 2]
    with pytest.raises(DualgraphError, match="activation"):
        nn.Activation("relux")


def test_batchnorm_training_and_inference_by_hand():
    bn = nn.BatchNorm(in_channels=2)
    bn.initialize()
    data = np.array([[1.0, 10.0], [3.0, 30.0]], dtype=np.float32)
    with autograd.record():
        y = bn(nd.array(data))
    mean, var = data.mean(0), data.var(0)                       # biased variance, as MXNet
    np.testing.assert_allclose(y.numpy(), (data - mean) / np.sqrt(var + 1e-5), rtol=1e-5)
    np.testing.assert_allclose(bn.running_mean.data().numpy(), 0.1 * mean, rtol=1e-6)
    np.testing.assert_allclose(bn.running_var.data().numpy(), 0.9 + 0.1 * var, rtol=1e-6)
    out = bn(nd.array(data))                                     # predict mode: running statistics
    np.testing.assert_allclose(out.numpy(), (data - 0.1 * mean) / np.sqrt(0.9 + 0.1 * var + 1e-5), rtol=1e-5)
    assert bn.running_mean.grad_req == "null"


def test_dropout_layer_follows_training_mode():
    drop = nn.Dropout(0.5)
    x = nd.ones((200,))
    assert drop(x).tolist() == x.tolist()
    with autograd.record():
        y = drop(x)
    assert (y.numpy() == 0).any() and set(np.unique(y.numpy())) <= {0.0, 2.0}
    with autograd.record(train_mode=False):
        assert drop(x).tolist() == x.tolist()


def test_embedding_and_lambda():
    emb = nn.Embedding(5, 3)
    emb.initialize(init.Constant(2.0))
    assert emb(nd.array([[0, 4]])).shape == (1, 2, 3) and emb.weight.data().numpy().max() == 2.0
    assert nn.Lambda("tanh")(nd.zeros((2,))).tolist() == [0, 0]
    assert nn.HybridLambda(lambda F, x: F.relu(x) * 2)(nd.array([-1, 3])).tolist() == [0, 6]


# ---- initializers ---------------------------------------------------------------------------------

def test_initializers_fill_with_their_documented_distributions():
    dg.manual_seed(0)
    p = gluon.Parameter("w", shape=(400, 300))
    p.initialize(init.Xavier())
    scale = np.sqrt(3.0 / ((400 + 300) / 2.0))                   # magnitude 3, factor avg of fans
    w = p.data().numpy()
    assert np.abs(w).max() <= scale and np.abs(w).max() > 0.95 * scale
    assert abs(w.std() - scale / np.sqrt(3)) < 0.01              # uniform(-s, s) has std s / sqrt(3)
    p.initialize(init.Xavier(rnd_type="gaussian", factor_type="in", magnitude=2), force_reinit=True)
    assert abs(p.data().numpy().std() - np.sqrt(2.0 / 300)) < 0.003
    p.initialize(init.Normal(sigma=0.02), force_reinit=True)
    assert abs(p.data().numpy().std() - 0.02) < 0.001 and abs(p.data().numpy().mean()) < 0.001
    p.initialize(init.Uniform(0.5), force_reinit=True)
    assert np.abs(p.data().numpy()).max() <= 0.5
    for initializer, value in ((init.Zero(), 0.0), (init.One(), 1.0), (init.Constant(3.5), 3.5), ("ones", 1.0)):
        p.initialize(initializer, force_reinit=True)
        assert np.all(p.data().numpy() == value)
    with pytest.raises(ShapeError, match="Xavier"):
        gluon.Parameter("b", shape=(3,)).initialize(init.Xavier())
    import json
    assert json.loads(init.Normal(0.1).dumps()) == ["normal", {"sigma": 0.1}]


def test_a_parameters_own_initializer_wins_and_initialize_is_idempotent():
    layer = nn.Dense(3, in_units=2, bias_initializer=init.Constant(7.0))
    layer.initialize(init.One())
    assert np.all(layer.weight.data().numpy() == 1) and np.all(layer.bias.data().numpy() == 7)
    layer.weight.data()[...] = 5
    layer.initialize(init.Zero())                                # already initialized: nothing changes
    assert np.all(layer.weight.data().numpy() == 5)
    layer.initialize(init.Zero(), force_reinit=True)
    assert np.all(layer.weight.data().numpy() == 0) and np.all(layer.bias.data().numpy() == 7)


# ---- collect_params, grad_req ---------------------------------------------------------------------

def test_collect_params_names_select_and_setattr():
    net = _mlp()
    params = net.collect_params()
    names = list(params.keys())
    assert len(names) == 4 and names[0].endswith("weight") and names[1].endswith("bias")
    assert all(isinstance(p, gluon.Parameter) for p in params.values())
    assert [k for k, _ in params.items()] == names and list(params) == names
    assert list(net.collect_params(".*weight").keys()) == [names[0], names[2]]
    params.setattr("grad_req", "null")
    assert all(p.grad_req == "null" for p in params.values())
    net(nd.ones((2, 5)))
    with pytest.raises(gluon.ParameterError, match="grad_req"):
        params[names[0]].grad()


def test_name_scope_and_params_get_in_a_custom_block():
    class Model(nn.Block):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            with self.name_scope():
                self.dense = nn.Dense(3, in_units=2)
                self.scale = self.params.get("scale", shape=(3,), init=init.Constant(2.0))

        def forward(self, x):
            return self.dense(x) * self.scale.data()

    m = Model(prefix="model_")
    m.initialize(init.One())
    assert set(m.collect_params().keys()) == {"model_dense0_weight", "model_dense0_bias", "model_scale"}
    assert m(nd.ones((1, 2))).tolist() == [[4.0, 4.0, 4.0]]      # (1 + 1 + 0 bias) * 2


def test_grad_req_write_overwrites_and_add_accumulates():
    w = gluon.Parameter("w", shape=(2,), init=init.Constant(1.0))
    w.initialize()
    x = nd.array([3.0, 4.0])
    for _ in range(2):
        with autograd.record():
            y = nd.sum(w.data() * x)
        y.backward()
    assert w.grad().tolist() == [3.0, 4.0]                       # 'write': the last backward only
    w.grad_req = "add"
    w.zero_grad()
    for _ in range(2):
        with autograd.record():
            y = nd.sum(w.data() * x)
        y.backward()
    assert w.grad().tolist() == [6.0, 8.0]
    w.zero_grad()
    assert w.grad().tolist() == [0.0, 0.0]


def test_set_data_and_errors():
    p = gluon.Parameter("p", shape=(2,))
    p.initialize(init.Zero())
    p.set_data(nd.array([1, 2]))
    assert p.data().tolist() == [1, 2]
    with pytest.raises(ShapeError, match="set_data"):
        p.set_data(nd.array([1, 2, 3]))
    with pytest.raises(DualgraphError, match="grad_req"):
        gluon.Parameter("q", grad_req="sometimes")


# ---- losses -----------------------------------------------------------------------------------------

def _np_log_softmax(z, axis=-1):
    z = z - z.max(axis, keepdims=True)
    return z - np.log(np.exp(z).sum(axis, keepdims=True))


def test_l2_and_l1_loss_are_per_sample_with_mxnets_half_factor():
    pred = np.array([[1.0, 2.0], [3.0, 5.0]], dtype=np.float32)
    label = np.array([[0.0, 0.0], [3.0, 3.0]], dtype=np.float32)
    l2 = gluon.loss.L2Loss()(nd.array(pred), nd.array(label))
    assert l2.shape == (2,)
    np.testing.assert_allclose(l2.numpy(), [(1 + 4) / 2 / 2, (0 + 4) / 2 / 2])
    l1 = gluon.loss.L1Loss()(nd.array(pred), nd.array(label))
    np.testing.assert_allclose(l1.numpy(), [1.5, 1.0])
    # a 1-d label is reshaped like the prediction; sample_weight scales each sample
    one = gluon.loss.L2Loss(weight=2.0)(nd.array([[1.0], [2.0]]), nd.array([0.0, 0.0]), nd.array([[1.0], [0.5]]))
    np.testing.assert_allclose(one.numpy(), [1.0, 2.0])


def test_softmax_cross_entropy_sparse_dense_and_from_logits():
    logits = np.array([[1.0, 2.0, 0.5], [0.1, -1.0, 3.0]], dtype=np.float32)
    labels = np.array([1, 2])
    lsm = _np_log_softmax(logits)
    ref = -lsm[np.arange(2), labels]
    loss = gluon.loss.SoftmaxCrossEntropyLoss()
    np.testing.assert_allclose(loss(nd.array(logits), nd.array(labels)).numpy(), ref, rtol=1e-6)   # float labels
    dense = gluon.loss.SoftmaxCrossEntropyLoss(sparse_label=False)
    onehot = np.eye(3, dtype=np.float32)[labels]
    np.testing.assert_allclose(dense(nd.array(logits), nd.array(onehot)).numpy(), ref, rtol=1e-6)
    fl = gluon.loss.SoftmaxCrossEntropyLoss(from_logits=True)
    np.testing.assert_allclose(fl(nd.array(lsm), nd.array(labels)).numpy(), ref, rtol=1e-6)
    ax = gluon.loss.SoftmaxCELoss(axis=0, batch_axis=1)            # classes along axis 0, samples along 1
    np.testing.assert_allclose(ax(nd.array(logits.T), nd.array(labels)).numpy(), ref, rtol=1e-6)
    with pytest.raises(ShapeError, match="SoftmaxCrossEntropyLoss"):
        loss(nd.array(logits), nd.array([1, 2, 0]))


def test_sigmoid_bce_logits_probabilities_and_pos_weight():
    z = np.array([[-2.0, 0.5], [3.0, -0.1]], dtype=np.float32)
    t = np.array([[0.0, 1.0], [1.0, 0.0]], dtype=np.float32)
    p = 1 / (1 + np.exp(-z))
    ref = -(t * np.log(p) + (1 - t) * np.log(1 - p)).mean(1)
    np.testing.assert_allclose(gluon.loss.SigmoidBCELoss()(nd.array(z), nd.array(t)).numpy(), ref, rtol=1e-5)
    np.testing.assert_allclose(gluon.loss.SigmoidBinaryCrossEntropyLoss(from_sigmoid=True)(
        nd.array(p), nd.array(t)).numpy(), ref, rtol=1e-5)
    pw = np.array([2.0, 3.0], dtype=np.float32)
    ref_pw = -(pw * t * np.log(p) + (1 - t) * np.log(1 - p)).mean(1)
    np.testing.assert_allclose(gluon.loss.SigmoidBCELoss()(nd.array(z), nd.array(t), None, nd.array(pw)).numpy(),
                               ref_pw, rtol=1e-5)


def test_other_losses_by_hand():
    pred, label = nd.array([[0.0, 3.0]]), nd.array([[0.5, 0.0]])
    np.testing.assert_allclose(gluon.loss.HuberLoss()(pred, label).numpy(), [(0.125 + 2.5) / 2])
    np.testing.assert_allclose(gluon.loss.HingeLoss()(nd.array([[0.5, -2.0]]), nd.array([[1.0, -1.0]])).numpy(),
                               [0.25])
    q = np.array([[0.2, 0.8]], dtype=np.float32)
    logp = np.log(np.array([[0.5, 0.5]], dtype=np.float32))
    np.testing.assert_allclose(gluon.loss.KLDivLoss()(nd.array(logp), nd.array(q)).numpy(),
                               (q * (np.log(q) - logp)).mean(1), rtol=1e-5)


def test_losses_match_torch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(2)
    z = rng.standard_normal((5, 4)).astype(np.float32)
    y = rng.integers(0, 4, 5)
    np.testing.assert_allclose(gluon.loss.SoftmaxCrossEntropyLoss()(nd.array(z), nd.array(y)).numpy(),
                               torch.nn.functional.cross_entropy(torch.tensor(z), torch.tensor(y),
                                                                 reduction="none").numpy(), rtol=1e-5)
    t = (rng.random((5, 4)) > 0.5).astype(np.float32)
    np.testing.assert_allclose(gluon.loss.SigmoidBCELoss()(nd.array(z), nd.array(t)).numpy(),
                               torch.nn.functional.binary_cross_entropy_with_logits(
                                   torch.tensor(z), torch.tensor(t), reduction="none").mean(1).numpy(), rtol=1e-5)
    np.testing.assert_allclose(gluon.loss.L2Loss()(nd.array(z), nd.array(t)).numpy(),
                               0.5 * torch.nn.functional.mse_loss(torch.tensor(z), torch.tensor(t),
                                                                  reduction="none").mean(1).numpy(), rtol=1e-6)


# ---- Trainer and MXNet's update rules -------------------------------------------------------------

def _one_param(value=(1.0, -2.0)):
    w = gluon.Parameter("w", shape=(len(value),))
    w.initialize(init.Zero())
    w.set_data(nd.array(value))
    return w


def _backward(w, c=(3.0, 4.0)):
    with autograd.record():
        y = nd.sum(w.data() * nd.array(c))
    y.backward()                                                  # grad = c


def test_sgd_momentum_wd_rescale_follow_mxnet_with_lr_inside_the_momentum():
    w = _one_param()
    trainer = gluon.Trainer([w], "sgd", {"learning_rate": 0.1, "momentum": 0.9, "wd": 0.01})
    assert trainer.learning_rate == 0.1
    c, wv, mom = np.array([3.0, 4.0]), np.array([1.0, -2.0]), np.zeros(2)
    for lr in (0.1, 0.2):
        trainer.set_learning_rate(lr)
        _backward(w)
        trainer.step(2)
        g = c / 2                                                 # rescale_grad = 1 / batch_size
        mom = 0.9 * mom - lr * (g + 0.01 * wv)
        wv = wv + mom
        np.testing.assert_allclose(w.data().numpy(), wv, rtol=1e-6)
    np.testing.assert_allclose(wv, [0.411402, -2.771804], rtol=1e-6)   # worked by hand
    assert trainer.learning_rate == 0.2


def test_sgd_matches_torch_when_lr_is_constant():
    torch = pytest.importorskip("torch")
    w = _one_param()
    trainer = gluon.Trainer([w], "sgd", {"learning_rate": 0.05, "momentum": 0.9, "wd": 0.1})
    tw = torch.tensor([1.0, -2.0], requires_grad=True)
    opt = torch.optim.SGD([tw], lr=0.05, momentum=0.9, weight_decay=0.1)
    for _ in range(3):
        _backward(w)
        trainer.step(4)
        opt.zero_grad()
        (tw * torch.tensor([3.0, 4.0])).sum().div(4).backward()
        opt.step()
    np.testing.assert_allclose(w.data().numpy(), tw.detach().numpy(), rtol=1e-5)


def test_adam_nag_rmsprop_follow_mxnets_formulas():
    c = np.array([3.0, 4.0])
    cases = {
        "adam": {"learning_rate": 0.1, "wd": 0.01},
        "nag": {"learning_rate": 0.1, "momentum": 0.9, "wd": 0.01},
        "rmsprop": {"learning_rate": 0.1, "wd": 0.01},
        "RMSProp": {"learning_rate": 0.1, "centered": True, "gamma1": 0.95, "gamma2": 0.9},
    }
    for name, kw in cases.items():
        w = _one_param()
        trainer = gluon.Trainer([w], name, dict(kw))
        wv = np.array([1.0, -2.0])
        s1, s2, s3 = np.zeros(2), np.zeros(2), np.zeros(2)
        lr, wd = kw["learning_rate"], kw.get("wd", 0.0)
        for t in range(1, 4):
            _backward(w)
            trainer.step(1)
            if name == "adam":
                g = c + wd * wv
                s1 = 0.9 * s1 + 0.1 * g
                s2 = 0.999 * s2 + 0.001 * g * g
                wv = wv - lr * np.sqrt(1 - 0.999 ** t) / (1 - 0.9 ** t) * s1 / (np.sqrt(s2) + 1e-8)
            elif name == "nag":
                g = c + wd * wv
                s1 = 0.9 * s1 + g
                wv = wv - lr * (g + 0.9 * s1)
            elif name == "rmsprop":
                g = c + wd * wv
                s1 = 0.9 * s1 + 0.1 * g * g
                wv = wv - lr * g / np.sqrt(s1 + 1e-8)
            else:
                g = c
                s1 = 0.95 * s1 + 0.05 * g * g
                s2 = 0.95 * s2 + 0.05 * g
                s3 = 0.9 * s3 - lr * g / np.sqrt(s1 - s2 * s2 + 1e-8)
                wv = wv + s3
            np.testing.assert_allclose(w.data().numpy(), wv, rtol=2e-5, err_msg=f"{name} step {t}")


def test_trainer_refuses_stale_gradients_and_bad_arguments():
    w = _one_param()
    trainer = gluon.Trainer([w], "sgd", {"learning_rate": 0.1})
    with pytest.raises(gluon.StaleGradientError, match="ignore_stale_grad"):
        trainer.step(1)                                           # no backward yet
    _backward(w)
    trainer.step(1)
    with pytest.raises(gluon.StaleGradientError, match="has not been updated"):
        trainer.step(1)                                           # the same gradient again
    before = w.data().tolist()
    trainer.step(1, ignore_stale_grad=True)                       # skipped, not applied twice
    assert w.data().tolist() == before
    with pytest.raises(DualgraphError, match="optimizer"):
        gluon.Trainer([w], "sgdd")
    with pytest.raises(DualgraphError, match="list or dict of Parameters"):
        gluon.Trainer([nd.ones((2,))], "sgd")


def test_trainer_skips_frozen_parameters():
    net = _mlp()
    net(nd.ones((2, 5)))
    net[0].collect_params().setattr("grad_req", "null")
    frozen = net[0].weight.data().numpy().copy()
    trainer = gluon.Trainer(net.collect_params(), "sgd", {"learning_rate": 1.0})
    with autograd.record():
        loss = nd.sum(net(nd.ones((2, 5))))
    loss.backward()
    before = net[1].weight.data().numpy().copy()
    trainer.step(2)
    assert np.array_equal(net[0].weight.data().numpy(), frozen)
    assert not np.array_equal(net[1].weight.data().numpy(), before)


def test_trainer_state_roundtrip(tmp_path):
    w = _one_param()
    trainer = gluon.Trainer([w], "adam", {"learning_rate": 0.1})
    _backward(w)
    trainer.step(1)
    trainer.save_states(str(tmp_path / "t.states"))
    w2 = _one_param(tuple(w.data().tolist()))
    t2 = gluon.Trainer([w2], "adam", {"learning_rate": 0.1})
    t2.load_states(str(tmp_path / "t.states"))
    for p, t in ((w, trainer), (w2, t2)):
        _backward(p)
        t.step(1)
    np.testing.assert_allclose(w2.data().numpy(), w.data().numpy(), rtol=1e-6)


# ---- data -----------------------------------------------------------------------------------------

def test_array_dataset_and_dataloader_batches():
    X = nd.arange(20).reshape((10, 2))
    y = nd.arange(10)
    ds = gluon.data.ArrayDataset(X, y)
    assert len(ds) == 10 and ds[3][0].tolist() == [6.0, 7.0]
    batches = list(gluon.data.DataLoader(ds, batch_size=4))
    assert [b[0].shape for b in batches] == [(4, 2), (4, 2), (2, 2)]       # last_batch='keep'
    assert batches[0][1].tolist() == [0, 1, 2, 3] and batches[0][1].dtype == np.float32
    assert len(list(gluon.data.DataLoader(ds, 4, last_batch="discard"))) == 2
    seen = sorted(int(v) for _, lab in gluon.data.DataLoader(ds, 3, shuffle=True) for v in lab.tolist())
    assert seen == list(range(10))
    with pytest.raises(DualgraphError, match="same length"):
        gluon.data.ArrayDataset(X, nd.arange(3))
    with pytest.raises(DualgraphError, match="last_batch"):
        gluon.data.DataLoader(ds, 4, last_batch="sometimes")
    with pytest.raises(DualgraphError, match="batch_size"):
        gluon.data.DataLoader(ds)


def test_rollover_carries_the_short_batch_into_the_next_epoch():
    loader = gluon.data.DataLoader(gluon.data.ArrayDataset(np.arange(10)), batch_size=4, last_batch="rollover")
    first = [b.tolist() for b in loader]
    assert first == [[0, 1, 2, 3], [4, 5, 6, 7]]
    assert len(loader) == 3                                         # 8, 9 pending + 10 new
    second = [b.tolist() for b in loader]
    assert second == [[8, 9, 0, 1], [2, 3, 4, 5], [6, 7, 8, 9]]    # 8, 9 rolled over
    assert len(loader) == 2


def test_transforms_and_transform_first():
    img = np.full((4, 4, 3), 255, dtype=np.uint8)
    t = gluon.data.vision.transforms.ToTensor()(img)
    assert t.shape == (3, 4, 4) and t.dtype == np.float32 and float(t.max().item()) == 1.0
    norm = gluon.data.vision.transforms.Normalize(0.5, 0.25)(t)
    assert float(norm.max().item()) == 2.0
    ds = gluon.data.ArrayDataset(nd.ones((3, 2)), nd.arange(3)).transform_first(lambda x: x * 10)
    assert ds[1][0].tolist() == [10, 10] and ds[1][1] == 1


# ---- metric ---------------------------------------------------------------------------------------

def test_accuracy_metric():
    acc = dg.metric.Accuracy()
    acc.update([nd.array([0, 1, 1])], [nd.array([[0.9, 0.1], [0.3, 0.7], [0.6, 0.4]])])
    assert acc.get() == ("accuracy", 2 / 3)
    acc.reset()
    assert np.isnan(acc.get()[1])


# ---- hybridize ------------------------------------------------------------------------------------

def test_hybridize_compiles_the_second_call_and_gives_the_same_values():
    calls = []

    class Net(nn.HybridBlock):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.dense = nn.Dense(3, in_units=4)

        def hybrid_forward(self, F, x):
            calls.append(1)                                       # Python runs once per trace only
            return F.relu(self.dense(x)) + 1

    dg.manual_seed(0)
    net = Net()
    net.initialize(init.Normal(1.0))
    x = nd.random.normal(shape=(2, 4))
    eager = net(x)
    net.hybridize()
    outs = [net(x) for _ in range(3)]
    assert len(calls) == 2 and net.compiled.trace_count == 1    # one eager call, one trace, two graph runs
    for o in outs:
        np.testing.assert_allclose(o.numpy(), eager.numpy(), rtol=1e-6)
    net(nd.ones((5, 4)))                                           # a new shape traces again
    assert net.compiled.trace_count == 2
    net.hybridize(False)
    net(x)
    assert len(calls) == 4


def test_hybridized_network_with_deferred_shapes_initializes_on_its_first_call():
    net = _mlp(hybrid=True)
    net.hybridize()
    x = nd.ones((2, 5))
    first = net(x)
    assert net[0].weight.shape == (16, 5) and net.compiled is None      # the first call ran eagerly
    second = net(x)
    assert net.compiled.trace_count == 1
    np.testing.assert_allclose(second.numpy(), first.numpy(), rtol=1e-6)


def _train(hybrid, X, Y, epochs=3, optimizer="sgd", opts=None):
    net = _mlp(hybrid=hybrid)
    if hybrid:
        net.hybridize()
    dg.manual_seed(1)
    loader = gluon.data.DataLoader(gluon.data.ArrayDataset(X, Y), batch_size=16, shuffle=True)
    loss_fn = gluon.loss.SoftmaxCrossEntropyLoss()
    trainer = gluon.Trainer(net.collect_params(), optimizer, opts or {"learning_rate": 0.5})
    losses = []
    for _ in range(epochs):
        total, n = 0.0, 0
        for data, label in loader:
            with autograd.record():
                loss = loss_fn(net(data), label)
            loss.backward()
            trainer.step(data.shape[0])
            total += loss.mean().asscalar()
            n += 1
        losses.append(total / n)
    return net, losses


def _blobs(n=200, seed=0):
    rng = np.random.default_rng(seed)
    centers = np.array([[2, 0, 0, 0, 0], [0, 2, 0, 0, 0], [0, 0, 2, 0, 0]], dtype=np.float32)
    y = rng.integers(0, 3, n)
    X = centers[y] + 0.5 * rng.standard_normal((n, 5)).astype(np.float32)
    return nd.array(X), nd.array(y)


def test_crash_course_training_loop_learns_and_hybrid_equals_eager():
    X, Y = _blobs()
    eager_net, eager_losses = _train(False, X, Y)
    hybrid_net, hybrid_losses = _train(True, X, Y)
    assert eager_losses[-1] < 0.1 < eager_losses[0]
    acc = (eager_net(X).argmax(axis=1) == Y.astype("float32")).mean().asscalar()
    assert acc > 0.95
    assert hybrid_net.compiled is not None and hybrid_net.compiled.trace_count == 2   # batch 16 and the 8-row tail
    for a, b in zip(eager_net.collect_params().values(), hybrid_net.collect_params().values()):
        np.testing.assert_allclose(a.data().numpy(), b.data().numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(eager_losses, hybrid_losses, rtol=1e-5)


def test_crash_course_on_the_digits_dataset():
    datasets = pytest.importorskip("sklearn.datasets")
    d = datasets.load_digits()
    X, Y = nd.array(d.images.reshape(-1, 1, 8, 8) / 16.0), nd.array(d.target)
    dg.manual_seed(0)
    net = nn.HybridSequential()
    net.add(nn.Conv2D(channels=6, kernel_size=3, activation="relu"), nn.MaxPool2D(pool_size=2, strides=2),
            nn.Flatten(), nn.Dense(32, activation="relu"), nn.Dense(10))
    net.initialize(init=init.Xavier())
    net.hybridize()
    loader = gluon.data.DataLoader(gluon.data.ArrayDataset(X, Y), batch_size=64, shuffle=True)
    loss_fn = gluon.loss.SoftmaxCrossEntropyLoss()
    trainer = gluon.Trainer(net.collect_params(), "sgd", {"learning_rate": 0.1, "momentum": 0.9})
    metric = dg.metric.Accuracy()
    for _ in range(4):
        metric.reset()
        for data, label in loader:
            with autograd.record():
                output = net(data)
                loss = loss_fn(output, label)
            loss.backward()
            trainer.step(data.shape[0])
            metric.update(label, output)
    assert metric.get()[1] > 0.9


def test_adam_training_hybrid_equals_eager():
    X, Y = _blobs(96, seed=3)
    a, la = _train(False, X, Y, epochs=2, optimizer="adam", opts={"learning_rate": 0.01})
    b, lb = _train(True, X, Y, epochs=2, optimizer="adam", opts={"learning_rate": 0.01})
    assert la[-1] < la[0]
    for p, q in zip(a.collect_params().values(), b.collect_params().values()):
        np.testing.assert_allclose(p.data().numpy(), q.data().numpy(), rtol=1e-5, atol=1e-6)


# ---- files ----------------------------------------------------------------------------------------

def test_save_and_load_parameters_by_structural_name(tmp_path):
    net = _mlp()
    x = nd.ones((2, 5))
    ref = net(x)
    path = str(tmp_path / "net.params")
    net.save_parameters(path)
    assert sorted(dg.load(path)) == ["0.bias", "0.weight", "1.bias", "1.weight"]
    fresh = nn.Sequential()
    fresh.add(nn.Dense(16, activation="relu"), nn.Dense(3))
    fresh.load_parameters(path)                                    # deferred shapes come from the file
    np.testing.assert_allclose(fresh(x).numpy(), ref.numpy(), rtol=1e-6)
    smaller = nn.Sequential()
    smaller.add(nn.Dense(16, activation="relu"))
    with pytest.raises(gluon.ParameterError, match="ignore_extra"):
        smaller.load_parameters(path)
    smaller.load_parameters(path, ignore_extra=True)
    bigger = nn.Sequential()
    bigger.add(nn.Dense(16), nn.Dense(3), nn.Dense(2))
    with pytest.raises(gluon.ParameterError, match="allow_missing"):
        bigger.load_parameters(path)
    wrong = nn.Sequential()
    wrong.add(nn.Dense(8), nn.Dense(3))
    with pytest.raises(ShapeError):
        wrong.load_parameters(path)


def test_parameter_dict_save_load(tmp_path):
    net = _mlp()
    net(nd.ones((1, 5)))
    params = net.collect_params()
    path = str(tmp_path / "pd.params")
    params.save(path)
    before = {k: v.data().numpy().copy() for k, v in params.items()}
    params.initialize(init.Zero(), force_reinit=True)
    params.load(path)
    for k, v in params.items():
        np.testing.assert_array_equal(v.data().numpy(), before[k])


# ---- autograd names -------------------------------------------------------------------------------

def test_autograd_modes_used_by_gluon_scripts():
    assert not autograd.is_recording() and not autograd.is_training()
    with autograd.record():
        assert autograd.is_recording() and autograd.is_training()
        with autograd.pause():
            assert not autograd.is_recording() and not autograd.is_training()
        with autograd.predict_mode():
            assert not autograd.is_training()
    with autograd.train_mode():
        assert autograd.is_training() and not autograd.is_recording()


# ---- layering -------------------------------------------------------------------------------------

def _mxnet_imports(path):
    """The imports in a file that reach dualgraph.nd or dualgraph.gluon."""
    found = []
    for node in ast.walk(ast.parse(open(path).read())):
        if isinstance(node, ast.ImportFrom):
            mod = node.module or ""
            targets = [mod.split(".")[0]] if node.level and mod else [a.name for a in node.names] if node.level \
                else [mod.split(".")[1] if mod.startswith("dualgraph.") else ""]
            found += [t for t in targets if t in ("nd", "gluon")]
        elif isinstance(node, ast.Import):
            found += [a.name for a in node.names if a.name.startswith(("dualgraph.nd", "dualgraph.gluon"))]
    return found


def test_nothing_below_the_mxnet_layer_imports_it():
    pkg = os.path.dirname(dg.__file__)
    hits = []
    for root, _, files in os.walk(pkg):
        rel_root = os.path.relpath(root, pkg)
        if rel_root.split(os.sep)[0] in ("nd", "gluon"):
            continue
        for f in files:
            # the package root exports them and _methods binds NDArray's methods onto Tensor
            if f.endswith(".py") and not (rel_root == "." and f in ("__init__.py", "_methods.py")):
                hits += [f"{rel_root}/{f}: {m}" for m in _mxnet_imports(os.path.join(root, f))]
    assert hits == []
    nd_dir = os.path.join(pkg, "nd")
    assert [m for f in os.listdir(nd_dir) if f.endswith(".py")
            for m in _mxnet_imports(os.path.join(nd_dir, f)) if m == "gluon"] == []


# ---- scripts as users type them --------------------------------------------------------------------

def test_forward_outside_record_builds_no_graph_as_in_mxnet():
    net = _mlp()
    out = net(nd.ones((2, 5)))
    assert out.grad_fn is None and not out.requires_grad
    with autograd.record():
        out = net(nd.ones((2, 5)))
    assert out.grad_fn is not None


def test_linear_regression_tutorial_runs_unchanged():
    # the d2l (MXNet edition) "concise linear regression" script with only its imports changed
    from dualgraph.gluon import data as gdata
    from dualgraph.gluon import loss as gloss

    dg.manual_seed(0)
    num_inputs, num_examples = 2, 1000
    true_w, true_b = [2, -3.4], 4.2
    features = nd.random.normal(scale=1, shape=(num_examples, num_inputs))
    labels = true_w[0] * features[:, 0] + true_w[1] * features[:, 1] + true_b
    labels += nd.random.normal(scale=0.01, shape=labels.shape)
    batch_size = 10
    dataset = gdata.ArrayDataset(features, labels)
    data_iter = gdata.DataLoader(dataset, batch_size, shuffle=True)
    net = nn.Sequential()
    net.add(nn.Dense(1))
    net.initialize(init.Normal(sigma=0.01))
    loss = gloss.L2Loss()
    trainer = gluon.Trainer(net.collect_params(), "sgd", {"learning_rate": 0.03})
    for epoch in range(1, 4):
        for X, y in data_iter:
            with autograd.record():
                l = loss(net(X), y)
            l.backward()
            trainer.step(batch_size)
        l = loss(net(features), labels)
        line = "epoch %d, loss: %f" % (epoch, l.mean().asnumpy())
    assert float(line.split()[-1]) < 1e-3
    dense = net[0]
    np.testing.assert_allclose(dense.weight.data().numpy(), [true_w], atol=0.01)
    np.testing.assert_allclose(dense.bias.data().numpy(), [true_b], atol=0.01)
    assert dense.weight.grad().shape == (1, 2)


def test_mixed_block_from_the_crash_course(capsys):
    class MixMLP(nn.Block):
        def __init__(self, **kwargs):
            super(MixMLP, self).__init__(**kwargs)
            self.blk = nn.Sequential()
            self.blk.add(nn.Dense(3, activation="relu"), nn.Dense(4, activation="relu"))
            self.dense = nn.Dense(5)

        def forward(self, x):
            y = nd.relu(self.blk(x))
            print(y)
            return self.dense(y)

    net = MixMLP()
    assert "(blk): Sequential(" in repr(net) and "(dense): Dense(None -> 5, linear)" in repr(net)
    net.initialize()
    assert net(nd.random.uniform(shape=(2, 2))).shape == (2, 5)
    assert "tensor(" in capsys.readouterr().out                    # a Block runs its Python every call
    assert net.blk[1].weight.data().shape == (4, 3)


def test_split_and_load_and_export_to_onnx(tmp_path):
    parts = gluon.utils.split_and_load(nd.arange(8).reshape((4, 2)), [dg.cpu(), dg.cpu()])
    assert [p.tolist() for p in parts] == [[[0, 1], [2, 3]], [[4, 5], [6, 7]]]
    with pytest.raises(ShapeError, match="evenly"):
        gluon.utils.split_and_load(nd.ones((3, 2)), [dg.cpu(), dg.cpu()])
    ort = pytest.importorskip("onnxruntime")
    net = _mlp(hybrid=True)
    x = nd.ones((3, 5))
    y = net(x)
    path = str(tmp_path / "mlp")
    net.export(path, example_inputs=x)
    assert sorted(os.listdir(tmp_path)) == ["mlp-0000.params", "mlp.onnx"]
    sess = ort.InferenceSession(path + ".onnx")
    np.testing.assert_allclose(sess.run(None, {sess.get_inputs()[0].name: x.numpy()})[0], y.numpy(), rtol=1e-5)


def test_hybridized_batchnorm_and_dropout_equal_eager_call_by_call():
    def run(hybrid):
        dg.manual_seed(0)
        net = nn.HybridSequential()
        net.add(nn.Dense(4, in_units=3), nn.BatchNorm(in_channels=4), nn.Dropout(0.5))
        net.initialize()
        if hybrid:
            net.hybridize()
        x = nd.random.normal(shape=(6, 3))
        outs = []
        for _ in range(3):
            with autograd.record():
                outs.append(net(x).numpy())
        return net, outs

    eager, eager_outs = run(False)
    hybrid, hybrid_outs = run(True)
    assert hybrid.compiled.trace_count == 1
    masks = [o == 0 for o in hybrid_outs]
    assert not np.array_equal(masks[1], masks[2])              # a fresh dropout mask on every compiled call
    for a, b in zip(eager_outs, hybrid_outs):
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-6)
    for name in ("running_mean", "running_var"):               # the graph writes the statistics back each call
        np.testing.assert_allclose(getattr(hybrid[1], name).data().numpy(), getattr(eager[1], name).data().numpy(),
                                   rtol=1e-5)
    assert not np.allclose(hybrid[1].running_mean.data().numpy(), 0)


def test_array_dataset_batches_read_in_one_gather_equal_item_by_item_batches():
    rng = np.random.default_rng(4)
    X = nd.array(rng.standard_normal((23, 2, 3)))
    y_int = rng.integers(0, 5, 23)                                # numpy ints keep their dtype
    ds = gluon.data.ArrayDataset(X, y_int, nd.arange(23))
    slow = gluon.data.DataLoader(ds, 5, batchify_fn=lambda b: gluon.data.default_batchify_fn(b))
    fast = gluon.data.DataLoader(ds, 5)
    for a, b in zip(slow, fast):
        for u, v in zip(a, b):
            assert u.dtype == v.dtype and u.shape == v.shape and np.array_equal(u.numpy(), v.numpy())
    assert next(iter(fast))[1].dtype == np.int64 and next(iter(fast))[2].dtype == np.float32
    listed = gluon.data.DataLoader(gluon.data.ArrayDataset([[1, 2], [3, 4], [5, 6]], [0, 1, 0]), 2)
    first = next(iter(listed))
    assert first[0].tolist() == [[1, 2], [3, 4]] and first[1].tolist() == [0, 1]


def test_lr_schedulers_drive_the_trainers_rate():
    sched = dg.lr_scheduler.FactorScheduler(step=2, factor=0.5)
    w = _one_param()
    trainer = gluon.Trainer([w], "sgd", {"learning_rate": 1.0, "lr_scheduler": sched})
    rates = []
    for _ in range(6):
        _backward(w)
        trainer.step(1)
        rates.append(trainer.learning_rate)
    assert rates == [1.0, 1.0, 0.5, 0.5, 0.25, 0.25]              # halved after every 2 updates
    multi = dg.lr_scheduler.MultiFactorScheduler(step=[2, 5], factor=0.1, base_lr=1.0)
    assert [round(multi(t), 6) for t in range(1, 8)] == [1.0, 1.0, 0.1, 0.1, 0.1, 0.01, 0.01]
    cos = dg.lr_scheduler.CosineScheduler(max_update=10, base_lr=2.0, final_lr=0.0)
    assert cos(0) == 2.0 and abs(cos(5) - 1.0) < 1e-12 and abs(cos(10)) < 1e-12
    poly = dg.lr_scheduler.PolyScheduler(max_update=4, base_lr=1.0, pwr=2, warmup_steps=2, warmup_begin_lr=0.0)
    assert poly(1) == 0.5 and poly(3) == 0.25                     # linear warmup, then (1 - 1/2)^2
    with pytest.raises(DualgraphError, match="set_learning_rate|lr_scheduler"):
        trainer.set_learning_rate(0.1)


def test_mxnet_top_level_names():
    assert dg.random.seed is nd.random.seed and dg.optimizer.Adam is gluon.optimizer.Adam
    opt = dg.optimizer.SGD(learning_rate=0.2, momentum=0.5)
    w = _one_param()
    trainer = gluon.Trainer([w], opt)
    assert trainer.learning_rate == 0.2 and trainer.optimizer is opt
    with pytest.raises(DualgraphError, match="optimizer_params"):
        gluon.Trainer([w], opt, {"learning_rate": 0.1})


def _write_idx(path, arr):
    import gzip
    import struct
    header = bytes([0, 0, 8, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + arr.astype(np.uint8).tobytes())


def test_mnist_reads_local_idx_files_and_feeds_the_crash_course_pipeline(tmp_path):
    from dualgraph.gluon.data.vision import datasets, transforms
    rng = np.random.default_rng(0)
    images, labels = rng.integers(0, 256, (10, 28, 28)), rng.integers(0, 10, 10)
    _write_idx(str(tmp_path / "train-images-idx3-ubyte.gz"), images)
    _write_idx(str(tmp_path / "train-labels-idx1-ubyte.gz"), labels)
    mnist_train = datasets.FashionMNIST(root=str(tmp_path), train=True)
    X, y = mnist_train[0]
    assert len(mnist_train) == 10 and X.shape == (28, 28, 1) and X.dtype == np.uint8 and y.dtype == np.int32
    assert np.array_equal(X.numpy()[..., 0], images[0]) and y == labels[0]
    transformer = transforms.Compose([transforms.ToTensor(), transforms.Normalize(0.13, 0.31)])
    train = gluon.data.DataLoader(mnist_train.transform_first(transformer), batch_size=4, shuffle=True,
                                  num_workers=4)
    data, label = next(iter(train))
    assert data.shape == (4, 1, 28, 28) and data.dtype == np.float32 and label.dtype == np.int32
    np.testing.assert_allclose(float(data.numpy().max()), (images.max() / 255 - 0.13) / 0.31, rtol=0.05)
    with pytest.raises(DualgraphError, match="does not download"):
        datasets.MNIST(root=str(tmp_path), train=False)


@pytest.mark.parametrize("req", ["write", "add"])
def test_grad_req_and_zero_grad_agree_eager_and_hybridized(req):
    def run(hybrid):
        dg.manual_seed(0)
        net = nn.HybridSequential()
        net.add(nn.Dense(4, in_units=3, activation="tanh"), nn.Dense(2, in_units=4))
        net.initialize()
        net.collect_params().setattr("grad_req", req)
        if hybrid:
            net.hybridize()
        grads = []
        for i in range(4):
            x = nd.random.normal(shape=(5, 3))
            with autograd.record():
                loss = nd.sum(net(x) ** 2)
            loss.backward()
            grads.append(net[0].weight.grad().numpy().copy())
            if i == 1:
                net.collect_params().zero_grad()     # in place, into the gradient the graph returned
                grads.append(net[0].weight.grad().numpy().copy())
        return grads

    eager, hybrid = run(False), run(True)
    assert np.all(eager[2] == 0)
    if req == "add":
        assert not np.allclose(eager[1], eager[0])  # accumulated
    for a, b in zip(eager, hybrid):
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-6)


def test_summary_prints_each_layer(capsys):
    net = nn.Sequential()
    net.add(nn.Dense(4, activation="relu"), nn.Dense(2))
    net.initialize()
    net.summary(nd.ones((3, 5)))
    out = capsys.readouterr().out
    assert "Dense-1" in out and "(3, 4)" in out and "24" in out and "Total params: 34" in out
    assert net[0]._forward_hooks == []                            # the hooks it added are gone


def test_hybridized_blocks_serve_every_batch_size_from_one_symbolic_retrace():
    # dg.function retraces once with the batch dim symbolic when only sizes change; the layers and
    # losses must not need concrete batch sizes, or every batch size would trace again
    dg.manual_seed(0)
    net = nn.HybridSequential()
    net.add(nn.Conv2D(4, kernel_size=3, activation="relu"), nn.BatchNorm(), nn.MaxPool2D(),
            nn.Flatten(), nn.Dropout(0.3), nn.Dense(3))
    net.initialize(init.Xavier())
    net(nd.ones((2, 1, 8, 8)))
    losses = [(gluon.loss.SoftmaxCrossEntropyLoss(), lambda b: nd.array(np.arange(b) % 3)),
              (gluon.loss.SoftmaxCrossEntropyLoss(), lambda b: nd.array(np.arange(b) % 3).reshape((b, 1))),
              (gluon.loss.L2Loss(), lambda b: nd.ones((b, 3))),
              (gluon.loss.SigmoidBCELoss(), lambda b: nd.zeros((b, 3)))]
    eager = {}
    for b in (3, 4, 5, 7):
        x = nd.random.normal(shape=(b, 1, 8, 8))
        eager[b] = (x, net(x).numpy(), [loss(net(x), make(b)).numpy() for loss, make in losses])
    net.hybridize()
    for loss, _ in losses:
        loss.hybridize()
    for b, (x, out, vals) in eager.items():
        np.testing.assert_allclose(net(x).numpy(), out, rtol=1e-5, atol=1e-6)
        for (loss, make), v in zip(losses, vals):
            np.testing.assert_allclose(loss(net(x), make(b)).numpy(), v, rtol=1e-5, atol=1e-6)
    assert net.compiled.trace_count == 2
    assert [loss.compiled.trace_count for loss, _ in losses] == [2, 2, 2, 2]


def test_l2_loss_takes_a_flat_label_for_a_column_prediction():
    loss = gluon.loss.L2Loss()
    np.testing.assert_allclose(loss(nd.array([[1.0], [3.0]]), nd.array([0.0, 1.0])).numpy(), [0.5, 2.0])
    with pytest.raises(ShapeError, match="L2Loss"):
        loss(nd.ones((2, 1)), nd.ones((3,)))


def test_custom_hybrid_block_with_an_unknown_shape_names_infer_shape():
    class Scale(nn.HybridBlock):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.w = self.params.get("w", shape=(0,), allow_deferred_init=True)

        def hybrid_forward(self, F, x, w):
            return x * w

    blk = Scale()
    blk.initialize(init.One())
    with pytest.raises(gluon.DeferredInitializationError, match="infer_shape"):
        blk(nd.ones((2, 3)))

    class Scale2(Scale):
        def infer_shape(self, x):
            self.w.shape = (x.shape[-1],)

    blk = Scale2()
    blk.initialize(init.Constant(2.0))
    assert blk(nd.ones((2, 3))).tolist() == [[2.0] * 3] * 2 and blk.w.shape == (3,)


def test_d2l_try_gpu_idiom_falls_back_to_the_cpu():
    mx = dg

    def try_gpu():
        try:
            ctx = mx.gpu()
            _ = nd.zeros((1,), ctx=ctx)
        except mx.base.MXNetError:
            ctx = mx.cpu()
        return ctx

    assert try_gpu() == (dg.gpu() if dg.context.num_gpus() else dg.cpu())


def test_d2l_custom_layers_and_constants():
    class MyDense(nn.Block):
        def __init__(self, units, in_units, **kwargs):
            super(MyDense, self).__init__(**kwargs)
            self.weight = self.params.get("weight", shape=(in_units, units))
            self.bias = self.params.get("bias", shape=(units,))

        def forward(self, x):
            return nd.relu(nd.dot(x, self.weight.data()) + self.bias.data())

    class FancyMLP(nn.Block):
        def __init__(self, **kwargs):
            super(FancyMLP, self).__init__(**kwargs)
            self.rand_weight = self.params.get_constant("rand_weight", nd.random.uniform(shape=(3, 3)))
            self.dense = MyDense(3, in_units=3)

        def forward(self, x):
            x = nd.relu(nd.dot(self.dense(x), self.rand_weight.data()) + 1)
            while x.norm().asscalar() > 1:
                x /= 2
            return x.sum()

    dense = MyDense(units=3, in_units=5)
    assert "weight (shape=(5, 3)" in repr(dense.params)
    dense.initialize()
    assert dense(nd.random.uniform(shape=(2, 5))).shape == (2, 3)
    net = FancyMLP()
    net.initialize()
    const = net.rand_weight.data().numpy().copy()
    trainer = gluon.Trainer(net.collect_params(), "sgd", {"learning_rate": 0.1})
    with autograd.record():
        y = net(nd.ones((2, 3)))
    y.backward()
    trainer.step(2)
    assert np.array_equal(net.rand_weight.data().numpy(), const)      # a constant is never trained
    params = gluon.ParameterDict()
    params.get("param2", shape=(2, 3))
    assert list(params.keys()) == ["param2"] and params["param2"].shape == (2, 3)


def test_dataloader_num_workers_reads_in_worker_processes_in_order():
    from dualgraph.utils.data import get_worker_info

    class WhoRead(gluon.data.Dataset):
        def __getitem__(self, i):
            info = get_worker_info()
            return np.float32(i), np.int64(-1 if info is None else info.id)

        def __len__(self):
            return 10

    def batches(**kw):
        return [(x.asnumpy().tolist(), w.asnumpy().tolist())
                for x, w in gluon.data.DataLoader(WhoRead(), batch_size=3, **kw)]

    in_process, in_workers = batches(), batches(num_workers=2)
    assert [x for x, _ in in_workers] == [x for x, _ in in_process] == [[0, 1, 2], [3, 4, 5], [6, 7, 8], [9]]
    assert {w for _, ws in in_process for w in ws} == {-1}
    assert {w for _, ws in in_workers for w in ws} == {0, 1}
