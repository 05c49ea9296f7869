"""matmul (batched, broadcasting, numpy's 1-D rules), einsum, and torch.linalg's inverses, solves,
decompositions and norms (the dg.linalg namespace, dualgraph/linalg.py, re-exports them)."""
import math
import operator
import string

import numpy as np

from .. import dtypes as _dt
from ..errors import AutogradError, DTypeError, InvalidValue, ShapeError
from ..dispatch import apply
from ..graph.avals import Aval
from ..tensor import as_tensor
from .creation import arange, eye, zeros_like
from .elementwise import abs as abs_, maximum, sign, where
from .infer import broadcast_shapes, norm_axes, result_dtype
from .onnx_rules import NotExportable, args, emit_in, not_exportable, out_dtype
from .reduction import MAX, MIN, PROD_OTHERS, sum as sum_
from .registry import defop
from .shape import broadcast_to, concat, narrow, pad, permute, reshape, squeeze, unsqueeze


def _matmul_infer(a, b):
    if a.ndim < 2 or b.ndim < 2:
        raise ShapeError("matmul primitive takes >= 2-D operands")
    if a.shape[-1] != b.shape[-2] and isinstance(a.shape[-1], int) and isinstance(b.shape[-2], int):
        raise ShapeError(f"matmul: shapes {tuple(a.shape)} and {tuple(b.shape)} do not align "
                         f"({a.shape[-1]} != {b.shape[-2]})")
    batch = broadcast_shapes("matmul", a.shape[:-2], b.shape[:-2])
    return Aval(batch + (a.shape[-2], b.shape[-1]), result_dtype(a, b))


def _transposed_layout(t):
    """An eager 2-D operand laid out as the transpose of a C array (W.T of a PyTorch-layout weight)."""
    d = t._data
    return d is not None and d.ndim == 2 and d.flags.f_contiguous and not d.flags.c_contiguous


def _matmul_vjp(ctx, g):
    """Each gradient is computed in its operand's layout: for `x @ W.T` the weight gradient comes out
    as (g.T @ x).T, whose transpose back to W is C-contiguous like W. (Computed as x.T @ g it would
    reach W transposed, and making it contiguous there is a strided copy slower than the matmul.)"""
    a, b = ctx.inputs
    ga = gb = None
    if ctx.needs_input_grad[0]:
        ga = matmul(b, g.mT).mT if _transposed_layout(a) else matmul(g, b.mT)
    if ctx.needs_input_grad[1]:
        if b.ndim == 2 and a.ndim > 2 and g.ndim == a.ndim and a.shape[-1] != 0 and g.shape[-1] != 0:
            # (..., M, K) @ (K, N): one (K, M*batch) @ (M*batch, N) product, not a batched one summed
            # over the batch afterwards (a (batch, K, N) temporary and a second pass)
            a, g = reshape(a, (-1, a.shape[-1])), reshape(g, (-1, g.shape[-1]))
        gb = matmul(g.mT, a).mT if _transposed_layout(b) else matmul(a.mT, g)
    return ga, gb


def _matmul_forward(xp, a, b):
    if a.dtype != b.dtype:  # the common dtype of the rule every op uses (numpy's would differ)
        _, (a, b) = _dt.promote_operands(a, b)
    if b.ndim == 2 and a.ndim > 2 and xp is np and a.flags.c_contiguous:
        # (..., M, K) @ (K, N) as one (batch*M, K) @ (K, N) product: numpy runs the batched form as one
        # BLAS call per batch element (~15% slower for a (8, 64, 128) activation times a weight)
        rows = math.prod(a.shape[:-1])  # not -1: it cannot be inferred when K is 0
        return xp.matmul(a.reshape(rows, a.shape[-1]), b).reshape(a.shape[:-1] + b.shape[-1:])
    return xp.matmul(a, b)


def _matmul_onnx(ctx, node, a, b):
    dt = out_dtype(node)
    return emit_in(ctx, "MatMul", dt, args(ctx, node, (a, b), dt), 2)


MATMUL = defop("matmul", _matmul_forward, _matmul_infer, _matmul_vjp, broadcasting=True, ufunc="matmul",
               onnx=_matmul_onnx)


def matmul(a, b):
    a = as_tensor(a, like=b if hasattr(b, "_data") else None)
    b = as_tensor(b, like=a)
    if a.ndim == 0 or b.ndim == 0:
        raise ShapeError(f"matmul: both operands need at least 1 dim, got shapes {tuple(a.shape)} and {tuple(b.shape)}")
    squeeze_a, squeeze_b = a.ndim == 1, b.ndim == 1
    k_a, k_b = a.shape[-1], b.shape[0] if squeeze_b else b.shape[-2]
    if k_a != k_b and isinstance(k_a, int) and isinstance(k_b, int):
        raise ShapeError(f"matmul: shapes {tuple(a.shape)} and {tuple(b.shape)} do not align "
                         f"({k_a} != {k_b})")
    if squeeze_a:
        a = reshape(a, (1, a.shape[0]))
    if squeeze_b:
        b = reshape(b, (b.shape[0], 1))
    if a.ndim > 2 or b.ndim > 2:  # batch dims must broadcast (2-D operands were checked above)
        _matmul_infer(a, b)
    out = apply(MATMUL, (a, b))
    if squeeze_a or squeeze_b:
        shape = tuple(out.shape[:-2]) + (() if squeeze_a else (out.shape[-2],)) + (() if squeeze_b else (out.shape[-1],))
        out = reshape(out, shape)
    return out


def mm(a, b):
    if a.ndim != 2 or b.ndim != 2:
        raise ShapeError(f"mm: expects 2-D operands, got {tuple(a.shape)} and {tuple(b.shape)}")
    return matmul(a, b)


def dot(a, b):
    return matmul(a, b)


def _normalize_subscripts(subscripts, shapes):
    """Expand '...' into explicit letters and add an explicit output; returns (inputs, output)."""
    subscripts = subscripts.replace(" ", "")
    if "->" in subscripts:
        lhs, out = subscripts.split("->")
    else:
        lhs, out = subscripts, None
    ins = lhs.split(",")
    if len(ins) != len(shapes):
        raise ShapeError(f"einsum: '{subscripts}' names {len(ins)} operands, got {len(shapes)}")
    used = set(subscripts)
    spare = [c for c in string.ascii_letters if c not in used]
    ell_len = 0
    for s, shape in zip(ins, shapes):
        if "..." in s:
            ell_len = max(ell_len, len(shape) - (len(s) - 3))
    ell = "".join(spare[:ell_len])
    fixed = []
    for s, shape in zip(ins, shapes):
        if "..." in s:
            n = len(shape) - (len(s) - 3)
            s = s.replace("...", ell[ell_len - n:])
        if len(s) != len(shape):
            raise ShapeError(f"einsum: subscripts '{s}' do not match an operand of shape {tuple(shape)}")
        fixed.append(s)
    if out is None:
        counts = {}
        for s in fixed:
            for c in s:
                counts[c] = counts.get(c, 0) + 1
        out = ell + "".join(sorted(c for c, n in counts.items() if n == 1 and c not in ell))
    else:
        out = out.replace("...", ell)
    return fixed, out


def _einsum_vjp(ctx, g):
    ins, out = ctx.attrs["inputs"], ctx.attrs["output"]
    ops = ctx.inputs
    grads = []
    for i, (s, x) in enumerate(zip(ins, ops)):
        if not ctx.needs_input_grad[i]:
            grads.append(None)
            continue
        if len(set(s)) != len(s):
            raise ShapeError(f"einsum: gradient through repeated subscripts '{s}' (a diagonal) is not supported")
        others = [(ins[j], ops[j]) for j in range(len(ops)) if j != i]
        available = set(out).union(*[set(o) for o, _ in others]) if others else set(out)
        target = "".join(c for c in s if c in available)
        spec = ",".join([out] + [o for o, _ in others]) + "->" + target
        gi = einsum(spec, g, *[t for _, t in others])
        if target != s:
            shape = tuple(x.shape[k] if c in available else 1 for k, c in enumerate(s))
            gi = broadcast_to(reshape(gi, shape), x.shape)
        grads.append(gi)
    return tuple(grads)


