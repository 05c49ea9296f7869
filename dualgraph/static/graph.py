"""Explicit define-then-run graphs (TensorFlow 1 / Theano style) on the same IR as @dg.function.

A `Graph` owns a `StaticBuilder`, the mode its ops are built in. Placeholders are symbolic tensors
bound to graph inputs; ordinary dualgraph ops on them (operators, dg.*, nn.functional, modules)
record nodes of the IR, whether or not the code runs inside `with graph.as_default():` (a symbolic
tensor knows its builder, and the eager mode hands an op on it to that builder). Variables are
concrete tensors holding state across runs; the graph reads them as inputs, and operators on a
Variable build into its graph as in TensorFlow 1. An `Operation` is a set of Variable updates;
`plan_for` prunes the graph to what a set of fetches needs.

A placeholder declared without a shape (TF1's `shape=None`, any shape) is built as a scalar. The
builder keeps a replayable record of what was built (`log`), so that a run feeding it a value of
another rank rebuilds the graph for that rank (`respecialize`) instead of computing the wrong thing.
"""
import contextlib
import threading

import numpy as np

from .. import dtypes as _dt
from .._state import STATE
from ..backend import CPU
from ..dispatch import using
from ..errors import DualgraphError, user_line
from ..function.executor import Executable
from ..function.tracer import SymbolicTensor, Tracer
from ..graph.avals import Aval, Dim
from ..graph.ir import Graph as IRGraph, Value
from ..ops.shape import broadcast_to
from ..tensor import Tensor, _make, _to_array, register_tensor_type


class StaticGraphError(DualgraphError, ValueError):
    """Misuse of a static graph: missing or bad feeds, fetches from another graph, ..."""


class StaticTensor(SymbolicTensor):
    """A node of a static graph: TF1's `tf.Tensor` (`.eval()`, `.name`, `.op.name`, `.graph`, `.get_shape()`)."""

    __slots__ = ()

    @property
    def graph(self):
        return self._builder.owner

    @property
    def name(self):
        return f"{_value_name(self)}:0"

    @property
    def op(self):
        return _OpInfo(_value_name(self))

    def get_shape(self):
        """The static shape, None where a size is only known at run time."""
        if getattr(self, "_any_shape", False):
            return None
        return tuple(d if isinstance(d, int) else None for d in self._aval.shape)

    def eval(self, feed_dict=None, session=None):
        """`sess.run(self, feed_dict)` in `session`, else the default session (`with Session():` or an
        InteractiveSession)."""
        return _session_for(self.graph, session, "eval()").run(self, feed_dict)

    def __repr__(self):
        return f"<dg.static.Tensor {self.name!r} {self._aval}>"

    __str__ = __repr__


def _value_name(t):
    v = t._builder.vals.get(id(t))
    if v is None:
        return "Tensor"
    if v.name:
        return v.name
    return v.producer.op.name if v.producer is not None else "Const"


class _OpInfo:
    """What `tensor.op` / `variable.op` expose of the producing operation: its name."""

    def __init__(self, name):
        self.name = name

    def __repr__(self):
        return f"<op {self.name!r}>"


