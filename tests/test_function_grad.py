"""Compiled functions in autograd: one tape node whose backward is a traced, optimized graph; whole
training steps (forward, backward, optimizer update) compiled into one graph."""
import numpy as np
import pytest

import dualgraph as dg
from dualgraph.graph.avals import Aval
from dualgraph.ops.onnx_rules import not_exportable
from dualgraph.ops.registry import Op


def close(a, b, tol=1e-5):
    return np.allclose(np.asarray(a), np.asarray(b), atol=tol, rtol=tol)


def mlp(x, w1, b1, w2):
    return dg.cross_entropy(dg.relu(x @ w1 + b1) @ w2, dg.tensor([0, 2, 1, 0]))


FUNCS = {
    "mlp": (mlp, [(4, 5), (5, 6), (6,), (6, 3)]),
    "broadcast": (lambda a, b: (a * b + a / (b * b + 1.0)).sum(), [(3, 1), (1, 4)]),
    "reductions": (lambda a: (a.mean(axis=0) * a.max(axis=1, keepdims=True)).sum() + a.var(), [(3, 4)]),
    "softmax": (lambda a: (dg.softmax(a, axis=-1) * dg.log_softmax(a, axis=-1)).sum(), [(2, 5)]),
    "shape ops": (lambda a: (a.T.reshape(2, 6)[:, 1:4] * 2).sum() + a.flip(0).sum(), [(3, 4)]),
    "gelu": (lambda a: dg.gelu(a, approximate="tanh").sum() + dg.exp(-a * a).sum(), [(5,)]),
}


@pytest.mark.parametrize("name", sorted(FUNCS))
def test_compiled_backward_equals_eager(name):
    fn, shapes = FUNCS[name]
    rng = np.random.default_rng(1)
    arrays = [rng.standard_normal(s).astype(np.float32) for s in shapes[1:]] if name == "mlp" else \
        [rng.standard_normal(s).astype(np.float32) for s in shapes]
    args_e = [dg.tensor(a, requires_grad=True) for a in arrays]
    args_c = [dg.tensor(a, requires_grad=True) for a in arrays]
    if name == "mlp":
        x = dg.tensor(rng.standard_normal(shapes[0]).astype(np.float32))
        args_e, args_c = [x] + args_e, [x] + args_c
    out_e = fn(*args_e)
    out_e.backward()
    f = dg.function(fn)
    out_c = f(*args_c)
    assert out_c.grad_fn is not None and out_c.grad_fn.name() == "CompiledFunctionBackward"
    out_c.backward()
    assert close(out_c.numpy(), out_e.numpy())
    for a, b in zip(args_e, args_c):
        if a.requires_grad:
            assert close(b.grad.numpy(), a.grad.numpy(), 1e-4)


def test_compiled_call_is_one_tape_node_and_reads_captured_params():
    net = dg.nn.Sequential(dg.nn.Linear(3, 4), dg.nn.Tanh(), dg.nn.Linear(4, 1))
    f = dg.function(net)
    x = dg.randn(5, 3)
    out = f(x).sum()
    assert [type(n[0]).__name__ for n in out.grad_fn.next_functions][:1] == ["Node"] or out.grad_fn
    out.backward()
    grads_c = [p.grad.numpy().copy() for p in net.parameters()]
    for p in net.parameters():
        p.grad = None
    net(x).sum().backward()
    for g, p in zip(grads_c, net.parameters()):
        assert close(g, p.grad.numpy(), 1e-4)


def test_backward_graph_is_inspectable():
    w = dg.randn(3, requires_grad=True)
    f = dg.function(lambda x: (x * w).sum())
    f(dg.ones(3)).backward()
    e = f._entries[-1]
    assert "backward" in str(e.bwd_graph) and "forward" in str(e.fwd_graph)


