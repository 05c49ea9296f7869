"""Comparisons, sets, counting and statistics with PyTorch's names and meanings: isclose/allclose/equal,
unique/unique_consecutive/bincount (their sizes depend on the values: eager only), histc, searchsorted/
bucketize, count_nonzero, diff, meshgrid/cartesian_prod, var_mean/std_mean, cov/corrcoef, aminmax,
nansum/nanmean, logcumsumexp, trapezoid/cumulative_trapezoid; and the matrix helpers addmv/addbmm, cdist,
rot90/fliplr/flipud, vander.

Everything but the value-sized ops and the binning primitives is a composite of ops below, so it traces,
differentiates and exports through them. This module sits above ops/selection.py.
"""
import builtins
import warnings

import numpy as np

from .. import return_types as _rt
from ..backend import accumulate as _accumulate
from ..dispatch import apply
from ..errors import DTypeError, InvalidValue, ShapeError
from ..graph.avals import Aval, Dim
from ..tensor import Tensor, as_tensor
from .creation import arange, ones_like, zeros_like
from .elementwise import (abs, astype, eq, exp, isfinite, isnan, log, logical_and, logical_not, logical_or, maximum,
                          ne, sqrt, where)
from .indexing import take_along_axis
from .linalg import diag, matmul, vector_norm
from .onnx_rules import not_exportable
from .infer import norm_axes
from .reduction import _count, all as _all, amax, amin, cumsum, mean, sum as _sum
from .registry import defop
from .shape import broadcast_to, concat, expand, flip, narrow, reshape, stack, transpose, unsqueeze


def _dim(x, dim, op):
    n = builtins.max(x.ndim, 1)
    if not isinstance(dim, (int, np.integer)) or isinstance(dim, bool) or not -n <= int(dim) < n:
        raise ShapeError(f"{op}: dim {dim!r} is out of range for a tensor of shape {tuple(x.shape)}")
    return int(dim) % n


# ---- closeness -------------------------------------------------------------------------------------

def isclose(input, other, rtol=1e-05, atol=1e-08, equal_nan=False):
    """torch.isclose: |input - other| <= atol + rtol * |other|, elementwise; equal values (infinities
    included) are close, an infinity is close only to itself, NaN only with equal_nan=True."""
    if not isinstance(other, Tensor):
        other = as_tensor(other, like=input)
    if input.dtype != other.dtype:
        raise DTypeError(f"isclose: input and other must have the same dtype, got {input.dtype} and {other.dtype}")
    same = eq(input, other)
    if input.dtype.kind == "b":
        return same
    diff = abs(input - other)
    near = diff <= atol + rtol * abs(other)
    if input.dtype.kind == "f":
        near = logical_and(near, logical_and(isfinite(input), isfinite(other)))
    out = logical_or(same, near)
    if equal_nan:
        out = logical_or(out, logical_and(isnan(input), isnan(other)))
    return out


def allclose(input, other, rtol=1e-05, atol=1e-08, equal_nan=False):
    """torch.allclose: a Python bool."""
    return bool(_all(isclose(input, other, rtol, atol, equal_nan)))


def equal(input, other):
    """torch.equal: True when both have the same shape and the same values (a Python bool)."""
    if tuple(input.shape) != tuple(other.shape):
        return False
    return bool(_all(eq(input, other)))


# ---- value-sized results: eager only ----------------------------------------------------------------

def _unique_forward(xp, x, sorted, axis, consecutive):
    if consecutive:
        if axis is None:
            flat = x.reshape(-1)
            if flat.size == 0:
                return flat, xp.zeros(x.shape, np.int64), xp.zeros((0,), np.int64)
            start = xp.concatenate([xp.ones(1, bool), flat[1:] != flat[:-1]])
        else:
            moved = xp.moveaxis(x, axis, 0)
            n = moved.shape[0]
            rows = moved.reshape(n, -1)
            start = xp.concatenate([xp.ones(builtins.min(n, 1), bool), (rows[1:] != rows[:-1]).any(axis=1)])
            flat = moved
        idx = xp.cumsum(start) - 1
        firsts = xp.nonzero(start)[0]
        counts = xp.diff(xp.concatenate([firsts, xp.array([start.shape[0]])])).astype(np.int64)
        vals = flat[firsts] if axis is None else xp.moveaxis(flat[firsts], 0, axis)
        inverse = idx.reshape(x.shape) if axis is None else idx
        return vals, inverse.astype(np.int64), counts
    vals, inverse, counts = xp.unique(x, return_inverse=True, return_counts=True, axis=axis)
    inverse = inverse.reshape(x.shape) if axis is None else inverse.reshape(-1)
    return vals, inverse.astype(np.int64), counts.astype(np.int64)


