"""More well-known PyTorch scripts run on dualgraph with only their imports changed.

Condensed copies of PyTorch's own tutorials ("Learning PyTorch with Examples", the 60-minute blitz
tensor, autograd and CIFAR-10 sections), written against `torch` as their authors did. The helpers of
tests/test_real_scripts.py rewrite the import lines and nothing else. With torch installed the same text
runs on both and the numbers are compared (from the same starting values); without it, each script
still has to run, learn and give the values its tutorial shows.
"""
import random

import numpy as np
import pytest

from test_real_scripts import _dualgraph_source, _run, _state_as_numpy


# ---- "Learning PyTorch with Examples": the third-order polynomial fit of sin(x), five ways ----------

POLYNOMIAL = '''
import torch
import math
import random


def raw_tensors(init=None, steps=STEPS):
    dtype = torch.float
    device = torch.device("cpu")
    x = torch.linspace(-math.pi, math.pi, 2000, device=device, dtype=dtype)
    y = torch.sin(x)
    a = torch.randn((), device=device, dtype=dtype, requires_grad=True)
    b = torch.randn((), device=device, dtype=dtype, requires_grad=True)
    c = torch.randn((), device=device, dtype=dtype, requires_grad=True)
    d = torch.randn((), device=device, dtype=dtype, requires_grad=True)
    if init is not None:
        a, b, c, d = (torch.tensor(v, dtype=dtype, requires_grad=True) for v in init)
    learning_rate = 1e-6
    losses = []
    for t in range(steps):
        y_pred = a + b * x + c * x ** 2 + d * x ** 3
        loss = (y_pred - y).pow(2).sum()
        losses.append(loss.item())
        loss.backward()
        with torch.no_grad():
            a -= learning_rate * a.grad
            b -= learning_rate * b.grad
            c -= learning_rate * c.grad
            d -= learning_rate * d.grad
            a.grad = None
            b.grad = None
            c.grad = None
            d.grad = None
    return losses, [a.item(), b.item(), c.item(), d.item()]


class LegendrePolynomial3(torch.autograd.Function):
    @staticmethod
    def forward(ctx, input):
        ctx.save_for_backward(input)
        return 0.5 * (5 * input ** 3 - 3 * input)

    @staticmethod
    def backward(ctx, grad_output):
        input, = ctx.saved_tensors
        return grad_output * 1.5 * (5 * input ** 2 - 1)


def custom_function(steps=STEPS):
    dtype = torch.float
    device = torch.device("cpu")
    x = torch.linspace(-math.pi, math.pi, 2000, device=device, dtype=dtype)
    y = torch.sin(x)
    a = torch.full((), 0.0, device=device, dtype=dtype, requires_grad=True)
    b = torch.full((), -1.0, device=device, dtype=dtype, requires_grad=True)
    c = torch.full((), 0.0, device=device, dtype=dtype, requires_grad=True)
    d = torch.full((), 0.3, device=device, dtype=dtype, requires_grad=True)
    learning_rate = 5e-6
    losses = []
    for t in range(steps):
        P3 = LegendrePolynomial3.apply
        y_pred = a + b * P3(c + d * x)
        loss = (y_pred - y).pow(2).sum()
        losses.append(loss.item())
        loss.backward()
        with torch.no_grad():
            a -= learning_rate * a.grad
            b -= learning_rate * b.grad
            c -= learning_rate * c.grad
            d -= learning_rate * d.grad
            a.grad = None
            b.grad = None
            c.grad = None
            d.grad = None
    return losses, [a.item(), b.item(), c.item(), d.item()]


def nn_sequential(state=None, use_optim=False, steps=STEPS):
    x = torch.linspace(-math.pi, math.pi, 2000)
    y = torch.sin(x)
    p = torch.tensor([1, 2, 3])
    xx = x.unsqueeze(-1).pow(p)
    model = torch.nn.Sequential(
        torch.nn.Linear(3, 1),
        torch.nn.Flatten(0, 1)
    )
    if state is not None:
        model.load_state_dict({k: torch.tensor(v) for k, v in state.items()})
    loss_fn = torch.nn.MSELoss(reduction='sum')
    losses = []
    if use_optim:
        learning_rate = 1e-3
        optimizer = torch.optim.RMSprop(model.parameters(), lr=learning_rate)
        for t in range(steps):
            y_pred = model(xx)
            loss = loss_fn(y_pred, y)
            losses.append(loss.item())
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    else:
        learning_rate = 1e-6
        for t in range(steps):
            y_pred = model(xx)
            loss = loss_fn(y_pred, y)
            losses.append(loss.item())
            model.zero_grad()
            loss.backward()
            with torch.no_grad():
                for param in model.parameters():
                    param -= learning_rate * param.grad
    linear_layer = model[0]
    coefs = [linear_layer.bias.item(), linear_layer.weight[:, 0].item(), linear_layer.weight[:, 1].item(),
             linear_layer.weight[:, 2].item()]
    return losses, coefs, model


class Polynomial3(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.a = torch.nn.Parameter(torch.randn(()))
        self.b = torch.nn.Parameter(torch.randn(()))
        self.c = torch.nn.Parameter(torch.randn(()))
        self.d = torch.nn.Parameter(torch.randn(()))

    def forward(self, x):
        return self.a + self.b * x + self.c * x ** 2 + self.d * x ** 3

    def string(self):
        return f'y = {self.a.item()} + {self.b.item()} x + {self.c.item()} x^2 + {self.d.item()} x^3'


class DynamicNet(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.a = torch.nn.Parameter(torch.randn(()))
        self.b = torch.nn.Parameter(torch.randn(()))
        self.c = torch.nn.Parameter(torch.randn(()))
        self.d = torch.nn.Parameter(torch.randn(()))
        self.e = torch.nn.Parameter(torch.randn(()))

    def forward(self, x):
        y = self.a + self.b * x + self.c * x ** 2 + self.d * x ** 3
        for exp in range(4, random.randint(4, 6)):
            y = y + self.e * x ** exp
        return y


def custom_module(cls, state=None, steps=STEPS):
    x = torch.linspace(-math.pi, math.pi, 2000)
    y = torch.sin(x)
    model = cls()
    if state is not None:
        model.load_state_dict({k: torch.tensor(v) for k, v in state.items()})
    criterion = torch.nn.MSELoss(reduction='sum')
    if cls is DynamicNet:
        optimizer = torch.optim.SGD(model.parameters(), lr=1e-8, momentum=0.9)
    else:
        optimizer = torch.optim.SGD(model.parameters(), lr=1e-6)
    losses = []
    for t in range(steps):
        y_pred = model(x)
        loss = criterion(y_pred, y)
        losses.append(loss.item())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return losses, model
'''


