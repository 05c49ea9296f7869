"""The facts fused kernels are generated from live in the op records (`ufunc`, `expr`, `arith`): every
elementwise op the fusion pass may fuse has what its kernels need, and each fact agrees with the op's
own forward (numpy's results, NaN, inf and signed zeros included)."""
import re

import numpy as np
import pytest

from dualgraph.graph.avals import Aval
from dualgraph.graph.ir import Graph  # (importing dualgraph registers every op)
from dualgraph.kernels import ckernel, native
from dualgraph.ops.registry import REGISTRY

# fusible ops whose numpy result a C expression does not reproduce (or that are not float math):
# they run in fused chains through their forward, in the numpy kernel
NO_EXPR = {
    "floordiv", "mod", "pow", "sign", "rsqrt", "tan", "floor", "ceil", "round", "trunc", "copy",
    "softplus", "leaky_relu", "elu", "clip", "logical_and", "logical_or", "logical_xor",
    "logical_not", "isnan", "isfinite", "bitwise_and", "bitwise_or", "bitwise_xor", "invert", "cast",
    "erfinv", "erfc", "log2", "lgamma", "polygamma", "fmod", "heaviside", "logaddexp", "logaddexp2", "nan_to_num", "signbit", "sinc", "xlogy",
}
# what the kernels covered before the facts moved into the records: none of these may lose them
UFUNC_OPS = {"add", "sub", "mul", "div", "neg", "exp", "log", "tanh", "sin", "cos", "sqrt", "abs", "maximum",
             "minimum", "log1p", "expm1", "eq", "ne", "lt", "le", "gt", "ge"}
EXPR_OPS = UFUNC_OPS | {"relu", "sigmoid", "where", "where_zero"}


def _fusible_ops():
    return sorted((op for op in REGISTRY.values() if op.elementwise and op.pure and op.n_out == 1
                   and not op.extra.get("subgraphs")), key=lambda op: op.name)


def test_every_fusible_op_has_the_facts_its_kernels_need():
    missing = [op.name for op in _fusible_ops() if not op.expr and op.name not in NO_EXPR]
    assert not missing, f"elementwise ops without an `expr` (fused C/CUDA kernels need one): {missing}"
    assert not [n for n in NO_EXPR if n in REGISTRY and REGISTRY[n].expr], "NO_EXPR lists an op that has one"
    assert {n for n in UFUNC_OPS if not REGISTRY[n].ufunc} == set()
    assert {n for n in EXPR_OPS if not REGISTRY[n].expr} == set()
    for op in REGISTRY.values():
        assert not op.arith or op.expr, f"{op.name}: `arith` without an expression"
        assert not op.ufunc or hasattr(np, op.ufunc), f"{op.name}: numpy has no ufunc {op.ufunc!r}"
        assert not op.writes_out or op.kernel, f"{op.name}: `writes_out` without a kernel"


def _values(dtype, n, seed):
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal(n) * 3).astype(dtype)
    x[:12] = [np.nan, np.inf, -np.inf, -0.0, 0.0, -1.0, 1.0, 0.5, 100.0, -100.0, 1e-30, -7.25]
    return x


def _operands(op, dtype, n=96):
    conds = ckernel.conditions(op.expr)
    arity = 1 + max(int(i) for i in re.findall(r"\{(\d+)\}", op.expr))
    out = []
    for i in range(arity):
        if i in conds:
            out.append(np.random.default_rng(i).random(n) < 0.5)
        else:
            out.append(_values(dtype, n, i)[::-1 if i % 2 else 1].copy())
    return out


@pytest.mark.parametrize("op", [op for op in _fusible_ops() if op.ufunc], ids=lambda op: op.name)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_ufunc_is_the_forward_on_operands_of_the_result_dtype(op, dtype):
    n_in = getattr(np, op.ufunc).nin
    xs = [_values(dtype, 64, i)[::-1 if i else 1].copy() for i in range(n_in)]
    with np.errstate(all="ignore"):
        want = op.forward(np, *xs)
        got = getattr(np, op.ufunc)(*xs)
    assert got.dtype == want.dtype and got.tobytes() == want.tobytes()


@pytest.mark.skipif(not native.available(), reason="no C compiler (or libmvec) here")
@pytest.mark.parametrize("op", [op for op in _fusible_ops() if op.expr], ids=lambda op: op.name)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_expr_as_a_c_loop_gives_the_forwards_values(op, dtype):
    xs = _operands(op, dtype)
    body = Graph("body")
    ins = [body.add_input(Aval(x.shape, x.dtype)) for x in xs]
    out = op.infer(*[v.aval for v in ins])
    body.outputs = body.add_node(op, ins, {}, [out]).outputs
    with ckernel.thresholds(0, 0):
        kernel = ckernel.make(body, lambda *a, out=None: pytest.fail("the C loop did not apply"))
        (got,) = kernel(*xs)
    with np.errstate(all="ignore"):
        want = np.asarray(op.forward(np, *xs))
    assert got.dtype == want.dtype and got.shape == want.shape
    if any(f in ckernel.c_expr(op.expr, "") for f in ("exp(", "log(", "tanh(", "erf(", "sin(", "cos(", "sqrt(", "1p(", "m1(")):
        # libm and numpy's own SIMD math may differ in the last bits; everything else is exact
        tol = 4 * np.finfo(dtype).eps
        assert np.allclose(got, want, rtol=tol, atol=tol, equal_nan=True)
        assert np.array_equal(np.isnan(got), np.isnan(want))
    else:
        assert got.tobytes() == want.tobytes()
