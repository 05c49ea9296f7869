"""More well-known PyTorch scripts run on dualgraph with only their imports changed.

Condensed copies of PyTorch's own tutorials ("Learning PyTorch with Examples", the 60-minute blitz
tensor, autograd and CIFAR-10 sections), written against `torch` as their authors did. The helpers of
tests/test_real_scripts.py rewrite the import lines and nothing else. With torch installed the same text
runs on both and the numbers are compared (from the same starting values); without it, each script
still has to run, learn and give the values its tutorial shows.
"""
import random
import re

import numpy as np
import pytest

from test_real_scripts import _dualgraph_source as _imports_rewritten, _run, _state_as_numpy, _torch_or_none


def _dualgraph_source(src):
    # the quickstart's `from torch import nn`, on top of the import forms test_real_scripts maps
    return _imports_rewritten(re.sub(r"^from torch import (nn|optim)$", r"from dualgraph import \1", src,
                                     flags=re.M))


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
    torch = _torch_or_none()
    if torch is None:  # the checks above stand without torch
        return
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
    torch = _torch_or_none()
    if torch is None:  # the checks above stand without torch
        return
    ta = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    ty = torch.rand_like(ta)
    torch.matmul(ta, ta.T, out=ty)
    np.testing.assert_array_equal(y.numpy(), ty.numpy())
    with pytest.raises(RuntimeError, match="automatic differentiation"):
        torch.mul(torch.ones(2, requires_grad=True), 2, out=torch.zeros(2))


def test_legacy_tensor_types():
    import dualgraph as dg

    t = dg.LongTensor([3])
    assert t.dtype == np.int64 and t.tolist() == [3]
    assert tuple(dg.FloatTensor(2, 3).shape) == (2, 3) and dg.FloatTensor(2, 3).dtype == np.float32
    assert tuple(dg.DoubleTensor((4,)).shape) == (4,) and tuple(dg.ByteTensor().shape) == (0,)
    assert isinstance(dg.ones(2, dtype=dg.int64), dg.LongTensor)
    assert not isinstance(dg.ones(2), dg.LongTensor) and not isinstance(np.ones(2), dg.FloatTensor)
    x = dg.ones(2)
    assert x.type() == "torch.FloatTensor" and x.type(dg.LongTensor).dtype == np.int64
    assert x.type("torch.DoubleTensor").dtype == np.float64 and x.type(dg.float64).dtype == np.float64
    torch = _torch_or_none()
    if torch is None:  # the checks above stand without torch
        return
    assert torch.ones(2).type() == x.type()
    for name in ("FloatTensor", "DoubleTensor", "LongTensor", "IntTensor", "ByteTensor", "BoolTensor"):
        assert str(getattr(torch, name)([1]).dtype).removeprefix("torch.") == str(getattr(dg, name)([1]).dtype)


# ---- the 60-minute blitz: tensors, autograd, and the CIFAR-10 classifier (random images) ------------

BLITZ = '''
import torch
import numpy as np
import torch.nn as nn
import torch.nn.functional as F
import torch.optim as optim


def tensors():
    data = [[1, 2],[3, 4]]
    x_data = torch.tensor(data)
    np_array = np.array(data)
    x_np = torch.from_numpy(np_array)
    x_ones = torch.ones_like(x_data)
    x_rand = torch.rand_like(x_data, dtype=torch.float)
    shape = (2,3,)
    rand_tensor = torch.rand(shape)
    ones_tensor = torch.ones(shape)
    zeros_tensor = torch.zeros(shape)
    tensor = torch.rand(3,4)
    info = (tuple(tensor.shape), str(tensor.dtype), str(tensor.device))
    if torch.accelerator.is_available():
        tensor = tensor.to(torch.accelerator.current_accelerator())
    tensor = torch.ones(4, 4)
    tensor[:,1] = 0
    t1 = torch.cat([tensor, tensor, tensor], dim=1)
    y1 = tensor @ tensor.T
    y2 = tensor.matmul(tensor.T)
    y3 = torch.rand_like(y1)
    torch.matmul(tensor, tensor.T, out=y3)
    z1 = tensor * tensor
    z2 = tensor.mul(tensor)
    z3 = torch.rand_like(tensor)
    torch.mul(tensor, tensor, out=z3)
    agg = tensor.sum()
    agg_item = agg.item()
    tensor.add_(5)
    n = np.ones(5)
    t = torch.from_numpy(n)
    np.add(n, 1, out=n)
    return dict(x_np=x_np, x_ones=x_ones, x_rand=x_rand, info=info, t1=t1, y1=y1, y2=y2, y3=y3, z1=z1, z2=z2,
                z3=z3, agg_item=agg_item, tensor=tensor, t=t, shapes=[tuple(rand_tensor.shape),
                tuple(ones_tensor.shape), tuple(zeros_tensor.shape)])


def autograd():
    a = torch.tensor([2., 3.], requires_grad=True)
    b = torch.tensor([6., 4.], requires_grad=True)
    Q = 3*a**3 - b**2
    external_grad = torch.tensor([1., 1.])
    Q.backward(gradient=external_grad)
    checks = [bool((9*a**2 == a.grad).all()), bool((-2*b == b.grad).all())]
    x = torch.rand(5, 5)
    y = torch.rand(5, 5)
    z = torch.rand((5, 5), requires_grad=True)
    a2 = x + y
    b2 = x + z
    x = torch.ones(5, requires_grad=True)
    with torch.no_grad():
        y = x * 2
    z = x.detach()
    aa = torch.randn(2, 2)
    aa = ((aa * 3) / (aa - 1))
    before = aa.requires_grad
    aa.requires_grad_(True)
    bb = (aa * aa).sum()
    return checks + [a2.requires_grad, b2.requires_grad, y.requires_grad, z.requires_grad, before,
                     aa.requires_grad, str(bb.grad_fn).split()[0], bb.grad_fn.name()], a.grad, b.grad


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 6, 5)
        self.pool = nn.MaxPool2d(2, 2)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.fc1 = nn.Linear(16 * 5 * 5, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, 10)

    def forward(self, x):
        x = self.pool(F.relu(self.conv1(x)))
        x = self.pool(F.relu(self.conv2(x)))
        x = torch.flatten(x, 1) # flatten all dimensions except batch
        x = F.relu(self.fc1(x))
        x = F.relu(self.fc2(x))
        x = self.fc3(x)
        return x


def cifar(PATH, state=None, epochs=2):
    classes = ('plane', 'car', 'bird', 'cat', 'deer', 'dog', 'frog', 'horse', 'ship', 'truck')
    net = Net()
    if state is not None:
        net.load_state_dict({k: torch.tensor(v) for k, v in state.items()})
    criterion = nn.CrossEntropyLoss()
    optimizer = optim.SGD(net.parameters(), lr=0.001, momentum=0.9)
    trainloader = [(torch.tensor(IMAGES[i:i+4]), torch.tensor(LABELS[i:i+4])) for i in range(0, len(IMAGES), 4)]
    losses = []
    for epoch in range(epochs):
        running_loss = 0.0
        for i, data in enumerate(trainloader, 0):
            inputs, labels = data
            optimizer.zero_grad()
            outputs = net(inputs)
            loss = criterion(outputs, labels)
            loss.backward()
            optimizer.step()
            running_loss += loss.item()
            losses.append(loss.item())
            if i % 4 == 3:
                print(f'[{epoch + 1}, {i + 1:5d}] loss: {running_loss / 4:.3f}')
                running_loss = 0.0
    torch.save(net.state_dict(), PATH)
    net = Net()
    net.load_state_dict(torch.load(PATH, weights_only=True))
    images, labels = trainloader[0]
    outputs = net(images)
    _, predicted = torch.max(outputs, 1)
    print('Predicted: ', ' '.join(f'{classes[predicted[j]]:5s}' for j in range(4)))
    correct = 0
    total = 0
    with torch.no_grad():
        for data in trainloader:
            images, labels = data
            outputs = net(images)
            _, predicted = torch.max(outputs.data, 1)
            total += labels.size(0)
            correct += (predicted == labels).sum().item()
    correct_pred = {classname: 0 for classname in classes}
    total_pred = {classname: 0 for classname in classes}
    with torch.no_grad():
        for data in trainloader:
            images, labels = data
            outputs = net(images)
            _, predictions = torch.max(outputs, 1)
            for label, prediction in zip(labels, predictions):
                if label == prediction:
                    correct_pred[classes[label]] += 1
                total_pred[classes[label]] += 1
    device = torch.device('cuda:0' if torch.cuda.is_available() else 'cpu')
    net.to(device)
    return net, losses, correct, total, correct_pred, total_pred
'''


