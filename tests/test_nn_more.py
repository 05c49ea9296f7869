"""More of torch.nn (losses, activations, norms, padding, pixel shuffle, interpolate, Bilinear): values and
gradients against PyTorch where installed, hand/numpy values without it, and traced/ONNX checks."""
import math

import numpy as np
import pytest

import dualgraph as dg
import dualgraph.nn as nn
import dualgraph.nn.functional as F

RNG = np.random.default_rng(0)


def _r(*shape):
    return RNG.standard_normal(shape).astype(np.float32)


def _close(a, b, tol=1e-5):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=tol, atol=tol)


# ---------------------------------------------------------------- torch-free checks

def test_smooth_l1_and_huber_by_hand():
    x = dg.tensor([0.0, 0.5, 3.0])
    t = dg.tensor([0.0, 0.0, 0.0])
    _close(F.smooth_l1_loss(x, t, reduction="none").numpy(), [0.0, 0.125, 2.5])
    _close(F.smooth_l1_loss(x, t, reduction="none", beta=2.0).numpy(), [0.0, 0.0625, 2.0])
    _close(F.huber_loss(x, t, reduction="none", delta=2.0).numpy(), [0.0, 0.125, 4.0])
    _close(nn.SmoothL1Loss(beta=0.0)(x, t).item(), 3.5 / 3)


def test_kl_div_batchmean_by_hand():
    p = np.array([[0.2, 0.8], [0.5, 0.5]], np.float32)
    q = np.array([[0.4, 0.6], [0.1, 0.9]], np.float32)
    want = (p * np.log(p / q)).sum() / 2
    got = F.kl_div(dg.tensor(np.log(q)), dg.tensor(p), reduction="batchmean").item()
    _close(got, want)
    got = nn.KLDivLoss(reduction="batchmean", log_target=True)(dg.tensor(np.log(q)), dg.tensor(np.log(p))).item()
    _close(got, want)
    # 0 * log 0 is 0
    assert F.kl_div(dg.tensor([-1.0]), dg.tensor([0.0]), reduction="sum").item() == 0.0


def test_activations_by_hand():
    x = np.array([-4.0, -1.0, -0.25, 0.0, 0.25, 1.0, 4.0, 7.0], np.float32)
    t = dg.tensor(x)
    _close(F.relu6(t).numpy(), np.clip(x, 0, 6))
    _close(F.logsigmoid(t).numpy(), -np.log1p(np.exp(-x)))
    _close(F.mish(t).numpy(), x * np.tanh(np.log1p(np.exp(x))))
    _close(F.hardswish(t).numpy(), x * np.clip(x + 3, 0, 6) / 6)
    _close(F.hardsigmoid(t).numpy(), np.clip(x / 6 + 0.5, 0, 1))
    _close(F.softsign(t).numpy(), x / (1 + np.abs(x)))
    _close(F.softshrink(t, 0.5).numpy(), np.where(x > 0.5, x - 0.5, np.where(x < -0.5, x + 0.5, 0)))
    _close(F.hardshrink(t, 0.5).numpy(), np.where(np.abs(x) > 0.5, x, 0))
    _close(nn.Threshold(0.1, 20.0)(t).numpy(), np.where(x > 0.1, x, 20.0))
    _close(nn.SELU()(t).numpy(), 1.0507009873554805 * np.where(x > 0, x, 1.6732632423543772 * np.expm1(x)))
    _close(nn.CELU(2.0)(t).numpy(), np.maximum(x, 0) + np.minimum(0, 2 * np.expm1(x / 2)))
    _close(nn.Softmin(dim=0)(t).numpy(), np.exp(-x) / np.exp(-x).sum())
    g = F.glu(dg.tensor([[1.0, 2.0, 0.0, 3.0]]))
    _close(g.numpy(), [[1 / (1 + math.exp(0)), 2 / (1 + math.exp(-3))]])
    with pytest.raises(ValueError, match="glu"):
        F.glu(dg.tensor([1.0, 2.0, 3.0]))