class StaticBuilder(Tracer):
    """The mode a static graph is built in: a tracer whose symbolic tensors remember it (`_builder`),
    so that ops on them build into their graph outside its `as_default()` scope too. It logs each
    top-level op and gradient request (`log`), which `respecialize` replays at other input ranks."""

    def __init__(self, owner, graph):
        super().__init__(graph=graph)
        self.owner = owner
        self.log = []
        self.unreplayable = None   # why the log cannot be replayed (a control-flow subgraph, ...)
        self._depth = 0

    def _tag(self, t):
        if isinstance(t, Tensor) and t._symbolic:
            if t.__class__ is SymbolicTensor:
                t.__class__ = StaticTensor
            t._builder = self
        return t

    def sym(self, value, device, requires_grad=False):
        return self._tag(super().sym(value, device, requires_grad))

    def tensor_for(self, value, device=None):
        return self._tag(super().tensor_for(value, device))

    def _logged(self, entry_of, run, inputs=()):
        self._depth += 1
        try:
            out = run()
        except DualgraphError as e:
            raise self._hint(e, inputs) from None
        finally:
            self._depth -= 1
        if self._depth == 0:
            self.log.append(entry_of(out))
        return out

    def _hint(self, e, inputs):
        """e, saying which placeholders were declared without a shape when a 0-d node of this graph
        (what such a placeholder stands for until fed) is among the failing op's inputs."""
        free = [p._placeholder_name for p in self.owner.placeholders if p._any_shape]
        if not free or self._depth > 1 or "declared without a shape" in str(e) or not _has_scalar_node(self, inputs):
            return e
        msg = (f"{e}; placeholder(s) {', '.join(map(repr, free))} were declared without a shape and are built as "
               f"scalars until fed: give the shape, e.g. placeholder(tf.float32, [None, 784])")
        try:
            return type(e)(msg)
        except TypeError:   # an error class whose constructor takes more than a message
            return StaticGraphError(msg)

    def apply(self, op, inputs, attrs, subgraphs=None, custom=None):
        if subgraphs is not None or custom is not None:
            self.unreplayable = self.unreplayable or op.name
        return self._logged(lambda out: ("apply", op, tuple(inputs), attrs, subgraphs, custom, out),
                            lambda: super(StaticBuilder, self).apply(op, inputs, attrs, subgraphs, custom), inputs)

    def grad(self, outputs, grad_outputs, retain_graph, create_graph, inputs):
        return self._logged(lambda out: ("grad", tuple(outputs), tuple(grad_outputs), tuple(inputs), out),
                            lambda: super(StaticBuilder, self).grad(outputs, grad_outputs, retain_graph,
                                                                    create_graph, inputs))

    def detach(self, t):
        return self._logged(lambda out: ("detach", t, out), lambda: super(StaticBuilder, self).detach(t))

    def filled(self, value, shape, dtype, device):
        return self._logged(lambda out: ("filled", value, shape, dtype, device, out),
                            lambda: super(StaticBuilder, self).filled(value, shape, dtype, device))

    def _unlogged(name):
        def method(self, *args, **kwargs):
            self.unreplayable = self.unreplayable or name
            return getattr(super(StaticBuilder, self), name)(*args, **kwargs)
        method.__name__ = name
        return method

    inplace = _unlogged("inplace")
    apply_inplace = _unlogged("apply_inplace")
    rebind = _unlogged("rebind")
    move = _unlogged("move")
    cond = _unlogged("cond")
    while_loop = _unlogged("while_loop")
    custom_function = _unlogged("custom_function")
    del _unlogged

    def read_shape(self, t):
        return t._aval.shape  # building a static graph freezes nothing by reading shapes

    def no_value(self, tensor, what):
        raise StaticGraphError(f"{what}: {tensor._aval} is a node of a static graph and has no value until "
                               f"it runs; fetch it with sess.run(tensor, feed_dict=...){_at()}")


def _has_scalar_node(builder, items):
    for x in items:
        if isinstance(x, (list, tuple)):
            if _has_scalar_node(builder, x):
                return True
        elif isinstance(x, Tensor) and x._symbolic and x._builder is builder and x.ndim == 0:
            return True
    return False


def _at():
    line = user_line()
    return f" (at {line})" if line else ""


class Graph:
    """A define-then-run graph: build with placeholders and ops, run with `Session(graph).run`."""

    def __init__(self, name="graph"):
        self.ir = IRGraph(name)
        self.builder = StaticBuilder(self, self.ir)
        self.placeholders = []   # symbolic tensors, in creation order
        self.variables = []      # Variable tensors, in creation order
        self._names = set()
        self._scopes = []        # the name_scope / variable_scope prefixes in force
        self._var_store = {}     # get_variable's variables by full name
        self._reuse = []
        self.origin = None       # the graph this one re-specializes (respecialize), else None
        self._specialized = {}
        self.seed = None         # tf.set_random_seed's graph-level seed

    def as_default(self):
        """`with g.as_default():` makes g the graph that placeholder/Variable/constant build into."""
        return _DefaultScope(self)

    def _prefix(self):
        return "".join(s + "/" for s in self._scopes)

    def _unique(self, name, prefix):
        base = self._prefix() + (name or prefix)
        out, k = base, 1
        while out in self._names:
            out = f"{base}_{k}"
            k += 1
        self._names.add(out)
        return out

    def owns(self, t):
        return isinstance(t, Tensor) and ((t._symbolic and t._builder is self.builder) or
                                          any(v is t for v in self.variables))

    def get_tensor_by_name(self, name):
        """The placeholder or Variable named `name` ("x" or TF1's "x:0")."""
        bare = name[:-2] if name.endswith(":0") else name
        for p in self.placeholders:
            if p._placeholder_name == bare:
                return p
        for v in self.variables:
            if v.op_name == bare:
                return v
        raise StaticGraphError(f"get_tensor_by_name: no placeholder or Variable named {name!r} in this graph")

    def __str__(self):
        return str(self.ir)

    def to_dot(self):
        return self.ir.to_dot()

    def to_ir(self, fetches):
        """The pruned IR graph computing `fetches` from the placeholders, with Variables frozen as
        named constants (their current values): what `dg.onnx.export` takes."""
        plan = plan_for(self, _as_list(fetches))
        g = IRGraph(self.ir.name)
        g.nodes = plan.nodes
        g.outputs = plan.outputs
        consts = {}
        for v in plan.inputs:
            t = plan.feeds_by_value.get(id(v))
            if t is not None and t._symbolic:
                g.inputs.append(v)
            else:
                consts[id(v)] = v
        g = g.copy() if not consts else _freeze(g, plan, consts)
        return g

    def __repr__(self):
        return (f"<dg.static.Graph {self.ir.name!r}: {len(self.placeholders)} placeholders, "
                f"{len(self.variables)} variables, {len(self.ir.nodes)} nodes>")


