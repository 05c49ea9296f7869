"""Every op record holds every fact a mode needs, so that adding an op is one record.

    forward, infer                       eager, executor; tracing, static graphs
    vjp, or differentiable=False         autograd (vjp=None alone could be an op someone forgot)
    onnx, or not_exportable(reason)      export (the reason goes into the export error)

`missing_facts` is checked on every registered op, and on records built here with one fact left
out, so that the check itself is known to catch each omission.
"""
import inspect

import numpy as np
import pytest

import dualgraph as dg  # noqa: F401  (registers every op, control flow and fused kernels included)
from dualgraph.graph.avals import Aval
from dualgraph.ops.onnx_rules import not_exportable
from dualgraph.ops.registry import REGISTRY, Op


def _takes(fn, n):
    """Does `fn` take at least n positional arguments (more may follow: a lowering gets one per input)?"""
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return False
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return len(positional) >= n or any(p.kind == p.VAR_POSITIONAL for p in params)


def missing_facts(op):
    """What `op` lacks for some mode: a list of messages, empty when the record is complete."""
    out = []
    if not callable(op.forward):
        out.append("no forward(xp, *arrays, **attrs)")
    if not callable(op.infer):
        out.append("no infer(*avals, **attrs)")
    if op.vjp is None and op.differentiable:
        out.append("vjp=None without differentiable=False: give it a vjp, or say it has no gradient")
    if op.vjp is not None and not op.differentiable:
        out.append("differentiable=False but it has a vjp")
    if op.vjp is not None and not (callable(op.vjp) and _takes(op.vjp, 2)):
        out.append("vjp is not a function of (ctx, g)")
    rule = op.onnx
    if rule is None:
        out.append("no ONNX lowering: give it onnx=rule(ctx, node, *names), or onnx=not_exportable(reason)")
    elif isinstance(rule, not_exportable):
        if not (isinstance(rule.reason, str) and rule.reason.strip()):
            out.append("not_exportable without a reason for the export error")
    elif not (callable(rule) and _takes(rule, 2)):
        out.append("the ONNX lowering is not a function of (ctx, node, *names)")
    return out


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_record_has_every_fact(name):
    op = REGISTRY[name]
    assert op.name == name
    assert not missing_facts(op), f"op {name!r}: " + "; ".join(missing_facts(op))


def _complete(**change):
    facts = dict(name="probe", forward=lambda xp, x: x, infer=lambda x: Aval(x.shape, x.dtype),
                 vjp=lambda ctx, g: (g,), onnx=lambda ctx, node, x: ctx.emit("Identity", [x]))
    facts.update(change)
    return Op(**facts)


@pytest.mark.parametrize("change, complaint", [
    (dict(forward=None), "no forward"),
    (dict(infer=None), "no infer"),
    (dict(vjp=None), "vjp=None without differentiable=False"),
    (dict(differentiable=False), "differentiable=False but it has a vjp"),
    (dict(vjp=lambda: None), "vjp is not a function of (ctx, g)"),
    (dict(onnx=None), "no ONNX lowering"),
    (dict(onnx=not_exportable("")), "not_exportable without a reason"),
    (dict(onnx="Identity"), "the ONNX lowering is not a function"),
])
def test_a_record_missing_one_fact_is_caught(change, complaint):
    assert missing_facts(_complete()) == []
    assert missing_facts(_complete(vjp=None, differentiable=False)) == []
    assert missing_facts(_complete(onnx=not_exportable("ONNX has no such operator"))) == []
    found = missing_facts(_complete(**change))
    assert len(found) == 1 and found[0].startswith(complaint), found


def test_a_refused_export_names_the_op_and_the_reason(monkeypatch):
    """An op whose record refuses export (or has no lowering at all) fails export with the op, the reason
    and the user's line; an exportable neighbour is not reported."""
    import dualgraph.onnx as dgo
    monkeypatch.setattr(REGISTRY["exp"], "onnx", not_exportable("no exponential in this opset"))
    monkeypatch.setattr(REGISTRY["tanh"], "onnx", None)

    def f(x):
        return dg.tanh(dg.exp(x) + 1)  # the refused line
    with pytest.raises(dgo.ExportError) as e:
        dgo.export(f, (dg.tensor(np.ones((2, 3), np.float32)),), None)
    msg = str(e.value)
    assert "2 node(s)" in msg and "exp at" in msg and "no exponential in this opset" in msg
    assert "tanh at" in msg and "no ONNX lowering is defined for this op" in msg
    assert "add at" not in msg and "test_op_records.py" in msg
