"""@dg.function: tracing, the signature cache, retrace reasons, symbolic dims, input_signature,
static_argnames, frozen values, strict mode, errors that name the user's line, captured tensors."""
import os
import warnings

import numpy as np
import pytest

import dualgraph as dg
from dualgraph.function import ConcretizationError, RetraceWarning, TensorSpec, TraceError

THIS = os.path.basename(__file__)


def close(a, b, tol=1e-5):
    return np.allclose(np.asarray(a), np.asarray(b), atol=tol, rtol=tol)


def test_traced_equals_eager_and_traces_once():
    def fn(x, y):
        return dg.tanh(x @ y + 1.0).sum(axis=0)
    f = dg.function(fn)
    x, y = dg.randn(3, 4), dg.randn(4, 5)
    assert close(f(x, y).numpy(), fn(x, y).numpy())
    f(x, y)
    f(dg.randn(3, 4), dg.randn(4, 5))
    assert f.trace_count == 1


def test_decorator_forms():
    @dg.function
    def a(x):
        return x * 2

    @dg.function(static_argnames=("n",))
    def b(x, n):
        return x * n
    x = dg.ones(3)
    assert close(a(x).numpy(), 2 * np.ones(3))
    assert close(b(x, n=3).numpy(), 3 * np.ones(3))
    assert close(b(x, 4).numpy(), 4 * np.ones(3))
    assert b.trace_count == 2


def test_keyword_only_and_var_keyword_parameters_are_passed_by_keyword():
    def scaled(x, *, w, bias=1.0):
        return x * w + bias

    def summed(x, *extra, **named):
        return x + sum(extra) + named["w"] * named.get("k", 1.0)
    x, w, e = dg.tensor([1.0, 2.0]), dg.tensor([3.0, 4.0]), dg.tensor([0.5, 0.5])
    f, g = dg.function(scaled), dg.function(summed)
    # the eager function is the reference; by hand: [1*3+1, 2*4+1] and [1+0.5+3*2, 2+0.5+4*2]
    assert close(f(x, w=w).numpy(), [4.0, 9.0]) and close(f(x, w=w).numpy(), scaled(x, w=w).numpy())
    assert close(f(x, w=w, bias=0.0).numpy(), scaled(x, w=w, bias=0.0).numpy())
    assert close(g(x, e, w=w, k=2.0).numpy(), [7.5, 10.5])
    assert close(g(x, e, w=w, k=2.0).numpy(), summed(x, e, w=w, k=2.0).numpy())
    assert close(g(x, w=w).numpy(), summed(x, w=w).numpy())
    assert f.trace_count == 2 and g.trace_count == 2   # bias=0.0 and a missing *extra are new keys


def test_python_scalar_is_baked_in_and_new_value_retraces_with_reason():
    @dg.function
    def f(x, k):
        return x * k
    x = dg.ones(2)
    f(x, 2.0)
    f(x, 2.0)
    assert f.trace_count == 1
    out = f(x, 3.0)
    assert f.trace_count == 2
    assert close(out.numpy(), [3.0, 3.0])
    assert "k" in f.retrace_reason and "2.0" in f.retrace_reason and "3.0" in f.retrace_reason
    assert any(fz.kind == "argument" and fz.value == 3.0 for fz in f.frozen(x, 3.0))


def test_dtype_change_retraces_and_says_so():
    f = dg.function(lambda x: x + 1)
    f(dg.ones(3))
    f(dg.ones(3, dtype="float64"))
    assert f.trace_count == 2
    assert "dtype changed from float32 to float64" in f.retrace_reason


def test_nested_structures_as_arguments_and_outputs():
    @dg.function
    def f(d, pair):
        a, b = pair
        return {"s": d["x"] + a, "t": (b * 2, 7)}
    d = {"x": dg.ones(2)}
    out = f(d, (dg.ones(2), dg.zeros(2)))
    assert close(out["s"].numpy(), [2, 2]) and close(out["t"][0].numpy(), [0, 0]) and out["t"][1] == 7
    f(d, (dg.ones(2), dg.zeros(2)))
    assert f.trace_count == 1
    f(d, [dg.ones(2), dg.zeros(2)])  # a list is another structure than a tuple
    assert f.trace_count == 2