def _einsum_infer(*xs, inputs, output):
    sizes = {}
    for s, x in zip(inputs, xs):
        for c, d in zip(s, x.shape):
            if c in sizes and sizes[c] != d and 1 not in (sizes[c], d):
                raise ShapeError(f"einsum: subscript '{c}' has sizes {sizes[c]} and {d}")
            if c not in sizes or sizes[c] == 1:
                sizes[c] = d
    return Aval(tuple(sizes[c] for c in output), result_dtype(*xs))


def _einsum_forward(xp, *xs, inputs, output):
    if len({x.dtype for x in xs}) > 1:
        _, xs = _dt.promote_operands(*xs)
    out = xp.einsum(",".join(inputs) + "->" + output, *xs, optimize=len(xs) > 2)
    # one operand ('ij->ji', 'ij->ij'): numpy returns a writable view of the input; einsum is not a
    # view op (no shared version counter), so writing into the result must not change the input
    return out.copy() if len(xs) == 1 else out


def _einsum_onnx(ctx, node, *xs):
    a = ctx.attrs(node)
    return ctx.emit("Einsum", args(ctx, node, xs, out_dtype(node)), equation=",".join(a["inputs"]) + "->" + a["output"])


EINSUM = defop("einsum", _einsum_forward, _einsum_infer, _einsum_vjp, onnx=_einsum_onnx)


def einsum(subscripts, *operands):
    if len(operands) == 1 and isinstance(operands[0], (list, tuple)):
        operands = tuple(operands[0])
    ins, out = _normalize_subscripts(subscripts, [o.shape for o in operands])
    _einsum_infer(*[Aval(o.shape, o.dtype) for o in operands], inputs=tuple(ins), output=out)
    return apply(EINSUM, tuple(operands), {"inputs": tuple(ins), "output": out})


# ---- decompositions, inverses and norms (dg.linalg) -------------------------------------------------
# PyTorch's names and meanings (torch.linalg). Each forward is one LAPACK call through the backend's
# `xp.linalg`; each vjp is written with dualgraph ops (matmul, solve, inv), so gradients differentiate
# again and trace. ONNX has no operator for inverses, solves or decompositions: those records are
# not_exportable; det/slogdet lower to Det and the vector norm to ONNX's reductions.

class LinAlgError(InvalidValue, RuntimeError):
    """A matrix the computation is undefined for (singular, not positive-definite) or a decomposition
    that did not converge (torch.linalg.LinAlgError)."""


_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))


def _static(d):
    return isinstance(d, int)


def _result_type(name, fields):
    """A tuple type with named fields, built from one iterable like PyTorch's torch.return_types (so code
    that rebuilds tuples with type(t)(items), pytrees among them, keeps it)."""
    def __new__(cls, sequence):
        items = tuple(sequence)
        if len(items) != len(fields):
            raise TypeError(f"{name} takes a {len(fields)}-sequence {fields}, got {len(items)} items")
        return tuple.__new__(cls, items)

    def __repr__(self):
        return f"{name}(" + ", ".join(f"{f}={v!r}" for f, v in zip(fields, self)) + ")"

    ns = {"__slots__": (), "_fields": fields, "__new__": __new__, "__repr__": __repr__,
          "__module__": "dualgraph.linalg"}
    for i, f in enumerate(fields):
        ns[f] = property(operator.itemgetter(i))
    return type(name, (tuple,), ns)


def _check_matrix(op, x, square=False, dtype=True):
    """x is a (batch of) float32/float64 matrices, square when asked: the check every linalg op starts with,
    run on avals (infer) and on tensors (the user-facing functions) alike."""
    if dtype and np.dtype(x.dtype) not in _FLOATS:
        raise DTypeError(f"linalg.{op}: expects a float32 or float64 tensor, got {np.dtype(x.dtype)} "
                         f"(shape {tuple(x.shape)}); cast it with .float() or .double()")
    if len(x.shape) < 2:
        raise ShapeError(f"linalg.{op}: expects a matrix or a batch of matrices (at least 2 dims), got shape "
                         f"{tuple(x.shape)}")
    m, n = x.shape[-2], x.shape[-1]
    if square and _static(m) and _static(n) and m != n:
        raise ShapeError(f"linalg.{op}: expects square matrices, got shape {tuple(x.shape)} ({m} x {n})")


def _lapack(op, what, shape, fn):
    """Run one LAPACK call; its failure becomes a LinAlgError naming the op and the input's shape."""
    try:
        return fn()
    except np.linalg.LinAlgError as e:
        raise LinAlgError(f"linalg.{op}: {what} (input shape {tuple(shape)}; LAPACK: {e})") from None


def _no_onnx(what):
    return not_exportable(f"ONNX has no operator for {what}")


def _tril_mask(n, like, strict=False):
    """1 on and below the diagonal of an n x n matrix (strictly below with `strict`), in like's dtype."""
    i = unsqueeze(arange(n, device=like.device), 1)
    j = unsqueeze(arange(n, device=like.device), 0)
    return ((i > j) if strict else (i >= j)).astype(like.dtype)


def _eye_like(n, like):
    return eye(n, dtype=like.dtype, device=like.device)


# -- inv --

def _inv_forward(xp, a):
    return _lapack("inv", "the input matrix is singular, so it has no inverse", a.shape, lambda: xp.linalg.inv(a))


def _inv_infer(a):
    _check_matrix("inv", a, square=True)
    return Aval(tuple(a.shape), a.dtype)


def _inv_vjp(ctx, g):
    yt = ctx.out.mT
    return (-matmul(yt, matmul(g, yt)),)


INV = defop("linalg_inv", _inv_forward, _inv_infer, _inv_vjp, saves_output=True,
            onnx=_no_onnx("a matrix inverse"))


def inv(A):
    """torch.linalg.inv: the inverse of each square matrix in A (..., n, n); LinAlgError when singular."""
    _check_matrix("inv", A, square=True)
    return apply(INV, (A,))


# -- solve --

def _solve_forward(xp, a, b):
    if a.dtype != b.dtype:
        _, (a, b) = _dt.promote_operands(a, b)
    return _lapack("solve", "the coefficient matrix A is singular", a.shape, lambda: xp.linalg.solve(a, b))


def _solve_infer(a, b):
    _check_matrix("solve", a, square=True)
    _check_matrix("solve", b)
    if _static(a.shape[-1]) and _static(b.shape[-2]) and a.shape[-1] != b.shape[-2]:
        raise ShapeError(f"linalg.solve: A of shape {tuple(a.shape)} and B of shape {tuple(b.shape)} do not "
                         f"align ({a.shape[-1]} != {b.shape[-2]})")
    batch = broadcast_shapes("linalg.solve", a.shape[:-2], b.shape[:-2])
    return Aval(batch + (b.shape[-2], b.shape[-1]), result_dtype(a, b))


def _solve_vjp(ctx, g):
    a = ctx.inputs[0]
    gb = solve(a.mT, g)
    ga = -matmul(gb, ctx.out.mT) if ctx.needs_input_grad[0] else None
    return ga, gb


SOLVE = defop("linalg_solve", _solve_forward, _solve_infer, _solve_vjp, broadcasting=True, saves_output=True,
              onnx=_no_onnx("solving a linear system"))