def _cifar_data(n=24, seed=0):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, n)
    images = rng.normal(0, 0.5, (n, 3, 32, 32)).astype(np.float32)
    for i, c in enumerate(labels):  # a learnable mark: a bright row whose position is the class
        images[i, :, 3 + 2 * c, 4:28] += 2.0
    return images, labels.astype(np.int64)


def test_blitz_tensors_and_autograd():
    ns = _run(_dualgraph_source(BLITZ), IMAGES=None, LABELS=None)
    r = ns["tensors"]()
    np.testing.assert_array_equal(r["x_np"].numpy(), [[1, 2], [3, 4]])
    assert r["x_ones"].dtype == np.int64 and r["x_rand"].dtype == np.float32
    assert r["info"] == ((3, 4), "float32", "cpu") and r["shapes"] == [(2, 3)] * 3
    ones = np.ones((4, 4), np.float32)
    ones[:, 1] = 0
    np.testing.assert_array_equal(r["t1"].numpy(), np.concatenate([ones] * 3, axis=1))
    for k in ("y1", "y2", "y3"):
        np.testing.assert_array_equal(r[k].numpy(), ones @ ones.T, err_msg=k)
    for k in ("z1", "z2", "z3"):
        np.testing.assert_array_equal(r[k].numpy(), ones * ones, err_msg=k)
    assert r["agg_item"] == 12.0 and isinstance(r["agg_item"], float)
    np.testing.assert_array_equal(r["tensor"].numpy(), ones + 5)
    np.testing.assert_array_equal(r["t"].numpy(), [2.0] * 5)  # from_numpy shares the array's memory
    flags, agrad, bgrad = ns["autograd"]()
    assert flags == [True, True, False, True, False, False, False, True, "<SumBackward0", "SumBackward0"]
    np.testing.assert_array_equal(agrad.numpy(), [36.0, 81.0])
    np.testing.assert_array_equal(bgrad.numpy(), [-12.0, -8.0])
    torch = _torch_or_none()
    if torch is None:  # the checks above stand without torch
        return
    ref = _run(BLITZ, IMAGES=None, LABELS=None)
    assert ref["autograd"]()[0] == flags
    t = ref["tensors"]()
    for k in ("t1", "y3", "z3", "tensor", "t"):
        np.testing.assert_array_equal(r[k].numpy(), t[k].numpy(), err_msg=k)
    assert t["agg_item"] == r["agg_item"]


def test_blitz_cifar_matches_torch(tmp_path):
    torch = pytest.importorskip("torch")
    images, labels = _cifar_data()
    ref = _run(BLITZ, IMAGES=images, LABELS=labels)
    torch.manual_seed(0)
    state = _state_as_numpy(ref["Net"]())
    ref_net, ref_losses, ref_correct, ref_total, ref_cp, ref_tp = ref["cifar"](str(tmp_path / "ref.pth"), state)
    ours = _run(_dualgraph_source(BLITZ), IMAGES=images, LABELS=labels)
    net, losses, correct, total, cp, tp = ours["cifar"](str(tmp_path / "cifar_net.pth"), state)
    np.testing.assert_allclose(losses, ref_losses, rtol=1e-4)
    assert (correct, total, cp, tp) == (ref_correct, ref_total, ref_cp, ref_tp)
    for k, v in ref_net.state_dict().items():
        np.testing.assert_allclose(net.state_dict()[k].numpy(), v.numpy(), rtol=1e-3, atol=1e-6, err_msg=k)


