"""Adadelta, Adagrad, Adamax, NAdam and RAdam: parameter trajectories against numpy steps of PyTorch's
documented formulas (float64), and against torch itself where installed; state_dict round trips."""
import math

import numpy as np
import pytest

import dualgraph as dg

rng = np.random.default_rng(3)
P0 = rng.standard_normal((3, 4)).astype(np.float32)
GRADS = [rng.standard_normal((3, 4)).astype(np.float32) for _ in range(20)]


def run(cls, steps=20, dtype=np.float32, **kw):
    p = dg.tensor(P0.astype(dtype), requires_grad=True)
    opt = cls([p], **kw)
    out = []
    for g in GRADS[:steps]:
        p.grad = dg.tensor(g.astype(dtype))
        opt.step()
        out.append(p.numpy().copy())
    return out


def ref_run(update, state, steps=20):
    p = P0.astype(np.float64)
    out = []
    for t, g in enumerate(GRADS[:steps], 1):
        p = update(p, g.astype(np.float64), state, t)
        out.append(p.copy())
    return out


def check(mine, theirs, rtol=1e-5, atol=1e-6):
    for i, (a, b) in enumerate(zip(mine, theirs)):
        np.testing.assert_allclose(a, b, rtol=rtol, atol=atol, err_msg=f"step {i + 1}")


# ---- numpy references of PyTorch's formulas ------------------------------------------------------

def adadelta_ref(lr=1.0, rho=0.9, eps=1e-6, weight_decay=0.0, maximize=False):
    def upd(p, g, s, t):
        g = -g if maximize else g
        g = g + weight_decay * p
        s["v"] = s.get("v", 0) * rho + (1 - rho) * g * g
        delta = np.sqrt(s.get("u", 0) + eps) / np.sqrt(s["v"] + eps) * g
        s["u"] = s.get("u", 0) * rho + (1 - rho) * delta * delta
        return p - lr * delta
    return ref_run(upd, {})


def adagrad_ref(lr=1e-2, lr_decay=0.0, weight_decay=0.0, initial_accumulator_value=0.0, eps=1e-10, maximize=False):
    def upd(p, g, s, t):
        g = -g if maximize else g
        g = g + weight_decay * p
        s["sum"] = s.get("sum", initial_accumulator_value) + g * g
        clr = lr / (1 + (t - 1) * lr_decay)
        return p - clr * g / (np.sqrt(s["sum"]) + eps)
    return ref_run(upd, {})


def adamax_ref(lr=2e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, maximize=False):
    b1, b2 = betas

    def upd(p, g, s, t):
        g = -g if maximize else g
        g = g + weight_decay * p
        s["m"] = s.get("m", 0) * b1 + (1 - b1) * g
        s["u"] = np.maximum(s.get("u", 0) * b2, np.abs(g) + eps)
        return p - lr / (1 - b1 ** t) * s["m"] / s["u"]
    return ref_run(upd, {})


def nadam_ref(lr=2e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, momentum_decay=4e-3,
              decoupled_weight_decay=False, maximize=False):
    b1, b2 = betas

    def upd(p, g, s, t):
        g = -g if maximize else g
        if decoupled_weight_decay:
            p = p * (1 - lr * weight_decay)
        else:
            g = g + weight_decay * p
        mu = b1 * (1 - 0.5 * 0.96 ** (t * momentum_decay))
        mu_next = b1 * (1 - 0.5 * 0.96 ** ((t + 1) * momentum_decay))
        s["prod"] = s.get("prod", 1.0) * mu
        s["m"] = s.get("m", 0) * b1 + (1 - b1) * g
        s["v"] = s.get("v", 0) * b2 + (1 - b2) * g * g
        d = np.sqrt(s["v"] / (1 - b2 ** t)) + eps
        return p - lr * (1 - mu) / (1 - s["prod"]) * g / d - lr * mu_next / (1 - s["prod"] * mu_next) * s["m"] / d
    return ref_run(upd, {})


