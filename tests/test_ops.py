"""The op-table suite: every row of tests/op_db.py checked eagerly against its numpy reference,
its gradients against central finite differences (float64), second order for smooth ops, and that
no input is mutated. Plus conv/pool/loss oracles (numpy loops; torch where installed), dropout,
and the errors bad input must raise."""
import os
import sys

import numpy as np
import pytest

import dualgraph as dg
import dualgraph.nn.functional as F

sys.path.insert(0, os.path.dirname(__file__))
from op_db import (OP_DB, np_bce_with_logits, np_conv1d, np_conv2d, np_cross_entropy,  # noqa: E402
                   np_avg_pool2d, np_max_pool2d, to_dg)


def _cases(pred=lambda row: True, dtypes=None):
    out = []
    for row in OP_DB:
        if not pred(row):
            continue
        for dt in (dtypes or row.dtypes):
            out.append(pytest.param(row, dt, id=f"{row.name}-{dt}"))
    return out


def _copy_args(sample):
    return tuple(a.copy() if isinstance(a, np.ndarray) else a for a in sample.args)


def _outputs(out):
    return tuple(out) if isinstance(out, (tuple, list)) else (out,)


def _assert_unchanged(before, after, what):
    for i, (b, a) in enumerate(zip(before, after)):
        if isinstance(b, np.ndarray):
            np.testing.assert_array_equal(a, b, err_msg=f"{what}: input {i} was mutated")


# ---- eager forward vs numpy ------------------------------------------------------------------------

@pytest.mark.parametrize("row,dtype", _cases())
def test_forward_matches_numpy(row, dtype):
    atol, rtol = row.tol(dtype)
    for sample in row.sample_inputs(dtype):
        original = _copy_args(sample)
        shared = _copy_args(sample)
        kw_original = {k: v.copy() for k, v in sample.kwargs.items() if isinstance(v, np.ndarray)}
        kw_shared = {k: v.copy() if isinstance(v, np.ndarray) else v for k, v in sample.kwargs.items()}
        args, kwargs = to_dg(type(sample)(shared, kw_shared), share=True)   # Tensors share memory with the copies
        got = _outputs(row.op(*args, **kwargs))
        expected = _outputs(row.ref(*original, **sample.kwargs))
        assert len(got) == len(expected), f"{sample}: {len(got)} outputs, reference has {len(expected)}"
        for g, e in zip(got, expected):
            e = np.asarray(e)
            assert isinstance(g, dg.Tensor), f"{sample}: returned {type(g).__name__}"
            assert tuple(g.shape) == e.shape, f"{sample}: shape {tuple(g.shape)} != numpy {e.shape}"
            if row.check_dtype:
                assert g.dtype == e.dtype, f"{sample}: dtype {g.dtype} != numpy {e.dtype}"
            if e.dtype.kind in "fc":
                np.testing.assert_allclose(g.numpy(), e, atol=atol, rtol=rtol, equal_nan=True, err_msg=str(sample))
            else:
                np.testing.assert_array_equal(g.numpy(), e, err_msg=str(sample))
        _assert_unchanged(original, shared, f"{row.name} {sample}")
        for k, v in kw_original.items():
            np.testing.assert_array_equal(kw_shared[k], v, err_msg=f"{row.name} {sample}: {k}= was mutated")


def _strided(a):
    """The same values in a non-contiguous array (every other element of a bigger buffer)."""
    if not isinstance(a, np.ndarray) or a.ndim == 0:
        return a
    big = np.zeros(a.shape + (2,), a.dtype)
    big[..., 0] = a
    return big[..., 0]


@pytest.mark.parametrize("row", OP_DB, ids=lambda r: r.name)
def test_non_contiguous_inputs_give_the_same_result(row):
    dtype = row.dtypes[0]
    for sample in row.sample_inputs(dtype):
        if row.random:
            continue
        args, kwargs = to_dg(sample, share=False)
        expected = [o.numpy() for o in _outputs(row.op(*args, **kwargs))]
        strided = tuple(_strided(a) for a in sample.args)
        assert all(not isinstance(a, np.ndarray) or a.size <= 1 or not a.flags.c_contiguous for a in strided)
        sargs, skwargs = to_dg(type(sample)(strided, sample.kwargs), share=True)
        got = [o.numpy() for o in _outputs(row.op(*sargs, **skwargs))]
        atol, rtol = row.tol(dtype)  # BLAS may sum in another order for strided operands
        for g, e in zip(got, expected):
            np.testing.assert_allclose(g, e, atol=atol, rtol=rtol, equal_nan=True, err_msg=str(sample))


# ---- gradients vs finite differences ------------------------------------------------------------------

def _grad_samples(row):
    return [s for s in row.sample_inputs("float64") if s.grad]


