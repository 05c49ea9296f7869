"""Learning-rate schedulers: lr (and momentum) sequences against torch over many steps, and torch-free
checks of the documented closed forms."""
import math
import warnings

import numpy as np
import pytest

import dualgraph as dg
from dualgraph.optim import lr_scheduler as dls


def _dg_opt(kind="sgd", lr=0.1, groups=1):
    params = [dg.tensor([1.0], requires_grad=True) for _ in range(groups)]
    spec = [{"params": [p], "lr": lr * (i + 1)} for i, p in enumerate(params)]
    if kind == "sgd":
        return dg.optim.SGD(spec, lr=lr, momentum=0.9)
    return dg.optim.Adam(spec, lr=lr)


def _torch_opt(torch, kind="sgd", lr=0.1, groups=1):
    params = [torch.tensor([1.0], requires_grad=True) for _ in range(groups)]
    spec = [{"params": [p], "lr": lr * (i + 1)} for i, p in enumerate(params)]
    if kind == "sgd":
        return torch.optim.SGD(spec, lr=lr, momentum=0.9)
    return torch.optim.Adam(spec, lr=lr)


def _trace(opt, sched, steps, metrics=None):
    out = [(sched.get_last_lr(), _momenta(opt))]
    for i in range(steps):
        opt.step()
        if metrics is not None:
            sched.step(metrics[i])
        else:
            sched.step()
        out.append((list(sched.get_last_lr()), _momenta(opt)))
    return out


def _momenta(opt):
    return [g["betas"][0] if "betas" in g else g.get("momentum") for g in opt.param_groups]


# each case: (name, optimizer kind, groups, steps, factory(lr_scheduler module, optimizer) -> scheduler)
CASES = [
    ("StepLR", "sgd", 2, 30, lambda m, o: m.StepLR(o, step_size=7, gamma=0.5)),
    ("MultiStepLR", "sgd", 1, 30, lambda m, o: m.MultiStepLR(o, milestones=[3, 10, 10, 20], gamma=0.3)),
    ("ExponentialLR", "sgd", 2, 40, lambda m, o: m.ExponentialLR(o, gamma=0.93)),
    ("CosineAnnealingLR", "sgd", 2, 50, lambda m, o: m.CosineAnnealingLR(o, T_max=12, eta_min=0.001)),
    ("LambdaLR", "sgd", 2, 20, lambda m, o: m.LambdaLR(o, lambda e: 0.95 ** e + 0.01 * e)),
    ("MultiplicativeLR", "sgd", 1, 20, lambda m, o: m.MultiplicativeLR(o, lambda e: 0.9 if e % 2 else 1.05)),
    ("ConstantLR", "sgd", 2, 12, lambda m, o: m.ConstantLR(o, factor=0.25, total_iters=4)),
    ("ConstantLR_default", "sgd", 1, 8, lambda m, o: m.ConstantLR(o)),
    ("LinearLR", "sgd", 2, 15, lambda m, o: m.LinearLR(o, start_factor=0.1, end_factor=0.8, total_iters=9)),
    ("LinearLR_default", "adam", 1, 8, lambda m, o: m.LinearLR(o)),
    ("PolynomialLR", "sgd", 2, 15, lambda m, o: m.PolynomialLR(o, total_iters=10, power=2.0)),
    ("CosineAnnealingWarmRestarts", "sgd", 2, 60,
     lambda m, o: m.CosineAnnealingWarmRestarts(o, T_0=5, T_mult=2, eta_min=0.002)),
    ("CosineAnnealingWarmRestarts_1", "sgd", 1, 25, lambda m, o: m.CosineAnnealingWarmRestarts(o, T_0=7)),
    ("CyclicLR_triangular", "sgd", 2, 50,
     lambda m, o: m.CyclicLR(o, base_lr=0.01, max_lr=[0.1, 0.2], step_size_up=6, step_size_down=4)),
    ("CyclicLR_triangular2", "sgd", 1, 50, lambda m, o: m.CyclicLR(o, 0.01, 0.1, step_size_up=5, mode="triangular2")),
    ("CyclicLR_exp_range_adam", "adam", 1, 40,
     lambda m, o: m.CyclicLR(o, 0.001, 0.01, step_size_up=4, mode="exp_range", gamma=0.97)),
    ("CyclicLR_no_momentum", "sgd", 1, 20,
     lambda m, o: m.CyclicLR(o, 0.01, 0.1, step_size_up=3, cycle_momentum=False)),
    ("OneCycleLR_cos", "sgd", 2, 100, lambda m, o: m.OneCycleLR(o, max_lr=[0.5, 1.0], total_steps=100)),
    ("OneCycleLR_linear_adam", "adam", 1, 60,
     lambda m, o: m.OneCycleLR(o, max_lr=0.01, epochs=3, steps_per_epoch=20, anneal_strategy="linear",
                               pct_start=0.25, div_factor=10.0, final_div_factor=100.0)),
    ("OneCycleLR_three_phase", "sgd", 1, 50,
     lambda m, o: m.OneCycleLR(o, max_lr=0.3, total_steps=50, three_phase=True, base_momentum=0.8,
                               max_momentum=0.9)),
    ("OneCycleLR_no_momentum", "sgd", 1, 30,
     lambda m, o: m.OneCycleLR(o, max_lr=0.3, total_steps=30, cycle_momentum=False)),
    ("SequentialLR", "sgd", 2, 30,
     lambda m, o: m.SequentialLR(o, [m.LinearLR(o, start_factor=0.1, total_iters=5),
                                     m.ExponentialLR(o, gamma=0.9), m.StepLR(o, 3, 0.5)], milestones=[5, 15])),
    ("SequentialLR_cosine", "sgd", 1, 40,
     lambda m, o: m.SequentialLR(o, [m.ConstantLR(o, factor=0.5, total_iters=3),
                                     m.CosineAnnealingLR(o, T_max=20)], milestones=[4])),
    ("ChainedScheduler", "sgd", 2, 30,
     lambda m, o: m.ChainedScheduler([m.ConstantLR(o, factor=0.1, total_iters=2), m.ExponentialLR(o, gamma=0.9)])),
    ("ChainedScheduler_step", "sgd", 1, 30,
     lambda m, o: m.ChainedScheduler([m.LinearLR(o, 0.5, total_iters=4), m.StepLR(o, 5, 0.5),
                                      m.MultiStepLR(o, [7, 11], 0.8)])),
]


