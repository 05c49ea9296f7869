"""dualgraph: one set of ops, eager (numpy/cupy with autograd) and traced into optimized static graphs.

    import dualgraph as dg

The namespace: tensors, dtypes and devices; creation and op functions; autograd and nn; data,
optimizers and checkpoints; `@dg.function` with dg.cond / dg.while_loop; dg.onnx export; dg.static
define-then-run graphs. dualgraph.dispatch says how the current mode decides what an op does.
"""
from . import dtypes as _dtypes
from ._version import __version__  # noqa: F401
from .backend import Device, device, gpu_available
from .dtypes import (bool_, double, float16, float32, float64, half, int8, int16, int32, int64, long, short,
                     uint8)
from .errors import (AutogradError, DeviceError, DTypeError, DualgraphError, IndexOutOfRange, InvalidValue,
                     ShapeError)
from .tensor import Tensor
from . import _methods  # noqa: F401  (binds operators and methods onto Tensor)
from . import autograd, nn, viz
from .autograd import enable_grad, no_grad, set_grad_enabled, is_grad_enabled
from .autograd import inference_mode, is_inference_mode_enabled
from .ops.creation import (Generator, arange, as_tensor, bernoulli, default_generator, empty, empty_like, eye,
                           from_numpy, full, full_like, get_rng_state, initial_seed, linspace, manual_seed, normal,
                           ones, ones_like, poisson, rand, rand_like, randint, randint_like, randn, randn_like,
                           randperm, seed, set_rng_state, tensor, uniform, zeros, zeros_like)
from .ops.elementwise import (abs, add, astype, ceil, clamp, clip, copy, cos, div, divide, elu, eq, equal, erf, exp,
                              expm1, floor, floor_divide, floordiv, ge, gelu, greater, greater_equal, gt,
                              hardtanh, isfinite, isnan, le, leaky_relu, less, less_equal, log, log1p,
                              logical_and, logical_not, logical_or, logical_xor, lt, maximum, minimum, mod,
                              mul, multiply, ne, neg, not_equal, pow, power, reciprocal, relu, remainder, round,
                              rsqrt, sigmoid, sign, silu, sin, softplus, sqrt, square, sub, subtract, swish,
                              tan, tanh, true_divide, trunc, where)
from .ops.reduction import (all, amax, amin, any, argmax, argmin, cumsum, logsumexp, max, mean, min, prod,
                            std, sum, var)
from .ops.linalg import dot, einsum, matmul, mm
from .ops.linalg import det, inv as inverse, torch_cross as cross, torch_norm as norm
from .ops.linalg import (addmm, baddbmm, bmm, chain_matmul, cholesky_solve, diag, diag_embed, diagonal, ger, inner,
                         kron, logdet, mv, outer, pinverse, tensordot, trace, vdot)
from . import linalg  # noqa: F401
from .ops.shape import (atleast_1d, atleast_2d, atleast_3d, column_stack, dsplit, dstack, hsplit, hstack,
                        row_stack, t, tensor_split, unbind, unflatten, vsplit, vstack)
from .ops.shape import (broadcast_to, cat, chunk, concat, concatenate, expand, expand_dims, flatten, flip,
                        moveaxis, narrow, pad, permute, repeat, reshape, split, squeeze, stack, swapaxes,
                        tile, transpose, unsqueeze, view)
from .ops.gather import nonzero, scatter_add
from .ops.indexing import embedding, gather, index_put, index_select, one_hot, take_along_axis
from .ops.selection import (argsort, cummax, cummin, cumprod, index_add, index_fill, kthvalue,  # noqa: F811
                            masked_fill, masked_select, max, median, min, mode, msort, multinomial,
                            repeat_interleave, roll, scatter, scatter_add, sort, take, topk, tril, triu)
from .ops.selection import where_ as where  # noqa: F811  (where(cond) alone: a tuple, as PyTorch)
from . import return_types  # noqa: F401
from .ops.math import (acos, acosh, arccos, arccosh, arcsin, arcsinh, arctan, arctan2, arctanh, asin, asinh,
                       atan, atan2, atanh, clamp_min, clamp_max, copysign, cosh, deg2rad, erfc, erfinv, exp2, fix,
                       float_power, fmod, frac, heaviside, hypot, lerp, log10, log2, logaddexp, logaddexp2,
                       nan_to_num, rad2deg, sgn, signbit, sinc, sinh, xlogy)