def solve(A, B, *, left=True):
    """torch.linalg.solve: X with A X = B (left=False: X A = B). B is a batch of vectors when it has one dim
    less than A and its shape is A's without the last dim (or B is 1-D), else a batch of matrices."""
    if not left:
        return solve(A.mT, B.mT).mT
    B = as_tensor(B, like=A)
    _check_matrix("solve", A, square=True)
    vector = B.ndim == 1 or (B.ndim == A.ndim - 1 and tuple(B.shape) == tuple(A.shape[:-1]))
    B = unsqueeze(B, -1) if vector else B
    _solve_infer(Aval(A.shape, A.dtype), Aval(B.shape, B.dtype))
    out = apply(SOLVE, (A, B))
    return squeeze(out, -1) if vector else out


# -- det, slogdet --

def _det_vjp(ctx, g):
    """d det(A) = tr(adj(A) dA), so the gradient is g adj(A)^T, written from the SVD A = U S Vh as
    det(U) det(Vh) U diag(prod_{j != i} s_j) Vh: defined at singular A too (where det(A) A^-T is not),
    as PyTorch's is."""
    u, s, vh = apply(SVD, (ctx.inputs[0],), {"full_matrices": False})
    others = apply(PROD_OTHERS, (s,), {"axes": (s.ndim - 1,)})
    scale = unsqueeze(unsqueeze(g * det(u) * det(vh), -1), -1)
    return (scale * matmul(u * unsqueeze(others, -2), vh),)


def _det_infer(a):
    _check_matrix("det", a, square=True)
    return Aval(tuple(a.shape[:-2]), a.dtype)


def _det_onnx(ctx, node, a):
    if out_dtype(node) != np.float32:
        raise NotExportable("linalg.det: onnxruntime implements ONNX Det for float32 only; cast to float32 "
                            "before exporting")
    return ctx.emit("Det", [a])


DET = defop("linalg_det", lambda xp, a: xp.linalg.det(a), _det_infer, _det_vjp, onnx=_det_onnx)


def det(A):
    """torch.linalg.det: the determinant of each square matrix in A (..., n, n)."""
    _check_matrix("det", A, square=True)
    return apply(DET, (A,))


def _slogdet_forward(xp, a):
    sign, logabs = xp.linalg.slogdet(a)
    return sign.astype(a.dtype), logabs.astype(a.dtype)


def _slogdet_infer(a):
    _check_matrix("slogdet", a, square=True)
    out = Aval(tuple(a.shape[:-2]), a.dtype)
    return out, out


def _slogdet_vjp(ctx, g):
    """The sign is piecewise constant; log|det A| has gradient A^-T."""
    _, glog = g
    return (unsqueeze(unsqueeze(glog, -1), -1) * inv(ctx.inputs[0]).mT,)


def _slogdet_onnx(ctx, node, a):
    if out_dtype(node) != np.float32:
        raise NotExportable("linalg.slogdet: onnxruntime implements ONNX Det for float32 only; cast to float32 "
                            "before exporting")
    d = ctx.emit("Det", [a])
    return ctx.emit("Sign", [d]), ctx.emit("Log", [ctx.emit("Abs", [d])])


SLOGDET = defop("linalg_slogdet", _slogdet_forward, _slogdet_infer, _slogdet_vjp, n_out=2, saves_output=True,
                onnx=_slogdet_onnx)

SlogdetResult = _result_type("linalg_slogdet", ("sign", "logabsdet"))


def slogdet(A):
    """torch.linalg.slogdet: (sign, logabsdet) with det(A) = sign * exp(logabsdet), without overflow. A singular
    matrix gives sign 0 and logabsdet -inf."""
    _check_matrix("slogdet", A, square=True)
    return SlogdetResult(apply(SLOGDET, (A,)))


# -- cholesky --

def _cholesky_forward(xp, a):
    return _lapack("cholesky", "the input is not positive-definite", a.shape, lambda: xp.linalg.cholesky(a))


def _cholesky_infer(a):
    _check_matrix("cholesky", a, square=True)
    return Aval(tuple(a.shape), a.dtype)


def _cholesky_vjp(ctx, g):
    """PyTorch's rule: with P = tril(L^T gL), gA = L^-T sym(P) L^-1 where sym(P) mirrors P's strict lower
    triangle and halves everything (a symmetric gradient, as A is read as symmetric)."""
    low = ctx.out
    n = low.shape[-1]
    p = matmul(low.mT, g) * _tril_mask(n, low)
    p = 0.5 * (p + (p * _tril_mask(n, low, strict=True)).mT)
    x = solve(low.mT, p)
    return (solve(low.mT, x.mT).mT,)


CHOLESKY = defop("linalg_cholesky", _cholesky_forward, _cholesky_infer, _cholesky_vjp, saves_output=True,
                 onnx=_no_onnx("the Cholesky decomposition"))


def cholesky(A, *, upper=False):
    """torch.linalg.cholesky: L lower-triangular with A = L L^T (upper=True: U = L^T, A = U^T U). Only the lower
    triangle of A is read. LinAlgError when A is not positive-definite."""
    _check_matrix("cholesky", A, square=True)
    low = apply(CHOLESKY, (A,))
    return low.mT if upper else low


# -- qr --

_QR_MODES = ("reduced", "complete", "r")


def _qr_forward(xp, a, mode):
    if mode == "r":
        r = xp.linalg.qr(a, mode="r")
        return xp.zeros((0,), a.dtype), r
    q, r = xp.linalg.qr(a, mode=mode)
    return q, r


def _qr_infer(a, mode):
    _check_matrix("qr", a)
    m, n = a.shape[-2], a.shape[-1]
    batch = tuple(a.shape[:-2])
    k = min(m, n) if _static(m) and _static(n) else (n if _static(m) and m == n else m)
    if mode == "complete":
        return Aval(batch + (m, m), a.dtype), Aval(batch + (m, n), a.dtype)
    q = Aval((0,), a.dtype) if mode == "r" else Aval(batch + (m, k), a.dtype)
    return q, Aval(batch + (k, n), a.dtype)


def _times_r_inv_t(x, r):
    """x R^-T for upper-triangular square R."""
    return solve(r, x.mT).mT


def _qr_grad_deep(q, r, gq, gr):
    """QR's vjp for m >= n (TensorFlow's and PyTorch's formula; R's diagonal must be nonzero)."""
    qgq = matmul(q.mT, gq)
    rgr = matmul(r, gr.mT)
    n = r.shape[-1]
    low = (qgq - qgq.mT + rgr - rgr.mT) * _tril_mask(n, r)
    return matmul(q, gr + _times_r_inv_t(low, r)) + _times_r_inv_t(gq - matmul(q, qgq), r)


def _qr_vjp(ctx, g):
    mode = ctx.attrs["mode"]
    a = ctx.inputs[0]
    m, n = a.shape[-2], a.shape[-1]
    if mode == "r":
        raise AutogradError("linalg.qr: mode='r' computes no Q, and R alone is not differentiable here; use "
                            "mode='reduced'")
    if mode == "complete" and m > n:
        raise AutogradError(f"linalg.qr: the QR decomposition is not differentiable when mode='complete' and "
                            f"nrows > ncols (input shape {tuple(a.shape)})")
    q, r = ctx.out
    gq, gr = g
    if m >= n:
        return (_qr_grad_deep(q, r, gq, gr),)
    # wide: A = [X | Y], R = [U | V] with X = Q U square
    u = narrow(r, -1, 0, m)
    gu, gv = narrow(gr, -1, 0, m), narrow(gr, -1, m, n - m)
    y = narrow(a, -1, m, n - m)
    gx = _qr_grad_deep(q, u, gq + matmul(y, gv.mT), gu)
    return (concat([gx, matmul(q, gv)], -1),)


QR = defop("linalg_qr", _qr_forward, _qr_infer, _qr_vjp, n_out=2, saves_output=True,
           onnx=_no_onnx("the QR decomposition"))

QRResult = _result_type("linalg_qr", ("Q", "R"))


