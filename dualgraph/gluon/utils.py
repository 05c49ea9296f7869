"""gluon.utils: split_and_load and clip_global_norm."""
import math

from ..autograd import no_grad
from ..errors import ShapeError
from .. import nd


def split_data(data, num_slice, batch_axis=0, even_split=True):
    n = data.shape[batch_axis]
    if even_split and n % num_slice:
        raise ShapeError(f"data with shape {tuple(data.shape)} cannot be evenly split into {num_slice} slices "
                         f"along axis {batch_axis}. Use a batch size that's multiple of {num_slice} or set "
                         f"even_split=False to allow uneven partitioning of data.")
    if num_slice == 1:
        return [data]
    step = n // num_slice
    bounds = [i * step for i in range(num_slice)] + [n]
    return [nd.slice_axis(data, batch_axis, bounds[i], bounds[i + 1]) for i in range(num_slice)]


def split_and_load(data, ctx_list, batch_axis=0, even_split=True):
    """Split a batch along batch_axis into one slice per context and move each there."""
    if not isinstance(data, nd.NDArray):
        data = nd.array(data)
    slices = split_data(data, len(ctx_list), batch_axis, even_split)
    return [s.as_in_context(c) for s, c in zip(slices, ctx_list)]


def clip_global_norm(arrays, max_norm, check_isfinite=True):
    """Scale the arrays in place so their joint L2 norm is at most max_norm; returns the norm before."""
    total = math.sqrt(sum(float((a.detach() * a.detach()).sum()) for a in arrays))
    if check_isfinite and not math.isfinite(total):
        import warnings
        warnings.warn(UserWarning("nan or inf is detected. Clipping results will be undefined."), stacklevel=2)
    scale = max_norm / (total + 1e-8)
    if scale < 1.0:
        with no_grad():
            for a in arrays:
                a[...] = a.detach() * scale
    return total
