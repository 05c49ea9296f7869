"""PyTorch-style autograd: requires_grad, is_leaf, grad, grad_fn, retain_grad, detach, grad modes,
backward(gradient, retain_graph, create_graph), autograd.grad, custom Function, gradcheck, version counter.

References: hand-derived derivatives, central finite differences in float64, and torch (when installed).
"""
import numpy as np
import pytest

import dualgraph as dg
from dualgraph import autograd

DEVICES = ["cpu"] + (["gpu"] if dg.gpu_available() else [])


def leaf(values, dtype=None):
    return dg.tensor(values, dtype=dtype, requires_grad=True)


def numeric_grad(f, x0, eps=1e-6):
    """Central differences of the scalar function f(np.ndarray) -> float, in float64."""
    x0 = np.array(x0, dtype=np.float64)
    g = np.zeros_like(x0)
    for i in np.ndindex(x0.shape):
        xp, xm = x0.copy(), x0.copy()
        xp[i] += eps
        xm[i] -= eps
        g[i] = (f(xp) - f(xm)) / (2 * eps)
    return g


# ---- the seed example ---------------------------------------------------------------------------

def test_seed_example_values_leaves_and_grad_fn():
    w = dg.tensor(1.0, requires_grad=True)
    x = dg.tensor(2.0, requires_grad=True)
    a = w + x
    a.retain_grad()
    b = w + 1
    y = a * b
    y.backward()
    assert w.grad.item() == 5.0          # dy/dw = b + a = 2 + 3
    assert x.grad.item() == 2.0          # dy/dx = b
    assert a.grad.item() == 2.0          # retained: dy/da = b
    assert [t.is_leaf for t in (w, x, a, b, y)] == [True, True, False, False, False]
    assert y.grad_fn.name() == "MulBackward0"
    assert "MulBackward0" in repr(y.grad_fn)
    assert a.grad_fn.name() == "AddBackward0" and b.grad_fn.name() == "AddBackward0"
    assert w.grad_fn is None and x.grad_fn is None
    assert y.requires_grad and a.requires_grad
    assert b.grad is None                # non-leaf without retain_grad keeps no grad


def test_next_functions_walk_to_accumulate_grad():
    w = dg.tensor(1.0, requires_grad=True)
    x = dg.tensor(2.0, requires_grad=True)
    a, b = w + x, w + 1
    y = a * b
    (fa, ia), (fb, ib) = y.grad_fn.next_functions
    assert fa is a.grad_fn and fb is b.grad_fn and ia == ib == 0
    (acc_w, _), (acc_x, _) = fa.next_functions
    assert acc_w.name() == "AccumulateGrad" and acc_w.variable is w and acc_x.variable is x
    (acc_w2, _), (const, _) = fb.next_functions
    assert acc_w2.variable is w and const is None       # the Python constant 1 has no grad_fn
    # a tensor that does not require grad shows up as None too
    c = dg.tensor(3.0)
    (_, _), (none_fn, _) = (w * c).grad_fn.next_functions
    assert none_fn is None
    # edges survive backward (PyTorch keeps the graph's structure, frees only saved values)
    y.backward()
    assert y.grad_fn.next_functions[0][0] is a.grad_fn


def test_grad_fn_names_match_pytorch_for_elementwise_and_reductions():
    x = leaf([[0.5, 2.0], [3.0, 4.0]])
    expected = {
        "AddBackward0": x + 1, "SubBackward0": x - 1, "MulBackward0": x * 2, "DivBackward0": x / 2,
        "PowBackward0": x ** 2, "NegBackward0": -x, "ExpBackward0": x.exp(), "LogBackward0": x.log(),
        "TanhBackward0": x.tanh(), "SigmoidBackward0": x.sigmoid(), "ReluBackward0": x.relu(),
        "SqrtBackward0": x.sqrt(), "SinBackward0": x.sin(), "CosBackward0": x.cos(), "AbsBackward0": x.abs(),
        "SumBackward0": x.sum(), "TransposeBackward0": x.transpose(0, 1),
        "MaximumBackward0": dg.maximum(x, x * 1), "WhereBackward0": dg.where(x > 2, x, x * 1),
    }
    for name, t in expected.items():
        assert t.grad_fn.name() == name
    torch = pytest.importorskip("torch")
    tx = torch.tensor([[0.5, 2.0], [3.0, 4.0]], requires_grad=True)
    assert (tx * 2).grad_fn.name() == "MulBackward0" and tx.exp().grad_fn.name() == "ExpBackward0"


# ---- leaves, requires_grad, detach ---------------------------------------------------------------

def test_requires_grad_propagation_and_leaves():
    a = dg.tensor([1.0, 2.0])
    b = leaf([3.0, 4.0])
    assert not a.requires_grad and a.is_leaf and a.grad_fn is None
    c = a * 2                              # nothing requires grad: a leaf with no history
    assert not c.requires_grad and c.is_leaf and c.grad_fn is None
    d = a * b
    assert d.requires_grad and not d.is_leaf
    a.requires_grad_()
    assert a.requires_grad and a.is_leaf
    a.requires_grad = False
    assert not a.requires_grad
    with pytest.raises(dg.AutogradError, match="leaf"):
        d.requires_grad_(False)


def test_detach_shares_data_and_version_but_no_history():
    x = leaf([1.0, 2.0])
    y = x * 3
    d = y.detach()
    assert not d.requires_grad and d.is_leaf and d.grad_fn is None
    assert d.tolist() == [3.0, 6.0]
    d.add_(1)                               # same storage, same version counter
    assert y.tolist() == [4.0, 7.0]
    assert x.data.tolist() == [1.0, 2.0] and not x.data.requires_grad
    z = x.detach().requires_grad_()
    (z * z).sum().backward()
    assert x.grad is None and z.grad.tolist() == [2.0, 4.0]


