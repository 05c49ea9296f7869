"""Type promotion follows PyTorch (torch.result_type), not numpy, in every mode.

A hand-written table of the key cases runs without torch, eagerly, traced by @dg.function and
exported to ONNX. With torch installed, every pair of supported dtypes x {dimensioned tensor, 0-d
tensor, Python scalar} goes through each binary op, and the dtype and values are compared with
torch's own op on the same values: eagerly, traced, and in the exported model run by onnxruntime.
"""
import itertools
import operator

import numpy as np
import pytest

import dualgraph as dg
from dualgraph import dtypes as dgt

DTYPES = ["float16", "float32", "float64", "int32", "int64", "bool", "uint8", "int8", "int16"]
SCALARS = [True, 2, 2.5]

# Operand values keep every op defined in every dtype: no zero divisor, no negative exponent, powers
# that fit int8, and (for bools) a right operand that is all True.
LHS = {"d": [3, 1, 2], "0": 3}
RHS = {"d": [2, 1, 3], "0": 2}
LHS_BOOL = {"d": [True, False, True], "0": True}
RHS_BOOL = {"d": [True, True, True], "0": True}
COND = [True, False, True]


def _values(kind, dtype, side):
    if dtype == "bool":
        return (LHS_BOOL if side == 0 else RHS_BOOL)[kind]
    return (LHS if side == 0 else RHS)[kind]


def operand_specs():
    """("d", dtype): a [3] tensor, ("0", dtype): a 0-d tensor, ("s", value): a Python scalar."""
    return [(k, d) for k in ("d", "0") for d in DTYPES] + [("s", v) for v in SCALARS]


def pairs():
    return [(a, b) for a, b in itertools.product(operand_specs(), repeat=2) if not (a[0] == b[0] == "s")]


def make_dg(spec, side):
    kind, d = spec
    if kind == "s":
        return d
    return dg.tensor(np.array(_values(kind, d, side), dtype=d))


def _id(spec):
    kind, d = spec
    return f"{d!r}" if kind == "s" else f"{d}[{'3' if kind == 'd' else ''}]"


def _np_dtype(t):
    return np.dtype(str(t).removeprefix("torch."))


# ---- the rule itself, hand-written (no torch) -------------------------------------------------------

def d(dtype):
    return dg.ones(3, dtype=dtype)


def z(dtype):
    return dg.tensor(1, dtype=dtype)