def test_blitz_cifar_learns(tmp_path):
    import dualgraph as dg

    images, labels = _cifar_data()
    ns = _run(_dualgraph_source(BLITZ), IMAGES=images, LABELS=labels)
    dg.manual_seed(0)
    path = tmp_path / "cifar_net.pth"
    net, losses, correct, total, cp, tp = ns["cifar"](str(path), epochs=6)
    assert np.mean(losses[-6:]) < np.mean(losses[:6])
    assert total == 24 and sum(tp.values()) == 24 and sum(cp.values()) == correct
    saved = dg.load(str(path))
    for k, v in net.state_dict().items():
        np.testing.assert_array_equal(saved[k].numpy(), v.numpy())


# ---- the quickstart tutorial (random images for FashionMNIST) ----------------------------------------

QUICKSTART = '''
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

device = torch.accelerator.current_accelerator().type if torch.accelerator.is_available() else "cpu"
print(f"Using {device} device")


class NeuralNetwork(nn.Module):
    def __init__(self):
        super().__init__()
        self.flatten = nn.Flatten()
        self.linear_relu_stack = nn.Sequential(
            nn.Linear(28*28, 64),
            nn.ReLU(),
            nn.Linear(64, 64),
            nn.ReLU(),
            nn.Linear(64, 10)
        )

    def forward(self, x):
        x = self.flatten(x)
        logits = self.linear_relu_stack(x)
        return logits


def train(dataloader, model, loss_fn, optimizer, losses):
    size = len(dataloader.dataset)
    model.train()
    for batch, (X, y) in enumerate(dataloader):
        X, y = X.to(device), y.to(device)
        pred = model(X)
        loss = loss_fn(pred, y)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
        if batch % 100 == 0:
            loss, current = loss.item(), (batch + 1) * len(X)
            print(f"loss: {loss:>7f}  [{current:>5d}/{size:>5d}]")


def test(dataloader, model, loss_fn):
    size = len(dataloader.dataset)
    num_batches = len(dataloader)
    model.eval()
    test_loss, correct = 0, 0
    with torch.no_grad():
        for X, y in dataloader:
            X, y = X.to(device), y.to(device)
            pred = model(X)
            test_loss += loss_fn(pred, y).item()
            correct += (pred.argmax(1) == y).type(torch.float).sum().item()
    test_loss /= num_batches
    correct /= size
    print(f"Test Error: \\n Accuracy: {(100*correct):>0.1f}%, Avg loss: {test_loss:>8f} \\n")
    return test_loss, correct


def main(path, state=None, epochs=EPOCHS):
    training_data = TensorDataset(torch.tensor(IMAGES[:48]), torch.tensor(LABELS[:48]))
    test_data = TensorDataset(torch.tensor(IMAGES[48:]), torch.tensor(LABELS[48:]))
    batch_size = 16
    train_dataloader = DataLoader(training_data, batch_size=batch_size)
    test_dataloader = DataLoader(test_data, batch_size=batch_size)
    model = NeuralNetwork().to(device)
    if state is not None:
        model.load_state_dict({k: torch.tensor(v) for k, v in state.items()})
    loss_fn = nn.CrossEntropyLoss()
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-1)
    losses, results = [], []
    for t in range(epochs):
        print(f"Epoch {t+1}\\n-------------------------------")
        train(train_dataloader, model, loss_fn, optimizer, losses)
        results.append(test(test_dataloader, model, loss_fn))
    torch.save(model.state_dict(), path)
    model = NeuralNetwork().to(device)
    model.load_state_dict(torch.load(path, weights_only=True))
    classes = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
               "Ankle boot"]
    model.eval()
    x, y = test_data[0][0], test_data[0][1]
    with torch.no_grad():
        x = x.to(device)
        pred = model(x)
        predicted, actual = classes[pred[0].argmax(0)], classes[y]
    return model, losses, results, predicted, actual
'''


def _fashion(n=64, seed=1):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, n)
    images = rng.uniform(0, 0.5, (n, 1, 28, 28)).astype(np.float32)
    for i, c in enumerate(labels):
        images[i, 0, 2 + 2 * c, 4:24] += 1.0
    return images, labels.astype(np.int64)


def test_quickstart_matches_torch(tmp_path):
    torch = pytest.importorskip("torch")
    images, labels = _fashion()
    ref = _run(QUICKSTART, IMAGES=images, LABELS=labels, EPOCHS=3)
    torch.manual_seed(0)
    state = _state_as_numpy(ref["NeuralNetwork"]())
    _, ref_losses, ref_results, ref_pred, ref_actual = ref["main"](str(tmp_path / "ref.pth"), state)
    ours = _run(_dualgraph_source(QUICKSTART), IMAGES=images, LABELS=labels, EPOCHS=3)
    _, losses, results, predicted, actual = ours["main"](str(tmp_path / "model.pth"), state)
    np.testing.assert_allclose(losses, ref_losses, rtol=1e-4)
    np.testing.assert_allclose(results, ref_results, rtol=1e-4)
    assert (predicted, actual) == (ref_pred, ref_actual)
    assert ours["device"] == ref["device"] == "cpu"


def test_quickstart_learns(tmp_path):
    images, labels = _fashion()
    ns = _run(_dualgraph_source(QUICKSTART), IMAGES=images, LABELS=labels, EPOCHS=8)
    model, losses, results, predicted, actual = ns["main"](str(tmp_path / "model.pth"))
    assert ns["device"] == "cpu"
    assert np.mean(losses[-3:]) < 0.95 * np.mean(losses[:3])
    assert results[-1][0] < results[0][0] and 0.0 <= results[-1][1] <= 1.0
    assert actual == ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                      "Ankle boot"][labels[48]]


# ---- pytorch/examples' VAE, the DCGAN tutorial's networks, a char-RNN's sampling loop ----------------

