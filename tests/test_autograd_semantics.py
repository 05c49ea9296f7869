"""Autograd semantics users rely on, in the three styles: eager PyTorch-style, eager MXNet-style
(`autograd.record()`, `attach_grad`) and compiled (`@dg.function`).

  * a tensor saved for backward may change in place unless the vjp reads it (the op records derive
    what their vjp reads); a node sends gradients along the edges it saw when it was made;
  * an input no output depends on keeps `.grad = None` (and `autograd.grad` wants allow_unused);
  * grad_req 'write' / 'add' / 'null' of attach_grad, and PyTorch-style accumulation;
  * `t.grad = ...` is checked as in PyTorch, and reading `.grad` of a non-leaf warns.

References: hand-derived values (always) and PyTorch (where installed).
"""
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

import dualgraph as dg
from dualgraph import autograd
from dualgraph.autograd.graph import Node

sys.path.insert(0, str(Path(__file__).parent))


def leaf(values, **kw):
    return dg.tensor(values, requires_grad=True, **kw)


def torch_or_none():
    try:
        import torch
    except ImportError:
        return None
    return torch


# ---- in-place changes of saved tensors ------------------------------------------------------------------

# (name, build y from d, d.grad coefficient dy/dd at d = x * 1 with x = [1, 2, 3])
NOT_READ = [
    ("add", lambda d: d + d, [2.0, 2.0, 2.0]),
    ("mul by a constant", lambda d: d * 3, [3.0, 3.0, 3.0]),
    ("sub and neg", lambda d: -(d - 2), [-1.0, -1.0, -1.0]),
    ("div by a constant", lambda d: d / 2, [0.5, 0.5, 0.5]),
    ("exp reads its output", lambda d: d.exp(), "exp"),
    ("sum", lambda d: d.sum(), [1.0, 1.0, 1.0]),
    ("reshape", lambda d: d.reshape(3, 1) * 2, [2.0, 2.0, 2.0]),
]


@pytest.mark.parametrize("name,fn,expected", NOT_READ, ids=[r[0] for r in NOT_READ])
@pytest.mark.parametrize("update", ["add_", "mul_"])
def test_inplace_change_of_a_value_the_vjp_does_not_read_is_fine(name, fn, expected, update):
    def run(x):
        d = x * 1
        y = fn(d)
        if update == "add_":
            d += 1
        else:
            d.mul_(5)             # d's grad_fn becomes MulBackward0(d_old, 5); y's edge still goes to d_old
        y.sum().backward()
        return y

    want = np.exp([1.0, 2.0, 3.0]) if expected == "exp" else expected
    for mode in ("eager", "compiled"):
        x = leaf([1.0, 2.0, 3.0])
        (dg.function(run) if mode == "compiled" else run)(x)
        np.testing.assert_allclose(x.grad.numpy(), want, rtol=1e-6, err_msg=mode)
    torch = torch_or_none()
    if torch is not None:
        tx = torch.tensor([1.0, 2.0, 3.0], requires_grad=True)
        run(tx)
        np.testing.assert_allclose(tx.grad.numpy(), want, rtol=1e-6)


READ = [
    ("mul of d by itself", lambda d: d * d),
    ("sin reads its input", lambda d: d.sin()),
    ("pow", lambda d: d ** 2),
    ("a slice shares d's version counter", lambda d: d[0:2] * d[0:2]),
]


@pytest.mark.parametrize("name,fn", READ, ids=[r[0] for r in READ])
def test_inplace_change_of_a_value_the_vjp_reads_raises_eager_and_compiled(name, fn):
    """Traced, every value is immutable and the gradient would silently be taken at the old value of
    d; eager (and PyTorch) refuse, and so does the trace."""
    def run(x):
        d = x * 1
        y = fn(d)
        d += 1
        y.sum().backward()
        return y

    for f in (run, dg.function(run)):
        with pytest.raises(dg.AutogradError, match="modified by an in-place operation"):
            f(leaf([1.0, 2.0, 3.0]))
    torch = torch_or_none()
    if torch is not None:
        with pytest.raises(RuntimeError, match="modified by an inplace operation"):
            run(torch.tensor([1.0, 2.0, 3.0], requires_grad=True))