def _fn(row, kwargs):
    return lambda *a: row.op(*a, **kwargs)


@pytest.mark.parametrize("row", [r for r in OP_DB if r.differentiable], ids=lambda r: r.name)
def test_grad_matches_finite_differences(row):
    samples = _grad_samples(row)
    assert samples, f"{row.name}: differentiable but no sample for gradient checks"
    checked = 0
    for sample in samples:
        original = _copy_args(sample)
        shared = _copy_args(sample)
        args, kwargs = to_dg(type(sample)(shared, sample.kwargs), requires_grad=True)
        if not any(isinstance(a, dg.Tensor) and a.requires_grad for a in args):
            continue
        out = _outputs(row.op(*args, **kwargs))
        assert any(o.requires_grad for o in out), f"{sample}: output does not require grad"
        assert dg.autograd.gradcheck(_fn(row, kwargs), args, atol=row.grad_atol, rtol=row.grad_rtol), str(sample)
        # neither the forward nor the backward pass may write into the inputs
        _assert_unchanged(original, shared, f"{row.name} backward {sample}")
        checked += 1
    assert checked, f"{row.name}: no sample had a float input to differentiate"


def _first_grads(fn, args, v):
    wrt = [a for a in args if isinstance(a, dg.Tensor) and a.requires_grad]
    outs = _outputs(fn(*args))
    return dg.autograd.grad(list(outs), wrt, grad_outputs=v, create_graph=True, allow_unused=True)


@pytest.mark.parametrize("row", [r for r in OP_DB if r.differentiable], ids=lambda r: r.name)
def test_float32_gradients_stay_float32(row):
    """No float64 constant in a vjp may upcast the gradients of float32 inputs (first and second order)."""
    for sample in row.sample_inputs("float32"):
        if not sample.grad:
            continue
        args, kwargs = to_dg(sample, requires_grad=True, share=False)
        wrt = [a for a in args if isinstance(a, dg.Tensor) and a.requires_grad]
        outs = [o for o in _outputs(row.op(*args, **kwargs)) if o.requires_grad]
        if not (wrt and outs):
            continue
        grads = dg.autograd.grad(outs, wrt, grad_outputs=[dg.ones_like(o) for o in outs], allow_unused=True,
                                 create_graph=row.second_order)
        for a, g in zip(wrt, grads):
            assert g is None or (g.dtype == np.float32 and g.shape == a.shape), f"{sample}: grad {g.dtype}{g.shape}"
        again = [dg.sum(g * g) for g in grads if g is not None and g.requires_grad]
        if again:
            for g in dg.autograd.grad(again, wrt, allow_unused=True):
                assert g is None or g.dtype == np.float32, f"{sample}: second-order grad {g.dtype}"


@pytest.mark.parametrize("row", [r for r in OP_DB if r.second_order], ids=lambda r: r.name)
def test_gradgrad_matches_finite_differences(row):
    checked = 0
    for sample in _grad_samples(row):
        args, kwargs = to_dg(sample, requires_grad=True, share=False)
        if not any(isinstance(a, dg.Tensor) and a.requires_grad for a in args):
            continue
        fn = _fn(row, kwargs)
        rng = np.random.default_rng(0)
        v = [dg.tensor(rng.standard_normal(o.shape)) for o in _outputs(fn(*args))]
        grads = _first_grads(fn, args, v)
        if not any(g is not None and g.requires_grad for g in grads):
            # the gradient does not depend on the inputs here (e.g. x * 2.5): it must then be constant
            moved = [a + 0.1 if isinstance(a, dg.Tensor) and a.requires_grad else a for a in args]
            moved = [m.detach().requires_grad_(True) if isinstance(m, dg.Tensor) and m.requires_grad else m
                     for m in moved]
            for g0, g1 in zip(grads, _first_grads(fn, moved, v)):
                if g0 is not None:
                    np.testing.assert_allclose(g0.numpy(), g1.numpy(), rtol=1e-9, atol=1e-12)
            continue
        assert dg.autograd.gradgradcheck(fn, args, atol=row.grad_atol, rtol=row.grad_rtol), str(sample)
        checked += 1
    assert checked, f"{row.name}: marked second_order but no sample has an input-dependent gradient"


def test_table_flags_are_consistent():
    for row in OP_DB:
        assert not (row.second_order and not row.differentiable), row.name
        assert row.ref is not None, row.name
        for dt in row.dtypes:
            assert row.sample_inputs(dt), f"{row.name} has no samples for {dt}"


# ---- dtype rules the table's numpy references do not express --------------------------------------

def test_int_true_division_gives_float32():
    out = dg.tensor([3, 4]) / dg.tensor([2, 8])
    assert out.dtype == np.float32
    np.testing.assert_allclose(out.numpy(), [1.5, 0.5])


