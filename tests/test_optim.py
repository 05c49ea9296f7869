"""dg.optim: each optimizer against hand-written numpy steps of PyTorch's formulas (and torch itself
when installed), parameter groups, zero_grad, state dicts and learning-rate schedulers."""
import math

import numpy as np
import pytest

import dualgraph as dg
from dualgraph import nn
from dualgraph.optim import lr_scheduler

RNG = np.random.default_rng(0)
W0 = RNG.standard_normal((3, 4)).astype(np.float32)
GRADS = [RNG.standard_normal((3, 4)).astype(np.float32) for _ in range(4)]


def run(opt_cls, steps=4, **kw):
    """Apply the fixed gradient sequence GRADS with a dg optimizer; return the parameter after each step."""
    p = nn.Parameter(W0)
    opt = opt_cls([p], **kw)
    out = []
    for g in GRADS[:steps]:
        p.grad = dg.tensor(g)
        opt.step()
        out.append(p.numpy().copy())
    return out


# ---- numpy references: PyTorch's documented update rules, written out ----------------------------

def sgd_ref(lr, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False, maximize=False):
    p = W0.astype(np.float64)
    buf, out = None, []
    for g in GRADS:
        g = -g if maximize else g.astype(np.float64)
        g = g + weight_decay * p
        if momentum:
            buf = g.copy() if buf is None else momentum * buf + (1 - dampening) * g
            g = g + momentum * buf if nesterov else buf
        p = p - lr * g
        out.append(p)
    return out


def adam_ref(lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, amsgrad=False, decoupled=False):
    p = W0.astype(np.float64)
    m = np.zeros_like(p)
    v = np.zeros_like(p)
    vmax = np.zeros_like(p)
    out = []
    for t, g in enumerate(GRADS, start=1):
        g = g.astype(np.float64)
        if decoupled:
            p = p * (1 - lr * weight_decay)
        else:
            g = g + weight_decay * p
        m = betas[0] * m + (1 - betas[0]) * g
        v = betas[1] * v + (1 - betas[1]) * g * g
        vmax = np.maximum(vmax, v)
        vhat = (vmax if amsgrad else v) / (1 - betas[1] ** t)
        p = p - lr * (m / (1 - betas[0] ** t)) / (np.sqrt(vhat) + eps)
        out.append(p)
    return out


def rmsprop_ref(lr, alpha=0.99, eps=1e-8, weight_decay=0.0, momentum=0.0, centered=False):
    p = W0.astype(np.float64)
    sq = np.zeros_like(p)
    ga = np.zeros_like(p)
    buf = np.zeros_like(p)
    out = []
    for g in GRADS:
        g = g.astype(np.float64) + weight_decay * p
        sq = alpha * sq + (1 - alpha) * g * g
        if centered:
            ga = alpha * ga + (1 - alpha) * g
            avg = np.sqrt(sq - ga * ga) + eps
        else:
            avg = np.sqrt(sq) + eps
        if momentum:
            buf = momentum * buf + g / avg
            p = p - lr * buf
        else:
            p = p - lr * g / avg
        out.append(p)
    return out


def check(ours, ref, rtol=1e-5, atol=1e-6):
    for a, b in zip(ours, ref):
        np.testing.assert_allclose(a, b, rtol=rtol, atol=atol)


SGD_CASES = [dict(lr=0.1), dict(lr=0.1, momentum=0.9), dict(lr=0.05, momentum=0.9, nesterov=True),
             dict(lr=0.1, momentum=0.8, dampening=0.3), dict(lr=0.1, weight_decay=0.1, momentum=0.5),
             dict(lr=0.1, maximize=True)]
ADAM_CASES = [dict(lr=0.01), dict(lr=0.01, betas=(0.8, 0.9), weight_decay=0.1), dict(lr=0.01, amsgrad=True)]
RMS_CASES = [dict(lr=0.01), dict(lr=0.01, momentum=0.9), dict(lr=0.01, centered=True, weight_decay=0.1),
             dict(lr=0.01, centered=True, momentum=0.5)]


@pytest.mark.parametrize("kw", SGD_CASES)
def test_sgd_matches_hand_computed_steps(kw):
    check(run(dg.optim.SGD, **kw), sgd_ref(**kw))


@pytest.mark.parametrize("kw", ADAM_CASES)
def test_adam_matches_hand_computed_steps(kw):
    check(run(dg.optim.Adam, **kw), adam_ref(**kw))


@pytest.mark.parametrize("kw", ADAM_CASES[:2] + [dict(lr=0.01, weight_decay=0.5)])
def test_adamw_decouples_weight_decay(kw):
    check(run(dg.optim.AdamW, **kw), adam_ref(decoupled=True, **{"weight_decay": 0.01, **kw}))