def test_an_inplace_op_may_read_the_value_it_replaces():
    """mul_ itself needs the old value (eager keeps a copy for it); an op recorded before mul_ may not."""
    def own(x, w):
        v = x * 1.0
        v.mul_(w)                                   # d(v * w)/dw reads the old v
        v.sum().backward()

    def earlier(x, w):
        v = x * 1.0
        z = v * v
        v.copy_(z)                                  # z's MulBackward0 read the old v, replaced by copy_
        v.sum().backward()

    for f in (own, dg.function(own)):
        x, w = leaf([1.0, 2.0]), leaf([3.0, 4.0])
        f(x, w)
        assert x.grad.tolist() == [3.0, 4.0] and w.grad.tolist() == [1.0, 2.0]
    for f in (earlier, dg.function(earlier)):
        with pytest.raises(dg.AutogradError, match="MulBackward0"):
            f(leaf([1.0, 2.0]), leaf([3.0, 4.0]))
    torch = torch_or_none()
    if torch is not None:
        tx, tw = torch.tensor([1.0, 2.0], requires_grad=True), torch.tensor([3.0, 4.0], requires_grad=True)
        own(tx, tw)
        assert tx.grad.tolist() == [3.0, 4.0] and tw.grad.tolist() == [1.0, 2.0]
        with pytest.raises(RuntimeError, match="modified by an inplace operation"):
            earlier(torch.tensor([1.0, 2.0], requires_grad=True), tw)


def test_mul_reads_an_operand_only_for_the_other_operands_gradient():
    x = leaf([1.0, 2.0])
    w = dg.tensor([3.0, 4.0])            # needs no gradient: mul never reads x, only w
    a = x * 1
    y = a * w
    a += 10
    y.sum().backward()
    assert x.grad.tolist() == [3.0, 4.0]
    x.grad = None
    a = x * 1
    y = a * w
    w += 1                              # read for a's gradient
    with pytest.raises(dg.AutogradError, match="MulBackward0"):
        y.sum().backward()


def test_output_read_by_the_vjp_is_checked():
    x = leaf([0.5, 1.0])
    y = x.exp()
    z = y * 2
    y += 1                              # exp's vjp reads its output
    with pytest.raises(dg.AutogradError, match="exp"):
        z.sum().backward()
    x2 = leaf([0.5, 1.0])
    y2 = x2.sin()
    z2 = y2 * 2
    y2 += 1                             # sin's vjp reads its input, not its output
    z2.sum().backward()
    np.testing.assert_allclose(x2.grad.numpy(), 2 * np.cos([0.5, 1.0]), rtol=1e-6)


# ---- what the op records say their vjps read -----------------------------------------------------------

def _reads(op, operands, needs):
    return op.vjp_reads(operands, {}, needs)


def test_vjp_reads_of_some_ops():
    from dualgraph.ops import REGISTRY
    a, b = dg.ones(3), dg.ones(3)
    assert _reads(REGISTRY["add"], (a, b), (True, True)) == (set(), set())
    assert _reads(REGISTRY["mul"], (a, b), (True, True)) == ({0, 1}, set())
    assert _reads(REGISTRY["mul"], (a, b), (True, False)) == ({1}, set())
    assert _reads(REGISTRY["mul"], (a, 3.0), (True, False)) == (set(), set())
    assert _reads(REGISTRY["exp"], (a,), (True,)) == (set(), {0})
    assert _reads(REGISTRY["sin"], (a,), (True,)) == ({0}, set())
    # relu's vjp uses its input only through a comparison (no gradient flows there): still a read
    assert _reads(REGISTRY["relu"], (a,), (True,)) == ({0}, set())
    node = leaf(np.ones((2, 3))).sum(dim=1).grad_fn           # reads only x's shape
    assert node.op.vjp_reads(node.inputs, node.attrs, (True,)) == (set(), set())


def _nodes(out):
    outs = out if isinstance(out, (tuple, list)) else (out,)
    seen, stack, found = set(), [o.grad_fn for o in outs if isinstance(o, dg.Tensor)], []
    while stack:
        n = stack.pop()
        if not isinstance(n, Node) or id(n) in seen:
            continue
        seen.add(id(n))
        found.append(n)
        stack.extend(n._fns)
    return found