def test_prelu_per_channel_and_grad():
    m = nn.PReLU(3, init=0.1)
    x = dg.tensor(_r(2, 3, 4), requires_grad=True)
    y = m(x)
    w = np.array([0.1, 0.1, 0.1], np.float32).reshape(1, 3, 1)
    _close(y.numpy(), np.where(x.numpy() > 0, x.numpy(), w * x.numpy()))
    y.sum().backward()
    _close(m.weight.grad.numpy(), np.minimum(x.numpy(), 0).sum(axis=(0, 2)))
    assert len(list(m.parameters())) == 1


def test_group_norm_numpy():
    x = _r(2, 6, 3, 3)
    m = nn.GroupNorm(3, 6)
    xs = x.reshape(2, 3, -1)
    want = ((xs - xs.mean(-1, keepdims=True)) / np.sqrt(xs.var(-1, keepdims=True) + 1e-5)).reshape(x.shape)
    _close(m(dg.tensor(x)).numpy(), want, 1e-4)
    with pytest.raises(ValueError):
        nn.GroupNorm(4, 6)


def test_instance_norm_numpy_and_running_stats():
    x = _r(2, 3, 5)
    m = nn.InstanceNorm1d(3, track_running_stats=True)
    out = m(dg.tensor(x)).numpy()
    want = (x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, keepdims=True) + 1e-5)
    _close(out, want, 1e-4)
    _close(m.running_mean.numpy(), 0.1 * x.mean(-1).mean(0), 1e-5)
    _close(m.running_var.numpy(), 0.9 + 0.1 * x.var(-1, ddof=1).mean(0), 1e-5)
    m.eval()
    out = m(dg.tensor(x)).numpy()
    rm, rv = m.running_mean.numpy()[None, :, None], m.running_var.numpy()[None, :, None]
    _close(out, (x - rm) / np.sqrt(rv + 1e-5), 1e-4)


def test_padding_modules_numpy():
    x = _r(1, 2, 3, 4)
    _close(nn.ZeroPad2d((1, 2, 0, 1))(dg.tensor(x)).numpy(), np.pad(x, ((0, 0), (0, 0), (0, 1), (1, 2))))
    _close(nn.ConstantPad2d(1, 3.5)(dg.tensor(x)).numpy(),
           np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)), constant_values=3.5))
    _close(nn.ReflectionPad2d(2)(dg.tensor(x)).numpy(), np.pad(x, ((0, 0), (0, 0), (2, 2), (2, 2)), "reflect"))
    _close(nn.ReplicationPad2d((1, 0, 2, 1))(dg.tensor(x)).numpy(),
           np.pad(x, ((0, 0), (0, 0), (2, 1), (1, 0)), "edge"))
    y = _r(2, 3, 5)
    _close(nn.ReflectionPad1d((2, 1))(dg.tensor(y)).numpy(), np.pad(y, ((0, 0), (0, 0), (2, 1)), "reflect"))
    _close(nn.ConstantPad1d(2, -1.0)(dg.tensor(y)).numpy(),
           np.pad(y, ((0, 0), (0, 0), (2, 2)), constant_values=-1.0))


def test_pixel_shuffle_roundtrip_and_layout():
    x = np.arange(1 * 8 * 2 * 3, dtype=np.float32).reshape(1, 8, 2, 3)
    y = F.pixel_shuffle(dg.tensor(x), 2)
    assert y.shape == (1, 2, 4, 6)
    # out[c, h*r+i, w*r+j] = in[c*r*r + i*r + j, h, w]
    assert y.numpy()[0, 1, 3, 4] == x[0, 1 * 4 + 1 * 2 + 0, 1, 2]
    _close(F.pixel_unshuffle(y, 2).numpy(), x)
    _close(nn.PixelUnshuffle(2)(nn.PixelShuffle(2)(dg.tensor(x))).numpy(), x)