def qr(A, mode="reduced"):
    """torch.linalg.qr: A = Q R with Q orthonormal columns and R upper-triangular. mode='reduced' (Q: m x k,
    R: k x n, k = min(m, n)), 'complete' (Q: m x m, R: m x n) or 'r' (R only; Q is empty).

    The factorization is unique only up to the signs of R's diagonal (LAPACK's Householder QR, as numpy and
    PyTorch: the diagonal may be negative). Gradients need R's diagonal nonzero (A of full rank)."""
    if mode not in _QR_MODES:
        raise InvalidValue(f"linalg.qr: mode must be one of {_QR_MODES}, got {mode!r}")
    _check_matrix("qr", A)
    return QRResult(apply(QR, (A,), {"mode": mode}))


# -- svd, svdvals --

def _svd_forward(xp, a, full_matrices):
    u, s, vh = _lapack("svd", "the SVD did not converge", a.shape,
                       lambda: xp.linalg.svd(a, full_matrices=full_matrices))
    return u, s.astype(a.dtype), vh


def _svd_infer(a, full_matrices):
    _check_matrix("svd", a)
    m, n = a.shape[-2], a.shape[-1]
    batch = tuple(a.shape[:-2])
    k = min(m, n) if _static(m) and _static(n) else m
    if full_matrices:
        return Aval(batch + (m, m), a.dtype), Aval(batch + (k,), a.dtype), Aval(batch + (n, n), a.dtype)
    return Aval(batch + (m, k), a.dtype), Aval(batch + (k,), a.dtype), Aval(batch + (k, n), a.dtype)


def _quotient(num, e):
    """num / e, with 0 where num is 0: a repeated singular value (eigenvalue) makes e 0, and when the vectors'
    cotangents give it no weight (only the values are used: svdvals, eigvalsh, norms) it adds nothing
    instead of 0/0 = NaN; with weight the result is inf, as PyTorch's."""
    return num / where(num == 0, 1.0, e)


def _svd_vjp(ctx, g):
    """PyTorch's svd_backward (real case). Defined when the singular values are distinct (and nonzero for
    the non-square part); with full_matrices the extra columns of U / rows of Vh get no gradient."""
    a = ctx.inputs[0]
    m, n = a.shape[-2], a.shape[-1]
    u, s, vh = ctx.out
    gu, gs, gvh = g
    k = s.shape[-1]
    if ctx.attrs["full_matrices"] and m != n:
        u, gu = narrow(u, -1, 0, k), narrow(gu, -1, 0, k)
        vh, gvh = narrow(vh, -2, 0, k), narrow(gvh, -2, 0, k)
    uhgu = matmul(u.mT, gu)
    uhgu = uhgu - uhgu.mT
    vhgv = matmul(vh, gvh.mT)
    vhgv = vhgv - vhgv.mT
    s2 = s * s
    e = unsqueeze(s2, -2) - unsqueeze(s2, -1) + _eye_like(k, s)
    num = uhgu * unsqueeze(s, -2) + unsqueeze(s, -1) * vhgv
    inner = _quotient(num, e) + unsqueeze(gs, -2) * _eye_like(k, s)
    if m > n:
        gus = gu / unsqueeze(s, -2)
        return (matmul(matmul(u, inner) + gus - matmul(u, matmul(u.mT, gus)), vh),)
    if m < n:
        sgvh = gvh / unsqueeze(s, -1)
        return (matmul(u, matmul(inner, vh) + sgvh - matmul(matmul(sgvh, vh.mT), vh)),)
    return (matmul(u, matmul(inner, vh)),)


SVD = defop("linalg_svd", _svd_forward, _svd_infer, _svd_vjp, n_out=3, saves_output=True,
            onnx=_no_onnx("the singular value decomposition"))

SVDResult = _result_type("linalg_svd", ("U", "S", "Vh"))


def svd(A, full_matrices=True):
    """torch.linalg.svd: A = U diag(S) Vh, S descending. full_matrices=True (PyTorch's default) gives square U
    (m x m) and Vh (n x n); False the reduced k = min(m, n) columns.

    Singular vectors are unique only up to a sign per pair (u_i, v_i) (and any rotation within a repeated
    singular value): compare U * S * Vh, S, or sign-normalised vectors, never raw U/Vh across libraries.
    Gradients are defined for distinct singular values (and, for non-square A, nonzero ones)."""
    _check_matrix("svd", A)
    return SVDResult(apply(SVD, (A,), {"full_matrices": bool(full_matrices)}))


def svdvals(A):
    """torch.linalg.svdvals: the singular values of A, descending (gauge-free: always differentiable where
    they are distinct)."""
    _check_matrix("svdvals", A)
    return apply(SVD, (A,), {"full_matrices": False})[1]


# -- eigh, eigvalsh --

def _eigh_forward(xp, a, uplo):
    w, v = _lapack("eigh", "the eigenvalue algorithm did not converge", a.shape,
                   lambda: xp.linalg.eigh(a, UPLO=uplo))
    return w.astype(a.dtype), v


def _eigh_infer(a, uplo):
    _check_matrix("eigh", a, square=True)
    return Aval(tuple(a.shape[:-1]), a.dtype), Aval(tuple(a.shape), a.dtype)


def _eigh_vjp(ctx, g):
    """PyTorch's rule: gA = V (diag(gL) + skew(V^T gV) / E) V^T with E_ij = L_j - L_i (defined for distinct
    eigenvalues). Like PyTorch's it is not symmetrised: differentiate a function of a symmetric input."""
    w, v = ctx.out
    gw, gv = g
    n = w.shape[-1]
    vgv = matmul(v.mT, gv)
    vgv = 0.5 * (vgv - vgv.mT)
    eye_n = _eye_like(n, w)
    e = unsqueeze(w, -2) - unsqueeze(w, -1) + eye_n
    inner = _quotient(vgv, e) + unsqueeze(gw, -2) * eye_n
    return (matmul(v, matmul(inner, v.mT)),)


EIGH = defop("linalg_eigh", _eigh_forward, _eigh_infer, _eigh_vjp, n_out=2, saves_output=True,
             onnx=_no_onnx("a symmetric eigendecomposition"))

EighResult = _result_type("linalg_eigh", ("eigenvalues", "eigenvectors"))


def _uplo(op, UPLO):
    if UPLO not in ("L", "U"):
        raise InvalidValue(f"linalg.{op}: UPLO must be 'L' or 'U', got {UPLO!r}")
    return UPLO


def eigh(A, UPLO="L"):
    """torch.linalg.eigh: eigenvalues (ascending) and orthonormal eigenvectors (columns) of the symmetric
    matrices in A, reading only the triangle UPLO ('L' or 'U').

    Each eigenvector is unique only up to sign (and up to a rotation within a repeated eigenvalue): compare
    eigenvalues, V diag(L) V^T, or sign-normalised vectors. Gradients are defined for distinct eigenvalues."""
    _check_matrix("eigh", A, square=True)
    return EighResult(apply(EIGH, (A,), {"uplo": _uplo("eigh", UPLO)}))


def eigvalsh(A, UPLO="L"):
    """torch.linalg.eigvalsh: the eigenvalues of symmetric A, ascending."""
    _check_matrix("eigvalsh", A, square=True)
    return apply(EIGH, (A,), {"uplo": _uplo("eigvalsh", UPLO)})[0]


# -- pinv, matrix_rank --

def _tolerance(xp, s_max, m, n, atol, rtol, dtype):
    """PyTorch's cut-off max(atol, rtol * largest singular value); rtol defaults to max(m, n) * eps when
    neither is given, to 0 when only atol is."""
    if rtol is None:
        rtol = 0.0 if atol is not None and atol > 0 else max(m, n) * float(np.finfo(dtype).eps)
    return xp.maximum(atol or 0.0, rtol * s_max)


