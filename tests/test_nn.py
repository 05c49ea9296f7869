"""dg.nn: the Module API, state dicts, hooks, layers against numpy references (and torch when installed),
PyTorch's default initializations, and shape errors that name the module."""
import math
from collections import OrderedDict

import numpy as np
import pytest

import dualgraph as dg
from dualgraph import nn
from dualgraph.nn import functional as F

RNG = np.random.default_rng(0)


def randn(*shape):
    return RNG.standard_normal(shape).astype(np.float32)


def close(a, b, atol=1e-5, rtol=1e-4):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=atol, rtol=rtol)


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(4, 8)
        self.bn = nn.BatchNorm1d(8)
        self.act = nn.ReLU()
        self.fc2 = nn.Linear(8, 3)

    def forward(self, x):
        return self.fc2(self.act(self.bn(self.fc1(x))))


# ---- Parameter ------------------------------------------------------------------------------

def test_parameter_is_a_leaf_tensor_that_gets_gradients():
    p = nn.Parameter(np.array([1.0, 2.0, 3.0], dtype=np.float32))
    assert isinstance(p, dg.Tensor) and isinstance(p, nn.Parameter)
    assert p.requires_grad and p.is_leaf
    y = (p * p + p).sum()  # two-tensor and tensor-scalar ops with a Parameter
    assert y.grad_fn.name() == "SumBackward0"
    y.backward()
    close(p.grad.numpy(), 2 * np.array([1, 2, 3]) + 1)
    z = (p * 2).sum()
    edge = z.grad_fn.next_functions[0][0].next_functions[0][0]
    assert edge.name() == "AccumulateGrad" and edge.variable is p


def test_parameter_copies_its_data_and_only_changes_in_place_under_no_grad():
    src = np.ones(3, dtype=np.float32)
    p = nn.Parameter(src)
    with dg.no_grad():
        p.sub_(1.0)
    assert src.tolist() == [1.0, 1.0, 1.0]  # the user's array is untouched
    assert p.numpy().tolist() == [0.0, 0.0, 0.0]
    with pytest.raises(dg.AutogradError, match="no_grad"):
        p.add_(1.0)
    assert not nn.Parameter(np.zeros(2, dtype=np.float32), requires_grad=False).requires_grad
    assert repr(p).startswith("Parameter containing:")


# ---- Module API -----------------------------------------------------------------------------

def test_registration_and_iteration():
    net = Net()
    names = [n for n, _ in net.named_parameters()]
    assert names == ["fc1.weight", "fc1.bias", "bn.weight", "bn.bias", "fc2.weight", "fc2.bias"]
    assert [n for n, _ in net.named_buffers()] == ["bn.running_mean", "bn.running_var", "bn.num_batches_tracked"]
    assert [n for n, _ in net.named_children()] == ["fc1", "bn", "act", "fc2"]
    assert [n for n, _ in net.named_modules()] == ["", "fc1", "bn", "act", "fc2"]
    assert net.num_parameters() == 4 * 8 + 8 + 8 + 8 + 8 * 3 + 3
    assert net.get_submodule("fc2") is net.fc2 and net.get_parameter("fc1.bias") is net.fc1.bias
    with pytest.raises(TypeError, match="Parameter or None"):
        net.fc1.weight = dg.zeros(8, 4)
    del net.act
    assert "act" not in dict(net.named_children())


def test_shared_parameters_are_listed_once():
    lin = nn.Linear(3, 3)
    seq = nn.Sequential(lin, nn.ReLU(), lin)
    assert len(list(seq.parameters())) == 2
    assert list(seq.state_dict()) == ["0.weight", "0.bias"]


def test_train_eval_propagate_and_change_behaviour():
    net = nn.Sequential(nn.Linear(4, 4), nn.Dropout(0.5))
    assert net.training and net[1].training
    net.eval()
    assert not net.training and not net[1].training
    x = dg.ones(8, 4)
    close(net(x).numpy(), net[0](x).numpy())  # dropout is the identity in eval mode
    net.train()
    out = net(x).numpy()
    ref = net[0](x).numpy()
    kept = out != 0
    assert 0 < kept.sum() < out.size  # some dropped...
    close(out[kept], 2 * ref[kept])   # ...and the rest scaled by 1/(1-p)


def test_zero_grad_and_requires_grad():
    net = Net()
    F.cross_entropy(net(dg.randn(5, 4)), dg.tensor([0, 1, 2, 0, 1])).backward()
    assert all(p.grad is not None for p in net.parameters())
    net.zero_grad(set_to_none=False)
    assert all(np.all(p.grad.numpy() == 0) for p in net.parameters())
    net.zero_grad()
    assert all(p.grad is None for p in net.parameters())
    net.requires_grad_(False)
    assert not any(p.requires_grad for p in net.parameters())


def test_containers():
    ml = nn.ModuleList([nn.Linear(2, 2) for _ in range(3)])
    ml.append(nn.ReLU())
    assert len(ml) == 4 and isinstance(ml[-1], nn.ReLU) and len(list(ml.parameters())) == 6
    md = nn.ModuleDict({"a": nn.Linear(2, 3), "b": nn.Tanh()})
    assert list(md.keys()) == ["a", "b"] and "a" in md
    assert [n for n, _ in md.named_parameters()] == ["a.weight", "a.bias"]
    seq = nn.Sequential(OrderedDict(first=nn.Linear(2, 4), act=nn.ReLU(), last=nn.Linear(4, 1)))
    assert isinstance(seq[1], nn.ReLU) and isinstance(seq[-1], nn.Linear)
    assert [n for n, _ in seq[0:2].named_children()] == ["first", "act"]
    x = dg.randn(3, 2)
    close(seq(x).numpy(), seq.last(seq.act(seq.first(x))).numpy())