@pytest.mark.parametrize("name,kind,groups,steps,make", CASES, ids=[c[0] for c in CASES])
def test_lr_sequence_matches_torch(name, kind, groups, steps, make):
    torch = pytest.importorskip("torch")
    topt = _torch_opt(torch, kind, groups=groups)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = _trace(topt, make(torch.optim.lr_scheduler, topt), steps)
    dopt = _dg_opt(kind, groups=groups)
    mine = _trace(dopt, make(dls, dopt), steps)
    for i, ((a_lr, a_m), (b_lr, b_m)) in enumerate(zip(mine, theirs)):
        np.testing.assert_allclose(a_lr, b_lr, rtol=1e-12, atol=0, err_msg=f"{name} lr after {i} steps")
        np.testing.assert_allclose(a_m, b_m, rtol=1e-12, atol=0, err_msg=f"{name} momentum after {i} steps")
    # the optimizer holds the scheduled rate
    assert [g["lr"] for g in dopt.param_groups] == pytest.approx(mine[-1][0], rel=1e-15)


def test_reduce_lr_on_plateau_matches_torch():
    torch = pytest.importorskip("torch")
    metrics = [1.0, 0.9, 0.95, 0.95, 0.95, 0.8, 0.85, 0.85, 0.85, 0.85, 0.85, 0.85, 0.7, 0.75, 0.75, 0.75] * 2
    for kw in ({"patience": 2}, {"patience": 1, "cooldown": 2, "factor": 0.5, "min_lr": 0.02},
               {"mode": "max", "patience": 0, "threshold_mode": "abs", "threshold": 0.01}):
        topt = _torch_opt(torch)
        theirs = _trace(topt, torch.optim.lr_scheduler.ReduceLROnPlateau(topt, **kw), len(metrics), metrics)
        dopt = _dg_opt()
        mine = _trace(dopt, dls.ReduceLROnPlateau(dopt, **kw), len(metrics), metrics)
        assert [m[0] for m in mine] == [t[0] for t in theirs], kw