def test_detach_then_modify_saved_tensor_is_caught():
    x = leaf([1.0, 2.0])
    y = x * 1
    z = y * y                               # MulBackward0 saves y
    y.detach().mul_(5)                      # changes y's storage through a detached alias
    with pytest.raises(dg.AutogradError, match="in-place"):
        z.sum().backward()


# ---- grad modes -------------------------------------------------------------------------------------

def test_no_grad_enable_grad_set_grad_enabled():
    x = leaf([1.0])
    with dg.no_grad():
        assert not dg.is_grad_enabled()
        y = x * 2
        with dg.enable_grad():
            assert dg.is_grad_enabled()
            z = x * 2
        assert not dg.is_grad_enabled()
    assert dg.is_grad_enabled()
    assert not y.requires_grad and y.grad_fn is None and y.is_leaf
    assert z.requires_grad and z.grad_fn.name() == "MulBackward0"
    with dg.set_grad_enabled(False):
        assert not (x * 2).requires_grad
    assert dg.is_grad_enabled()
    dg.set_grad_enabled(False)              # a plain call switches it, as in PyTorch
    try:
        assert not dg.is_grad_enabled()
    finally:
        dg.set_grad_enabled(True)
    assert dg.is_grad_enabled()


def test_no_grad_as_decorator_and_restores_on_exception():
    @dg.no_grad()
    def f(t):
        return t * 2

    x = leaf([1.0])
    assert not f(x).requires_grad
    assert dg.is_grad_enabled()

    @dg.no_grad                       # without parentheses too, as torch allows
    def g(t):
        return t * 2

    assert not g(x).requires_grad and g.__name__ == "g" and dg.is_grad_enabled()

    @dg.set_grad_enabled(False)       # decorating must not switch grad mode off for the caller
    def h(t):
        return t * 2

    assert dg.is_grad_enabled()
    assert not h(x).requires_grad and dg.is_grad_enabled()
    with dg.no_grad():
        assert dg.enable_grad(lambda t: t * 2)(x).requires_grad
        assert not dg.is_grad_enabled()
    with pytest.raises(ZeroDivisionError):
        with dg.no_grad():
            1 / 0
    assert dg.is_grad_enabled()


def test_inplace_on_leaf_needs_no_grad_like_an_optimizer_step():
    w = leaf([1.0, 2.0])
    with pytest.raises(dg.AutogradError, match="no_grad"):
        w.sub_(1.0)
    (w * w).sum().backward()
    with dg.no_grad():
        w -= 0.1 * w.grad                    # the SGD update
    assert w.is_leaf and w.grad_fn is None and w.requires_grad
    np.testing.assert_allclose(w.numpy(), [0.8, 1.6], rtol=1e-6)


# ---- backward ---------------------------------------------------------------------------------------

def test_non_scalar_output_needs_gradient():
    x = leaf([1.0, 2.0, 3.0])
    y = x * x
    with pytest.raises(dg.AutogradError, match="scalar") as e:
        y.backward()
    assert "gradient" in str(e.value) and "(3,)" in str(e.value)
    y.backward(gradient=dg.tensor([1.0, 0.1, 0.01]))
    np.testing.assert_allclose(x.grad.numpy(), [2.0, 0.4, 0.06], rtol=1e-6)
    with pytest.raises(dg.ShapeError, match="shape"):
        (x * x).backward(dg.ones(2))
    x.grad = None
    (x * 2).backward(np.array([1.0, 1.0, 1.0]))     # arrays are accepted as gradient
    assert x.grad.tolist() == [2.0, 2.0, 2.0]


def test_backward_on_tensor_without_graph_is_a_clear_error():
    with pytest.raises(dg.AutogradError, match="does not require grad"):
        (dg.tensor([1.0]) * 2).sum().backward()


def test_grads_accumulate_across_backward_calls():
    x = leaf(2.0)
    (x * x).backward()
    (x * x).backward()
    assert x.grad.item() == 8.0
    (x ** 3).backward()
    assert x.grad.item() == 20.0          # 4 + 4 + 3*2^2
    x.grad.zero_()
    (x * 5).backward()
    assert x.grad.item() == 5.0


def test_shared_subexpressions_sum_their_gradients():
    x = leaf([1.0, -2.0])
    a = x * x                               # used twice below
    y = (a * x + a).sum()                   # x^3 + x^2
    y.backward()
    xn = np.array([1.0, -2.0])
    np.testing.assert_allclose(x.grad.numpy(), 3 * xn ** 2 + 2 * xn)


@pytest.mark.parametrize("device", DEVICES)
def test_broadcast_gradients_are_summed_back_and_keep_dtype(device):
    a = dg.tensor(np.ones((3, 1)), dtype="float64", requires_grad=True, device=device)
    b = dg.tensor([0.0, 1.0, 2.0, 3.0], requires_grad=True, device=device)   # float32
    c = a * b                                 # (3, 4), float64
    (c * c).sum().backward()
    bn = np.arange(4.0)
    assert a.grad.shape == (3, 1) and a.grad.dtype == np.float64
    assert b.grad.shape == (4,) and b.grad.dtype == np.float32
    assert a.grad.device == b.grad.device == dg.device(device)
    np.testing.assert_allclose(a.grad.numpy(), np.full((3, 1), 2 * (bn ** 2).sum()))
    np.testing.assert_allclose(b.grad.numpy(), 3 * 2 * bn)