def test_every_graph_a_call_compiles_names_its_device_for_kernel_choice():
    # lower_kernels picks CPU-only kernels unless the graph says it runs elsewhere
    w = dg.randn(3, requires_grad=True)
    f = dg.function(lambda x: (x * w).sum())
    f(dg.ones(3)).backward()
    e = f._entries[-1]
    assert [g.meta.get("device") for g in (e.graph, e.opt, e.fwd_graph, e.bwd_graph)] == [str(w.device)] * 4


def test_the_tape_node_of_a_compiled_call_holds_an_op_record_like_any_op():
    f = dg.function(lambda a, b: (dg.tanh(a) * b, (a * b).sum()))
    a = dg.tensor(np.array([0.5, -1.0, 2.0], np.float32), requires_grad=True)
    b = dg.tensor(np.array([1.0, 2.0, 3.0], np.float32), requires_grad=True)
    y, s = f(a, b)
    op = y.grad_fn.op
    assert isinstance(op, Op) and op.n_out == 2 and s.grad_fn.op is op and op.grad_name == "CompiledFunctionBackward"
    ref = (np.tanh(a.numpy()) * b.numpy(), float((a.numpy() * b.numpy()).sum()))
    outs = op.forward(np, a.numpy(), b.numpy())   # the op's forward is the compiled call, as apply() would run it
    assert close(outs[0], ref[0]) and close(outs[1], ref[1])
    assert [tuple(av.shape) for av in op.infer(Aval(a.shape, a.dtype), Aval(b.shape, b.dtype))] == [(3,), ()]
    assert f(a, b)[0].grad_fn.op is op      # one record per trace and set of inputs requiring grad
    assert isinstance(op.onnx, not_exportable) and "export traces the function" in op.onnx.reason
    # a call's residuals go with its node: freed when backward frees the graph, as eager saved tensors
    residuals = y.grad_fn.attrs["residuals"]
    assert residuals
    (y.sum() + s).backward()
    assert "residuals" not in y.grad_fn.attrs
    assert close(a.grad.numpy(), (1 - ref[0] ** 2 / b.numpy() ** 2) * b.numpy() + b.numpy())
    assert close(b.grad.numpy(), np.tanh(a.numpy()) + a.numpy())


def test_no_grad_call_builds_no_node():
    w = dg.randn(3, requires_grad=True)
    f = dg.function(lambda x: (x * w).sum())
    with dg.no_grad():
        assert f(dg.ones(3)).grad_fn is None


def test_in_place_change_after_compiled_forward_is_caught():
    a = dg.randn(3, requires_grad=True)
    f = dg.function(lambda x: (x * x).sum())
    out = f(a)
    with dg.no_grad():
        a.add_(1.0)
    with pytest.raises(dg.AutogradError, match="in-place"):
        out.backward()


def test_autograd_grad_inside_a_trace():
    @dg.function
    def f(x):
        y = (x * x * x).sum()
        (g,) = dg.autograd.grad(y, [x])
        return g
    x = dg.tensor([1.0, 2.0], requires_grad=True)
    assert close(f(x).numpy(), [3.0, 12.0])


# ---- whole training steps ------------------------------------------------------------------------------------

def make_net(seed=0):
    dg.manual_seed(seed)
    return dg.nn.Sequential(dg.nn.Linear(6, 8), dg.nn.ReLU(), dg.nn.Linear(8, 3))


def data():
    rng = np.random.default_rng(3)
    return dg.tensor(rng.standard_normal((5, 6)).astype(np.float32)), dg.tensor([0, 1, 2, 1, 0])


@pytest.mark.parametrize("opt_name, kw", [("SGD", dict(lr=0.1)), ("SGD", dict(lr=0.1, momentum=0.9)),
                                          ("Adam", dict(lr=0.01))])