def _vjp_values(node, rng):
    from dualgraph.autograd.engine import _call_vjp
    grads = [dg.tensor(rng.standard_normal(o.shape), dtype=o.dtype) if o.dtype.kind == "f" else None
             for o in _outputs(node)]
    with dg.no_grad():
        res = _call_vjp(node, grads)
    return [r.numpy().copy() if isinstance(r, dg.Tensor) and need else None
            for r, need in zip(res, node.needs_input_grad)]


def _outputs(node):
    if node._out is not None:
        return [dg.tensor(a) for a in node._out]
    from dualgraph.dispatch import using
    from dualgraph.function.tracer import Tracer
    from dualgraph.graph.ir import Graph
    from dualgraph.graph.avals import Aval
    tr = Tracer(Graph())
    with using(tr), dg.no_grad():
        ins = tuple(tr.sym(tr.graph.add_input(Aval(t.shape, t.dtype)), t.device) if isinstance(t, dg.Tensor) else t
                    for t in node.inputs)
        out = tr.apply(node.op, ins, node.attrs)
    outs = out if isinstance(out, tuple) else (out,)
    return [dg.zeros(*o.shape, dtype=o.dtype) for o in outs]


def _scramble(arr, rng):
    """Other values of the same kind (an index tensor stays in range: its values are permuted)."""
    if arr.dtype.kind == "f":
        return rng.standard_normal(arr.shape).astype(arr.dtype) * 3 + 0.5
    return rng.permutation(arr.reshape(-1)).reshape(arr.shape)


def test_vjp_reads_is_sound_for_every_op_of_the_op_table():
    """For every node the op table's differentiable samples record: changing the values its vjp is said
    not to read leaves the gradients it computes unchanged (so skipping their version check is safe)."""
    from op_db import OP_DB, to_dg
    rng = np.random.default_rng(0)
    checked, not_derived = 0, set()
    for row in OP_DB:
        if not row.differentiable:
            continue
        for s in row.sample_inputs("float64")[:3]:
            args, kwargs = to_dg(s, requires_grad=True, share=False)
            out = row.op(*args, **kwargs)
            for node in _nodes(out):
                if not hasattr(node.op, "vjp_reads"):
                    continue
                reads = node.op.vjp_reads(node.inputs, node.attrs, node.needs_input_grad)
                if reads is None:
                    not_derived.add(node.op.name)
                    continue
                reads_in, reads_out = reads
                before = _vjp_values(node, np.random.default_rng(1))
                saved = [(t, t._data) for i, t in enumerate(node.inputs)
                         if isinstance(t, dg.Tensor) and i not in reads_in]
                saved_out = node._out
                try:
                    for t, arr in saved:
                        t._data = _scramble(arr, rng)
                    if saved_out is not None:
                        node._out = tuple(a if k in reads_out else _scramble(a, rng) for k, a in enumerate(saved_out))
                    after = _vjp_values(node, np.random.default_rng(1))
                finally:
                    for t, arr in saved:
                        t._data = arr
                    node._out = saved_out
                for i, (b, a) in enumerate(zip(before, after)):
                    if b is not None:
                        np.testing.assert_allclose(
                            a, b, rtol=1e-12, atol=1e-12,
                            err_msg=f"{row.name}: {node.op.name}'s vjp reads a value vjp_reads says it does not "
                                    f"(reads {sorted(reads_in)}, outputs {sorted(reads_out)}; gradient {i} changed)")
                checked += 1
    assert checked > 300
    assert not_derived <= {"getitem"}   # boolean-mask indexing cannot be traced: every value counts as read


# ---- in-place changes: compiled --------------------------------------------------------------------------