def test_repr_is_a_readable_tree():
    net = nn.Sequential(nn.Linear(4, 8), nn.Sequential(nn.ReLU(), nn.Dropout(0.1)), nn.Linear(8, 2, bias=False))
    assert repr(net) == (
        "Sequential(\n"
        "  (0): Linear(in_features=4, out_features=8, bias=True)\n"
        "  (1): Sequential(\n"
        "    (0): ReLU()\n"
        "    (1): Dropout(p=0.1, inplace=False)\n"
        "  )\n"
        "  (2): Linear(in_features=8, out_features=2, bias=False)\n"
        ")")
    assert repr(nn.Conv2d(3, 8, 3, padding=1)) == "Conv2d(3, 8, kernel_size=(3, 3), stride=(1, 1), padding=(1, 1))"


def test_forward_hooks_and_pre_hooks():
    lin = nn.Linear(3, 2)
    seen = []
    h = lin.register_forward_hook(lambda m, args, out: seen.append((m, args[0].shape, out.shape)))
    x = dg.randn(4, 3)
    lin(x)
    assert seen == [(lin, (4, 3), (4, 2))]
    h.remove()
    lin(x)
    assert len(seen) == 1
    with lin.register_forward_hook(lambda m, args, out: out * 0):
        assert np.all(lin(x).numpy() == 0)
    assert np.any(lin(x).numpy() != 0)
    lin.register_forward_pre_hook(lambda m, args: (args[0] * 0,))
    close(lin(x).numpy(), np.broadcast_to(lin.bias.numpy(), (4, 2)))


def test_to_dtype_keeps_parameter_objects():
    net = Net()
    params = list(net.parameters())
    net.to(dg.float64)
    assert [id(p) for p in net.parameters()] == [id(p) for p in params]
    assert all(p.dtype == np.float64 for p in net.parameters())
    assert net.bn.running_mean.dtype == np.float64 and net.bn.num_batches_tracked.dtype == np.int64
    out = net(dg.randn(5, 4, dtype="float64"))
    assert out.dtype == np.float64
    net.to("cpu")  # a no-op move keeps working


# ---- state dicts ----------------------------------------------------------------------------

def test_state_dict_round_trip_reproduces_outputs():
    dg.manual_seed(1)
    a, b = Net(), Net()
    x = dg.randn(6, 4)
    a(x)  # updates a's running statistics
    sd = a.state_dict()
    assert list(sd) == ["fc1.weight", "fc1.bias", "bn.weight", "bn.bias", "bn.running_mean", "bn.running_var",
                        "bn.num_batches_tracked", "fc2.weight", "fc2.bias"]
    assert int(sd["bn.num_batches_tracked"].item()) == 1
    assert not any(t.requires_grad for t in sd.values())
    result = b.load_state_dict(sd)
    assert result.missing_keys == [] and result.unexpected_keys == []
    a.eval(), b.eval()
    close(b(x).numpy(), a(x).numpy(), atol=0, rtol=0)
    # loading copies: changing b does not change a
    with dg.no_grad():
        b.fc1.weight.add_(1.0)
    assert not np.allclose(a.fc1.weight.numpy(), b.fc1.weight.numpy())


def test_load_state_dict_errors_name_the_keys_and_shapes():
    net = Net()
    sd = dict(net.state_dict())
    before = {k: v.numpy().copy() for k, v in net.state_dict().items()}
    bad = dict(sd)
    del bad["fc1.bias"]
    bad["extra.weight"] = np.zeros(3, np.float32)
    bad["fc2.weight"] = np.zeros((4, 8), np.float32)
    bad["fc1.weight"] = np.full((8, 4), 7.0, np.float32)
    with pytest.raises(nn.StateDictError) as e:
        net.load_state_dict(bad)
    msg = str(e.value)
    assert 'Missing key(s) in state_dict: "fc1.bias"' in msg
    assert 'Unexpected key(s) in state_dict: "extra.weight"' in msg
    assert "size mismatch for fc2.weight" in msg and "(4, 8)" in msg and "(3, 8)" in msg
    # nothing was loaded, and the caller's dict is unchanged
    assert all(np.array_equal(net.state_dict()[k].numpy(), v) for k, v in before.items())
    assert "fc1.bias" not in bad and bad["fc1.weight"][0, 0] == 7.0
    # non-strict: missing/unexpected reported, the rest loaded; shape mismatch is still an error
    del bad["fc2.weight"]
    res = net.load_state_dict(bad, strict=False)
    assert res.missing_keys == ["fc1.bias", "fc2.weight"] and res.unexpected_keys == ["extra.weight"]
    assert np.all(net.fc1.weight.numpy() == 7.0)


# ---- layers against references ----------------------------------------------------------------

