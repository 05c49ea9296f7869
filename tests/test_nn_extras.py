"""Channel-wise and alpha dropout, Embedding/F.embedding options, ParameterList/ParameterDict and
nn.utils (gradient clipping, parameters_to_vector): PyTorch's documented behaviour, torch where installed."""
import math
import warnings

import numpy as np
import pytest

import dualgraph as dg
import dualgraph.nn as nn
import dualgraph.nn.functional as F
from dualgraph.errors import DTypeError, IndexOutOfRange, ShapeError

rng = np.random.default_rng(11)


# ---- channel-wise dropout -----------------------------------------------------------------------------

@pytest.mark.parametrize("fn,shape", [(F.dropout1d, (8, 16, 5)), (F.dropout1d, (16, 5)), (F.dropout2d, (8, 16, 3, 4)),
                                      (F.dropout3d, (4, 16, 2, 3, 2)), (F.dropout3d, (16, 2, 3, 2))])
def test_channel_dropout_zeros_whole_channels_and_scales_the_rest(fn, shape):
    dg.manual_seed(0)
    x = dg.tensor(rng.uniform(1, 2, shape).astype(np.float32))
    y = fn(x, 0.25, training=True).numpy()
    lead = 2 if len(shape) in (3, 4) and fn is not F.dropout3d or len(shape) == 5 else 1
    per_channel = y.reshape(shape[:lead] + (-1,))
    xs = x.numpy().reshape(shape[:lead] + (-1,))
    dropped = np.all(per_channel == 0, axis=-1)
    kept = np.all(np.isclose(per_channel, xs / 0.75), axis=-1)
    assert np.all(dropped | kept)                     # each channel is all dropped or all kept and scaled
    assert 0 < dropped.sum() < dropped.size
    np.testing.assert_array_equal(fn(x, 0.25, training=False).numpy(), x.numpy())
    assert np.all(fn(x, 1.0, training=True).numpy() == 0)


def test_channel_dropout_keep_rate_and_mean():
    dg.manual_seed(1)
    x = dg.ones(64, 200, 2, 2)
    y = F.dropout2d(x, 0.3, training=True).numpy()
    assert abs((y[:, :, 0, 0] == 0).mean() - 0.3) < 0.02
    assert abs(y.mean() - 1.0) < 0.03


def test_dropout2d_reads_3d_input_as_n_c_l_with_a_warning_as_torch():
    x = dg.ones(4, 50, 6)
    with pytest.warns(UserWarning, match="3D input"):
        y = F.dropout2d(x, 0.5, training=True).numpy()
    per = y.reshape(4, 50, 6)
    assert np.all((per == 0).all(-1) | (per == 2).all(-1))


def test_dropout1d_rejects_other_ranks_and_p_out_of_range():
    with pytest.raises(ShapeError, match=r"dropout1d.*\(2, 3, 4, 5\)"):
        F.dropout1d(dg.ones(2, 3, 4, 5), training=True)
    with pytest.raises(ValueError, match="between 0 and 1"):
        nn.Dropout2d(p=1.5)
    with pytest.raises(ValueError, match="between 0 and 1"):
        F.dropout3d(dg.ones(1, 2, 3, 4, 5), p=-0.1)


def test_dropout_modules_follow_train_and_eval_and_grads_flow():
    m = nn.Dropout2d(0.5)
    x = dg.tensor(rng.uniform(1, 2, (4, 8, 3, 3)).astype(np.float32), requires_grad=True)
    m.eval()
    assert m(x) is x
    m.train()
    y = m(x)
    y.sum().backward()
    mask = (y.numpy() != 0).astype(np.float32)
    np.testing.assert_allclose(x.grad.numpy(), mask * 2.0)
    assert repr(m) == "Dropout2d(p=0.5, inplace=False)"


def test_inplace_writes_into_the_input():
    dg.manual_seed(3)
    x = dg.ones(4, 16, 3)
    y = F.dropout1d(x, 0.5, training=True, inplace=True)
    assert y is x and set(np.unique(x.numpy())) <= {0.0, 2.0}


def test_compiled_dropout_draws_a_new_mask_each_call():
    f = dg.function(lambda x: F.dropout2d(x, 0.5, training=True))
    x = dg.ones(8, 32, 2, 2)
    a, b = f(x).numpy(), f(x).numpy()
    assert not np.array_equal(a, b)
    assert np.all((a.reshape(8, 32, -1) == 0).all(-1) | (a.reshape(8, 32, -1) == 2).all(-1))


