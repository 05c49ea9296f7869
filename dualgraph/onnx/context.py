"""The lowering context: what an op's ONNX lowering (`op.onnx`, see ops/onnx_rules.py) sees while the
exporter walks a graph.

A lowering is `rule(ctx, node, *names) -> name or tuple of names`: `names` are the ONNX names of the
node's inputs (Python scalars among the inputs stay Python scalars), and the rule returns the
ONNX names holding the node's outputs. It emits ONNX nodes through `ctx.emit`, constants through
`ctx.const`, and builds run-time shapes through `ctx.shape_tensor` (symbolic dims become
Shape/Gather/Mul arithmetic on a value that carries them, never frozen constants).
"""
import numpy as np

import onnx
from onnx import helper

from ..backend import to_host
from ..errors import DualgraphError
from ..graph.avals import Dim
from ..ops.dims import DimExpr, key
from ..ops.onnx_rules import NotExportable, is_sym


def _nonneg(d):
    """Is the size expression `d` known to be >= 0 (sizes, numbers >= 0, and + * // % of them)?"""
    if isinstance(d, (int, np.integer)):
        return d >= 0
    if isinstance(d, DimExpr):
        return d.op in ("+", "*", "//", "%") and all(_nonneg(x) for x in d.args)
    return isinstance(d, Dim)


def onnx_dtype(dt):
    return helper.np_dtype_to_tensor_dtype(np.dtype(dt))


def dim_param(d, names):
    """The ONNX dim_param of a symbolic dim: the name dynamic_axes gave it, else its own; a size
    expression spelled with those names."""
    if isinstance(d, DimExpr):
        return d.code(lambda leaf: names.get(leaf, leaf.name)).replace(" ", "")
    return names.get(d, d.name)


def value_info(name, dtype, shape, names=None):
    """The ONNX ValueInfo of a tensor: symbolic dims by name, None or negative dims unknown."""
    dims = []
    for d in shape:
        if is_sym(d):
            dims.append(dim_param(d, names or {}))
        elif d is None or (isinstance(d, int) and d < 0):
            dims.append(None)
        else:
            dims.append(int(d))
    return helper.make_tensor_value_info(name, onnx_dtype(dtype), dims)