def test_compiled_call_then_eager_backward_checks_what_the_compiled_backward_reads():
    square = dg.function(lambda d: d * d)
    triple = dg.function(lambda d: d * 3)
    expo = dg.function(lambda d: d.exp())
    scale = dg.function(lambda x, w: x * w)

    x = leaf([1.0, 2.0])
    d = x * 1
    y = triple(d)
    d += 1                                   # the compiled backward does not read d
    y.sum().backward()
    assert x.grad.tolist() == [3.0, 3.0]

    x = leaf([1.0, 2.0])
    d = x * 1
    y = square(d)
    d += 1                                   # it reads d
    with pytest.raises(dg.AutogradError, match="CompiledFunctionBackward"):
        y.sum().backward()

    x = leaf([1.0, 2.0])
    y = expo(x)
    y += 1                                   # it reads its output
    with pytest.raises(dg.AutogradError, match="output"):
        y.sum().backward()

    x, w = leaf([1.0, 2.0]), dg.tensor([3.0, 4.0])
    y = scale(x, w)
    w += 1                                   # an input that needs no gradient but is read for x's
    with pytest.raises(dg.AutogradError, match="CompiledFunctionBackward"):
        y.sum().backward()
    x, w = leaf([1.0, 2.0]), dg.tensor([3.0, 4.0])
    y = scale(x, w)
    w += 1
    with pytest.raises(dg.AutogradError, match="CompiledFunctionBackward"):
        y.sum().backward(create_graph=True)  # the double-backward path reads every input


@pytest.mark.parametrize("x_requires_grad", [False, True])
def test_compiled_output_that_is_a_view_of_an_input_shares_its_version_counter(x_requires_grad):
    """As an eager view: the executor returns the input's own memory, so changing the input in place
    changes the output, and backward through an op that read the output must notice."""
    for f in (lambda x: x.reshape(3, 1), dg.function(lambda x: x.reshape(3, 1))):
        x = dg.tensor([1.0, 2.0, 3.0], requires_grad=x_requires_grad)
        w = leaf([[1.0], [1.0], [1.0]])
        y = f(x)
        z = (w * y).sum()                        # MulBackward0 reads y for w's gradient
        with dg.no_grad():
            x += 1                               # y's values change too
        assert y.tolist() == [[2.0], [3.0], [4.0]]
        with pytest.raises(dg.AutogradError, match="MulBackward0"):
            z.backward()


def test_compiled_function_that_changes_a_value_in_place_before_returning():
    @dg.function
    def reads_it(x):
        d = x * 1
        y = d * d
        d += 1
        return y

    @dg.function
    def does_not(x):
        d = x * 1
        y = d + d
        d += 1
        return y, d

    x = leaf([1.0, 2.0])
    y = reads_it(x)                          # the call itself is fine; backward is what eager refuses
    with pytest.raises(dg.AutogradError, match="MulBackward0"):
        y.sum().backward()
    x = leaf([1.0, 2.0])
    y, d = does_not(x)
    (y.sum() + d.sum()).backward()
    assert x.grad.tolist() == [3.0, 3.0]


# ---- inputs that do not reach the output ------------------------------------------------------------------

UNUSED = [  # (name, f(a, b), df/da at a = [1, -2], b = [3, -4])
    ("not used", lambda a, b: (a * 2).sum(), [2.0, 2.0]),
    ("through a comparison", lambda a, b: (a * (b > 0)).sum(), [1.0, 0.0]),
    ("through an integer cast", lambda a, b: (a + b.astype("int64")).sum(), [1.0, 1.0]),
    ("through detach", lambda a, b: (a * b.detach()).sum(), [3.0, -4.0]),
]


@pytest.mark.parametrize("name,fn,expected", UNUSED, ids=[r[0] for r in UNUSED])
def test_an_input_that_does_not_reach_the_output_keeps_grad_none(name, fn, expected):
    for mode in ("eager", "compiled"):
        f = dg.function(fn) if mode == "compiled" else fn
        a, b = leaf([1.0, -2.0]), leaf([3.0, -4.0])
        f(a, b).backward()
        assert a.grad.tolist() == expected and b.grad is None, mode
        a, b = leaf([1.0, -2.0]), leaf([3.0, -4.0])
        with pytest.raises(dg.AutogradError, match="allow_unused"):
            autograd.grad(f(a, b), [a, b])
        ga, gb = autograd.grad(f(a, b), [a, b], allow_unused=True)
        assert ga.tolist() == expected and gb is None, mode
    torch = torch_or_none()
    if torch is not None:
        ta, tb = torch.tensor([1.0, -2.0], requires_grad=True), torch.tensor([3.0, -4.0], requires_grad=True)
        tfn = {"not used": lambda a, b: (a * 2).sum(), "through a comparison": lambda a, b: (a * (b > 0)).sum(),
               "through an integer cast": lambda a, b: (a + b.long()).sum(),
               "through detach": lambda a, b: (a * b.detach()).sum()}[name]
        tfn(ta, tb).backward()
        assert tb.grad is None and ta.grad.tolist() == expected