def _unique_infer(x, sorted, axis, consecutive):
    n = Dim("unique")
    vals = (n,) if axis is None else tuple(n if i == axis else d for i, d in enumerate(x.shape))
    inv = tuple(x.shape) if axis is None else (x.shape[axis],)
    return Aval(vals, x.dtype), Aval(inv, np.int64), Aval((n,), np.int64)


UNIQUE = defop("unique", _unique_forward, _unique_infer, None, differentiable=False, n_out=3,
               shape_from_values=True, foldable=False,
               onnx=not_exportable("the number of unique values depends on the data (ONNX Unique exists, but "
                                   "dualgraph traces no value-sized results)"))


def _unique(op, input, sorted, return_inverse, return_counts, dim, consecutive):
    axis = None if dim is None else _dim(input, dim, op)
    vals, inverse, counts = apply(UNIQUE, (input,), {"sorted": bool(sorted), "axis": axis,
                                                      "consecutive": consecutive})
    out = (vals,) + ((inverse,) if return_inverse else ()) + ((counts,) if return_counts else ())
    return out[0] if len(out) == 1 else out


def unique(input, sorted=True, return_inverse=False, return_counts=False, dim=None):
    """torch.unique: the distinct values (sorted; `sorted=False` gives them sorted too, as PyTorch's CPU
    kernel does), with the inverse indices and counts when asked; `dim` takes distinct slices along dim.
    The output size depends on the values, so it runs eagerly only (tracing it is an error)."""
    return _unique("unique", input, sorted, return_inverse, return_counts, dim, False)


def unique_consecutive(input, return_inverse=False, return_counts=False, dim=None):
    """torch.unique_consecutive: drops consecutive repeats only (eager only, as unique)."""
    return _unique("unique_consecutive", input, True, return_inverse, return_counts, dim, True)


def _bincount_forward(xp, x, w, minlength):
    if x.ndim != 1:
        raise ShapeError(f"bincount: input must be 1-D, got shape {tuple(x.shape)}")
    if x.dtype.kind not in "iu":
        raise DTypeError(f"bincount: input must hold integers, got {x.dtype}")
    if x.size and int(x.min()) < 0:
        raise InvalidValue(f"bincount: input must be non-negative, got a minimum of {int(x.min())}")
    out = xp.bincount(x, weights=w, minlength=minlength)
    if w is None:
        return out.astype(np.int64)
    return out.astype(w.dtype if w.dtype.kind == "f" else np.float64)


BINCOUNT = defop("bincount", _bincount_forward,
                 lambda x, w, minlength: Aval((Dim("bins"),), np.int64 if w is None else (
                     w.dtype if w.dtype.kind == "f" else np.dtype(np.float64))),
                 None, differentiable=False, shape_from_values=True, foldable=False,
                 onnx=not_exportable("bincount's length depends on the largest value"))


def bincount(input, weights=None, minlength=0):
    """torch.bincount: counts of each value 0..max(input) (at least `minlength` bins); with `weights`, their
    sums (float). Eager only: the length depends on the values."""
    if weights is not None and tuple(weights.shape) != tuple(input.shape):
        raise ShapeError(f"bincount: weights must have the input's shape {tuple(input.shape)}, got "
                         f"{tuple(weights.shape)}")
    return apply(BINCOUNT, (input, weights), {"minlength": int(minlength)})


# ---- binning with fixed sizes (traceable) -----------------------------------------------------------

def _histc_forward(xp, x, bins, lo, hi):
    data = x.reshape(-1)
    if lo == hi and data.size:
        lo, hi = float(data.min()), float(data.max())
    if lo == hi:
        lo, hi = lo - 1, hi + 1
    keep = data[(data >= lo) & (data <= hi)]
    counts, _ = xp.histogram(keep, bins=bins, range=(lo, hi))
    return counts.astype(x.dtype)


HISTC = defop("histc", _histc_forward, lambda x, bins, lo, hi: Aval((bins,), x.dtype), None, differentiable=False,
              onnx=not_exportable("ONNX has no histogram op"))