def radam_ref(lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, decoupled_weight_decay=False,
              maximize=False):
    b1, b2 = betas

    def upd(p, g, s, t):
        g = -g if maximize else g
        if decoupled_weight_decay:
            p = p * (1 - lr * weight_decay)
        else:
            g = g + weight_decay * p
        s["m"] = s.get("m", 0) * b1 + (1 - b1) * g
        s["v"] = s.get("v", 0) * b2 + (1 - b2) * g * g
        mhat = s["m"] / (1 - b1 ** t)
        rho_inf = 2 / (1 - b2) - 1
        rho_t = rho_inf - 2 * t * b2 ** t / (1 - b2 ** t)
        if rho_t > 5:
            rect = math.sqrt((rho_t - 4) * (rho_t - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho_t))
            return p - lr * mhat * rect * math.sqrt(1 - b2 ** t) / (np.sqrt(s["v"]) + eps)
        return p - lr * mhat
    return ref_run(upd, {})


CASES = [
    ("Adadelta", adadelta_ref, {}),
    ("Adadelta", adadelta_ref, {"lr": 0.5, "rho": 0.8, "weight_decay": 0.1, "maximize": True}),
    ("Adagrad", adagrad_ref, {}),
    ("Adagrad", adagrad_ref, {"lr": 0.1, "lr_decay": 0.05, "weight_decay": 0.1, "initial_accumulator_value": 0.3}),
    ("Adagrad", adagrad_ref, {"lr": 0.1, "maximize": True, "eps": 1e-3}),
    ("Adamax", adamax_ref, {}),
    ("Adamax", adamax_ref, {"lr": 0.05, "betas": (0.8, 0.9), "weight_decay": 0.1, "maximize": True}),
    ("NAdam", nadam_ref, {}),
    ("NAdam", nadam_ref, {"lr": 0.05, "weight_decay": 0.1, "momentum_decay": 0.01}),
    ("NAdam", nadam_ref, {"lr": 0.05, "weight_decay": 0.1, "decoupled_weight_decay": True, "maximize": True}),
    ("RAdam", radam_ref, {}),                       # rho_t crosses 5 at step 6: both branches run
    ("RAdam", radam_ref, {"lr": 0.05, "betas": (0.8, 0.9), "weight_decay": 0.1}),
    ("RAdam", radam_ref, {"lr": 0.05, "weight_decay": 0.1, "decoupled_weight_decay": True, "maximize": True}),
]
IDS = [f"{name}-{i}" for i, (name, _, _) in enumerate(CASES)]


@pytest.mark.parametrize("name,ref,kw", CASES, ids=IDS)
def test_trajectory_matches_numpy_reference(name, ref, kw):
    check(run(getattr(dg.optim, name), **kw), ref(**kw))


@pytest.mark.parametrize("name,ref,kw", CASES, ids=IDS)
def test_trajectory_matches_torch(name, ref, kw):
    torch = pytest.importorskip("torch")
    tp = torch.tensor(P0, requires_grad=True)
    topt = getattr(torch.optim, name)([tp], **kw)
    theirs = []
    for g in GRADS:
        tp.grad = torch.tensor(g)
        topt.step()
        theirs.append(tp.detach().numpy().copy())
    check(run(getattr(dg.optim, name), **kw), theirs, rtol=1e-5, atol=1e-6)


def test_radam_rectification_switches_on_at_step_six():
    # rho_inf = 1999; rho_t <= 5 for t <= 5 with b2 = 0.999, so steps 1..5 are plain momentum steps
    b2 = 0.999
    rho_inf = 2 / (1 - b2) - 1
    rho = [rho_inf - 2 * t * b2 ** t / (1 - b2 ** t) for t in range(1, 8)]
    assert [r > 5 for r in rho] == [False] * 5 + [True] * 2
    p = dg.tensor([1.0], requires_grad=True)
    opt = dg.optim.RAdam([p], lr=0.1)
    p.grad = dg.tensor([2.0])
    opt.step()
    assert p.item() == pytest.approx(1.0 - 0.1 * 2.0, rel=1e-6)   # m / (1 - b1) = g at the first step


def test_adagrad_state_exists_from_the_constructor_as_torch():
    p = dg.tensor(P0, requires_grad=True)
    opt = dg.optim.Adagrad([p], initial_accumulator_value=0.25)
    sd = opt.state_dict()
    assert set(sd["state"][0]) == {"step", "sum"}
    np.testing.assert_array_equal(sd["state"][0]["sum"].numpy(), np.full_like(P0, 0.25))
    assert float(sd["state"][0]["step"]) == 0.0


