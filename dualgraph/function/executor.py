"""Run an optimized graph with little per-node Python overhead.

`compile_graph(graph, xp)` (an `Executable`) generates one Python function for the whole graph: a
straight line of calls, one per node, on local variables (no dict lookups, no interpretation loop),
dropping each intermediate (`del`) after its last use (`Graph.last_uses`), so memory is freed as early
as the reference interpreter frees it. What a node's line calls comes from its op record alone:

    op.ufunc          `xp.<ufunc>(a, b)` when every tensor operand has the result's dtype (or the
                      result is bool), so the call is exactly the forward without its checks
    op.kernel         a callable made once for the node with its attributes bound (fused kernels, C
                      loops, reductions straight to numpy's ufunc.reduce)
    op.forward        `forward(xp, *operands, **attrs)` otherwise

Which kernels run was decided before, by the passes (`fuse`, `lower_kernels`), so it shows in the
printed graph. A written-back output computed from a donated input (graph.meta["donate"]) goes into
that input's buffer when its call takes `out=`: an elementwise ufunc, or a kernel whose record says
`writes_out`. Symbolic dims are read from the input shapes once per call and substituted into
attributes that mention them (reshape targets).

`interpret(graph, arrays, xp)` is the reference interpreter (node by node with op.forward, freeing
values after their last use): the oracle the compiled path is tested against.
"""
import itertools
import linecache

import numpy as np

from ..dtypes import numpy_agrees
from ..errors import DualgraphError, ShapeError
from ..graph.avals import Dim
from ..ops.dims import SymbolicDim

_counter = itertools.count()
_BOOL = np.dtype(np.bool_)


def _ufunc_exact(node):
    """The record's ufunc called on these operands is the forward: every operand is there, tensors have
    one dtype that Python numbers do not promote (numpy would compute in another), and that dtype is the
    result's (int / int is a float) or the result is bool (comparisons)."""
    ins = node.inputs
    if any(v is None for v in ins):
        return False
    if not numpy_agrees(*[v.const if v.weak else v.aval for v in ins]):
        return False
    dt = next(v.aval.dtype for v in ins if not v.weak)
    out = node.outputs[0].aval.dtype
    return out == dt or out == _BOOL


class GraphRuntimeError(DualgraphError, RuntimeError):
    pass


def _contains_dim(x):
    if isinstance(x, Dim):
        return True
    if isinstance(x, (tuple, list)):
        return any(_contains_dim(i) for i in x)
    if isinstance(x, slice):
        return any(_contains_dim(i) for i in (x.start, x.stop, x.step))
    return False