def histc(input, bins=100, min=0, max=0):
    """torch.histc: counts in `bins` equal bins over [min, max] (both 0: the data's range); values outside
    are ignored. The counts have input's (floating) dtype."""
    if input.dtype.kind != "f":
        raise DTypeError(f"histc: needs a floating tensor, got {input.dtype} (as PyTorch)")
    if bins <= 0:
        raise InvalidValue(f"histc: bins must be positive, got {bins}")
    if min > max:
        raise InvalidValue(f"histc: max ({max}) must be >= min ({min})")
    return apply(HISTC, (input,), {"bins": int(bins), "lo": float(min), "hi": float(max)})


def _searchsorted_forward(xp, seq, values, right):
    side = "right" if right else "left"
    if seq.ndim == 1:
        return xp.searchsorted(seq, values, side=side).astype(np.int64)
    lead = seq.shape[:-1]
    s2 = seq.reshape(-1, seq.shape[-1])
    v2 = values.reshape(-1, values.shape[-1])
    out = xp.stack([xp.searchsorted(s, v, side=side) for s, v in zip(s2, v2)]) if s2.shape[0] else \
        xp.zeros(v2.shape, np.int64)
    return out.reshape(lead + values.shape[-1:]).astype(np.int64)


def _searchsorted_onnx(ctx, node, seq, values):
    # the position is how many elements sort before the value: a count of comparisons
    s_aval, v_aval = node.inputs[0].aval, node.inputs[1].aval
    dt = np.result_type(s_aval.dtype, v_aval.dtype)
    seq, values = ctx.cast(seq, s_aval.dtype, dt), ctx.cast(values, v_aval.dtype, dt)
    right = ctx.attrs(node)["right"]
    v = ctx.unsqueeze(values, [-1])
    s = seq if len(s_aval.shape) == 1 else ctx.unsqueeze(seq, [-2])
    before = ctx.emit("LessOrEqual" if right else "Less", [s, v])
    return ctx.reduce("ReduceSum", ctx.cast(before, np.bool_, np.int64), (-1,), False)


def _searchsorted_infer(seq, values, right):
    if len(seq.shape) > 1 and (len(values.shape) != len(seq.shape) or tuple(values.shape[:-1]) != tuple(
            seq.shape[:-1])):
        raise ShapeError(f"searchsorted: an N-D sorted_sequence {tuple(seq.shape)} needs values with the same "
                         f"leading dims, got {tuple(values.shape)}")
    return Aval(tuple(values.shape), np.int64)


SEARCHSORTED = defop("searchsorted", _searchsorted_forward, _searchsorted_infer, None, differentiable=False,
                     onnx=_searchsorted_onnx)


def searchsorted(sorted_sequence, input, *, out_int32=False, right=False, side=None, sorter=None):
    """torch.searchsorted: for each value, the index where it would be inserted to keep sorted_sequence's
    last dim sorted (`right=True` or side='right': after equal elements). A 1-D sequence serves values of
    any shape; an N-D one needs values with the same leading dims. `sorter` sorts an unsorted sequence."""
    if side is not None:
        if side not in ("left", "right"):
            raise InvalidValue(f"searchsorted: side must be 'left' or 'right', got {side!r}")
        if right and side == "left":
            raise InvalidValue("searchsorted: side='left' and right=True contradict each other")
        right = side == "right"
    if sorter is not None:
        sorted_sequence = sorted_sequence.take_along_axis(sorter, -1) if sorted_sequence.ndim > 1 else \
            sorted_sequence[sorter]
    scalar = not isinstance(input, Tensor)
    values = as_tensor(input, like=sorted_sequence) if scalar else input
    if scalar:
        values = reshape(values, (1,)) if sorted_sequence.ndim == 1 else values
    out = apply(SEARCHSORTED, (sorted_sequence, values), {"right": bool(right)})
    if scalar and sorted_sequence.ndim == 1:
        out = reshape(out, ())
    return out.astype("int32") if out_int32 else out


def bucketize(input, boundaries, *, out_int32=False, right=False):
    """torch.bucketize: the bucket index of each value for 1-D `boundaries` (right=False:
    boundaries[i-1] < x <= boundaries[i])."""
    if boundaries.ndim != 1:
        raise ShapeError(f"bucketize: boundaries must be 1-D, got shape {tuple(boundaries.shape)}")
    return searchsorted(boundaries, input, out_int32=out_int32, right=right)


# ---- counting, differences, grids -------------------------------------------------------------------