def test_second_backward_without_retain_graph_raises_and_with_it_works():
    x = leaf([1.0, 2.0])
    y = (x * x).sum()
    y.backward()
    with pytest.raises(dg.AutogradError, match="retain_graph=True") as e:
        y.backward()
    assert "second time" in str(e.value)
    x.grad = None
    y = (x * x).sum()
    y.backward(retain_graph=True)
    y.backward()
    assert x.grad.tolist() == [4.0, 8.0]


def test_partially_freed_graph_is_caught():
    x = leaf(3.0)
    h = x * x
    y1 = h * 2
    y2 = h * 3
    y1.backward()                           # frees h's node too
    with pytest.raises(dg.AutogradError, match="retain_graph"):
        y2.backward()


def test_backward_inputs_restricts_accumulation():
    a, b = leaf(1.0), leaf(2.0)
    (a * b).backward(inputs=[a])
    assert a.grad.item() == 2.0 and b.grad is None


def test_retain_grad_on_intermediates():
    x = leaf(2.0)
    y = x * x
    y.retain_grad()
    z = y * y
    z.retain_grad()
    z.backward()
    assert z.grad.item() == 1.0 and y.grad.item() == 8.0 and x.grad.item() == 32.0
    assert not y.grad.requires_grad
    x.retain_grad()                          # harmless on a leaf
    assert y.retains_grad and z.retains_grad and not x.retains_grad
    w = x * 5
    w.retain_grad()
    w.retain_grad()                          # twice: still one gradient, not two
    (w * 1).sum().backward()
    assert w.grad.item() == 1.0
    with pytest.raises(dg.AutogradError, match="does not require grad"):
        dg.ones(2).retain_grad()


def test_hooks_on_leaves_and_intermediates():
    x = leaf([1.0, 2.0])
    seen = []
    x.register_hook(lambda g: seen.append(("x", g.tolist())))
    y = x * 3
    y.register_hook(lambda g: g * 10)        # replaces the gradient flowing on
    y.retain_grad()
    y.sum().backward()
    assert seen == [("x", [30.0, 30.0])]
    assert x.grad.tolist() == [30.0, 30.0]
    assert y.grad.tolist() == [10.0, 10.0]   # retain_grad sees the hooked gradient, as in PyTorch
    with pytest.raises(dg.AutogradError, match="does not require grad"):
        dg.ones(2).register_hook(lambda g: g)
    # register_hook returns a handle whose remove() unregisters the hook
    z = leaf([1.0])
    handle = z.register_hook(lambda g: g * 0)
    handle.remove()
    handle.remove()                          # idempotent
    (z * 3).sum().backward()
    assert z.grad.tolist() == [3.0]
    m = z * 1
    h2 = m.register_hook(lambda g: g * 0)
    h2.remove()
    m.sum().backward()
    assert z.grad.tolist() == [4.0]
    # autograd.grad runs a leaf's hooks too (as torch.autograd.grad does) and leaves .grad alone
    w = leaf([1.0, 2.0])
    w.register_hook(lambda g: g + 100)
    (gw,) = autograd.grad((w * 2).sum(), w)
    assert gw.tolist() == [102.0, 102.0] and w.grad is None


# ---- in-place and the version counter --------------------------------------------------------------

def test_modifying_a_saved_input_raises_at_backward():
    x = leaf([1.0, 2.0])
    y = x * 2
    z = y * y                               # saves y
    y.add_(1)
    assert y._version[0] == 1
    with pytest.raises(dg.AutogradError) as e:
        z.sum().backward()
    msg = str(e.value)
    assert "in-place" in msg and "MulBackward0" in msg and "version 1" in msg and "version 0" in msg


def test_modifying_a_saved_output_raises_at_backward():
    x = leaf([1.0, 2.0])
    y = x.exp()                             # ExpBackward0 saves its output
    with dg.no_grad():
        y.mul_(2)
    with pytest.raises(dg.AutogradError, match="ExpBackward0"):
        y.sum().backward()


def test_inplace_on_intermediate_keeps_correct_gradients():
    # in-place ops whose backward does not need the overwritten value are fine (as in PyTorch)
    x = leaf([1.0, 2.0])
    y = x * 2
    y += 1                                  # y = 2x + 1
    y *= x                                  # y = (2x + 1) x
    assert y.grad_fn.name() == "MulBackward0" and not y.is_leaf
    y.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), 4 * np.array([1.0, 2.0]) + 1)


def test_inplace_on_intermediate_matches_torch():
    torch = pytest.importorskip("torch")
    xn = np.array([0.5, -1.5, 2.0])

    def run(lib, t):
        y = t * 3
        y.add_(t)
        y.div_(t + 3)
        y.sub_(1, alpha=2)
        y.mul_(t)
        return (y * y).sum()

    x = leaf(xn, dtype="float64")
    run(dg, x).backward()
    tx = torch.tensor(xn, requires_grad=True)
    run(torch, tx).backward()
    np.testing.assert_allclose(x.grad.numpy(), tx.grad.numpy(), rtol=1e-10)


def test_copy_and_fill_detach_from_history():
    x = leaf([1.0, 2.0])
    y = x * 2
    y.zero_()
    assert not y.requires_grad               # its values no longer depend on x
    y = x * 2
    y.copy_(dg.tensor([5.0, 5.0]))
    assert y.tolist() == [5.0, 5.0] and not y.requires_grad
    y = x * 2
    w = leaf([7.0, 8.0])
    y.copy_(w * 1)
    y.sum().backward()
    assert w.grad.tolist() == [1.0, 1.0] and x.grad is None