def test_interpolate_by_hand():
    x = dg.tensor(np.array([[[0.0, 1.0, 2.0]]], np.float32))
    _close(F.interpolate(x, scale_factor=2, mode="nearest").numpy(), [[[0, 0, 1, 1, 2, 2]]])
    _close(F.interpolate(x, size=5, mode="linear", align_corners=True).numpy(), [[[0, 0.5, 1, 1.5, 2]]])
    # align_corners=False: src = (dst + 0.5) / 2 - 0.5, clamped at 0
    _close(F.interpolate(x, scale_factor=2, mode="linear", align_corners=False).numpy(),
           [[[0, 0.25, 0.75, 1.25, 1.75, 2]]])
    img = dg.tensor(_r(1, 2, 3, 4))
    assert F.interpolate(img, size=(5, 7), mode="bilinear").shape == (1, 2, 5, 7)
    with pytest.raises(ValueError, match="interpolate"):
        F.interpolate(img, mode="bilinear")
    with pytest.raises(ValueError, match="interpolate"):
        F.interpolate(img, scale_factor=2, mode="bicubic")


def test_misc_losses_by_hand():
    a = dg.tensor([1.0, 2.0])
    b = dg.tensor([2.0, 0.0])
    y = dg.tensor([1.0, 1.0])
    _close(F.margin_ranking_loss(a, b, y, margin=0.5, reduction="none").numpy(), [1.5, 0.0])
    _close(F.soft_margin_loss(a, y, reduction="none").numpy(), np.log1p(np.exp(-np.array([1.0, 2.0]))))
    x = dg.tensor([0.0, math.log(3.0)])
    _close(F.poisson_nll_loss(x, dg.tensor([1.0, 2.0]), reduction="none").numpy(),
           [1.0, 3.0 - 2.0 * math.log(3.0)])
    _close(F.gaussian_nll_loss(dg.tensor([1.0]), dg.tensor([3.0]), dg.tensor([2.0]), reduction="none").numpy(),
           [0.5 * (math.log(2.0) + 2.0)])
    cs = nn.CosineSimilarity(dim=1)(dg.tensor([[1.0, 0.0]]), dg.tensor([[1.0, 1.0]]))
    _close(cs.numpy(), [1 / math.sqrt(2)])
    _close(nn.PairwiseDistance(eps=0.0)(dg.tensor([[0.0, 0.0]]), dg.tensor([[3.0, 4.0]])).numpy(), [5.0])


def test_bad_input_errors():
    with pytest.raises(ValueError, match="smooth_l1_loss"):
        F.smooth_l1_loss(dg.tensor([1.0, 2.0]), dg.tensor([1.0, 2.0, 3.0]))
    with pytest.raises(ValueError, match="group_norm"):
        F.group_norm(dg.tensor(_r(2, 6, 3)), 4)
    with pytest.raises(ValueError, match="pixel_shuffle"):
        F.pixel_shuffle(dg.tensor(_r(1, 6, 2, 2)), 2)
    with pytest.raises(ValueError):
        nn.KLDivLoss(reduction="avg")


# ---------------------------------------------------------------- against PyTorch

def _pair(shape, positive=False, seed=0):
    a = np.random.default_rng(seed).standard_normal(shape).astype(np.float32)
    if positive:
        a = np.abs(a) + 0.1
    return a


def _both(arrs, torch, grad_of=None):
    req = [grad_of is None or i in grad_of for i in range(len(arrs))]
    d = [dg.tensor(a, requires_grad=r) for a, r in zip(arrs, req)]
    t = [torch.tensor(a, requires_grad=r) for a, r in zip(arrs, req)]
    return d, t


def _check(dfn, tfn, arrs, torch, grad_of=None, tol=1e-4):
    d, t = _both(arrs, torch, grad_of)
    yd, yt = dfn(*d), tfn(*t)
    _close(yd.numpy(), yt.detach().numpy(), tol)
    gw = np.random.default_rng(1).standard_normal(tuple(yt.shape)).astype(np.float32)
    (yd * dg.tensor(gw)).sum().backward()
    (yt * torch.tensor(gw)).sum().backward()
    for i, (a, b) in enumerate(zip(d, t)):
        if grad_of is not None and i not in grad_of:
            continue
        _close(a.grad.numpy(), b.grad.numpy(), tol)