def _freeze(g, plan, consts):
    """Copy g with each captured Variable input replaced by a constant of its current value."""
    m = {}
    for v in list(consts.values()):
        t = plan.feeds_by_value[id(v)]
        m[id(v)] = Value(v.aval, name=v.name, const=np.array(t.numpy()))
    new = IRGraph(g.name)
    for v in g.inputs:
        m[id(v)] = new.add_input(v.aval, v.name)

    def get(v):
        if v is None:
            return None
        return m.get(id(v), v)

    for node in g.nodes:
        nn = new.add_node(node.op, [get(v) for v in node.inputs], node.attrs, [o.aval for o in node.outputs],
                          node.source, node.subgraphs)
        for o, no in zip(node.outputs, nn.outputs):
            m[id(o)] = no
    new.outputs = [get(v) for v in g.outputs]
    return new


def _as_list(x):
    return list(x) if isinstance(x, (list, tuple)) else [x]


_LOCAL = threading.local()


def _stack():
    if not hasattr(_LOCAL, "stack"):
        _LOCAL.stack = []
    return _LOCAL.stack


def _session_stack():
    if not hasattr(_LOCAL, "sessions"):
        _LOCAL.sessions = []
    return _LOCAL.sessions


_DEFAULT = [None]


def get_default_graph():
    """The innermost `as_default()` graph, else a process-wide default graph (as in TensorFlow 1)."""
    stack = _stack()
    if stack:
        return stack[-1]
    if _DEFAULT[0] is None:
        _DEFAULT[0] = Graph("default")
    return _DEFAULT[0]


def reset_default_graph():
    """A fresh default graph (TF1's tf.reset_default_graph); tensors of the old one stay with it."""
    _DEFAULT[0] = None


def get_default_session():
    """The innermost session entered with `with sess:` (or `sess.as_default()`), else the latest
    InteractiveSession, else None."""
    stack = _session_stack()
    return stack[-1] if stack else None


def _session_for(graph, session, what):
    sess = session or get_default_session()
    if sess is None:
        raise StaticGraphError(f"{what} needs a session: pass session=sess, or call it inside `with "
                               f"tf.Session() as sess:` or after tf.InteractiveSession()")
    if sess.graph is not graph:
        raise StaticGraphError(f"{what}: the session runs another graph than this tensor's")
    return sess


class _DefaultScope:
    def __init__(self, graph):
        self.graph = graph

    def __enter__(self):
        _stack().append(self.graph)
        self._mode = using(self.graph.builder)
        self._mode.__enter__()
        return self.graph

    def __exit__(self, *exc):
        self._mode.__exit__(*exc)
        _stack().pop()


def _in_graph(graph):
    """Build into `graph` unless a graph is already being built (a static builder or a @dg.function trace)."""
    return contextlib.nullcontext() if STATE.mode.symbolic else using(graph.builder)


# ---- names --------------------------------------------------------------------------------------------

@contextlib.contextmanager
def name_scope(name, default_name=None):
    """Prefix the names of placeholders, Variables and constants made inside with "name/" (TF1's
    tf.name_scope); yields the scope's full name with its trailing slash."""
    g = get_default_graph()
    part = name or default_name
    if part is None:
        raise StaticGraphError("name_scope: give a name (or default_name)")
    g._scopes.append(part)
    try:
        yield g._prefix()
    finally:
        g._scopes.pop()


AUTO_REUSE = "AUTO_REUSE"


class _VariableScope:
    def __init__(self, name, reuse):
        self.name, self.reuse = name, reuse

    def reuse_variables(self):
        """Later get_variable calls in this scope return the existing variables."""
        self.reuse = True
        g = get_default_graph()
        if g._reuse:
            g._reuse[-1] = True