def test_compiled_whole_step_with_an_unused_parameter():
    w, unused = leaf([1.0, 2.0]), leaf([5.0])

    @dg.function
    def step(x):
        loss = (w * x).sum() + 0 * x.sum()
        loss.backward()
        return loss

    step(dg.tensor([3.0, 4.0]))
    assert w.grad.tolist() == [3.0, 4.0] and unused.grad is None
    f = dg.function(lambda x, u: (x * 2).sum())
    x, u = leaf([1.0]), leaf([2.0])
    out = f(x, u)
    out.backward()
    assert x.grad.tolist() == [2.0] and u.grad is None
    assert [fn is None for fn, _ in out.grad_fn.next_functions] == [False, False]  # both inputs are edges


# ---- grad_req: MXNet's write / add / null, PyTorch's accumulation ------------------------------------------

def _train(w, steps, compiled):
    def step():
        with autograd.record():
            loss = (w * w).sum()
        loss.backward()
        return loss
    f = dg.function(step) if compiled else step
    for _ in range(steps):
        f()
    return w.grad


def test_grad_req_in_a_loop_without_zero_grad():
    for compiled in (False, True):
        _check_grad_req(compiled)
        _check_module_parameters(compiled)


def _check_grad_req(compiled):
    w = dg.tensor([1.0, 2.0])
    w.attach_grad()                                      # grad_req='write': each backward overwrites
    assert _train(w, 3, compiled).tolist() == [2.0, 4.0]
    s = dg.tensor([1.0, 2.0])
    s.attach_grad("add")                                 # accumulates, from the zero buffer attach_grad made
    assert _train(s, 3, compiled).tolist() == [6.0, 12.0]
    p = dg.tensor([1.0, 2.0], requires_grad=True)        # PyTorch style: accumulates, from None
    assert _train(p, 3, compiled).tolist() == [6.0, 12.0]
    n = dg.tensor([1.0, 2.0])
    n.attach_grad("null")
    w2 = dg.tensor([1.0, 1.0])
    w2.attach_grad()

    def step():
        with autograd.record():
            loss = (w2 * n).sum()
        loss.backward()
    (dg.function(step) if compiled else step)()
    assert n.grad is None and w2.grad.tolist() == [1.0, 2.0]


def _check_module_parameters(compiled):
    """nn.Module parameters are PyTorch's (requires_grad=True): they accumulate, in record() too. A
    Gluon-style loop without zero_grad gives them grad_req='write' with attach_grad()."""
    x = dg.ones(4, 2)
    gluon, torchy = dg.nn.Linear(2, 1), dg.nn.Linear(2, 1)
    for p in gluon.parameters():
        p.attach_grad()

    def step(net):
        with autograd.record():
            loss = net(x).sum()
        loss.backward()
        return loss
    run = dg.function(step) if compiled else step
    for _ in range(3):
        run(gluon)
        run(torchy)
    assert gluon.bias.grad.tolist() == [4.0]             # d sum(xW^T + b) / db = batch size
    assert torchy.bias.grad.tolist() == [12.0]           # three backwards summed
    assert gluon.weight.grad.tolist() == [[4.0, 4.0]]


# ---- assigning and reading .grad ------------------------------------------------------------------------