def _pinv_forward(xp, a, atol, rtol, hermitian):
    m, n = a.shape[-2], a.shape[-1]
    if hermitian:
        w, v = _lapack("pinv", "the eigenvalue algorithm did not converge", a.shape, lambda: xp.linalg.eigh(a))
        # ascending eigenvalues: the largest magnitude is at one end (slices stay valid for empty matrices)
        tol = _tolerance(xp, xp.maximum(xp.abs(w[..., :1]), xp.abs(w[..., -1:])), m, n, atol, rtol, a.dtype)
        winv = xp.where(xp.abs(w) > tol, 1.0 / xp.where(w == 0, 1.0, w), 0.0).astype(a.dtype)
        return xp.matmul(v * winv[..., None, :], xp.swapaxes(v, -1, -2))
    u, s, vh = _lapack("pinv", "the SVD did not converge", a.shape,
                       lambda: xp.linalg.svd(a, full_matrices=False))
    tol = _tolerance(xp, s[..., :1], m, n, atol, rtol, a.dtype)  # descending: the first is the largest
    sinv = xp.where(s > tol, 1.0 / xp.where(s == 0, 1.0, s), 0.0).astype(a.dtype)
    return xp.matmul(xp.swapaxes(vh, -1, -2) * sinv[..., None, :], xp.swapaxes(u, -1, -2))


def _pinv_infer(a, atol, rtol, hermitian):
    _check_matrix("pinv", a, square=hermitian)
    return Aval(tuple(a.shape[:-2]) + (a.shape[-1], a.shape[-2]), a.dtype)


def _pinv_vjp(ctx, g):
    """The derivative of the pseudo-inverse where the rank is locally constant (Golub & Pereyra):
    gA = -X^T g X^T + (I - A X) g^T X X^T + X^T X g^T (I - X A), X = pinv(A)."""
    a, x = ctx.inputs[0], ctx.out
    m, n = a.shape[-2], a.shape[-1]
    xt, gt = x.mT, g.mT
    left = _eye_like(m, a) - matmul(a, x)
    right = _eye_like(n, a) - matmul(x, a)
    return (-matmul(xt, matmul(g, xt)) + matmul(left, matmul(gt, matmul(x, xt)))
            + matmul(matmul(xt, x), matmul(gt, right)),)


PINV = defop("linalg_pinv", _pinv_forward, _pinv_infer, _pinv_vjp, saves_output=True,
             onnx=_no_onnx("a pseudo-inverse (it needs an SVD)"))


def _float_or_none(op, name, v):
    if v is None:
        return None
    if hasattr(v, "shape"):
        raise InvalidValue(f"linalg.{op}: {name}= takes a Python float here, not a tensor")
    return float(v)


def pinv(A, *, atol=None, rtol=None, hermitian=False):
    """torch.linalg.pinv: the Moore-Penrose pseudo-inverse, from the SVD (eigh when hermitian=True); singular
    values at or below max(atol, rtol * largest) count as zero. atol/rtol are Python floats here."""
    _check_matrix("pinv", A, square=hermitian)
    return apply(PINV, (A,), {"atol": _float_or_none("pinv", "atol", atol),
                              "rtol": _float_or_none("pinv", "rtol", rtol), "hermitian": bool(hermitian)})


def matrix_rank(A, *, atol=None, rtol=None, hermitian=False):
    """torch.linalg.matrix_rank: how many singular values (|eigenvalues| when hermitian) exceed
    max(atol, rtol * largest); int64."""
    _check_matrix("matrix_rank", A, square=hermitian)
    atol, rtol = _float_or_none("matrix_rank", "atol", atol), _float_or_none("matrix_rank", "rtol", rtol)
    A = A.detach()
    s = abs_(eigvalsh(A)) if hermitian else svdvals(A)
    m, n = A.shape[-2], A.shape[-1]
    if rtol is None:
        rtol = 0.0 if atol is not None and atol > 0 else max(m, n) * float(np.finfo(np.dtype(A.dtype)).eps)
    tol = maximum(apply(MAX, (s,), {"axes": (s.ndim - 1,), "keepdims": True}) * rtol, atol or 0.0)
    return sum_(s > tol, -1)


# -- cross --

def cross(input, other, *, dim=-1):
    """torch.linalg.cross: the cross product of 3-vectors along `dim` (inputs broadcast)."""
    input, other = as_tensor(input, like=other if hasattr(other, "_data") else None), as_tensor(other, like=input)
    shape = broadcast_shapes("linalg.cross", input.shape, other.shape)
    if not shape:
        raise ShapeError("linalg.cross: needs inputs with at least one dim of size 3, got 0-d tensors")
    axis = norm_axes(dim, len(shape), "linalg.cross")[0]
    back = len(shape) - axis  # the dim counted from the end, where broadcasting aligns shapes
    if any(t.ndim < back or t.shape[-back] != 3 for t in (input, other)):
        raise ShapeError(f"linalg.cross: dim {dim} must have size 3 in both inputs, got shapes "
                         f"{tuple(input.shape)} and {tuple(other.shape)}")
    a, b = broadcast_to(input, shape), broadcast_to(other, shape)
    a0, a1, a2 = (narrow(a, axis, i, 1) for i in range(3))
    b0, b1, b2 = (narrow(b, axis, i, 1) for i in range(3))
    return concat([a1 * b2 - a2 * b1, a2 * b0 - a0 * b2, a0 * b1 - a1 * b0], axis)


def torch_cross(input, other, dim=None):
    """torch.cross: as linalg.cross, but with dim=None the first dim of size 3 (PyTorch's old default)."""
    if dim is None:
        shape = broadcast_shapes("cross", input.shape, other.shape)
        dims = [i for i, d in enumerate(shape) if d == 3]
        if not dims:
            raise ShapeError(f"cross: no dim of size 3 in shapes {tuple(input.shape)} and {tuple(other.shape)}")
        dim = dims[0]
    return cross(input, other, dim=dim)


# -- norms --

_INF = float("inf")


def _ord_value(op, ord):
    if isinstance(ord, str) or isinstance(ord, bool) or not isinstance(ord, (int, float)):
        raise InvalidValue(f"linalg.{op}: ord must be a number for a vector norm, got {ord!r}")
    return float(ord)


def _vector_norm_forward(xp, x, ord, axes, keepdims):
    if ord == 2.0:
        return xp.sqrt(xp.sum(x * x, axis=axes, keepdims=keepdims))
    ax = xp.abs(x)
    if ord == _INF or ord == -_INF:
        if x.size == 0 and (axes is None or any(x.shape[i] == 0 for i in axes)):
            raise ShapeError(f"linalg.vector_norm: ord={ord} over an empty dim has no value (shape {x.shape})")
        return (xp.max if ord > 0 else xp.min)(ax, axis=axes, keepdims=keepdims)
    if ord == 0.0:
        return xp.sum(x != 0, axis=axes, keepdims=keepdims).astype(x.dtype)
    if ord == 1.0:
        return xp.sum(ax, axis=axes, keepdims=keepdims)
    return (xp.sum(ax ** ord, axis=axes, keepdims=keepdims) ** (1.0 / ord)).astype(x.dtype)


def _vector_norm_infer(x, ord, axes, keepdims):
    if np.dtype(x.dtype) not in _FLOATS + (np.dtype(np.float16),):
        raise DTypeError(f"linalg.vector_norm: expects a floating point tensor, got {np.dtype(x.dtype)} "
                         f"(shape {tuple(x.shape)}); pass dtype= or cast it")
    kept = range(len(x.shape)) if axes is None else axes
    shape = tuple(1 if i in kept else d for i, d in enumerate(x.shape)) if keepdims else \
        tuple(d for i, d in enumerate(x.shape) if i not in kept)
    return Aval(shape, x.dtype)