def test_training_step_compiles_to_one_graph_and_matches_eager(opt_name, kw):
    x, y = data()
    nets, opts = [], []
    for _ in range(2):
        net = make_net()
        nets.append(net)
        opts.append(getattr(dg.optim, opt_name)(net.parameters(), **kw))

    def make_step(net, opt):
        def step(x, y):
            opt.zero_grad()
            loss = dg.cross_entropy(net(x), y)
            loss.backward()
            opt.step()
            return loss
        return step
    eager = make_step(nets[0], opts[0])
    compiled = dg.function(make_step(nets[1], opts[1]))
    for i in range(4):
        le = eager(x, y)
        lc = compiled(x, y)
        assert close(lc.numpy(), le.numpy(), 1e-4), i
    for pe, pc in zip(nets[0].parameters(), nets[1].parameters()):
        assert close(pc.detach().numpy(), pe.detach().numpy(), 1e-4)
        assert close(pc.grad.numpy(), pe.grad.numpy(), 1e-4)
    assert compiled.trace_count == 1  # zero_grad writes .grad = None without reading it first
    g = compiled.graph(x, y)
    assert "matmul" in str(g) and len(g.outputs) > 1


def test_hand_written_sgd_step():
    w = dg.randn(4, 2, requires_grad=True)
    b = dg.zeros(2, requires_grad=True)
    w0, b0 = w.detach().numpy().copy(), b.detach().numpy().copy()

    @dg.function
    def step(x, t):
        w.grad = None
        b.grad = None
        loss = ((x @ w + b - t) ** 2).mean()
        loss.backward()
        with dg.no_grad():
            w.sub_(0.1 * w.grad)
            b.sub_(0.1 * b.grad)
        return loss
    x, t = dg.randn(6, 4), dg.randn(6, 2)
    for _ in range(3):
        step(x, t)
    we, be = dg.tensor(w0, requires_grad=True), dg.tensor(b0, requires_grad=True)
    for _ in range(3):
        we.grad = be.grad = None
        ((x @ we + be - t) ** 2).mean().backward()
        with dg.no_grad():
            we -= 0.1 * we.grad
            be -= 0.1 * be.grad
    assert close(w.detach().numpy(), we.detach().numpy(), 1e-4) and step.trace_count == 1


def test_leaf_in_place_under_grad_is_still_an_error_in_a_trace():
    w = dg.ones(2, requires_grad=True)

    @dg.function
    def f(x):
        w.add_(x)
        return w
    with pytest.raises(dg.AutogradError, match="no_grad"):
        f(dg.ones(2))


def test_double_backward_through_a_compiled_call():
    x = dg.tensor([0.5, -1.0, 2.0], requires_grad=True)
    f = dg.function(lambda x: (dg.sin(x) * x * x).sum())
    (g,) = dg.autograd.grad(f(x), [x], create_graph=True)
    (gg,) = dg.autograd.grad(g.sum(), [x])
    xe = dg.tensor([0.5, -1.0, 2.0], requires_grad=True)
    (ge,) = dg.autograd.grad((dg.sin(xe) * xe * xe).sum(), [xe], create_graph=True)
    (gge,) = dg.autograd.grad(ge.sum(), [xe])
    assert close(g.detach().numpy(), ge.detach().numpy()) and close(gg.numpy(), gge.numpy(), 1e-4)


def test_state_written_back_to_the_tensor_read_this_call():
    net = dg.nn.Linear(3, 1)

    @dg.function
    def step(x):
        net.zero_grad() if hasattr(net, "zero_grad") else None
        loss = net(x).sum()
        loss.backward()
        with dg.no_grad():
            for p in net.parameters():
                p.sub_(0.5 * p.grad)
        return loss
    x = dg.ones(2, 3)
    step(x)
    new_w = dg.nn.Parameter(dg.zeros(1, 3))
    old_w = net.weight
    net.weight = new_w            # rebound: the next step reads and updates the new tensor
    before_old = old_w.detach().numpy().copy()
    step(x)
    assert close(new_w.detach().numpy(), np.full((1, 3), -1.0))   # 0 - 0.5 * (2 rows of ones)
    assert close(old_w.detach().numpy(), before_old)
