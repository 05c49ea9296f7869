"""The graph IR: Values (shape/dtype, possibly symbolic dims) and Nodes naming ops of the op table.

A Graph lists its inputs, its nodes in topological order and its outputs. Constants are Values
holding an array (`value.const`); a Python scalar operand (`x * 2.0`) is a constant Value with
`weak=True` whose `const` is the Python number itself: it promotes like a Python scalar (NEP 50,
`f32 * 2.0 -> f32`), so a lowering must cast it to the other operand's dtype. A `None` operand is
kept as `None` in `node.inputs`. Control-flow nodes (cond/while) carry subgraphs in `node.subgraphs`;
a subgraph's inputs are, in order, the node's operands (see dualgraph.ops.control).
`str(graph)` is a small, stable textual form, in the spirit of a jaxpr:

    graph(%x: f32[B,3], %w: f32[3,4]) {
      %0: f32[B,4] = matmul(%x, %w)            # model.py:12
      %1: f32[B,4] = relu(%0)
      return (%1)
    }

Symbolic dims print by name (`B`, `d0`); `graph.meta` holds facts about the whole graph (the device it
runs on, which inputs its written-back outputs may be computed into, cached executables),
`graph.frozen` what the trace baked in.
"""
import itertools
import os

import numpy as np

from .avals import Aval


class Value:
    __slots__ = ("id", "aval", "producer", "name", "const", "weak", "__weakref__")
    _ids = itertools.count()

    def __init__(self, aval, producer=None, name=None, const=None, weak=False):
        self.id = next(Value._ids)
        self.aval, self.producer, self.name, self.const, self.weak = aval, producer, name, const, weak

    @property
    def shape(self):
        return self.aval.shape

    @property
    def dtype(self):
        return self.aval.dtype

    @property
    def is_const(self):
        return self.const is not None

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
        self.meta = {}      # device, donations, cached executables ("_"-prefixed, not copied)
        self.frozen = []    # FrozenValue records: what tracing baked in, with the user's file:line

    # ---- building --------------------------------------------------------------------------
    def add_input(self, aval, name=None):
        v = Value(aval, name=name)
        self.inputs.append(v)
        return v

    def add_const(self, array, name=None):
        return Value(Aval(array.shape, array.dtype), const=array, name=name)

    def add_scalar(self, x):
        """A Python scalar operand (weakly typed)."""
        return Value(Aval((), np.result_type(x)), const=x, weak=True)

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
                if v is not None and v.const is not None and id(v) not in seen:
                    seen.add(id(v))
                    out.append(v)
        return out

    def users(self):
        """id(value) -> list of nodes reading it (subgraph reads are reads of the node's operands)."""
        out = {}
        for node in self.nodes:
            for v in node.inputs:
                if v is not None:
                    out.setdefault(id(v), []).append(node)
        return out

    def last_uses(self, at=None):
        """id(value) -> position of the last node reading it: where the value dies (the graph's
        outputs live on past the end; callers keep them). Constants are included. `at` maps id(node)
        to the position a node really runs at, for nodes computed together with a later one."""
        out = {}
        for k, node in enumerate(self.nodes):
            if at is not None:
                k = at.get(id(node), k)
            for v in node.inputs:
                if v is not None and out.get(id(v), -1) < k:
                    out[id(v)] = k
        return out

    def copy(self):
        """A structural copy sharing Values' avals/consts but with fresh Value and Node objects."""
        g = Graph(self.name)
        # cached executables/kernels ("_"-prefixed) belong to the original's Values: not copied
        g.meta = {k: v for k, v in self.meta.items() if not k.startswith("_")}
        g.frozen = list(self.frozen)
        m = {}
        for v in self.inputs:
            nv = g.add_input(v.aval, v.name)
            m[id(v)] = nv

        def get(v):
            if v is None:
                return None
            if id(v) in m:
                return m[id(v)]
            if v.const is not None:
                return v  # constants are immutable and shared
            raise KeyError(f"value {v} used before it is defined")
        for node in self.nodes:
            n = g.add_node(node.op, [get(v) for v in node.inputs], node.attrs, [o.aval for o in node.outputs],
                           node.source, {k: s.copy() for k, s in node.subgraphs.items()})
            for o, no in zip(node.outputs, n.outputs):
                no.name = o.name
                m[id(o)] = no
        g.outputs = [get(v) for v in self.outputs]
        return g

    def __str__(self):
        return format_graph(self)

    def to_dot(self):
        lines = [f"digraph \"{self.name}\" {{", '  node [fontname="Helvetica", fontsize=10];']
        index = {id(n): i for i, n in enumerate(self.nodes)}
        for v in self.inputs:
            lines.append(f'  v{v.id} [label="{_vname(v)}\\n{v.aval}", shape=ellipse, style=filled, fillcolor=lightblue];')
        for i, node in enumerate(self.nodes):
            label = node.op.name
            if node.subgraphs:  # control flow / fused kernels: name their subgraphs and sizes
                label += "\\n" + ", ".join(f"{k}: {len(g.nodes)} nodes" for k, g in node.subgraphs.items())
            lines.append(f'  n{i} [label="{label}", shape=box];')
            for v in node.inputs:
                if v is None:
                    continue
                src = f"v{v.id}"
                if v.producer is not None:
                    src = f"n{index[id(v.producer)]}"
                elif v.const is not None:
                    label = repr(v.const) if v.weak else f"const {v.aval}"
                    lines.append(f'  v{v.id} [label="{label}", shape=note];')
                lines.append(f"  {src} -> n{i};")
        for k, v in enumerate(self.outputs):
            lines.append(f'  o{k} [label="out {k}\\n{v.aval}", shape=ellipse, style=filled, fillcolor=darkolivegreen1];')
            src = f"n{index[id(v.producer)]}" if v.producer is not None else f"v{v.id}"
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


def _short_source(src):
    path, _, line = src.rpartition(":")
    return f"{os.path.basename(path)}:{line}" if path else src


def format_graph(graph, indent="", sources=True):
    """Stable text: values renumbered in order of appearance."""
    names = {}

    def name(v):
        if v is None:
            return "None"
        if v.const is not None:
            if v.weak:
                return repr(v.const)
            arr = v.const
            if getattr(arr, "size", 2) == 1:
                return f"{arr.reshape(()).item()!r}:{v.aval}"
            return f"const:{v.aval}"
        if id(v) not in names:
            names[id(v)] = v.name if v.name else str(len(names))
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
        if node.source and sources:
            line = f"{line:<60}  # {_short_source(node.source)}"
        lines.append(line)
        for key, sub in node.subgraphs.items():
            lines.append(f"{indent}    {key}:")
            lines.append(format_graph(sub, indent + "    ", sources))
    lines.append(f"{indent}  return ({', '.join(name(v) for v in graph.outputs)})")
    lines.append(f"{indent}}}")
    if graph.frozen and not indent:
        lines.append("frozen at trace time:")
        lines.extend(f"  {f}" for f in graph.frozen)
    return "\n".join(lines)