from .ops.math import addcdiv, addcmul, fmax, fmin, isinf, isneginf, isposinf, isreal, logit, positive
from .ops.math import digamma, lgamma, polygamma
from .ops.stats import diagflat, dist, nanquantile, quantile, take_along_dim
from .ops.stats import (addbmm, addmv, allclose, aminmax, bincount, bucketize, cartesian_prod, cdist,  # noqa: F811
                        corrcoef, count_nonzero, cov, cumulative_trapezoid, diff, equal, fliplr, flipud, histc,
                        isclose, logcumsumexp, meshgrid, nanmean, nansum, rot90, searchsorted, std_mean,
                        trapezoid, unique, unique_consecutive, var_mean, vander)
from .ops.tensor_ops import index_copy, masked_scatter, select
from ._more_methods import is_complex, is_floating_point, numel
from .ops.conv import adaptive_avg_pool2d, avg_pool2d, conv1d, conv2d, max_pool2d, unfold
from .nn.functional import (binary_cross_entropy_with_logits, bce_with_logits, cross_entropy, dropout,
                            layer_norm, log_softmax, mse_loss, mse, nll_loss, softmax, linear)
from . import optim, utils  # noqa: F401
from . import distributed  # noqa: F401  (dg.distributed: MPI collectives; mpi4py loads at init_process_group)
from .utils import data  # noqa: F401  (dg.data is dg.utils.data, importable as dualgraph.data too)
import sys as _sys
_sys.modules[__name__ + ".data"] = data
from .serialization import CheckpointError, load, save  # noqa: F401
from .function import (ConcretizationError, TensorSpec, TraceError, cond, fori_loop, function,  # noqa: F401
                       while_loop)
from . import onnx, static  # noqa: F401
from . import gluon, nd  # noqa: F401  (MXNet's Gluon and NDArray API)
from .gluon import init, lr_scheduler, metric, optimizer  # noqa: F401  (mx.init, mx.metric, ...)
from .nd import base, context, cpu, gpu, random  # noqa: F401  (mx.cpu(), mx.context.num_gpus(), mx.random.seed)
from . import accelerator, amp, backends, cuda  # noqa: F401
from ._printing import get_printoptions, printoptions, set_printoptions  # noqa: F401
from .compile import compile  # noqa: F401  (torch.compile's door into dg.function)
from . import jit  # noqa: F401
from .backends import (are_deterministic_algorithms_enabled, get_float32_matmul_precision,  # noqa: F401
                       is_deterministic_algorithms_warn_only_enabled, set_float32_matmul_precision,
                       use_deterministic_algorithms)

nll = nll_loss
clone = copy


def is_tensor(x):
    return isinstance(x, Tensor)


def get_default_dtype():
    return _dtypes.DEFAULT_FLOAT


def set_default_dtype(d):
    """Make `d` (float16, float32 or float64) the dtype of tensors made from Python floats and of float
    results of integer inputs, as torch.set_default_dtype. Process-wide, like PyTorch's."""
    dt = _dtypes.resolve(d)
    if dt is None or dt not in _dtypes.FLOATS:
        raise DTypeError(f"set_default_dtype: only floating dtypes ({', '.join(map(str, _dtypes.FLOATS))}) can be "
                         f"the default, got {d}")
    _dtypes.DEFAULT_FLOAT = dt
    _dtypes._CACHE.clear()  # promotion results with a Python float operand depend on the default


from . import _out  # noqa: E402
for _name in _out.NAMES:
    globals()[_name] = _out.with_out(globals()[_name])
del _name

from ._legacy_types import LEGACY as _LEGACY  # noqa: E402
globals().update(_LEGACY)

from ._size import Size  # noqa: E402,F401
from .dtypes import finfo, iinfo  # noqa: E402,F401
import math as _math  # noqa: E402
e, pi, inf, nan = _math.e, _math.pi, _math.inf, _math.nan  # torch.e, torch.pi, torch.inf, torch.nan


# PyTorch's namespace names dtypes after the builtins (torch.float is float32, torch.int int32,
# torch.bool bool); bound last so no code in this module reads them as the builtins.
globals().update(float=float32, int=int32, bool=bool_)
