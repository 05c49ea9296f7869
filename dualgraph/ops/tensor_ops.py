"""Tensor utilities with PyTorch's names and meanings: select, Tensor.unfold (the sliding window; F.unfold
stays im2col, as in PyTorch), index_copy, masked_scatter, sum_to_size, and the in-place forms of every
out-of-place op PyTorch has one for, made by one rule (`inplace_of`).

All are composites of the op families below (indexing, selection, reduction), so they trace, differentiate
and export through them. This module sits above ops/selection.py.
"""
import numpy as np

from .._state import STATE
from ..errors import DTypeError, DualgraphError, IndexOutOfRange, InvalidValue, ShapeError
from ..tensor import Tensor, _make, _plain_outside_record, as_tensor
from .creation import arange
from .elementwise import astype, where
from .indexing import getitem, index_select
from .infer import broadcast_shapes
from .reduction import cumsum, sum_to
from .selection import index_add, index_fill, take
from .shape import broadcast_to, moveaxis, reshape


def _dim(x, dim, op):
    n = max(x.ndim, 1)
    if not isinstance(dim, (int, np.integer)) or isinstance(dim, bool) or not -n <= int(dim) < n:
        raise IndexOutOfRange(f"{op}: dim {dim!r} is out of range for a tensor of shape {tuple(x.shape)}")
    return int(dim) % n


def select(input, dim, index):
    """torch.select: the slice at `index` along dim, that dim removed (input[..., index, ...])."""
    ax = _dim(input, dim, "select")
    n = input.shape[ax]
    if isinstance(n, (int, np.integer)) and not -n <= index < n:
        raise IndexOutOfRange(f"select: index {index} is out of range for dim {dim} of size {n} "
                              f"(shape {tuple(input.shape)})")
    return getitem(input, (slice(None),) * ax + (int(index),))


def unfold_window(input, dimension, size, step):
    """Tensor.unfold(dimension, size, step): every window of `size` elements along dimension, `step`
    apart, as a new last dim of length size (the dimension becomes the number of windows)."""
    ax = _dim(input, dimension, "unfold")
    n = input.shape[ax] if input.ndim else 1
    if size < 0 or step <= 0:
        raise InvalidValue(f"unfold: size must be >= 0 and step > 0, got size={size}, step={step}")
    concrete = isinstance(n, (int, np.integer))
    if concrete and size > n:
        raise ShapeError(f"unfold: size {size} exceeds the size {n} of dimension {dimension} "
                         f"(shape {tuple(input.shape)})")
    x = reshape(input, (1,)) if input.ndim == 0 else input
    count = (n - size) // step + 1
    if concrete:
        starts = np.arange(count, dtype=np.int64)[:, None] * step + np.arange(size, dtype=np.int64)[None, :]
        index = as_tensor(starts.reshape(-1), like=x)
    else:  # a dynamic size: the window starts follow it in the graph
        first = reshape(arange(count, device=x.device) * step, (-1, 1))
        index = reshape(first + reshape(arange(size, device=x.device), (1, -1)), (-1,))
    picked = index_select(x, ax, index)
    shape = tuple(x.shape[:ax]) + (count, size) + tuple(x.shape[ax + 1:])
    out = moveaxis(reshape(picked, shape), ax + 1, -1)
    return out if input.ndim else reshape(out, (count, size))


def index_copy(input, dim, index, source):
    """torch.index_copy: input with slice i of source copied to slice index[i] along dim."""
    ax = _dim(input, dim, "index_copy")
    source = as_tensor(source, like=input)
    if source.dtype != input.dtype:
        raise DTypeError(f"index_copy: source dtype {source.dtype} differs from the tensor's {input.dtype}")
    return index_add(index_fill(input, ax, index, 0), ax, index, source)


