"""The executor's memory plan: node results written (out=) into buffers the call allocated and no longer
needs. Every planned executable is checked against the reference interpreter to the bit, and against
the same graph compiled without the plan."""
import sys

import numpy as np
import pytest

import dualgraph as dg
import dualgraph.nn.functional as F
from dualgraph.function.executor import Executable, interpret
from dualgraph.ops.registry import REGISTRY


def _entry(fn):
    return fn._entries[-1]


def _same(a, b):
    a, b = np.asarray(a), np.asarray(b)
    assert a.shape == b.shape and a.dtype == b.dtype
    assert a.tobytes() == b.tobytes()


def _check(graph, arrays):
    """Run the planned executable, the unplanned one and the interpreter on copies of `arrays`."""
    planned, plain = Executable(graph), Executable(graph, plan=False)
    got = planned(*[a.copy() for a in arrays])
    for want in (plain(*[a.copy() for a in arrays]), interpret(graph, [a.copy() for a in arrays])):
        assert len(got) == len(want)
        for g, w in zip(got, want):
            _same(g, w)
    return planned, got


def _traced(f, *arrays):
    fn = dg.function(f)
    fn(*[dg.tensor(a) for a in arrays])
    return _entry(fn).opt


RNG = np.random.default_rng(0)
X = RNG.standard_normal((16, 32)).astype(np.float32)
W = RNG.standard_normal((32, 32)).astype(np.float32)


def test_dying_operand_is_written_into_and_shows_in_the_source():
    g = _traced(lambda x, w: dg.tanh(x @ w) * 2.0 + 1.0, X, W)
    ex, _ = _check(g, [X, W])
    assert ex.saved_allocations >= 1
    assert "out=" in ex.source
    # the unplanned executable allocates every result
    assert Executable(g, plan=False).saved_allocations == 0 and "out=v" not in Executable(g, plan=False).source


@pytest.mark.parametrize("view", ["reshape", "transpose", "slice", "expand"])
def test_a_view_keeps_its_base_alive(view):
    def f(x, w):
        y = dg.exp(x @ w)                # a buffer of the call
        if view == "reshape":
            v = y.reshape(32, 16)
        elif view == "transpose":
            v = y.T
        elif view == "slice":
            v = y[2:10]
        else:
            v = y[:1].expand(16, 32)
        z = (y + 1.0) * 3.0              # y dies here while its view is still to be read
        return v * 2.0, z + v.sum()
    g = _traced(f, X, W)
    _check(g, [X, W])


@pytest.mark.parametrize("view", ["reshape", "transpose", "slice"])
def test_a_returned_view_of_an_intermediate_is_never_overwritten(view):
    def f(x, w):
        y = dg.exp(x @ w)
        v = {"reshape": lambda: y.reshape(32, 16), "transpose": lambda: y.T, "slice": lambda: y[3:]}[view]()
        z = dg.tanh(y * 2.0)             # y's last read; its buffer must stay (v is returned)
        return v, dg.sin(z + 1.0) * 4.0
    g = _traced(f, X, W)
    ex, got = _check(g, [X, W])
    expect = np.exp(X @ W)
    expect = {"reshape": expect.reshape(32, 16), "transpose": expect.T, "slice": expect[3:]}[view]
    np.testing.assert_allclose(got[0], expect, rtol=1e-5)


def test_intermediate_outputs_and_repeated_calls():
    def f(x, w):
        h = x @ w
        a = dg.relu(h) + 1.0             # returned
        b = dg.exp(a * 0.01) @ w         # dies in the chain below, which is written into it
        c = (b - 1.0) * (b + 1.0)
        return a, c * 3.0
    g = _traced(f, X, W)
    ex, _ = _check(g, [X, W])
    assert ex.saved_allocations >= 1
    first = ex(X, W)
    kept = [o.copy() for o in first]
    second = ex(X * 2, W)
    for o, k in zip(first, kept):       # the first call's results do not change with the next call
        _same(o, k)
    for o, s in zip(first, second):
        assert not np.shares_memory(o, s)