GENERATIVE = '''
import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.optim as optim


class VAE(nn.Module):
    def __init__(self):
        super(VAE, self).__init__()
        self.fc1 = nn.Linear(784, 400)
        self.fc21 = nn.Linear(400, 20)
        self.fc22 = nn.Linear(400, 20)
        self.fc3 = nn.Linear(20, 400)
        self.fc4 = nn.Linear(400, 784)

    def encode(self, x):
        h1 = F.relu(self.fc1(x))
        return self.fc21(h1), self.fc22(h1)

    def reparameterize(self, mu, logvar):
        std = torch.exp(0.5*logvar)
        eps = torch.randn_like(std)
        return mu + eps*std

    def decode(self, z):
        h3 = F.relu(self.fc3(z))
        return torch.sigmoid(self.fc4(h3))

    def forward(self, x):
        mu, logvar = self.encode(x.view(-1, 784))
        z = self.reparameterize(mu, logvar)
        return self.decode(z), mu, logvar


def loss_function(recon_x, x, mu, logvar):
    BCE = F.binary_cross_entropy(recon_x, x.view(-1, 784), reduction='sum')
    KLD = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())
    return BCE + KLD


def train_vae(epochs):
    device = torch.device("cpu")
    model = VAE().to(device)
    optimizer = optim.Adam(model.parameters(), lr=1e-3)
    train_loader = [(torch.tensor(IMAGES[i:i + 16]), None) for i in range(0, len(IMAGES), 16)]
    epoch_losses = []
    for epoch in range(1, epochs + 1):
        model.train()
        train_loss = 0
        for batch_idx, (data, _) in enumerate(train_loader):
            data = data.to(device)
            optimizer.zero_grad()
            recon_batch, mu, logvar = model(data)
            loss = loss_function(recon_batch, data, mu, logvar)
            loss.backward()
            train_loss += loss.item()
            optimizer.step()
        epoch_losses.append(train_loss / len(IMAGES))
        with torch.no_grad():
            sample = torch.randn(64, 20).to(device)
            sample = model.decode(sample).cpu()
            comparison = torch.cat([data[:8], recon_batch.view(16, 1, 28, 28)[:8]])
    return epoch_losses, sample.view(64, 1, 28, 28), comparison


nz, ngf, ndf, nc = 8, 4, 4, 3


def weights_init(m):
    classname = m.__class__.__name__
    if classname.find('Conv') != -1:
        nn.init.normal_(m.weight.data, 0.0, 0.02)
    elif classname.find('BatchNorm') != -1:
        nn.init.normal_(m.weight.data, 1.0, 0.02)
        nn.init.constant_(m.bias.data, 0)


class Generator(nn.Module):
    def __init__(self, ngpu):
        super(Generator, self).__init__()
        self.ngpu = ngpu
        self.main = nn.Sequential(
            nn.ConvTranspose2d( nz, ngf * 8, 4, 1, 0, bias=False),
            nn.BatchNorm2d(ngf * 8),
            nn.ReLU(True),
            nn.ConvTranspose2d(ngf * 8, ngf * 4, 4, 2, 1, bias=False),
            nn.BatchNorm2d(ngf * 4),
            nn.ReLU(True),
            nn.ConvTranspose2d( ngf * 4, nc, 4, 2, 1, bias=False),
            nn.Tanh()
        )

    def forward(self, input):
        return self.main(input)


class Discriminator(nn.Module):
    def __init__(self, ngpu):
        super(Discriminator, self).__init__()
        self.ngpu = ngpu
        self.main = nn.Sequential(
            nn.Conv2d(nc, ndf, 4, 2, 1, bias=False),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(ndf, ndf * 2, 4, 2, 1, bias=False),
            nn.BatchNorm2d(ndf * 2),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(ndf * 2, 1, 4, 1, 0, bias=False),
            nn.Sigmoid()
        )

    def forward(self, input):
        return self.main(input)


def train_gan(states=None, iters=3):
    device = torch.device("cpu")
    netG = Generator(1).to(device)
    netG.apply(weights_init)
    netD = Discriminator(1).to(device)
    netD.apply(weights_init)
    if states is not None:
        netG.load_state_dict({k: torch.tensor(v) for k, v in states[0].items()})
        netD.load_state_dict({k: torch.tensor(v) for k, v in states[1].items()})
    criterion = nn.BCELoss()
    real_label = 1.
    fake_label = 0.
    optimizerD = optim.Adam(netD.parameters(), lr=0.0002, betas=(0.5, 0.999))
    optimizerG = optim.Adam(netG.parameters(), lr=0.0002, betas=(0.5, 0.999))
    log = []
    for i in range(iters):
        netD.zero_grad()
        real_cpu = torch.tensor(REAL).to(device)
        b_size = real_cpu.size(0)
        label = torch.full((b_size,), real_label, dtype=torch.float, device=device)
        output = netD(real_cpu).view(-1)
        errD_real = criterion(output, label)
        errD_real.backward()
        D_x = output.mean().item()
        noise = torch.tensor(NOISE[i])
        fake = netG(noise)
        label.fill_(fake_label)
        output = netD(fake.detach()).view(-1)
        errD_fake = criterion(output, label)
        errD_fake.backward()
        D_G_z1 = output.mean().item()
        errD = errD_real + errD_fake
        optimizerD.step()
        netG.zero_grad()
        label.fill_(real_label)
        output = netD(fake).view(-1)
        errG = criterion(output, label)
        errG.backward()
        D_G_z2 = output.mean().item()
        optimizerG.step()
        log.append([errD.item(), errG.item(), D_x, D_G_z1, D_G_z2])
    with torch.no_grad():
        fake = netG(torch.tensor(NOISE[0])).detach().cpu()
    return netG, netD, log, fake


class CharRNN(nn.Module):
    def __init__(self, input_size, hidden_size, output_size, n_layers=1):
        super(CharRNN, self).__init__()
        self.hidden_size = hidden_size
        self.n_layers = n_layers
        self.encoder = nn.Embedding(input_size, hidden_size)
        self.gru = nn.GRU(hidden_size, hidden_size, n_layers)
        self.decoder = nn.Linear(hidden_size, output_size)

    def forward(self, input, hidden):
        input = self.encoder(input.view(1, -1))
        output, hidden = self.gru(input.view(1, 1, -1), hidden)
        output = self.decoder(output.view(1, -1))
        return output, hidden

    def init_hidden(self):
        return torch.zeros(self.n_layers, 1, self.hidden_size)


def generate(decoder, prime_str='A', predict_len=10, temperature=0.8):
    hidden = decoder.init_hidden()
    prime_input = torch.LongTensor([ord(c) - 65 for c in prime_str])
    predicted = prime_str
    for p in range(len(prime_str) - 1):
        _, hidden = decoder(prime_input[p], hidden)
    inp = prime_input[-1]
    logits = []
    for p in range(predict_len):
        output, hidden = decoder(inp, hidden)
        logits.append(output)
        output_dist = output.data.view(-1).div(temperature).exp()
        top_i = torch.multinomial(output_dist, 1)[0]
        predicted += chr(65 + int(top_i))
        inp = torch.LongTensor([int(top_i)])
    return predicted, logits
'''