def test_step_with_epoch_uses_the_closed_form_as_torch():
    torch = pytest.importorskip("torch")
    for make in (lambda m, o: m.StepLR(o, 3, 0.5), lambda m, o: m.MultiStepLR(o, [2, 5], 0.1),
                 lambda m, o: m.ExponentialLR(o, 0.9), lambda m, o: m.CosineAnnealingLR(o, 10),
                 lambda m, o: m.LinearLR(o, 0.2, total_iters=6), lambda m, o: m.PolynomialLR(o, 8, 2.0),
                 lambda m, o: m.CosineAnnealingWarmRestarts(o, 4, 2)):
        topt, dopt = _torch_opt(torch), _dg_opt()
        ts, ds = make(torch.optim.lr_scheduler, topt), make(dls, dopt)
        for epoch in (4, 1, 7, 3.5 if isinstance(ds, dls.CosineAnnealingWarmRestarts) else 3):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ts.step(epoch)
            ds.step(epoch)
            assert ds.get_last_lr() == pytest.approx(ts.get_last_lr(), rel=1e-12), (type(ds).__name__, epoch)


# ---- torch-free: the documented closed forms --------------------------------------------------------

def _run(sched, opt, n):
    lrs = [sched.get_last_lr()[0]]
    for _ in range(n):
        opt.step()
        sched.step()
        lrs.append(sched.get_last_lr()[0])
    return lrs