@pytest.mark.parametrize("kw", RMS_CASES)
def test_rmsprop_matches_hand_computed_steps(kw):
    check(run(dg.optim.RMSprop, **kw), rmsprop_ref(**kw))


def test_first_sgd_step_by_hand():
    p = nn.Parameter(np.array([1.0, -2.0], np.float32))
    opt = dg.optim.SGD([p], lr=0.5, momentum=0.9, weight_decay=0.1)
    p.grad = dg.tensor([0.2, 0.4])
    opt.step()  # g = grad + 0.1 p = [0.3, 0.2]; buf = g; p -= 0.5 g
    np.testing.assert_allclose(p.numpy(), [0.85, -2.1], rtol=1e-6)
    p.grad = dg.tensor([0.2, 0.4])
    opt.step()  # g = [0.285, 0.19]; buf = 0.9 [0.3, 0.2] + g = [0.555, 0.37]
    np.testing.assert_allclose(p.numpy(), [0.85 - 0.2775, -2.1 - 0.185], rtol=1e-6)


def test_adam_first_step_moves_each_weight_by_lr():
    # with bias correction, Adam's first step is lr * g / (|g| + eps) = lr * sign(g)
    p = nn.Parameter(np.array([1.0, 1.0, 1.0], np.float32))
    opt = dg.optim.Adam([p], lr=0.1)
    p.grad = dg.tensor([3.0, -0.001, 50.0])
    opt.step()
    np.testing.assert_allclose(p.numpy(), [0.9, 1.1, 0.9], rtol=1e-5)


@pytest.mark.parametrize("name,kw", [("SGD", dict(lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.01)),
                                     ("SGD", dict(lr=0.1, momentum=0.9, dampening=0.5)),
                                     ("Adam", dict(lr=0.01, weight_decay=0.1, amsgrad=True)),
                                     ("AdamW", dict(lr=0.01)),
                                     ("RMSprop", dict(lr=0.01, momentum=0.5, centered=True))])
def test_optimizers_match_torch(name, kw):
    torch = pytest.importorskip("torch")
    tp = torch.nn.Parameter(torch.tensor(W0))
    topt = getattr(torch.optim, name)([tp], **kw)
    theirs = []
    for g in GRADS:
        tp.grad = torch.tensor(g)
        topt.step()
        theirs.append(tp.detach().numpy().copy())
    check(run(getattr(dg.optim, name), **kw), theirs, rtol=1e-5, atol=1e-6)


def test_parameters_without_grad_are_skipped_and_step_counts_are_tensors():
    a, b = nn.Parameter(np.ones(2, np.float32)), nn.Parameter(np.ones(2, np.float32))
    opt = dg.optim.Adam([a, b], lr=0.1)
    a.grad = dg.tensor([1.0, 1.0])
    opt.step()
    assert np.all(b.numpy() == 1) and b not in opt.state
    step = opt.state[a]["step"]
    assert isinstance(step, dg.Tensor) and step.shape == () and step.item() == 1.0
    opt.step()
    assert opt.state[a]["step"] is step and step.item() == 2.0  # updated in place


def test_param_groups_have_their_own_hyperparameters():
    a, b = nn.Parameter(np.ones(2, np.float32)), nn.Parameter(np.ones(2, np.float32))
    groups = [{"params": [a]}, {"params": [b], "lr": 0.5}]
    opt = dg.optim.SGD(groups, lr=0.1, momentum=0.0)
    assert groups[1] == {"params": [b], "lr": 0.5}  # the caller's dicts are not filled in
    assert opt.param_groups[0]["lr"] == 0.1 and opt.param_groups[1]["lr"] == 0.5
    a.grad = dg.tensor([1.0, 1.0])
    b.grad = dg.tensor([1.0, 1.0])
    opt.step()
    np.testing.assert_allclose(a.numpy(), [0.9, 0.9])
    np.testing.assert_allclose(b.numpy(), [0.5, 0.5])
    c = nn.Parameter(np.ones(1, np.float32))
    opt.add_param_group({"params": c, "momentum": 0.9})
    assert opt.param_groups[2]["lr"] == 0.1 and opt.param_groups[2]["momentum"] == 0.9
    with pytest.raises(ValueError, match="more than one parameter group"):
        opt.add_param_group({"params": [a]})
    with pytest.raises(ValueError, match="empty parameter list"):
        dg.optim.SGD([], lr=0.1)
    with pytest.raises(ValueError, match="non-leaf"):
        dg.optim.SGD([a * 2], lr=0.1)


def test_zero_grad():
    p = nn.Parameter(np.ones(3, np.float32))
    opt = dg.optim.SGD([p], lr=0.1)
    (p * 2).sum().backward()
    opt.zero_grad(set_to_none=False)
    assert p.grad is not None and np.all(p.grad.numpy() == 0)
    opt.zero_grad()
    assert p.grad is None