def test_shapes_that_vary_become_symbolic_after_one_retrace():
    @dg.function
    def f(x):
        return dg.relu(x * 2.0 - 1.0).sum(axis=1)
    for n in (3, 5, 8, 13, 2):
        x = dg.randn(n, 4)
        assert close(f(x).numpy(), dg.relu(x * 2.0 - 1.0).sum(axis=1).numpy())
    assert f.trace_count == 2
    assert "shape changed from (3, 4) to (5, 4)" in f.retrace_reason
    text = str(f.graph(dg.randn(9, 4)))
    assert "f32[d0,4]" in text and f.trace_count == 2


def test_symbolic_trace_that_needs_concrete_sizes_falls_back():
    @dg.function
    def f(x):
        return dg.concat([x[i] for i in range(x.shape[0])])  # needs the size as a Python int
    reasons = []
    for n in (2, 3, 4):
        assert f(dg.ones(n, 4)).shape == (n * 4,)
        reasons.append(f.retrace_reason)
    assert "tracing per shape" in reasons[1] and f.trace_count == 3


def test_arithmetic_on_symbolic_dims():
    @dg.function(input_signature=[TensorSpec((None, 3))])
    def f(x):
        n = x.shape[0]
        return x.reshape(n * 3).sum() / n + x.mean(axis=0)
    for n in (2, 5):
        x = dg.randn(n, 3)
        assert close(f(x).numpy(), (x.reshape(n * 3).sum() / n + x.mean(axis=0)).numpy())
        assert f(x).dtype == np.float32
    assert f.trace_count == 1 and "(d0 * 3)" in str(f.graph(x))


def test_input_signature_none_dim_serves_every_batch():
    @dg.function(input_signature=[TensorSpec((None, 3), "float32")])
    def f(x):
        return (x * x).sum(axis=1)
    for n in (1, 4, 7):
        x = dg.randn(n, 3)
        assert close(f(x).numpy(), (x * x).sum(axis=1).numpy())
    assert f.trace_count == 1
    assert "f32[d0,3]" in str(f.graph(dg.randn(2, 3)))


def test_input_signature_mismatch_names_argument_and_how():
    @dg.function(input_signature=[TensorSpec((None, 3))])
    def f(x):
        return x
    with pytest.raises(dg.ShapeError, match=r"argument 0 \(x\).*dim 1 is 4 but input_signature says 3"):
        f(dg.ones(2, 4))
    with pytest.raises(TypeError, match=r"argument 0 \(x\) has dtype float64"):
        f(dg.ones(2, 3, dtype="float64"))
    with pytest.raises(dg.ShapeError, match=r"2 dims"):
        f(dg.ones(3))


def test_static_argnames_tensor_is_baked_by_value():
    @dg.function(static_argnames=("table",))
    def f(x, table):
        return x + table
    t = dg.tensor([1.0, 2.0])
    assert close(f(dg.zeros(2), table=t).numpy(), [1, 2])
    f(dg.zeros(2), table=dg.tensor([1.0, 2.0]))
    assert f.trace_count == 1
    f(dg.zeros(2), table=dg.tensor([5.0, 2.0]))
    assert f.trace_count == 2


def test_unknown_static_argname_is_an_error():
    with pytest.raises(TypeError, match="no parameter named 'nope'"):
        dg.function(lambda x: x, static_argnames=("nope",))


def test_graph_text_is_readable_and_stable():
    @dg.function
    def f(x, w):
        return dg.relu(x @ w)
    g = f.graph(dg.ones(2, 3), dg.ones(3, 4))
    text = str(g)
    lines = text.splitlines()
    assert lines[0] == "f(%x: f32[2,3], %w: f32[3,4]) {"
    assert "matmul(%x, %w)" in text and "relu(" in text and f"# {THIS}:" in text
    assert lines[-1] == "}"
    assert "digraph" in g.to_dot()


CONST = 3.0