def test_inplace_write_into_a_view_that_needs_grad_is_refused():
    x = leaf([1.0, 2.0, 3.0])
    y = x * 1
    v = y[0:2]
    with pytest.raises(dg.AutogradError, match="view"):
        v.mul_(2)
    assert y.tolist() == [1.0, 2.0, 3.0]     # refused before writing anything


# ---- higher order --------------------------------------------------------------------------------

@pytest.mark.parametrize("device", DEVICES)
def test_second_derivative_of_cube_is_6x(device):
    x = dg.tensor(3.0, requires_grad=True, device=device)
    y = x ** 3
    (g,) = autograd.grad(y, x, create_graph=True)
    assert g.item() == pytest.approx(27.0) and g.requires_grad and g.grad_fn is not None
    (g2,) = autograd.grad(g, x)
    assert g2.item() == pytest.approx(18.0)
    assert x.grad is None                   # autograd.grad does not touch .grad


def test_third_derivative_and_backward_with_create_graph():
    xn = np.array([-1.0, 0.5, 2.0])
    x = leaf(xn, dtype="float64")
    y = (x.sin() * x).sum()
    y.backward(create_graph=True)
    g = x.grad
    np.testing.assert_allclose(g.numpy(), np.cos(xn) * xn + np.sin(xn))
    assert g.requires_grad
    x.grad = None
    g.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), -np.sin(xn) * xn + 2 * np.cos(xn))


def test_grad_of_grad_norm():
    xn = np.array([1.0, -2.0, 3.0])
    x = leaf(xn, dtype="float64")
    y = (x * x * x).sum()                   # grad 3x^2
    (g,) = autograd.grad(y, x, create_graph=True)
    norm = (g * g).sum().sqrt()
    norm.backward()
    ref = numeric_grad(lambda v: np.linalg.norm(3 * v ** 2), xn)
    np.testing.assert_allclose(x.grad.numpy(), ref, rtol=1e-6)
    np.testing.assert_allclose(x.grad.numpy(), 18 * xn ** 3 / np.linalg.norm(3 * xn ** 2), rtol=1e-10)


def test_hessian_vector_product_matches_torch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(3)
    wn, xn, vn = rng.standard_normal((4, 3)), rng.standard_normal((5, 4)), rng.standard_normal((4, 3))

    def f(lib, w, x):
        return (lib.tanh(x @ w) ** 2).sum() + (w * w).sum().sqrt()

    w = leaf(wn, dtype="float64")
    (g,) = autograd.grad(f(dg, w, dg.tensor(xn)), w, create_graph=True)
    (hv,) = autograd.grad((g * dg.tensor(vn)).sum(), w)
    tw = torch.tensor(wn, requires_grad=True)
    (tg,) = torch.autograd.grad(f(torch, tw, torch.tensor(xn)), tw, create_graph=True)
    (thv,) = torch.autograd.grad((tg * torch.tensor(vn)).sum(), tw)
    np.testing.assert_allclose(g.detach().numpy(), tg.detach().numpy(), rtol=1e-10)
    np.testing.assert_allclose(hv.numpy(), thv.numpy(), rtol=1e-8, atol=1e-12)


# ---- autograd.grad -----------------------------------------------------------------------------------

def test_autograd_grad_options():
    a, b = leaf([1.0, 2.0]), leaf([3.0, 4.0])
    y = a * b
    ga, gb = autograd.grad(y, [a, b], grad_outputs=dg.tensor([1.0, 10.0]), retain_graph=True)
    assert ga.tolist() == [3.0, 40.0] and gb.tolist() == [1.0, 20.0]
    assert a.grad is None and b.grad is None
    (ga2,) = autograd.grad(y.sum(), a)        # retain_graph above kept y's graph
    assert ga2.tolist() == [3.0, 4.0]
    # several outputs: gradients add up
    x = leaf(2.0)
    (g,) = autograd.grad([x * x, x * 3], [x])
    assert g.item() == 7.0
    # unused inputs
    c = leaf(1.0)
    with pytest.raises(dg.AutogradError, match="allow_unused"):
        autograd.grad((x * 2), [x, c])
    g1, g2 = autograd.grad((x * 2), [x, c], allow_unused=True)
    assert g1.item() == 2.0 and g2 is None
    with pytest.raises(RuntimeError, match="does not require grad"):
        autograd.grad((x * 2), [dg.tensor(1.0)])
    # gradient wrt an intermediate
    h = x * x
    (gh,) = autograd.grad(h * 3, h)
    assert gh.item() == 3.0


def test_autograd_backward_several_outputs():
    x = leaf([1.0, 2.0])
    autograd.backward([(x * x).sum(), (x * 3).sum()])
    assert x.grad.tolist() == [5.0, 7.0]


# ---- custom Function ------------------------------------------------------------------------------

class Exp(autograd.Function):
    @staticmethod
    def forward(ctx, x):
        r = x.exp()
        ctx.save_for_backward(r)
        return r

    @staticmethod
    def backward(ctx, g):
        (r,) = ctx.saved_tensors
        return g * r


class ScaledMul(autograd.Function):
    """f(a, b, k) = k * a * b with a non-tensor argument k."""

    @staticmethod
    def forward(ctx, a, b, k):
        ctx.save_for_backward(a, b)
        ctx.k = k
        return a * b * k

    @staticmethod
    def backward(ctx, g):
        a, b = ctx.saved_tensors
        ga = g * b * ctx.k if ctx.needs_input_grad[0] else None
        gb = g * a * ctx.k if ctx.needs_input_grad[1] else None
        return ga, gb, None