LOSS_CASES = [
    ("smooth_l1", lambda F_, x, y: F_.smooth_l1_loss(x, y, beta=0.7), [(4, 5), (4, 5)], {}),
    ("huber", lambda F_, x, y: F_.huber_loss(x, y, delta=0.6, reduction="sum"), [(4, 5), (4, 5)], {}),
    ("kl_batchmean", lambda F_, x, y: F_.kl_div(F_.log_softmax(x, dim=1), F_.softmax(y, dim=1),
                                                 reduction="batchmean"), [(4, 5), (4, 5)], {}),
    ("kl_logtarget", lambda F_, x, y: F_.kl_div(x, y, reduction="none", log_target=True), [(4, 5), (4, 5)], {}),
    ("soft_margin", lambda F_, x, y: F_.soft_margin_loss(x, y), [(4, 5), (4, 5)], {"grad_of": (0,)}),
    ("multilabel", lambda F_, x, y: F_.multilabel_soft_margin_loss(x, y.sigmoid()), [(4, 5), (4, 5)], {}),
    ("poisson", lambda F_, x, y: F_.poisson_nll_loss(x, y.abs() * 3, full=True), [(4, 5), (4, 5)], {}),
    ("poisson_nolog", lambda F_, x, y: F_.poisson_nll_loss(x.abs() + 0.1, y.abs(), log_input=False),
     [(4, 5), (4, 5)], {}),
    ("margin_ranking", lambda F_, x, y: F_.margin_ranking_loss(x[:, 0], y[:, 0], (x[:, 1] > 0).float() * 2 - 1
                                                               if hasattr(x, "float") else
                                                               (x[:, 1] > 0).astype("float32") * 2 - 1,
                                                               margin=0.2), [(6, 2), (6, 2)], {}),
    ("triplet", lambda F_, a, p: F_.triplet_margin_loss(a, p, a * 0.5 + 1.0, swap=True), [(4, 5), (4, 5)], {}),
    ("cos_embed", lambda F_, a, b: F_.cosine_embedding_loss(a, b, (a[:, 0] > 0) * 2 - 1 if False else
                                                            a[:, 0].sign(), margin=0.1),
     [(4, 5), (4, 5)], {"grad_of": (1,)}),
    ("gaussian", lambda F_, x, y: F_.gaussian_nll_loss(x, y, y.abs() + 0.05, full=True), [(4, 5), (4, 5)], {}),
]


@pytest.mark.parametrize("name,fn,shapes,kw", LOSS_CASES, ids=[c[0] for c in LOSS_CASES])
def test_losses_vs_torch(name, fn, shapes, kw):
    torch = pytest.importorskip("torch")
    tF = torch.nn.functional
    arrs = [_pair(s, seed=i) for i, s in enumerate(shapes)]
    _check(lambda *a: fn(F, *a), lambda *a: fn(tF, *a), arrs, torch, **kw)


ACT_CASES = ["relu6", "logsigmoid", "mish", "hardswish", "hardsigmoid", "selu", "softsign", "tanhshrink",
             ("celu", {"alpha": 1.5}), ("softshrink", {"lambd": 0.3}), ("hardshrink", {"lambd": 0.3}),
             ("softmin", {"dim": 1}), ("glu", {"dim": 1}), ("threshold", {"threshold": 0.2, "value": -3.0}),
             ("hardtanh", {"min_val": -0.5, "max_val": 0.7})]


@pytest.mark.parametrize("case", ACT_CASES, ids=[c if isinstance(c, str) else c[0] for c in ACT_CASES])
def test_activations_vs_torch(case):
    torch = pytest.importorskip("torch")
    name, kw = (case, {}) if isinstance(case, str) else case
    arrs = [_pair((3, 4)) * 3]
    _check(lambda x: getattr(F, name)(x, **kw), lambda x: getattr(torch.nn.functional, name)(x, **kw), arrs, torch)


