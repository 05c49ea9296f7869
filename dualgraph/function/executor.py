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
that input's buffer when its call takes `out=`: an elementwise ufunc, or an elementwise kernel whose
record says `writes_out`, or, for a node whose every result is donated state (an optimizer step), a
`writes_out` kernel given a tuple of buffers. Symbolic dims are read from the input shapes once per
call and substituted into attributes that mention them (reshape targets).

The memory plan (`_Plan`, made when the graph is compiled) does the same for intermediates: a node
whose call takes `out=` (an elementwise ufunc or matmul called directly, a `writes_out` kernel) writes
into a buffer this call allocated and no longer needs (an operand dying at the node, or a dead result
of the same shape and dtype held for it) instead of allocating. It shows in the source as `out=<that
value's name>`; `Executable.saved_allocations` counts those lines. `Executable(graph, plan=False)`
compiles without it.

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


class _Plan:
    """The memory plan of one compiled graph: which node results are written (out=) into a buffer the
    call allocated itself and no longer needs, instead of a new allocation.

    A buffer is a value the call allocated fresh: the result of a ufunc called directly, of a fused
    elementwise kernel whose chain computes every result, or of a record marked `fresh`. Never a graph
    input or constant, nor anything a forward may return as its input or a view of it: the results of
    every other node are taken to alias all their operands (views and forwards that may hand back what
    they got), so a buffer is free only when it and everything that may alias it are dead, and never
    when one of those is a graph output (what the caller gets, residuals kept for a backward). A node
    that can write into a buffer (an elementwise ufunc or matmul called directly, a kernel whose record
    says `writes_out`) gets one of its result's shape and dtype: an operand that dies at the node
    (elementwise only, and only when no view of it is another operand), else, with `free_list`, the
    most recently freed dead buffer, held from its death while that does not raise the graph's peak
    memory estimate. The buffer and the result the call would allocate must both be C-ordered, so the
    same loops run and the values are those of the unplanned call to the bit: proved from the operands
    where the graph says so, else checked on the arrays as the line runs (`checks`), which then
    allocates as before.

        dest      id(node) -> the Value whose buffer its result is written into
        checks    id(node) -> Values whose C order that line checks first
        hold      ids of values not dropped at their death (a later node writes into them)
        release   node index -> values dropped after that node (the buffers it wrote into)
    """

    @classmethod
    def empty(cls):
        p = cls.__new__(cls)
        p.dest, p.checks, p.hold, p.release = {}, {}, set(), {}
        return p

    def __init__(self, graph, kinds, last, donated, free_list=True):
        self.dest, self.checks, self.hold, self.release = {}, {}, set(), {}
        g = graph
        nodes = g.nodes
        born = {}                 # id(value) -> index of its node
        parent = {}               # union-find over alias groups

        def find(x):
            while parent.get(x, x) != x:
                x = parent[x]
            return x

        def union(a, b):
            ra, rb = find(a), find(b)
            if ra != rb:
                parent[ra] = rb

        fresh = set()             # ids of buffers the call allocates
        ordered = set()           # ids of values proved C-ordered
        pinned = {id(v) for v in g.inputs} | {id(v) for v in g.outputs}
        values = {}

        def unknown(v):
            """Operand v unless it is proved C-ordered (scalars and 0-d arrays always are)."""
            if v is None or v.weak or not v.aval.ndim or id(v) in ordered:
                return ()
            if v.const is not None:
                return () if getattr(getattr(v.const, "flags", None), "c_contiguous", False) else None
            return (v,)

        sinks = {}                # k -> (operands to check, elementwise)
        for k, node in enumerate(nodes):
            op = node.op
            kind, _ = kinds[id(node)]
            arrays = [v for v in node.inputs if v is not None and not v.weak and v.const is None]
            for o in node.outputs:
                born[id(o)] = k
                values[id(o)] = o
            if kind == "ufunc":
                new = True
            elif op.writes_out and node.subgraphs and "body" in node.subgraphs:
                new = _chain_fresh(node.subgraphs["body"])
            else:
                new = op.fresh and not node.subgraphs
            if not new or any(id(o) in donated for o in node.outputs):
                for o in node.outputs:
                    for v in arrays:
                        union(id(o), id(v))
                if op.keeps_order and node.inputs and unknown(node.inputs[0]) == ():
                    ordered.add(id(node.outputs[0]))
                continue
            fresh.update(id(o) for o in node.outputs)
            # the result is C-ordered when every operand is (a matmul of matrices: always)
            if kind == "ufunc" and not op.elementwise and all(v.aval.ndim <= 2 for v in arrays):
                check = []
            else:
                parts = [unknown(v) for v in node.inputs]
                check = None if any(p is None for p in parts) else list(dict.fromkeys(v for p in parts for v in p))
            if check == []:
                ordered.update(id(o) for o in node.outputs)
            one = len(node.outputs) == 1 and (op.n_out == 1 or op.writes_out)
            if one and check is not None and node.outputs[0].aval.ndim:
                if kind == "ufunc":           # matmul writes while it reads: never into an operand
                    sinks[k] = (check, op.elementwise)
                elif kind == "kernel" and op.writes_out:   # into a dying operand only when elementwise
                    sinks[k] = (check, op.elementwise)

        # each alias group dies at the last read of any member; a group with an input or output never does
        groups = {}
        for vid in list(values) + [id(v) for v in g.inputs]:
            groups.setdefault(find(vid), []).append(vid)
        death, dead_pinned = {}, set()
        for root, members in groups.items():
            death[root] = max(last.get(m, born.get(m, -1)) for m in members)
            if any(m in pinned for m in members):
                dead_pinned.add(root)

        def reusable(vid):
            return vid in fresh and find(vid) not in dead_pinned and values[vid].aval.ndim

        dies_at = {}                       # k -> buffers whose group dies at node k
        for vid in values:
            if reusable(vid):
                dies_at.setdefault(death[find(vid)], []).append(values[vid])
        sizes = {vid: _nbytes(values[vid].aval) for vid in values}
        # a static estimate of the bytes the unplanned call holds while each node runs (each result that
        # may be new memory, until its group dies), against which holding a dead buffer is checked
        steps = [0] * (len(nodes) + 2)
        sized = True
        for vid, v in values.items():
            if v.producer is not None and v.producer.op.view:
                continue
            n = sizes[vid]
            if n is None:
                sized = False
                continue
            end = death[find(vid)] if find(vid) not in dead_pinned else len(nodes)
            steps[born[vid]] += n
            steps[max(end, born[vid]) + 1] -= n
        profile = list(itertools.accumulate(steps))
        peak = max(profile)
        free = []                          # (value, died at) dead buffers, last freed last
        for k, node in enumerate(nodes):
            sink = sinks.get(k)
            if sink is not None:
                check, elementwise = sink
                o = node.outputs[0]
                chosen = None
                if elementwise:
                    ins = [v for v in node.inputs if v is not None and not v.weak and v.const is None]
                    for b in ins:
                        if (reusable(id(b)) and b.aval == o.aval and death[find(id(b))] == k
                                and all(find(id(v)) != find(id(b)) or v is b for v in ins)):
                            chosen = b
                            break
                if chosen is None and free_list and sized:
                    for j in range(len(free) - 1, max(len(free) - 16, 0) - 1, -1):   # bounded: compile time
                        b, died = free[j]
                        n = sizes[id(b)]
                        if b.aval == o.aval and all(profile[t] + n <= peak for t in range(died + 1, k)):
                            for t in range(died + 1, k):
                                profile[t] += n
                            free.pop(j)
                            chosen = b
                            self.hold.add(id(b))
                            self.release.setdefault(k, []).append(b)
                            break
                if chosen is not None:
                    self.dest[id(node)] = chosen
                    check = check + ([chosen] if id(chosen) not in ordered and chosen not in check else [])
                    if check:
                        self.checks[id(node)] = check
            # buffers whose group dies here (and results nothing reads) join the free list
            for b in dies_at.get(k, ()):
                if self.dest.get(id(node)) is not b:
                    free.append((b, k))