class SplitHalves(autograd.Function):
    @staticmethod
    def forward(ctx, x):
        n = x.shape[0] // 2
        return x[:n] * 1, x[n:] * 1

    @staticmethod
    def backward(ctx, g1, g2):
        return dg.cat([g1, g2])


def test_custom_function_forward_backward():
    xn = np.array([0.0, 1.0, -0.5])
    x = leaf(xn)
    y = Exp.apply(x)
    assert y.grad_fn.name() == "ExpBackward" and not y.is_leaf
    np.testing.assert_allclose(y.detach().numpy(), np.exp(xn), rtol=1e-6)
    (y * 2).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), 2 * np.exp(xn), rtol=1e-6)
    # inputs that do not require grad: no graph
    assert not Exp.apply(dg.tensor([1.0])).requires_grad


def test_custom_function_non_tensor_args_and_needs_input_grad():
    a, b = leaf([1.0, 2.0]), dg.tensor([3.0, 4.0])
    y = ScaledMul.apply(a, b, 0.5)
    y.sum().backward()
    assert a.grad.tolist() == [1.5, 2.0] and b.grad is None


def test_custom_function_multiple_outputs():
    x = leaf([1.0, 2.0, 3.0, 4.0])
    lo, hi = SplitHalves.apply(x)
    assert lo.grad_fn is hi.grad_fn
    (lo.sum() * 2 + hi.sum() * 3).backward()
    assert x.grad.tolist() == [2.0, 2.0, 3.0, 3.0]
    x.grad = None
    lo, hi = SplitHalves.apply(x)
    hi.sum().backward()                      # the unused output's gradient arrives as zeros
    assert x.grad.tolist() == [0.0, 0.0, 1.0, 1.0]


def test_custom_function_gradcheck_and_double_backward():
    x = leaf([0.1, 0.7, -0.3], dtype="float64")
    assert autograd.gradcheck(Exp.apply, (x,))
    assert autograd.gradgradcheck(Exp.apply, (x,))   # backward is written with dg ops, so it differentiates
    a, b = leaf([0.3, -1.2], dtype="float64"), leaf([2.0, 0.5], dtype="float64")
    assert autograd.gradcheck(lambda p, q: ScaledMul.apply(p, q, 1.5), (a, b))


def test_custom_function_saved_tensor_modified_in_place_raises():
    class Square(autograd.Function):
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return x * x

        @staticmethod
        def backward(ctx, g):
            (x,) = ctx.saved_tensors
            return 2 * g * x

    x = leaf([1.0, 2.0])
    h = x * 1
    y = Square.apply(h)
    with dg.no_grad():
        h.mul_(10)
    with pytest.raises(dg.AutogradError, match="in-place"):
        y.sum().backward()
    y = Exp.apply(x)
    with dg.no_grad():
        y.add_(1)
    with pytest.raises(dg.AutogradError, match="in-place"):
        y.sum().backward()


def test_custom_function_second_backward_needs_retain_graph():
    x = leaf([1.0])
    y = Exp.apply(x).sum()
    y.backward()
    with pytest.raises(dg.AutogradError, match="retain_graph=True"):
        y.backward()


def test_custom_function_mark_non_differentiable():
    class ArgmaxAndMax(autograd.Function):
        @staticmethod
        def forward(ctx, x):
            i = x.argmax()
            m = x.max()
            ctx.mark_non_differentiable(i)
            ctx.save_for_backward(x, i)
            return m, i

        @staticmethod
        def backward(ctx, gm, gi):
            x, i = ctx.saved_tensors
            g = dg.zeros_like(x)
            g[int(i)] = gm
            return g

    x = leaf([1.0, 5.0, 2.0])
    m, i = ArgmaxAndMax.apply(x)
    assert m.requires_grad and not i.requires_grad and i.item() == 1
    m.backward()
    assert x.grad.tolist() == [0.0, 1.0, 0.0]


# ---- gradcheck ------------------------------------------------------------------------------------

def test_gradcheck_catches_wrong_gradients():
    class Wrong(autograd.Function):
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return x * x

        @staticmethod
        def backward(ctx, g):
            (x,) = ctx.saved_tensors
            return 3 * g * x                 # should be 2 g x

    x = leaf([1.0, 2.0], dtype="float64")
    with pytest.raises(dg.AutogradError, match="gradcheck"):
        autograd.gradcheck(Wrong.apply, (x,))
    assert autograd.gradcheck(Wrong.apply, (x,), raise_exception=False) is False


def test_gradgradcheck_catches_a_backward_that_is_not_differentiable():
    class DetachedBackward(autograd.Function):
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return x * x * x

        @staticmethod
        def backward(ctx, g):
            (x,) = ctx.saved_tensors
            return 3 * g * (x * x).detach()  # right first derivative, wrong second

    x = leaf([0.5, -1.0], dtype="float64")
    assert autograd.gradcheck(DetachedBackward.apply, (x,))
    assert autograd.gradgradcheck(DetachedBackward.apply, (x,), raise_exception=False) is False
    assert autograd.gradgradcheck(lambda t: t * t * t, (x,))


# ---- random expression graphs against references -------------------------------------------------