MODULE_CASES = [
    ("LogSigmoid", (), [(3, 4)]), ("Softmin", (1,), [(3, 4)]), ("GLU", (), [(3, 4)]), ("Mish", (), [(3, 4)]),
    ("Hardswish", (), [(3, 4)]), ("Hardsigmoid", (), [(3, 4)]), ("SELU", (), [(3, 4)]), ("CELU", (0.5,), [(3, 4)]),
    ("Softsign", (), [(3, 4)]), ("Tanhshrink", (), [(3, 4)]), ("Softshrink", (0.2,), [(3, 4)]),
    ("Hardshrink", (0.2,), [(3, 4)]), ("Threshold", (0.1, 2.0), [(3, 4)]),
    ("PixelShuffle", (2,), [(2, 8, 3, 3)]), ("PixelUnshuffle", (2,), [(2, 2, 4, 6)]),
    ("LocalResponseNorm", (3,), [(2, 5, 3, 3)]), ("LocalResponseNorm", (4, 0.1, 0.5, 2.0), [(2, 5, 3)]),
    ("ReflectionPad2d", ((1, 2, 2, 0),), [(1, 2, 3, 4)]), ("ReplicationPad2d", (2,), [(1, 2, 3, 4)]),
    ("ReflectionPad1d", (2,), [(1, 2, 4)]), ("ZeroPad2d", (1,), [(1, 2, 3, 4)]),
    ("ConstantPad1d", ((1, 2), 0.5), [(1, 2, 4)]), ("ConstantPad2d", ((1, 0, 2, 1), -1.0), [(1, 2, 3, 4)]),
    ("SmoothL1Loss", (), [(3, 4), (3, 4)]), ("HuberLoss", ("sum", 0.5), [(3, 4), (3, 4)]),
    ("SoftMarginLoss", (), [(3, 4), (3, 4)]), ("CosineSimilarity", (1,), [(3, 4), (3, 4)]),
    ("PairwiseDistance", (), [(3, 4), (3, 4)]), ("TripletMarginLoss", (0.5,), [(3, 4), (3, 4), (3, 4)]),
    ("GaussianNLLLoss", (), [(3, 4), (3, 4), (3, 1)]),
]


@pytest.mark.parametrize("name,args,shapes", MODULE_CASES, ids=[f"{c[0]}{i}" for i, c in enumerate(MODULE_CASES)])
def test_modules_vs_torch(name, args, shapes):
    torch = pytest.importorskip("torch")
    arrs = [_pair(s, seed=i) for i, s in enumerate(shapes)]
    if name == "GaussianNLLLoss":
        arrs[2] = np.abs(arrs[2]) + 0.1
    grad_of = (0,) if name == "SoftMarginLoss" else None
    _check(getattr(nn, name)(*args), getattr(torch.nn, name)(*args), arrs, torch, grad_of=grad_of)


def _copy(dm, tm):
    for n, p in tm.named_parameters():
        getattr(dm, n.split(".")[-1]).data = dg.tensor(p.detach().numpy().copy())


@pytest.mark.parametrize("groups", [1, 2, 4])
def test_group_norm_vs_torch(groups):
    torch = pytest.importorskip("torch")
    tm = torch.nn.GroupNorm(groups, 4)
    with torch.no_grad():
        tm.weight.copy_(torch.randn(4))
        tm.bias.copy_(torch.randn(4))
    dm = nn.GroupNorm(groups, 4)
    _copy(dm, tm)
    x = _pair((3, 4, 5, 2))
    xd, xt = dg.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    yd, yt = dm(xd), tm(xt)
    _close(yd.numpy(), yt.detach().numpy(), 1e-4)
    (yd * yd).sum().backward()
    (yt * yt).sum().backward()
    _close(xd.grad.numpy(), xt.grad.numpy(), 1e-3)
    _close(dm.weight.grad.numpy(), tm.weight.grad.numpy(), 1e-3)


@pytest.mark.parametrize("cls,shape", [("InstanceNorm1d", (3, 4, 6)), ("InstanceNorm2d", (2, 4, 3, 5)),
                                       ("InstanceNorm2d", (4, 3, 5))])