def _train(model, opt, steps, seed):
    rng = np.random.default_rng(seed)
    for _ in range(steps):
        x = dg.tensor(rng.standard_normal((8, 4)).astype(np.float32))
        y = dg.tensor(rng.integers(0, 3, 8))
        loss = nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()


@pytest.mark.parametrize("make", [lambda ps: dg.optim.Adam(ps, lr=0.01, amsgrad=True),
                                  lambda ps: dg.optim.SGD(ps, lr=0.1, momentum=0.9),
                                  lambda ps: dg.optim.RMSprop(ps, lr=0.01, centered=True, momentum=0.3)])
def test_state_dict_round_trip_resumes_training_exactly(make, tmp_path):
    dg.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 5), nn.ReLU(), nn.Linear(5, 3))
    opt = make(model.parameters())
    _train(model, opt, 3, seed=1)
    path = tmp_path / "ckpt.dg"
    dg.save({"model": model.state_dict(), "opt": opt.state_dict()}, path)
    ck = dg.load(path)
    model2 = nn.Sequential(nn.Linear(4, 5), nn.ReLU(), nn.Linear(5, 3))
    model2.load_state_dict(ck["model"])
    opt2 = make(model2.parameters())
    opt2.load_state_dict(ck["opt"])
    _train(model, opt, 3, seed=2)
    _train(model2, opt2, 3, seed=2)
    for p, q in zip(model.parameters(), model2.parameters()):
        np.testing.assert_array_equal(p.numpy(), q.numpy())
    # the saved state is a copy: it did not follow the later steps
    assert not np.array_equal(ck["model"]["0.weight"].numpy(), model.state_dict()["0.weight"].numpy())


def test_load_state_dict_checks_the_layout():
    a, b = nn.Parameter(np.ones(2, np.float32)), nn.Parameter(np.ones(3, np.float32))
    opt = dg.optim.Adam([a, b])
    a.grad, b.grad = dg.ones(2), dg.ones(3)
    opt.step()
    sd = opt.state_dict()
    with pytest.raises(ValueError, match="parameter group"):
        dg.optim.Adam([a]).load_state_dict(sd)
    with pytest.raises(ValueError, match="shape"):
        dg.optim.Adam([b, a]).load_state_dict(sd)
    opt.param_groups[0]["lr"] = 0.5
    opt.load_state_dict(sd)
    assert opt.param_groups[0]["lr"] == 1e-3


# ---- schedulers -------------------------------------------------------------------------------

def _lrs(sched_fn, n, lr=0.1):
    opt = dg.optim.SGD([nn.Parameter(np.zeros(1, np.float32))], lr=lr)
    sched = sched_fn(opt)
    out = [opt.param_groups[0]["lr"]]
    for _ in range(n):
        opt.step()
        sched.step()
        out.append(opt.param_groups[0]["lr"])
        assert sched.get_last_lr() == [out[-1]]
    return out


def test_step_lr():
    got = _lrs(lambda o: lr_scheduler.StepLR(o, step_size=3, gamma=0.5), 7)
    np.testing.assert_allclose(got, [0.1, 0.1, 0.1, 0.05, 0.05, 0.05, 0.025, 0.025])


def test_cosine_annealing_lr():
    got = _lrs(lambda o: lr_scheduler.CosineAnnealingLR(o, T_max=4, eta_min=0.01), 4)
    ref = [0.01 + 0.09 * (1 + math.cos(math.pi * t / 4)) / 2 for t in range(5)]
    np.testing.assert_allclose(got, ref)
    assert got[-1] == pytest.approx(0.01)


def test_lambda_lr_per_group():
    a, b = nn.Parameter(np.zeros(1, np.float32)), nn.Parameter(np.zeros(1, np.float32))
    opt = dg.optim.SGD([{"params": [a]}, {"params": [b], "lr": 1.0}], lr=0.1)
    sched = lr_scheduler.LambdaLR(opt, [lambda e: 0.5 ** e, lambda e: e + 1])
    for _ in range(3):
        sched.step()
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([0.1 * 0.125, 4.0])
    state = sched.state_dict()
    # as PyTorch: plain functions are not state (saved as None), callable objects would save their __dict__
    assert state["last_epoch"] == 3 and state["lr_lambdas"] == [None, None]


def test_schedulers_match_torch():
    torch = pytest.importorskip("torch")
    cases = [("StepLR", dict(step_size=2, gamma=0.3)), ("CosineAnnealingLR", dict(T_max=5, eta_min=0.001)),
             ("LambdaLR", dict(lr_lambda=lambda e: 1 / (1 + e)))]
    for name, kw in cases:
        tp = torch.nn.Parameter(torch.zeros(1))
        topt = torch.optim.SGD([tp], lr=0.1)
        tsched = getattr(torch.optim.lr_scheduler, name)(topt, **kw)
        theirs = [topt.param_groups[0]["lr"]]
        for _ in range(8):
            topt.step()
            tsched.step()
            theirs.append(topt.param_groups[0]["lr"])
        ours = _lrs(lambda o: getattr(lr_scheduler, name)(o, **kw), 8)
        np.testing.assert_allclose(ours, theirs, rtol=1e-9, atol=1e-12)