UNARY = [
    ("exp", lambda lib, t: lib.exp(t * 0.3)),
    ("tanh", lambda lib, t: lib.tanh(t)),
    ("sin", lambda lib, t: lib.sin(t)),
    ("sigmoid", lambda lib, t: lib.sigmoid(t)),
    ("square", lambda lib, t: t * t),
    ("softplus-ish", lambda lib, t: lib.log(1 + lib.exp(t * 0.5))),
    ("neg", lambda lib, t: -t),
    ("pow3", lambda lib, t: t ** 3 * 0.1),
    ("softmax", lambda lib, t: lib.softmax(t, -1)),
    ("cumsum", lambda lib, t: lib.cumsum(t, -1)),
    ("clamp", lambda lib, t: lib.clamp(t, -0.8, 0.8)),
    ("logsumexp", lambda lib, t: lib.logsumexp(t, -1, keepdim=True)),
    ("flip", lambda lib, t: t.flip(-1)),
    ("center", lambda lib, t: t - t.mean(-1, keepdim=True)),
    ("var", lambda lib, t: t.var(-1, keepdim=True, correction=0)),
    ("amax", lambda lib, t: lib.amax(t, -1, keepdim=True)),
    ("leaky", lambda lib, t: lib.where(t > 0, t, t * 0.1)),
    ("cat-slice", lambda lib, t: lib.cat([t, t * 2], -1)[..., 1:1 + t.shape[-1]]),
    ("reshape", lambda lib, t: t.reshape(-1).reshape(t.shape) * 1.5),
]
BINARY = [
    ("add", lambda lib, a, b: a + b),
    ("sub", lambda lib, a, b: a - b),
    ("mul", lambda lib, a, b: a * b),
    ("div", lambda lib, a, b: a / (b * b + 1)),
    ("max", lambda lib, a, b: lib.maximum(a, b)),
    ("rsub", lambda lib, a, b: 2.0 - a * 0.5 + b),
]


def random_program(seed, n_ops=12):
    """A random expression DAG over inputs of shapes (3, 4), (4,), (3, 1); values may be reused."""
    rng = np.random.default_rng(seed)
    prog = []
    n_vals = 3
    for _ in range(n_ops):
        if rng.random() < 0.4:
            prog.append(("u", int(rng.integers(len(UNARY))), int(rng.integers(n_vals))))
        else:
            prog.append(("b", int(rng.integers(len(BINARY))), int(rng.integers(n_vals)), int(rng.integers(n_vals))))
        n_vals += 1
    return prog