def masked_scatter(input, mask, source):
    """torch.masked_scatter: input with the positions where mask is True filled, in row-major order, with
    source's leading elements (source needs at least as many elements as mask has True values)."""
    mask = as_tensor(mask, like=input)
    if mask.dtype != np.bool_:
        raise DTypeError(f"masked_scatter: mask must be a bool tensor, got {mask.dtype}")
    shape = broadcast_shapes("masked_scatter", tuple(input.shape), tuple(mask.shape))
    if shape != tuple(input.shape):
        raise ShapeError(f"masked_scatter: mask of shape {tuple(mask.shape)} does not broadcast to the tensor's "
                         f"shape {tuple(input.shape)}")
    if source.dtype != input.dtype:
        raise DTypeError(f"masked_scatter: source dtype {source.dtype} differs from the tensor's {input.dtype}")
    m = reshape(broadcast_to(mask, shape), (-1,))
    if not m._symbolic and not source._symbolic:
        need = int(np.count_nonzero(m.numpy()))
        if need > source.numel():
            raise ShapeError(f"masked_scatter: the mask selects {need} elements but source {tuple(source.shape)} "
                             f"has only {source.numel()}")
    pos = cumsum(astype(m, "int64"), dim=0) - 1
    pos = where(pos < 0, 0, pos)
    if source.numel() == 0:
        return input.clone()
    pos = where(pos >= source.numel(), source.numel() - 1, pos)
    taken = reshape(take(source, pos), shape)
    return where(reshape(m, shape), taken, input)


def sum_to_size(input, *size):
    """Tensor.sum_to_size: input summed down to `size`, which input must broadcast from."""
    if len(size) == 1 and isinstance(size[0], (tuple, list)):
        size = tuple(size[0])
    size = tuple(int(s) for s in size)
    try:
        ok = broadcast_shapes("sum_to_size", size, tuple(input.shape)) == tuple(input.shape)
    except ShapeError:
        ok = False
    if not ok:
        raise ShapeError(f"sum_to_size: size {size} is not expandable to the tensor's shape {tuple(input.shape)}")
    return sum_to(input, size)


# ---- in-place forms ---------------------------------------------------------------------------------

def inplace_of(name, fn):
    """The in-place method `name` of the out-of-place `fn`: the tensor holds fn(tensor, *args) afterwards,
    in its own dtype (a result that cannot be cast back, float into an int tensor, is an error as in
    PyTorch), with autograd's version counter and history as for add_/mul_, and traced as a rebinding."""
    @_plain_outside_record
    def method(self, *args, **kwargs):
        self._check_inplace(name)
        others = [a for a in (*args, *kwargs.values()) if isinstance(a, Tensor)]
        other = next((a for a in others if a._requires_grad), others[0] if others else None)
        return STATE.mode.inplace(self, lambda s: fn(s, *args, **kwargs), other, name, keeps_old=True)
    method.__name__ = method.__qualname__ = name
    method.__doc__ = f"In-place {name[:-1]}: the tensor holds its result; returns the tensor."
    return method


def shape_inplace_of(name, fn):
    """The in-place method `name` of a shape op (unsqueeze_, transpose_, ...): the tensor takes the new
    shape. Eager only: a traced tensor's shape is part of the graph, so there `x = x.unsqueeze(0)` it is."""
    def method(self, *args, **kwargs):
        if self._symbolic:
            raise DualgraphError(f"{name}: a change of shape in place is not supported inside @dg.function; "
                             f"write the out-of-place `x = x.{name[:-1]}(...)`")
        self._check_inplace(name)
        if self._grad_fn is None:  # a leaf (or no history): only the shape changes
            self._data = fn(_make(self._data, self._device), *args, **kwargs)._data
            return self
        before = _make(self._data, self._device)
        before._grad_fn, before._out_index, before._requires_grad = self._grad_fn, self._out_index, True
        result = fn(before, *args, **kwargs)
        self._data, self._grad_fn, self._out_index = result._data, result._grad_fn, result._out_index
        return self
    method.__name__ = method.__qualname__ = name
    return method