def test_assigning_grad_is_checked_as_in_pytorch():
    p = leaf([1.0, 2.0, 3.0])
    for value, kind in ((0, "int"), (np.zeros(3), "numpy.ndarray"), ([0.0, 0.0, 0.0], "list")):
        with pytest.raises(TypeError, match=f"assigned grad expected to be a Tensor or None but got grad of type {kind}$"):
            p.grad = value
    with pytest.raises(RuntimeError, match=r"attempting to assign a gradient of size '\[2\]' to a tensor of size '\[3\]'"):
        p.grad = dg.zeros(2)
    with pytest.raises(dg.ShapeError):
        p.grad = dg.zeros(2)
    with pytest.raises(RuntimeError, match="attempting to assign a gradient with dtype 'float64'"):
        p.grad = dg.zeros(3, dtype="float64")
    p.grad = dg.ones(3)
    assert p.grad.tolist() == [1.0, 1.0, 1.0]
    p.grad = None
    assert p.grad is None
    torch = torch_or_none()
    if torch is not None:
        tp = torch.zeros(3, requires_grad=True)
        with pytest.raises(TypeError, match="assigned grad expected to be a Tensor or None but got grad of type int$"):
            tp.grad = 0
        with pytest.raises(RuntimeError, match=r"attempting to assign a gradient of size '\[2\]' to a tensor of size '\[3\]'"):
            tp.grad = torch.zeros(2)

    @dg.function
    def assign(q):
        q.grad = 0
    with pytest.raises(TypeError, match="got grad of type int"):
        assign(leaf([1.0]))


def _grad_warnings(body):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")
        body()
    return [(w.category, w.lineno) for w in caught if "not a leaf Tensor" in str(w.message)]


def test_reading_grad_of_a_non_leaf_warns_once_per_line_as_pytorch():
    x = leaf([1.0, 2.0])

    def body():
        y, z = x * 2, x * 3
        y.grad, y.grad, z.grad                           # one line: one warning (Python's default filter)
        for _ in range(3):
            (x * 4).grad                                 # one line in a loop: one warning
        r = x * 5
        r.retain_grad()
        r.grad                                           # retained: no warning
        x.grad                                           # a leaf: no warning
        dg.ones(2).grad                                  # needs no grad: no warning
    found = _grad_warnings(body)
    assert [c for c, _ in found] == [UserWarning, UserWarning]
    assert len({line for _, line in found}) == 2
    torch = torch_or_none()
    if torch is not None:
        tx = torch.tensor([1.0, 2.0], requires_grad=True)

        def tbody():
            ty, tz = tx * 2, tx * 3
            ty.grad, ty.grad, tz.grad
            for _ in range(3):
                (tx * 4).grad
            tr = tx * 5
            tr.retain_grad()
            tr.grad
            tx.grad
            torch.ones(2).grad
        assert len(_grad_warnings(tbody)) == len(found)


def test_reading_grad_of_a_non_leaf_inside_a_compiled_function():
    @dg.function
    def f(x):
        y = x * 2
        assert y.grad is None
        return y

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = f(leaf([1.0, 2.0]))
        out = f(leaf([1.0, 2.0]))                        # runs the trace (no retracing from a .grad guard)
    assert out.tolist() == [2.0, 4.0]
    assert sum("not a leaf Tensor" in str(w.message) for w in caught) == 1


def test_several_output_op_whose_vjp_does_not_read_its_outputs():
    # only one output is used: the engine fills the other's gradient with zeros of its shape and
    # dtype, which it must know without having kept the outputs themselves
    from dualgraph.dispatch import apply
    from dualgraph.graph.avals import Aval
    from dualgraph.ops.registry import Op

    op = Op("two_scales_probe", lambda xp, x: (x * 2, (x * 3)[:1]),
            lambda x: (Aval(x.shape, x.dtype), Aval((1,) + tuple(x.shape[1:]), x.dtype)),
            lambda ctx, g: (g[0] * 2 + dg.pad(g[1] * 3, (0, ctx.inputs[0].shape[0] - 1)),), n_out=2)
    assert not op.saves_output
    x = dg.tensor([1.0, 2.0, 4.0], requires_grad=True)
    a, b = apply(op, (x,), {})
    a.sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [2.0, 2.0, 2.0])
    x.grad = None
    a, b = apply(op, (x,), {})
    (b * 5).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [15.0, 0.0, 0.0])