def test_polynomial_tutorial_matches_torch():
    torch = pytest.importorskip("torch")
    ref = _run(POLYNOMIAL, STEPS=150)
    ours = _run(_dualgraph_source(POLYNOMIAL), STEPS=150)
    init = [0.3, -0.5, 0.2, -0.1]
    ref_losses, ref_coefs = ref["raw_tensors"](init)
    losses, coefs = ours["raw_tensors"](init)
    np.testing.assert_allclose(losses, ref_losses, rtol=1e-4)
    np.testing.assert_allclose(coefs, ref_coefs, rtol=1e-4, atol=1e-6)
    ref_losses, ref_coefs = ref["custom_function"]()
    losses, coefs = ours["custom_function"]()
    np.testing.assert_allclose(losses, ref_losses, rtol=1e-4)
    np.testing.assert_allclose(coefs, ref_coefs, rtol=1e-3, atol=1e-6)
    torch.manual_seed(0)
    _, _, ref_model = ref["nn_sequential"](steps=0)
    state = _state_as_numpy(ref_model)
    for use_optim in (False, True):
        ref_losses, ref_coefs, _ = ref["nn_sequential"](state, use_optim)
        losses, coefs, _ = ours["nn_sequential"](state, use_optim)
        np.testing.assert_allclose(losses, ref_losses, rtol=1e-4)
        np.testing.assert_allclose(coefs, ref_coefs, rtol=1e-3, atol=1e-5)
    for name in ("Polynomial3", "DynamicNet"):
        state = _state_as_numpy(ref[name]())
        random.seed(5)  # DynamicNet's depth per step comes from Python's random, the same on both
        ref_losses, ref_model = ref["custom_module"](ref[name], state)
        random.seed(5)
        losses, model = ours["custom_module"](ours[name], state)
        np.testing.assert_allclose(losses, ref_losses, rtol=1e-4, err_msg=name)
        for k, v in ref_model.state_dict().items():
            np.testing.assert_allclose(model.state_dict()[k].numpy(), v.numpy(), rtol=1e-3, atol=1e-6)
    assert ours["Polynomial3"]().string().startswith("y = ")


