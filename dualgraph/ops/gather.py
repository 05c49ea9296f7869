"""Data-dependent index primitives: take_along_axis (PyTorch's gather), scatter_add, nonzero.

The gradient of each of the first two is the other, so they share this module; it sits below the
elementwise and shape ops, whose one-argument `where` and reflect/edge `pad` gradient use them.
The numpy-broadcasting `take_along_axis` and PyTorch's `gather`, which reshape their operands
before reaching the primitive, are composed on top in ops/indexing.py.
"""
import numpy as np

from ..backend import scatter_add as _scatter_add
from ..dispatch import apply
from ..errors import IndexOutOfRange, ShapeError
from ..graph.avals import Aval, Dim
from ..tensor import as_tensor
from .creation import zeros_like
from .infer import norm_axes
from .onnx_rules import out_dtype
from .registry import defop


def along_axis_index(xp, index, axis):
    """The full advanced index that reads `index` along `axis`: outside `axis` the index may be smaller
    than the tensor it reads (PyTorch's gather/scatter_add read and write the leading part)."""
    idx = []
    for d in range(index.ndim):
        if d == axis:
            idx.append(index)
        else:
            shape = [1] * index.ndim
            shape[d] = index.shape[d]
            idx.append(xp.arange(index.shape[d]).reshape(shape))
    return tuple(idx)


def _take_along_axis_forward(xp, x, index, axis):
    return x[along_axis_index(xp, index, axis)]


def _take_along_axis_onnx(ctx, node, x, index):
    index = ctx.cast(index, node.inputs[1].aval.dtype, np.int64)
    return ctx.emit("GatherElements", [x, index], axis=int(ctx.attrs(node)["axis"]))


def _zeros_of(x, g):
    return zeros_like(x, dtype=g.dtype)  # an op, so it traces with symbolic shapes


TAKE_ALONG_AXIS = defop(
    "take_along_axis", _take_along_axis_forward,
    lambda x, index, axis: Aval(index.shape, x.dtype),
    lambda ctx, g: (scatter_add(_zeros_of(ctx.inputs[0], g), ctx.attrs["axis"], ctx.inputs[1], g), None),
    onnx=_take_along_axis_onnx)


def _scatter_add_forward(xp, x, index, src, axis):
    out = xp.array(x, copy=True)
    _scatter_add(xp, out, along_axis_index(xp, index, axis), src)
    return out


def _scatter_add_onnx(ctx, node, x, index, src):
    ctx.require(16, "scatter_add (ScatterElements with reduction='add')")
    index = ctx.cast(index, node.inputs[1].aval.dtype, np.int64)
    src = ctx.arg(node.inputs[2], src, out_dtype(node))
    return ctx.emit("ScatterElements", [x, index, src], axis=int(ctx.attrs(node)["axis"]), reduction="add")


SCATTER_ADD = defop(
    "scatter_add", _scatter_add_forward,
    lambda x, index, src, axis: Aval(x.shape, x.dtype),
    lambda ctx, g: (g, None, apply(TAKE_ALONG_AXIS, (g, ctx.inputs[1]), {"axis": ctx.attrs["axis"]})),
    onnx=_scatter_add_onnx)


def check_index(op, x, index, axis):
    if index.dtype.kind not in "iu":
        raise IndexOutOfRange(f"{op}: index must be an integer tensor, got {index.dtype}")
    n = x.shape[axis]
    if index._data is not None and index.numel() and isinstance(n, (int, np.integer)):  # symbolic n: unknown yet
        lo, hi = int(index._data.min()), int(index._data.max())
        if lo < -n or hi >= n:
            raise IndexOutOfRange(f"{op}: index values range over [{lo}, {hi}] but axis {axis} of shape "
                                  f"{tuple(x.shape)} has size {n}")


def scatter_add(x, dim, index, src):
    """PyTorch's scatter_add (out of place): out = x.clone(); out[index[i][j]][j] += src[i][j] (dim=0)."""
    index = as_tensor(index, like=x)
    src = as_tensor(src, like=x)
    axis = norm_axes(dim, x.ndim, "scatter_add")[0]
    if index.shape != src.shape:
        raise ShapeError(f"scatter_add: index shape {tuple(index.shape)} must equal src shape {tuple(src.shape)}")
    check_index("scatter_add", x, index, axis)
    return apply(SCATTER_ADD, (x, index, src), {"axis": axis})


NONZERO = defop("nonzero", lambda xp, x: xp.stack(xp.nonzero(x), axis=-1).astype(np.int64),
                lambda x: Aval((Dim("nonzero"), x.ndim), np.int64), None, differentiable=False, shape_from_values=True,
                foldable=False,  # count: data-dependent
                onnx=lambda ctx, node, x: ctx.emit("Transpose", [ctx.emit("NonZero", [x])], perm=[1, 0]))


def nonzero(x, as_tuple=False):
    out = apply(NONZERO, (x,))
    if as_tuple:
        return tuple(out[:, i] for i in range(x.ndim))
    return out
