"""Every row of the op table: traced (compiled, all passes) == eager, and == the unoptimized graph run by
the reference interpreter; differentiable rows: the compiled backward == eager gradients."""
import os
import sys

import numpy as np
import pytest

import dualgraph as dg
from dualgraph.function import TraceError
from dualgraph.function.executor import interpret

sys.path.insert(0, os.path.dirname(__file__))
try:
    from op_db import OP_DB, as_numpy_outputs, to_dg
except ImportError:  # the op table is written concurrently; skip until it exists
    OP_DB = []

# data-dependent output shapes cannot be traced (a clear TraceError says so)
UNTRACEABLE = ("nonzero", "boolean mask", "data-dependent", "needs the value of a traced tensor")


def _rows():
    return [r for r in OP_DB if not r.random]


def _run_both(row, s):
    args, kwargs = to_dg(s, share=False)
    eager = as_numpy_outputs(row.op(*args, **kwargs))
    f = dg.function(lambda *a: row.op(*a, **kwargs))
    try:
        out = f(*args)
    except TraceError as e:
        if any(k in str(e) for k in UNTRACEABLE):
            pytest.skip(f"{row.name}: {e}")
        raise
    return args, f, eager, as_numpy_outputs(out)


@pytest.mark.skipif(not OP_DB, reason="tests/op_db.py not available")
@pytest.mark.parametrize("row", _rows(), ids=lambda r: r.name)
def test_traced_equals_eager(row):
    dtype = row.dtypes[0]
    atol, rtol = row.tol(dtype)
    for s in row.sample_inputs(dtype)[:3]:
        args, f, eager, traced = _run_both(row, s)
        assert len(eager) == len(traced)
        for e, t in zip(eager, traced):
            assert t.shape == e.shape and t.dtype == e.dtype, (s, t.dtype, e.dtype)
            assert np.allclose(t, e, atol=max(atol, 1e-6), rtol=max(rtol, 1e-5), equal_nan=True), s
        tensors = [a._data for a in args if isinstance(a, dg.Tensor)]
        entry = f._entry_for(args, {})
        tensors += [c.ref()._data for c in entry.captured]  # tensors in kwargs are captured inputs
        ref = interpret(entry.graph, tensors)
        for e, t in zip(eager, ref):
            assert np.allclose(np.asarray(t), e, atol=max(atol, 1e-6), rtol=max(rtol, 1e-5), equal_nan=True), s


@pytest.mark.skipif(not OP_DB, reason="tests/op_db.py not available")
@pytest.mark.parametrize("row", [r for r in _rows() if r.differentiable], ids=lambda r: r.name)
def test_compiled_backward_equals_eager(row):
    dtype = "float64" if "float64" in row.dtypes else row.dtypes[0]
    for s in row.sample_inputs(dtype)[:2]:
        if not s.grad:
            continue
        args_e, kwargs = to_dg(s, requires_grad=True, share=False)
        args_c, _ = to_dg(s, requires_grad=True, share=False)
        wrt_e = [a for a in args_e if isinstance(a, dg.Tensor) and a.requires_grad]
        if not wrt_e:
            continue
        outs = row.op(*args_e, **kwargs)
        outs = [o for o in (outs if isinstance(outs, (tuple, list)) else (outs,)) if o.requires_grad]
        if not outs:
            continue
        sum(dg.sum(o * o) for o in outs).backward()
        f = dg.function(lambda *a: row.op(*a, **kwargs))
        try:
            oc = f(*args_c)
        except TraceError as e:
            if any(k in str(e) for k in UNTRACEABLE):
                pytest.skip(f"{row.name}: {e}")
            raise
        oc = [o for o in (oc if isinstance(oc, (tuple, list)) else (oc,)) if o.requires_grad]
        sum(dg.sum(o * o) for o in oc).backward()
        for a, c in zip(args_e, args_c):
            if isinstance(a, dg.Tensor) and a.requires_grad and a.grad is not None:
                assert c.grad is not None, s
                assert np.allclose(c.grad.numpy(), a.grad.numpy(), atol=1e-6, rtol=1e-5), s
