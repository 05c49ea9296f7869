"""matmul (batched, broadcasting, numpy's 1-D rules) and einsum."""
import string

from .. import dtypes as _dt
from ..errors import ShapeError
from ..dispatch import apply
from ..graph.avals import Aval
from ..tensor import as_tensor
from .infer import broadcast_shapes, result_dtype
from .onnx_rules import args, emit_in, out_dtype
from .registry import defop
from .shape import broadcast_to, reshape


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
        gb = matmul(g.mT, a).mT if _transposed_layout(b) else matmul(a.mT, g)
    return ga, gb


def _matmul_forward(xp, a, b):
    if a.dtype != b.dtype:  # the common dtype of the rule every op uses (numpy's would differ)
        _, (a, b) = _dt.promote_operands(a, b)
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