@contextlib.contextmanager
def variable_scope(name_or_scope, default_name=None, reuse=None):
    """A name scope for get_variable: `reuse=True` returns existing variables (and requires them),
    `reuse=tf.AUTO_REUSE` creates or returns, None inherits the enclosing scope's."""
    g = get_default_graph()
    name = name_or_scope.name if isinstance(name_or_scope, _VariableScope) else (name_or_scope or default_name)
    if name is None:
        raise StaticGraphError("variable_scope: give a name (or default_name)")
    inherited = g._reuse[-1] if g._reuse else None
    eff = reuse if reuse is not None else (name_or_scope.reuse if isinstance(name_or_scope, _VariableScope)
                                           else inherited)
    scope = _VariableScope(g._prefix() + name, eff)
    g._scopes.append(name)
    g._reuse.append(eff)
    try:
        yield scope
    finally:
        g._scopes.pop()
        g._reuse.pop()


def get_variable(name, shape=None, dtype=None, initializer=None, trainable=True):
    """A Variable shared by name (TF1's tf.get_variable): created in the current variable_scope, or
    the existing one when the scope reuses. `initializer` is a tf.*_initializer, an array-like (then
    shape may be omitted) or None (glorot_uniform_initializer for floats, zeros otherwise)."""
    from .init_ops import glorot_uniform_initializer  # noqa: PLC0415  (init_ops builds on Variable)
    g = get_default_graph()
    full = g._prefix() + name
    reuse = g._reuse[-1] if g._reuse else None
    have = g._var_store.get(full)
    if have is not None:
        if not reuse:
            raise StaticGraphError(f"get_variable: Variable {full} already exists; pass reuse=True or "
                                   f"reuse=tf.AUTO_REUSE to the variable_scope to share it")
        if shape is not None and tuple(have.shape) != tuple(shape):
            raise StaticGraphError(f"get_variable: Variable {full} has shape {tuple(have.shape)}, asked for "
                                   f"{tuple(shape)}")
        return have
    if reuse is True:
        raise StaticGraphError(f"get_variable: Variable {full} does not exist, and the variable_scope reuses "
                               f"(reuse=True); create it first or use reuse=tf.AUTO_REUSE")
    dt = _tf_dtype(dtype) or _dt.float32
    if initializer is None:
        if shape is None:
            raise StaticGraphError(f"get_variable: {full} needs a shape or an initial value")
        initializer = glorot_uniform_initializer() if dt.kind == "f" else (lambda s, dtype=None: np.zeros(s, dt))
    if callable(initializer):
        if shape is None:
            raise StaticGraphError(f"get_variable: {full} needs a shape for its initializer")
        init = initializer(tuple(int(d) for d in shape), dtype=dt)
    else:
        init = initializer
        if shape is not None and tuple(np.shape(_plain(init))) != tuple(shape):
            init = np.broadcast_to(_plain(init), tuple(shape))
    saved = g._scopes
    g._scopes = []   # the full name is the scoped one already
    try:
        v = Variable(init, trainable=trainable, name=full, dtype=dt)
    finally:
        g._scopes = saved
    g._var_store[full] = v
    return v


def _plain(x):
    return np.asarray(x.numpy()) if isinstance(x, Tensor) and not x._symbolic else x


# ---- placeholders ---------------------------------------------------------------------------------

def _is_shape(x):
    return x is None or isinstance(x, (int, np.integer, tuple, list)) and not isinstance(x, bool)


def _tf_dtype(x):
    """A dtype as TF1 reads one: its names "float" and "double" are float32 and float64."""
    if isinstance(x, str) and x in _TF_NAMES:
        return _TF_NAMES[x]
    return _dt.resolve(x)


_TF_NAMES = {"float": _dt.float32, "double": _dt.float64, "half": _dt.float16}


def _is_dtype(x):
    if isinstance(x, (np.dtype, type)):
        return True
    if isinstance(x, str):
        try:
            _tf_dtype(x)
            return True
        except DualgraphError:
            return False
    return False