def _vector_norm_vjp(ctx, g):
    """PyTorch's subgradients: 0 where the norm is 0; for ord=+-inf the gradient is split evenly among the
    entries that attain it."""
    x = ctx.inputs[0]
    ord, axes, keepdims = ctx.attrs["ord"], ctx.attrs["axes"], ctx.attrs["keepdims"]
    if ord == 0.0:
        return (zeros_like(x),)
    kept = tuple(range(x.ndim)) if axes is None else axes
    shape = tuple(1 if i in kept else d for i, d in enumerate(x.shape))
    gb = reshape(g, shape) if not keepdims else g
    nb = reshape(ctx.out, shape) if not keepdims else ctx.out
    if ord == 1.0:
        return (gb * sign(x),)
    if ord == _INF or ord == -_INF:
        hit = (abs_(x) == nb).astype(x.dtype)
        count = sum_(hit, kept, keepdims=True)
        return (gb * sign(x) * hit / count,)
    zero = nb == 0
    safe = where(zero, 1.0, nb)
    if ord == 2.0:  # a zero norm means x is 0 there: x * (g / 1) is the subgradient 0 with no full-size where
        return (x * (gb / safe),)
    ax = abs_(x)
    return (where(zero, 0.0, gb * sign(x) * ax ** (ord - 1.0) / safe ** (ord - 1.0)),)


def _vector_norm_onnx(ctx, node, x):
    a = ctx.attrs(node)
    ord, axes, keepdims = a["ord"], a["axes"], a["keepdims"]
    if ord == 2.0:
        return ctx.reduce("ReduceL2", x, axes, keepdims)
    if ord == 1.0:
        return ctx.reduce("ReduceL1", x, axes, keepdims)
    dt = out_dtype(node)
    if ord == 0.0:
        nz = ctx.emit("Not", [ctx.emit("Equal", [x, ctx.const(0, dt)])])
        return ctx.reduce("ReduceSum", ctx.emit("Cast", [nz], to=ctx.onnx_dtype(dt)), axes, keepdims)
    ax = ctx.emit("Abs", [x])
    if ord == _INF or ord == -_INF:
        return ctx.reduce("ReduceMax" if ord > 0 else "ReduceMin", ax, axes, keepdims)
    total = ctx.reduce("ReduceSum", ctx.emit("Pow", [ax, ctx.const(ord, dt)]), axes, keepdims)
    return ctx.emit("Pow", [total, ctx.const(1.0 / ord, dt)])


VECTOR_NORM = defop("linalg_vector_norm", _vector_norm_forward, _vector_norm_infer, _vector_norm_vjp,
                    saves_output=True, onnx=_vector_norm_onnx)


def _cast_for_norm(op, x, dtype):
    x = as_tensor(x)
    if dtype is not None:
        x = x.astype(dtype)
    if np.dtype(x.dtype).kind != "f":
        raise DTypeError(f"linalg.{op}: expects a floating point tensor, got {np.dtype(x.dtype)} "
                         f"(shape {tuple(x.shape)}); pass dtype= or cast it")
    return x


def vector_norm(x, ord=2, dim=None, keepdim=False, *, dtype=None):
    """torch.linalg.vector_norm: (sum |x|^ord)^(1/ord) over `dim` (all dims when None, as if flattened);
    ord=inf/-inf: max/min |x|, ord=0: the count of nonzeros."""
    x = _cast_for_norm("vector_norm", x, dtype)
    axes = norm_axes(dim, x.ndim, "linalg.vector_norm")
    return apply(VECTOR_NORM, (x,), {"ord": _ord_value("vector_norm", ord), "axes": axes, "keepdims": bool(keepdim)})


def _matrix_dims(op, x, dim):
    if not isinstance(dim, (tuple, list)) or len(dim) != 2:
        raise ShapeError(f"linalg.{op}: dim must be a pair of dims, got {dim!r}")
    if x.ndim < 2:
        raise ShapeError(f"linalg.{op}: expects a matrix or a batch of matrices (at least 2 dims), got shape "
                         f"{tuple(x.shape)}")
    d0, d1 = (norm_axes(d, x.ndim, f"linalg.{op}")[0] for d in dim)
    if d0 == d1:
        raise ShapeError(f"linalg.{op}: dims must be different, got {tuple(dim)}")
    return d0, d1


def matrix_norm(A, ord="fro", dim=(-2, -1), keepdim=False, *, dtype=None):
    """torch.linalg.matrix_norm: 'fro' (Frobenius), 'nuc' (sum of singular values), 2 / -2 (largest / smallest
    singular value), 1 / -1 (max / min column sum of |A|), inf / -inf (max / min row sum of |A|), over the
    two dims `dim`."""
    A = _cast_for_norm("matrix_norm", A, dtype)
    d0, d1 = _matrix_dims("matrix_norm", A, dim)
    if ord == "fro":
        return apply(VECTOR_NORM, (A,), {"ord": 2.0, "axes": tuple(sorted((d0, d1))), "keepdims": bool(keepdim)})
    if ord == "nuc" or ord in (2, -2):
        if ord in (2, -2):
            ord = float(ord)
        moved = permute(A, [i for i in range(A.ndim) if i not in (d0, d1)] + [d0, d1])
        s = svdvals(moved)
        if ord == "nuc":
            out = sum_(s, -1)
        else:
            out = apply(MAX if ord > 0 else MIN, (s,), {"axes": (s.ndim - 1,), "keepdims": False})
        if keepdim:
            for d in sorted((d0, d1)):
                out = unsqueeze(out, d)
        return out
    if isinstance(ord, str) or ord not in (1, -1, _INF, -_INF):
        raise InvalidValue(f"linalg.matrix_norm: ord must be one of 'fro', 'nuc', inf, -inf, 1, -1, 2, -2; got "
                           f"{ord!r}")
    # 1: sum over rows (d0), extreme over columns (d1); inf: the other way round
    inner, outer = (d0, d1) if abs(ord) == 1 else (d1, d0)
    sums = apply(VECTOR_NORM, (A,), {"ord": 1.0, "axes": (inner,), "keepdims": True})
    out = apply(MAX if ord > 0 else MIN, (sums,), {"axes": (outer,), "keepdims": True})
    return out if keepdim else squeeze(out, tuple(sorted((d0, d1))))


def norm(A, ord=None, dim=None, keepdim=False, *, dtype=None):
    """torch.linalg.norm: a vector norm when dim is an int (or ord is None and dim is None: the 2-norm of the
    flattened input), a matrix norm when dim is a pair; with ord given and dim None, A must be 1-D or 2-D."""
    A = _cast_for_norm("norm", A, dtype)
    if isinstance(dim, int) or (isinstance(dim, (tuple, list)) and len(dim) == 1):
        if isinstance(ord, str):
            raise InvalidValue(f"linalg.norm: ord={ord!r} is a matrix norm, but dim={dim!r} names one dim")
        return vector_norm(A, 2 if ord is None else ord, dim, keepdim)
    if dim is not None:
        return matrix_norm(A, "fro" if ord is None else ord, dim, keepdim)
    if ord is None:
        return vector_norm(A, 2, None, keepdim)
    if A.ndim == 1:
        if isinstance(ord, str):
            raise InvalidValue(f"linalg.norm: ord={ord!r} is a matrix norm, but the input is 1-D")
        return vector_norm(A, ord, None, keepdim)
    if A.ndim == 2:
        return matrix_norm(A, ord, (-2, -1), keepdim)
    raise ShapeError(f"linalg.norm: with ord={ord!r} and dim=None the input must be 1-D or 2-D, got shape "
                     f"{tuple(A.shape)}; pass dim=")


def torch_norm(input, p="fro", dim=None, keepdim=False, dtype=None):
    """torch.norm / Tensor.norm: p='fro' or a number is the vector norm over `dim` (all elements when None,
    also for a 2-D input: torch.norm(A, 2) is not the spectral norm); p='nuc' the nuclear norm over the dim
    pair `dim` (a 2-D input when None)."""
    if isinstance(dim, int):
        dim = (dim,)
    if isinstance(p, str):
        if p == "fro" and (dim is None or len(dim) <= 2):
            return vector_norm(input, 2, dim, keepdim, dtype=dtype)
        return matrix_norm(input, p, tuple(range(input.ndim)) if dim is None else dim, keepdim, dtype=dtype)
    return vector_norm(input, 2.0 if p is None else p, dim, keepdim, dtype=dtype)


