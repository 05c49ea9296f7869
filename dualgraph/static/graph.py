"""Explicit define-then-run graphs (TensorFlow 1 / Theano style) on the same IR as @dg.function.

A `Graph` owns a `StaticBuilder`, the mode its ops are built in. Placeholders are symbolic tensors
bound to graph inputs; ordinary dualgraph ops on them (operators, dg.*, nn.functional, modules)
record nodes of the IR, whether or not the code runs inside `with graph.as_default():` (a symbolic
tensor knows its builder, and the eager mode hands an op on it to that builder). Variables are
concrete tensors holding state across runs; the graph reads them as inputs. An `Operation` is a
set of Variable updates; `plan_for` prunes the graph to what a set of fetches needs.
"""
import threading

import numpy as np

from .. import dtypes as _dt
from ..backend import CPU
from ..dispatch import using
from ..errors import DualgraphError, user_line
from ..function.tracer import Tracer
from ..graph.avals import Aval, Dim
from ..graph.ir import Graph as IRGraph, Value
from ..tensor import Tensor, _make, _to_array, register_tensor_type


class StaticGraphError(DualgraphError, ValueError):
    """Misuse of a static graph: missing or bad feeds, fetches from another graph, ..."""


class StaticBuilder(Tracer):
    """The mode a static graph is built in: a tracer whose symbolic tensors remember it (`_builder`),
    so that ops on them build into their graph outside its `as_default()` scope too."""

    def __init__(self, owner, graph):
        super().__init__(graph=graph)
        self.owner = owner

    def sym(self, value, device, requires_grad=False):
        t = super().sym(value, device, requires_grad)
        t._builder = self
        return t

    def tensor_for(self, value, device=None):
        t = super().tensor_for(value, device)
        if isinstance(t, Tensor) and t._symbolic:
            t._builder = self
        return t

    def read_shape(self, t):
        return t._aval.shape  # building a static graph freezes nothing by reading shapes

    def no_value(self, tensor, what):
        raise StaticGraphError(f"{what}: {tensor._aval} is a node of a static graph and has no value until "
                               f"it runs; fetch it with sess.run(tensor, feed_dict=...){_at()}")


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

    def as_default(self):
        """`with g.as_default():` makes g the graph that placeholder/Variable/constant build into."""
        return _DefaultScope(self)

    def _unique(self, name, prefix):
        base = name or prefix
        out, k = base, 1
        while out in self._names:
            out = f"{base}_{k}"
            k += 1
        self._names.add(out)
        return out

    def owns(self, t):
        return isinstance(t, Tensor) and ((t._symbolic and t._builder is self.builder) or
                                          any(v is t for v in self.variables))

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
    _DEFAULT[0] = None


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


def placeholder(shape=None, dtype="float32", name=None):
    """A graph input fed at run time. `None` dims accept any size; shape=None is a scalar.

    Also takes TensorFlow 1's argument order, `placeholder(dtype, shape=None, name=None)`."""
    if shape is not None and not isinstance(shape, (int, tuple, list)):
        shape, dtype = (dtype if isinstance(dtype, (tuple, list, int)) else None), shape
    g = get_default_graph()
    dt = _dt.resolve(dtype)
    name = g._unique(name, "placeholder")
    dims = []
    for i, d in enumerate(() if shape is None else ((shape,) if isinstance(shape, int) else tuple(shape))):
        dims.append(Dim(f"{name}_{i}") if d is None or d == -1 else int(d))
    v = g.ir.add_input(Aval(tuple(dims), dt), name=name)
    t = g.builder.sym(v, CPU, requires_grad=dt.kind == "f")  # float placeholders can be differentiated
    t._placeholder_name = name
    t._declared_shape = None if shape is None else tuple(dims)
    g.placeholders.append(t)
    return t


class Variable(Tensor):
    """State that lives across runs: a concrete tensor the graph reads as an input and `assign`s update."""

    __slots__ = ()

    def __new__(cls, initial_value, name=None, trainable=True, dtype=None, graph=None):
        arr = _to_array(initial_value, dtype, None, copy=True)
        t = _make(arr, CPU)
        t.__class__ = cls
        return t

    def __init__(self, initial_value, name=None, trainable=True, dtype=None, graph=None):
        g = graph or get_default_graph()
        self.name = g._unique(name, "Variable")
        self.trainable = bool(trainable) and self.dtype.kind == "f"
        self.initial_value = np.array(self.numpy())
        self.graph = g
        if self.trainable:
            self._requires_grad = True
        with using(g.builder):
            v = g.builder.value_of(self)  # registers the variable as a captured graph input now
        v.name = self.name
        g.variables.append(self)

    @property
    def initializer(self):
        """An op that resets the variable to its initial value (TF1's `var.initializer`)."""
        return Operation([(self, _const(self.graph, self.initial_value))], name=f"{self.name}/initializer")

    def __repr__(self):
        return f"<dg.static.Variable {self.name!r} {self.dtype}{list(self.shape)}>"


register_tensor_type(Variable)


def _const(g, array):
    v = g.ir.add_const(np.asarray(array))
    return g.builder.sym(v, CPU)


def constant(value, dtype=None, name=None):
    """A constant node of the default graph."""
    g = get_default_graph()
    arr = _to_array(value, dtype, None, copy=True)
    v = g.ir.add_const(arr, name=g._unique(name, "Const"))
    return g.builder.sym(v, CPU)


# ---- updates and pruning --------------------------------------------------------------------------

class Operation:
    """A set of (Variable, new value) updates; `sess.run(op)` computes every new value from the
    variables' current values, then writes them all back (a simultaneous update)."""

    def __init__(self, updates=(), deps=(), name="op"):
        self.updates = list(updates)
        self.deps = list(deps)
        self.name = name

    def all_updates(self):
        out = list(self.updates)
        for d in self.deps:
            out.extend(d.all_updates())
        return out

    def __repr__(self):
        return f"<dg.static.Operation {self.name!r}: updates {[v.name for v, _ in self.all_updates()]}>"


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
        if item.graph is not graph:
            raise StaticGraphError(f"Variable {item.name!r} belongs to another graph than this session's")
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


__all__ = ["Graph", "placeholder", "Variable", "constant", "get_default_graph", "reset_default_graph",
           "StaticGraphError", "Operation"]