def _chain_fresh(body):
    """Whether a fused chain's results are arrays it allocates: each computed by a node of the chain (not
    an input passed through), by an op whose forward is its ufunc or a `fresh` record, none twice."""
    outs = body.outputs
    if len({id(v) for v in outs}) != len(outs):
        return False
    made = {id(o): n for n in body.nodes for o in n.outputs}
    return all(id(v) in made and (made[id(v)].op.ufunc or made[id(v)].op.fresh) for v in outs)


def _nbytes(aval):
    n = aval.dtype.itemsize
    for d in aval.shape:
        if not isinstance(d, int):
            return None
        n *= d
    return n


class _Gen:
    def __init__(self, graph, xp, planned=True, free_list=True):
        self.graph, self.xp = graph, xp
        self.planned, self.free_list = planned, free_list
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
        self.kinds = {id(node): self._kind(node) for node in g.nodes}
        self.plan = _Plan(g, self.kinds, self.last, self.donated, self.free_list) if self.planned else _Plan.empty()
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
            released = self.plan.release.get(k)
            self.line_node[len(body) + 1] = node  # +1: the def line
            # a dim a shape rule made up (pad's 'd0+1', reshape(-1)'s 'd0*d1') is read from the first
            # value that has it, so later attributes (a reshape target) can use it
            for o, n in zip(node.outputs, outs):
                for ax, d in enumerate(getattr(o.aval, "shape", ())):
                    if isinstance(d, Dim) and not isinstance(d, SymbolicDim) and d not in self.dims:
                        self.dims[d] = f"d{len(self.dims)}"
                        body.append(f"    {self.dims[d]} = {n}.shape[{ax}]")
            self._free(body, k, node.inputs, node.outputs, released)
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

    def _free(self, body, k, inputs, outputs=(), released=None):
        """`del` the inputs whose last use is node k and the outputs nothing reads, so memory is freed
        as early as the reference interpreter frees it; a buffer the plan holds for a later node is
        dropped there instead (`released`: those written into at node k)."""
        hold = self.plan.hold
        dead = [self.names[id(v)] for v in dict.fromkeys(v for v in inputs if v is not None)
                if v.const is None and self.last.get(id(v)) == k and id(v) not in self.keep and id(v) not in hold]
        dead += [self.names[id(o)] for o in outputs
                 if id(o) not in self.last and id(o) not in self.keep and id(o) not in hold]
        dead += [self.names[id(v)] for v in released or ()]
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

    def _checked(self, node, head, into):
        """The call, written into the planned buffer only when the arrays the plan could not prove
        C-ordered are (otherwise the layout, and so the loops numpy runs, could differ)."""
        check = self.plan.checks.get(id(node))
        if not into or not check:
            return f"{head}{into})"
        cond = " and ".join(f"{self.names[id(v)]}.flags.c_contiguous" for v in check)
        return f"{head}{into}) if {cond} else {head})"

    def _kind(self, node):
        """How node's line calls it: ("ufunc", None) for the record's ufunc called directly, ("kernel", the
        bound callable) for the record's kernel hook, ("forward", None) otherwise."""
        op = node.op
        if op.ufunc and not node.attrs and _ufunc_exact(node):
            return "ufunc", None
        if op.kernel is not None:
            kernel = op.kernel(node, self.xp)
            if kernel is not None:
                return "kernel", kernel
        return "forward", None

    def call(self, node, ins):
        op = node.op
        dest = self.donated.get(id(node.outputs[0])) if len(node.outputs) == 1 else None
        reuse = self.plan.dest.get(id(node))
        if reuse is not None:
            dest = self.names[id(reuse)]
        kind, kernel = self.kinds[id(node)]
        if kind == "ufunc":
            into = f", out={dest}" if dest is not None and (op.elementwise or reuse is not None) else ""
            return self._checked(node, f"xp.{op.ufunc}({', '.join(ins)}", into)
        if kind == "kernel":
            # a donated input may be an operand of this very node: written while read only elementwise
            ok = dest is not None and op.writes_out and (op.elementwise or reuse is not None)
            into = f", out={dest}" if ok else ""
            many = [self.donated.get(id(o)) for o in node.outputs] if len(node.outputs) > 1 else []
            if many and all(many) and op.writes_out and not node.subgraphs:
                into = f", out=({''.join(d + ', ' for d in many)})"   # every result into its donated input
            return self._checked(node, f"{self.const(kernel, 'K')}({', '.join(ins)}", into)
        fwd = self.const(op.forward, "F")
        if node.subgraphs:
            sub = self.const(node.subgraphs, "S")
            return f"{fwd}(xp, {', '.join(ins)}{', ' if ins else ''}subgraphs={sub})"
        kw = "".join(f", {k}={self.render(v)}" for k, v in node.attrs.items())
        return f"{fwd}(xp{''.join(', ' + i for i in ins)}{kw})"


class Executable:
    """A compiled graph: call with arrays, get a tuple of arrays."""

    def __init__(self, graph, xp=np, plan=True, free_list=True):
        self.graph, self.xp = graph, xp
        gen = _Gen(graph, xp, plan, free_list)
        gen.executable = self
        self.run, self.source, self.filename = gen.build()
        self._line_node = gen.line_node
        self.plan = gen.plan

    def __call__(self, *arrays):
        return self.run(*arrays)

    @property
    def saved_allocations(self):
        """How many node results each call writes (out=) into a buffer it allocated before and no longer
        needs instead of allocating (the memory plan; a line whose operands are not C-ordered at run time
        allocates as before)."""
        return len(self.plan.dest)

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
