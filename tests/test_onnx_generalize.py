"""Dynamic axes on a graph traced at concrete sizes: the exporter rewrites it into the graph a trace with
those axes symbolic would give (sizes as ops/dims.py expressions, mean's divisor as `count`, a constant
of a traced shape as `broadcast_to`), lowers that graph, and verification runs that same graph in
dualgraph's one interpreter (function.executor.interpret). References: numpy and onnxruntime."""
import numpy as np
import pytest

import dualgraph as dg
from dualgraph.function.executor import interpret
from dualgraph.graph.avals import Dim
from dualgraph.onnx import api
from dualgraph.onnx.export import graph_to_model
from dualgraph.ops import dims

ort = pytest.importorskip("onnxruntime")


def _run(model, feeds):
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, feeds)


def _export(f, x, dynamic_axes):
    traced = api._obtain(f, [x])
    return graph_to_model(traced.graph, input_names=["x"], dynamic_axes=dynamic_axes)


def test_the_generalized_graph_runs_in_the_interpreter_at_other_sizes():
    def f(x):
        y = x.reshape(x.shape[0], -1)
        return (y - y.mean(0)) * dg.zeros(y.shape) + y.mean(0) + 1

    def reference(x):   # numpy
        y = x.reshape(x.shape[0], -1)
        return (y - y.mean(0)) * 0 + y.mean(0) + 1
    model, info = _export(f, dg.randn(5, 3, 4), {"x": {0: "B"}})
    names = [n.op.name for n in info.graph.nodes]
    assert "count" in names and "broadcast_to" in names     # mean's divisor, zeros(y.shape)
    assert "count" in str(info.graph)
    for b in (1, 7):
        x = np.random.default_rng(b).standard_normal((b, 3, 4)).astype(np.float32)
        (got,) = interpret(info.graph, [x])
        np.testing.assert_allclose(got, reference(x), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(_run(model, {"x": x})[0], reference(x), rtol=1e-5, atol=1e-6)


def test_a_product_with_a_rational_coefficient_is_a_size_expression():
    def f(x):   # (B, T, 4) -> (B*T/2, 8): the row count halves a product of both dynamic axes
        return x.reshape(-1, 8) * 2
    model, info = _export(f, dg.randn(5, 6, 4), {"x": {0: "B", 1: "T"}})
    rows = info.graph.outputs[0].aval.shape[0]
    assert isinstance(rows, dims.DimExpr)
    out = model.graph.output[0].type.tensor_type.shape.dim
    assert out[0].dim_param == "((B*T)//2)" and out[1].dim_value == 8
    x = np.random.default_rng(0).standard_normal((3, 4, 4)).astype(np.float32)
    (got,) = _run(model, {"x": x})
    np.testing.assert_array_equal(got, x.reshape(-1, 8) * 2)
    np.testing.assert_array_equal(interpret(info.graph, [x])[0], x.reshape(-1, 8) * 2)


def test_products_simplify_and_floor_divisions_from_user_code_stay_factors():
    b, t = Dim("b"), Dim("t")
    p = dims.product([b, 3, 4])
    assert str(p) == "(b * 12)" and dims.evaluate(p, {b: 5}) == 60
    assert dims.key(dims.product([4, b, 3])) == dims.key(p)            # one canonical form
    assert dims.key(dims.divide(p, 3)) == dims.key(dims.product([b, 4]))
    half = dims.divide(dims.product([b, t, 4]), 8)                     # b*t/2, exact
    assert dims.evaluate(half, {b: 3, t: 4}) == 6
    assert dims.product([half, 2]) is not None and dims.key(dims.product([half, 2])) == dims.key(dims.product([b, t]))
    assert dims.product([b]) is b and dims.product([2, 3]) == 6
    floor = dims.DimExpr("//", (b, 2))                                 # (b // 2) written by a user
    assert dims.evaluate(dims.product([floor, 2]), {b: 5}) == 4        # not simplified to b (5)
    assert dims.resolve({"shape": (p, slice(None, half)), "n": [b]}, {b: 2, t: 4}) == \
        {"shape": (24, slice(None, 4)), "n": [2]}


def test_interpret_shows_each_node_its_outputs_in_order():
    g = dg.function(lambda x: dg.tanh(x * 2) + x.sum()).graph(dg.randn(3, 4))
    x = np.random.default_rng(1).standard_normal((3, 4)).astype(np.float32)
    seen = []
    (out,) = interpret(g, [x], on_node=lambda node, outs: seen.append((node, [np.array(o) for o in outs])))
    assert [n for n, _ in seen] == g.nodes
    np.testing.assert_allclose(seen[-1][1][0], out)
    np.testing.assert_allclose(out, np.tanh(x * 2) + x.sum(), rtol=1e-6)