def _gan_data(seed=2):
    rng = np.random.default_rng(seed)
    return dict(REAL=np.tanh(rng.normal(0, 1, (4, 3, 16, 16))).astype(np.float32),
                NOISE=rng.normal(0, 1, (3, 4, 8, 1, 1)).astype(np.float32))


def test_dcgan_matches_torch():
    torch = pytest.importorskip("torch")
    env = _gan_data()
    ref = _run(GENERATIVE, IMAGES=None, **env)
    torch.manual_seed(0)
    netG, netD, _, _ = ref["train_gan"](iters=0)
    states = (_state_as_numpy(netG), _state_as_numpy(netD))
    ref_G, ref_D, ref_log, ref_fake = ref["train_gan"](states)
    ours = _run(_dualgraph_source(GENERATIVE), IMAGES=None, **env)
    G, D, log, fake = ours["train_gan"](states)
    np.testing.assert_allclose(log, ref_log, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(fake.numpy(), ref_fake.numpy(), rtol=1e-3, atol=1e-5)
    for ours_net, ref_net in ((G, ref_G), (D, ref_D)):  # BatchNorm running statistics included
        for k, v in ref_net.state_dict().items():
            np.testing.assert_allclose(ours_net.state_dict()[k].numpy(), v.numpy(), rtol=1e-3, atol=1e-6,
                                       err_msg=k)


def test_dcgan_weights_init_and_shapes():
    import dualgraph as dg

    ns = _run(_dualgraph_source(GENERATIVE), IMAGES=None, **_gan_data())
    dg.manual_seed(0)
    G, D, log, fake = ns["train_gan"](iters=2)
    assert tuple(fake.shape) == (4, 3, 16, 16) and np.abs(fake.numpy()).max() <= 1.0
    assert np.isfinite(log).all() and all(0.0 < row[2] < 1.0 for row in log)
    # weights_init: conv weights N(0, 0.02), BatchNorm weights N(1, 0.02) and zero bias (before training)
    G0 = ns["Generator"](1)
    G0.apply(ns["weights_init"])
    w = np.concatenate([m.weight.numpy().ravel() for m in G0.modules() if type(m).__name__ == "ConvTranspose2d"])
    assert abs(w.mean()) < 0.005 and 0.015 < w.std() < 0.025
    bn = [m for m in G0.modules() if type(m).__name__ == "BatchNorm2d"]
    assert all(np.abs(m.weight.numpy() - 1).max() < 0.1 and not m.bias.numpy().any() for m in bn)


def test_vae_learns_and_loss_matches_torch():
    import dualgraph as dg

    images, _ = _fashion(32)
    ns = _run(_dualgraph_source(GENERATIVE), IMAGES=images, REAL=None, NOISE=None)
    dg.manual_seed(0)
    losses, sample, comparison = ns["train_vae"](4)
    assert losses[-1] < losses[0]
    assert tuple(sample.shape) == (64, 1, 28, 28) and tuple(comparison.shape) == (16, 1, 28, 28)
    rng = np.random.default_rng(3)
    recon = rng.uniform(0.05, 0.95, (2, 784)).astype(np.float32)
    x = rng.uniform(0, 1, (2, 1, 28, 28)).astype(np.float32)
    mu, logvar = rng.normal(0, 1, (2, 2, 20)).astype(np.float32)
    got = ns["loss_function"](dg.tensor(recon), dg.tensor(x), dg.tensor(mu), dg.tensor(logvar)).item()
    xf = x.reshape(2, 784).astype(np.float64)
    bce = -np.sum(xf * np.log(recon) + (1 - xf) * np.log(1 - recon))
    kld = -0.5 * np.sum(1 + logvar - mu.astype(np.float64) ** 2 - np.exp(logvar.astype(np.float64)))
    assert got == pytest.approx(bce + kld, rel=1e-5)
    torch = _torch_or_none()
    if torch is None:  # the checks above stand without torch
        return
    ref = _run(GENERATIVE, IMAGES=images, REAL=None, NOISE=None)
    want = ref["loss_function"](*(torch.tensor(a) for a in (recon, x, mu, logvar))).item()
    assert got == pytest.approx(want, rel=1e-5)


def test_char_rnn_sampling_matches_torch():
    import dualgraph as dg

    ns = _run(_dualgraph_source(GENERATIVE), IMAGES=None, REAL=None, NOISE=None)
    dg.manual_seed(0)
    rnn = ns["CharRNN"](26, 16, 26)
    text, logits = ns["generate"](rnn, "HEL", predict_len=12)
    assert len(text) == 15 and text.startswith("HEL") and text.isalpha() and text.isupper()
    assert all(tuple(o.shape) == (1, 26) for o in logits)
    torch = _torch_or_none()
    if torch is None:  # the checks above stand without torch
        return
    ref = _run(GENERATIVE, IMAGES=None, REAL=None, NOISE=None)
    ref_rnn = ref["CharRNN"](26, 16, 26)
    rnn.load_state_dict({k: v.detach().numpy() for k, v in ref_rnn.state_dict().items()})
    ref_text, ref_logits = ref["generate"](ref_rnn, "HEL", predict_len=12)
    # the draws differ (two generators), so both runs are fed torch's text and the logits compared
    _, ref_logits = ref["generate"](ref_rnn, ref_text, predict_len=1)
    _, logits = ns["generate"](rnn, ref_text, predict_len=1)
    np.testing.assert_allclose(logits[0].numpy(), ref_logits[0].detach().numpy(), rtol=1e-4, atol=1e-6)
    hidden = rnn.init_hidden()
    ref_hidden = ref_rnn.init_hidden()
    for ch in ref_text:
        out, hidden = rnn(dg.LongTensor([ord(ch) - 65]), hidden)
        ref_out, ref_hidden = ref_rnn(torch.LongTensor([ord(ch) - 65]), ref_hidden)
    np.testing.assert_allclose(hidden.detach().numpy(), ref_hidden.detach().numpy(), rtol=1e-4, atol=1e-6)


# ---- "What is torch.nn really?": logistic regression from scratch, then nn.Module, DataLoader, CNN ----

NN_REALLY = '''
import math
import numpy as np
import torch
from torch import nn
import torch.nn.functional as F
from torch import optim
from torch.utils.data import TensorDataset, DataLoader

x_train, y_train, x_valid, y_valid = map(torch.tensor, DATA)
n, c = x_train.shape
bs = 64
lr = 0.5
epochs = 2


def log_softmax(x):
    return x - x.exp().sum(-1).log().unsqueeze(-1)


def nll(input, target):
    return -input[range(target.shape[0]), target].mean()


def accuracy(out, yb):
    preds = torch.argmax(out, dim=1)
    return (preds == yb).float().mean()


def from_scratch(init=None):
    weights = torch.randn(784, 10) / math.sqrt(784)
    weights.requires_grad_()
    bias = torch.zeros(10, requires_grad=True)
    if init is not None:
        weights = torch.tensor(init, requires_grad=True)

    def model(xb):
        return log_softmax(xb @ weights + bias)

    loss_func = nll
    xb = x_train[0:bs]
    yb = y_train[0:bs]
    preds = model(xb)
    log = [loss_func(preds, yb).item(), accuracy(preds, yb).item()]
    for epoch in range(epochs):
        for i in range((n - 1) // bs + 1):
            start_i = i * bs
            end_i = start_i + bs
            xb = x_train[start_i:end_i]
            yb = y_train[start_i:end_i]
            pred = model(xb)
            loss = loss_func(pred, yb)
            loss.backward()
            with torch.no_grad():
                weights -= weights.grad * lr
                bias -= bias.grad * lr
                weights.grad.zero_()
                bias.grad.zero_()
    log += [loss_func(model(xb), yb).item(), accuracy(model(xb), yb).item()]
    return log, weights, bias


class Mnist_CNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, kernel_size=3, stride=2, padding=1)
        self.conv2 = nn.Conv2d(16, 16, kernel_size=3, stride=2, padding=1)
        self.conv3 = nn.Conv2d(16, 10, kernel_size=3, stride=2, padding=1)

    def forward(self, xb):
        xb = xb.view(-1, 1, 28, 28)
        xb = F.relu(self.conv1(xb))
        xb = F.relu(self.conv2(xb))
        xb = F.relu(self.conv3(xb))
        xb = F.avg_pool2d(xb, 4)
        return xb.view(-1, xb.size(1))


class Lambda(nn.Module):
    def __init__(self, func):
        super().__init__()
        self.func = func

    def forward(self, x):
        return self.func(x)


def preprocess(x):
    return x.view(-1, 1, 28, 28)


def get_data(train_ds, valid_ds, bs):
    return (
        DataLoader(train_ds, batch_size=bs, shuffle=SHUFFLE),
        DataLoader(valid_ds, batch_size=bs * 2),
    )


def loss_batch(model, loss_func, xb, yb, opt=None):
    loss = loss_func(model(xb), yb)
    if opt is not None:
        loss.backward()
        opt.step()
        opt.zero_grad()
    return loss.item(), len(xb)


def fit(epochs, model, loss_func, opt, train_dl, valid_dl):
    val_losses = []
    for epoch in range(epochs):
        model.train()
        for xb, yb in train_dl:
            loss_batch(model, loss_func, xb, yb, opt)
        model.eval()
        with torch.no_grad():
            losses, nums = zip(
                *[loss_batch(model, loss_func, xb, yb) for xb, yb in valid_dl]
            )
        val_loss = np.sum(np.multiply(losses, nums)) / np.sum(nums)
        val_losses.append(val_loss)
    return val_losses


def make(kind):
    if kind == "cnn":
        return Mnist_CNN()
    return nn.Sequential(
        Lambda(preprocess),
        nn.Conv2d(1, 16, kernel_size=3, stride=2, padding=1),
        nn.ReLU(),
        nn.Conv2d(16, 16, kernel_size=3, stride=2, padding=1),
        nn.ReLU(),
        nn.Conv2d(16, 10, kernel_size=3, stride=2, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        Lambda(lambda x: x.view(x.size(0), -1)),
    )


def train(kind, state=None, epochs=epochs):
    train_ds = TensorDataset(x_train, y_train)
    valid_ds = TensorDataset(x_valid, y_valid)
    train_dl, valid_dl = get_data(train_ds, valid_ds, bs)
    model = make(kind)
    if state is not None:
        model.load_state_dict({k: torch.tensor(v) for k, v in state.items()})
    loss_func = F.cross_entropy
    opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    return fit(epochs, model, loss_func, opt, train_dl, valid_dl), model
'''


def _flat_digits(n=192, seed=4):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 10, n)
    x = rng.uniform(0, 0.3, (n, 784)).astype(np.float32)
    for i, c in enumerate(y):
        x[i, 28 * (2 + 2 * c) + 4: 28 * (2 + 2 * c) + 24] += 1.0
    m = 3 * n // 4
    return x[:m], y[:m], x[m:], y[m:]