def placeholder(dtype=None, shape=None, name=None):
    """A graph input fed at run time (TF1's `tf.placeholder(dtype, shape=None, name=None)`).

    `shape=None` accepts any shape: the graph is built as if scalar and rebuilt for the rank of each
    value fed. In a shape, `None` dims accept any size. The older dualgraph order,
    `placeholder(shape, dtype="float32", name=None)`, is recognised by its first argument being a
    shape (a tuple, list or int) rather than a dtype (a dtype object or a dtype name)."""
    if _is_shape(dtype) and (shape is None or _is_dtype(shape)):
        if dtype is None and shape is None:
            raise StaticGraphError("placeholder: give a dtype, e.g. placeholder(tf.float32) or "
                                   "placeholder(tf.float32, [None, 784])")
        dtype, shape = (shape if shape is not None else "float32"), dtype
    if not _is_dtype(dtype):
        raise StaticGraphError(f"placeholder: {dtype!r} is not a dtype (the order is placeholder(dtype, shape=None, "
                               f"name=None))")
    if not _is_shape(shape):
        raise StaticGraphError(f"placeholder: shape must be None, an int, or a tuple/list of ints and None, "
                               f"got {shape!r}")
    g = get_default_graph()
    dt = _tf_dtype(dtype)
    name = g._unique(name, "Placeholder")
    dims = []
    sizes = () if shape is None else (shape,) if isinstance(shape, (int, np.integer)) else tuple(shape)
    for i, d in enumerate(sizes):
        if d is None or d == -1:
            dims.append(Dim(f"{name}_{i}"))
        elif isinstance(d, (int, np.integer)) and not isinstance(d, bool) and d >= 0:
            dims.append(int(d))
        else:
            raise StaticGraphError(f"placeholder {name!r}: dim {i} is {d!r}; dims are sizes >= 0 or None")
    return _new_placeholder(g, name, dt, tuple(dims), shape is None)


def _new_placeholder(g, name, dt, dims, any_shape):
    v = g.ir.add_input(Aval(dims, dt), name=name)
    for i, d in enumerate(dims):
        if isinstance(d, Dim):
            g.builder.dim_origin.setdefault(d, (v, i))
    t = g.builder.sym(v, CPU, requires_grad=dt.kind == "f")  # float placeholders can be differentiated
    t._placeholder_name = name
    t._any_shape = any_shape
    t._declared_shape = None if any_shape else dims
    g.placeholders.append(t)
    return t


# ---- variables ------------------------------------------------------------------------------------

def _graph_value(g, init):
    """The value a graph node that reads no placeholder computes now (a Variable's initial value)."""
    plan = plan_for(g, [init])
    for v in plan.inputs:
        src = plan.feeds_by_value.get(id(v))
        if src is not None and src._symbolic:
            raise StaticGraphError(f"Variable: the initial value reads placeholder {src._placeholder_name!r}; "
                                   f"initialize from constants, random_* or arrays")
    ir = IRGraph("init")
    ir.inputs, ir.nodes, ir.outputs = list(plan.inputs), list(plan.nodes), list(plan.outputs)
    arrays = [plan.feeds_by_value[id(v)]._data for v in plan.inputs]
    return np.array(Executable(ir, np)(*arrays)[0], copy=True)


def _python_values(x):
    """Python numbers (and lists of them) as TF1 converts them: floats to float32, ints to int32."""
    if isinstance(x, (float, int, list, tuple)) and not isinstance(x, bool):
        arr = np.asarray(x)
        if arr.dtype == np.float64:
            return arr.astype(np.float32)
        if arr.dtype == np.int64:
            return arr.astype(np.int32)
        return arr
    return x