# ---- alpha dropout ------------------------------------------------------------------------------------

ALPHA = 1.0507009873554804934193349852946 * 1.6732632423543772848170429916717


@pytest.mark.parametrize("feature", [False, True])
def test_alpha_dropout_values_are_the_documented_affine_map(feature):
    p = 0.2
    a = ((1 - p) * (1 + p * ALPHA ** 2)) ** -0.5
    b = a * ALPHA * p                                   # dropped -> a * (-ALPHA) + b, kept -> a * x + b
    dg.manual_seed(0)
    x = dg.tensor(rng.standard_normal((16, 32, 4)).astype(np.float32))
    fn = F.feature_alpha_dropout if feature else F.alpha_dropout
    y = fn(x, p, training=True).numpy()
    kept = np.isclose(y, a * x.numpy() + b, atol=1e-6)
    dropped = np.isclose(y, -a * ALPHA + b, atol=1e-6)
    assert np.all(kept | dropped) and 0.1 < dropped.mean() < 0.3
    if feature:
        assert np.all(kept.all(-1) | dropped.all(-1))
    np.testing.assert_array_equal(fn(x, p).numpy(), x.numpy())   # training defaults to False, as torch


def test_alpha_dropout_keeps_selu_statistics():
    dg.manual_seed(2)
    x = dg.tensor(rng.standard_normal(400_000).astype(np.float32))
    y = nn.AlphaDropout(0.3).train()(x).numpy()
    assert abs(y.mean()) < 0.01 and abs(y.std() - 1.0) < 0.01


def test_alpha_dropout_matches_torch_statistics():
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    t = torch.nn.AlphaDropout(0.4).train()(torch.ones(200_000)).numpy()
    d = nn.AlphaDropout(0.4).train()(dg.ones(200_000)).numpy()
    assert sorted(np.unique(np.round(t, 5))) == sorted(np.unique(np.round(d, 5)))


# ---- Embedding and F.embedding ------------------------------------------------------------------------

W = rng.standard_normal((6, 4)).astype(np.float32) * 2
IDX = np.array([[1, 2, 2], [0, 5, 1]])
G = rng.standard_normal((2, 3, 4)).astype(np.float32)

EMB_CASES = [{}, {"padding_idx": 2}, {"padding_idx": -1}, {"max_norm": 1.0}, {"max_norm": 1.5, "norm_type": 1.0},
             {"scale_grad_by_freq": True}, {"scale_grad_by_freq": True, "padding_idx": 1}, {"sparse": True}]