def test_frozen_lists_globals_shapes_and_arguments_with_lines():
    @dg.function
    def f(x, k):
        n = x.shape[0]
        return x * CONST / n + k
    x = dg.ones(4)
    frozen = f.frozen(x, 2)
    kinds = {fz.kind for fz in frozen}
    assert {"global", "shape", "argument"} <= kinds
    g = next(fz for fz in frozen if fz.kind == "global")
    assert g.what == "CONST" and g.value == 3.0 and THIS in g.where
    s = next(fz for fz in frozen if fz.kind == "shape")
    assert s.value == (4,) and THIS in s.where
    assert "frozen at trace time" in str(f.graph(x, 2))


def test_changing_a_frozen_global_retraces():
    global CONST
    f = dg.function(lambda x: x * CONST)
    x = dg.ones(2)
    assert close(f(x).numpy(), [3, 3])
    old = CONST
    try:
        CONST = 5.0
        assert close(f(x).numpy(), [5, 5])
        assert f.trace_count == 2 and "CONST" in f.retrace_reason
    finally:
        CONST = old


def test_strict_refuses_to_freeze_a_shape():
    @dg.function(strict=True)
    def f(x):
        return x / x.shape[0]
    with pytest.raises(TraceError, match="strict=True.*shape.*input_signature"):
        f(dg.ones(3))

    @dg.function(strict=True, input_signature=[TensorSpec((3,))])
    def g(x):
        return x / x.shape[0]
    assert close(g(dg.ones(3)).numpy(), np.ones(3) / 3)


@pytest.mark.parametrize("what, body", [
    ("bool()", lambda x: x if x.sum() > 0 else -x),
    ("item()", lambda x: x * x.sum().item()),
    ("item()", lambda x: x * float(x.sum())),
    ("numpy()", lambda x: x * x.numpy()),
])
def test_control_flow_on_traced_values_names_the_users_line(what, body):
    f = dg.function(body)
    with pytest.raises(ConcretizationError) as e:
        f(dg.ones(3))
    msg = str(e.value)
    assert what in msg and THIS in msg and "dg.cond" in msg and "dg.while_loop" in msg


def test_iterating_a_traced_tensor_of_known_length_works():
    @dg.function
    def f(x):
        return sum(row * i for i, row in enumerate(x))
    x = dg.randn(3, 2)
    assert close(f(x).numpy(), (x[0] * 0 + x[1] * 1 + x[2] * 2).numpy())


def test_iterating_a_tensor_of_unknown_length_is_an_error():
    @dg.function(input_signature=[TensorSpec((None,))])
    def f(x):
        return [r for r in x]
    with pytest.raises(ConcretizationError, match="unknown length"):
        f(dg.ones(3))


def test_data_dependent_shapes_are_clear_errors():
    with pytest.raises(TraceError, match="nonzero"):
        dg.function(lambda x: dg.nonzero(x))(dg.ones(3))
    with pytest.raises(TraceError, match="boolean mask.*dg.where"):
        dg.function(lambda x: x[x > 0])(dg.ones(3))


def test_an_op_record_alone_says_its_shape_depends_on_values():
    # a new op needs nothing but its record for the tracer to refuse it (no list of names to extend)
    from dualgraph.dispatch import apply
    from dualgraph.graph.avals import Aval, Dim
    from dualgraph.ops.registry import Op
    unique = Op("unique_values", lambda xp, x: xp.unique(x), lambda x: Aval((Dim("n"),), x.dtype), None,
                differentiable=False, shape_from_values=True)
    x = dg.tensor([3.0, 1.0, 3.0])
    np.testing.assert_array_equal(apply(unique, (x,)).numpy(), [1.0, 3.0])   # eager runs it
    with pytest.raises(TraceError, match="unique_values: its output shape depends on the input values"):
        dg.function(lambda t: apply(unique, (t,)))(x)


def test_shape_error_inside_trace_names_the_op_and_line():
    f = dg.function(lambda x, y: x @ y)
    with pytest.raises(dg.ShapeError, match="matmul") as e:
        f(dg.ones(2, 3), dg.ones(4, 5))
    assert THIS in str(e.value)


# ---- captured state ---------------------------------------------------------------------------------------