class Variable(Tensor):
    """State that lives across runs (TF1's tf.Variable): a concrete tensor the graph reads as an input
    and `assign`s update. Operators on it build into its graph. An initial value that is a graph node
    (tf.random_normal(...)) is computed once now, and again each time `initializer` runs."""

    __slots__ = ()

    def __new__(cls, initial_value=None, trainable=True, name=None, dtype=None, graph=None):
        if initial_value is None:
            raise StaticGraphError("Variable: initial_value is required")
        if isinstance(initial_value, Tensor) and initial_value._symbolic:
            g = graph or (initial_value._builder.owner if initial_value._builder is not None else None)
            if g is None:
                raise StaticGraphError("Variable: the initial value is a tensor of a finished trace")
            arr = _graph_value(g, initial_value)
            if dtype is not None:
                arr = arr.astype(_tf_dtype(dtype))
        else:
            # a static graph runs on the host (Session.run returns numpy arrays): a GPU tensor's value is copied
            arr = _to_array(_python_values(initial_value), _tf_dtype(dtype), CPU, copy=True)
        t = _make(arr, CPU)
        t.__class__ = cls
        return t

    def __init__(self, initial_value=None, trainable=True, name=None, dtype=None, graph=None):
        g = graph or (initial_value._builder.owner if isinstance(initial_value, Tensor) and initial_value._symbolic
                      else get_default_graph())
        self.op_name = g._unique(name, "Variable")
        self.trainable = bool(trainable) and self.dtype.kind == "f"
        self.graph = g
        if isinstance(initial_value, Tensor) and initial_value._symbolic:
            self._init_node = initial_value if initial_value.dtype == self.dtype else \
                _on(g, lambda: initial_value.astype(self.dtype))
        else:
            self._init_node = None
        self.initial_value_array = np.array(self.numpy())
        if self.trainable:
            self._requires_grad = True
        with using(g.builder):
            v = g.builder.value_of(self)  # registers the variable as a captured graph input now
        v.name = self.op_name
        g.variables.append(self)

    @property
    def name(self):
        return f"{self.op_name}:0"

    @property
    def op(self):
        return _OpInfo(self.op_name)

    @property
    def initial_value(self):
        return self._init_node if self._init_node is not None else _const(self.graph, self.initial_value_array)

    @property
    def initializer(self):
        """An op setting the variable to its initial value (TF1's `var.initializer`); an initial value
        drawn by a random_* node is drawn again."""
        return Operation([(self, self.initial_value)], name=f"{self.op_name}/initializer")

    def get_shape(self):
        return tuple(self.shape)

    def value(self):
        return self

    def read_value(self):
        return self

    def eval(self, session=None):
        """The current value, read through `session` (else the default session)."""
        return _session_for(self.graph, session, "Variable.eval()").run(self)

    def load(self, value, session=None):
        """Write `value` into the variable now (TF1's Variable.load)."""
        value = value.numpy() if isinstance(value, Tensor) else value  # a GPU tensor's value too
        np.copyto(self._data, np.asarray(value, dtype=self.dtype), casting="same_kind")
        self._version[0] += 1

    # use_locking: one run applies all its updates together from the state before it, so there is
    # nothing to lock; read_value=False gives an operation that fetches as None
    def assign(self, value, use_locking=False, name=None, read_value=True):
        return _read(assign(self, value, name=name), read_value)

    def assign_add(self, delta, use_locking=False, name=None, read_value=True):
        return _read(assign_add(self, delta, name=name), read_value)

    def assign_sub(self, delta, use_locking=False, name=None, read_value=True):
        return _read(assign_sub(self, delta, name=name), read_value)

    def __repr__(self):
        return f"<dg.static.Variable {self.name!r} shape={tuple(self.shape)} dtype={self.dtype}>"


def _read(op, read_value):
    if not read_value:
        op.value = None
    return op


def _graph_operator(name):
    base = getattr(Tensor, name)

    def method(self, *args):
        if STATE.mode.symbolic:
            return base(self, *args)
        with using(self.graph.builder):
            return base(self, *args)
    method.__name__ = name
    method.__doc__ = f"Tensor.{name}, built into the Variable's graph."
    return method


for _name in ("__add__", "__radd__", "__sub__", "__rsub__", "__mul__", "__rmul__", "__truediv__",
              "__rtruediv__", "__floordiv__", "__rfloordiv__", "__mod__", "__matmul__", "__rmatmul__", "__pow__",
              "__rpow__", "__neg__", "__abs__", "__getitem__", "__lt__", "__le__", "__gt__", "__ge__",
              "__and__", "__or__", "__invert__"):
    if hasattr(Tensor, _name):
        setattr(Variable, _name, _graph_operator(_name))
del _name

register_tensor_type(Variable)


def _on(g, fn):
    with using(g.builder):
        return fn()


def _const(g, array, name=None):
    v = g.ir.add_const(np.asarray(array), name=name)
    return g.builder.sym(v, CPU)


def constant(value, dtype=None, shape=None, name=None):
    """A constant node of the default graph (TF1's tf.constant): a scalar `value` with a `shape` fills it."""
    g = get_default_graph()
    arr = _to_array(_python_values(_plain(value)), _tf_dtype(dtype), None, copy=True)
    if shape is not None:
        shape = tuple(int(d) for d in ((shape,) if isinstance(shape, int) else shape))
        if arr.size == 1:
            arr = np.full(shape, arr.reshape(()), dtype=arr.dtype)
        elif arr.size == int(np.prod(shape)):
            arr = arr.reshape(shape)
        else:
            raise StaticGraphError(f"constant: {arr.size} values cannot fill shape {shape}")
    return _const(g, arr, name=g._unique(name, "Const"))


# ---- updates and pruning --------------------------------------------------------------------------