@pytest.mark.parametrize("name,kw", [("Adadelta", {"weight_decay": 0.1}), ("Adagrad", {"lr_decay": 0.1}),
                                     ("Adamax", {}), ("NAdam", {"lr": 0.01}), ("RAdam", {"lr": 0.01})])
def test_state_dict_round_trip_continues_the_same_trajectory(name, kw, tmp_path):
    cls = getattr(dg.optim, name)
    full = run(cls, **kw)
    p = dg.tensor(P0, requires_grad=True)
    opt = cls([p], **kw)
    for g in GRADS[:10]:
        p.grad = dg.tensor(g)
        opt.step()
    dg.save({"p": p.detach(), "opt": opt.state_dict()}, str(tmp_path / "ckpt.pt"))
    loaded = dg.load(str(tmp_path / "ckpt.pt"))
    q = dg.tensor(loaded["p"].numpy(), requires_grad=True)
    opt2 = cls([q], lr=123.0)
    opt2.load_state_dict(loaded["opt"])
    assert opt2.param_groups[0]["lr"] == opt.param_groups[0]["lr"]
    for g in GRADS[10:]:
        q.grad = dg.tensor(g)
        opt2.step()
    np.testing.assert_allclose(q.numpy(), full[-1], rtol=1e-6, atol=1e-7)


def test_state_names_follow_torch():
    torch = pytest.importorskip("torch")
    for name, kw in (("Adadelta", {}), ("Adagrad", {}), ("Adamax", {}), ("NAdam", {}), ("RAdam", {})):
        tp = torch.tensor(P0, requires_grad=True)
        topt = getattr(torch.optim, name)([tp], **kw)
        tp.grad = torch.tensor(GRADS[0])
        topt.step()
        p = dg.tensor(P0, requires_grad=True)
        opt = getattr(dg.optim, name)([p], **kw)
        p.grad = dg.tensor(GRADS[0])
        opt.step()
        assert set(opt.state_dict()["state"][0]) == set(topt.state_dict()["state"][0]), name
        theirs = topt.state_dict()["param_groups"][0]
        mine = opt.state_dict()["param_groups"][0]
        for key in ("lr", "eps", "weight_decay", "betas", "rho", "lr_decay", "initial_accumulator_value",
                    "momentum_decay", "decoupled_weight_decay", "maximize"):
            if key in theirs:
                assert mine[key] == (tuple(theirs[key]) if key == "betas" else theirs[key]), (name, key)


def test_compiled_training_step_follows_the_eager_trajectory():
    for cls, kw in ((dg.optim.Adagrad, {"lr": 0.1, "lr_decay": 0.1}), (dg.optim.NAdam, {"lr": 0.05}),
                    (dg.optim.RAdam, {"lr": 0.05}), (dg.optim.Adadelta, {}), (dg.optim.Adamax, {})):
        eager = run(cls, **kw)
        p = dg.tensor(P0, requires_grad=True)
        opt = cls([p], **kw).init_state()

        @dg.function
        def step(g):
            p.grad = g
            opt.step()

        got = []
        for g in GRADS:
            step(dg.tensor(g))
            got.append(p.numpy().copy())
        check(got, eager, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("name,kw,msg", [("Adadelta", {"rho": 1.5}, "rho"), ("Adagrad", {"lr_decay": -1}, "lr_decay"),
                                         ("Adagrad", {"initial_accumulator_value": -1}, "initial_accumulator"),
                                         ("Adamax", {"betas": (0.9, 1.0)}, "beta"), ("NAdam", {"lr": -1}, "learning rate"),
                                         ("NAdam", {"momentum_decay": -1}, "momentum_decay"),
                                         ("RAdam", {"eps": -1}, "epsilon")])
def test_bad_hyperparameters_are_refused(name, kw, msg):
    with pytest.raises(ValueError, match=msg):
        getattr(dg.optim, name)([dg.tensor([1.0], requires_grad=True)], **kw)