def test_linear_forward_and_backward_match_numpy():
    lin = nn.Linear(5, 3)
    x = randn(4, 2, 5)
    xt = dg.tensor(x, requires_grad=True)
    out = lin(xt)
    w, b = lin.weight.numpy(), lin.bias.numpy()
    close(out.numpy(), x @ w.T + b)
    g = randn(4, 2, 3)
    out.backward(dg.tensor(g))
    close(lin.weight.grad.numpy(), g.reshape(-1, 3).T @ x.reshape(-1, 5))
    close(lin.bias.grad.numpy(), g.reshape(-1, 3).sum(0))
    close(xt.grad.numpy(), g @ w)


def _conv2d_ref(x, w, b, stride, pad, dil, groups):
    n, c, h, wd = x.shape
    o, cg, kh, kw = w.shape
    x = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    oh = (h + 2 * pad - dil * (kh - 1) - 1) // stride + 1
    ow = (wd + 2 * pad - dil * (kw - 1) - 1) // stride + 1
    out = np.zeros((n, o, oh, ow), np.float64)
    og = o // groups
    for oc in range(o):
        gi = oc // og
        for i in range(oh):
            for j in range(ow):
                patch = x[:, gi * cg:(gi + 1) * cg, i * stride: i * stride + dil * (kh - 1) + 1: dil,
                          j * stride: j * stride + dil * (kw - 1) + 1: dil]
                out[:, oc, i, j] = (patch * w[oc]).sum(axis=(1, 2, 3)) + b[oc]
    return out


@pytest.mark.parametrize("stride,pad,dil,groups", [(1, 0, 1, 1), (2, 1, 1, 1), (1, 2, 2, 2)])
def test_conv2d_matches_a_direct_loop(stride, pad, dil, groups):
    conv = nn.Conv2d(4, 6, 3, stride=stride, padding=pad, dilation=dil, groups=groups)
    x = randn(2, 4, 7, 6)
    out = conv(dg.tensor(x))
    close(out.numpy(), _conv2d_ref(x, conv.weight.numpy(), conv.bias.numpy(), stride, pad, dil, groups))
    close(conv(dg.tensor(x[0])).numpy(), out.numpy()[0])  # unbatched (C, H, W) input


def test_conv1d_matches_a_direct_loop():
    conv = nn.Conv1d(3, 5, 4, stride=2, padding=1)
    x = randn(2, 3, 11)
    w, b = conv.weight.numpy(), conv.bias.numpy()
    xp = np.pad(x, ((0, 0), (0, 0), (1, 1)))
    ol = (11 + 2 - 4) // 2 + 1
    ref = np.stack([np.einsum("nck,ock->no", xp[:, :, 2 * i:2 * i + 4], w) + b for i in range(ol)], axis=-1)
    close(conv(dg.tensor(x)).numpy(), ref)


def test_pooling_matches_numpy():
    x = randn(2, 3, 6, 6)
    blocks = x.reshape(2, 3, 3, 2, 3, 2)
    close(nn.MaxPool2d(2)(dg.tensor(x)).numpy(), blocks.max(axis=(3, 5)))
    close(nn.AvgPool2d(2)(dg.tensor(x)).numpy(), blocks.mean(axis=(3, 5)))
    close(nn.AdaptiveAvgPool2d(1)(dg.tensor(x)).numpy(), x.mean(axis=(2, 3), keepdims=True))
    close(nn.AdaptiveAvgPool2d((3, 3))(dg.tensor(x)).numpy(), blocks.mean(axis=(3, 5)))


def test_batchnorm_training_eval_and_running_stats_match_the_formulas():
    bn = nn.BatchNorm2d(3, momentum=0.2)
    with dg.no_grad():
        bn.weight.copy_(dg.tensor([1.0, 2.0, 0.5]))
        bn.bias.copy_(dg.tensor([0.0, -1.0, 3.0]))
    rm, rv = np.zeros(3), np.ones(3)
    for _ in range(2):
        x = randn(4, 3, 5, 5) * 3 + 1
        out = bn(dg.tensor(x)).numpy()
        mu = x.mean(axis=(0, 2, 3))
        var = x.var(axis=(0, 2, 3))
        ref = (x - mu[None, :, None, None]) / np.sqrt(var[None, :, None, None] + 1e-5)
        ref = ref * np.array([1, 2, 0.5])[None, :, None, None] + np.array([0, -1, 3])[None, :, None, None]
        close(out, ref, atol=1e-4)
        n = x.size / 3
        rm = 0.8 * rm + 0.2 * mu
        rv = 0.8 * rv + 0.2 * var * n / (n - 1)  # running variance is unbiased
        close(bn.running_mean.numpy(), rm)
        close(bn.running_var.numpy(), rv)
    assert int(bn.num_batches_tracked.item()) == 2
    bn.eval()
    x = randn(2, 3, 4, 4)
    ref = (x - rm[None, :, None, None]) / np.sqrt(rv[None, :, None, None] + 1e-5)
    ref = ref * np.array([1, 2, 0.5])[None, :, None, None] + np.array([0, -1, 3])[None, :, None, None]
    close(bn(dg.tensor(x)).numpy(), ref, atol=1e-4)
    close(bn.running_mean.numpy(), rm)  # eval does not update the statistics