def test_closure_tensor_is_an_input_not_a_constant():
    w = dg.ones(3)
    f = dg.function(lambda x: x * w)
    x = dg.ones(3)
    assert close(f(x).numpy(), [1, 1, 1])
    w.copy_(dg.tensor([2.0, 3.0, 4.0]))  # mutate
    assert close(f(x).numpy(), [2, 3, 4])
    assert f.trace_count == 1
    g = f.graph(x)
    assert len(g.inputs) == 2 and not g.consts()


def test_rebinding_a_closure_tensor_is_noticed():
    w = dg.ones(3)

    def fn(x):
        return x * w
    f = dg.function(fn)
    x = dg.ones(3)
    f(x)
    w = dg.full((3,), 5.0)  # rebinding the variable (not mutating the old tensor)
    assert close(f(x).numpy(), [5, 5, 5])
    w = dg.ones(4)  # another shape: must retrace
    assert f(dg.ones(4)).shape == (4,)


def test_module_parameters_are_inputs_and_replacement_is_noticed():
    net = dg.nn.Linear(3, 2)
    f = dg.function(net)
    x = dg.randn(4, 3)
    assert close(f(x).numpy(), net(x).detach().numpy())
    names = [v.name for v in f.graph(x).inputs]
    assert "weight" in names and "bias" in names
    net.weight = dg.nn.Parameter(dg.zeros(2, 3))
    assert close(f(x).numpy(), np.broadcast_to(net.bias.detach().numpy(), (4, 2)))
    with dg.no_grad():
        net.bias.fill_(7.0)
    assert close(f(x).numpy(), np.full((4, 2), 7.0))


def test_tensor_made_inside_the_trace_is_a_constant():
    @dg.function
    def f(x):
        return x + dg.tensor([1.0, 2.0])
    assert close(f(dg.zeros(2)).numpy(), [1, 2])
    assert len(f.graph(dg.zeros(2)).inputs) == 1


def test_numpy_array_from_closure_is_frozen_and_listed():
    table = np.array([1.0, 2.0], dtype=np.float32)
    f = dg.function(lambda x: x * table)
    x = dg.ones(2)
    assert close(f(x).numpy(), [1, 2])
    assert any(fz.kind in ("array constant", "closure variable") for fz in f.frozen(x))


def test_in_place_update_of_argument_is_written_back():
    @dg.function
    def f(x, y):
        x += y
        x[0] = 10.0
        return x * 2
    x, y = dg.ones(3), dg.ones(3)
    out = f(x, y)
    assert close(x.numpy(), [10, 2, 2]) and close(out.numpy(), [20, 4, 4])


def test_in_place_update_of_captured_state_is_written_back_each_call():
    counter = dg.zeros(())

    @dg.function
    def tick(x):
        counter.add_(1)
        return x + counter
    for i in range(3):
        out = tick(dg.zeros(2))
    assert float(counter) == 3.0 and close(out.numpy(), [3, 3]) and tick.trace_count == 1


def test_in_place_on_a_view_is_a_clear_error():
    @dg.function
    def f(x):
        x.reshape(3).mul_(2)
        return x
    with pytest.raises(TraceError, match="view"):
        f(dg.ones(3, 1))


# ---- side effects, warnings, footguns ---------------------------------------------------------------------

def test_python_side_effects_run_only_at_trace_time():
    log = []

    @dg.function
    def f(x):
        log.append("traced")
        return x + 1
    f(dg.ones(2))
    f(dg.ones(2))
    assert log == ["traced"]


def test_frequent_retracing_warns_once_with_the_reason():
    f = dg.function(lambda x, k: x * k)
    x = dg.ones(2)
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        for k in range(12):
            f(x, k)
    msgs = [str(m.message) for m in w if issubclass(m.category, RetraceWarning)]
    assert len(msgs) == 1 and "Python value changed" in msgs[0]


def test_footgun_random_numbers_are_drawn_per_call_not_frozen():
    f = dg.function(lambda x: x + dg.rand_like(x))
    x = dg.zeros(1000)
    a, b = f(x).numpy(), f(x).numpy()
    assert not np.allclose(a, b)


def test_footgun_python_random_is_frozen():
    import random
    f = dg.function(lambda x: x + random.random())
    x = dg.zeros(1)
    assert f(x).numpy()[0] == f(x).numpy()[0]  # documented: Python randomness runs once, at trace time


