"""The registry is complete: every primitive has its rules (forward, infer, vjp or an explicit
'not differentiable', traits), is exercised by at least one row of the op table, and its shape/dtype
inference agrees with what the eager forward produced for every call the table makes."""
import os
import sys

import numpy as np
import pytest

import dualgraph as dg
from dualgraph.graph.avals import Aval, Dim
from dualgraph.ops import REGISTRY

HERE = os.path.dirname(__file__)
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
from op_db import NON_DIFFERENTIABLE, OP_DB, OPS, coverage, graph_only, record_primitives, to_dg  # noqa: E402

TRAITS = ("elementwise", "broadcasting", "pure", "commutative", "foldable", "view", "saves_output")


@pytest.fixture(scope="module")
def cov():
    return coverage()


@pytest.fixture(scope="module")
def calls_by_op(cov):
    by_op = {}
    for row_name, c in cov.items():
        for op, arrays, attrs, out in c.calls:
            by_op.setdefault(op.name, []).append((row_name, arrays, attrs, out))
    return by_op


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_op_has_every_rule(name):
    op = REGISTRY[name]
    assert op.name == name
    assert callable(op.forward), f"{name}: no forward"
    assert callable(op.infer), f"{name}: no infer rule"
    if op.vjp is None:
        assert name in NON_DIFFERENTIABLE, (
            f"{name} has vjp=None; give it a vjp, or list it in op_db.NON_DIFFERENTIABLE if it is "
            f"deliberately not differentiable")
    else:
        assert callable(op.vjp), f"{name}: vjp is neither callable nor None"
        assert name not in NON_DIFFERENTIABLE, f"{name} has a vjp but is listed as non-differentiable"
    for trait in TRAITS:
        assert isinstance(getattr(op, trait), bool), f"{name}.{trait} must be a bool"
    assert isinstance(op.n_out, int) and (op.n_out >= 1 or op.n_out == -1), f"{name}: n_out {op.n_out}"
    if op.n_out == -1:  # variadic: only ops whose outputs come from their subgraphs
        assert graph_only(op), f"{name}: n_out=-1 (variadic) needs subgraphs that define the outputs"
    assert op.grad_name.endswith("Backward0")
    if op.commutative:
        assert not op.view, f"{name}: a commutative op cannot be a view of input 0"


def test_non_differentiable_list_has_no_stale_names():
    assert NON_DIFFERENTIABLE <= set(REGISTRY), sorted(NON_DIFFERENTIABLE - set(REGISTRY))


def test_every_op_is_covered_by_a_row(cov):
    seen = set().union(*(c.all for c in cov.values()))
    missing = sorted(n for n in set(REGISTRY) - seen if not graph_only(REGISTRY[n]))
    assert not missing, f"primitives no row of tests/op_db.py exercises (add a row): {missing}"


# rows whose op returns its input unchanged (no primitive runs): checked to really be the identity
IDENTITY_ROWS = {"dropout_eval", "dropout_p0", "squeeze_noop"}


def test_every_row_exercises_a_primitive(cov):
    empty = sorted(name for name, c in cov.items() if not c.forward)
    assert set(empty) == IDENTITY_ROWS, f"rows whose forward runs no primitive: {empty}"
    for name in IDENTITY_ROWS:
        row = OPS[name]
        for s in row.sample_inputs("float32"):
            args, kwargs = to_dg(s)
            assert row.op(*args, **kwargs) is args[0], name


def test_fast_path_operators_are_seen():
    """The recorder sees operators that skip apply (else coverage and infer checks would miss them)."""
    calls = record_primitives(lambda: dg.ones(2) * dg.ones(2) + 1.0 - dg.ones(2) / 2.0)
    assert {op.name for op, *_ in calls} >= {"mul", "add", "sub", "div"}


def test_differentiable_rows_run_a_vjp(cov):
    """A row marked differentiable must reach at least one primitive with a vjp."""
    for row in OP_DB:
        if row.differentiable and row.name not in IDENTITY_ROWS:
            assert any(REGISTRY[n].vjp is not None for n in cov[row.name].forward), row.name