def run_program(prog, lib, inputs, matmul_w):
    vals = list(inputs)
    for step in prog:
        if step[0] == "u":
            vals.append(UNARY[step[1]][1](lib, vals[step[2]]))
        else:
            vals.append(BINARY[step[1]][1](lib, vals[step[2]], vals[step[3]]))
    out = vals[-1]
    out = out + vals[0] if out.shape != (3, 4) else out          # make every output (3, 4)
    return ((out @ matmul_w) ** 2).sum() + vals[len(vals) // 2].sum()


INPUT_SHAPES = [(3, 4), (4,), (3, 1)]


@pytest.mark.parametrize("seed", range(16))
def test_random_graphs_match_finite_differences(seed):
    rng = np.random.default_rng(100 + seed)
    xs = [rng.standard_normal(s) for s in INPUT_SHAPES]
    wn = rng.standard_normal((4, 2))
    prog = random_program(seed)
    ts = [leaf(x, dtype="float64") for x in xs]
    run_program(prog, dg, ts, dg.tensor(wn)).backward()

    for i, x in enumerate(xs):
        def f(v, i=i):
            vals = [dg.tensor(xx) for xx in xs]
            vals[i] = dg.tensor(v)
            with dg.no_grad():
                return run_program(prog, dg, vals, dg.tensor(wn)).item()
        got = ts[i].grad.numpy() if ts[i].grad is not None else np.zeros_like(x)   # unused input: no grad
        np.testing.assert_allclose(got, numeric_grad(f, x), rtol=1e-5, atol=1e-6,
                                   err_msg=f"program {prog}, input {i}")


@pytest.mark.parametrize("seed", range(24))
def test_random_graphs_match_torch(seed):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(100 + seed)
    xs = [rng.standard_normal(s).astype(np.float32) for s in INPUT_SHAPES]
    wn = rng.standard_normal((4, 2)).astype(np.float32)
    prog = random_program(seed)
    ts = [leaf(x) for x in xs]
    out = run_program(prog, dg, ts, dg.tensor(wn))
    tts = [torch.tensor(x, requires_grad=True) for x in xs]
    tout = run_program(prog, torch, tts, torch.tensor(wn))
    np.testing.assert_allclose(out.item(), tout.item(), rtol=1e-4)
    # first and second order: grad, then the gradient of the gradient's squared norm
    grads = autograd.grad(out, ts, create_graph=True, allow_unused=True)
    tgrads = torch.autograd.grad(tout, tts, create_graph=True, allow_unused=True)
    for g, tg in zip(grads, tgrads):
        assert (g is None) == (tg is None)
        if g is not None:
            np.testing.assert_allclose(g.detach().numpy(), tg.detach().numpy(), rtol=1e-4, atol=1e-5)
    grads = [g for g in grads if g is not None]
    tgrads = [g for g in tgrads if g is not None]
    sec = autograd.grad(sum((g * g).sum() for g in grads), ts, allow_unused=True)
    tsec = torch.autograd.grad(sum((g * g).sum() for g in tgrads), tts, allow_unused=True)
    for g, tg in zip(sec, tsec):
        if tg is None:
            assert g is None or np.allclose(g.numpy(), 0)
        else:
            np.testing.assert_allclose(g.numpy(), tg.numpy(), rtol=1e-3, atol=1e-4)


# ---- viz ---------------------------------------------------------------------------------------------

def parse_dot(dot):
    import re
    labels = dict(re.findall(r'^\s*(\w+) \[label="([^"]*)"', dot, re.M))
    edges = re.findall(r"^\s*(\w+) -> (\w+);", dot, re.M)
    return labels, [(labels[a], labels[b]) for a, b in edges]


def test_to_dot_of_the_seed_graph():
    w, x = leaf(1.0), leaf(2.0)
    y = (x + w) * (w + 1)
    dot = dg.viz.to_dot(y, params={"w": w, "x": x})
    assert dot.startswith("digraph backward {") and dot.rstrip().endswith("}")
    labels, edges = parse_dot(dot)
    assert sorted(labels.values()) == sorted(["output\\n() float32", "MulBackward0", "AddBackward0",
                                              "AddBackward0", "w\\n() float32", "x\\n() float32"])
    assert edges.count(("AddBackward0", "MulBackward0")) == 2
    assert ("MulBackward0", "output\\n() float32") in edges
    assert edges.count(("w\\n() float32", "AddBackward0")) == 2       # w feeds both sums
    assert edges.count(("x\\n() float32", "AddBackward0")) == 1
    assert 'fillcolor="lightblue"' in dot                            # leaves are marked
    # without names, leaves say "leaf" and show shape and dtype
    labels, _ = parse_dot(dg.viz.to_dot(dg.tensor(np.ones((2, 3)), requires_grad=True).sum()))
    assert "leaf\\n(2, 3) float64" in labels.values() and "SumBackward0" in labels.values()


def test_to_dot_escapes_leaf_names():
    w = leaf(1.0)
    dot = dg.viz.to_dot(w * 2, params={'my "w"': w})
    assert 'label="my \\"w\\"\\n() float32"' in dot


def test_to_dot_of_a_tensor_without_history():
    labels, edges = parse_dot(dg.viz.to_dot(dg.ones(2)))
    assert list(labels.values()) == ["output\\n(2,) float32"] and edges == []


def test_to_dot_after_backward_still_draws_the_structure():
    w = leaf([1.0, 2.0])
    y = (w.exp() * w).sum()
    before = dg.viz.to_dot(y)
    y.backward()
    assert dg.viz.to_dot(y) == before


# ---- in-place changes after use ---------------------------------------------------------------------
# A node keeps the grad_fn each input had when it was made (its edges), and refuses to backward only
# when its vjp reads a tensor that changed in place since (as PyTorch).

def test_inplace_after_use_by_an_op_that_saved_nothing():
    x = leaf([1.0, 2.0])
    y = x * 2
    z = y + 1                     # AddBackward0 reads neither input
    y.add_(1)
    z.sum().backward()
    assert x.grad.tolist() == [2.0, 2.0]


def test_inplace_after_use_keeps_the_gradient_path_recorded_before_it():
    x = leaf([1.0, 2.0])
    y = x * 2
    z = y + 1
    y.mul_(3)                     # y's grad_fn is now MulBackward0(y_old, 3); z's edge still goes to y_old
    (z.sum() + y.sum()).backward()
    assert x.grad.tolist() == [2.0 + 6.0, 2.0 + 6.0]


def test_setitem_from_a_slice_of_itself():
    x, w = leaf([1.0, 2.0, 3.0]), leaf(5.0)
    y = x * 1
    y[0:2] = y[0:2] + w
    (y * y).sum().backward()
    assert x.grad.tolist() == [12.0, 14.0, 6.0] and w.grad.item() == 26.0


def test_index_put_is_the_out_of_place_workaround():
    x, w = leaf([1.0, 2.0, 3.0]), leaf(5.0)
    y = x * 1
    y = dg.index_put(y, slice(0, 2), y[0:2] + w)
    (y * y).sum().backward()
    assert x.grad.tolist() == [12.0, 14.0, 6.0] and w.grad.item() == 26.0
    with pytest.raises(dg.AutogradError, match="index_put"):
        v = (x * 1)[0:2]
        v += w


def test_gradcheck_warns_about_low_precision_inputs():
    with pytest.warns(UserWarning, match="float64"):
        autograd.gradcheck(lambda t: t * 2, (leaf([1.0, 2.0]),), eps=1e-2, atol=1e-2)


def test_custom_backward_returning_a_wrong_shape_is_named():
    class WrongShape(autograd.Function):
        @staticmethod
        def forward(ctx, x):
            return x * 2

        @staticmethod
        def backward(ctx, g):
            return dg.ones(3)

    class Broadcast(autograd.Function):
        @staticmethod
        def forward(ctx, x):
            return x * 2

        @staticmethod
        def backward(ctx, g):
            return dg.ones(4, 2)               # broadcastable: summed back, as PyTorch does

    x = leaf([1.0, 2.0])
    with pytest.raises(dg.ShapeError, match=r"WrongShapeBackward.*\(3,\).*\(2,\)"):
        WrongShape.apply(x).sum().backward()
    Broadcast.apply(x).sum().backward()
    assert x.grad.tolist() == [4.0, 4.0]


def test_data_idioms_for_manual_updates():
    w = leaf([1.0, 2.0])
    (w * w).sum().backward()
    w.data -= 0.1 * w.grad                   # the classic pre-no_grad update
    np.testing.assert_allclose(w.detach().numpy(), [0.8, 1.6], rtol=1e-6)
    assert w.is_leaf and w.requires_grad and w.grad_fn is None
    w.data = dg.tensor([5.0, 6.0])
    assert w.tolist() == [5.0, 6.0] and w.requires_grad
    y = w * w                                # saves w
    w.data = dg.zeros(2)                     # swapping the values under a saved tensor is caught
    with pytest.raises(dg.AutogradError, match="in-place"):
        y.sum().backward()
    w.data.add_(3)
    assert w.tolist() == [3.0, 3.0]


@pytest.mark.skipif(not dg.gpu_available(), reason="needs cupy and a GPU")
def test_gpu_gradcheck_custom_function_and_higher_order():
    x = dg.tensor([0.1, 0.7, -0.3], dtype="float64", requires_grad=True, device="gpu")
    assert autograd.gradcheck(Exp.apply, (x,))
    assert autograd.gradgradcheck(lambda t: (t * t).sin(), (x,))
    y = (x ** 3).sum()
    (g,) = autograd.grad(y, x, create_graph=True)
    (g2,) = autograd.grad(g.sum(), x)
    assert g2.device == x.device
    np.testing.assert_allclose(g2.numpy(), 6 * np.array([0.1, 0.7, -0.3]))


INPLACE_OPS = ["add_", "mul_", "sub_", "div_", "setitem_scalar", "setitem_tensor", "exp", "mul_w", "square",
               "view_use", "detach_mul"]


def _run_inplace_program(lib, prog, xn, wn):
    def make(a):
        return dg.tensor(a, requires_grad=True) if lib is dg else lib.tensor(a, requires_grad=True)

    x, w = make(xn), make(wn)
    vals, outs = [x * 1.0], []
    for op, i, j in prog:
        v = vals[i % len(vals)]
        other = vals[j % len(vals)]
        if op == "add_":
            v.add_(w)
        elif op == "mul_":
            v.mul_(w)
        elif op == "sub_":
            v.sub_(other * 0.5 if other is not v else 1.0)
        elif op == "div_":
            v.div_(w * w + 1)
        elif op == "setitem_scalar":
            v[j % 3] = 2.0
        elif op == "setitem_tensor":
            v[1:3] = w[0:2] * 3
        elif op == "exp":
            vals.append(v.exp())
        elif op == "mul_w":
            vals.append(v * w)
        elif op == "square":
            vals.append(v * v)
        elif op == "view_use":
            outs.append(v[0:2].sum())
        elif op == "detach_mul":
            vals.append(v.detach() * 2 + v)
    loss = sum((t * t).sum() for t in vals)
    for o in outs:
        loss = loss + o
    loss.backward()
    return loss.item(), x.grad, w.grad


def test_inplace_programs_never_silently_disagree_with_torch():
    """Random mixes of in-place ops, views and saved tensors: dualgraph either matches torch or raises
    a dualgraph error (it is stricter, see above); it never returns different numbers."""
    torch = pytest.importorskip("torch")
    counts = {"agree": 0, "we_raise": 0, "torch_raises": 0}
    for trial in range(80):
        rng = np.random.default_rng(trial)
        prog = [(INPLACE_OPS[rng.integers(len(INPLACE_OPS))], int(rng.integers(5)), int(rng.integers(5)))
                for _ in range(5)]
        xn, wn = rng.uniform(0.5, 1.5, 4), rng.uniform(0.5, 1.5, 4)
        try:
            ref = _run_inplace_program(torch, prog, xn, wn)
        except RuntimeError:
            counts["torch_raises"] += 1
            with pytest.raises(dg.DualgraphError):
                _run_inplace_program(dg, prog, xn, wn)
            continue
        try:
            got = _run_inplace_program(dg, prog, xn, wn)
        except dg.DualgraphError:
            counts["we_raise"] += 1
            continue
        counts["agree"] += 1
        assert got[0] == pytest.approx(ref[0], rel=1e-10), prog
        for g, r in zip(got[1:], ref[1:]):
            assert (g is None) == (r is None), prog
            if g is not None:
                np.testing.assert_allclose(g.numpy(), r.numpy(), rtol=1e-10, err_msg=str(prog))
    assert counts["agree"] >= 20, counts         # the comparison is not vacuous


@pytest.mark.parametrize("transposed", ["weight", "input", "both"])
def test_matmul_gradients_arrive_in_each_leafs_layout(transposed):
    # x @ W.T (PyTorch's linear): W's gradient is computed as (g.T @ x).T, so it reaches W already
    # C-contiguous like W, with the same values as x.T @ g
    rng = np.random.default_rng(0)
    xn, wn = rng.standard_normal((5, 7)), rng.standard_normal((3, 7))
    x = dg.tensor(xn.T.copy() if transposed != "weight" else xn, requires_grad=True)
    w = dg.tensor(wn, requires_grad=True)
    a = x.T if transposed != "weight" else x
    b = w.T if transposed != "input" else dg.tensor(wn.T.copy(), requires_grad=True)
    g = rng.standard_normal((5, 3))
    (a @ b).backward(dg.tensor(g))
    leaf_b = w if transposed != "input" else b
    want_b = xn.T @ g
    got_b = leaf_b.grad.numpy().T if transposed != "input" else leaf_b.grad.numpy()
    np.testing.assert_allclose(got_b, want_b, rtol=1e-12)
    np.testing.assert_allclose(x.grad.numpy(), (g @ wn).T if transposed != "weight" else g @ wn, rtol=1e-12)
    for leaf in (x, leaf_b):
        assert leaf.grad._data.flags.c_contiguous
