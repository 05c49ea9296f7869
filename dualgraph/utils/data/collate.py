"""default_collate and default_convert: PyTorch's rules for turning samples into batches.

A list of samples becomes one batch: tensors, numpy arrays and numbers are stacked into a tensor
with a new first dimension; dicts, named tuples, tuples and lists are collated field by field (a
tuple of fields comes back as a list, as in PyTorch); strings and bytes stay a list.
"""
import collections.abc
import copy

import numpy as _np

from ...ops.creation import from_numpy
from ...ops.shape import stack
from ...tensor import Tensor, _make
from ._errors import ArgumentTypeError, CollateShapeError, InvalidValue

__all__ = ["default_collate", "default_convert"]

_ERR = "default_collate: batch must contain tensors, numpy arrays, numbers, dicts or lists; found {}"


def _from_host(arr):
    """A host array as a Tensor, without a copy when it is already C-contiguous (0-d stays 0-d)."""
    arr = _np.asarray(arr)
    return from_numpy(arr if arr.flags.c_contiguous else _np.ascontiguousarray(arr))


def _stack_tensors(batch):
    first = batch[0]
    shapes = {tuple(t.shape) for t in batch}
    if len(shapes) > 1:
        raise CollateShapeError(f"default_collate: stack expects each tensor to be equal size, got shapes "
                                f"{sorted(shapes)} in one batch (pad them, or pass collate_fn=)")
    # Stacking the raw arrays is one copy; dg.stack (unsqueeze + concat per sample) is only needed
    # where autograd must see the stack or the dtypes/devices must be reconciled.
    if (all(type(t) is Tensor and not t.requires_grad and t.dtype == first.dtype and t.device == first.device
            for t in batch)):
        return _make(first.device.xp.stack([t._data for t in batch]), first.device)
    return stack(batch, 0)


def default_collate(batch):
    """Collate a list of samples into a batch, like torch.utils.data.default_collate."""
    if not isinstance(batch, collections.abc.Sequence) or isinstance(batch, (str, bytes)):
        batch = list(batch)
    if not batch:
        raise InvalidValue("default_collate: got an empty batch")
    elem = batch[0]
    if isinstance(elem, Tensor):
        return _stack_tensors(batch)
    if isinstance(elem, _np.ndarray):
        if elem.dtype.kind in "USO":
            raise ArgumentTypeError(_ERR.format(elem.dtype))
        shapes = {_np.shape(b) for b in batch}
        if len(shapes) > 1:
            raise CollateShapeError(f"default_collate: stack expects each array to be equal size, got shapes "
                                    f"{sorted(shapes)} in one batch (pad them, or pass collate_fn=)")
        return _from_host(_np.stack(batch))
    if isinstance(elem, _np.generic):
        if elem.dtype.kind in "USO":
            raise ArgumentTypeError(_ERR.format(elem.dtype))
        return _from_host(_np.asarray(batch))
    if isinstance(elem, float):
        return _from_host(_np.asarray(batch, dtype=_np.float64))
    if isinstance(elem, bool):
        return _from_host(_np.asarray(batch, dtype=_np.bool_))
    if isinstance(elem, int):
        return _from_host(_np.asarray(batch, dtype=_np.int64))
    if isinstance(elem, (str, bytes)):
        return list(batch)
    if isinstance(elem, collections.abc.Mapping):
        if isinstance(elem, collections.abc.MutableMapping):
            clone = copy.copy(elem)
            clone.update({key: default_collate([d[key] for d in batch]) for key in elem})
            return clone
        try:
            return type(elem)({key: default_collate([d[key] for d in batch]) for key in elem})
        except TypeError:
            return {key: default_collate([d[key] for d in batch]) for key in elem}
    if isinstance(elem, tuple) and hasattr(elem, "_fields"):  # a namedtuple keeps its type
        return type(elem)(*(default_collate(list(s)) for s in zip(*batch)))
    if isinstance(elem, collections.abc.Sequence):
        size = len(elem)
        if any(len(e) != size for e in batch):
            raise CollateShapeError("default_collate: each element in list of batch should be of equal size, got "
                                    f"lengths {sorted({len(e) for e in batch})}")
        transposed = [default_collate(list(s)) for s in zip(*batch)]
        if isinstance(elem, tuple):
            return transposed  # PyTorch returns a list here too
        if isinstance(elem, collections.abc.MutableSequence):
            clone = copy.copy(elem)
            for i, s in enumerate(transposed):
                clone[i] = s
            return clone
        try:
            return type(elem)(transposed)
        except TypeError:
            return transposed
    raise ArgumentTypeError(_ERR.format(type(elem)))


def default_convert(data):
    """Convert one sample without batching (batch_size=None): numpy arrays become tensors, containers
    are converted element by element, everything else is returned as is (like PyTorch's)."""
    if isinstance(data, Tensor):
        return data
    if isinstance(data, _np.ndarray):
        return data if data.dtype.kind in "USO" else _from_host(data)
    if isinstance(data, _np.generic):
        return data if data.dtype.kind in "USO" else _from_host(_np.asarray(data))
    if isinstance(data, (str, bytes)):
        return data
    if isinstance(data, collections.abc.Mapping):
        converted = {key: default_convert(data[key]) for key in data}
        if isinstance(data, collections.abc.MutableMapping):
            clone = copy.copy(data)
            clone.update(converted)
            return clone
        try:
            return type(data)(converted)
        except TypeError:
            return converted
    if isinstance(data, tuple) and hasattr(data, "_fields"):
        return type(data)(*(default_convert(d) for d in data))
    if isinstance(data, tuple):
        return [default_convert(d) for d in data]
    if isinstance(data, collections.abc.Sequence):
        converted = [default_convert(d) for d in data]
        if isinstance(data, collections.abc.MutableSequence):
            clone = copy.copy(data)
            for i, d in enumerate(converted):
                clone[i] = d
            return clone
        try:
            return type(data)(converted)
        except TypeError:
            return converted
    return data