def _aval(a):
    if isinstance(a, (np.ndarray, np.generic)):
        return Aval(np.shape(a), a.dtype)
    if hasattr(a, "shape") and hasattr(a, "dtype"):  # a cupy array
        return Aval(a.shape, a.dtype)
    return a


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_infer_agrees_with_eager(name, calls_by_op):
    op = REGISTRY[name]
    calls = calls_by_op.get(name, [])
    if not calls and graph_only(op):
        pytest.skip(f"{name} exists only in traced graphs; the tracing suite checks it")
    if not calls:
        pytest.skip(f"{name} is not exercised (test_every_op_is_covered_by_a_row reports it)")
    seen = set()
    for row_name, arrays, attrs, out in calls:
        key = (tuple(str(_aval(a)) for a in arrays), repr(sorted(attrs.items(), key=lambda kv: kv[0])))
        if key in seen:
            continue
        seen.add(key)
        inferred = op.infer(*[_aval(a) for a in arrays], **attrs)
        outs = out if op.n_out > 1 else (out,)
        infs = inferred if op.n_out > 1 else (inferred,)
        for o, i in zip(outs, infs):
            o = np.asarray(o) if not hasattr(o, "shape") else o
            assert isinstance(i, Aval), f"{name}.infer returned {type(i).__name__}"
            assert len(i.shape) == len(o.shape) and all(
                isinstance(d, Dim) or d == e for d, e in zip(i.shape, o.shape)), (
                f"{name} (row {row_name}): infer says shape {tuple(i.shape)}, eager gave {tuple(o.shape)} "
                f"for inputs {[str(_aval(a)) for a in arrays]} attrs {attrs}")
            assert i.dtype == o.dtype, (
                f"{name} (row {row_name}): infer says dtype {i.dtype}, eager gave {o.dtype} "
                f"for inputs {[str(_aval(a)) for a in arrays]} attrs {attrs}")


def test_coverage_doc_is_up_to_date(cov):
    sys.path.insert(0, os.path.join(ROOT, "tools"))
    try:
        import gen_op_coverage
    finally:
        sys.path.pop(0)
    path = os.path.join(ROOT, "docs", "op_coverage.md")
    with open(path) as f:
        committed = f.read()
    assert gen_op_coverage.render(cov) == committed, (
        "docs/op_coverage.md is stale: run `.venv/bin/python tools/gen_op_coverage.py`")


# ops whose rule keeps a leading (batch) axis whatever the attrs, besides elementwise ones
BATCH_PRESERVING = {"unfold", "fold"}


def test_infer_keeps_a_symbolic_batch_dim(calls_by_op):
    """Tracing with a dynamic batch axis: a symbolic leading dim passes through the rules unchanged."""
    checked = set()
    for name, calls in calls_by_op.items():
        op = REGISTRY[name]
        for row_name, arrays, attrs, out in calls:
            tens = [a for a in arrays if isinstance(a, np.ndarray)]
            if op.n_out != 1 or not tens or any(
                    a.ndim != tens[0].ndim or a.ndim == 0 or a.shape[0] != tens[0].shape[0] for a in tens):
                continue
            pads_batch = name == "pad" and tuple(attrs["pad_width"][0]) != (0, 0)
            if not (op.elementwise or name in BATCH_PRESERVING or name == "pad") or pads_batch:
                continue
            n = Dim("N")
            avals = [Aval((n,) + a.shape[1:], a.dtype) if isinstance(a, np.ndarray) else a for a in arrays]
            got = op.infer(*avals, **attrs)
            assert got.shape[0] is n and tuple(got.shape[1:]) == np.shape(out)[1:], (
                f"{name} (row {row_name}): infer gives {got} for {avals} {attrs}; eager shape {np.shape(out)}")
            checked.add(name)
    assert {"add", "mul", "exp", "pad", "unfold", "where"} <= checked, sorted(checked)


def test_only_view_ops_share_memory_with_their_input(cov):
    """An op not flagged `view` must not return its input's memory: writing into the result would
    change the input silently, and without a shared version counter autograd would not notice."""
    for row_name, c in cov.items():
        for op, arrays, attrs, out in c.calls:
            for o in (out if isinstance(out, tuple) else (out,)):
                if not isinstance(o, np.ndarray) or o.size == 0:
                    continue
                for i, a in enumerate(arrays):
                    if isinstance(a, np.ndarray) and np.shares_memory(o, a):
                        assert op.view and i == 0, (
                            f"{op.name} (row {row_name}, attrs {attrs}) returns memory of input {i} but is "
                            f"not a view op of that input")


def _same(a, b):
    a, b = np.asarray(a), np.asarray(b)
    return a.shape == b.shape and a.dtype == b.dtype and np.array_equal(a, b, equal_nan=a.dtype.kind in "fc")