def test_step_exponential_cosine_closed_forms():
    opt = _dg_opt()
    got = _run(dls.StepLR(opt, 4, gamma=0.5), opt, 12)
    assert got == pytest.approx([0.1 * 0.5 ** (e // 4) for e in range(13)], rel=1e-12)
    opt = _dg_opt()
    got = _run(dls.CosineAnnealingLR(opt, T_max=10, eta_min=0.01), opt, 10)
    assert got == pytest.approx([0.01 + 0.09 * (1 + math.cos(math.pi * e / 10)) / 2 for e in range(11)], rel=1e-9)
    opt = _dg_opt()
    assert _run(dls.ExponentialLR(opt, 0.9), opt, 5) == pytest.approx([0.1 * 0.9 ** e for e in range(6)], rel=1e-12)


def test_linear_constant_polynomial_closed_forms():
    opt = _dg_opt()
    got = _run(dls.LinearLR(opt, start_factor=0.2, end_factor=1.0, total_iters=4), opt, 6)
    assert got == pytest.approx([0.02, 0.04, 0.06, 0.08, 0.1, 0.1, 0.1], rel=1e-9)
    opt = _dg_opt()
    assert _run(dls.ConstantLR(opt, factor=0.5, total_iters=2), opt, 4) == pytest.approx(
        [0.05, 0.05, 0.1, 0.1, 0.1], rel=1e-12)
    opt = _dg_opt()
    got = _run(dls.PolynomialLR(opt, total_iters=4, power=2.0), opt, 6)
    assert got == pytest.approx([0.1 * (1 - min(e, 4) / 4) ** 2 for e in range(7)], rel=1e-9, abs=1e-15)


def test_one_cycle_endpoints_and_momentum():
    opt = _dg_opt()
    s = dls.OneCycleLR(opt, max_lr=1.0, total_steps=100, pct_start=0.3, div_factor=25.0, final_div_factor=1e4)
    lrs, moms = [s.get_last_lr()[0]], [opt.param_groups[0]["momentum"]]
    for _ in range(99):
        opt.step()
        s.step()
        lrs.append(s.get_last_lr()[0])
        moms.append(opt.param_groups[0]["momentum"])
    assert lrs[0] == pytest.approx(1.0 / 25)                 # initial_lr = max_lr / div_factor
    assert max(lrs) == pytest.approx(1.0) and int(np.argmax(lrs)) == 29   # peak at pct_start * total - 1
    assert lrs[-1] == pytest.approx(1.0 / 25 / 1e4)           # min_lr = initial_lr / final_div_factor
    assert moms[0] == pytest.approx(0.95) and moms[29] == pytest.approx(0.85) and moms[-1] == pytest.approx(0.95)
    with pytest.raises(ValueError, match="total steps is 100"):
        opt.step()
        s.step()
        s.step()


def test_one_cycle_cycles_adam_beta1_and_three_phase_returns_to_initial():
    opt = _dg_opt("adam")
    s = dls.OneCycleLR(opt, max_lr=0.1, total_steps=40, three_phase=True, anneal_strategy="linear")
    lrs = _run(s, opt, 39)
    assert opt.param_groups[0]["betas"][1] == 0.999
    assert lrs[11] == pytest.approx(0.1) and lrs[22] == pytest.approx(0.1 / 25)  # up, back down to initial
    assert lrs[-1] == pytest.approx(0.1 / 25 / 1e4)


def test_cosine_warm_restarts_restart_and_grow():
    opt = _dg_opt()
    lrs = _run(dls.CosineAnnealingWarmRestarts(opt, T_0=3, T_mult=2), opt, 10)
    expected = [0.1 * (1 + math.cos(math.pi * t / T)) / 2 for T, t in
                [(3, 0), (3, 1), (3, 2), (6, 0), (6, 1), (6, 2), (6, 3), (6, 4), (6, 5), (12, 0), (12, 1)]]
    assert lrs == pytest.approx(expected, rel=1e-12)


def test_cyclic_triangular_by_hand():
    opt = _dg_opt()
    lrs = _run(dls.CyclicLR(opt, base_lr=0.0, max_lr=1.0, step_size_up=2, step_size_down=2), opt, 8)
    assert lrs == pytest.approx([0.0, 0.5, 1.0, 0.5, 0.0, 0.5, 1.0, 0.5, 0.0])
    assert opt.param_groups[0]["momentum"] == pytest.approx(0.9)


def test_chained_and_sequential_compose():
    opt = _dg_opt()
    s = dls.ChainedScheduler([dls.ConstantLR(opt, factor=0.5, total_iters=2), dls.ExponentialLR(opt, gamma=0.9)])
    assert _run(s, opt, 3) == pytest.approx([0.05, 0.045, 0.081, 0.0729], rel=1e-12)
    opt = _dg_opt()
    s = dls.SequentialLR(opt, [dls.ConstantLR(opt, factor=0.1, total_iters=10), dls.ExponentialLR(opt, 0.5)],
                         milestones=[2])
    assert _run(s, opt, 4) == pytest.approx([0.01, 0.01, 0.1, 0.05, 0.025], rel=1e-12)


def test_state_dict_round_trip_resumes_the_sequence():
    def make(o):
        return dls.OneCycleLR(o, max_lr=0.5, total_steps=30)
    opt = _dg_opt()
    full = _run(make(opt), opt, 30)
    opt = _dg_opt()
    s = make(opt)
    _run(s, opt, 12)
    saved_sched, saved_opt = s.state_dict(), opt.state_dict()
    assert "optimizer" not in saved_sched
    opt2 = _dg_opt()
    opt2.load_state_dict(saved_opt)
    s2 = make(opt2)
    s2.load_state_dict(saved_sched)
    for group in opt2.param_groups:
        group["lr"] = s2.get_last_lr()[0]
    assert _run(s2, opt2, 18) == pytest.approx(full[12:], rel=1e-12)
    # composites save their children
    opt = _dg_opt()
    s = dls.SequentialLR(opt, [dls.LinearLR(opt, 0.5, total_iters=3), dls.StepLR(opt, 2)], milestones=[3])
    sd = s.state_dict()
    assert len(sd["_schedulers"]) == 2 and "optimizer" not in sd["_schedulers"][0]


def test_tensor_learning_rate_is_filled_in_place():
    p = dg.tensor([1.0], requires_grad=True)
    lr = dg.tensor(0.1)
    opt = dg.optim.SGD([p], lr=lr)
    s = dls.StepLR(opt, 1, gamma=0.5)
    opt.step()
    s.step()
    assert opt.param_groups[0]["lr"] is lr and float(lr) == pytest.approx(0.05)


def test_bad_arguments_are_refused():
    opt = _dg_opt()
    with pytest.raises(ValueError, match="total_steps OR"):
        dls.OneCycleLR(opt, max_lr=0.1)
    with pytest.raises(ValueError, match="pct_start"):
        dls.OneCycleLR(opt, max_lr=0.1, total_steps=10, pct_start=1)
    with pytest.raises(ValueError, match="anneal_strategy"):
        dls.OneCycleLR(opt, max_lr=0.1, total_steps=10, anneal_strategy="exp")
    with pytest.raises(ValueError, match="max_lr must have the same length"):
        dls.OneCycleLR(opt, max_lr=[0.1, 0.2], total_steps=10)
    rms = dg.optim.Adagrad([dg.tensor([1.0], requires_grad=True)])
    with pytest.raises(ValueError, match="momentum or beta1"):
        dls.OneCycleLR(rms, max_lr=0.1, total_steps=10)
    with pytest.raises(ValueError, match="T_0"):
        dls.CosineAnnealingWarmRestarts(opt, T_0=0)
    with pytest.raises(ValueError, match="factor"):
        dls.ConstantLR(opt, factor=2.0)
    with pytest.raises(ValueError, match="milestone"):
        dls.SequentialLR(opt, [dls.StepLR(opt, 2), dls.StepLR(opt, 3)], milestones=[])
    other = _dg_opt()
    with pytest.raises(ValueError, match="same optimizer"):
        dls.ChainedScheduler([dls.StepLR(opt, 2), dls.StepLR(other, 2)])
    with pytest.raises(ValueError, match="ReduceLROnPlateau"):
        dls.ChainedScheduler([dls.ReduceLROnPlateau(opt)])
    with pytest.raises(KeyError, match="initial_lr"):
        dls.StepLR(_dg_opt(), 2, last_epoch=3)


def test_state_dicts_survive_dg_save(tmp_path):
    opt = _dg_opt()
    s = dls.MultiStepLR(opt, [2, 4, 4], gamma=0.5)
    _run(s, opt, 3)
    dg.save({"sched": s.state_dict(), "opt": opt.state_dict()}, str(tmp_path / "s.pt"))
    loaded = dg.load(str(tmp_path / "s.pt"))
    opt2 = _dg_opt()
    opt2.load_state_dict(loaded["opt"])
    s2 = dls.MultiStepLR(opt2, [9])
    s2.load_state_dict(loaded["sched"])
    assert _run(s2, opt2, 3)[1:] == pytest.approx([0.1 * 0.125, 0.1 * 0.125, 0.1 * 0.125], rel=1e-12)
    s2.step(5)                                          # the closed form reads the milestones back
    assert s2.get_last_lr() == pytest.approx([0.1 * 0.125], rel=1e-12)


@pytest.mark.parametrize("make_opt", [lambda ps: dg.optim.Adam(ps, lr=0.01),
                                      lambda ps: dg.optim.SGD(ps, lr=0.01, momentum=0.9),
                                      lambda ps: dg.optim.SGD(ps, lr=0.01, momentum=0.9, nesterov=True),
                                      lambda ps: dg.optim.RMSprop(ps, lr=0.01, momentum=0.5),
                                      lambda ps: dg.optim.NAdam(ps, lr=0.01),
                                      lambda ps: dg.optim.Adamax(ps, lr=0.01)],
                         ids=["adam", "sgd", "nesterov", "rmsprop", "nadam", "adamax"])
def test_compiled_step_follows_cycled_momentum_and_betas(make_opt):
    # OneCycleLR moves momentum / beta1 every step: a compiled training step must read the new value,
    # not the one it saw when it was traced
    r = np.random.default_rng(0)
    x, y = dg.tensor(r.standard_normal((16, 4)).astype(np.float32)), dg.tensor(r.standard_normal((16, 1)).astype(np.float32))

    def train(compiled):
        dg.manual_seed(0)
        m = dg.nn.Linear(4, 1)
        opt = make_opt(list(m.parameters()))
        opt.init_state()
        sched = dls.OneCycleLR(opt, max_lr=0.1, total_steps=20)

        def step(a, b):
            opt.zero_grad()
            loss = ((m(a) - b) ** 2).mean()
            loss.backward()
            opt.step()
            return loss

        fn = dg.function(step) if compiled else step
        for i in range(20):
            fn(x, y)
            if i < 19:
                sched.step()
        return m.weight.numpy()

    np.testing.assert_allclose(train(True), train(False), rtol=1e-5, atol=1e-6)