def test_nn_really_matches_torch():
    torch = pytest.importorskip("torch")
    env = dict(DATA=_flat_digits(), SHUFFLE=False)
    ref = _run(NN_REALLY, **env)
    ours = _run(_dualgraph_source(NN_REALLY), **env)
    init = np.random.default_rng(5).normal(0, 1 / 28, (784, 10)).astype(np.float32)
    ref_log, ref_w, ref_b = ref["from_scratch"](init)
    log, w, b = ours["from_scratch"](init)
    np.testing.assert_allclose(log, ref_log, rtol=1e-4)
    np.testing.assert_allclose(w.detach().numpy(), ref_w.detach().numpy(), rtol=1e-3, atol=1e-6)
    for kind in ("sequential",):  # the same layers as Mnist_CNN, which test_nn_really_learns runs
        torch.manual_seed(0)
        state = _state_as_numpy(ref["make"](kind))
        ref_val, _ = ref["train"](kind, state, epochs=1)
        val, _ = ours["train"](kind, state, epochs=1)
        np.testing.assert_allclose(val, ref_val, rtol=1e-4, err_msg=kind)


def test_nn_really_learns():
    ns = _run(_dualgraph_source(NN_REALLY), DATA=_flat_digits(), SHUFFLE=True)
    log, w, b = ns["from_scratch"]()
    assert log[2] < log[0] and log[3] > log[1]
    assert w.grad is not None and not w.grad.numpy().any()  # zeroed by grad.zero_() after each step
    for kind in ("cnn", "sequential"):
        val, model = ns["train"](kind, epochs=4)
        assert np.isfinite(val).all() and len(val) == 4
        assert tuple(model(ns["x_valid"][:3]).shape) == (3, 10)