@pytest.mark.parametrize("name", ["exp", "log", "sqrt", "sin", "tanh", "sigmoid", "erf", "leaky_relu", "elu",
                                  "gelu", "softplus"])
def test_floating_ops_on_ints_compute_in_float32(name):
    from scipy.special import erf
    x = np.array([1, 2, 3]) if name in ("log", "sqrt") else np.array([-3, -1, 0, 2])
    out = getattr(dg, name)(dg.tensor(x))
    assert out.dtype == np.float32
    v = x.astype(np.float64)
    ref = {"sigmoid": lambda: 1 / (1 + np.exp(-v)), "erf": lambda: erf(v),
           "leaky_relu": lambda: np.where(v > 0, v, 0.01 * v), "elu": lambda: np.where(v > 0, v, np.expm1(v)),
           "gelu": lambda: v * 0.5 * (1 + erf(v / np.sqrt(2))), "softplus": lambda: np.log1p(np.exp(v))}
    expected = ref[name]() if name in ref else getattr(np, name)(v)
    np.testing.assert_allclose(out.numpy(), expected, rtol=1e-6, atol=1e-7)


def test_mean_of_ints_is_float():
    out = dg.mean(dg.tensor([[1, 2], [3, 5]]), axis=0)
    assert out.dtype.kind == "f"
    np.testing.assert_allclose(out.numpy(), [2.0, 3.5])


# ---- convolution and pooling: numpy loops and torch ---------------------------------------------------

CONV2D_CONFIGS = [
    dict(x=(2, 3, 7, 6), w=(4, 3, 3, 2), bias=True),
    dict(x=(1, 2, 8, 8), w=(2, 2, 3, 3), stride=2, padding=1),
    dict(x=(1, 2, 9, 7), w=(4, 2, 2, 3), stride=(2, 1), padding=(1, 2), dilation=(2, 1)),
    dict(x=(2, 6, 6, 6), w=(9, 2, 3, 3), groups=3, bias=True),
    dict(x=(1, 4, 6, 6), w=(4, 1, 3, 3), groups=4, padding=1, dilation=2),  # depthwise
    dict(x=(1, 2, 5, 5), w=(3, 2, 3, 3), padding="same", dilation=1),
]


def _conv_args(cfg, rng, dtype=np.float64):
    x = rng.standard_normal(cfg["x"]).astype(dtype)
    w = rng.standard_normal(cfg["w"]).astype(dtype)
    b = rng.standard_normal(cfg["w"][0]).astype(dtype) if cfg.get("bias") else None
    kw = {k: v for k, v in cfg.items() if k not in ("x", "w", "bias")}
    return x, w, b, kw


