"""Run an optimized graph with little per-node Python overhead.

`compile_graph(graph, xp)` generates one Python function for the whole graph: a straight line of
calls, one per node, on local variables (no dict lookups, no interpretation loop), dropping each
intermediate (`del`) after its last use so memory is freed as early as the reference interpreter
would. Hot ops call the backend directly (`xp.add(a, b)`, `a @ b`); the rest call the op record's
`forward`. Fused elementwise nodes call their generated kernel. Symbolic dims are read from the
input shapes once per call and substituted into attributes that mention them (reshape targets).

`interpret(graph, arrays)` is the reference interpreter (node by node, frees after last use): the
oracle the compiled path is tested against.
"""
import itertools
import linecache

import numpy as np

from ..dtypes import numpy_agrees
from ..errors import DualgraphError, ShapeError
from ..ops.infer import Dim
from ..ops.dims import SymbolicDim
from .where_zero import c_where_colsum, c_where_zero, is_where_zero, where_zero

_counter = itertools.count()

# ops whose forward is exactly one backend call: name -> code template over the args
_DIRECT = {
    "add": "xp.add({0}, {1})",
    "sub": "xp.subtract({0}, {1})",
    "mul": "xp.multiply({0}, {1})",
    "neg": "xp.negative({0})",
    "maximum": "xp.maximum({0}, {1})",
    "minimum": "xp.minimum({0}, {1})",
    "matmul": "xp.matmul({0}, {1})",
    "where": "xp.where({0}, {1}, {2})",
    "eq": "xp.equal({0}, {1})", "ne": "xp.not_equal({0}, {1})", "lt": "xp.less({0}, {1})",
    "le": "xp.less_equal({0}, {1})", "gt": "xp.greater({0}, {1})", "ge": "xp.greater_equal({0}, {1})",
}