def test_instance_norm_vs_torch(cls, shape):
    torch = pytest.importorskip("torch")
    tm = getattr(torch.nn, cls)(4 if len(shape) == 4 or cls == "InstanceNorm1d" else 4, affine=True,
                               track_running_stats=True)
    if cls == "InstanceNorm2d" and len(shape) == 3:
        shape = (4, 3, 5)
    with torch.no_grad():
        tm.weight.copy_(torch.randn(4))
        tm.bias.copy_(torch.randn(4))
    dm = getattr(nn, cls)(4, affine=True, track_running_stats=True)
    _copy(dm, tm)
    x = _pair(shape)
    xd, xt = dg.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    yd, yt = dm(xd), tm(xt)
    _close(yd.numpy(), yt.detach().numpy(), 1e-4)
    (yd * yd).sum().backward()
    (yt * yt).sum().backward()
    _close(xd.grad.numpy(), xt.grad.numpy(), 1e-3)
    _close(dm.running_mean.numpy(), tm.running_mean.numpy(), 1e-5)
    _close(dm.running_var.numpy(), tm.running_var.numpy(), 1e-5)
    dm.eval()
    tm.eval()
    _close(dm(dg.tensor(x)).numpy(), tm(torch.tensor(x)).detach().numpy(), 1e-4)


def test_prelu_vs_torch():
    torch = pytest.importorskip("torch")
    for n in (1, 3):
        tm, dm = torch.nn.PReLU(n, init=0.2), nn.PReLU(n, init=0.2)
        x = _pair((2, 3, 4))
        xd, xt = dg.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
        yd, yt = dm(xd), tm(xt)
        _close(yd.numpy(), yt.detach().numpy())
        (yd * yd).sum().backward()
        (yt * yt).sum().backward()
        _close(dm.weight.grad.numpy(), tm.weight.grad.numpy(), 1e-4)
        _close(xd.grad.numpy(), xt.grad.numpy(), 1e-4)


INTERP_CASES = [
    ((1, 2, 3, 4), dict(scale_factor=2, mode="nearest")),
    ((1, 2, 5, 7), dict(size=(3, 4), mode="nearest")),
    ((1, 2, 3, 4), dict(scale_factor=1.7, mode="nearest")),
    ((2, 2, 3, 4), dict(size=(5, 9), mode="bilinear", align_corners=False)),
    ((2, 2, 3, 4), dict(size=(5, 9), mode="bilinear", align_corners=True)),
    ((1, 3, 6, 5), dict(scale_factor=0.5, mode="bilinear", align_corners=False)),
    ((1, 3, 4, 4), dict(scale_factor=(2, 3), mode="bilinear", align_corners=False)),
    ((2, 3, 5), dict(scale_factor=2.5, mode="linear", align_corners=False)),
    ((2, 3, 5), dict(size=8, mode="linear", align_corners=True)),
    ((2, 3, 5), dict(size=8, mode="nearest")),
    ((1, 2, 3, 5), dict(size=(7, 3), mode="nearest-exact")),
    ((1, 2, 4, 4), dict(scale_factor=1.5, mode="nearest-exact")),
]


@pytest.mark.parametrize("shape,kw", INTERP_CASES, ids=[str(i) for i in range(len(INTERP_CASES))])
def test_interpolate_vs_torch(shape, kw):
    torch = pytest.importorskip("torch")
    x = _pair(shape)
    _check(lambda a: F.interpolate(a, **kw), lambda a: torch.nn.functional.interpolate(a, **kw), [x], torch)
    _check(nn.Upsample(**kw), torch.nn.Upsample(**kw), [x], torch)


def test_bilinear_vs_torch():
    torch = pytest.importorskip("torch")
    tm = torch.nn.Bilinear(3, 4, 5)
    dm = nn.Bilinear(3, 4, 5)
    _copy(dm, tm)
    a, b = _pair((6, 3)), _pair((6, 4), seed=2)
    ad, bd = dg.tensor(a, requires_grad=True), dg.tensor(b, requires_grad=True)
    at, bt = torch.tensor(a, requires_grad=True), torch.tensor(b, requires_grad=True)
    yd, yt = dm(ad, bd), tm(at, bt)
    _close(yd.numpy(), yt.detach().numpy(), 1e-4)
    yd.sum().backward()
    yt.sum().backward()
    _close(ad.grad.numpy(), at.grad.numpy(), 1e-4)
    _close(dm.weight.grad.numpy(), tm.weight.grad.numpy(), 1e-4)


