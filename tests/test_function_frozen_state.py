"""What a trace bakes in is noticed or listed: modules read from a closure, numbers read from
containers, custom Functions refused by the exporter."""
import numpy as np
import pytest

import dualgraph as dg
from dualgraph import nn


def test_module_read_from_a_closure_retraces_after_eval():
    dg.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 4), nn.Dropout(0.5))

    @dg.function
    def f(x):
        return model(x)

    x = dg.ones(8, 4)
    f(x)                      # traced in training mode: dropout active
    model.eval()
    np.testing.assert_allclose(f(x).numpy(), model(x).numpy(), rtol=1e-6)
    assert f.trace_count == 2
    assert "train()/eval()" in f.retrace_reason


def test_number_read_from_a_dict_is_listed_with_its_line():
    cfg = {"scale": 0.1}

    def body(x):
        return x * cfg["scale"] + 3.5

    g = dg.function(body)
    x = dg.ones(3)
    g(x)
    numbers = [fv for fv in g.frozen(x) if fv.kind == "number"]
    assert [fv.value for fv in numbers] == [0.1]          # the literal 3.5 is not listed
    assert numbers[0].where.endswith(f"test_function_frozen_state.py:{body.__code__.co_firstlineno + 1}")


def test_numbers_inside_dualgraph_composites_are_not_listed():
    model = nn.Sequential(nn.Linear(4, 4), nn.GELU(), nn.LayerNorm(4))

    @dg.function
    def step(x):
        loss = model(x).sum()
        loss.backward()
        return loss

    x = dg.ones(2, 4)
    step(x)
    assert [fv for fv in step.frozen(x) if fv.kind == "number"] == []


def test_exporting_a_custom_function_names_it_and_the_line(tmp_path):
    class Square(dg.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return x * x

        @staticmethod
        def backward(ctx, g):
            (x,) = ctx.saved_tensors
            return 2 * x * g

    def f(x):
        return Square.apply(x) + 1

    with pytest.raises(dg.DualgraphError, match=r"Square at .*test_function_frozen_state.py:\d+"):
        dg.onnx.export(f, (dg.ones(3),), str(tmp_path / "m.onnx"))
    assert not (tmp_path / "m.onnx").exists()
    assert dg.function(f)(dg.tensor([2.0])).tolist() == [5.0]   # compiling it still works