def tensor_norm(self, p="fro", dim=None, keepdim=False, dtype=None, *, ord=None, axis=None, keepdims=None):
    """Tensor.norm: torch.norm's meaning; MXNet's NDArray.norm spellings (ord=, axis=, keepdims=) are
    accepted too."""
    if ord is not None:
        p = ord
    if axis is not None:
        dim = axis
    if keepdims is not None:
        keepdim = keepdims
    return torch_norm(self, p, dim, keepdim, dtype)


# -- composites: vecdot, multi_dot, matrix_power, solve_triangular, cond, lstsq --

def vecdot(x, y, *, dim=-1):
    """torch.linalg.vecdot: sum(x * y) along `dim` (inputs broadcast; real dtypes, so no conjugation)."""
    for t in (x, y):
        if np.dtype(t.dtype).kind != "f":
            raise DTypeError(f"linalg.vecdot: expects floating point tensors, got {np.dtype(t.dtype)} "
                             f"(shape {tuple(t.shape)})")
    return sum_(x * y, dim)


def multi_dot(tensors):
    """torch.linalg.multi_dot: the product of two or more matrices; the first may be 1-D (a row vector) and
    the last 1-D (a column vector)."""
    tensors = list(tensors)
    if len(tensors) < 2:
        raise ShapeError(f"linalg.multi_dot: expects at least 2 tensors, got {len(tensors)}")
    for i, t in enumerate(tensors):
        ok = t.ndim == 2 or (t.ndim == 1 and i in (0, len(tensors) - 1))
        if not ok:
            raise ShapeError(f"linalg.multi_dot: tensor {i} must be 2-D (only the first and last may be 1-D), got "
                             f"shape {tuple(t.shape)}")
    out = tensors[0]
    for t in tensors[1:]:
        out = matmul(out, t)
    return out


def matrix_power(A, n):
    """torch.linalg.matrix_power: A^n for an integer n by repeated squaring; n = 0 gives the identity,
    n < 0 the power of inv(A)."""
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)):
        raise InvalidValue(f"linalg.matrix_power: n must be an integer, got {n!r}")
    _check_matrix("matrix_power", A, square=True, dtype=n < 0)
    n = int(n)
    if n == 0:
        return broadcast_to(_eye_like(A.shape[-1], A), tuple(A.shape))
    base = inv(A) if n < 0 else A
    n = abs(n)
    out = None
    while n:
        if n & 1:
            out = base if out is None else matmul(out, base)
        n >>= 1
        if n:
            base = matmul(base, base)
    return out


def solve_triangular(A, B, *, upper, left=True, unitriangular=False):
    """torch.linalg.solve_triangular: X with A X = B (left=False: X A = B) reading only A's upper or lower
    triangle (and taking its diagonal as ones with unitriangular). Solved by the general solve on the masked
    triangle, so the gradient reaches only the entries read."""
    _check_matrix("solve_triangular", A, square=True)
    B = as_tensor(B, like=A)
    _check_matrix("solve_triangular", B)
    n = A.shape[-1]
    mask = _tril_mask(n, A, strict=unitriangular)
    if upper:
        mask = mask.mT
    tri = A * mask
    if unitriangular:
        tri = tri + _eye_like(n, A)
    return solve(tri, B, left=left) if B.ndim >= 2 else solve(tri, B)


def cond(A, p=None):
    """torch.linalg.cond: the condition number; p None/2/-2 from the singular values (any shape), the others
    ('fro', 'nuc', inf, -inf, 1, -1) as norm(A, p) * norm(inv(A), p) for square A."""
    if p in (None, 2, -2):
        _check_matrix("cond", A)
        s = svdvals(A)
        first, last = narrow(s, -1, 0, 1), narrow(s, -1, s.shape[-1] - 1, 1)
        return squeeze(first / last if p != -2 else last / first, -1)
    _check_matrix("cond", A, square=True)
    return matrix_norm(A, p) * matrix_norm(inv(A), p)


LstsqResult = _result_type("linalg_lstsq", ("solution", "residuals", "rank", "singular_values"))


def lstsq(A, B, rcond=None, *, driver=None):
    """torch.linalg.lstsq with PyTorch's CPU default driver ('gelsy'): the minimum-norm least-squares solution
    (computed as pinv(A) @ B), the rank of each matrix, and empty residuals and singular_values (as 'gelsy'
    returns them). rcond is the relative cut-off for small singular values."""
    if driver not in (None, "gelsy", "gelsd", "gelss", "gels"):
        raise InvalidValue(f"linalg.lstsq: driver must be one of 'gels', 'gelsy', 'gelsd', 'gelss', got {driver!r}")
    _check_matrix("lstsq", A)
    B = as_tensor(B, like=A)
    vector = B.ndim == A.ndim - 1
    rhs = unsqueeze(B, -1) if vector else B
    if A.shape[-2] != rhs.shape[-2]:
        raise ShapeError(f"linalg.lstsq: A of shape {tuple(A.shape)} and B of shape {tuple(B.shape)} have different "
                         f"numbers of rows")
    solution = matmul(pinv(A, rtol=rcond), rhs)
    empty = zeros_like(narrow(reshape(A, (-1,)), 0, 0, 0))
    return LstsqResult((squeeze(solution, -1) if vector else solution, empty,
                        matrix_rank(A, rtol=rcond), empty))


# ---- torch.* products and diagonals (composites of matmul, getitem, reshape, where, pad) -----------------

def bmm(input, mat2):
    """torch.bmm: batched matrix product of (b, n, m) and (b, m, p); no broadcasting."""
    if input.ndim != 3 or mat2.ndim != 3:
        raise ShapeError(f"bmm: expects 3-D tensors, got shapes {tuple(input.shape)} and {tuple(mat2.shape)}")
    if _static(input.shape[0]) and _static(mat2.shape[0]) and input.shape[0] != mat2.shape[0]:
        raise ShapeError(f"bmm: batch sizes differ: shapes {tuple(input.shape)} and {tuple(mat2.shape)}")
    return matmul(input, mat2)


def mv(input, vec):
    """torch.mv: a matrix (n, m) times a vector (m,)."""
    if input.ndim != 2 or vec.ndim != 1:
        raise ShapeError(f"mv: expects a 2-D matrix and a 1-D vector, got shapes {tuple(input.shape)} and "
                         f"{tuple(vec.shape)}")
    return matmul(input, vec)


def outer(input, vec2):
    """torch.outer (ger): out[i, j] = input[i] * vec2[j] for 1-D inputs."""
    if input.ndim != 1 or vec2.ndim != 1:
        raise ShapeError(f"outer: expects 1-D tensors, got shapes {tuple(input.shape)} and {tuple(vec2.shape)}")
    return unsqueeze(input, 1) * unsqueeze(vec2, 0)


ger = outer


def vdot(input, other):
    """torch.vdot: the dot product of two 1-D tensors (real dtypes: no conjugation)."""
    if input.ndim != 1 or other.ndim != 1 or input.shape[0] != other.shape[0]:
        raise ShapeError(f"vdot: expects two 1-D tensors of the same size, got shapes {tuple(input.shape)} and "
                         f"{tuple(other.shape)}")
    prod = input * other
    return sum_(prod, dtype=prod.dtype)   # torch.vdot keeps the dtype (sum would widen ints to int64)