# ---------------------------------------------------------------- traced and exported

def test_traced_matches_eager():
    gn = nn.GroupNorm(2, 4)
    x = dg.tensor(_r(2, 4, 3, 3))
    t = dg.tensor(_r(2, 4, 6, 6))

    @dg.function
    def f(x, t):
        y = F.interpolate(gn(x), scale_factor=2, mode="bilinear", align_corners=False)
        return F.smooth_l1_loss(y, t, beta=0.5) + F.mish(y).mean()

    want = F.smooth_l1_loss(F.interpolate(gn(x), scale_factor=2, mode="bilinear"), t, beta=0.5) \
        + F.mish(F.interpolate(gn(x), scale_factor=2, mode="bilinear")).mean()
    _close(f(x, t).item(), want.item(), 1e-5)


@pytest.mark.parametrize("which", ["interp_nearest", "interp_bilinear", "group_norm", "huber", "pixel_shuffle",
                                   "reflect_pad"])
def test_onnx_export_verifies(which, tmp_path):
    pytest.importorskip("onnxruntime")
    x = dg.tensor(_r(2, 4, 3, 4))
    gn = nn.GroupNorm(2, 4)
    fns = {
        "interp_nearest": lambda x: F.interpolate(x, scale_factor=2, mode="nearest"),
        "interp_bilinear": lambda x: F.interpolate(x, size=(5, 7), mode="bilinear", align_corners=True),
        "group_norm": lambda x: gn(x),
        "huber": lambda x: F.huber_loss(x, x * 0.5 + 0.3, delta=0.4),
        "pixel_shuffle": lambda x: F.pixel_shuffle(x, 2),
        "reflect_pad": lambda x: nn.ReflectionPad2d(1)(x),
    }
    fn = dg.function(fns[which])
    dg.onnx.export(fn, (x,), str(tmp_path / "m.onnx"), verify=True)


def test_embedding_bag_numpy():
    w = _r(6, 3)
    m = nn.EmbeddingBag(6, 3, mode="sum", _weight=w)
    idx = [1, 2, 4, 5, 4]
    out = m(dg.tensor(idx), dg.tensor([0, 2, 2])).numpy()
    _close(out, [w[1] + w[2], np.zeros(3), w[4] + w[5] + w[4]])
    out = F.embedding_bag(dg.tensor([[0, 1], [2, 3]]), dg.tensor(w), mode="max").numpy()
    _close(out, [np.maximum(w[0], w[1]), np.maximum(w[2], w[3])])
    out = F.embedding_bag(dg.tensor([0, 1, 2]), dg.tensor(w), [0, 1], mode="mean", padding_idx=2).numpy()
    _close(out, [w[0], w[1]])
    with pytest.raises(ValueError, match="embedding_bag"):
        F.embedding_bag(dg.tensor([0, 1]), dg.tensor(w), mode="mean")


@pytest.mark.parametrize("mode", ["sum", "mean", "max"])
@pytest.mark.parametrize("last", [False, True])
def test_embedding_bag_vs_torch(mode, last):
    torch = pytest.importorskip("torch")
    w = _r(8, 4)
    idx = np.array([1, 2, 4, 5, 4, 3, 2, 7, 0], np.int64)
    offs = np.array([0, 3, 3, 6] + ([9] if last else []), np.int64)
    tm = torch.nn.EmbeddingBag(8, 4, mode=mode, include_last_offset=last, _weight=torch.tensor(w))
    dm = nn.EmbeddingBag(8, 4, mode=mode, include_last_offset=last, _weight=w)
    yt = tm(torch.tensor(idx), torch.tensor(offs))
    yd = dm(dg.tensor(idx), dg.tensor(offs))
    _close(yd.numpy(), yt.detach().numpy())
    g = _r(*yt.shape)
    (yt * torch.tensor(g)).sum().backward()
    (yd * dg.tensor(g)).sum().backward()
    _close(dm.weight.grad.numpy(), tm.weight.grad.numpy())
    if mode == "sum":
        psw = np.abs(_r(9))
        yt = torch.nn.functional.embedding_bag(torch.tensor(idx), torch.tensor(w), torch.tensor(offs), mode="sum",
                                               per_sample_weights=torch.tensor(psw), include_last_offset=last)
        yd = F.embedding_bag(dg.tensor(idx), dg.tensor(w), dg.tensor(offs), mode="sum",
                             per_sample_weights=dg.tensor(psw), include_last_offset=last)
        _close(yd.numpy(), yt.numpy())
    pad = torch.nn.functional.embedding_bag(torch.tensor(idx), torch.tensor(w), torch.tensor(offs), mode=mode,
                                            include_last_offset=last, padding_idx=4)
    _close(F.embedding_bag(dg.tensor(idx), dg.tensor(w), dg.tensor(offs), mode=mode, include_last_offset=last,
                           padding_idx=4).numpy(), pad.numpy())