def count_nonzero(input, dim=None):
    """torch.count_nonzero: int64 counts of nonzero elements over `dim` (an int, a tuple, or all)."""
    return _sum(astype(ne(input, 0), "int64"), dim=dim)


def diff(input, n=1, dim=-1, prepend=None, append=None):
    """torch.diff: the n-th forward difference along dim, after concatenating prepend/append there."""
    if input.ndim == 0:
        raise ShapeError("diff: expects a tensor with at least one dimension, got a 0-d tensor")
    if n < 0:
        raise InvalidValue(f"diff: order n must be non-negative, got {n}")
    axis = _dim(input, dim, "diff")
    parts = ([_as_part(prepend, input, axis)] if prepend is not None else []) + [input] + \
        ([_as_part(append, input, axis)] if append is not None else [])
    x = concat(parts, axis) if len(parts) > 1 else input
    for _ in range(n):
        length = x.shape[axis]
        if length == 0:
            break
        a, b = narrow(x, axis, 1, length - 1), narrow(x, axis, 0, length - 1)
        x = logical_and(a, logical_not(b)) | logical_and(b, logical_not(a)) if x.dtype.kind == "b" else a - b
    return x


def _as_part(extra, input, axis):
    e = as_tensor(extra, like=input) if not isinstance(extra, Tensor) else extra
    if e.ndim == 0:
        shape = list(input.shape)
        shape[axis] = 1
        e = broadcast_to(e, tuple(shape))
    return e


def meshgrid(*tensors, indexing=None):
    """torch.meshgrid: N 1-D (or 0-d) tensors -> N tensors of the grid's shape. indexing='ij' (matrix) or
    'xy' (Cartesian: the first two dims swapped); without it PyTorch's warning, and 'ij'."""
    if len(tensors) == 1 and isinstance(tensors[0], (list, tuple)):
        tensors = tuple(tensors[0])
    if indexing is None:
        warnings.warn("torch.meshgrid: in an upcoming release, it will be required to pass the indexing "
                      "argument.", UserWarning, stacklevel=2)
        indexing = "ij"
    if indexing not in ("ij", "xy"):
        raise InvalidValue(f"meshgrid: indexing must be 'ij' or 'xy', got {indexing!r}")
    for t in tensors:
        if t.ndim > 1:
            raise ShapeError(f"meshgrid: expects 0-D or 1-D tensors, got shape {tuple(t.shape)}")
    vecs = [reshape(t, (-1,)) for t in tensors]
    swap = indexing == "xy" and len(vecs) >= 2
    if swap:
        vecs[0], vecs[1] = vecs[1], vecs[0]
    shape = tuple(v.shape[0] for v in vecs)
    n = len(vecs)
    out = []
    for i, v in enumerate(vecs):
        view = [1] * n
        view[i] = shape[i]
        out.append(expand(reshape(v, tuple(view)), shape))
    if swap:  # the grids of the swapped inputs, given back in the caller's order
        out[0], out[1] = out[1], out[0]
    return tuple(out)


def cartesian_prod(*tensors):
    """torch.cartesian_prod: the rows of every combination of the 1-D tensors' elements (one tensor: itself)."""
    if len(tensors) == 1:
        return tensors[0]
    grids = meshgrid(*tensors, indexing="ij")
    return stack([reshape(g, (-1,)) for g in grids], dim=1)


# ---- statistics ------------------------------------------------------------------------------------

def _correction(op, correction, unbiased):
    if unbiased is not None:
        if correction is not None:
            raise InvalidValue(f"{op}: pass either correction or unbiased, not both")
        return 1 if unbiased else 0
    return 1 if correction is None else correction


def _float(x):
    return x if x.dtype.kind == "f" else astype(x, "float32")


def var_mean(input, dim=None, unbiased=None, keepdim=False, *, correction=None):
    """torch.var_mean: (variance with `correction` (default 1, Bessel's), mean) over dim."""
    if isinstance(dim, bool) and unbiased is None:  # var_mean(x, False): the old unbiased positional
        dim, unbiased = None, dim
    c = _correction("var_mean", correction, unbiased)
    x = _float(input)
    m = mean(x, dim=dim, keepdim=True)
    centered = x - m
    n = _count(x, norm_axes(dim, x.ndim, "var_mean"))
    # a Python count stays a Python number (a tensor made of it would sit on the CPU beside a GPU input)
    v = _sum(centered * centered, dim=dim, keepdim=keepdim) / (maximum(n - c, 0) if isinstance(n, Tensor)
                                                               else builtins.max(n - c, 0))
    return v, (m if keepdim else mean(x, dim=dim, keepdim=False))


