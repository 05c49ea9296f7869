"""The ONNX op coverage table, generated from the op table (`dualgraph.ops.REGISTRY`).

    .venv/bin/python -m export.coverage

For every primitive: whether it exports, and the ONNX operators its lowering emitted when the op
table's samples (tests/op_db.py, forward and backward graphs) were exported and run in onnxruntime.
"""
import os
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "tests"))

import dualgraph as dg  # noqa: E402
from dualgraph.onnx import api  # noqa: E402
from dualgraph.onnx.export import graph_to_model  # noqa: E402
from dualgraph.ops.registry import REGISTRY  # noqa: E402
from dualgraph.tensor import Tensor  # noqa: E402


def _emitted_by_table():
    from op_db import OP_DB, to_dg
    emitted = {}

    def record(fn, tensors):
        traced = api._obtain(fn, tensors)
        _, info = graph_to_model(traced.graph, initializers=traced.params, overridable=traced.state)
        for k, v in info.emitted.items():
            emitted.setdefault(k, set()).update(v)

    for row in OP_DB:
        for dtype in row.dtypes:
            for s in row.sample_inputs(dtype):
                args, kwargs = to_dg(s)
                pos = [i for i, a in enumerate(args) if isinstance(a, Tensor)]

                def fn(*ts, args=args, kwargs=kwargs, pos=pos, grad=False):
                    a = list(args)
                    for i, t in zip(pos, ts):
                        a[i] = t
                    out = row.op(*a, **kwargs)
                    if not grad:
                        return out
                    outs = out if isinstance(out, (tuple, list)) else [out]
                    sum((o * o).sum() for o in outs if o.dtype.kind == "f").backward()
                    return [ts[k].grad for k in range(len(ts)) if ts[k].dtype.kind == "f"]
                tensors = [args[i] for i in pos]
                try:
                    record(fn, tensors)
                except Exception:
                    pass
                if row.differentiable and dtype == "float64" and s.grad:
                    try:
                        gt = [t.detach().requires_grad_(True) if t.dtype.kind == "f" else t for t in tensors]
                        record(lambda *ts, fn=fn: fn(*ts, grad=True), gt)
                    except Exception:
                        pass
    # what the table cannot trace: control flow, a fused graph, data-dependent shapes
    x = dg.randn(3, 4)

    def control(a, n):
        b = dg.cond(a.sum() > 0, lambda v: v * 2, lambda v: v - 1, a)
        return dg.while_loop(lambda s: s[0] < n, lambda s: (s[0] + 1, s[1] * 0.5), (dg.tensor(0), b))[1]
    record(control, (x, dg.tensor(2)))
    fused = dg.function(lambda a: dg.tanh(a * 2 + 1) * a).graph(x)
    _, info = graph_to_model(fused)
    for k, v in info.emitted.items():
        emitted.setdefault(k, set()).update(v)
    from dualgraph.graph.ir import Graph
    from dualgraph.ops.infer import Aval
    g = Graph()
    v = g.add_input(Aval((3, 4), np.float32))
    g.outputs = g.add_node(REGISTRY["nonzero"], [v], {}, [Aval((5, 2), np.int64)]).outputs
    _, info = graph_to_model(g)
    for k, val in info.emitted.items():
        emitted.setdefault(k, set()).update(val)
    return emitted


def table():
    emitted = _emitted_by_table()
    cov = dg.onnx.coverage()
    lines = ["| op | exports | ONNX operators emitted (op-table samples, forward and backward) |",
             "| --- | --- | --- |"]
    for name in sorted(REGISTRY):
        status = cov[name]
        ops = ", ".join(sorted(emitted.get(name, ()))) or "(not reached by a traceable sample)"
        lines.append(f"| `{name}` | {'yes' if status == 'yes' else status} | {ops} |")
    n_yes = sum(1 for v in cov.values() if v == "yes")
    lines.append("")
    lines.append(f"{n_yes} of {len(cov)} primitives export; "
                 f"{sum(1 for v in cov.values() if v == 'missing')} have no lowering.")
    return "\n".join(lines)


if __name__ == "__main__":
    np.seterr(all="ignore")
    print(table())