class Operation:
    """A set of (Variable, new value) updates; `sess.run(op)` computes every new value from the
    variables' current values, then writes them all back (a simultaneous update)."""

    def __init__(self, updates=(), deps=(), name="op", value=None):
        self.updates = list(updates)
        self.deps = list(deps)
        self.name = name
        self.value = value   # what fetching it returns (an assign's new value), else None

    def all_updates(self):
        out = list(self.updates)
        for d in self.deps:
            out.extend(d.all_updates())
        return out

    def run(self, feed_dict=None, session=None):
        """`sess.run(self, feed_dict)` in `session`, else the default session."""
        graph = next((v.graph for v, _ in self.all_updates()), None)
        sess = session or get_default_session()
        if sess is None:
            raise StaticGraphError("Operation.run() needs a session: pass session=sess or run it inside "
                                   "`with tf.Session() as sess:`")
        if graph is not None and sess.graph is not graph:
            raise StaticGraphError("Operation.run(): the session runs another graph than this operation's")
        return sess.run(self, feed_dict)

    def __repr__(self):
        return f"<dg.static.Operation {self.name!r}: updates {[v.op_name for v, _ in self.all_updates()]}>"


def _graph_of(var):
    if not isinstance(var, Variable):
        raise StaticGraphError(f"assign needs a dg.static.Variable, got {type(var).__name__}")
    return var.graph


def assign(ref, value, name=None):
    """An op setting `ref` (a Variable) to `value` when run; fetching it returns the new value."""
    def build():
        v = value if isinstance(value, Tensor) else _const(ref.graph, np.asarray(_plain(value), dtype=ref.dtype))
        if tuple(v.shape) != tuple(ref.shape):
            try:
                v = broadcast_to(v, ref.shape)
            except DualgraphError:
                raise StaticGraphError(f"assign: {ref.op_name} has shape {tuple(ref.shape)}, the value has shape "
                                       f"{tuple(v.shape)}") from None
        return v.astype(ref.dtype) if v.dtype != ref.dtype else v

    new = _on(_graph_of(ref), build)
    return Operation([(ref, new)], name=name or f"{ref.op_name}/assign", value=new)


def assign_add(ref, value, name=None):
    """An op adding `value` to `ref` (a Variable) when run."""
    return assign(ref, _on(_graph_of(ref), lambda: ref + value), name=name or f"{ref.op_name}/assign_add")


def assign_sub(ref, value, name=None):
    """An op subtracting `value` from `ref` (a Variable) when run."""
    return assign(ref, _on(_graph_of(ref), lambda: ref - value), name=name or f"{ref.op_name}/assign_sub")


class Plan:
    """What one set of fetches needs: nodes (in order), inputs, outputs, and the compiled graph."""

    def __init__(self, nodes, inputs, outputs, feeds_by_value, n_fetch, updates):
        self.nodes, self.inputs, self.outputs = nodes, inputs, outputs
        self.feeds_by_value = feeds_by_value  # id(input Value) -> placeholder tensor or Variable
        self.n_fetch = n_fetch
        self.updates = updates                # [(Variable, output index)]
        self.optimized = None
        self.executable = None


def _value_of(graph, item):
    """The IR Value a fetched tensor stands for in `graph` (errors for tensors of other graphs)."""
    if not isinstance(item, Tensor):
        raise StaticGraphError(f"cannot fetch {type(item).__name__} {item!r}: fetch tensors, Variables or "
                               f"operations of the graph")
    if isinstance(item, Variable):
        if item.graph is not graph and item.graph is not graph.origin:
            raise StaticGraphError(f"Variable {item.op_name!r} belongs to another graph than this session's")
        if id(item) not in graph.builder.vals:
            with using(graph.builder):
                graph.builder.value_of(item)
        return graph.builder.vals[id(item)]
    if not item._symbolic:
        raise StaticGraphError(f"cannot fetch an eager tensor ({item.dtype}{list(item.shape)}): it is not a "
                               f"node of this graph")
    if item._builder is not graph.builder or id(item) not in graph.builder.vals:
        raise StaticGraphError(f"the fetched tensor {item._aval} belongs to another graph than this session's")
    return graph.builder.vals[id(item)]


def plan_for(graph, items):
    """The nodes, inputs and outputs of `graph` that computing `items` (tensors, Variables, Operations) needs."""
    outputs, updates, n_fetch = [], [], 0
    for item in items:
        if isinstance(item, Operation):
            continue
        outputs.append(_value_of(graph, item))
        n_fetch += 1
    for item in items:
        if isinstance(item, Operation):
            for var, value in item.all_updates():
                updates.append((var, len(outputs)))
                outputs.append(_value_of(graph, value) if isinstance(value, Tensor) else value)
    needed, stack = set(), list(outputs)
    while stack:
        v = stack.pop()
        if v is None or id(v) in needed:
            continue
        needed.add(id(v))
        if v.producer is not None:
            stack.extend(v.producer.inputs)
    nodes = [n for n in graph.ir.nodes if any(id(o) in needed for o in n.outputs)]
    by_value = {id(graph.builder.vals[id(p)]): p for p in graph.placeholders}
    for t, v, _ in graph.builder.captured:
        by_value[id(v)] = t
    inputs = [v for v in graph.ir.inputs if id(v) in needed]
    return Plan(nodes, inputs, outputs, by_value, n_fetch, updates)