def tensordot(a, b, dims=2):
    """torch.tensordot: contract the last `dims` dims of a with the first `dims` of b, or the dims listed in
    dims = (dims_a, dims_b)."""
    if isinstance(dims, int):
        if dims < 0 or dims > min(a.ndim, b.ndim):
            raise ShapeError(f"tensordot: dims={dims} for shapes {tuple(a.shape)} and {tuple(b.shape)}")
        da, db = list(range(a.ndim - dims, a.ndim)), list(range(dims))
    else:
        da, db = ([d] if isinstance(d, int) else list(d) for d in dims)
        da = [norm_axes(d, a.ndim, "tensordot")[0] for d in da]
        db = [norm_axes(d, b.ndim, "tensordot")[0] for d in db]
    if len(da) != len(db) or any(a.shape[i] != b.shape[j] for i, j in zip(da, db)):
        raise ShapeError(f"tensordot: contracted dims {da} of {tuple(a.shape)} and {db} of {tuple(b.shape)} differ")
    free_a = [i for i in range(a.ndim) if i not in da]
    free_b = [j for j in range(b.ndim) if j not in db]
    k = 1
    for i in da:
        k = k * a.shape[i]
    fa, fb = 1, 1
    for i in free_a:
        fa = fa * a.shape[i]
    for j in free_b:
        fb = fb * b.shape[j]
    left = reshape(permute(a, free_a + da), (fa, k))
    right = reshape(permute(b, db + free_b), (k, fb))
    return reshape(matmul(left, right), tuple(a.shape[i] for i in free_a) + tuple(b.shape[j] for j in free_b))


def inner(input, other):
    """torch.inner: the sum over the last dims (a scalar times a tensor when one input is 0-D)."""
    if input.ndim == 0 or other.ndim == 0:
        return input * other
    if input.shape[-1] != other.shape[-1]:
        raise ShapeError(f"inner: last dims differ: shapes {tuple(input.shape)} and {tuple(other.shape)}")
    return tensordot(input, other, ([-1], [-1]))


def addmm(input, mat1, mat2, *, beta=1, alpha=1):
    """torch.addmm: beta * input + alpha * (mat1 @ mat2); with beta = 0 input is not read (no NaN from it)."""
    if mat1.ndim != 2 or mat2.ndim != 2:
        raise ShapeError(f"addmm: expects 2-D mat1 and mat2, got shapes {tuple(mat1.shape)} and {tuple(mat2.shape)}")
    return _scaled_sum(input, matmul(mat1, mat2), beta, alpha, "addmm")


def baddbmm(input, batch1, batch2, *, beta=1, alpha=1):
    """torch.baddbmm: beta * input + alpha * bmm(batch1, batch2)."""
    return _scaled_sum(input, bmm(batch1, batch2), beta, alpha, "baddbmm")


def _scaled_sum(input, prod, beta, alpha, op):
    if alpha != 1:
        prod = prod * alpha
    if beta == 0:
        return prod
    input = as_tensor(input, like=prod)
    broadcast_shapes(op, input.shape, prod.shape)
    return prod + (input * beta if beta != 1 else input)


def diagonal(input, offset=0, dim1=0, dim2=1):
    """torch.diagonal: the diagonal `offset` (above the main one when positive) of the matrices spanned by
    dim1 and dim2, as a last dim."""
    if input.ndim < 2:
        raise ShapeError(f"diagonal: expects at least 2 dims, got shape {tuple(input.shape)}")
    d1, d2 = (norm_axes(d, input.ndim, "diagonal")[0] for d in (dim1, dim2))
    if d1 == d2:
        raise ShapeError(f"diagonal: dim1 and dim2 must differ, got {dim1} and {dim2}")
    rest = [i for i in range(input.ndim) if i not in (d1, d2)]
    x = permute(input, rest + [d1, d2])
    m, n = x.shape[-2], x.shape[-1]
    if offset >= 0:
        k = min(offset, n)
        x = narrow(x, -1, k, n - k)
    else:
        k = min(-offset, m)
        x = narrow(x, -2, k, m - k)
    size = min(x.shape[-2], x.shape[-1])
    x = narrow(narrow(x, -2, 0, size), -1, 0, size)
    batch = tuple(x.shape[:-2])
    flat = reshape(x, batch + (size * size,))
    return flat[(slice(None),) * len(batch) + (slice(None, None, size + 1),)]


_diagonal_of = diagonal   # diag's argument named `diagonal` (PyTorch's) hides the function there


def linalg_diagonal(A, *, offset=0, dim1=-2, dim2=-1):
    """torch.linalg.diagonal: torch.diagonal with the last two dims as the default."""
    return diagonal(A, offset, dim1, dim2)


def diag_embed(input, offset=0, dim1=-2, dim2=-1):
    """torch.diag_embed: matrices (in dims dim1, dim2 of the result) with input's last dim on diagonal `offset`."""
    if input.ndim < 1:
        raise ShapeError("diag_embed: expects at least 1 dim, got a 0-d tensor")
    size = input.shape[-1]
    i = unsqueeze(arange(size, device=input.device), 1)
    j = unsqueeze(arange(size, device=input.device), 0)
    mat = where(i == j, unsqueeze(input, -1), zeros_like(unsqueeze(input, -1)))   # where: inf * 0 would be NaN
    k = abs(int(offset))
    if k:
        widths = [(0, 0)] * (mat.ndim - 2) + ([(0, k), (k, 0)] if offset > 0 else [(k, 0), (0, k)])
        mat = pad(mat, widths)
    nd = mat.ndim
    r, c = (norm_axes(d, nd, "diag_embed")[0] for d in (dim1, dim2))
    if r == c:
        raise ShapeError(f"diag_embed: dim1 and dim2 must differ, got {dim1} and {dim2}")
    if (r, c) == (nd - 2, nd - 1):
        return mat
    others = iter(range(nd - 2))
    order = [nd - 2 if p == r else nd - 1 if p == c else next(others) for p in range(nd)]
    return permute(mat, order)


def diag(input, diagonal=0):
    """torch.diag: a 1-D input becomes a square matrix with it on diagonal `diagonal`; a 2-D input gives that
    diagonal."""
    if input.ndim == 1:
        return diag_embed(input, diagonal)
    if input.ndim == 2:
        return _diagonal_of(input, diagonal)
    raise ShapeError(f"diag: expects a 1-D or 2-D tensor, got shape {tuple(input.shape)}")


def trace(input):
    """torch.trace: the sum of a 2-D tensor's main diagonal."""
    if input.ndim != 2:
        raise ShapeError(f"trace: expects a 2-D tensor, got shape {tuple(input.shape)}")
    return sum_(diagonal(input))


def logdet(A):
    """torch.logdet: log(det(A)); NaN where det(A) < 0, -inf where it is 0."""
    sign, logabs = slogdet(A)
    return where(sign < 0, float("nan"), logabs)


def pinverse(input, rcond=1e-15):
    """torch.pinverse: pinv with singular values below rcond * the largest treated as zero."""
    return pinv(input, rtol=rcond)


def kron(input, other):
    """torch.kron: the Kronecker product (the inputs' dims aligned from the end)."""
    nd = max(input.ndim, other.ndim)
    sa = (1,) * (nd - input.ndim) + tuple(input.shape)
    sb = (1,) * (nd - other.ndim) + tuple(other.shape)
    a = reshape(input, tuple(v for d in sa for v in (d, 1)))
    b = reshape(other, tuple(v for d in sb for v in (1, d)))
    return reshape(a * b, tuple(x * y for x, y in zip(sa, sb)))


def cholesky_solve(B, L, upper=False):
    """torch.cholesky_solve: X with A X = B for A = L L^T (upper=True: A = U^T U), from A's Cholesky factor."""
    _check_matrix("cholesky_solve", L, square=True)
    if upper:
        return solve_triangular(L, solve_triangular(L.mT, B, upper=False), upper=True)
    return solve_triangular(L.mT, solve_triangular(L, B, upper=False), upper=True)


def chain_matmul(*matrices):
    """torch.chain_matmul (deprecated there for linalg.multi_dot): the product of 2-D matrices."""
    return multi_dot(matrices)