def test_footgun_returned_list_of_tensors_keeps_structure():
    f = dg.function(lambda x: [x, x + 1])
    out = f(dg.zeros(1))
    assert isinstance(out, list) and len(out) == 2


def test_footgun_calling_compiled_inside_compiled_inlines():
    inner = dg.function(lambda x: x * 2)
    outer = dg.function(lambda x: inner(x) + 1)
    assert close(outer(dg.ones(2)).numpy(), [3, 3])
    assert inner.trace_count == 0


def test_footgun_traced_tensor_leaking_out_is_an_error():
    leaked = []

    @dg.function
    def f(x):
        y = x + 1
        leaked.append(y)
        return y
    f(dg.ones(2))
    with pytest.raises(dg.DualgraphError):
        leaked[0] + 1


def test_custom_function_traces_and_uses_its_backward():
    class Clip(dg.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            return dg.clip(x, -1, 1)

        @staticmethod
        def backward(ctx, g):
            return g  # straight-through

    x = dg.tensor([-3.0, 0.5, 3.0], requires_grad=True)

    @dg.function
    def step(x):
        loss = Clip.apply(x).sum()
        loss.backward()
        return loss
    out = step(x)
    assert close(out.numpy(), 0.5) and close(x.grad.numpy(), [1, 1, 1])
    assert close(dg.function(lambda x: Clip.apply(x) * 2)(x.detach()).numpy(), [-2, 1, 2])
    with pytest.raises(TraceError, match="custom"):
        dg.function(lambda x: Clip.apply(x).sum())(x).backward()


def test_cached_call_runs_the_executor_not_python():
    calls = []

    def fn(x):
        calls.append(1)
        return x * 3
    f = dg.function(fn)
    for _ in range(5):
        f(dg.ones(2))
    assert len(calls) == 1


def test_runtime_error_in_graph_names_the_op_and_trace_line():
    @dg.function(input_signature=[TensorSpec((None, 3)), TensorSpec((None, 3))])
    def f(x, y):
        return x + y
    with pytest.raises(dg.DualgraphError, match=r"add failed.*test_function_trace.py"):
        f(dg.ones(2, 3), dg.ones(5, 3))


def test_module_eval_and_train_modes_retrace():
    net = dg.nn.Sequential(dg.nn.Linear(4, 4), dg.nn.Dropout(0.5))
    f = dg.function(net)
    x = dg.ones(8, 4)
    net.eval()
    assert close(f(x).numpy(), net(x).detach().numpy())
    net.train()
    out = f(x).numpy()
    assert f.trace_count == 2 and "train()/eval()" in f.retrace_reason
    assert (out == 0).any()


def test_grad_mode_is_part_of_the_signature():
    w = dg.ones(2, requires_grad=True)
    f = dg.function(lambda x: x * w)
    assert f(dg.ones(2)).requires_grad
    with dg.no_grad():
        assert not f(dg.ones(2)).requires_grad
    assert "grad mode changed" in f.retrace_reason


def test_changing_a_frozen_closure_number_retraces():
    scale = 2.0

    def fn(x):
        return x * scale
    f = dg.function(fn)
    assert close(f(dg.ones(2)).numpy(), [2, 2])
    scale = 5.0  # noqa: F841  (read by fn through its closure)
    assert close(f(dg.ones(2)).numpy(), [5, 5])
    assert "closure variable scale" in f.retrace_reason


def test_footgun_python_list_length_is_frozen_by_the_trace():
    """Python control flow over a list runs at trace time: appending to it later is not seen
    (documented in docs/tracing.md); pass the list as an argument to make its length part of the key."""
    weights = [dg.full((2,), 2.0)]

    def apply_all(x):
        for w in weights:
            x = x * w
        return x
    f = dg.function(apply_all)
    assert close(f(dg.ones(2)).numpy(), [2, 2])
    weights.append(dg.full((2,), 3.0))
    assert close(f(dg.ones(2)).numpy(), [2, 2])  # still one weight: the loop was unrolled when traced
    g = dg.function(_mul_all)
    assert close(g(dg.ones(2), weights).numpy(), [6, 6])


def _mul_all(x, ws):
    for w in ws:
        x = x * w
    return x