@pytest.mark.parametrize("kw", EMB_CASES, ids=[str(k) for k in EMB_CASES])
def test_embedding_options_match_torch(kw):
    torch = pytest.importorskip("torch")
    tw = torch.tensor(W, requires_grad=True)
    tout = torch.nn.functional.embedding(torch.tensor(IDX), tw, **kw)
    tout.backward(torch.tensor(G))
    tgrad = tw.grad.to_dense() if tw.grad.is_sparse else tw.grad
    dw = dg.tensor(W.copy(), requires_grad=True)
    out = F.embedding(dg.tensor(IDX), dw, **kw)
    out.backward(dg.tensor(G))
    np.testing.assert_allclose(out.numpy(), tout.detach().numpy(), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(dw.grad.numpy(), tgrad.numpy(), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(dw.numpy(), tw.detach().numpy(), rtol=1e-6, atol=1e-6)   # max_norm renorms in place
    te = torch.nn.Embedding.from_pretrained(torch.tensor(W), freeze=False, **kw)
    de = nn.Embedding.from_pretrained(dg.tensor(W.copy()), freeze=False, **kw)
    np.testing.assert_allclose(de(dg.tensor(IDX)).numpy(), te(torch.tensor(IDX)).detach().numpy(), atol=1e-6)


def test_embedding_options_by_hand():
    w = dg.tensor([[3.0, 4.0], [0.3, 0.4], [1.0, 1.0]], requires_grad=True)
    idx = dg.tensor([0, 1, 1, 2])
    out = F.embedding(idx, w, padding_idx=2, scale_grad_by_freq=True)
    out.backward(dg.ones(4, 2))
    # row 1 is used twice: its gradient (2) is divided by 2; the padding row gets none
    np.testing.assert_allclose(w.grad.numpy(), [[1, 1], [1, 1], [0, 0]])
    np.testing.assert_allclose(out.numpy()[3], [1.0, 1.0])          # the padding row's value is returned
    w2 = dg.tensor([[3.0, 4.0], [0.3, 0.4]])
    F.embedding(dg.tensor([0]), w2, max_norm=1.0)
    np.testing.assert_allclose(w2.numpy(), [[3 / (5 + 1e-7), 4 / (5 + 1e-7)], [0.3, 0.4]], rtol=1e-6)  # in place


def test_embedding_module_padding_row_starts_at_zero_and_from_pretrained_freezes():
    m = nn.Embedding(5, 3, padding_idx=4)
    assert np.all(m.weight.numpy()[4] == 0)
    w = dg.tensor(W)
    frozen = nn.Embedding.from_pretrained(w)
    assert frozen.weight.requires_grad is False and frozen.num_embeddings == 6
    trainable = nn.Embedding.from_pretrained(w, freeze=False, padding_idx=0, max_norm=2.0)
    assert trainable.weight.requires_grad and trainable.padding_idx == 0 and trainable.max_norm == 2.0
    with pytest.raises(ValueError, match="2-dimensional"):
        nn.Embedding.from_pretrained(dg.ones(3))
    assert "dense" in nn.Embedding.__doc__


def test_embedding_bad_input():
    with pytest.raises(DTypeError, match="integer"):
        F.embedding(dg.tensor([0.0, 1.0]), dg.tensor(W))
    with pytest.raises(IndexOutOfRange, match="padding_idx 7"):
        F.embedding(dg.tensor([0]), dg.tensor(W), padding_idx=7)
    with pytest.raises(ShapeError, match="2-D"):
        F.embedding(dg.tensor([0]), dg.ones(3))


def test_embedding_with_options_traces_and_exports(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    w = dg.tensor(W)

    def fn(i):
        return F.embedding(i, w, padding_idx=1, scale_grad_by_freq=True)

    idx = dg.tensor(IDX)
    np.testing.assert_allclose(dg.function(fn)(idx).numpy(), fn(idx).numpy())
    path = str(tmp_path / "emb.onnx")
    dg.onnx.export(fn, (idx,), path)
    sess = ort.InferenceSession(path)
    got = sess.run(None, {sess.get_inputs()[0].name: IDX})[0]
    np.testing.assert_allclose(got, W[IDX], rtol=1e-6)


# ---- ParameterList / ParameterDict -----------------------------------------------------------------------

class _Holder(nn.Module):
    def __init__(self):
        super().__init__()
        self.plist = nn.ParameterList([nn.Parameter(dg.ones(2)), dg.zeros(3)])
        self.pdict = nn.ParameterDict({"a": dg.ones(1, 2), "upd": nn.Parameter(dg.zeros(4))})

    def forward(self, x):
        return x * self.plist[0].sum() + self.pdict["a"].sum()


def test_parameter_containers_register_their_parameters():
    m = _Holder()
    names = [n for n, _ in m.named_parameters()]
    assert names == ["plist.0", "plist.1", "pdict.a", "pdict.upd"]
    assert all(isinstance(p, nn.Parameter) and p.requires_grad for p in m.parameters())
    assert len(m.plist) == 2 and m.plist[-1].shape == (3,) and len(m.plist[0:1]) == 1
    m.plist.append(dg.ones(5))
    assert len(list(m.parameters())) == 5 and "plist.2" in m.state_dict()
    assert list(m.pdict.keys()) == ["a", "upd"] and "upd" in m.pdict and m.pdict["upd"].shape == (4,)
    m(dg.ones(1)).sum().backward()
    np.testing.assert_array_equal(m.pdict["a"].grad.numpy(), [[1.0, 1.0]])
    del m.pdict["a"]
    assert list(m.pdict) == ["upd"] and "pdict.a" not in m.state_dict()
    with pytest.raises(IndexError):
        m.plist[7]
    with pytest.raises(KeyError):
        m.pdict["nope"]
    with pytest.raises(KeyError, match="already exists"):     # as torch: a key may not shadow an attribute
        m.pdict["update"] = dg.ones(1)


def test_parameter_containers_state_dict_keys_match_torch():
    torch = pytest.importorskip("torch")

    class T(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.plist = torch.nn.ParameterList([torch.nn.Parameter(torch.ones(2)), torch.zeros(3)])
            self.pdict = torch.nn.ParameterDict({"a": torch.ones(1, 2), "upd": torch.nn.Parameter(torch.zeros(4))})

    assert list(T().state_dict()) == list(_Holder().state_dict())
    m = _Holder()
    m.load_state_dict({k: dg.tensor(v.numpy()) for k, v in T().state_dict().items()})


# ---- nn.utils --------------------------------------------------------------------------------------------

def _params_with_grads(lib, grads):
    out = []
    for g in grads:
        p = lib.tensor(np.zeros_like(g), requires_grad=True)
        p.grad = lib.tensor(g.copy())
        out.append(p)
    return out


GRADS = [rng.standard_normal((3, 4)).astype(np.float32), rng.standard_normal(5).astype(np.float32) * 3]


@pytest.mark.parametrize("norm_type", [2.0, 1.0, 3.0, math.inf, 0.5, "inf"])
@pytest.mark.parametrize("max_norm", [0.5, 1e3])
def test_clip_grad_norm_matches_torch(norm_type, max_norm):
    torch = pytest.importorskip("torch")
    tp = _params_with_grads(torch, GRADS)
    tn = torch.nn.utils.clip_grad_norm_(tp, max_norm, norm_type=norm_type, foreach=False)
    dp = _params_with_grads(dg, GRADS)
    dn = nn.utils.clip_grad_norm_(dp, max_norm, norm_type=norm_type, foreach=True)
    assert float(dn) == pytest.approx(float(tn), rel=1e-6)
    for a, b in zip(dp, tp):
        np.testing.assert_allclose(a.grad.numpy(), b.grad.numpy(), rtol=1e-6, atol=1e-7)


def test_clip_grad_norm_by_hand_and_generators():
    p = dg.tensor([0.0, 0.0], requires_grad=True)
    p.grad = dg.tensor([3.0, 4.0])
    q = dg.tensor([0.0], requires_grad=True)                  # no grad: skipped
    total = nn.utils.clip_grad_norm_(iter([p, q]), max_norm=1.0)
    assert float(total) == pytest.approx(5.0)
    np.testing.assert_allclose(p.grad.numpy(), [3 / (5 + 1e-6), 4 / (5 + 1e-6)], rtol=1e-6)
    p.grad = dg.tensor([3.0, -4.0])
    # order 0, as torch: each tensor's count of nonzeros, then the count of nonzero counts
    assert float(nn.utils.clip_grad_norm_([p], 10.0, norm_type=0)) == 1.0
    assert float(nn.utils.get_total_norm([dg.tensor([1.0, 0.0, 2.0]), dg.tensor([0.0])], norm_type=0)) == 1.0
    np.testing.assert_allclose(p.grad.numpy(), [3.0, -4.0])
    assert float(nn.utils.get_total_norm([dg.tensor([1.0, -2.0]), dg.tensor([2.0])], norm_type=1)) == 5.0
    p.grad = dg.tensor([float("inf"), 1.0])
    with pytest.raises(RuntimeError, match="non-finite"):
        nn.utils.clip_grad_norm_([p], 1.0, error_if_nonfinite=True)
    assert float(nn.utils.clip_grad_norm_([q], 1.0)) == 0.0


def test_clip_grad_value_matches_torch_and_by_hand():
    dp = _params_with_grads(dg, GRADS)
    nn.utils.clip_grad_value_(dp, 0.5, foreach=None)
    for a, g in zip(dp, GRADS):
        np.testing.assert_array_equal(a.grad.numpy(), np.clip(g, -0.5, 0.5))
    torch = pytest.importorskip("torch")
    tp = _params_with_grads(torch, GRADS)
    torch.nn.utils.clip_grad_value_(tp, 0.5)
    for a, b in zip(dp, tp):
        np.testing.assert_array_equal(a.grad.numpy(), b.grad.numpy())


def test_parameters_to_vector_and_back():
    m = nn.Linear(3, 2)
    vec = nn.utils.parameters_to_vector(m.parameters())
    assert vec.shape == (8,)
    np.testing.assert_array_equal(vec.numpy(), np.concatenate([m.weight.numpy().ravel(), m.bias.numpy()]))
    nn.utils.vector_to_parameters(dg.arange(8).astype("float32"), m.parameters())
    np.testing.assert_array_equal(m.weight.numpy(), np.arange(6).reshape(2, 3))
    np.testing.assert_array_equal(m.bias.numpy(), [6, 7])
    assert m.weight.requires_grad and m.weight.is_leaf
    vec = nn.utils.parameters_to_vector(m.parameters())
    (vec * dg.arange(8).astype("float32")).sum().backward()      # differentiable, as torch.cat of views
    np.testing.assert_array_equal(m.bias.grad.numpy(), [6, 7])
    with pytest.raises(ShapeError, match="8 elements"):
        nn.utils.vector_to_parameters(dg.ones(7), m.parameters())
    with pytest.raises(TypeError, match="Tensor"):
        nn.utils.vector_to_parameters(np.ones(8), m.parameters())


def test_parameters_to_vector_matches_torch():
    torch = pytest.importorskip("torch")
    tm = torch.nn.Linear(4, 3)
    m = nn.Linear(4, 3)
    m.load_state_dict({k: dg.tensor(v.detach().numpy()) for k, v in tm.state_dict().items()})
    np.testing.assert_array_equal(nn.utils.parameters_to_vector(m.parameters()).numpy(),
                                  torch.nn.utils.parameters_to_vector(tm.parameters()).detach().numpy())


def test_activation_and_container_names_exist_with_torch_defaults():
    for name in ("Identity", "Flatten", "Unflatten", "ModuleList", "ModuleDict", "ParameterList", "ParameterDict",
                 "GELU", "SiLU", "Softmax", "LogSoftmax", "Dropout1d", "Dropout2d", "Dropout3d", "AlphaDropout",
                 "FeatureAlphaDropout"):
        assert hasattr(nn, name), name
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert nn.GELU(approximate="tanh")(dg.tensor([1.0])).item() == pytest.approx(0.8411920071, rel=1e-6)


def test_signatures_and_defaults_match_torch():
    torch = pytest.importorskip("torch")
    import inspect
    pairs = [(getattr(nn, n), getattr(torch.nn, n)) for n in (
        "Dropout1d", "Dropout2d", "Dropout3d", "AlphaDropout", "FeatureAlphaDropout", "Embedding")]
    pairs = [(a.__init__, b.__init__) for a, b in pairs]
    pairs += [(nn.Embedding.from_pretrained, torch.nn.Embedding.from_pretrained)]
    pairs += [(getattr(F, n), getattr(torch.nn.functional, n)) for n in (
        "dropout1d", "dropout2d", "dropout3d", "alpha_dropout", "feature_alpha_dropout", "embedding")]
    pairs += [(getattr(nn.utils, n), getattr(torch.nn.utils, n)) for n in (
        "clip_grad_norm_", "clip_grad_value_", "get_total_norm", "clip_grads_with_norm_", "parameters_to_vector",
        "vector_to_parameters")]
    pairs += [(getattr(dg.optim, n).__init__, getattr(torch.optim, n).__init__)
              for n in ("Adadelta", "Adagrad", "Adamax", "NAdam", "RAdam")]
    pairs += [(getattr(dg.optim.lr_scheduler, n).__init__, getattr(torch.optim.lr_scheduler, n).__init__) for n in (
        "OneCycleLR", "CyclicLR", "CosineAnnealingWarmRestarts", "LinearLR", "ConstantLR", "PolynomialLR",
        "MultiplicativeLR", "SequentialLR", "ChainedScheduler", "StepLR", "MultiStepLR", "ExponentialLR",
        "CosineAnnealingLR", "LambdaLR", "ReduceLROnPlateau")]
    # dropout's functional forms follow dualgraph's F.dropout (training=None: dg.autograd.is_training())
    differs = {("dropout1d", "training"), ("dropout2d", "training"), ("dropout3d", "training")}
    for mine, theirs in pairs:
        a, b = inspect.signature(mine).parameters, inspect.signature(theirs).parameters
        assert list(a) == list(b), (mine.__qualname__, list(a), list(b))
        for name in a:
            if (mine.__name__, name) in differs:
                continue
            assert a[name].default == b[name].default, (mine.__qualname__, name, a[name].default, b[name].default)