def std_mean(input, dim=None, unbiased=None, keepdim=False, *, correction=None):
    """torch.std_mean: (standard deviation with `correction` (default 1), mean) over dim."""
    v, m = var_mean(input, dim, unbiased, keepdim, correction=correction)
    return sqrt(v), m


def cov(input, *, correction=1, fweights=None, aweights=None):
    """torch.cov: the covariance of the variables in input's rows (observations in columns); fweights
    (integer repeats) and aweights (observation weights) as numpy.cov."""
    if input.ndim > 2:
        raise ShapeError(f"cov: expects a 1-D or 2-D tensor, got shape {tuple(input.shape)}")
    x = _float(input)
    x = reshape(x, (1, -1)) if x.ndim < 2 else x
    n_obs = x.shape[1]
    w = None
    if fweights is not None:
        if fweights.dtype.kind not in "iu":
            raise DTypeError(f"cov: fweights must be integers, got {fweights.dtype}")
        w = astype(fweights, x.dtype)
    if aweights is not None:
        if aweights.dtype.kind != "f":
            raise DTypeError(f"cov: aweights must be floating, got {aweights.dtype}")
        w = astype(aweights, x.dtype) if w is None else w * astype(aweights, x.dtype)
    if w is None:
        avg = mean(x, dim=1, keepdim=True)
        norm = n_obs - correction
    else:
        wsum = _sum(w)
        avg = _sum(x * w, dim=1, keepdim=True) / wsum
        if aweights is None or correction == 0:
            norm = wsum - correction
        else:
            norm = wsum - correction * _sum(w * astype(aweights, x.dtype)) / wsum
    xc = x - avg
    xw = xc if w is None else xc * w
    c = matmul(xw, transpose(xc, 0, 1)) / (maximum(norm, 0) if isinstance(norm, Tensor) else builtins.max(norm, 0))
    return reshape(c, ()) if input.ndim < 2 or input.shape[0] == 1 and input.ndim < 2 else c


def corrcoef(input):
    """torch.corrcoef: Pearson correlation coefficients of input's rows, clipped to [-1, 1]."""
    c = cov(input)
    if c.ndim == 0:
        return c / c
    d = sqrt(_diag(c))
    r = c / unsqueeze(d, 1) / unsqueeze(d, 0)
    return r.clip(-1, 1)


def _diag(c):
    n = c.shape[0]
    i = arange(n, device=c.device)
    return _sum(c * astype(eq(unsqueeze(i, 1), unsqueeze(i, 0)), c.dtype), dim=1)


def aminmax(input, *, dim=None, keepdim=False):
    """torch.aminmax: (min, max) as a named tuple, over all elements or one dim."""
    if dim is None and keepdim:
        return _rt.aminmax((reshape(amin(input), (1,) * input.ndim), reshape(amax(input), (1,) * input.ndim)))
    return _rt.aminmax((amin(input, dim=dim, keepdim=keepdim), amax(input, dim=dim, keepdim=keepdim)))


def nansum(input, dim=None, keepdim=False, *, dtype=None):
    """torch.nansum: the sum treating NaN as zero."""
    x = where(isnan(input), zeros_like(input), input) if input.dtype.kind == "f" else input
    out = _sum(x, dim=dim, keepdim=keepdim)
    return out if dtype is None else astype(out, dtype)


def nanmean(input, dim=None, keepdim=False, *, dtype=None):
    """torch.nanmean: the mean of the non-NaN elements (NaN where there are none)."""
    if input.dtype.kind != "f":
        raise DTypeError(f"nanmean: needs a floating tensor, got {input.dtype} (as PyTorch)")
    keep = logical_not(isnan(input))
    out = nansum(input, dim, keepdim) / _sum(astype(keep, input.dtype), dim=dim, keepdim=keepdim)
    return out if dtype is None else astype(out, dtype)


def _logcumsumexp_forward(xp, x, axis):
    with np.errstate(invalid="ignore"):  # -inf - -inf inside logaddexp: the result is -inf, as wanted
        return _accumulate(xp, "logaddexp", x, axis)


