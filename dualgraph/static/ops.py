"""TF1's array and math functions (tf.add, tf.reduce_sum, tf.random_normal, ...) with TF1's
signatures, as graph nodes: each builds into the graph of its tensor or Variable arguments, else the
default graph, even outside `with graph.as_default():`."""
import builtins
import functools

import numpy as np

from .._state import STATE
from ..backend import CPU
from ..dispatch import using
from ..errors import DualgraphError
from ..graph.avals import Dim
from ..ops import creation as _cr
from ..ops import elementwise as _el
from ..ops import indexing as _ix
from ..ops import linalg as _la
from ..ops import reduction as _rd
from ..ops import shape as _sh
from ..tensor import Tensor
from .graph import StaticGraphError, Variable, _const, _plain, _tf_dtype, get_default_graph


def _graph_in(args):
    for a in args:
        if isinstance(a, Variable):
            return a.graph
        if isinstance(a, Tensor) and a._symbolic and a._builder is not None:
            return a._builder.owner
        if isinstance(a, (list, tuple)):
            g = _graph_in(a)
            if g is not None:
                return g
    return None


def graph_op(fn):
    """Run `fn` building into the graph of its tensor arguments (else the default graph), name its
    result after `name=` when given."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        name = kwargs.pop("name", None)
        if STATE.mode.symbolic:
            out = fn(*args, **kwargs)
            g = _graph_in((out,))
        else:
            g = _graph_in(args) or _graph_in(tuple(kwargs.values())) or get_default_graph()
            try:
                with using(g.builder):
                    out = fn(*args, **kwargs)
            except DualgraphError as e:
                raise g.builder._hint(e, args + tuple(kwargs.values())) from None
        if name and g is not None and isinstance(out, Tensor) and out._symbolic:
            v = g.builder.vals.get(id(out))
            if v is not None and v.name is None:
                v.name = g._unique(name, name)
        return out
    return wrapper


def _t(x, dtype=None):
    """x as a tensor of the graph being built (arrays and numbers become constants)."""
    if isinstance(x, Tensor):
        return x if dtype is None or x.dtype == dtype else x.astype(dtype)
    arr = np.asarray(_plain(x))
    if dtype is not None:
        arr = arr.astype(dtype)
    elif arr.dtype == np.float64:
        arr = arr.astype(np.float32)   # Python floats are float32 in TF1 too
    elif arr.dtype == np.int64 and not isinstance(x, np.ndarray):
        arr = arr.astype(np.int32)     # and Python ints int32
    owner = getattr(STATE.mode, "owner", None)
    return _const(owner, arr) if owner is not None else _cr.tensor(arr)


def _axis(axis, reduction_indices=None, what="reduce"):
    if reduction_indices is not None:
        if axis is not None:
            raise StaticGraphError(f"{what}: pass axis= or reduction_indices=, not both")
        axis = reduction_indices
    if isinstance(axis, list):
        axis = tuple(axis)
    return axis


def _keep(keepdims, keep_dims):
    if keep_dims is not None:
        if keepdims is not None:
            raise StaticGraphError("pass keepdims= or keep_dims=, not both")
        keepdims = keep_dims
    return builtins.bool(keepdims)


# ---- elementwise ----------------------------------------------------------------------------------

def _binary(fn, doc):
    def op(x, y):
        return fn(x if isinstance(x, Tensor) else _t(x), y)
    op.__doc__ = doc
    return graph_op(op)


add = _binary(_el.add, "x + y.")
subtract = _binary(_el.subtract, "x - y.")
multiply = _binary(_el.multiply, "x * y.")
maximum = _binary(_el.maximum, "Elementwise max(x, y).")
minimum = _binary(_el.minimum, "Elementwise min(x, y).")
equal = _binary(_el.equal, "x == y, elementwise (bool).")
not_equal = _binary(_el.not_equal, "x != y, elementwise (bool).")
less = _binary(_el.less, "x < y, elementwise (bool).")
less_equal = _binary(_el.less_equal, "x <= y, elementwise (bool).")
greater = _binary(_el.greater, "x > y, elementwise (bool).")
greater_equal = _binary(_el.greater_equal, "x >= y, elementwise (bool).")
logical_and = _binary(_el.logical_and, "x and y, elementwise.")
logical_or = _binary(_el.logical_or, "x or y, elementwise.")
squared_difference = _binary(lambda x, y: _el.square(x - y), "(x - y)^2, elementwise.")


@graph_op
def divide(x, y):
    """x / y, true division (integers give float32 here; TF1 gives float64 for int32/int64)."""
    return _el.divide(x if isinstance(x, Tensor) else _t(x), y)


truediv = divide


@graph_op
def floordiv(x, y):
    return _el.floor_divide(x if isinstance(x, Tensor) else _t(x), y)


@graph_op
def pow(x, y):  # noqa: A001  (TF1's name)
    """x ** y."""
    return _el.pow(x if isinstance(x, Tensor) else _t(x), y)


def _unary(fn, doc):
    def op(x):
        return fn(_t(x))
    op.__doc__ = doc
    return graph_op(op)


square = _unary(_el.square, "x * x.")
sqrt = _unary(_el.sqrt, "Square root.")
rsqrt = _unary(_el.rsqrt, "1 / sqrt(x).")
exp = _unary(_el.exp, "e ** x.")
log = _unary(_el.log, "Natural logarithm.")
log1p = _unary(_el.log1p, "log(1 + x).")
sigmoid = _unary(_el.sigmoid, "1 / (1 + exp(-x)).")
tanh = _unary(_el.tanh, "Hyperbolic tangent.")
abs = _unary(_el.abs, "|x|.")  # noqa: A001
negative = _unary(_el.neg, "-x.")
sign = _unary(_el.sign, "-1, 0 or 1 by the sign of x.")
reciprocal = _unary(_el.reciprocal, "1 / x.")
floor = _unary(_el.floor, "Round down.")
ceil = _unary(_el.ceil, "Round up.")
round = _unary(_el.round, "Round half to even.")  # noqa: A001
sin = _unary(_el.sin, "Sine.")
cos = _unary(_el.cos, "Cosine.")
logical_not = _unary(_el.logical_not, "not x, elementwise.")
identity = _unary(lambda x: x * 1 if x.dtype.kind != "b" else _el.logical_and(x, True), "The same values, a new node.")


@graph_op
def stop_gradient(input):
    """The same values; gradients do not flow through it."""
    return _t(input).detach()


@graph_op
def cast(x, dtype):
    """x converted to dtype (floats to integers truncate toward zero, as in TF1)."""
    return _t(x).astype(_tf_dtype(dtype))


to_float = functools.partial(cast, dtype=np.float32)
to_int32 = functools.partial(cast, dtype=np.int32)
to_int64 = functools.partial(cast, dtype=np.int64)


@graph_op
def clip_by_value(t, clip_value_min, clip_value_max):
    """min(max(t, clip_value_min), clip_value_max)."""
    return _el.minimum(_el.maximum(_t(t), clip_value_min), clip_value_max)


@graph_op
def add_n(inputs):
    """The elementwise sum of a list of tensors of one shape."""
    inputs = [_t(x) for x in inputs]
    if not inputs:
        raise StaticGraphError("add_n: inputs is empty")
    out = inputs[0]
    for x in inputs[1:]:
        if tuple(x.shape) != tuple(out.shape):
            raise StaticGraphError(f"add_n: the inputs' shapes differ: {tuple(out.shape)} and {tuple(x.shape)}")
        out = out + x
    return out


@graph_op
def where(condition, x=None, y=None):
    """x where condition else y, elementwise (TF1: x and y of the condition's shape, or condition a
    vector choosing rows of x and y)."""
    if x is None or y is None:
        raise StaticGraphError("where(condition) without x and y returns the coordinates of the true "
                               "elements, whose number depends on the values: a static graph cannot build it; "
                               "pass x and y")
    c, xt, yt = _t(condition), _t(x), _t(y)
    if c.ndim == 1 and xt.ndim > 1:
        c = _sh.reshape(c, tuple(c.shape) + (1,) * (xt.ndim - 1))
    return _el.where(c, xt, yt)


# ---- matrices and shapes --------------------------------------------------------------------------

@graph_op
def matmul(a, b, transpose_a=False, transpose_b=False, adjoint_a=False, adjoint_b=False, a_is_sparse=False,
           b_is_sparse=False):
    """a @ b over the last two dims, either operand transposed first when asked (adjoint = transpose
    for real dtypes)."""
    a, b = _t(a), _t(b)
    if a.ndim < 2 or b.ndim < 2:
        raise StaticGraphError(f"matmul: both operands need rank >= 2 (TF1's rule), got shapes {tuple(a.shape)} "
                               f"and {tuple(b.shape)}")
    if transpose_a or adjoint_a:
        a = _sh.swapaxes(a, -1, -2)
    if transpose_b or adjoint_b:
        b = _sh.swapaxes(b, -1, -2)
    return _la.matmul(a, b)


@graph_op
def tensordot(a, b, axes):
    a, b = _t(a), _t(b)
    if isinstance(axes, int):
        axes = (list(builtins.range(a.ndim - axes, a.ndim)), list(builtins.range(axes)))
    la, lb = "abcdefghij"[:a.ndim], "klmnopqrst"[:b.ndim]
    lb = list(lb)
    for i, j in zip(*axes):
        lb[j] = la[i]
    lb = "".join(lb)
    out = "".join(c for c in la if c not in lb) + "".join(c for c in lb if c not in la)
    return _la.einsum(f"{la},{lb}->{out}", a, b)


@graph_op
def reshape(tensor, shape):
    """tensor with a new shape (one dim may be -1)."""
    shape = [int(d) if not isinstance(d, Dim) else d for d in ((shape,) if isinstance(shape, int) else shape)]
    return _sh.reshape(_t(tensor), tuple(shape))


@graph_op
def transpose(a, perm=None, conjugate=False):
    """a with its dims permuted: perm[i] is the input dim that becomes dim i; default reverses them."""
    a = _t(a)
    perm = tuple(builtins.range(a.ndim))[::-1] if perm is None else tuple(int(p) for p in perm)
    if sorted(perm) != list(builtins.range(a.ndim)):
        raise StaticGraphError(f"transpose: perm {perm} is not a permutation of the {a.ndim} dims of shape "
                               f"{tuple(a.shape)}")
    return _sh.permute(a, *perm)


@graph_op
def shape(input, out_type=np.int32):
    """The shape as a 1-D tensor (sizes known only at run time are computed by the graph)."""
    x = _t(input)
    dt = _tf_dtype(out_type)
    b = STATE.mode
    parts = []
    for d in x.shape:
        if isinstance(d, Dim):
            parts.append(_sh.reshape(b.dim_tensor(d).astype(dt), (1,)))
        else:
            parts.append(_const(b.owner, np.array([d], dt)))
    if not parts:
        return _const(b.owner, np.zeros((0,), dt))
    return parts[0] if len(parts) == 1 else _sh.concat(parts, 0)


def rank(input):
    """The number of dims (a Python int: it is known when the graph is built)."""
    return len(input.shape)


@graph_op
def size(input, out_type=np.int32):
    x = _t(input)
    n = 1
    for d in x.shape:
        n = n * d
    if isinstance(n, int):
        return _const(STATE.mode.owner, np.array(n, _tf_dtype(out_type)))
    return STATE.mode.dim_tensor(n).astype(_tf_dtype(out_type))


@graph_op
def concat(values, axis):
    """values joined along an existing axis."""
    return _sh.concat([_t(v) for v in values], axis)


@graph_op
def stack(values, axis=0):
    """values (of one shape) joined along a new axis."""
    return _sh.stack([_t(v) for v in values], axis)


@graph_op
def unstack(value, num=None, axis=0):
    x = _t(value)
    n = x.shape[axis]
    if not isinstance(n, int):
        raise StaticGraphError(f"unstack: the size of axis {axis} of {tuple(x.shape)} is unknown until run time")
    return [_sh.squeeze(p, axis) for p in _sh.split(x, 1, axis)]


@graph_op
def expand_dims(input, axis=None, dim=None):
    """input with a size-1 dim inserted at `axis`."""
    if dim is not None:
        axis = dim
    if axis is None:
        raise StaticGraphError("expand_dims: axis is required")
    return _sh.expand_dims(_t(input), int(axis))


@graph_op
def squeeze(input, axis=None, squeeze_dims=None):
    """input without its size-1 dims (or only those listed in axis, which must have size 1)."""
    x = _t(input)
    if squeeze_dims is not None:
        axis = squeeze_dims
    if axis is None:
        return _sh.squeeze(x)
    axes = [axis] if isinstance(axis, int) else list(axis)
    for a in axes:
        if x.shape[a] != 1:
            raise StaticGraphError(f"squeeze: dim {a} of shape {tuple(x.shape)} is not 1")
    for a in sorted((a % x.ndim for a in axes), reverse=True):
        x = _sh.squeeze(x, a)
    return x


@graph_op
def tile(input, multiples):
    return _sh.tile(_t(input), tuple(int(m) for m in multiples))


@graph_op
def one_hot(indices, depth, on_value=None, off_value=None, axis=None, dtype=None):
    """Indices as one-hot vectors of length depth along a new last axis (or `axis`); out-of-range
    indices give all-off rows, as in TF1."""
    idx = _t(indices)
    if idx.dtype.kind not in "iu":
        raise StaticGraphError(f"one_hot: indices must be integers, got {idx.dtype}")
    dt = _tf_dtype(dtype) or (np.asarray(on_value).dtype if on_value is not None and not isinstance(on_value, float)
                               else np.dtype(np.float32))
    classes = _const(STATE.mode.owner, np.arange(int(depth), dtype=np.int64))
    hot = _el.equal(_sh.expand_dims(idx.astype(np.int64), -1), classes)
    on = 1 if on_value is None else on_value
    off = 0 if off_value is None else off_value
    out = _el.where(hot, _t(on, dt), _t(off, dt))
    if axis is not None and axis != -1 and axis != out.ndim - 1:
        out = _sh.moveaxis(out, -1, axis)
    return out


@graph_op
def gather(params, indices, axis=0):
    """Slices of params along axis at indices: shape params[:axis] + indices.shape + params[axis+1:]."""
    p, idx = _t(params), _t(indices).astype(np.int64)
    axis = axis % p.ndim
    out = _ix.index_select(p, axis, _sh.reshape(idx, (-1,)) if idx.ndim != 1 else idx)
    if idx.ndim == 1:
        return out
    return _sh.reshape(out, tuple(p.shape[:axis]) + tuple(idx.shape) + tuple(p.shape[axis + 1:]))


# ---- reductions ---------------------------------------------------------------------------------------

def _reduction(fn, doc, cast_bool=False):
    def op(input_tensor, axis=None, keepdims=None, reduction_indices=None, keep_dims=None):
        x = _t(input_tensor)
        if cast_bool and x.dtype.kind == "b":
            raise StaticGraphError(f"{op.__name__}: input is bool; cast it first")
        return fn(x, axis=_axis(axis, reduction_indices), keepdims=_keep(keepdims, keep_dims))
    op.__doc__ = doc + " Over `axis` (an int, a list, or None for all), keeping size-1 dims when keepdims."
    return op


def _mean(x, axis, keepdims):
    out = _rd.mean(x, axis=axis, keepdims=keepdims)
    return out.astype(x.dtype) if x.dtype.kind in "iu" else out  # TF1's integer mean stays integer


def _named(fn, name):
    fn.__name__ = fn.__qualname__ = name
    return graph_op(fn)


reduce_sum = _named(_reduction(lambda x, axis, keepdims: _rd.sum(x, axis=axis, keepdims=keepdims).astype(x.dtype)
                               if x.dtype.kind in "iu" else _rd.sum(x, axis=axis, keepdims=keepdims),
                               "The sum (in the input's dtype)."), "reduce_sum")
reduce_mean = _named(_reduction(_mean, "The mean (integer inputs give an integer mean, as in TF1).", True),
                     "reduce_mean")
reduce_max = _named(_reduction(_rd.amax, "The maximum."), "reduce_max")
reduce_min = _named(_reduction(_rd.amin, "The minimum."), "reduce_min")
reduce_prod = _named(_reduction(lambda x, axis, keepdims: _rd.prod(x, axis=axis, keepdims=keepdims).astype(x.dtype),
                                "The product."), "reduce_prod")
reduce_any = _named(_reduction(_rd.any, "Logical or."), "reduce_any")
reduce_all = _named(_reduction(_rd.all, "Logical and."), "reduce_all")
reduce_logsumexp = _named(_reduction(_rd.logsumexp, "log(sum(exp(x)))."), "reduce_logsumexp")


def _arg(fn, name):
    def op(input, axis=None, dimension=None, output_type=np.int64):
        if dimension is not None:
            axis = dimension
        if axis is None:
            axis = 0   # TF1: argmax/argmin without an axis reduce axis 0
        return fn(_t(input), axis=int(axis)).astype(_tf_dtype(output_type))
    op.__doc__ = f"The index of the {name[3:]} along `axis` (default 0), as output_type (int64)."
    return _named(op, name)


argmax = _arg(_rd.argmax, "argmax")
argmin = _arg(_rd.argmin, "argmin")


# ---- creation -------------------------------------------------------------------------------------------

def _shape_arg(shape, what):
    if isinstance(shape, Tensor):
        raise StaticGraphError(f"{what}: the shape must be known when the graph is built (a list of ints), "
                               f"got a tensor")
    shape = (shape,) if isinstance(shape, (int, np.integer)) else tuple(shape)
    if not all(isinstance(d, (int, np.integer)) and d >= 0 for d in shape):
        raise StaticGraphError(f"{what}: shape must be sizes >= 0, got {shape}")
    return tuple(int(d) for d in shape)


@graph_op
def zeros(shape, dtype=np.float32):
    """A constant of zeros."""
    return _const(STATE.mode.owner, np.zeros(_shape_arg(shape, "zeros"), _tf_dtype(dtype)))


@graph_op
def ones(shape, dtype=np.float32):
    """A constant of ones."""
    return _const(STATE.mode.owner, np.ones(_shape_arg(shape, "ones"), _tf_dtype(dtype)))


@graph_op
def fill(dims, value):
    """A constant of shape dims holding value (its dtype: float32 for Python floats, int32 for ints)."""
    v = _plain(value)
    dt = np.float32 if isinstance(v, float) else np.int32 if isinstance(v, int) and not isinstance(v, builtins.bool) \
        else np.asarray(v).dtype
    return _const(STATE.mode.owner, np.full(_shape_arg(dims, "fill"), v, dt))


@graph_op
def zeros_like(tensor, dtype=None):
    return _cr.zeros_like(_t(tensor), dtype=_tf_dtype(dtype))


@graph_op
def ones_like(tensor, dtype=None):
    return _cr.ones_like(_t(tensor), dtype=_tf_dtype(dtype))


@graph_op
def range(start, limit=None, delta=1, dtype=None):  # noqa: A001
    if limit is None:
        start, limit = 0, start
    dt = _tf_dtype(dtype) or (np.float32 if builtins.any(isinstance(v, float) for v in (start, limit, delta))
                                else np.int32)
    return _const(STATE.mode.owner, np.arange(start, limit, delta).astype(dt))


@graph_op
def linspace(start, stop, num):
    return _const(STATE.mode.owner, np.linspace(start, stop, int(num)).astype(np.float32))


# ---- random ---------------------------------------------------------------------------------------------

def set_random_seed(seed):
    """The graph-level seed: seeds dualgraph's generator (what unseeded random_* draw from) and
    combines with op-level seeds."""
    g = get_default_graph()
    g.seed = int(seed)
    _cr.manual_seed(int(seed))


def _seeded_rng(seed):
    g = get_default_graph()
    return np.random.default_rng([int(g.seed or 0), int(seed)])


def _float_dtype(dtype, what):
    dt = _tf_dtype(dtype)
    if dt.kind != "f":
        raise StaticGraphError(f"{what}: dtype must be a float dtype, got {dt}")
    return dt


@graph_op
def random_normal(shape, mean=0.0, stddev=1.0, dtype=np.float32, seed=None):
    """Normal draws. Unseeded, a node drawing anew on every run (from the generator set_random_seed
    seeds); with `seed`, values drawn once when the graph is built from (graph seed, seed)."""
    s, dt = _shape_arg(shape, "random_normal"), _float_dtype(dtype, "random_normal")
    if seed is not None:
        return _const(STATE.mode.owner, (_seeded_rng(seed).standard_normal(s) * stddev + mean).astype(dt))
    base = _cr.randn_like(_const(STATE.mode.owner, np.zeros(s, dt)))
    return base * stddev + mean if (stddev, mean) != (1.0, 0.0) else base


@graph_op
def random_uniform(shape, minval=0, maxval=None, dtype=np.float32, seed=None):
    """Uniform draws on [minval, maxval) (maxval defaults to 1 for floats; integers need it). Seeding
    as in random_normal; integer draws are made once when the graph is built."""
    s, dt = _shape_arg(shape, "random_uniform"), _tf_dtype(dtype)
    if dt.kind in "iu":
        if maxval is None:
            raise StaticGraphError("random_uniform: integer dtypes need maxval")
        rng = _seeded_rng(seed) if seed is not None else _cr.generator(CPU)
        return _const(STATE.mode.owner, rng.integers(minval, maxval, size=s).astype(dt))
    if dt.kind != "f":
        raise StaticGraphError(f"random_uniform: dtype must be a float or integer dtype, got {dt}")
    hi = 1.0 if maxval is None else maxval
    if seed is not None:
        return _const(STATE.mode.owner, (_seeded_rng(seed).random(s) * (hi - minval) + minval).astype(dt))
    base = _cr.rand_like(_const(STATE.mode.owner, np.zeros(s, dt)))
    return base * (hi - minval) + minval if (minval, hi) != (0, 1.0) else base


@graph_op
def truncated_normal(shape, mean=0.0, stddev=1.0, dtype=np.float32, seed=None):
    """Normal draws redrawn until within two standard deviations of the mean. Drawn once when the graph
    is built (from (graph seed, seed), or from dualgraph's generator without seed): what variable
    initializers use it for; rerunning an initializer gives the same values."""
    s, dt = _shape_arg(shape, "truncated_normal"), _float_dtype(dtype, "truncated_normal")
    rng = _seeded_rng(seed) if seed is not None else _cr.generator(CPU)
    out = rng.standard_normal(s)
    bad = np.abs(out) > 2
    while bad.any():
        out[bad] = rng.standard_normal(int(bad.sum()))
        bad = np.abs(out) > 2
    return _const(STATE.mode.owner, (out * stddev + mean).astype(dt))


__all__ = ["add", "subtract", "multiply", "divide", "truediv", "floordiv", "pow", "maximum", "minimum", "equal",
           "not_equal", "less", "less_equal", "greater", "greater_equal", "logical_and", "logical_or",
           "logical_not", "squared_difference", "square", "sqrt", "rsqrt", "exp", "log", "log1p", "sigmoid", "tanh",
           "abs", "negative", "sign", "reciprocal", "floor", "ceil", "round", "sin", "cos", "identity",
           "stop_gradient", "cast", "to_float", "to_int32", "to_int64", "clip_by_value", "add_n", "where",
           "matmul", "tensordot", "reshape", "transpose", "shape", "rank", "size", "concat", "stack", "unstack",
           "expand_dims", "squeeze", "tile", "one_hot", "gather", "reduce_sum", "reduce_mean", "reduce_max",
           "reduce_min", "reduce_prod", "reduce_any", "reduce_all", "reduce_logsumexp", "argmax", "argmin",
           "zeros", "ones", "fill", "zeros_like", "ones_like", "range", "linspace", "set_random_seed",
           "random_normal", "random_uniform", "truncated_normal"]