def test_polynomial_tutorial_learns():
    import dualgraph as dg

    ns = _run(_dualgraph_source(POLYNOMIAL), STEPS=200)
    losses, coefs = ns["raw_tensors"]([0.3, -0.5, 0.2, -0.1])
    assert losses[-1] < 0.5 * losses[0]
    # the custom Function's backward is the derivative of P3: checked against finite differences
    x = dg.tensor([-0.7, 0.1, 0.9], dtype=dg.float64, requires_grad=True)
    ns["LegendrePolynomial3"].apply(x).sum().backward()
    xs = np.array([-0.7, 0.1, 0.9])
    p3 = lambda v: 0.5 * (5 * v ** 3 - 3 * v)  # noqa: E731
    np.testing.assert_allclose(x.grad.numpy(), (p3(xs + 1e-6) - p3(xs - 1e-6)) / 2e-6, rtol=1e-6)
    losses, coefs = ns["custom_function"]()
    assert losses[-1] < 0.5 * losses[0]
    # heading for the tutorial's printed fit, y = a + b * P3(c + d x) with b near -2.2 and d near 0.26
    assert coefs[1] < -1.0 and 0.2 < coefs[3] < 0.3
    for use_optim in (False, True):
        losses, coefs, model = ns["nn_sequential"](None, use_optim)
        assert losses[-1] < losses[0]
        assert tuple(model(dg.zeros(5, 3)).shape) == (5,)  # Flatten(0, 1) drops the Linear's last dim
    random.seed(0)
    for name in ("Polynomial3", "DynamicNet"):
        losses, model = ns["custom_module"](ns[name])
        assert np.isfinite(losses).all() and losses[-1] < losses[0], name
        assert len(list(model.parameters())) == (4 if name == "Polynomial3" else 5)


# ---- names the tutorials use that dualgraph lacked ---------------------------------------------------

def test_dtype_names_after_builtins():
    import dualgraph as dg

    # torch.float is float32, torch.int int32, torch.bool bool (torch's documented aliases)
    assert (dg.float, dg.int, dg.bool) == (np.float32, np.int32, np.bool_)
    assert dg.zeros(2, dtype=dg.float).dtype == np.float32
    assert dg.rand_like(dg.tensor([[1, 2], [3, 4]]), dtype=dg.float).dtype == np.float32
    torch = pytest.importorskip("torch")
    for name in ("float", "int", "bool"):
        assert str(getattr(torch, name)).removeprefix("torch.") == str(getattr(dg, name)).replace("bool_", "bool")


def test_out_keyword_writes_into_out():
    import dualgraph as dg

    a = dg.tensor([[1.0, 2.0], [3.0, 4.0]])
    y = dg.rand_like(a)
    r = dg.matmul(a, a.T, out=y)
    assert r is y
    np.testing.assert_array_equal(y.numpy(), [[5.0, 11.0], [11.0, 25.0]])
    z = dg.ones(2, 2)
    dg.mul(a, a, out=z)
    np.testing.assert_array_equal(z.numpy(), [[1.0, 4.0], [9.0, 16.0]])
    e = dg.empty(0)
    dg.cat([a, a], dim=1, out=e)  # an empty out is resized, as PyTorch does
    assert tuple(e.shape) == (2, 4)
    d = dg.zeros(2, 2, dtype=dg.float64)
    dg.add(a, 1, out=d)  # written in out's dtype
    assert d.dtype == np.float64 and d.numpy()[1, 1] == 5.0
    w = dg.ones(2, requires_grad=True)
    with pytest.raises(dg.AutogradError, match="out=.*automatic differentiation"):
        dg.mul(w, 2, out=dg.zeros(2))
    with dg.no_grad():
        dg.mul(w, 2, out=z[0])
    np.testing.assert_array_equal(z.numpy()[0], [2.0, 2.0])  # out may be a view: the base sees it
    torch = pytest.importorskip("torch")
    ta = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    ty = torch.rand_like(ta)
    torch.matmul(ta, ta.T, out=ty)
    np.testing.assert_array_equal(y.numpy(), ty.numpy())
    with pytest.raises(RuntimeError, match="automatic differentiation"):
        torch.mul(torch.ones(2, requires_grad=True), 2, out=torch.zeros(2))
