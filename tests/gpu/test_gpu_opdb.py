"""The op table on the GPU: eager forward, gradients, traced and compiled backward, each compared with
the same op on the CPU (and the forward with the row's numpy reference), results on the GPU.

The emulated GPU (CI) runs every row for eager forward and gradients, and traced/compiled on every row
too; a real GPU runs the same tests."""
import numpy as np
import pytest

import dualgraph as dg
from dualgraph import backend
from dualgraph.function import TraceError

from op_db import OP_DB, as_numpy_outputs, to_dg

UNTRACEABLE = ("nonzero", "boolean mask", "data-dependent", "needs the value of a traced tensor")
# rows whose op itself makes CPU tensors (dg.arange(...), dg.eye(n), a move to "cpu"): on GPU inputs they
# mix devices by construction, which is the DeviceError they should give
CPU_BY_CONSTRUCTION = {"arange", "to_device", "linalg_cholesky"}
OP_DB = [r for r in OP_DB if r.name not in CPU_BY_CONSTRUCTION]


def _to_gpu(sample, requires_grad=False):
    def conv(a, rg):
        if isinstance(a, (np.ndarray, np.generic)):
            t = dg.tensor(a, device="gpu")
            if rg and a.dtype.kind == "f":
                t.requires_grad_(True)
            return t
        return a
    args = tuple(conv(a, requires_grad) for a in sample.args)
    kwargs = {k: conv(v, False) for k, v in sample.kwargs.items()}
    return args, kwargs


def _outs(out):
    return out if isinstance(out, (tuple, list)) else (out,)


def _on_gpu(outs):
    """Every tensor result lives on the GPU, as a device array."""
    for o in outs:
        if isinstance(o, dg.Tensor):
            assert o.device == dg.device("gpu"), o.device
            assert isinstance(o._data, backend._cupy.ndarray), type(o._data)


def _close(got, want, atol, rtol, what):
    for g, w in zip(got, want):
        assert g.shape == w.shape and g.dtype == w.dtype, (what, g.shape, w.shape, g.dtype, w.dtype)
        if g.dtype.kind in "fc":
            assert np.allclose(g, w, atol=atol, rtol=rtol, equal_nan=True), what
        else:
            assert np.array_equal(g, w), what


@pytest.mark.parametrize("row", OP_DB, ids=lambda r: r.name)
def test_eager_forward_matches_cpu(row):
    for dtype in row.dtypes:
        atol, rtol = row.tol(dtype)
        for s in row.sample_inputs(dtype)[:3]:
            args, kwargs = _to_gpu(s)
            out = _outs(row.op(*args, **kwargs))
            _on_gpu(out)
            got = tuple(o.numpy() for o in out)
            if row.random:
                assert [g.shape for g in got] == [o.shape for o in _outs(row.op(*to_dg(s)[0], **to_dg(s)[1]))]
                continue
            a, k = to_dg(s, share=False)
            want = as_numpy_outputs(row.op(*a, **k))
            _close(got, want, max(atol, 1e-6), max(rtol, 1e-5), (dtype, s))


def _grads(row, s, dev):
    if dev == "gpu":
        args, kwargs = _to_gpu(s, requires_grad=True)
    else:
        args, kwargs = to_dg(s, requires_grad=True, share=False)
    return args, kwargs


@pytest.mark.parametrize("row", [r for r in OP_DB if r.differentiable and not r.random], ids=lambda r: r.name)
def test_gradients_match_cpu(row):
    dtype = "float64" if "float64" in row.dtypes else row.dtypes[0]
    for s in row.sample_inputs(dtype)[:2]:
        if not s.grad:
            continue
        res = {}
        for dev in ("cpu", "gpu"):
            args, kwargs = _grads(row, s, dev)
            outs = [o for o in _outs(row.op(*args, **kwargs)) if isinstance(o, dg.Tensor) and o.requires_grad]
            if not outs:
                break
            sum(dg.sum(o * o) for o in outs).backward()
            res[dev] = [a.grad for a in args if isinstance(a, dg.Tensor) and a.requires_grad]
        if not res:
            continue
        for c, g in zip(res["cpu"], res["gpu"]):
            assert (c is None) == (g is None), s
            if c is not None:
                _on_gpu([g])
                assert np.allclose(g.numpy(), c.numpy(), atol=1e-6, rtol=1e-5), s


def _traced(row, args, kwargs):
    f = dg.function(lambda *a: row.op(*a, **kwargs))
    try:
        return f, _outs(f(*args))
    except TraceError as e:
        if any(k in str(e) for k in UNTRACEABLE):
            pytest.skip(f"{row.name}: {e}")
        raise


@pytest.mark.parametrize("row", [r for r in OP_DB if not r.random], ids=lambda r: r.name)
def test_traced_matches_cpu(row):
    dtype = row.dtypes[0]
    atol, rtol = row.tol(dtype)
    for s in row.sample_inputs(dtype)[:2]:
        args, kwargs = _to_gpu(s)
        _, out = _traced(row, args, kwargs)
        _on_gpu(out)
        a, k = to_dg(s, share=False)
        want = as_numpy_outputs(row.op(*a, **k))
        _close(tuple(o.numpy() for o in out), want, max(atol, 1e-6), max(rtol, 1e-5), s)


@pytest.mark.parametrize("row", [r for r in OP_DB if r.differentiable and not r.random], ids=lambda r: r.name)
def test_compiled_backward_matches_cpu(row):
    dtype = "float64" if "float64" in row.dtypes else row.dtypes[0]
    for s in row.sample_inputs(dtype)[:1]:
        if not s.grad:
            continue
        a_c, k_c = to_dg(s, requires_grad=True, share=False)
        outs = [o for o in _outs(row.op(*a_c, **k_c)) if isinstance(o, dg.Tensor) and o.requires_grad]
        if not outs:
            continue
        sum(dg.sum(o * o) for o in outs).backward()
        a_g, k_g = _to_gpu(s, requires_grad=True)
        _, og = _traced(row, a_g, k_g)
        og = [o for o in og if isinstance(o, dg.Tensor) and o.requires_grad]
        sum(dg.sum(o * o) for o in og).backward()
        for c, g in zip(a_c, a_g):
            if isinstance(c, dg.Tensor) and c.requires_grad and c.grad is not None:
                assert g.grad is not None, s
                _on_gpu([g.grad])
                assert np.allclose(g.grad.numpy(), c.grad.numpy(), atol=1e-6, rtol=1e-5), s