def test_index_with_range():
    import dualgraph as dg

    a = np.arange(12.0).reshape(3, 4)
    x = dg.tensor(a, requires_grad=True)
    y = x[range(3), dg.tensor([0, 2, 3])]
    np.testing.assert_array_equal(y.detach().numpy(), a[[0, 1, 2], [0, 2, 3]])
    y.sum().backward()
    want = np.zeros((3, 4))
    want[[0, 1, 2], [0, 2, 3]] = 1
    np.testing.assert_array_equal(x.grad.numpy(), want)
    assert tuple(x[range(0)].shape) == (0, 4)  # an empty range is an empty integer index
    np.testing.assert_array_equal(x[:, range(3, 0, -2)].detach().numpy(), a[:, [3, 1]])
    z = dg.zeros(3, 4)
    z[range(1, 3), [0, 1]] = 7.0
    assert z.numpy()[1, 0] == 7.0 and z.numpy()[2, 1] == 7.0 and z.numpy().sum() == 14.0
    torch = _torch_or_none()
    if torch is None:  # the checks above stand without torch
        return
    t = torch.tensor(a)
    np.testing.assert_array_equal(x[range(2, 0, -1), range(2)].detach().numpy(), t[range(2, 0, -1), range(2)].numpy())


# ---- the seq2seq translation tutorial: GRU encoder, Bahdanau attention decoder, teacher forcing -------

SEQ2SEQ = '''import numpy as np
import torch
import torch.nn as nn
from torch import optim
import torch.nn.functional as F
from torch.utils.data import TensorDataset, DataLoader, RandomSampler, SequentialSampler

device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
SOS_token = 0
EOS_token = 1
MAX_LENGTH = 6

class EncoderRNN(nn.Module):
    def __init__(self, input_size, hidden_size, dropout_p=0.1):
        super(EncoderRNN, self).__init__()
        self.hidden_size = hidden_size
        self.embedding = nn.Embedding(input_size, hidden_size)
        self.gru = nn.GRU(hidden_size, hidden_size, batch_first=True)
        self.dropout = nn.Dropout(dropout_p)

    def forward(self, input):
        embedded = self.dropout(self.embedding(input))
        output, hidden = self.gru(embedded)
        return output, hidden

class BahdanauAttention(nn.Module):
    def __init__(self, hidden_size):
        super(BahdanauAttention, self).__init__()
        self.Wa = nn.Linear(hidden_size, hidden_size)
        self.Ua = nn.Linear(hidden_size, hidden_size)
        self.Va = nn.Linear(hidden_size, 1)

    def forward(self, query, keys):
        scores = self.Va(torch.tanh(self.Wa(query) + self.Ua(keys)))
        scores = scores.squeeze(2).unsqueeze(1)
        weights = F.softmax(scores, dim=-1)
        context = torch.bmm(weights, keys)
        return context, weights

class AttnDecoderRNN(nn.Module):
    def __init__(self, hidden_size, output_size, dropout_p=0.1):
        super(AttnDecoderRNN, self).__init__()
        self.embedding = nn.Embedding(output_size, hidden_size)
        self.attention = BahdanauAttention(hidden_size)
        self.gru = nn.GRU(2 * hidden_size, hidden_size, batch_first=True)
        self.out = nn.Linear(hidden_size, output_size)
        self.dropout = nn.Dropout(dropout_p)

    def forward(self, encoder_outputs, encoder_hidden, target_tensor=None):
        batch_size = encoder_outputs.size(0)
        decoder_input = torch.empty(batch_size, 1, dtype=torch.long, device=device).fill_(SOS_token)
        decoder_hidden = encoder_hidden
        decoder_outputs = []
        attentions = []
        for i in range(MAX_LENGTH):
            decoder_output, decoder_hidden, attn_weights = self.forward_step(
                decoder_input, decoder_hidden, encoder_outputs
            )
            decoder_outputs.append(decoder_output)
            attentions.append(attn_weights)
            if target_tensor is not None:
                decoder_input = target_tensor[:, i].unsqueeze(1) # Teacher forcing
            else:
                _, topi = decoder_output.topk(1)
                decoder_input = topi.squeeze(-1).detach()  # detach from history as input
        decoder_outputs = torch.cat(decoder_outputs, dim=1)
        decoder_outputs = F.log_softmax(decoder_outputs, dim=-1)
        attentions = torch.cat(attentions, dim=1)
        return decoder_outputs, decoder_hidden, attentions

    def forward_step(self, input, hidden, encoder_outputs):
        embedded =  self.dropout(self.embedding(input))
        query = hidden.permute(1, 0, 2)
        context, attn_weights = self.attention(query, encoder_outputs)
        input_gru = torch.cat((embedded, context), dim=2)
        output, hidden = self.gru(input_gru, hidden)
        output = self.out(output)
        return output, hidden, attn_weights



def make_loader(pairs):
    n = len(pairs)
    input_ids = np.zeros((n, MAX_LENGTH), dtype=np.int32)
    target_ids = np.zeros((n, MAX_LENGTH), dtype=np.int32)
    for idx, (inp_ids, tgt_ids) in enumerate(pairs):
        inp_ids.append(EOS_token)
        tgt_ids.append(EOS_token)
        input_ids[idx, :len(inp_ids)] = inp_ids
        target_ids[idx, :len(tgt_ids)] = tgt_ids
    train_data = TensorDataset(torch.LongTensor(input_ids).to(device),
                               torch.LongTensor(target_ids).to(device))
    train_sampler = RandomSampler(train_data) if SHUFFLE else SequentialSampler(train_data)
    return DataLoader(train_data, sampler=train_sampler, batch_size=4)


def train_epoch(dataloader, encoder, decoder, encoder_optimizer, decoder_optimizer, criterion):
    total_loss = 0
    for data in dataloader:
        input_tensor, target_tensor = data
        encoder_optimizer.zero_grad()
        decoder_optimizer.zero_grad()
        encoder_outputs, encoder_hidden = encoder(input_tensor)
        decoder_outputs, _, _ = decoder(encoder_outputs, encoder_hidden, target_tensor)
        loss = criterion(
            decoder_outputs.view(-1, decoder_outputs.size(-1)),
            target_tensor.view(-1)
        )
        loss.backward()
        encoder_optimizer.step()
        decoder_optimizer.step()
        total_loss += loss.item()
    return total_loss / len(dataloader)


def make_models(dropout_p, hidden_size=16):
    encoder = EncoderRNN(10, hidden_size, dropout_p).to(device)
    decoder = AttnDecoderRNN(hidden_size, 10, dropout_p).to(device)
    return encoder, decoder


def train(pairs, epochs, dropout_p=0.1, states=None):
    encoder, decoder = make_models(dropout_p)
    if states is not None:
        encoder.load_state_dict({k: torch.tensor(v) for k, v in states[0].items()})
        decoder.load_state_dict({k: torch.tensor(v) for k, v in states[1].items()})
    train_dataloader = make_loader(pairs)
    encoder_optimizer = optim.Adam(encoder.parameters(), lr=0.01)
    decoder_optimizer = optim.Adam(decoder.parameters(), lr=0.01)
    criterion = nn.NLLLoss()
    losses = []
    for epoch in range(1, epochs + 1):
        losses.append(train_epoch(train_dataloader, encoder, decoder, encoder_optimizer, decoder_optimizer,
                                  criterion))
    return encoder, decoder, losses


def evaluate(encoder, decoder, sentence):
    encoder.eval()
    decoder.eval()
    with torch.no_grad():
        input_tensor = torch.tensor(sentence + [EOS_token], dtype=torch.long, device=device).view(1, -1)
        encoder_outputs, encoder_hidden = encoder(input_tensor)
        decoder_outputs, decoder_hidden, decoder_attn = decoder(encoder_outputs, encoder_hidden)
        _, topi = decoder_outputs.topk(1)
        decoded_ids = topi.squeeze()
        decoded_words = []
        for idx in decoded_ids:
            if idx.item() == EOS_token:
                decoded_words.append('<EOS>')
                break
            decoded_words.append(idx.item())
    return decoded_words, decoder_attn
'''