def _numpy_agrees(node):
    """The direct numpy call computes in the dtype the op's forward would (operands of mixed dtypes go
    through the forward, which casts them by dualgraph's promotion rule)."""
    ins = node.inputs[1:] if node.op.name == "where" else node.inputs
    return numpy_agrees(*[v.const if v.weak else v.aval for v in ins if v is not None])


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
        if x is None or isinstance(x, (bool, int)) or (isinstance(x, float) and np.isfinite(x)):
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
        keep = {id(v) for v in g.outputs} | {id(v) for v in g.inputs}
        self.donated = self._donations(g)
        mt = self._matmul_transposes(g, keep)
        colsums = self._where_colsums(g)
        xent = self._xent_pairs(g)
        skip = {id(t) for t in mt.values()} | {id(s) for s in colsums.values()} | {id(p) for p in xent.values()}
        index = {id(n): k for k, n in enumerate(g.nodes)}
        at = {id(p): index[a] for a, p in list(colsums.items()) + list(xent.items())}
        last = self.last = {}
        self.keep = keep
        for k, node in enumerate(g.nodes):
            k = at.get(id(node), k)  # a node run together with another reads its inputs there
            for v in node.inputs:
                if v is not None and v.const is None:
                    last[id(v)] = max(k, last.get(id(v), -1))
        tmp = itertools.count()
        for k, node in enumerate(g.nodes):
            if id(node) in skip:
                continue  # computed by its matmul, its where or its cross-entropy partner (below)
            partner = xent.get(id(node))
            if partner is not None:
                self._emit_xent(body, node, partner, k, tmp)
                continue
            s_node = colsums.get(id(node))
            if s_node is not None:
                a, b = f"v{next(tmp)}", f"v{next(tmp)}"
                self.names[id(node.outputs[0])], self.names[id(s_node.outputs[0])] = a, b
                m, x = (self.ref(v) for v in node.inputs[:2])
                dt = node.outputs[0].aval.dtype
                self.glob[f"_where_colsum{dt.itemsize}"] = c_where_colsum(dt)
                body.append(f"    {a}, {b} = _where_colsum{dt.itemsize}({m}, {x})")
                self.line_node[len(body) + 1] = node
                self._free(body, k, node.inputs[:2], (node.outputs[0], s_node.outputs[0]))
                continue
            t_node = mt.get(id(node))
            if t_node is not None:
                # (a @ b).T written straight into a C-ordered result: BLAS runs in the traced (fast)
                # orientation and what follows (an optimizer update) reads contiguous memory
                o = t_node.outputs[0]
                n = f"v{next(tmp)}"
                self.names[id(o)] = n
                a, b = (self.ref(v) for v in node.inputs)
                dt = self.const(o.aval.dtype, "T")
                body.append(f"    {n} = xp.empty({self.render(tuple(o.aval.shape))}, {dt})")
                body.append(f"    xp.matmul({a}, {b}, out={n}.T)")
                self.line_node[len(body) + 1] = node
                self._free(body, k, node.inputs)
                continue
            outs = []
            for o in node.outputs:
                n = f"v{next(tmp)}"
                self.names[id(o)] = n
                outs.append(n)
            ins = [self.ref(v) for v in node.inputs]
            lhs = outs[0] if len(outs) == 1 and node.op.n_out == 1 else "(" + "".join(o + ", " for o in outs) + ")"
            call = self.call(node, ins)
            if id(node.outputs[0]) in self.donated and len(outs) == 1:
                lhs = outs[0]
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

    def _numpy_direct(self, node, ins):
        """Reductions and division on floats straight to the ufunc (skips numpy's Python wrappers)."""
        name, a = node.op.name, node.inputs
        out = node.outputs[0].aval
        floats = all(v is None or (v.weak and isinstance(v.const, float)) or (not v.weak and v.aval.dtype == out.dtype)
                     for v in a) and out.dtype.kind == "f"
        if not floats:
            return None
        if name in ("sum", "max", "min") and a[0].aval.dtype == out.dtype:
            if name != "sum" and any(d == 0 for d in a[0].aval.shape):
                return None  # the op's own forward says what is wrong with an empty reduction
            uf = {"sum": "add", "max": "maximum", "min": "minimum"}[name]
            return (f"np.{uf}.reduce({ins[0]}, axis={self.render(node.attrs['axes'])}, "
                    f"keepdims={node.attrs['keepdims']!r})")
        if name == "div" and not node.attrs:
            return f"np.true_divide({ins[0]}, {ins[1]})"
        return None

    def _xent_pairs(self, g):
        """{id(anchor): partner} for cross-entropy on 2-D logits run as one call each way (fused_xent):
        forward, log_softmax(z, 1) with an nll_loss of its output (run at the log_softmax); backward,
        log_softmax_grad(nll_loss_grad(g, lp, ...), lp, 1) whose nll_loss_grad feeds only it."""
        if self.xp is not np:
            return {}
        users = g.users()
        index = {id(n): k for k, n in enumerate(g.nodes)}
        outs = {id(v) for v in g.outputs}
        pairs = {}
        for node in g.nodes:
            name = node.op.name
            if name == "log_softmax" and node.attrs["axis"] == 1 and node.outputs[0].aval.ndim == 2:
                for u in users.get(id(node.outputs[0]), ()):
                    if (u.op.name == "nll_loss" and u.inputs[0] is node.outputs[0]
                            and all(v.producer is None or index.get(id(v.producer), -1) < index[id(node)]
                                    for v in u.inputs[1:])):
                        pairs[id(node)] = u
                        break
            elif name == "log_softmax_grad" and node.attrs["axis"] == 1 and node.outputs[0].aval.ndim == 2:
                gl, lp = node.inputs
                p = gl.producer
                if (p is not None and p.op.name == "nll_loss_grad" and p.inputs[1] is lp
                        and len(users.get(id(gl), ())) == 1 and id(gl) not in outs):
                    pairs[id(node)] = p
        return pairs

    def _free(self, body, k, inputs, outputs=()):
        """`del` the inputs whose last use is node k and the outputs nothing reads, so memory is freed
        as early as the reference interpreter frees it."""
        dead = [self.names[id(v)] for v in dict.fromkeys(v for v in inputs if v is not None)
                if v.const is None and self.last.get(id(v)) == k and id(v) not in self.keep]
        dead += [self.names[id(o)] for o in outputs if id(o) not in self.last and id(o) not in self.keep]
        if dead:
            body.append(f"    del {', '.join(dead)}")

    def _emit_xent(self, body, node, partner, k, tmp):
        from .fused_xent import log_softmax_nll, nll_log_softmax_grad
        a = partner.attrs
        if node.op.name == "log_softmax":
            outs = [(node.outputs[0], f"v{next(tmp)}"), (partner.outputs[0], f"v{next(tmp)}")]
            self.glob["_xent_fwd"] = log_softmax_nll
            z, t = self.ref(node.inputs[0]), self.ref(partner.inputs[1])
            w = self.ref(partner.inputs[2]) if len(partner.inputs) > 2 else "None"
            call = f"_xent_fwd({z}, {t}, {w}, {a['ignore_index']!r}, {a['reduction']!r})"
            line_for = partner   # a bad target is the loss's error
        else:
            outs = [(node.outputs[0], f"v{next(tmp)}")]
            self.glob["_xent_bwd"] = nll_log_softmax_grad
            gg, lp, t = (self.ref(v) for v in partner.inputs[:3])
            w = self.ref(partner.inputs[3]) if len(partner.inputs) > 3 else "None"
            call = f"_xent_bwd({gg}, {lp}, {t}, {w}, {a['ignore_index']!r}, {a['reduction']!r})"
            line_for = node
        for o, n in outs:
            self.names[id(o)] = n
        body.append(f"    {', '.join(n for _, n in outs)} = {call}")
        self.line_node[len(body) + 1] = line_for
        inner = {id(o) for o in partner.outputs}  # the backward pair's gradient between them never exists
        self._free(body, k, [v for v in list(node.inputs) + list(partner.inputs) if v is None or id(v) not in inner],
                   [o for o, _ in outs])

    def _where_colsums(self, g):
        """{id(where node): its column-sum node} for a 2-D float where(m, a, 0) whose result is also
        summed over axis 0 (ReLU backward and the bias gradient below it), when the C loop builds."""
        if self.xp is not np:
            return {}
        out = {}
        users = g.users()
        for node in g.nodes:
            if not is_where_zero(node):
                continue
            m, a = node.inputs[:2]
            av = a.aval
            if (av.ndim != 2 or m.aval.dtype != np.bool_ or tuple(m.aval.shape) != tuple(av.shape)
                    or c_where_colsum(av.dtype) is None):
                continue
            for u in users.get(id(node.outputs[0]), ()):
                if (u.op.name == "sum" and tuple(u.attrs.get("axes") or ()) == (0,) and not u.attrs.get("keepdims")
                        and u.outputs[0].aval.dtype == av.dtype):
                    out[id(node)] = u
                    break
        return out

    def _matmul_transposes(self, g, keep):
        """{id(matmul node): its transpose node} for 2-D (a @ b).T whose matmul result is used only there."""
        if self.xp is not np:
            return {}
        users = g.users()
        out = {}
        for node in g.nodes:
            if node.op.name != "transpose" or tuple(node.attrs["axes"]) != (1, 0):
                continue
            v = node.inputs[0]
            p = v.producer
            if (p is not None and p.op.name == "matmul" and len(users.get(id(v), ())) == 1 and id(v) not in keep
                    and all(u is not None and u.aval.ndim == 2 for u in p.inputs)
                    and v.aval.dtype.kind == "f" and len(p.outputs) == 1 and _numpy_agrees(p)):
                out[id(p)] = node
        # the transpose must be the very next use of the matmul's value: it is, since it is the only one;
        # but it must not need anything computed between them
        index = {id(n): k for k, n in enumerate(g.nodes)}
        return {m: t for m, t in out.items() if all(
            u is None or u.producer is None or index.get(id(u.producer), -1) < index[m]
            for u in t.inputs[1:])}

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
        if dest is not None:
            if op.name == "fused_elementwise":
                from .passes.fuse import kernel_for
                k = self.const(kernel_for(node, self.xp), "K")
                return f"{k}({', '.join(ins)}, out={dest})[0]"
            if op.name in ("add", "sub", "mul", "maximum", "minimum") and not node.attrs and _numpy_agrees(node):
                return _DIRECT[op.name].format(*ins)[:-1] + f", out={dest})"
        if node.subgraphs or op.name == "fused_elementwise":
            from .passes.fuse import kernel_for
            if op.name == "fused_elementwise":
                k = self.const(kernel_for(node, self.xp), "K")
                return f"{k}({', '.join(ins)})"
            sub = self.const(node.subgraphs, "S")
            fwd = self.const(op.forward, "F")
            return f"{fwd}(xp, {', '.join(ins)}{', ' if ins else ''}subgraphs={sub})"
        attrs = node.attrs
        out = node.outputs[0].aval
        if (op.name == "full_like" and all(isinstance(d, int) for d in out.shape)
                and int(np.prod(out.shape)) <= 64):
            # a small fixed-shape fill (backward's seed ones_like(loss)): a copy of an array made once
            # (the graph keeps the node, so the ONNX exporter still sees the shape's dependence)
            filled = self.xp.full(tuple(out.shape), attrs["value"], dtype=out.dtype)
            return f"{self.const(filled)}.copy()"
        if is_where_zero(node):
            m, a = node.inputs[:2]
            run = c_where_zero(a.aval.dtype) if self.xp is np else None
            if (run is not None and m.aval.dtype == np.bool_ and tuple(m.aval.shape) == tuple(a.aval.shape)
                    and a.aval.ndim):
                size = a.aval.dtype.itemsize
                self.glob[f"_where_zero{size}"] = run  # checks left: contiguity
                return f"_where_zero{size}({ins[0]}, {ins[1]})"
            self.glob["_where_zero"] = where_zero
            return f"_where_zero(xp, {ins[0]}, {ins[1]})"
        if op.name in _DIRECT and not attrs and all(i != "None" for i in ins) and _numpy_agrees(node):
            return _DIRECT[op.name].format(*ins)
        if self.xp is np:
            fast = self._numpy_direct(node, ins)
            if fast is not None:
                return fast
        if op.name == "transpose":
            return f"{ins[0]}.transpose({self.render(attrs['axes'])})"
        if op.name == "reshape":
            return f"{ins[0]}.reshape({self.render(attrs['shape'])})"
        fwd = self.const(op.forward, "F")
        kw = "".join(f", {k}={self.render(v)}" for k, v in attrs.items())
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
    last = {}
    for k, node in enumerate(graph.nodes):
        for v in node.inputs:
            if v is not None:
                last[id(v)] = k
    outs_ids = {id(v) for v in graph.outputs}

    def get(v):
        if v is None:
            return None
        if v.const is not None:
            return v.const
        return env[id(v)]
    for k, node in enumerate(graph.nodes):
        ins = [get(v) for v in node.inputs]
        if node.op.name == "fused_elementwise":
            from .passes.fuse import kernel_for
            out = kernel_for(node, xp)(*ins)
        elif node.op.extra.get("subgraphs"):
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