def _first_calls(calls, limit=6):
    """A few distinct calls per op (by input shapes/dtypes and attrs), to keep the trait checks cheap."""
    seen, out = set(), []
    for call in calls:
        _, arrays, attrs, _ = call
        key = (tuple(str(_aval(a)) for a in arrays), repr(sorted(attrs.items(), key=lambda kv: kv[0])))
        if key not in seen and (limit is None or len(out) < limit):
            seen.add(key)
            out.append(call)
    return out


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_traits_hold_on_the_table_samples(name, calls_by_op):
    """The traits the graph passes trust: pure ops are deterministic (CSE, folding), commutative ops
    ignore argument order, elementwise ops commute with any permutation of positions (fusion)."""
    op = REGISTRY[name]
    calls = _first_calls(calls_by_op.get(name, []))
    if not calls:
        pytest.skip(f"{name} is not exercised eagerly")
    rng = np.random.default_rng(0)
    for row_name, arrays, attrs, out in calls:
        where = f"{name} (row {row_name}) on {[str(_aval(a)) for a in arrays]} {attrs}"
        again = op.forward(np, *arrays, **attrs)
        if op.pure:
            assert all(_same(a, b) for a, b in zip(again if op.n_out > 1 else (again,),
                                                    out if op.n_out > 1 else (out,))), f"pure but not deterministic: {where}"
        else:
            assert not _same(again, out) or np.size(out) <= 1, f"marked impure but repeats exactly: {where}"
        if op.commutative and len(arrays) == 2:
            assert _same(op.forward(np, arrays[1], arrays[0], **attrs), out), f"not commutative: {where}"
        tensors = [a for a in arrays if isinstance(a, np.ndarray)]
        if op.elementwise and op.n_out == 1 and tensors and all(a.shape == np.shape(out) for a in tensors) \
                and np.size(out) > 1:
            perm = rng.permutation(np.size(out))
            shuffled = [a.reshape(-1)[perm].reshape(a.shape) if isinstance(a, np.ndarray) else a for a in arrays]
            got = op.forward(np, *shuffled, **attrs)
            assert _same(got, np.asarray(out).reshape(-1)[perm].reshape(np.shape(out))), f"not elementwise: {where}"


def test_shape_rules_with_symbolic_dims():
    n = Dim("N")
    x = Aval((n, 3, 4), "float32")
    flat = REGISTRY["reshape"].infer(x, shape=(-1, 12))
    assert isinstance(flat.shape[0], Dim) and flat.shape[1] == 12  # never a literal -1
    assert REGISTRY["reshape"].infer(x, shape=(n, -1)).shape == (n, 12)
    assert REGISTRY["reshape"].infer(x, shape=(n, -1, 2)).shape == (n, 6, 2)
    both = REGISTRY["concat"].infer(x, x, axis=0)
    assert isinstance(both.shape[0], Dim) and both.shape[0] is not n, both  # 2N is not N
    assert REGISTRY["concat"].infer(x, x, axis=1).shape == (n, 6, 4)


def test_traced_reshape_and_concat_with_a_dynamic_batch():
    fn = pytest.importorskip("dualgraph.function")
    g = fn.function(lambda x, y: x.reshape(-1, 6) + y,
                    input_signature=[fn.TensorSpec((None, 3), "float32"), fn.TensorSpec((2, 6), "float32")])
    np.testing.assert_array_equal(g(dg.ones(4, 3), dg.ones(2, 6)).numpy(), np.full((2, 6), 2.0, np.float32))
    k = fn.function(lambda x: dg.concat([x, x], 0) * 2.0, input_signature=[fn.TensorSpec(("n", 3), "float32")])
    assert k(dg.ones(2, 3)).shape == (4, 3) and k(dg.ones(5, 3)).shape == (10, 3)


def test_rules_stay_right_when_any_input_dim_is_symbolic(calls_by_op):
    """For every table call and every input dim > 1, make that dim symbolic and re-run the rule: a
    concrete output dim must be the eager one (a rule must not guess from a probe size), and the
    same symbolic dim may only come out where the eager size equals the one it replaced."""
    problems = {}
    for name, calls in calls_by_op.items():
        op = REGISTRY[name]
        if op.n_out != 1:
            continue
        for row_name, arrays, attrs, out in _first_calls(calls, limit=None):
            eager = np.shape(out)
            for i, a in enumerate(arrays):
                for axis, size in enumerate(a.shape if isinstance(a, np.ndarray) else ()):
                    if size <= 1:
                        continue
                    n = Dim("N")
                    avals = [Aval(tuple(n if (j, k) == (i, axis) else s for k, s in enumerate(b.shape)), b.dtype)
                             if isinstance(b, np.ndarray) else b for j, b in enumerate(arrays)]
                    try:
                        got = op.infer(*avals, **attrs)
                    except (dg.ShapeError, IndexError):
                        continue  # e.g. a concrete mask against a now-symbolic axis: rejected, fine
                    where = f"{name} (row {row_name}) with input {i} axis {axis} symbolic: {got}, eager {eager}"
                    ok = len(got.shape) == len(eager) and all(
                        (d is not n or e == size) if isinstance(d, Dim) else d == e
                        for d, e in zip(got.shape, eager))
                    if not ok:
                        problems.setdefault(name, where)
    assert not problems, "\n".join(problems.values())


def test_traced_slice_of_a_dynamic_axis_is_not_frozen_at_the_probe_size():
    fn = pytest.importorskip("dualgraph.function")
    f = fn.function(lambda x: x[1:].mean(0), input_signature=[fn.TensorSpec((None, 3), "float32")])
    for n in (4, 10):
        x = np.arange(3 * n, dtype=np.float32).reshape(n, 3)
        np.testing.assert_allclose(f(dg.tensor(x)).numpy(), x[1:].mean(0), rtol=1e-6)