# ---- inside a compiled training step --------------------------------------------------------------

needs_function = pytest.mark.skipif(not hasattr(dg, "function"), reason="dg.function is not available")


@needs_function
@pytest.mark.parametrize("make", [lambda ps: dg.optim.SGD(ps, lr=0.1, momentum=0.9, dampening=0.2, weight_decay=0.01),
                                  lambda ps: dg.optim.SGD(ps, lr=0.1, momentum=0.9, nesterov=True),
                                  lambda ps: dg.optim.Adam(ps, lr=0.01, amsgrad=True),
                                  lambda ps: dg.optim.AdamW(ps, lr=0.01),
                                  lambda ps: dg.optim.RMSprop(ps, lr=0.01, centered=True, momentum=0.5)])
def test_a_compiled_training_step_matches_eager_and_follows_the_scheduler(make):
    rng = np.random.default_rng(0)
    x = dg.tensor(rng.standard_normal((16, 4)).astype(np.float32))
    y = dg.tensor(rng.integers(0, 3, 16))
    runs = []
    for compiled in (False, True):
        dg.manual_seed(0)
        model = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 3))
        opt = make(model.parameters())
        sched = lr_scheduler.StepLR(opt, step_size=2, gamma=0.3)

        def step(xb, yb):
            loss = nn.functional.cross_entropy(model(xb), yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
            return loss
        if compiled:
            step = dg.function(step)
        losses = []
        for _ in range(6):
            losses.append(float(step(x, y)))
            sched.step()  # changes the learning rate between compiled calls
        runs.append((losses, [p.numpy().copy() for p in model.parameters()], opt))
    (l_eager, p_eager, _), (l_comp, p_comp, opt) = runs
    np.testing.assert_allclose(l_comp, l_eager, rtol=1e-5)
    for a, b in zip(p_comp, p_eager):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    steps = [st["step"].item() for st in opt.state.values() if "step" in st]
    assert steps and all(s == 6 for s in steps)  # the step count kept counting inside the compiled step


def test_a_tensor_learning_rate_is_updated_in_place():
    p = nn.Parameter(np.zeros(2, np.float32))
    lr = dg.tensor(0.5)
    opt = dg.optim.SGD([p], lr=lr)
    sched = lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    p.grad = dg.ones(2)
    opt.step()
    sched.step()
    assert opt.param_groups[0]["lr"] is lr and lr.item() == 0.25
    opt.step()
    np.testing.assert_allclose(p.numpy(), [-0.75, -0.75])


def test_pytorch_implementation_flags_are_accepted():
    check(run(dg.optim.Adam, lr=0.01, weight_decay=0.1, decoupled_weight_decay=True),
          adam_ref(lr=0.01, weight_decay=0.1, decoupled=True))
    check(run(dg.optim.SGD, lr=0.1, momentum=0.9, foreach=True, fused=False), sgd_ref(lr=0.1, momentum=0.9))
    check(run(dg.optim.AdamW, lr=0.01, capturable=True), adam_ref(lr=0.01, weight_decay=0.01, decoupled=True))
    with pytest.raises(NotImplementedError, match="differentiable"):
        dg.optim.RMSprop([nn.Parameter(W0)], differentiable=True)


def test_reduce_lr_on_plateau_matches_torch():
    metrics = [1.0, 0.9, 0.95, 0.91, 0.92, 0.93, 0.5, 0.6, 0.6, 0.6, 0.6, 0.6, 0.6, 0.6]
    kw = dict(mode="min", factor=0.5, patience=2, cooldown=1, min_lr=0.02)
    opt = dg.optim.SGD([nn.Parameter(np.zeros(1, np.float32))], lr=0.1)
    sched = lr_scheduler.ReduceLROnPlateau(opt, **kw)
    ours = []
    for m in metrics:
        sched.step(m)
        ours.append(opt.param_groups[0]["lr"])
    # 0.95, 0.91, 0.92: three epochs without beating 0.9 (more than patience=2), so the 5th step halves lr
    assert ours[:4] == [0.1, 0.1, 0.1, 0.1] and ours[4] == 0.05 and ours[-1] == 0.02
    torch = pytest.importorskip("torch")
    topt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    tsched = torch.optim.lr_scheduler.ReduceLROnPlateau(topt, **kw)
    theirs = []
    for m in metrics:
        tsched.step(m)
        theirs.append(topt.param_groups[0]["lr"])
    np.testing.assert_allclose(ours, theirs)