def test_infinities_select_like_pytorch():
    x = dg.tensor([-np.inf, 0.3, np.inf])
    _close(F.threshold(x, 0.1, 20.0).numpy(), [20.0, 0.3, np.inf])
    _close(F.hardshrink(x, 0.5).numpy(), [-np.inf, 0.0, np.inf])
    _close(F.softshrink(x, 0.5).numpy(), [-np.inf, 0.0, np.inf])


def test_onnx_export_embedding_bag_and_instance_norm(tmp_path):
    pytest.importorskip("onnxruntime")
    bag = nn.EmbeddingBag(7, 3, mode="max")
    idx = dg.tensor(np.array([[0, 1, 6], [2, 2, 5]], np.int64))
    dg.onnx.export(dg.function(lambda i: bag(i)), (idx,), str(tmp_path / "bag.onnx"), verify=True)
    inorm = nn.InstanceNorm2d(4, affine=True)
    x = dg.tensor(_r(2, 4, 3, 5))
    dg.onnx.export(dg.function(lambda x: F.triplet_margin_loss(inorm(x), x, x * 0.5) + F.kl_div(
        F.log_softmax(x, dim=1), F.softmax(x * 2, dim=1), reduction="batchmean")), (x,),
        str(tmp_path / "inorm.onnx"), verify=True)


def test_required_arguments_and_negative_var():
    with pytest.raises(TypeError, match="upscale_factor"):
        nn.PixelShuffle()
    with pytest.raises(TypeError, match="threshold"):
        nn.Threshold()
    with pytest.raises(ValueError, match="gaussian_nll_loss"):
        F.gaussian_nll_loss(dg.tensor([1.0]), dg.tensor([1.0]), dg.tensor([-1.0]))


def test_gaussian_nll_traces():
    a = dg.tensor(_r(3, 4))
    v = dg.tensor(np.abs(_r(3, 4)) + 0.1)
    f = dg.function(lambda a, b, v: F.gaussian_nll_loss(a, b, v))
    _close(f(a, a * 2, v).item(), F.gaussian_nll_loss(a, a * 2, v).item())


@pytest.mark.parametrize("size_average, reduce, want", [(None, None, "mean"), (False, None, "sum"),
                                                        (None, False, "none"), (True, True, "mean"),
                                                        (False, True, "sum"), (True, False, "none")])
def test_deprecated_size_average_and_reduce_decide_the_reduction(size_average, reduce, want):
    # PyTorch's legacy rule: given either, they override `reduction`
    x = dg.tensor([[0.5, -1.0], [2.0, 0.0]])
    y = dg.tensor([[0.0, 1.0], [0.0, 0.0]])
    ref = nn.SmoothL1Loss(reduction=want)(x, y).numpy()
    got = nn.SmoothL1Loss(size_average=size_average, reduce=reduce, reduction="sum")(x, y).numpy()
    if size_average is None and reduce is None:
        ref = nn.SmoothL1Loss(reduction="sum")(x, y).numpy()
    np.testing.assert_allclose(got, ref)
    logp = dg.log_softmax(x, dim=1)
    got = F.kl_div(logp, dg.softmax(y, dim=1), size_average=size_average, reduce=reduce).numpy()
    np.testing.assert_allclose(got, F.kl_div(logp, dg.softmax(y, dim=1), reduction=want).numpy())