class LoweringContext:
    """Collects the ONNX nodes and initializers of one (sub)graph."""

    def __init__(self, opset, root=None, names=None, dim_sources=None, native_ops=True, lower=None):
        self.opset = opset
        self.lower = root.lower if root is not None else lower   # lower(ctx, graph, problems): the exporter's walk
        self.native_ops = root.native_ops if root is not None else native_ops   # Conv/AveragePool/... for float32
        self.root = root or self
        self.nodes = []
        self.names = {} if names is None else names          # id(Value) -> ONNX name
        self.dim_sources = {} if dim_sources is None else dim_sources  # Dim -> (ONNX name, axis)
        if root is not None:
            self.dim_names = root.dim_names
        if root is None:
            self.initializers = []
            self._used = set()
            self._const_cache = {}
            self.emitted = {}   # op name -> ONNX op types its lowering emitted (for the docs)
            self.dim_names = {}  # Dim -> dim_param name (from dynamic_axes)
        self._dim_cache = {}
        self._shape_cache = {}

    # ---- names -------------------------------------------------------------------------
    def fresh(self, hint="t"):
        root = self.root
        base = "".join(c if c.isalnum() or c in "_./:" else "_" for c in str(hint)) or "t"
        name, k = base, 0
        while name in root._used:
            k += 1
            name = f"{base}_{k}"
        root._used.add(name)
        return name

    def reserve(self, name):
        if name in self.root._used:
            raise DualgraphError(f"onnx export: the name {name!r} is used twice")
        self.root._used.add(name)
        return name

    # ---- emitting -----------------------------------------------------------------------
    def emit(self, op_type, inputs, n_out=1, hint=None, outputs=None, **attrs):
        """Append one ONNX node; returns its output name (or a list when n_out > 1)."""
        if outputs is None:
            base = hint or op_type.lower()
            outputs = [self.fresh(base) for _ in range(n_out)]
        attrs = {k: v for k, v in attrs.items() if v is not None}
        node = helper.make_node(op_type, [i if i is not None else "" for i in inputs], outputs,
                                name=self.fresh("n_" + op_type), **attrs)
        self.nodes.append(node)
        return outputs[0] if len(outputs) == 1 and n_out == 1 else list(outputs)

    def const(self, value, dtype=None, hint="const"):
        """An initializer holding `value` (deduplicated for small constants)."""
        arr = np.asarray(value, dtype=dtype)
        root = self.root
        key = None
        if arr.size <= 16:
            key = (arr.dtype.str, arr.shape, arr.tobytes())
            if key in root._const_cache:
                return root._const_cache[key]
        name = self.fresh(hint)
        root.initializers.append(onnx.numpy_helper.from_array(arr, name))
        if key is not None:
            root._const_cache[key] = name
        return name

    def i64(self, values):
        return self.const(np.asarray(values, dtype=np.int64), hint="i64")

    # ---- values ---------------------------------------------------------------------------
    def cast(self, name, src_dtype, dst_dtype):
        if np.dtype(src_dtype) == np.dtype(dst_dtype):
            return name
        return self.emit("Cast", [name], to=onnx_dtype(dst_dtype))

    def arg(self, x, name, dtype):
        """The ONNX name of input `x` (a Value with ONNX name `name`, or a Python scalar) as `dtype`."""
        if not isinstance(name, str):   # a weak Python scalar (or a bare number)
            value = x.const if getattr(x, "weak", False) else (name if name is not None else x)
            return self.const(np.asarray(value, dtype=dtype), hint="scalar")
        return self.cast(name, x.aval.dtype, dtype)

    @staticmethod
    def onnx_dtype(dt):
        """The ONNX element type (TensorProto enum) of numpy dtype `dt`, for Cast's `to` and friends."""
        return onnx_dtype(dt)

    def name_of(self, v):
        """The ONNX name of IR value `v`: lowered already, or a constant (made on first use)."""
        if id(v) not in self.names:
            if v.const is None:
                raise DualgraphError(f"onnx export: {v} is used before it is defined")
            c = v.const
            self.names[id(v)] = self.const(c if isinstance(c, np.ndarray) else to_host(c), hint=v.name or "const")
        return self.names[id(v)]

    def shape(self, v):
        """The shape of IR value `v`, symbolic dims included."""
        return tuple(v.aval.shape)

    def attrs(self, node):
        return node.attrs

    def shape_of(self, name):
        """Shape(name), emitted once per name."""
        if name not in self._shape_cache:
            self._shape_cache[name] = self.emit("Shape", [name], hint=f"{name}_shape")
        return self._shape_cache[name]

    def dim(self, d):
        """A [1] int64 tensor holding dim `d` at run time (an int, a Dim or a size expression)."""
        if not is_sym(d):
            return self.i64([int(d)])
        k = key(d)
        if k in self._dim_cache:
            return self._dim_cache[k]
        if isinstance(d, DimExpr):   # (d0 * 3), (d0 // 2), (B * T) // 4
            a, b = (self.dim(x) if is_sym(x) else self.i64([int(x)]) for x in d.args)
            kind = {"+": "Add", "-": "Sub", "*": "Mul", "//": "Div", "%": "Mod"}.get(d.op)
            if kind is None:
                raise NotExportable(f"the size expression {d} is not an integer")
            if d.op == "//" and not (_nonneg(d.args[0]) and _nonneg(d.args[1])):
                # ONNX Div truncates; Python's // floors (ceil written as -(-a // b) divides a negative):
                # a - a % b (Mod takes the divisor's sign, as Python) is an exact multiple of b
                a = self.emit("Sub", [a, self.emit("Mod", [a, b])])
            out = self.emit(kind, [a, b])
        else:
            src = self.dim_sources.get(d)
            if src is None:
                raise NotExportable(f"the symbolic dim {d} does not appear in any graph input's shape, so the "
                                    f"exported model cannot compute it")
            name, axis = src
            out = self.emit("Gather", [self.shape_of(name), self.i64([axis])], axis=0, hint=f"dim_{d.name}")
        self._dim_cache[k] = out
        return out

    def shape_tensor(self, dims):
        """A 1-D int64 tensor holding `dims`: constants where static, shape arithmetic where symbolic."""
        dims = tuple(dims)
        if not any(is_sym(d) for d in dims):
            return self.i64([int(d) for d in dims])
        pieces, run = [], []
        for d in dims:
            if is_sym(d):
                if run:
                    pieces.append(self.i64(run))
                    run = []
                pieces.append(self.dim(d))
            else:
                run.append(int(d))
        if run:
            pieces.append(self.i64(run))
        return pieces[0] if len(pieces) == 1 else self.emit("Concat", pieces, axis=0, hint="shape")

    def sub(self):
        """A context for a subgraph body: own node list; constants and names shared with the root."""
        return LoweringContext(self.opset, root=self.root, names=self.names, dim_sources=self.dim_sources)

    # ---- subgraphs: If/Loop bodies, and chains lowered inline -----------------------------------------
    def lower_body(self, graph, bindings, problems):
        """A sub-context holding the nodes of `graph` with its inputs bound to the ONNX names `bindings`
        (ONNX bodies read outer values by name); nodes that cannot be lowered go into `problems`."""
        sub = self.sub()
        for v, name in zip(graph.inputs, bindings):
            sub.names[id(v)] = name
        self.lower(sub, graph, problems)
        return sub

    def output_names(self, graph):
        """The ONNX names of `graph`'s outputs as lowered into this context (constants made here)."""
        return [self.names[id(v)] if not getattr(v, "weak", False) and id(v) in self.names
                else self.const(np.asarray(v.const, dtype=v.aval.dtype)) for v in graph.outputs]

    def produced(self, names, hint):
        """`names`, each made the output of a node of this context (an Identity where it is not, or where a
        name repeats): the outputs of an ONNX body must be."""
        made = {o for n in self.nodes for o in n.output}
        outs = []
        for name in names:
            if name not in made or name in outs:
                name = self.emit("Identity", [name], hint=hint)
            outs.append(name)
        return outs

    def inline(self, graph, bindings):
        """Lower `graph` into this context with its inputs bound to `bindings`; its output names."""
        problems = []
        sub = self.lower_body(graph, bindings, problems)
        self.refuse(problems)
        self.nodes.extend(sub.nodes)
        return sub.output_names(graph)

    def value_info(self, name, dtype, shape):
        return value_info(name, dtype, shape, self.root.dim_names)

    def graph_proto(self, nodes, hint, inputs, outputs):
        """An ONNX GraphProto (a branch or loop body) named after `hint`."""
        return helper.make_graph(nodes, self.fresh(hint), inputs, outputs)

    @staticmethod
    def refuse(problems):
        """NotExportable listing `problems` ([(op, source, reason)] from lower_body), if any."""
        if problems:
            raise NotExportable("; ".join(f"{n} at {s}: {r}" for n, s, r in problems))

    # ---- opset-dependent helpers ------------------------------------------------------------
    def reduce(self, op_type, x, axes, keepdims, hint=None):
        """ReduceSum/Max/Min/Prod/...: axes is a tuple or None (all axes)."""
        if axes is not None and len(axes) == 0:
            return self.emit("Identity", [x])
        axes_as_input = self.opset >= (13 if op_type == "ReduceSum" else 18)
        if axes is None:
            return self.emit(op_type, [x], keepdims=int(keepdims), hint=hint)
        if axes_as_input:
            return self.emit(op_type, [x, self.i64(list(axes))], keepdims=int(keepdims), hint=hint)
        return self.emit(op_type, [x], axes=list(axes), keepdims=int(keepdims), hint=hint)

    def squeeze(self, x, axes):
        return self.emit("Squeeze", [x, self.i64(list(axes))])

    def unsqueeze(self, x, axes):
        return self.emit("Unsqueeze", [x, self.i64(list(axes))])

    def slice(self, x, starts, ends, axes, steps=None):
        ins = [x, self.shape_tensor(starts), self.shape_tensor(ends), self.i64(axes)]
        if steps is not None and any(s != 1 for s in steps):
            ins.append(self.i64(steps))
        return self.emit("Slice", ins)

    def require(self, opset, what):
        if self.opset < opset:
            raise NotExportable(f"{what} needs opset {opset} or newer, the export targets opset {self.opset}")