def _logcumsumexp_vjp(ctx, g):
    # d out_i / d x_j = exp(x_j - out_i) for j <= i; the sum over i >= j is a reverse logcumsumexp in log
    # space, with g split into its positive and negative parts (log of each), as PyTorch's
    x, out, axis = ctx.inputs[0], ctx.out, ctx.attrs["axis"]

    def part(keep, gpart):
        # a zero part stands as a huge negative log, not -inf: -inf - -inf would be NaN in the gradient's own
        # gradient
        one = ones_like(gpart)
        logs = where(keep, log(where(keep, gpart, one)), -1e30) - out
        rev = flip(apply(LOGCUMSUMEXP, (flip(logs, (axis,)),), {"axis": axis}), (axis,))
        return exp(x + rev)
    pos, negs = g > 0, g < 0
    return (part(pos, g) - part(negs, -g),)


def _logcumsumexp_onnx(ctx, node, x):
    # shifted by the max along the axis: exact unless the range along it exceeds the float range
    dt = node.outputs[0].aval.dtype
    axis = ctx.attrs(node)["axis"]
    m = ctx.reduce("ReduceMax", x, (axis,), True)
    finite = ctx.emit("Not", [ctx.emit("IsInf", [m])])
    m = ctx.emit("Where", [finite, m, ctx.const(0, dt)])
    s = ctx.emit("CumSum", [ctx.emit("Exp", [ctx.emit("Sub", [x, m])]), ctx.const(axis, np.int64)])
    return ctx.emit("Add", [ctx.emit("Log", [s]), m])


LOGCUMSUMEXP = defop("logcumsumexp", _logcumsumexp_forward, lambda x, axis: Aval(x.shape, x.dtype),
                     _logcumsumexp_vjp, saves_output=True, onnx=_logcumsumexp_onnx)


def logcumsumexp(input, dim):
    """torch.logcumsumexp: log(cumsum(exp(input))) along dim, computed as a running logaddexp (no overflow,
    no underflow of small terms)."""
    axis = _dim(input, dim, "logcumsumexp")
    if input.ndim == 0:
        return _float(input).clone()
    return apply(LOGCUMSUMEXP, (_float(input),), {"axis": axis})


def trapezoid(y, x=None, *, dx=None, dim=-1):
    """torch.trapezoid: the trapezoid rule along dim, with sample points x or spacing dx (default 1)."""
    axis = _dim(y, dim, "trapezoid")
    n = y.shape[axis]
    if n == 0:
        return _sum(_float(y), dim=axis)
    avg = (narrow(y, axis, 1, n - 1) + narrow(y, axis, 0, n - 1)) * 0.5
    return _sum(avg * _spacing(y, x, dx, axis, n), dim=axis)


def cumulative_trapezoid(y, x=None, *, dx=None, dim=-1):
    """torch.cumulative_trapezoid: the running trapezoid rule along dim (one element shorter)."""
    axis = _dim(y, dim, "cumulative_trapezoid")
    n = y.shape[axis]
    if n == 0:
        return _float(y)
    avg = (narrow(y, axis, 1, n - 1) + narrow(y, axis, 0, n - 1)) * 0.5
    return cumsum(avg * _spacing(y, x, dx, axis, n), dim=axis)


def _spacing(y, x, dx, axis, n):
    if x is None:
        return 1.0 if dx is None else dx
    if dx is not None:
        raise InvalidValue("trapezoid: pass x or dx, not both")
    if x.ndim == 1:
        d = narrow(x, 0, 1, n - 1) - narrow(x, 0, 0, n - 1)
        shape = [1] * y.ndim
        shape[axis] = n - 1
        return reshape(d, tuple(shape))
    xa = axis - y.ndim + x.ndim
    return narrow(x, xa, 1, n - 1) - narrow(x, xa, 0, n - 1)


# ---- matrix helpers ---------------------------------------------------------------------------------

def addmv(input, mat, vec, *, beta=1, alpha=1):
    """torch.addmv: beta * input + alpha * (mat @ vec)."""
    if mat.ndim != 2 or vec.ndim != 1:
        raise ShapeError(f"addmv: expects a 2-D matrix and a 1-D vector, got shapes {tuple(mat.shape)} and "
                         f"{tuple(vec.shape)}")
    return _scaled(input, matmul(mat, vec), beta, alpha)


def addbmm(input, batch1, batch2, *, beta=1, alpha=1):
    """torch.addbmm: beta * input + alpha * sum_b(batch1[b] @ batch2[b])."""
    if batch1.ndim != 3 or batch2.ndim != 3:
        raise ShapeError(f"addbmm: expects 3-D batches, got shapes {tuple(batch1.shape)} and {tuple(batch2.shape)}")
    return _scaled(input, _sum(matmul(batch1, batch2), dim=0), beta, alpha)