KEY_CASES = [
    # (description, lhs, rhs, op, expected dtype)
    ("float32[n] * int64[n]", lambda: d("float32"), lambda: d("int64"), operator.mul, "float32"),
    ("int64[n] * float32[n]", lambda: d("int64"), lambda: d("float32"), operator.mul, "float32"),
    ("float16[n] + int32[n]", lambda: d("float16"), lambda: d("int32"), operator.add, "float16"),
    ("float32[n] + float64[n]", lambda: d("float32"), lambda: d("float64"), operator.add, "float64"),
    ("float32[n] * float64[] (0-d does not promote)", lambda: d("float32"), lambda: z("float64"), operator.mul,
     "float32"),
    ("float16[n] + float32[]", lambda: d("float16"), lambda: z("float32"), operator.add, "float16"),
    ("int32[n] * float64[] (a higher category does)", lambda: d("int32"), lambda: z("float64"), operator.mul,
     "float64"),
    ("int64[n] * float64[]", lambda: d("int64"), lambda: z("float64"), operator.mul, "float64"),
    ("uint8[n] + int8[] (same category)", lambda: d("uint8"), lambda: z("int8"), operator.add, "uint8"),
    ("bool[n] + int8[]", lambda: d("bool"), lambda: z("int8"), operator.add, "int8"),
    ("float32[] + float64[] (both 0-d)", lambda: z("float32"), lambda: z("float64"), operator.add, "float64"),
    ("int64[n] + 2.5 (weak float: default dtype)", lambda: d("int64"), lambda: 2.5, operator.add, "float32"),
    ("int32[] * 2.5", lambda: z("int32"), lambda: 2.5, operator.mul, "float32"),
    ("float16[n] * 2.5", lambda: d("float16"), lambda: 2.5, operator.mul, "float16"),
    ("float64[] * 2", lambda: z("float64"), lambda: 2, operator.mul, "float64"),
    ("uint8[n] + 3 (weak int)", lambda: d("uint8"), lambda: 3, operator.add, "uint8"),
    ("int8[n] * 2", lambda: d("int8"), lambda: 2, operator.mul, "int8"),
    ("bool[n] + 2", lambda: d("bool"), lambda: 2, operator.add, "int64"),
    ("bool[n] * 2.5", lambda: d("bool"), lambda: 2.5, operator.mul, "float32"),
    ("uint8[n] + int8[n]", lambda: d("uint8"), lambda: d("int8"), operator.add, "int16"),
    ("bool[n] + bool[n]", lambda: d("bool"), lambda: d("bool"), operator.add, "bool"),
    ("bool[n] * True", lambda: d("bool"), lambda: True, operator.mul, "bool"),
    ("int64[n] / int64[n] (true division)", lambda: d("int64"), lambda: d("int64"), operator.truediv, "float32"),
    ("int32[n] / 2", lambda: d("int32"), lambda: 2, operator.truediv, "float32"),
    ("bool[n] / bool[n]", lambda: d("bool"), lambda: d("bool"), operator.truediv, "float32"),
    ("float16[n] / int64[n]", lambda: d("float16"), lambda: d("int64"), operator.truediv, "float16"),
    ("int32[n] / float64[]", lambda: d("int32"), lambda: z("float64"), operator.truediv, "float64"),
    ("int64[n] // 2", lambda: d("int64"), lambda: 2, operator.floordiv, "int64"),
    ("int32[n] // 2.5", lambda: d("int32"), lambda: 2.5, operator.floordiv, "float32"),
    ("int64[n] % float32[n]", lambda: d("int64"), lambda: d("float32"), operator.mod, "float32"),
    ("int64[n] ** 2.5", lambda: d("int64"), lambda: 2.5, operator.pow, "float32"),
    ("bool[n] ** 2", lambda: d("bool"), lambda: 2, operator.pow, "int64"),
    ("2.5 ** int32[n]", lambda: 2.5, lambda: d("int32"), operator.pow, "float32"),
    ("float32[n] ** float64[]", lambda: d("float32"), lambda: z("float64"), operator.pow, "float32"),
    ("maximum(int32[n], float16[n])", lambda: d("int32"), lambda: d("float16"), dg.maximum, "float16"),
    ("minimum(float32[n], float64[])", lambda: d("float32"), lambda: z("float64"), dg.minimum, "float32"),
    ("where(c, int64[n], 2.5)", lambda: d("int64"), lambda: 2.5,
     lambda a, b: dg.where(dg.tensor(COND), a, b), "float32"),
    ("where(c, float32[n], float64[])", lambda: d("float32"), lambda: z("float64"),
     lambda a, b: dg.where(dg.tensor(COND), a, b), "float32"),
    ("where(c, bool[n], 2)", lambda: d("bool"), lambda: 2, lambda a, b: dg.where(dg.tensor(COND), a, b), "int64"),
    ("int64[n] < 2.5", lambda: d("int64"), lambda: 2.5, operator.lt, "bool"),
    ("bool[n] & int32[n] (bitwise, as PyTorch)", lambda: d("bool"), lambda: d("int32"), operator.and_, "int32"),
    ("clamp(int64[n], 0.5)", lambda: d("int64"), lambda: 0.5, lambda a, b: dg.clamp(a, b), "float32"),
    ("int64[2,2] @ float32[2,2]", lambda: dg.ones((2, 2), dtype="int64"), lambda: dg.ones((2, 2)),
     operator.matmul, "float32"),
]


@pytest.mark.parametrize("case", KEY_CASES, ids=[c[0] for c in KEY_CASES])
def test_key_cases_eager_traced_and_exported(case):
    _, lhs, rhs, op, expected = case
    a, b = lhs(), rhs()
    assert op(a, b).dtype == np.dtype(expected)
    tensors = [x for x in (a, b) if isinstance(x, dg.Tensor)]

    def fn(*ts):
        it = iter(ts)
        return op(*(next(it) if isinstance(x, dg.Tensor) else x for x in (a, b)))
    eager = fn(*tensors)
    traced = dg.function(fn)(*tensors)
    assert traced.dtype == np.dtype(expected)
    np.testing.assert_array_equal(traced.numpy(), eager.numpy())
    ort = pytest.importorskip("onnxruntime")
    model = dg.onnx.export(fn, tuple(tensors))
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    (got,) = sess.run(None, {i.name: t.numpy() for i, t in zip(sess.get_inputs(), tensors)})
    assert got.dtype == np.dtype(expected)
    np.testing.assert_array_equal(got, eager.numpy())