class _Gen:
    def __init__(self, graph, xp):
        self.graph, self.xp = graph, xp
        self.glob = {"xp": xp, "np": np}
        self.names = {}
        self.dims = {}
        self.lines = []
        self.line_node = {}

    def const(self, obj, prefix="C"):
        name = f"{prefix}{len(self.glob)}"
        self.glob[name] = obj
        return name

    def ref(self, v):
        if v is None:
            return "None"
        if v.weak:
            c = v.const
            if isinstance(c, bool) or (isinstance(c, (int, float)) and np.isfinite(c)):
                return repr(c)
            return self.const(c)
        if v.const is not None:
            n = self.names.get(id(v))
            if n is None:
                c = v.const
                if self.xp is not np and isinstance(c, np.ndarray):
                    c = self.xp.asarray(c)  # folded on the host, used on the device
                n = self.names[id(v)] = self.const(c)
            return n
        return self.names[id(v)]

    def render(self, x):
        """Code for an attribute value, substituting symbolic dims."""
        if isinstance(x, SymbolicDim):
            return x.code(lambda d: self.dims[d])
        if isinstance(x, Dim):
            return self.dims[x]
        if isinstance(x, tuple):
            return "(" + "".join(self.render(i) + ", " for i in x) + ")"
        if isinstance(x, list):
            return "[" + ", ".join(self.render(i) for i in x) + "]"
        if isinstance(x, slice):
            return f"slice({self.render(x.start)}, {self.render(x.stop)}, {self.render(x.step)})"
        if x is None or isinstance(x, (bool, int, str)) or (isinstance(x, float) and np.isfinite(x)):
            return repr(x)
        return self.const(x, "A")

    def build(self):
        g = self.graph
        args = []
        for i, v in enumerate(g.inputs):
            n = f"i{i}"
            self.names[id(v)] = n
            args.append(n)
        body = []
        for i, v in enumerate(g.inputs):
            for ax, d in enumerate(v.aval.shape):
                if isinstance(d, Dim) and not hasattr(d, "op") and d not in self.dims:
                    self.dims[d] = f"d{len(self.dims)}"
                    body.append(f"    {self.dims[d]} = i{i}.shape[{ax}]")
        self.keep = {id(v) for v in g.outputs} | {id(v) for v in g.inputs}
        self.donated = self._donations(g)
        self.last = g.last_uses()
        tmp = itertools.count()
        for k, node in enumerate(g.nodes):
            outs = []
            for o in node.outputs:
                n = f"v{next(tmp)}"
                self.names[id(o)] = n
                outs.append(n)
            ins = [self.ref(v) for v in node.inputs]
            lhs = outs[0] if len(outs) == 1 and node.op.n_out == 1 else "(" + "".join(o + ", " for o in outs) + ")"
            call = self.call(node, ins)
            body.append(f"    {lhs} = {call}")
            self.line_node[len(body) + 1] = node  # +1: the def line
            # a dim a shape rule made up (pad's 'd0+1', reshape(-1)'s 'd0*d1') is read from the first
            # value that has it, so later attributes (a reshape target) can use it
            for o, n in zip(node.outputs, outs):
                for ax, d in enumerate(getattr(o.aval, "shape", ())):
                    if isinstance(d, Dim) and not isinstance(d, SymbolicDim) and d not in self.dims:
                        self.dims[d] = f"d{len(self.dims)}"
                        body.append(f"    {self.dims[d]} = {n}.shape[{ax}]")
            self._free(body, k, node.inputs, node.outputs)
        # a constant output is copied: the caller owns what it gets, and writing into it in place must
        # not change what the next call returns
        rets = [f"{self.ref(v)}.copy()" if v.const is not None and not v.weak
                else self.ref(v) if v.aval.ndim else f"xp.asarray({self.ref(v)})" for v in g.outputs]
        body.append(f"    return ({''.join(r + ', ' for r in rets)})")
        body = ["    try:"] + ["    " + ln for ln in body] + ["    except _DGError as _e:",
                                                                 "        raise _locate(_e) from _e.__cause__",
                                                                 "    except Exception as _e:",
                                                                 "        raise _explain(_e) from _e"]
        self.line_node = {k + 1: n for k, n in self.line_node.items()}
        self.glob["_DGError"] = DualgraphError
        self.glob["_explain"] = lambda exc: self.executable._explain(exc)
        self.glob["_locate"] = lambda exc: self.executable._locate(exc)
        src = f"def run({', '.join(args)}):\n" + "\n".join(body) + "\n"
        fname = f"<dg-graph-{next(_counter)}>"
        linecache.cache[fname] = (len(src), None, src.splitlines(True), fname)
        exec(compile(src, fname, "exec"), self.glob)
        return self.glob["run"], src, fname

    def _free(self, body, k, inputs, outputs=()):
        """`del` the inputs whose last use is node k and the outputs nothing reads, so memory is freed
        as early as the reference interpreter frees it."""
        dead = [self.names[id(v)] for v in dict.fromkeys(v for v in inputs if v is not None)
                if v.const is None and self.last.get(id(v)) == k and id(v) not in self.keep]
        dead += [self.names[id(o)] for o in outputs if id(o) not in self.last and id(o) not in self.keep]
        if dead:
            body.append(f"    del {', '.join(dead)}")

    def _donations(self, g):
        """id(output value) -> input name, for written-back state computed into its own buffer.

        Safe when every reader of the old value (and of views of it) runs no later than the producer,
        and neither the old value nor a view of it is returned."""
        donate = g.meta.get("donate") or {}
        if not donate:
            return {}
        index = {id(n): k for k, n in enumerate(g.nodes)}
        users = g.users()
        outs = {id(v) for v in g.outputs}
        result = {}
        for k, i in donate.items():
            out = g.outputs[k]
            prod = out.producer
            if prod is None or id(prod) not in index or sum(1 for v in g.outputs if v is out) != 1:
                continue
            at = index[id(prod)]
            alias, stack, ok = set(), [g.inputs[i]], True
            while stack and ok:
                v = stack.pop()
                if id(v) in alias:
                    continue
                alias.add(id(v))
                if id(v) in outs:
                    ok = False
                for u in users.get(id(v), ()):
                    if index[id(u)] > at:
                        ok = False
                    if u.op.view:
                        stack.extend(u.outputs)
            if ok:
                result[id(out)] = f"i{i}"
        return result

    def call(self, node, ins):
        op = node.op
        dest = self.donated.get(id(node.outputs[0])) if len(node.outputs) == 1 else None
        if op.ufunc and not node.attrs and _ufunc_exact(node):
            into = f", out={dest}" if dest is not None and op.elementwise else ""
            return f"xp.{op.ufunc}({', '.join(ins)}{into})"
        if op.kernel is not None:
            kernel = op.kernel(node, self.xp)
            if kernel is not None:
                into = f", out={dest}" if dest is not None and op.writes_out else ""
                return f"{self.const(kernel, 'K')}({', '.join(ins)}{into})"
        fwd = self.const(op.forward, "F")
        if node.subgraphs:
            sub = self.const(node.subgraphs, "S")
            return f"{fwd}(xp, {', '.join(ins)}{', ' if ins else ''}subgraphs={sub})"
        kw = "".join(f", {k}={self.render(v)}" for k, v in node.attrs.items())
        return f"{fwd}(xp{''.join(', ' + i for i in ins)}{kw})"