def _scaled(input, prod, beta, alpha):
    prod = prod if alpha == 1 else prod * alpha
    if beta == 0:  # PyTorch: input is ignored (its NaN and inf do not propagate)
        return prod + zeros_like(input)
    return (input if beta == 1 else input * beta) + prod


def cdist(x1, x2, p=2.0, compute_mode=None):
    """torch.cdist: the p-norm distance between each row of x1 (..., P, M) and of x2 (..., R, M)."""
    if x1.ndim < 2 or x2.ndim < 2 or x1.shape[-1] != x2.shape[-1]:
        raise ShapeError(f"cdist: expects (..., P, M) and (..., R, M) with the same M, got shapes "
                         f"{tuple(x1.shape)} and {tuple(x2.shape)}")
    if p < 0:
        raise InvalidValue(f"cdist: p must be non-negative, got {p}")
    d = unsqueeze(x1, -2) - unsqueeze(x2, -3)
    if p == 2:
        sq = _sum(d * d, dim=-1)
        # the gradient of sqrt at 0 is infinite; PyTorch's is 0 for a zero distance
        zero = sq == 0
        return where(zero, zeros_like(sq), sqrt(where(zero, 1.0, sq)))
    if p == float("inf"):
        return amax(abs(d), dim=-1)
    if p == 1:
        return _sum(abs(d), dim=-1)
    if p == 0:
        return _sum(astype(ne(d, 0), d.dtype), dim=-1)
    return _sum(abs(d) ** p, dim=-1) ** (1.0 / p)


def rot90(input, k=1, dims=(0, 1)):
    """torch.rot90: rotate by 90 degrees k times in the plane of dims, from the first towards the second."""
    if len(dims) != 2:
        raise InvalidValue(f"rot90: dims must hold two dims, got {dims!r}")
    a, b = (_dim(input, d, "rot90") for d in dims)
    if a == b:
        raise InvalidValue(f"rot90: the two dims must differ, got {dims!r}")
    k %= 4
    if k == 0:
        return input.clone()
    if k == 2:
        return flip(input, (a, b))
    if k == 1:
        return transpose(flip(input, (b,)), a, b)
    return flip(transpose(input, a, b), (b,))


def fliplr(input):
    if input.ndim < 2:
        raise ShapeError(f"fliplr: input must be at least 2-D, got shape {tuple(input.shape)}")
    return flip(input, (1,))


def flipud(input):
    if input.ndim < 1:
        raise ShapeError("flipud: input must be at least 1-D, got a 0-d tensor")
    return flip(input, (0,))


def vander(x, N=None, increasing=False):
    """torch.vander: columns x**(N-1), ..., x, 1 (increasing=True: the reverse)."""
    if x.ndim != 1:
        raise ShapeError(f"vander: x must be 1-D, got shape {tuple(x.shape)}")
    n = x.shape[0] if N is None else N
    cols = [x ** i if i else (x * 0 + 1) for i in range(n)]
    if not increasing:
        cols = cols[::-1]
    if not cols:
        return reshape(x, (-1, 1))[:, :0]
    return stack(cols, dim=1)



# ---- more reductions and helpers --------------------------------------------------------------------

def dist(input, other, p=2):
    """torch.dist: the p-norm of input - other (broadcast), over all elements."""
    return vector_norm(input - other, ord=p)


def take_along_dim(input, indices, dim=None):
    """torch.take_along_dim: take_along_axis with the indices broadcast against input (dim=None: both
    flattened)."""
    if dim is None:
        return take_along_axis(reshape(input, (-1,)), reshape(indices, (-1,)), 0)
    axis = _dim(input, dim, "take_along_dim")
    shape_x, shape_i = list(input.shape), list(indices.shape)
    if len(shape_i) != len(shape_x):
        raise ShapeError(f"take_along_dim: input {tuple(input.shape)} and indices {tuple(indices.shape)} need the "
                         f"same number of dims")
    bx = [max(a, b) if k != axis else a for k, (a, b) in enumerate(zip(shape_x, shape_i))]
    bi = [max(a, b) if k != axis else b for k, (a, b) in enumerate(zip(shape_x, shape_i))]
    return take_along_axis(broadcast_to(input, tuple(bx)), broadcast_to(indices, tuple(bi)), axis)