def _reversal_pairs(copies):
    base = [([2, 3, 4], [4, 3, 2]), ([5, 6], [6, 5]), ([7, 2, 5, 3], [3, 5, 2, 7]), ([4, 4], [4, 4])]
    return [(list(a), list(b)) for a, b in base * copies]


def test_seq2seq_matches_torch():
    torch = pytest.importorskip("torch")
    ref = _run(SEQ2SEQ, SHUFFLE=False)
    ours = _run(_dualgraph_source(SEQ2SEQ), SHUFFLE=False)
    torch.manual_seed(0)
    states = tuple(_state_as_numpy(m) for m in ref["make_models"](0.0))
    ref_enc, ref_dec, ref_losses = ref["train"](_reversal_pairs(1), 1, 0.0, states)
    enc, dec, losses = ours["train"](_reversal_pairs(1), 1, 0.0, states)
    np.testing.assert_allclose(losses, ref_losses, rtol=1e-4)
    ref_words, ref_attn = ref["evaluate"](ref_enc, ref_dec, [7, 2, 5, 3])
    words, attn = ours["evaluate"](enc, dec, [7, 2, 5, 3])
    assert words == ref_words
    np.testing.assert_allclose(attn.numpy(), ref_attn.numpy(), rtol=1e-3, atol=1e-6)


def test_seq2seq_learns_to_reverse():
    import dualgraph as dg

    ns = _run(_dualgraph_source(SEQ2SEQ), SHUFFLE=True)
    dg.manual_seed(0)
    enc, dec, losses = ns["train"](_reversal_pairs(4), 25)
    assert losses[-1] < 0.25 * losses[0]
    words, attn = ns["evaluate"](enc, dec, [7, 2, 5, 3])
    assert words == [3, 5, 2, 7, "<EOS>"]
    assert tuple(attn.shape) == (1, 6, 5)
    np.testing.assert_allclose(attn.numpy().sum(-1), 1.0, rtol=1e-5)  # softmax weights over the 5 inputs


def test_size_finfo_and_constants():
    import math

    import dualgraph as dg

    x = dg.ones(3, 4)
    assert x.shape == dg.Size([3, 4]) and x.size() == dg.Size((3, 4))
    s = dg.Size([2, 3, 4])
    assert isinstance(s[1:], dg.Size) and s[1:] == (3, 4) and s[0] == 2 and s.numel() == 24
    assert repr(dg.Size([3, 4])) == "dualgraph.Size([3, 4])"
    with pytest.raises(TypeError, match="Size"):
        dg.Size([2.5])
    assert dg.finfo(dg.float32).eps == 2.0 ** -23 and dg.finfo(dg.float64).eps == 2.0 ** -52
    assert dg.finfo().max == dg.finfo(dg.float32).max and dg.iinfo(dg.int32).max == 2 ** 31 - 1
    with pytest.raises(dg.DTypeError, match="finfo"):
        dg.finfo(dg.int64)
    with pytest.raises(dg.DTypeError, match="iinfo"):
        dg.iinfo(dg.float32)
    assert (dg.pi, dg.e, dg.inf) == (math.pi, math.e, math.inf) and math.isnan(dg.nan)
    torch = _torch_or_none()
    if torch is None:  # the checks above stand without torch
        return
    assert torch.Size([3, 4]) == dg.Size([3, 4]) and torch.Size([2, 3, 4])[1:] == s[1:]
    for name in ("eps", "max", "min", "tiny", "bits", "resolution"):
        assert getattr(torch.finfo(torch.float32), name) == getattr(dg.finfo(dg.float32), name), name
        assert getattr(torch.finfo(torch.float16), name) == getattr(dg.finfo(dg.float16), name), name
    for name in ("max", "min", "bits"):
        assert getattr(torch.iinfo(torch.int64), name) == getattr(dg.iinfo(dg.int64), name), name
    assert (torch.pi, torch.e, torch.inf) == (dg.pi, dg.e, dg.inf)