# ---- any-shape placeholders: rebuilding the graph for the ranks fed ----------------------------------

class Specialized:
    """`graph` rebuilt with its any-shape placeholders at given ranks, and the map from the original
    graph's tensors and operations to the rebuilt ones."""

    def __init__(self, graph, tensors):
        self.graph, self.tensors, self.ops = graph, tensors, {}

    def tensor(self, t):
        if isinstance(t, Tensor) and t._symbolic:
            out = self.tensors.get(id(t))
            if out is None:
                raise StaticGraphError(f"{t!r} was built after the graph was rebuilt for these ranks")
            return out
        return t

    def item(self, x):
        if isinstance(x, Operation):
            new = self.ops.get(id(x))
            if new is None:
                new = Operation([(v, self.tensor(val)) for v, val in x.updates], [self.item(d) for d in x.deps],
                                x.name, None if x.value is None else self.tensor(x.value))
                self.ops[id(x)] = (x, new)
                return new
            return new[1]
        return self.tensor(x)


def respecialize(graph, ranks):
    """`graph` rebuilt by replaying its builder's log with each any-shape placeholder (id -> rank in
    `ranks`) of that rank, every dim free; cached per ranks and log length."""
    key = (tuple(sorted(ranks.items())), len(graph.builder.log))
    hit = graph._specialized.get(key)
    if hit is not None:
        return hit
    b = graph.builder
    if b.unreplayable:
        names = [p._placeholder_name for p in graph.placeholders if id(p) in ranks]
        raise StaticGraphError(f"placeholder(s) {', '.join(map(repr, names))} were declared without a shape and "
                               f"fed values of rank {sorted(set(ranks.values()))}, but the graph uses "
                               f"{b.unreplayable}, which cannot be rebuilt for another rank; declare the shape")
    new = Graph(graph.ir.name)
    new.origin = graph
    new.variables = graph.variables
    m = {}
    for p in graph.placeholders:
        if id(p) in ranks:
            dims = tuple(Dim(f"{p._placeholder_name}_{i}") for i in range(ranks[id(p)]))
        else:
            dims = b.vals[id(p)].aval.shape
        t = _new_placeholder(new, p._placeholder_name, p.dtype, dims, False)
        t._requires_grad = p._requires_grad
        t._declared_shape, t._any_shape, t._origin = p._declared_shape, p._any_shape, p
        m[id(p)] = t

    def get(x):
        if isinstance(x, (list, tuple)):
            return type(x)(get(i) for i in x)
        if isinstance(x, Tensor) and x._symbolic:
            t = m.get(id(x))
            if t is None:
                v = b.vals.get(id(x))
                if v is None or v.const is None:
                    raise StaticGraphError(f"cannot rebuild the graph for the ranks fed: {x!r} was not made by an "
                                           f"op this graph recorded; declare the placeholders' shapes")
                t = m[id(x)] = _const(new, v.const, name=v.name)
            return t
        return x

    def put(old, out):
        for o, n in zip(_as_list(old), _as_list(out)):
            if o is not None and n is not None:
                m[id(o)] = n

    nb = new.builder
    with using(nb):
        for entry in b.log:
            kind = entry[0]
            if kind == "apply":
                _, op, ins, attrs, subgraphs, custom, out = entry
                put(out, nb.apply(op, get(ins), attrs, subgraphs, custom))
            elif kind == "grad":
                _, ys, gys, xs, out = entry
                put(out, nb.grad(list(get(ys)), list(get(gys)), False, False, list(get(xs))))
            elif kind == "detach":
                put(entry[2], nb.detach(get(entry[1])))
            else:
                _, value, shape, dtype, device, out = entry
                put(out, nb.filled(value, shape, dtype, device))
    nb.log = []
    spec = Specialized(new, m)
    graph._specialized[key] = spec
    return spec


__all__ = ["Graph", "placeholder", "Variable", "constant", "get_default_graph", "reset_default_graph",
           "StaticGraphError", "Operation", "assign", "assign_add", "assign_sub", "name_scope", "variable_scope",
           "get_variable", "AUTO_REUSE", "get_default_session"]