def test_result_type_function():
    rt = dgt.result_type
    f32, i64 = np.ones(2, np.float32), np.ones(2, np.int64)
    assert rt(f32, i64) == np.float32
    assert rt(f32, np.float64(1.0)) == np.float32          # a numpy scalar counts as a Python number
    assert rt(np.ones(2, np.int32), np.array(1.0)) == np.float64   # a 0-d array is a 0-d tensor
    assert rt(2, 2.5) == np.float32 and rt(1, 2) == np.int64 and rt(True, False) == np.bool_
    assert rt(i64, None, 2.5) == np.float32
    assert dgt.promote_types(np.dtype("uint8"), np.dtype("int8")) == np.int16


def test_where_of_two_scalars_takes_default_dtypes():
    c = dg.tensor(COND)
    assert dg.where(c, 2.5, 3).dtype == np.float32
    assert dg.where(c, 1, 2).dtype == np.int64
    assert dg.where(c, 1, 2.5).dtype == np.float32


def test_bool_subtraction_and_bool_floordiv_are_dtype_errors():
    b = dg.tensor(COND)
    for f in (lambda: b - b, lambda: b - 1, lambda: 1.5 - b, lambda: b // b, lambda: b % True, lambda: b ** b,
              lambda: dg.ones(3) & dg.tensor([1, 2, 3])):
        with pytest.raises(dg.DTypeError):
            f()
    with pytest.raises(dg.DTypeError, match="sub"):
        dg.function(lambda x: x - 1)(b)


def test_gradients_keep_each_inputs_dtype():
    # float32[n] * float64[] is float32; the 0-d float64 input still gets a float64 gradient
    x = dg.tensor([1.0, 2.0, 3.0], requires_grad=True)
    s = dg.tensor(2.0, dtype="float64", requires_grad=True)
    y = (x * s).sum()
    assert y.dtype == np.float32
    y.backward()
    assert x.grad.dtype == np.float32 and s.grad.dtype == np.float64
    assert s.grad.item() == 6.0 and x.grad.tolist() == [2.0, 2.0, 2.0]

    def step(x, s):
        y = (x * s).sum()
        y.backward()
        return y
    x2 = dg.tensor([1.0, 2.0, 3.0], requires_grad=True)
    s2 = dg.tensor(2.0, dtype="float64", requires_grad=True)
    assert dg.function(step)(x2, s2).dtype == np.float32
    assert s2.grad.dtype == np.float64 and s2.grad.item() == 6.0


@pytest.mark.parametrize("n", [7, 4096])
def test_fused_chains_of_mixed_dtypes_match_eager(n):
    # long enough chains to fuse (and, at 4096 elements, to be candidates for the C kernels)
    rng = np.random.default_rng(0)
    x = dg.tensor(rng.uniform(0.5, 2.0, n).astype(np.float32))
    i = dg.tensor(rng.integers(1, 5, n))
    h = dg.tensor(rng.uniform(0.5, 2.0, n).astype(np.float16))
    s = dg.tensor(1.5, dtype="float64")

    def chain(x, i, h, s):
        return ((x * i + 2.5) * s - x) / (i + 1), (h * s + i) * 0.5 + h, dg.where(x > 1.0, i * 2.5, x * s)
    eager = chain(x, i, h, s)
    traced = dg.function(chain)(x, i, h, s)
    assert [t.dtype for t in eager] == [np.float32, np.float16, np.float32]
    for e, t in zip(eager, traced):
        assert t.dtype == e.dtype
        np.testing.assert_allclose(t.numpy(), e.numpy(), rtol=1e-3 if e.dtype == np.float16 else 1e-6)


def test_exported_model_casts_mixed_operands():
    onnx = pytest.importorskip("onnx")
    model = dg.onnx.export(lambda a, b: a * b, (d("float32"), d("int64")))
    casts = [n for n in model.graph.node if n.op_type == "Cast"]
    assert len(casts) == 1 and casts[0].attribute[0].i == onnx.TensorProto.FLOAT
    assert model.graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT


# ---- every pair, against PyTorch -------------------------------------------------------------------

def _torch():
    return pytest.importorskip("torch")


def make_torch(spec, side):
    torch = _torch()
    kind, dt = spec
    if kind == "s":
        return dt
    return torch.tensor(_values(kind, dt, side), dtype=getattr(torch, dt))