def diagflat(input, offset=0):
    """torch.diagflat: a 2-D matrix with input's flattened elements on the offset diagonal."""
    return diag(reshape(input, (-1,)), offset)


def quantile(input, q, dim=None, keepdim=False, *, interpolation="linear"):
    """torch.quantile: the q-th quantiles (q a number or a 1-D tensor in [0, 1]) along dim (None: all
    elements) with 'linear', 'lower', 'higher', 'midpoint' or 'nearest' interpolation; a 1-D q puts its dim
    first. The gradient goes to the (one or two) order statistics each quantile reads, as PyTorch's."""
    if interpolation not in ("linear", "lower", "higher", "midpoint", "nearest"):
        raise InvalidValue(f"quantile: interpolation must be one of linear, lower, higher, midpoint, nearest, "
                           f"got {interpolation!r}")
    if input.dtype.kind != "f":
        raise DTypeError(f"quantile: needs a floating tensor, got {input.dtype} (as PyTorch)")
    scalar_q = not isinstance(q, Tensor)
    qs = np.atleast_1d(np.asarray(q.numpy() if not scalar_q and not q._symbolic else q, dtype=np.float64)) \
        if scalar_q or not q._symbolic else None
    if qs is None:
        raise InvalidValue("quantile: q must be concrete (a number or an eager tensor)")
    if qs.ndim > 1 or ((qs < 0) | (qs > 1)).any():
        raise InvalidValue(f"quantile: q must be a number or 1-D tensor with values in [0, 1], got {q!r}")
    if dim is None:
        x, axis = reshape(input, (-1,)), 0
    else:
        x, axis = input, _dim(input, dim, "quantile")
    n = x.shape[axis]
    if n == 0:
        raise ShapeError(f"quantile: input along dim {dim} is empty (shape {tuple(input.shape)})")
    srt = x.sort(dim=axis).values
    outs = []
    for qv in qs:
        pos = qv * (n - 1)
        lo, hi = int(np.floor(pos)), int(np.ceil(pos))
        if interpolation == "lower":
            hi = lo
        elif interpolation == "higher":
            lo = hi
        elif interpolation == "nearest":
            lo = hi = int(np.round(pos))   # half to even, as PyTorch
        a = narrow(srt, axis, lo, 1)
        if hi == lo:
            v = a
        else:
            b = narrow(srt, axis, hi, 1)
            w = 0.5 if interpolation == "midpoint" else pos - lo
            v = a + (b - a) * w
        if not keepdim:
            v = reshape(v, tuple(d for k, d in enumerate(v.shape) if k != axis))
        elif dim is None:
            v = reshape(v, (1,) * input.ndim)
        outs.append(v)
    return outs[0] if scalar_q or np.ndim(q.numpy() if isinstance(q, Tensor) else q) == 0 else stack(outs, 0)


def nanquantile(input, q, dim=None, keepdim=False, *, interpolation="linear"):
    """torch.nanquantile: quantile ignoring NaN (eager: the count of non-NaN values picks the positions)."""
    if dim is None:
        flat = reshape(input, (-1,))
        keep = logical_not(isnan(flat))
        vals = flat[keep]
        out = quantile(vals, q, None, False, interpolation=interpolation) if vals.shape[0] else \
            quantile(flat, q, None, False, interpolation=interpolation) * float("nan")
        if keepdim:
            out = reshape(out, tuple(out.shape[:1]) * (out.ndim > 0) + (1,) * input.ndim)
        return out
    axis = _dim(input, dim, "nanquantile")
    rows = [nanquantile(r, q, None, False, interpolation=interpolation)
            for r in [select_row for select_row in moveaxis_rows(input, axis)]]
    out = stack(rows, -1 if isinstance(q, Tensor) and q.ndim == 1 else 0)
    lead = tuple(d for k, d in enumerate(input.shape) if k != axis)
    out = reshape(out, ((-1,) if isinstance(q, Tensor) and q.ndim == 1 else ()) + lead)
    if keepdim:
        out = unsqueeze(out, axis + (1 if isinstance(q, Tensor) and q.ndim == 1 else 0))
    return out


def moveaxis_rows(x, axis):
    """The 1-D slices of x along axis, in row-major order of the other dims."""
    moved = reshape(transpose(x, axis, -1) if axis != x.ndim - 1 else x, (-1, x.shape[axis]))
    return [moved[i] for i in range(moved.shape[0])]
