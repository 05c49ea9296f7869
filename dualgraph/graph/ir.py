"""The graph IR: Values (shape/dtype, possibly symbolic dims) and Nodes naming ops of the op table.

A Graph lists its inputs, its nodes in topological order and its outputs. Constants are Values
holding an array (`value.const`). Control flow nodes (cond/while) carry subgraphs in `node.subgraphs`.
`str(graph)` is a small, stable textual form, in the spirit of a jaxpr:

    graph(%x: f32[B,3], %w: f32[3,4]) {
      %0: f32[B,4] = matmul(%x, %w)            # model.py:12
      %1: f32[B,4] = relu(%0)
      return (%1)
    }
"""
import itertools

from ..ops.infer import Aval


class Value:
    __slots__ = ("id", "aval", "producer", "name", "const", "__weakref__")
    _ids = itertools.count()

    def __init__(self, aval, producer=None, name=None, const=None):
        self.id = next(Value._ids)
        self.aval, self.producer, self.name, self.const = aval, producer, name, const

    @property
    def shape(self):
        return self.aval.shape

    @property
    def dtype(self):
        return self.aval.dtype

    def __repr__(self):
        return f"%{self.name or self.id}"


class Node:
    __slots__ = ("op", "inputs", "attrs", "outputs", "source", "subgraphs")

    def __init__(self, op, inputs, attrs, outputs, source=None, subgraphs=None):
        self.op, self.inputs, self.attrs, self.outputs = op, list(inputs), dict(attrs), list(outputs)
        self.source, self.subgraphs = source, subgraphs or {}

    def __repr__(self):
        return f"<Node {self.op.name}>"


class Graph:
    def __init__(self, name="graph"):
        self.name = name
        self.inputs = []    # Values fed at run time
        self.nodes = []     # topological order
        self.outputs = []   # Values returned

    # ---- building --------------------------------------------------------------------------
    def add_input(self, aval, name=None):
        v = Value(aval, name=name)
        self.inputs.append(v)
        return v

    def add_const(self, array, name=None):
        return Value(Aval(array.shape, array.dtype), const=array, name=name)

    def add_node(self, op, inputs, attrs, out_avals, source=None, subgraphs=None):
        node = Node(op, inputs, attrs, [], source, subgraphs)
        node.outputs = [Value(a, producer=node) for a in out_avals]
        self.nodes.append(node)
        return node

    # ---- reading -----------------------------------------------------------------------------
    def consts(self):
        seen, out = set(), []
        for node in self.nodes:
            for v in node.inputs:
                if v.const is not None and id(v) not in seen:
                    seen.add(id(v))
                    out.append(v)
        return out

    def __str__(self):
        return format_graph(self)

    def to_dot(self):
        lines = [f"digraph {self.name} {{", '  node [fontname="Helvetica", fontsize=10];']
        for v in self.inputs:
            lines.append(f'  v{v.id} [label="{_vname(v)}\\n{v.aval}", shape=ellipse, style=filled, fillcolor=lightblue];')
        for i, node in enumerate(self.nodes):
            lines.append(f'  n{i} [label="{node.op.name}", shape=box];')
            for v in node.inputs:
                src = f"v{v.id}"
                if v.producer is not None:
                    src = f"n{self.nodes.index(v.producer)}"
                elif v.const is not None:
                    lines.append(f'  v{v.id} [label="const {v.aval}", shape=note];')
                lines.append(f"  {src} -> n{i};")
        for k, v in enumerate(self.outputs):
            lines.append(f'  o{k} [label="out {k}\\n{v.aval}", shape=ellipse, style=filled, fillcolor=darkolivegreen1];')
            src = f"n{self.nodes.index(v.producer)}" if v.producer is not None else f"v{v.id}"
            lines.append(f"  {src} -> o{k};")
        lines.append("}")
        return "\n".join(lines)


def _vname(v):
    return f"%{v.name}" if v.name else f"%{v.id}"


def _fmt_attr(v):
    if isinstance(v, float):
        return repr(v)
    if hasattr(v, "name") and not isinstance(v, (str, tuple)):
        return str(v)
    return repr(v)


def format_graph(graph, indent=""):
    """Stable text: values renumbered in order of appearance."""
    names = {}

    def name(v):
        if v.const is not None:
            arr = v.const
            if getattr(arr, "size", 2) == 1:
                return f"{arr.reshape(()).item()!r}:{v.aval}"
            return f"const:{v.aval}"
        if id(v) not in names:
            names[id(v)] = v.name if v.name else str(len([k for k in names]))
        return "%" + names[id(v)]

    for v in graph.inputs:
        name(v)
    head = ", ".join(f"{name(v)}: {v.aval}" for v in graph.inputs)
    lines = [f"{indent}{graph.name}({head}) {{"]
    for node in graph.nodes:
        outs = ", ".join(f"{name(o)}: {o.aval}" for o in node.outputs)
        args = ", ".join(name(v) for v in node.inputs)
        attrs = ", ".join(f"{k}={_fmt_attr(v)}" for k, v in node.attrs.items())
        line = f"{indent}  {outs} = {node.op.name}({args}{', ' if args and attrs else ''}{attrs})"
        if node.source:
            line = f"{line:<60}  # {node.source}"
        lines.append(line)
        for key, sub in node.subgraphs.items():
            lines.append(f"{indent}    {key}:")
            lines.append(format_graph(sub, indent + "    "))
    lines.append(f"{indent}  return ({', '.join(name(v) for v in graph.outputs)})")
    lines.append(f"{indent}}}")
    return "\n".join(lines)