@pytest.mark.parametrize("cfg", CONV2D_CONFIGS, ids=range(len(CONV2D_CONFIGS)))
def test_conv2d_matches_numpy_loop(cfg):
    x, w, b, kw = _conv_args(cfg, np.random.default_rng(0))
    out = F.conv2d(dg.tensor(x), dg.tensor(w), None if b is None else dg.tensor(b), **kw)
    np.testing.assert_allclose(out.numpy(), np_conv2d(x, w, b, **kw), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("cfg", CONV2D_CONFIGS, ids=range(len(CONV2D_CONFIGS)))
def test_conv2d_matches_torch(cfg):
    torch = pytest.importorskip("torch")
    x, w, b, kw = _conv_args(cfg, np.random.default_rng(1))
    tx, tw = torch.tensor(x, requires_grad=True), torch.tensor(w, requires_grad=True)
    tb = None if b is None else torch.tensor(b, requires_grad=True)
    tout = torch.nn.functional.conv2d(tx, tw, tb, **kw)
    g = np.random.default_rng(2).standard_normal(tuple(tout.shape))
    tout.backward(torch.tensor(g))
    dx, dw = dg.tensor(x, requires_grad=True), dg.tensor(w, requires_grad=True)
    db = None if b is None else dg.tensor(b, requires_grad=True)
    out = F.conv2d(dx, dw, db, **kw)
    np.testing.assert_allclose(out.numpy(), tout.detach().numpy(), rtol=1e-10, atol=1e-10)
    # and the numpy loop reference agrees with torch, so the table's reference is trustworthy
    np.testing.assert_allclose(np_conv2d(x, w, b, **kw), tout.detach().numpy(), rtol=1e-10, atol=1e-10)
    out.backward(dg.tensor(g))
    np.testing.assert_allclose(dx.grad.numpy(), tx.grad.numpy(), rtol=1e-9, atol=1e-10)
    np.testing.assert_allclose(dw.grad.numpy(), tw.grad.numpy(), rtol=1e-9, atol=1e-10)
    if b is not None:
        np.testing.assert_allclose(db.grad.numpy(), tb.grad.numpy(), rtol=1e-9, atol=1e-10)


CONV1D_CONFIGS = [dict(x=(2, 3, 9), w=(4, 3, 3), bias=True), dict(x=(1, 4, 11), w=(6, 2, 3), stride=2, padding=2,
                                                                   dilation=2, groups=2),
                  dict(x=(1, 2, 6), w=(3, 2, 3), padding="same")]


@pytest.mark.parametrize("cfg", CONV1D_CONFIGS, ids=range(len(CONV1D_CONFIGS)))
def test_conv1d_matches_numpy_loop_and_torch(cfg):
    x, w, b, kw = _conv_args(cfg, np.random.default_rng(3))
    out = F.conv1d(dg.tensor(x), dg.tensor(w), None if b is None else dg.tensor(b), **kw)
    np.testing.assert_allclose(out.numpy(), np_conv1d(x, w, b, **kw), rtol=1e-10, atol=1e-10)
    try:
        import torch
    except ImportError:
        return
    ref = torch.nn.functional.conv1d(torch.tensor(x), torch.tensor(w), None if b is None else torch.tensor(b), **kw)
    np.testing.assert_allclose(out.numpy(), ref.numpy(), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("kw", [dict(kernel_size=2), dict(kernel_size=3, stride=2, padding=1),
                                dict(kernel_size=(2, 3), stride=1, dilation=2)])
def test_pooling_matches_numpy_and_torch(kw):
    rng = np.random.default_rng(4)
    x = rng.permutation(2 * 3 * 7 * 7).reshape(2, 3, 7, 7).astype(np.float64) / 10  # no ties
    dx = dg.tensor(x, requires_grad=True)
    mp = F.max_pool2d(dx, **kw)
    np.testing.assert_allclose(mp.numpy(), np_max_pool2d(x, **kw))
    akw = {k: v for k, v in kw.items() if k != "dilation"}
    ap = F.avg_pool2d(dg.tensor(x), **akw)
    np.testing.assert_allclose(ap.numpy(), np_avg_pool2d(x, **akw), rtol=1e-12)
    try:
        import torch
    except ImportError:
        return
    tx = torch.tensor(x, requires_grad=True)
    tmp = torch.nn.functional.max_pool2d(tx, **kw)
    np.testing.assert_allclose(mp.numpy(), tmp.detach().numpy())
    g = rng.standard_normal(tuple(tmp.shape))
    tmp.backward(torch.tensor(g))
    mp.backward(dg.tensor(g))
    np.testing.assert_allclose(dx.grad.numpy(), tx.grad.numpy(), rtol=1e-12)
    np.testing.assert_allclose(ap.numpy(), torch.nn.functional.avg_pool2d(torch.tensor(x), **akw).numpy(), rtol=1e-12)


# ---- cross entropy and friends against PyTorch's documented formulas ------------------------------------

CE_CASES = [
    dict(),
    dict(reduction="sum"),
    dict(reduction="none"),
    dict(weight=True),
    dict(ignore_index=2),
    dict(ignore_index=2, weight=True),
    dict(label_smoothing=0.1),
    dict(label_smoothing=0.2, weight=True, ignore_index=1),
    dict(label_smoothing=0.3, reduction="none", ignore_index=0),
]


def _ce_inputs(kw, rng, spatial=False):
    n, c = 6, 4
    shape = (n, c, 3) if spatial else (n, c)
    x = rng.standard_normal(shape)
    t = rng.integers(0, c, (n, 3) if spatial else (n,))
    t.reshape(-1)[0] = kw.get("ignore_index", 0) if "ignore_index" in kw else t.reshape(-1)[0]
    kw = dict(kw)
    w = rng.uniform(0.5, 2.0, c) if kw.pop("weight", False) else None
    return x, t, w, kw


def _hand_ce(x, t, w, ignore_index=-100, reduction="mean", label_smoothing=0.0):
    """Written out per sample, straight from PyTorch's docs (classes on axis 1)."""
    n, c = x.shape
    w = np.ones(c) if w is None else w
    losses, denom = [], 0.0
    for i in range(n):
        if t[i] == ignore_index:
            losses.append(0.0)
            continue
        logp = x[i] - np.log(np.sum(np.exp(x[i])))
        y = np.full(c, label_smoothing / c)
        y[t[i]] += 1 - label_smoothing
        losses.append(-np.sum(w * y * logp))
        denom += w[t[i]]
    losses = np.array(losses)
    if reduction == "none":
        return losses
    return losses.sum() / denom if reduction == "mean" else losses.sum()


@pytest.mark.parametrize("kw", CE_CASES, ids=[str(k) for k in CE_CASES])
def test_cross_entropy_indices_hand_formula(kw):
    x, t, w, kw = _ce_inputs(kw, np.random.default_rng(5))
    out = F.cross_entropy(dg.tensor(x), dg.tensor(t), weight=None if w is None else dg.tensor(w), **kw)
    np.testing.assert_allclose(out.numpy(), _hand_ce(x, t, w, **kw), rtol=1e-10)


@pytest.mark.parametrize("kw", CE_CASES, ids=[str(k) for k in CE_CASES])
@pytest.mark.parametrize("spatial", [False, True])
def test_cross_entropy_matches_torch(kw, spatial):
    torch = pytest.importorskip("torch")
    x, t, w, kw = _ce_inputs(kw, np.random.default_rng(6), spatial)
    tx = torch.tensor(x, requires_grad=True)
    ref = torch.nn.functional.cross_entropy(tx, torch.tensor(t), weight=None if w is None else torch.tensor(w), **kw)
    dx = dg.tensor(x, requires_grad=True)
    out = F.cross_entropy(dx, dg.tensor(t), weight=None if w is None else dg.tensor(w), **kw)
    np.testing.assert_allclose(out.numpy(), ref.detach().numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(np_cross_entropy(x, t, w, **kw), ref.detach().numpy(), rtol=1e-10, atol=1e-12)
    g = np.random.default_rng(7).standard_normal(tuple(ref.shape))
    ref.backward(torch.tensor(g))
    out.backward(dg.tensor(g))
    np.testing.assert_allclose(dx.grad.numpy(), tx.grad.numpy(), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("kw", [dict(), dict(label_smoothing=0.2), dict(weight=True, reduction="sum"),
                                dict(weight=True, label_smoothing=0.1, reduction="none")])
def test_cross_entropy_probabilities(kw):
    rng = np.random.default_rng(8)
    x = rng.standard_normal((5, 4))
    p = rng.uniform(size=(5, 4))
    p /= p.sum(1, keepdims=True)
    kw = dict(kw)
    w = rng.uniform(0.5, 2, 4) if kw.pop("weight", False) else None
    out = F.cross_entropy(dg.tensor(x), dg.tensor(p), weight=None if w is None else dg.tensor(w), **kw)
    eps = kw.get("label_smoothing", 0.0)
    y = p * (1 - eps) + eps / 4
    logp = x - np.log(np.exp(x).sum(1, keepdims=True))
    per = -(y * logp * (1 if w is None else w)).sum(1)
    expect = {"mean": per.mean(), "sum": per.sum(), "none": per}[kw.get("reduction", "mean")]
    np.testing.assert_allclose(out.numpy(), expect, rtol=1e-10)
    try:
        import torch
    except ImportError:
        return
    ref = torch.nn.functional.cross_entropy(torch.tensor(x), torch.tensor(p),
                                           weight=None if w is None else torch.tensor(w), **kw)
    np.testing.assert_allclose(out.numpy(), ref.numpy(), rtol=1e-10)


def test_bce_with_logits_matches_torch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(9)
    x, t = rng.standard_normal((4, 3)) * 5, rng.uniform(size=(4, 3))
    w, pw = rng.uniform(0.5, 2, 3), rng.uniform(0.5, 2, 3)
    for kw in (dict(), dict(weight=w, pos_weight=pw, reduction="none"), dict(pos_weight=pw, reduction="sum")):
        ref = torch.nn.functional.binary_cross_entropy_with_logits(
            torch.tensor(x), torch.tensor(t), **{k: torch.tensor(v) if isinstance(v, np.ndarray) else v
                                                  for k, v in kw.items()})
        out = F.binary_cross_entropy_with_logits(dg.tensor(x), dg.tensor(t),
                                                 **{k: dg.tensor(v) if isinstance(v, np.ndarray) else v
                                                    for k, v in kw.items()})
        np.testing.assert_allclose(out.numpy(), ref.numpy(), rtol=1e-10)
        np.testing.assert_allclose(np_bce_with_logits(x, t, **kw), ref.numpy(), rtol=1e-10)


# ---- gradients at ties and kinks: PyTorch's conventions ----------------------------------------------

def test_tie_and_kink_gradients_match_torch():
    torch = pytest.importorskip("torch")
    a, b = np.array([1.0, 2.0, 3.0, 3.0]), np.array([1.0, 5.0, 0.0, 3.0])
    for name in ("maximum", "minimum"):
        ta, tb = torch.tensor(a, requires_grad=True), torch.tensor(b, requires_grad=True)
        getattr(torch, name)(ta, tb).sum().backward()
        da, db = dg.tensor(a, requires_grad=True), dg.tensor(b, requires_grad=True)
        getattr(dg, name)(da, db).sum().backward()
        np.testing.assert_allclose(da.grad.numpy(), ta.grad.numpy(), err_msg=name)
        np.testing.assert_allclose(db.grad.numpy(), tb.grad.numpy(), err_msg=name)
    x = np.array([[1.0, 3.0, 3.0], [2.0, 2.0, 0.0], [-1.0, 0.0, 1.0]])
    cases = [(lambda t: dg.max(t, axis=1), lambda t: torch.amax(t, dim=1)),
             (lambda t: dg.min(t, axis=0), lambda t: torch.amin(t, dim=0)),
             (lambda t: dg.clip(t, 0.0, 1.0), lambda t: torch.clamp(t, 0.0, 1.0)),
             (dg.relu, torch.relu), (dg.abs, torch.abs), (dg.sign, torch.sign)]
    for ours, theirs in cases:
        tx, dx = torch.tensor(x, requires_grad=True), dg.tensor(x, requires_grad=True)
        theirs(tx).sum().backward()
        ours(dx).sum().backward()
        np.testing.assert_allclose(dx.grad.numpy(), tx.grad.numpy())


def test_writing_into_a_single_operand_einsum_leaves_the_input_alone():
    x = dg.tensor(np.arange(6.0).reshape(2, 3))
    for spec in ("ij->ji", "ij->ij", "ij"):
        y = dg.einsum(spec, x)
        y[0, 1] = 100.0
        np.testing.assert_array_equal(x.numpy(), np.arange(6.0).reshape(2, 3), err_msg=spec)


def test_clip_keeps_int_dtype_with_int_bounds():
    x = dg.tensor([1, 5, -3])
    out = dg.clip(x, 0, 2)
    assert out.dtype == np.int64 and out.numpy().tolist() == [1, 2, 0]
    assert dg.clamp(dg.tensor([1, 5], dtype="int32"), max=3).dtype == np.int32


# ---- dropout -------------------------------------------------------------------------------------------

def test_dropout_inactive_in_eval_and_by_default():
    x = dg.tensor(np.random.default_rng(0).standard_normal((20, 30)))
    assert np.array_equal(F.dropout(x, 0.5, training=False).numpy(), x.numpy())
    assert not dg.autograd.is_training()
    assert np.array_equal(F.dropout(x, 0.5).numpy(), x.numpy())  # training=None outside train_mode
    with dg.autograd.predict_mode():
        assert np.array_equal(F.dropout(x, 0.5).numpy(), x.numpy())


@pytest.mark.parametrize("p", [0.2, 0.5, 0.8])
def test_dropout_training_keeps_1_minus_p_and_scales(p):
    dg.manual_seed(123)
    x = dg.tensor(np.random.default_rng(1).uniform(1, 2, (200, 100)), requires_grad=True)
    y = F.dropout(x, p, training=True)
    kept = y.numpy() != 0
    frac = kept.mean()
    n = kept.size
    assert abs(frac - (1 - p)) < 5 * np.sqrt(p * (1 - p) / n), frac  # 5 sigma
    np.testing.assert_allclose(y.numpy()[kept], x.numpy()[kept] / (1 - p), rtol=1e-6)
    # the gradient goes through kept elements with the same scale, and nowhere else
    y.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), kept / (1 - p), rtol=1e-6)


def test_dropout_follows_train_mode_when_training_is_none():
    x = dg.ones(100, 100)
    with dg.autograd.train_mode():
        y = F.dropout(x, 0.5)
    assert 0.4 < (y.numpy() == 0).mean() < 0.6
    with dg.autograd.record(train_mode=True):
        y = F.dropout(x, 0.5)
    assert (y.numpy() == 0).any()
    with dg.autograd.record(train_mode=False):
        y = F.dropout(x, 0.5)
    assert not (y.numpy() == 0).any()


def test_dropout_seeded_is_reproducible_and_p1_zeroes():
    x = dg.ones(10, 10)
    dg.manual_seed(7)
    a = F.dropout(x, 0.3, training=True).numpy()
    dg.manual_seed(7)
    b = F.dropout(x, 0.3, training=True).numpy()
    assert np.array_equal(a, b)
    assert not F.dropout(x, 1.0, training=True).numpy().any()
    with pytest.raises(ValueError):
        F.dropout(x, 1.5, training=True)


# ---- bad input gets a clear dualgraph error naming the op and the shapes ----------------------------------

def _raises(exc, fn, *must_mention):
    with pytest.raises(exc) as info:
        fn()
    assert isinstance(info.value, dg.DualgraphError), f"{type(info.value).__name__} is not a DualgraphError"
    msg = str(info.value)
    for m in must_mention:
        assert m in msg, f"{m!r} not in error message: {msg}"
    return msg


def test_shape_errors_name_op_and_shapes():
    a, b = dg.ones(2, 3), dg.ones(4, 5)
    msg = _raises(ValueError, lambda: a + dg.ones(4), "add")
    assert ("[2, 3]" in msg or "(2, 3)" in msg) and ("[4]" in msg or "(4,)" in msg), msg
    _raises(dg.ShapeError, lambda: dg.matmul(a, b), "matmul", "(2, 3)", "(4, 5)")
    _raises(dg.ShapeError, lambda: dg.concat([a, b], axis=0), "concat", "(2, 3)", "(4, 5)")
    _raises(dg.ShapeError, lambda: dg.reshape(a, (4, 2)), "reshape", "(2, 3)", "(4, 2)")
    _raises(dg.ShapeError, lambda: dg.broadcast_to(a, (3, 3)), "broadcast_to", "(2, 3)", "(3, 3)")
    _raises(dg.ShapeError, lambda: dg.sum(a, axis=2), "sum", "axis 2")
    _raises(dg.ShapeError, lambda: dg.stack([a, b]), "stack")
    _raises(dg.ShapeError, lambda: F.conv2d(dg.ones(1, 3, 5, 5), dg.ones(2, 2, 3, 3)), "conv2d", "3 channels")
    _raises(dg.ShapeError, lambda: F.mse_loss(a, dg.ones(3, 2)), "mse_loss", "(2, 3)", "(3, 2)")
    _raises(dg.ShapeError, lambda: dg.where(dg.ones(2, 3) > 0, a, dg.ones(4)), "where")
    _raises(dg.ShapeError, lambda: dg.einsum("ij,jk->ik", a, b), "einsum")


def test_axis_arguments_out_of_range_are_errors_not_wraparounds():
    x = dg.ones(2, 3)
    _raises(ValueError, lambda: dg.moveaxis(x, 5, 0), "moveaxis", "5")
    _raises(ValueError, lambda: dg.stack([x, x], axis=3), "stack", "3")
    _raises(ValueError, lambda: dg.stack([x, x], axis=-4), "stack", "-4")
    _raises(ValueError, lambda: dg.flatten(dg.ones(2, 3, 4), 2, 1), "flatten", "start_dim")
    _raises(ValueError, lambda: dg.flatten(x, 0, 7), "flatten", "7")
    _raises(ValueError, lambda: dg.expand(dg.ones(3), -1, 3), "expand", "-1")
    _raises(ValueError, lambda: dg.chunk(x, 0), "chunk", "0")
    _raises(ValueError, lambda: dg.permute(x, (0, 5)), "permute", "(0, 5)")  # 5 % 2 == 1 must not pass
    _raises(ValueError, lambda: dg.split(x, [3, -1]), "split", "[3, -1]")  # adds up to 2, still wrong
    _raises(ValueError, lambda: dg.narrow(x, 0, 1, 5), "narrow", "size 2")  # was silently truncated
    np.testing.assert_array_equal(dg.narrow(dg.tensor(np.arange(6.0)), 0, -2, 2).numpy(), [4.0, 5.0])
    assert dg.stack([x, x], axis=-3).shape == (2, 2, 3) and dg.moveaxis(x, -1, 0).shape == (3, 2)


def test_conv_and_pool_reject_non_positive_stride_dilation_kernel():
    x, w = dg.ones(1, 1, 5, 5), dg.ones(1, 1, 3, 3)
    _raises(ValueError, lambda: F.conv2d(x, w, dilation=0), "dilation", "(0, 0)")
    _raises(ValueError, lambda: F.conv2d(x, w, stride=(1, 0)), "stride", "(1, 0)")
    _raises(ValueError, lambda: F.max_pool2d(x, 2, stride=0), "stride")
    _raises(ValueError, lambda: F.avg_pool2d(x, 0), "kernel")


def test_dtype_errors():
    _raises(TypeError, lambda: dg.tensor([1, 2]).requires_grad_(True), "int64")
    _raises(TypeError, lambda: dg.ones(2) & dg.ones(2), "bitwise_and", "float32")
    _raises(IndexError, lambda: dg.one_hot(dg.tensor([0.5, 1.0]), 3), "one_hot", "float32")
    _raises(TypeError, lambda: dg.ones(2) + "a")


def test_index_errors_name_op_and_range():
    x = dg.ones(3, 4)
    _raises(IndexError, lambda: x[3], "getitem", "3", "(3, 4)")
    _raises(IndexError, lambda: x[:, -5], "getitem", "-5")
    _raises(IndexError, lambda: dg.gather(x, 1, dg.tensor([[0, 4]] * 3)), "gather", "4", "(3, 4)")
    _raises(IndexError, lambda: dg.index_select(x, 0, dg.tensor([0, 3])), "index_select", "3")
    _raises(IndexError, lambda: dg.embedding(dg.tensor([5]), x), "embedding", "5")
    _raises(IndexError, lambda: dg.embedding(dg.tensor([0, -1]), x), "embedding", "-1")  # no wrap-around
    _raises(IndexError, lambda: dg.one_hot(dg.tensor([0, 3]), 3), "one_hot", "3")
    _raises(IndexError, lambda: dg.one_hot(dg.tensor([-1, 2])), "one_hot", "-1")  # was a silent zero row
    _raises(IndexError, lambda: dg.scatter_add(x, 0, dg.tensor([[3, 0, 0, 0]]), dg.ones(1, 4)), "scatter_add")
    _raises(ValueError, lambda: dg.gather(x, 1, dg.tensor([[0]] * 4)), "gather", "(4, 1)", "(3, 4)")
    _raises(ValueError, lambda: dg.take_along_axis(x, dg.tensor([[0]] * 2), 1), "take_along_axis")
    _raises(IndexError, lambda: F.cross_entropy(dg.ones(2, 3), dg.tensor([0, 3])), "nll_loss", "[0, 3)", "[3]")
    _raises(IndexError, lambda: x[dg.tensor([0, 7])], "getitem")


def test_setitem_errors():
    x = dg.zeros(3, 4)
    _raises(ValueError, lambda: x.__setitem__(slice(0, 2), dg.ones(3)), "setitem", "(3, 4)")
    _raises(IndexError, lambda: x.__setitem__(5, 1.0), "5")


@pytest.mark.parametrize("src_shape", [(2, 3), (2, 1)])
def test_scatter_add_src_grad_with_an_index_smaller_than_the_input(src_shape):
    """PyTorch's scatter_add lets index/src be smaller than the input outside `dim`; src's gradient reads
    the output gradient at the positions written (grad.gather(dim, index)), not a broadcast of it."""
    x = np.random.default_rng(0).random((4, 5))
    index = np.array([[0, 1, 2], [3, 0, 1]])[:, :src_shape[1]]
    weight = np.arange(20.0).reshape(4, 5)
    ts = dg.tensor(np.ones(src_shape), requires_grad=True)
    (dg.scatter_add(dg.tensor(x), 0, dg.tensor(index), ts) * dg.tensor(weight)).sum().backward()
    expected = np.array([[weight[index[i, j], j] for j in range(src_shape[1])] for i in range(2)])
    np.testing.assert_array_equal(ts.grad.numpy(), expected)
    torch = pytest.importorskip("torch")
    ps = torch.ones(src_shape, dtype=torch.float64, requires_grad=True)
    (torch.tensor(x).scatter_add(0, torch.tensor(index), ps) * torch.tensor(weight)).sum().backward()
    np.testing.assert_array_equal(ts.grad.numpy(), ps.grad.numpy())


@pytest.mark.parametrize("dtype", ["float16", "float32", "float64"])
@pytest.mark.parametrize("cond_shape", [(5, 7), (1, 7)], ids=["same-shape", "broadcast"])
def test_where_with_a_zero_scalar_matches_numpy(dtype, cond_shape):
    # where(c, a, 0) of a bool mask of a's shape runs the where_zero kernel (ReLU's and where's own
    # backward); a broadcast mask takes numpy's where: both give numpy's values, NaN, inf and -0.0 kept
    rng = np.random.default_rng(0)
    a = rng.standard_normal((5, 7)).astype(dtype)
    a.flat[:4] = [np.nan, np.inf, -np.inf, -0.0]
    c = rng.random(cond_shape) < 0.5
    c.flat[:4] = True
    got = dg.where(dg.tensor(c), dg.tensor(a), 0.0).numpy()
    want = np.where(c, a, a.dtype.type(0))
    assert got.dtype == want.dtype
    np.testing.assert_array_equal(got, want)
    assert np.array_equal(np.signbit(got), np.signbit(want))


def test_relu_and_where_gradients_route_to_the_chosen_side():
    x = dg.tensor([-1.0, 0.0, 2.0, float("nan"), float("inf")], requires_grad=True)
    dg.relu(x).backward(dg.tensor([1.0, 2.0, 3.0, 4.0, 5.0]))
    np.testing.assert_array_equal(x.grad.numpy(), [0.0, 0.0, 3.0, 0.0, 5.0])  # PyTorch's: x > 0 only
    c = dg.tensor([True, False, True])
    a, b = dg.ones(3, requires_grad=True), dg.ones(3, requires_grad=True)
    dg.where(c, a, b).backward(dg.tensor([1.0, 2.0, 3.0]))
    np.testing.assert_array_equal(a.grad.numpy(), [1.0, 0.0, 3.0])
    np.testing.assert_array_equal(b.grad.numpy(), [0.0, 2.0, 0.0])