def test_batchnorm_cumulative_average_and_gradients():
    bn = nn.BatchNorm1d(2, momentum=None)
    xs = [randn(5, 2) for _ in range(3)]
    for x in xs:
        bn(dg.tensor(x))
    close(bn.running_mean.numpy(), np.mean([x.mean(0) for x in xs], axis=0))
    # gradient of sum(bn(x) * g) w.r.t. x: the batch-norm backward formula
    bn2 = nn.BatchNorm1d(4, affine=False)
    x = randn(6, 4)
    g = randn(6, 4)
    xt = dg.tensor(x, requires_grad=True)
    (bn2(xt) * dg.tensor(g)).sum().backward()
    xhat = (x - x.mean(0)) / np.sqrt(x.var(0) + 1e-5)
    ref = (g - g.mean(0) - xhat * (g * xhat).mean(0)) / np.sqrt(x.var(0) + 1e-5)
    close(xt.grad.numpy(), ref, atol=1e-4)


def test_layernorm_matches_numpy():
    ln = nn.LayerNorm((3, 4))
    with dg.no_grad():
        ln.weight.copy_(dg.tensor(randn(3, 4)))
        ln.bias.copy_(dg.tensor(randn(3, 4)))
    x = randn(2, 3, 4)
    mu = x.mean(axis=(1, 2), keepdims=True)
    var = x.var(axis=(1, 2), keepdims=True)
    close(ln(dg.tensor(x)).numpy(), (x - mu) / np.sqrt(var + 1e-5) * ln.weight.numpy() + ln.bias.numpy(),
          atol=1e-5)


def test_embedding_lookup_and_padding_idx_gets_no_gradient():
    emb = nn.Embedding(10, 4, padding_idx=0)
    assert np.all(emb.weight.numpy()[0] == 0)
    idx = np.array([[0, 3, 3], [9, 0, 1]])
    out = emb(dg.tensor(idx))
    close(out.numpy(), emb.weight.numpy()[idx])
    out.sum().backward()
    grad = emb.weight.grad.numpy()
    assert np.all(grad[0] == 0)
    close(grad[3], np.full(4, 2.0))
    close(grad[[1, 9]], np.ones((2, 4)))
    with pytest.raises(dg.DTypeError, match=r"Embedding\(10, 4, padding_idx=0\).*integer.*float32"):
        emb(dg.randn(2, 3))


def test_activations_match_numpy():
    x = randn(3, 5)
    t = dg.tensor(x)
    close(nn.ReLU()(t).numpy(), np.maximum(x, 0))
    close(nn.Tanh()(t).numpy(), np.tanh(x))
    close(nn.Sigmoid()(t).numpy(), 1 / (1 + np.exp(-x)))
    close(nn.SiLU()(t).numpy(), x / (1 + np.exp(-x)))
    close(nn.LeakyReLU(0.2)(t).numpy(), np.where(x > 0, x, 0.2 * x))
    from scipy.special import erf
    close(nn.GELU()(t).numpy(), 0.5 * x * (1 + erf(x / np.sqrt(2))))
    e = np.exp(x - x.max(1, keepdims=True))
    close(nn.Softmax(dim=1)(t).numpy(), e / e.sum(1, keepdims=True))
    assert nn.Flatten()(dg.zeros(2, 3, 4, 5)).shape == (2, 60)


def test_losses_match_numpy():
    logits = randn(6, 4)
    target = np.array([0, 3, 1, 1, 2, 0])
    lse = np.log(np.exp(logits).sum(1))
    ce = (lse - logits[np.arange(6), target])
    close(nn.CrossEntropyLoss()(dg.tensor(logits), dg.tensor(target)).item(), ce.mean())
    close(nn.CrossEntropyLoss(reduction="sum")(dg.tensor(logits), dg.tensor(target)).item(), ce.sum())
    w = np.array([1.0, 2.0, 0.5, 1.5], np.float32)
    close(nn.CrossEntropyLoss(weight=w)(dg.tensor(logits), dg.tensor(target)).item(),
          (ce * w[target]).sum() / w[target].sum())
    logp = logits - lse[:, None]
    close(nn.NLLLoss()(dg.tensor(logp), dg.tensor(target)).item(), ce.mean())
    y = randn(6, 4)
    close(nn.MSELoss()(dg.tensor(logits), dg.tensor(y)).item(), ((logits - y) ** 2).mean())
    p = (RNG.random((6, 4)) > 0.5).astype(np.float32)
    sig = 1 / (1 + np.exp(-logits))
    bce = -(p * np.log(sig) + (1 - p) * np.log(1 - sig))
    close(nn.BCEWithLogitsLoss()(dg.tensor(logits), dg.tensor(p)).item(), bce.mean())
    assert nn.CrossEntropyLoss(weight=w).state_dict()["weight"].shape == (4,)


def _mha_ref(q, k, v, w_in, b_in, w_out, b_out, heads, attn_mask=None, kpm=None):
    """Batch-first numpy multi-head attention (PyTorch's math)."""
    n, L, E = q.shape
    S = k.shape[1]
    d = E // heads
    wq, wk, wv = np.split(w_in, 3)
    bq, bk, bv = np.split(b_in, 3)
    proj = lambda x, w, b, ln: (x @ w.T + b).reshape(n, ln, heads, d).transpose(0, 2, 1, 3)  # noqa: E731
    Q, K, V = proj(q, wq, bq, L), proj(k, wk, bk, S), proj(v, wv, bv, S)
    s = Q @ K.transpose(0, 1, 3, 2) / np.sqrt(d)
    if attn_mask is not None:
        s = np.where(attn_mask, -np.inf, s)
    if kpm is not None:
        s = np.where(kpm[:, None, None, :], -np.inf, s)
    a = np.exp(s - s.max(-1, keepdims=True))
    a /= a.sum(-1, keepdims=True)
    out = (a @ V).transpose(0, 2, 1, 3).reshape(n, L, E) @ w_out.T + b_out
    return out, a.mean(1)