def _torch_extremum(fn):
    def run(a, b):
        torch = _torch()
        # torch.maximum takes tensors only: a Python number promotes as torch.result_type says, then
        # maximum runs in that dtype (torch.clamp(x, min=number) would be the same, but has no bool kernel)
        if not isinstance(a, torch.Tensor):
            a, b = b, a
        if not isinstance(b, torch.Tensor):
            rt = torch.result_type(a, b)
            return getattr(torch, fn)(a.to(rt), torch.tensor(b, dtype=rt))
        return getattr(torch, fn)(a, b)
    return run


def _torch_where(a, b):
    torch = _torch()
    return torch.where(torch.tensor(COND), a, b)


def _dg_where(a, b):
    return dg.where(dg.tensor(COND), a, b)


OPS = {
    "add": (operator.add, operator.add),
    "sub": (operator.sub, operator.sub),
    "mul": (operator.mul, operator.mul),
    "truediv": (operator.truediv, operator.truediv),
    "floordiv": (operator.floordiv, operator.floordiv),
    "remainder": (operator.mod, operator.mod),
    "pow": (operator.pow, operator.pow),
    "maximum": (dg.maximum, _torch_extremum("maximum")),
    "minimum": (dg.minimum, _torch_extremum("minimum")),
    "eq": (operator.eq, operator.eq),
    "lt": (operator.lt, operator.lt),
    "ge": (operator.ge, operator.ge),
    "where": (_dg_where, _torch_where),
    "bitwise_and": (operator.and_, operator.and_),
    "bitwise_xor": (operator.xor, operator.xor),
}


def _reference(op, a_spec, b_spec):
    """torch's result as a numpy array, or the exception torch raised."""
    try:
        out = OPS[op][1](make_torch(a_spec, 0), make_torch(b_spec, 1))
    except (RuntimeError, TypeError) as e:
        return e
    return out.numpy()


def _tol(dt):
    return {"float16": 2e-3, "float32": 1e-6, "float64": 1e-12}.get(str(dt), 0)


def _check(got, want, what):
    got = np.asarray(got)
    assert got.dtype == want.dtype, f"{what}: dtype {got.dtype}, PyTorch {want.dtype}"
    assert got.shape == want.shape, f"{what}: shape {got.shape}, PyTorch {want.shape}"
    if want.dtype.kind == "f":
        np.testing.assert_allclose(got, want, rtol=_tol(want.dtype), err_msg=what)
    else:
        np.testing.assert_array_equal(got, want, err_msg=what)


def _cases(op):
    ok, errors = [], []
    for a, b in pairs():
        ref = _reference(op, a, b)
        (errors if isinstance(ref, Exception) else ok).append((a, b, ref))
    return ok, errors


def _inputs(cases):
    """The tensor operands of all cases, one per distinct (spec, side), and a function of them computing
    every case (one trace and one exported model per op instead of one per case)."""
    keys = []
    for a, b, _ in cases:
        for side, spec in ((0, a), (1, b)):
            if spec[0] != "s" and (spec, side) not in keys:
                keys.append((spec, side))
    return keys, [make_dg(spec, side) for spec, side in keys]


def _program(op, cases, keys):
    index = {k: i for i, k in enumerate(keys)}
    fn = OPS[op][0]

    def prog(*ts):
        outs = []
        for a, b, _ in cases:
            x = a[1] if a[0] == "s" else ts[index[(a, 0)]]
            y = b[1] if b[0] == "s" else ts[index[(b, 1)]]
            outs.append(fn(x, y))
        return tuple(outs)
    return prog


@pytest.mark.parametrize("op", list(OPS))
def test_every_pair_eager_matches_pytorch(op):
    ok, errors = _cases(op)
    for a, b, want in ok:
        got = OPS[op][0](make_dg(a, 0), make_dg(b, 1))
        _check(got.numpy(), want, f"{op}({_id(a)}, {_id(b)})")
    for a, b, _ in errors:  # PyTorch refuses these (sub with bools, bool // bool, float & int ...)
        with pytest.raises(dg.DTypeError):
            OPS[op][0](make_dg(a, 0), make_dg(b, 1))


@pytest.mark.parametrize("op", list(OPS))
def test_every_pair_traced_matches_pytorch(op):
    ok, errors = _cases(op)
    keys, tensors = _inputs(ok)
    outs = dg.function(_program(op, ok, keys))(*tensors)
    for (a, b, want), got in zip(ok, outs):
        _check(got.numpy(), want, f"traced {op}({_id(a)}, {_id(b)})")
    for a, b, _ in errors[:6]:
        keys, tensors = _inputs([(a, b, None)])
        with pytest.raises(dg.DTypeError):
            dg.function(_program(op, [(a, b, None)], keys))(*tensors)


