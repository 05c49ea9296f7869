"""dg.cond / dg.while_loop / dg.fori_loop: eager == traced, one trace for both branches, gradients."""
import numpy as np
import pytest

import dualgraph as dg


def close(a, b, tol=1e-5):
    return np.allclose(np.asarray(a), np.asarray(b), atol=tol, rtol=tol)


def branchy(x, w):
    return dg.cond(x.sum() > 0, lambda a, b: dg.tanh(a * b), lambda a, b: a - b * 2.0, x, w)


def test_cond_eager_equals_traced_and_one_trace_serves_both_branches():
    f = dg.function(branchy)
    w = dg.randn(4)
    for x in (dg.ones(4), -dg.ones(4), dg.randn(4)):
        assert close(f(x, w).numpy(), branchy(x, w).numpy())
    assert f.trace_count == 1
    text = str(f.graph(dg.ones(4), w))
    assert "cond(" in text and "then:" in text and "else:" in text


def test_cond_with_python_pred_runs_python():
    assert close(dg.cond(True, lambda x: x + 1, lambda x: x - 1, dg.zeros(1)).numpy(), [1])


def test_cond_branches_read_outer_values():
    @dg.function
    def f(x, y):
        s = y * 3.0
        return dg.cond(x.sum() > 0, lambda a: a + s, lambda a: a - s, x)
    x, y = dg.ones(2), dg.ones(2)
    assert close(f(x, y).numpy(), [4, 4]) and close(f(-x, y).numpy(), [-4, -4])


def test_cond_branches_must_agree():
    f = dg.function(lambda x: dg.cond(x.sum() > 0, lambda a: a, lambda a: a.sum(), x))
    with pytest.raises(dg.ShapeError, match="different shapes"):
        f(dg.ones(3))


@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_cond_gradient_matches_eager(sign):
    w = dg.randn(4)
    x = dg.tensor(np.abs(np.random.default_rng(0).standard_normal(4)).astype(np.float32) * sign,
                  requires_grad=True)
    branchy(x, w).sum().backward()
    expected = x.grad.numpy().copy()
    x.grad = None
    f = dg.function(branchy)
    out = f(x, w).sum()
    out.backward()
    assert close(x.grad.numpy(), expected)


def test_cond_gradient_inside_a_traced_training_step():
    x = dg.tensor([0.5, -1.0], requires_grad=True)

    @dg.function
    def step(x):
        y = dg.cond(x.sum() > 0, lambda a: a * a, lambda a: a * 3.0, x).sum()
        y.backward()
        return y
    step(x)
    assert close(x.grad.numpy(), [3.0, 3.0])
    x.grad = None
    step(dg.tensor([2.0, 1.0], requires_grad=True))
    x2 = dg.tensor([2.0, 1.0], requires_grad=True)
    step(x2)
    assert close(x2.grad.numpy(), [4.0, 2.0])


def loop(x):
    return dg.while_loop(lambda s: s[0].sum() < 100.0, lambda s: (s[0] * 2.0, s[1] + 1), (x, dg.tensor(0)))


def test_while_loop_eager_equals_traced():
    f = dg.function(loop)
    for x in (dg.ones(3), dg.full((3,), 10.0), dg.full((3,), 50.0)):
        a, n = f(x)
        b, m = loop(x)
        assert close(a.numpy(), b.numpy()) and int(n) == int(m)
    assert f.trace_count == 1
    assert "while_loop(" in str(f.graph(dg.ones(3)))


def test_while_loop_state_must_keep_its_shape():
    f = dg.function(lambda x: dg.while_loop(lambda s: s.sum() < 10, lambda s: dg.concat([s, s]), x))
    with pytest.raises(dg.ShapeError, match="loop state"):
        f(dg.ones(2))


def test_while_loop_is_not_differentiable_and_says_so():
    x = dg.ones(2, requires_grad=True)
    f = dg.function(lambda x: dg.while_loop(lambda s: s.sum() < 10, lambda s: s * 2, x).sum())
    with pytest.raises(dg.AutogradError, match="fori_loop"):
        f(x).backward()


def body(i, v):
    return v * 0.5 + dg.sin(v) * i


def test_fori_loop_eager_equals_traced_and_gradients():
    f = dg.function(lambda x: dg.fori_loop(0, 4, body, x).sum())
    x = dg.randn(3, requires_grad=True)
    dg.fori_loop(0, 4, body, x).sum().backward()
    expected = x.grad.numpy().copy()
    x.grad = None
    out = f(x)
    out.backward()
    assert close(out.numpy(), dg.fori_loop(0, 4, body, x.detach()).sum().numpy())
    assert close(x.grad.numpy(), expected)


def test_fori_loop_with_tensor_bounds_becomes_a_while_loop():
    f = dg.function(lambda n, x: dg.fori_loop(0, n, lambda i, v: v + 1.0, x))
    assert close(f(dg.tensor(5), dg.zeros(2)).numpy(), [5, 5])
    assert close(f(dg.tensor(2), dg.zeros(2)).numpy(), [2, 2])
    assert f.trace_count == 1


def test_cond_nested_in_a_while_loop():
    def body(s):
        x, i = s
        return dg.cond(i % 2 == 0, lambda a: a * 2.0, lambda a: a + 1.0, x), i + 1

    def fn(x):
        return dg.while_loop(lambda s: s[1] < 5, body, (x, dg.tensor(0)))[0]
    assert close(dg.function(fn)(dg.ones(2)).numpy(), fn(dg.ones(2)).numpy())


def _ops(graph):
    """Op names in a graph, fused kernels' bodies included, control-flow bodies excluded."""
    out = []
    for n in graph.nodes:
        out.append(n.op.name)
        if n.op.name == "fused_elementwise":
            out += _ops(n.subgraphs["body"])
    return out


def _bodies(graph):
    return [b for n in graph.nodes if n.op.name != "fused_elementwise" for b in n.subgraphs.values()]


def test_passes_optimize_inside_cond_and_loop_bodies():
    def step(i, v):
        u = v * 1.0 + 0.0          # simplify: gone
        return dg.tanh(u) * 0.5 + dg.tanh(u) * 0.25 + v * (2.0 * 3.0)   # cse: one tanh; fuse: one kernel

    def fn(n, x):
        y = dg.fori_loop(0, n, step, x)   # a tensor bound: a while_loop node with a body graph
        return dg.cond(y.sum() > 0, lambda a: a * 1.0 + a, lambda a: a - 1.0, y)
    f = dg.function(fn)
    n, x = dg.tensor(3), dg.randn(4)
    assert close(f(n, x).numpy(), fn(n, x).numpy())
    traced, opt = _bodies(f.traced_graph(n, x)), _bodies(f.graph(n, x))
    loop_t, then_t = _ops(traced[1]), _ops(traced[2])   # [while cond, while body, then, else]
    loop_o, then_o = _ops(opt[1]), _ops(opt[2])
    assert loop_t.count("tanh") == 2 and loop_o.count("tanh") == 1
    assert "fused_elementwise" in loop_o and "fused_elementwise" not in loop_t
    assert then_t == ["mul", "add"] and then_o == ["add"]