@pytest.mark.parametrize("batch_first", [True, False])
def test_multihead_attention_matches_numpy(batch_first):
    mha = nn.MultiheadAttention(8, 2, batch_first=batch_first)
    with dg.no_grad():
        mha.in_proj_bias.copy_(dg.tensor(randn(24)))  # default init zeros it; make the test see it
        mha.out_proj.bias.copy_(dg.tensor(randn(8)))
    q, k = randn(3, 4, 8), randn(3, 5, 8)
    v = randn(3, 5, 8)
    mask = np.triu(np.ones((4, 5), bool), 2)
    kpm = np.zeros((3, 5), bool)
    kpm[1, 4] = True
    ref_out, ref_w = _mha_ref(q, k, v, mha.in_proj_weight.numpy(), mha.in_proj_bias.numpy(),
                              mha.out_proj.weight.numpy(), mha.out_proj.bias.numpy(), 2, mask, kpm)
    args = [dg.tensor(a if batch_first else a.transpose(1, 0, 2)) for a in (q, k, v)]
    out, w = mha(*args, attn_mask=dg.tensor(mask), key_padding_mask=dg.tensor(kpm))
    out = out.numpy() if batch_first else out.numpy().transpose(1, 0, 2)
    close(out, ref_out, atol=1e-5)
    close(w.numpy(), ref_w, atol=1e-6)
    assert mha(*args, need_weights=False)[1] is None


def test_multihead_attention_matches_torch():
    torch = pytest.importorskip("torch")
    for batch_first in (True, False):
        ours = nn.MultiheadAttention(6, 3, batch_first=batch_first)
        theirs = torch.nn.MultiheadAttention(6, 3, batch_first=batch_first)
        theirs.load_state_dict({k: torch.tensor(v.numpy()) for k, v in ours.state_dict().items()})
        x = randn(2, 4, 6) if batch_first else randn(4, 2, 6)
        mask = np.triu(np.ones((4, 4), bool), 1)
        o1, w1 = ours(dg.tensor(x), dg.tensor(x), dg.tensor(x), attn_mask=dg.tensor(mask),
                      average_attn_weights=False)
        t = torch.tensor(x)
        o2, w2 = theirs(t, t, t, attn_mask=torch.tensor(mask), average_attn_weights=False)
        close(o1.numpy(), o2.detach().numpy(), atol=1e-5)
        close(w1.numpy(), w2.detach().numpy(), atol=1e-6)


def test_layers_match_torch_with_copied_weights():
    torch = pytest.importorskip("torch")
    pairs = [
        (nn.Linear(5, 3), torch.nn.Linear(5, 3), (4, 5)),
        (nn.Conv2d(4, 6, 3, stride=2, padding=1, groups=2), torch.nn.Conv2d(4, 6, 3, stride=2, padding=1, groups=2),
         (2, 4, 7, 7)),
        (nn.Conv1d(3, 4, 3, padding=2, dilation=2), torch.nn.Conv1d(3, 4, 3, padding=2, dilation=2), (2, 3, 9)),
        (nn.LayerNorm(5), torch.nn.LayerNorm(5), (3, 5)),
        (nn.BatchNorm2d(3), torch.nn.BatchNorm2d(3), (4, 3, 5, 5)),
        (nn.BatchNorm1d(3), torch.nn.BatchNorm1d(3), (6, 3, 4)),
    ]
    for ours, theirs, shape in pairs:
        theirs.load_state_dict({k: torch.tensor(v.numpy()) for k, v in ours.state_dict().items()})
        for mode in ("train", "eval"):
            getattr(ours, mode)(), getattr(theirs, mode)()
            x = randn(*shape)
            close(ours(dg.tensor(x)).numpy(), theirs(torch.tensor(x)).detach().numpy(), atol=1e-5)
        for k, v in theirs.state_dict().items():  # running statistics agree too
            close(ours.state_dict()[k].numpy(), v.numpy(), atol=1e-6)


# ---- default initializations (PyTorch's) ----------------------------------------------------------

def _ks_uniform(values, bound):
    from scipy import stats
    return stats.kstest(values.ravel(), stats.uniform(loc=-bound, scale=2 * bound).cdf).pvalue


def test_linear_and_conv_default_init_follow_pytorch():
    dg.manual_seed(0)
    lin = nn.Linear(400, 300)
    b = 1 / math.sqrt(400)  # kaiming_uniform(a=sqrt(5)) gives 1/sqrt(fan_in) for the weight, and so does the bias
    w = lin.weight.numpy()
    assert np.abs(w).max() <= b and np.abs(w).max() > 0.99 * b
    assert _ks_uniform(w, b) > 1e-3
    assert _ks_uniform(lin.bias.numpy(), b) > 1e-3 and np.abs(lin.bias.numpy()).max() <= b
    conv = nn.Conv2d(16, 64, 5)
    bc = 1 / math.sqrt(16 * 25)
    assert _ks_uniform(conv.weight.numpy(), bc) > 1e-3 and np.abs(conv.weight.numpy()).max() <= bc
    assert _ks_uniform(conv.bias.numpy(), bc) > 1e-3
    # a wrong bound is detected by the same test (so the test can fail)
    assert _ks_uniform(w, 1.3 * b) < 1e-6