@pytest.mark.parametrize("op", list(OPS))
def test_every_pair_exported_matches_pytorch(op):
    ort = pytest.importorskip("onnxruntime")
    ok, _ = _cases(op)
    for start in range(0, len(ok), 64):  # models of 64 outputs: export time grows faster than linearly
        chunk = ok[start:start + 64]
        keys, tensors = _inputs(chunk)
        model = dg.onnx.export(_program(op, chunk, keys), tuple(tensors))
        sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
        outs = sess.run(None, {i.name: t.numpy() for i, t in zip(sess.get_inputs(), tensors)})
        assert len(outs) == len(chunk)
        for (a, b, want), got in zip(chunk, outs):
            _check(got, want, f"onnx {op}({_id(a)}, {_id(b)})")


def test_result_type_matches_torch_for_every_pair():
    torch = _torch()
    for a, b in pairs():
        want = _np_dtype(torch.result_type(make_torch(a, 0), make_torch(b, 1)))
        got = dgt.result_type(*(make_dg(s, i) for i, s in enumerate((a, b))))
        assert got == want, (a, b)


@pytest.mark.parametrize("a", DTYPES)
def test_matmul_promotes_like_every_other_op(a):
    # PyTorch's matmul wants equal dtypes; dualgraph promotes the operands by the same rule instead
    torch = _torch()
    ort = pytest.importorskip("onnxruntime")
    av = np.array([[3, 1], [2, 0]])
    bv = np.array([[1, 2], [1, 1]])
    cases = []
    for b in DTYPES:
        x, y = dg.tensor(av.astype(a)), dg.tensor(bv.astype(b))
        tx, ty = torch.tensor(av.astype(a)), torch.tensor(bv.astype(b))
        rt = torch.result_type(tx, ty)
        try:
            want = torch.matmul(tx.to(rt), ty.to(rt)).numpy()
        except RuntimeError:  # no torch CPU kernel (bool): numpy's product in that dtype
            want = np.matmul(av.astype(_np_dtype(rt)), bv.astype(_np_dtype(rt)))
        got = x @ y
        _check(got.numpy(), want, f"{a} @ {b}")
        cases.append((x, y, want, b))
    xs = [c[0] for c in cases] + [c[1] for c in cases]
    n = len(cases)

    def prog(*ts):
        return tuple(ts[k] @ ts[n + k] for k in range(n))
    for (_, _, want, b), got in zip(cases, dg.function(prog)(*xs)):
        _check(got.numpy(), want, f"traced {a} @ {b}")
    model = dg.onnx.export(prog, tuple(xs))
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    outs = sess.run(None, {i.name: t.numpy() for i, t in zip(sess.get_inputs(), xs)})
    for (_, _, want, b), got in zip(cases, outs):
        _check(got, want, f"onnx {a} @ {b}")


def test_in_place_update_computes_in_the_promoted_dtype():
    # float16 += float32[] computes in float16, as float16 + float32[] does (numpy would add in float32 and
    # round twice: these values then differ in the last bit)
    x = np.array([0.01494, 0.01888], np.float16)
    y = np.float32(0.009772810662190627)
    want = x + np.float16(y)
    for other in (dg.tensor(y), y, np.float64(y)):
        t = dg.tensor(x)
        t += other
        assert t.dtype == np.float16
        np.testing.assert_array_equal(t.numpy(), want)
    np.testing.assert_array_equal((dg.tensor(x) + dg.tensor(y)).numpy(), want)
    t = dg.tensor([1, 2])
    with pytest.raises(dg.DTypeError):  # int64 += 2.5 would need a float result (PyTorch refuses too)
        t += 2.5


def test_static_graph_builder_promotes_the_same_way():
    import dualgraph.static as st
    with st.Graph().as_default():
        a = st.placeholder((None, 2), "float32")
        b = st.placeholder((None, 2), "int64")
        s = st.placeholder(None, "float64")
        outs = [a * b, a * s, b * 2.5, b * s]
        assert [o.dtype for o in outs] == [np.float32, np.float32, np.float32, np.float64]
        with st.Session() as sess:
            got = sess.run(outs, feed_dict={a: np.full((3, 2), 1.5, np.float32), b: np.full((3, 2), 2, np.int64),
                                            s: 2.0})
    assert [g.dtype for g in got] == [np.float32, np.float32, np.float32, np.float64]
    assert [g[0, 0] for g in got] == [3.0, 3.0, 5.0, 4.0]