class Executable:
    """A compiled graph: call with arrays, get a tuple of arrays."""

    def __init__(self, graph, xp=np):
        self.graph = graph
        gen = _Gen(graph, xp)
        gen.executable = self
        self.run, self.source, self.filename = gen.build()
        self._line_node = gen.line_node

    def __call__(self, *arrays):
        return self.run(*arrays)

    def _node_of(self, exc):
        tb = exc.__traceback__
        node = None
        while tb is not None:
            if tb.tb_frame.f_code.co_filename == self.filename:
                node = self._line_node.get(tb.tb_lineno)
            tb = tb.tb_next
        return node

    def _locate(self, exc):
        """A dualgraph error raised by a node's forward on this call's data (a class index out of
        range): the same error, with the user's line that traced the node."""
        node = self._node_of(exc)
        if node is None or not node.source or node.source in str(exc):
            return exc
        try:
            return type(exc)(f"{exc} (traced at {node.source})")
        except Exception:  # an error class with another constructor: as it was
            return exc

    def _explain(self, exc):
        node = self._node_of(exc)
        if node is None:
            return GraphRuntimeError(f"running the compiled graph failed: {type(exc).__name__}: {exc}")
        where = f" (traced at {node.source})" if node.source else ""
        cls = ShapeError if isinstance(exc, ValueError) else GraphRuntimeError
        return cls(f"{node.op.name} failed while running the compiled graph{where}: {type(exc).__name__}: {exc}")


_SUB_CACHE = {}


def compiled_subgraph(graph, xp=np):
    """The Executable of a control-flow subgraph (cached on the graph object)."""
    ex = graph.meta.get("_exec")
    if ex is None:
        ex = graph.meta["_exec"] = Executable(graph, xp)
    return ex


def compile_graph(graph, xp=np):
    return Executable(graph, xp)


def interpret(graph, arrays, xp=np, on_node=None):
    """Reference interpreter: run node by node with op.forward, freeing values after their last use.
    `on_node(node, outputs)`, when given, sees each node's outputs as they are computed."""
    env = {id(v): a for v, a in zip(graph.inputs, arrays)}
    sizes = {}
    for v, a in zip(graph.inputs, arrays):
        for d, n in zip(v.aval.shape, a.shape):
            if isinstance(d, Dim):
                sizes.setdefault(d, n)
    last = graph.last_uses()
    outs_ids = {id(v) for v in graph.outputs}

    def get(v):
        if v is None:
            return None
        if v.const is not None:
            return v.const
        return env[id(v)]
    for k, node in enumerate(graph.nodes):
        ins = [get(v) for v in node.inputs]
        if node.op.extra.get("subgraphs"):
            out = node.op.forward(xp, *ins, subgraphs=node.subgraphs, **node.attrs)
        else:
            out = node.op.forward(xp, *ins, **_resolve_attrs(node.attrs, sizes))
        outs = out if node.op.n_out != 1 else (out,)
        for v, a in zip(node.outputs, outs):
            env[id(v)] = a if hasattr(a, "shape") else xp.asarray(a)
            for d, n in zip(v.aval.shape, env[id(v)].shape):
                if isinstance(d, Dim):
                    sizes.setdefault(d, n)
        if on_node is not None:
            on_node(node, [env[id(v)] for v in node.outputs])
        for v in node.inputs:
            if v is not None and last.get(id(v)) == k and id(v) not in outs_ids:
                env.pop(id(v), None)
    return tuple(get(v) for v in graph.outputs)


def _resolve_attrs(attrs, sizes):
    if not any(_contains_dim(v) for v in attrs.values()):
        return attrs

    def sub(x):
        if isinstance(x, SymbolicDim):
            return x.evaluate(sizes)
        if isinstance(x, Dim):
            return sizes[x]
        if isinstance(x, tuple):
            return tuple(sub(i) for i in x)
        if isinstance(x, list):
            return [sub(i) for i in x]
        if isinstance(x, slice):
            return slice(sub(x.start), sub(x.stop), sub(x.step))
        return x
    return {k: sub(v) for k, v in attrs.items()}