def test_other_default_inits():
    from scipy import stats
    dg.manual_seed(0)
    emb = nn.Embedding(1000, 50)
    assert stats.kstest(emb.weight.numpy().ravel(), "norm").pvalue > 1e-3
    mha = nn.MultiheadAttention(32, 4)
    xb = math.sqrt(6 / (32 + 96))  # xavier_uniform on the (3E, E) in_proj_weight
    assert _ks_uniform(mha.in_proj_weight.numpy(), xb) > 1e-3
    assert np.all(mha.in_proj_bias.numpy() == 0) and np.all(mha.out_proj.bias.numpy() == 0)
    bn = nn.BatchNorm1d(5)
    assert np.all(bn.weight.numpy() == 1) and np.all(bn.bias.numpy() == 0)
    t = dg.empty(300, 200)
    nn.init.kaiming_normal_(t, mode="fan_out", nonlinearity="relu")
    assert abs(t.numpy().std() - math.sqrt(2 / 300)) < 0.02 * math.sqrt(2 / 300)
    nn.init.xavier_normal_(t)
    assert abs(t.numpy().std() - math.sqrt(2 / 500)) < 0.02 * math.sqrt(2 / 500)
    assert nn.init.calculate_gain("leaky_relu", math.sqrt(5)) == pytest.approx(math.sqrt(1 / 3))


def test_seeded_init_is_reproducible():
    dg.manual_seed(3)
    a = nn.Linear(4, 4).weight.numpy()
    dg.manual_seed(3)
    assert np.array_equal(a, nn.Linear(4, 4).weight.numpy())


# ---- errors -------------------------------------------------------------------------------

def test_wrong_input_shape_names_the_module_and_the_shapes():
    with pytest.raises(dg.ShapeError) as e:
        nn.Linear(4, 2)(dg.zeros(3, 5))
    msg = str(e.value)
    assert "Linear(in_features=4, out_features=2" in msg and "(*, 4)" in msg and "(3, 5)" in msg
    with pytest.raises(ValueError) as e:  # ShapeError is a ValueError
        Net()(dg.zeros(2, 7))
    assert "Net.fc1" in str(e.value) and "(2, 7)" in str(e.value)
    with pytest.raises(dg.ShapeError, match=r"Conv2d\(3, 8.*\(N, 3, H, W\).*\(2, 4, 8, 8\)"):
        nn.Conv2d(3, 8, 3)(dg.zeros(2, 4, 8, 8))
    with pytest.raises(dg.ShapeError, match=r"BatchNorm2d.*\(N, 6, H, W\).*\(2, 5, 3, 3\)"):
        nn.BatchNorm2d(6)(dg.zeros(2, 5, 3, 3))
    with pytest.raises(dg.ShapeError, match=r"LayerNorm.*\(\*, 8\).*\(2, 7\)"):
        nn.LayerNorm(8)(dg.zeros(2, 7))
    with pytest.raises(dg.ShapeError, match=r"MultiheadAttention.*query.*\(2, 3, 5\)"):
        nn.MultiheadAttention(4, 2)(dg.zeros(2, 3, 5), dg.zeros(2, 3, 4), dg.zeros(2, 3, 4))