def test_inputs_are_never_written():
    g = _traced(lambda x, w: dg.tanh(x * 2.0 + 1.0) * 3.0 - x, X, W)
    x, w = X.copy(), W.copy()
    Executable(g)(x, w)
    _same(x, X)
    _same(w, W)


def test_inputs_not_c_ordered_run_unplanned_lines():
    g = _traced(lambda x, w: dg.tanh((x @ w.T) * 2.0 + x) * 3.0 - x, X, W)
    xt, wt = np.asfortranarray(X), np.asfortranarray(W)
    planned = Executable(g)(xt, wt)
    for want in (Executable(g, plan=False)(xt, wt), interpret(g, [xt, wt])):
        _same(planned[0], want[0])
        assert planned[0].strides == want[0].strides


def test_free_list_buffer_for_a_later_node():
    def f(x, w):
        a = dg.exp(x @ w)                # dies at the first add below, but a view keeps it: no
        b = dg.tanh(a) * 2.0
        c = dg.sin(b) + dg.cos(b)
        d = (c * c) @ w
        return dg.relu(d) * 0.5 + 1.0
    g = _traced(f, X, W)
    ex, _ = _check(g, [X, W])
    assert ex.saved_allocations >= 2


def test_donated_state_and_reuse_together():
    state = dg.tensor(np.zeros((16, 32), np.float32))

    w0 = W * np.float32(0.05)

    @dg.function
    def step(x, w):
        h = dg.tanh(x @ w) * 2.0 + 1.0
        k = dg.exp((h @ w) * 0.5) - 1.0
        state.add_(k * 0.5)
        return (h * k).sum()
    x, w = dg.tensor(X), dg.tensor(w0)
    outs = [float(step(x, w)) for _ in range(3)]
    e = _entry(step)
    assert e.exec.saved_allocations >= 1
    h = np.tanh(X @ w0) * np.float32(2) + np.float32(1)
    k = np.exp((h @ w0) * np.float32(0.5)) - np.float32(1)
    np.testing.assert_allclose(state.numpy(), 3 * (k * np.float32(0.5)), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(outs, [float((h * k).sum())] * 3, rtol=1e-5)
    arrays = [X, w0, np.zeros((16, 32), np.float32)]
    _check(e.opt, arrays)


def test_control_flow_subgraphs():
    def f(x, w):
        h = dg.exp(x @ w * 0.01)

        def then(a):
            return dg.tanh((a @ w) * 2.0 + 1.0) * 3.0   # the product dies in the chain written into it

        def other(a):
            return dg.sin(a - 1.0) * 0.5
        y = dg.cond(h.sum() > 0, then, other, h)
        y = y[0] if isinstance(y, (tuple, list)) else y

        def cond(s):
            return s[0] < 3

        def body(s):
            i, a = s
            return i + 1, dg.tanh((a @ w) * 0.01 + 0.25) * 0.9
        _, z = dg.while_loop(cond, body, (dg.tensor(0), y))
        return z + y
    g = _traced(f, X, W)
    _check(g, [X, W])
    subs = {(n.op.name, k): s for n in g.nodes for k, s in (n.subgraphs or {}).items()}
    # each subgraph compiles with its own plan
    assert Executable(subs["cond", "then"]).saved_allocations >= 1
    assert Executable(subs["while_loop", "body"]).saved_allocations >= 1
    for s in subs.values():
        ins = [RNG.standard_normal(v.aval.shape).astype(v.aval.dtype) if v.aval.dtype.kind == "f"
               else np.zeros(v.aval.shape, v.aval.dtype) for v in s.inputs]
        _check(s, ins)


def _mlp_step(compiled):
    rng = np.random.default_rng(1)
    ps = [dg.tensor(rng.standard_normal(s).astype(np.float32) * 0.1, requires_grad=True)
          for s in ((64, 32), (64,), (10, 64), (10,))]
    opt = dg.optim.AdamW(ps, lr=1e-2)
    x = dg.tensor(rng.standard_normal((128, 32)).astype(np.float32))
    y = dg.tensor(rng.integers(0, 10, 128).astype(np.int64))

    def step(xb, yb):
        h = dg.tanh(F.linear(xb, ps[0], ps[1])) * 1.5
        h = F.gelu(h + 0.5) * (h - 0.25)
        loss = F.cross_entropy(F.linear(h, ps[2], ps[3]), yb)
        opt.zero_grad()
        loss.backward()
        opt.step()
        return loss
    fn = dg.function(step) if compiled else step
    losses = [float(fn(x, y)) for _ in range(3)]
    return fn, ps, losses


def test_mlp_training_step_saves_allocations_and_matches_eager():
    fn, ps, losses = _mlp_step(True)
    _, ps_e, losses_e = _mlp_step(False)
    e = _entry(fn)
    assert e.exec.saved_allocations > 0
    np.testing.assert_allclose(losses, losses_e, rtol=1e-5)
    for p, q in zip(ps, ps_e):
        np.testing.assert_allclose(p.numpy(), q.numpy(), rtol=1e-4, atol=1e-6)
    # the optimizer step writes parameters and moments into their own (donated) buffers
    assert e.exec.source.count("out=(") == len(ps)


@pytest.mark.parametrize("decoupled", [True, False])
def test_adam_update_into_its_own_operands_matches_the_allocating_step(decoupled):
    from dualgraph.ops.optimizer import ADAM_UPDATE
    rng = np.random.default_rng(4)
    p, g, m, v = (rng.standard_normal(1000).astype(np.float32) for _ in range(4))
    v = np.abs(v)
    scalars = (np.float32(3), np.float32(1e-3), np.float32(0.9), np.float32(0.999))
    attrs = dict(eps=1e-8, weight_decay=0.01, decoupled=decoupled)
    want = ADAM_UPDATE.forward(np, p, g, m, v, *scalars, **attrs)
    out = (p.copy(), m.copy(), v.copy())
    got = ADAM_UPDATE.forward(np, out[0], g, out[1], out[2], *scalars, out=out, **attrs)
    for a, b, o in zip(got, want, out):
        _same(a, b)
    if got[0] is out[0]:   # the C loop ran (a compiler is there): it wrote into the buffers it was given
        assert all(a is o for a, o in zip(got, out))


def test_cnn_training_step_saves_allocations_and_matches_eager():
    rng = np.random.default_rng(2)
    w1 = dg.tensor(rng.standard_normal((4, 1, 3, 3)).astype(np.float32) * 0.3, requires_grad=True)
    w2 = dg.tensor(rng.standard_normal((10, 4 * 13 * 13)).astype(np.float32) * 0.1, requires_grad=True)
    rng0 = [w1.numpy().copy(), w2.numpy().copy()]
    opt = dg.optim.SGD([w1, w2], lr=0.1)
    x = dg.tensor(rng.standard_normal((8, 1, 28, 28)).astype(np.float32))
    y = dg.tensor(rng.integers(0, 10, 8).astype(np.int64))

    @dg.function
    def step(xb, yb):
        h = F.max_pool2d(F.relu(F.conv2d(xb, w1)), 2).reshape(8, -1)
        loss = F.cross_entropy(F.linear(h, w2), yb)
        opt.zero_grad()
        loss.backward()
        opt.step()
        return loss
    losses = [float(step(x, y)) for _ in range(3)]
    assert _entry(step).exec.saved_allocations > 0
    # the same steps eagerly from the same start
    v1 = dg.tensor(rng0[0], requires_grad=True)
    v2 = dg.tensor(rng0[1], requires_grad=True)
    opt2 = dg.optim.SGD([v1, v2], lr=0.1)
    eager = []
    for _ in range(3):
        h = F.max_pool2d(F.relu(F.conv2d(x, v1)), 2).reshape(8, -1)
        loss = F.cross_entropy(F.linear(h, v2), y)
        opt2.zero_grad()
        loss.backward()
        opt2.step()
        eager.append(float(loss))
    np.testing.assert_allclose(losses, eager, rtol=1e-5)
    np.testing.assert_allclose(w1.numpy(), v1.numpy(), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(w2.numpy(), v2.numpy(), rtol=1e-4, atol=1e-6)


def test_compiled_forward_and_backward_keep_residuals():
    """A compiled function differentiated by its caller: the residuals the backward reads are outputs of
    the forward graph, so the plan never recycles them."""
    w = dg.tensor(W, requires_grad=True)

    @dg.function
    def f(x):
        h = dg.tanh(x @ w) * 2.0
        return (dg.exp(h * 0.1) * h).sum()
    x = dg.tensor(X)
    for _ in range(2):
        w.grad = None
        f(x).backward()
        got = w.grad.numpy().copy()
    wt = dg.tensor(W, requires_grad=True)
    h = dg.tanh(x @ wt) * 2.0
    (dg.exp(h * 0.1) * h).sum().backward()
    np.testing.assert_allclose(got, wt.grad.numpy(), rtol=1e-5, atol=1e-6)
    op = next(iter(_entry(f).grad_ops.values()))
    for ex in (op.fwd, op.bwd):
        ins = [RNG.standard_normal([d for d in v.aval.shape]).astype(v.aval.dtype) for v in ex.graph.inputs]
        _check(ex.graph, ins)


# ---- the records' `fresh` claims ---------------------------------------------------------------------

def _op_db():
    sys.path.insert(0, __file__.rsplit("/", 1)[0])
    import op_db
    return op_db


def test_fresh_records_return_new_unshared_arrays():
    """Every record marked `fresh`, on every sample of the op table (and its gradients): results are
    writeable arrays sharing memory with no operand and no other result, C-ordered when the operands
    are, and new at each call."""
    op_db = _op_db()
    fresh = {op.name for op in REGISTRY.values() if op.fresh}
    calls = op_db.record_primitives(lambda: [op_db.exercise(r) for r in op_db.OP_DB])
    seen = set()
    for op, arrays, attrs, out in calls:
        if op.name not in fresh:
            continue
        seen.add(op.name)
        ins = [a for a in arrays if isinstance(a, np.ndarray)]
        again = op.forward(np, *arrays, **attrs)
        outs, outs2 = (out, again) if op.n_out != 1 else ((out,), (again,))
        for j, o in enumerate(outs):
            if not isinstance(o, np.ndarray) or not o.ndim:
                continue
            assert o.flags.writeable, op.name
            assert not any(np.shares_memory(o, a) for a in ins), f"{op.name} returned (a view of) an operand"
            assert not any(isinstance(p, np.ndarray) and np.shares_memory(o, p) for p in outs[:j]), op.name
            assert not any(isinstance(p, np.ndarray) and np.shares_memory(o, p) for p in outs2), \
                f"{op.name} returned the same memory twice"
            if all(a.flags.c_contiguous for a in ins):
                assert o.flags.c_contiguous, f"{op.name}: C-ordered operands, result not C-ordered"
    kernel_ops = {n for n in fresh if n in op_db.KERNEL_OPS}
    assert fresh - kernel_ops <= seen


def test_fresh_kernel_records():
    from dualgraph.ops import kernels as K
    rng = np.random.default_rng(3)
    a = rng.standard_normal((6, 5)).astype(np.float32)
    b = rng.standard_normal((5, 4)).astype(np.float32)
    m = a > 0
    t = rng.integers(0, 5, 6)
    cases = [(K.WHERE_ZERO, (m, a), {}), (K.WHERE_COLSUM, (m, a), {}), (K.MATMUL_T, (a, b), {}),
             (K.MATMUL_ROWS, (a.reshape(2, 3, 5), b), {}),
             (K.LOG_SOFTMAX_NLL, (a, t), dict(ignore_index=-100, reduction="mean")),
             (K.NLL_LOG_SOFTMAX_GRAD, (np.float32(1), a, t), dict(ignore_index=-100, reduction="mean"))]
    for op, args, attrs in cases:
        assert op.fresh
        for fwd in [op.forward] + ([op.kernel] if False else []):
            o1, o2 = fwd(np, *args, **attrs), fwd(np, *args, **attrs)
            o1 = o1 if isinstance(o1, tuple) else (o1,)
            o2 = o2 if isinstance(o2, tuple) else (o2,)
            for x, y in zip(o1, o2):
                if isinstance(x, np.ndarray) and x.ndim:
                    assert x.flags.c_contiguous and x.flags.writeable
                    assert not np.shares_memory(x, y)
                    assert not any(np.shares_memory(x, v) for v in args if isinstance(v, np.ndarray))