def test_errors_from_inside_forward_name_the_innermost_module():
    net = nn.Sequential(nn.Conv2d(1, 2, 5), nn.ReLU())
    with pytest.raises(dg.ShapeError) as e:
        net(dg.zeros(1, 1, 3, 3))  # smaller than the kernel: raised by the conv op itself
    assert str(e.value).startswith("in Sequential.0 = Conv2d(1, 2, kernel_size=(5, 5)") and "(3, 3)" in str(e.value)

    class Residual(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = nn.Linear(4, 3)

        def forward(self, x):
            return x + self.body(x)  # (N, 4) + (N, 3): the model's own mistake

    with pytest.raises(dg.ShapeError) as e:
        nn.Sequential(Residual())(dg.zeros(2, 4))
    msg = str(e.value)
    assert msg.startswith("in Sequential.0 = Residual(): ") and msg.count("Residual") == 1
    with pytest.raises(dg.ShapeError) as e:  # errors that already name the module are not prefixed twice
        nn.Sequential(nn.Linear(3, 2))(dg.zeros(2, 4))
    assert str(e.value).startswith("Sequential.0 = Linear(in_features=3")


def test_a_small_model_learns():
    dg.manual_seed(0)
    x = RNG.standard_normal((64, 3)).astype(np.float32)
    y = (x @ np.array([1.5, -2.0, 0.5], np.float32) + 0.3)[:, None]
    model = nn.Sequential(nn.Linear(3, 16), nn.Tanh(), nn.Linear(16, 1))
    opt = dg.optim.Adam(model.parameters(), lr=0.02)
    loss_fn = nn.MSELoss()
    first = None
    for _ in range(150):
        loss = loss_fn(model(dg.tensor(x)), dg.tensor(y))
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.01 * first


@pytest.mark.skipif(not hasattr(dg, "function"), reason="dg.function is not available")
@pytest.mark.parametrize("mode", ["train", "eval"])
def test_modules_under_dg_function_match_eager(mode):
    class Model(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(2, 4, 3, padding=1)
            self.bn = nn.BatchNorm2d(4)
            self.pool = nn.MaxPool2d(2)
            self.avg = nn.AdaptiveAvgPool2d(2)
            self.flat = nn.Flatten()
            self.ln = nn.LayerNorm(16)
            self.fc = nn.Linear(16, 8)
            self.act = nn.GELU()
            self.emb = nn.Embedding(5, 8)
            self.mha = nn.MultiheadAttention(8, 2, batch_first=True)

        def forward(self, x, idx):
            h = self.flat(self.avg(self.pool(self.bn(self.conv(x)))))
            h = self.act(self.fc(self.ln(h))).unsqueeze(1) + self.emb(idx)
            return self.mha(h, h, h)

    eager, traced = Model(), Model()
    traced.load_state_dict(eager.state_dict())
    getattr(eager, mode)(), getattr(traced, mode)()
    f = dg.function(lambda x, i: traced(x, i))
    idx = dg.tensor([[0, 1, 4]] * 3)
    for _ in range(2):
        x = dg.tensor(randn(3, 2, 8, 8))
        for a, b in zip(eager(x, idx), f(x, idx)):
            close(b.numpy(), a.numpy(), atol=1e-5)
    # BatchNorm's running statistics were updated in place by the compiled calls too
    close(traced.bn.running_var.numpy(), eager.bn.running_var.numpy())
    assert int(traced.bn.num_batches_tracked.item()) == (2 if mode == "train" else 0)


def test_every_layer_exports_to_onnx_and_matches_onnxruntime(tmp_path):
    onnx_export = pytest.importorskip("dualgraph.onnx")
    pytest.importorskip("onnxruntime")

    class Model(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(2, 4, 3, padding=1)
            self.conv1 = nn.Conv1d(4, 4, 3, padding=1)
            self.bn, self.bn1 = nn.BatchNorm2d(4), nn.BatchNorm1d(16)
            self.pool, self.apool, self.avg = nn.MaxPool2d(2), nn.AvgPool2d(2), nn.AdaptiveAvgPool2d(2)
            self.flat, self.ln, self.fc = nn.Flatten(), nn.LayerNorm(16), nn.Linear(16, 8)
            self.acts = nn.Sequential(nn.GELU(), nn.SiLU(), nn.LeakyReLU(0.1), nn.Tanh(), nn.Sigmoid(), nn.ReLU(),
                                      nn.Dropout(0.3))
            self.emb = nn.Embedding(5, 8, padding_idx=0)
            self.mha = nn.MultiheadAttention(8, 2, batch_first=True)
            self.sm = nn.Softmax(dim=-1)

        def forward(self, x, idx):
            h = self.pool(self.bn(self.conv(x)))
            h = self.flat(self.avg(h)) + self.flat(self.apool(h))
            h = self.bn1(h) + self.conv1(h.reshape(-1, 4, 4)).reshape(-1, 16)
            h = self.acts(self.fc(self.ln(h))).unsqueeze(1) + self.emb(idx)
            o, w = self.mha(h, h, h, attn_mask=dg.tensor(np.triu(np.ones((3, 3), bool), 1)))
            return self.sm(o), w

    model = Model()
    model(dg.tensor(randn(3, 2, 8, 8)), dg.tensor([[0, 1, 4]] * 3))  # non-trivial running statistics
    model.eval()
    args = (dg.tensor(randn(3, 2, 8, 8)), dg.tensor([[0, 1, 4], [2, 3, 0], [1, 1, 1]]))
    path = str(tmp_path / "all_layers.onnx")
    onnx_export.export(model, args, path, verify=True)  # raises unless onnxruntime agrees
    import onnxruntime as ort
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    feeds = {i.name: a.numpy() for i, a in zip(sess.get_inputs(), args)}
    got = sess.run(None, feeds)
    for ours, theirs in zip(model(*args), got):
        close(theirs, ours.numpy(), atol=1e-5)


@pytest.mark.parametrize("norm_type", [2.0, 1.0, float("inf")])
def test_clip_grad_norm_matches_numpy(norm_type):
    ps = [nn.Parameter(np.zeros(s, np.float32)) for s in ((3, 4), (5,))]
    grads = [randn(3, 4) * 3, randn(5) * 3]
    for p, g in zip(ps, grads):
        p.grad = dg.tensor(g)
    flat = np.concatenate([g.ravel() for g in grads])
    total = np.linalg.norm(flat, ord=norm_type)
    got = nn.utils.clip_grad_norm_(ps, max_norm=1.0, norm_type=norm_type)
    close(got.item(), total)
    for p, g in zip(ps, grads):
        close(p.grad.numpy(), g * min(1.0, 1.0 / (total + 1e-6)))
    nn.utils.clip_grad_norm_(ps, max_norm=100.0)  # already small: unchanged
    close(ps[1].grad.numpy(), grads[1] * min(1.0, 1.0 / (total + 1e-6)))


def test_clip_grad_value():
    p = nn.Parameter(np.zeros(4, np.float32))
    p.grad = dg.tensor([-3.0, -0.5, 0.2, 7.0])
    nn.utils.clip_grad_value_([p], 1.0)
    assert p.grad.numpy().tolist() == [-1.0, -0.5, pytest.approx(0.2), 1.0]


def test_multihead_attention_kdim_vdim_unbatched_and_padding_match_torch():
    torch = pytest.importorskip("torch")
    ours = nn.MultiheadAttention(6, 2, kdim=4, vdim=5, batch_first=True)
    theirs = torch.nn.MultiheadAttention(6, 2, kdim=4, vdim=5, batch_first=True)
    assert sorted(ours.state_dict()) == sorted(theirs.state_dict())
    theirs.load_state_dict({k: torch.tensor(v.numpy()) for k, v in ours.state_dict().items()})
    q, k, v = randn(2, 3, 6), randn(2, 4, 4), randn(2, 4, 5)
    kpm = np.array([[False, False, True, False], [False, False, False, True]])
    o1, w1 = ours(dg.tensor(q), dg.tensor(k), dg.tensor(v), key_padding_mask=dg.tensor(kpm))
    o2, w2 = theirs(torch.tensor(q), torch.tensor(k), torch.tensor(v), key_padding_mask=torch.tensor(kpm))
    close(o1.numpy(), o2.detach().numpy(), atol=1e-5)
    close(w1.numpy(), w2.detach().numpy(), atol=1e-6)
    o1, w1 = ours(dg.tensor(q[0]), dg.tensor(k[0]), dg.tensor(v[0]))  # unbatched (L, E)
    o2, w2 = theirs(torch.tensor(q[0]), torch.tensor(k[0]), torch.tensor(v[0]))
    assert o1.shape == (3, 6) and w1.shape == (3, 4)
    close(o1.numpy(), o2.detach().numpy(), atol=1e-5)
    close(w1.numpy(), w2.detach().numpy(), atol=1e-6)


def test_multihead_attention_is_causal_builds_the_causal_mask():
    mha = nn.MultiheadAttention(4, 1, batch_first=True)
    x = dg.tensor(randn(1, 5, 4))
    _, w = mha(x, x, x, is_causal=True)
    assert np.all(np.triu(w.numpy()[0], 1) == 0)
    mask = dg.tensor(np.triu(np.ones((5, 5), bool), 1))
    close(mha(x, x, x, is_causal=True)[0].numpy(), mha(x, x, x, attn_mask=mask)[0].numpy())


def test_buffers_persistent_and_not():
    class WithBuffers(nn.Module):
        def __init__(self):
            super().__init__()
            self.register_buffer("kept", dg.ones(2))
            self.register_buffer("scratch", dg.zeros(3), persistent=False)

    m = WithBuffers()
    assert [n for n, _ in m.named_buffers()] == ["kept", "scratch"]
    assert list(m.state_dict()) == ["kept"]
    m.kept = dg.full((2,), 5.0)  # assigning a tensor to a buffer name replaces the buffer
    assert m.state_dict()["kept"].numpy().tolist() == [5.0, 5.0]
    with pytest.raises(TypeError, match="buffer"):
        m.kept = "not a tensor"
    m2 = WithBuffers()
    m2.load_state_dict(m.state_dict())
    assert m2.kept.numpy().tolist() == [5.0, 5.0]


def test_constructor_defaults_are_pytorchs():
    torch = pytest.importorskip("torch")
    import inspect
    pairs = [(getattr(nn, name), getattr(torch.nn, name)) for name in (
        "Linear", "Conv1d", "Conv2d", "MaxPool2d", "AvgPool2d", "BatchNorm1d", "BatchNorm2d", "LayerNorm",
        "Dropout", "Embedding", "Flatten", "GELU", "LeakyReLU", "ELU", "Softplus", "Softmax",
        "MultiheadAttention", "CrossEntropyLoss", "NLLLoss", "MSELoss", "BCEWithLogitsLoss")]
    pairs += [(getattr(dg.optim, name), getattr(torch.optim, name)) for name in ("SGD", "Adam", "AdamW", "RMSprop")]
    pairs += [(getattr(dg.optim.lr_scheduler, name), getattr(torch.optim.lr_scheduler, name))
              for name in ("StepLR", "CosineAnnealingLR", "LambdaLR")]
    checked = 0
    for ours, theirs in pairs:
        mine = inspect.signature(ours.__init__).parameters
        ref = inspect.signature(theirs.__init__).parameters
        for name, p in mine.items():
            if name in ref and p.default is not inspect.Parameter.empty and name not in ("device", "dtype"):
                assert p.default == ref[name].default, (ours.__name__, name, p.default, ref[name].default)
                checked += 1
    assert checked > 60


def test_trunc_normal_and_orthogonal_init():
    dg.manual_seed(0)
    t = nn.init.trunc_normal_(dg.empty(200, 100), std=0.5, a=-0.4, b=0.6)
    v = t.numpy()
    assert v.min() >= -0.4 and v.max() <= 0.6 and v.min() < -0.39 and v.max() > 0.59
    from scipy import stats
    ref = stats.truncnorm(-0.4 / 0.5, 0.6 / 0.5, scale=0.5)
    assert stats.kstest(v.ravel(), ref.cdf).pvalue > 1e-3
    for shape in ((6, 4), (4, 6), (3, 2, 2)):
        w = nn.init.orthogonal_(dg.empty(*shape), gain=2.0).numpy().reshape(shape[0], -1)
        small = min(w.shape)
        gram = w.T @ w if w.shape[0] >= w.shape[1] else w @ w.T
        close(gram, 4.0 * np.eye(small), atol=1e-4)
