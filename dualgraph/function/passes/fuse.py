"""Elementwise fusion: a chain of elementwise nodes of one shape becomes one `fused_elementwise` node
whose `body` subgraph holds the chain; the executor runs it as one generated kernel.

CPU kernels (chosen by measurement, see docs/performance.md): for big float chains of arithmetic and
exp/log/tanh/... a generated C loop (passes/ckernel.py: one memory pass, SIMD exp), and otherwise
generated Python over numpy ufuncs with `out=`: the chain computes in place in as few buffers as
possible (a dead temporary is overwritten instead of allocating), so a 10-op chain allocates one
array instead of ten. The issue measured numexpr and numba's vectorize slower than plain numpy on
tanh-GELU (neither is installed here), and cache-sized blocking of the numpy chain did not pay for
its extra ufunc calls. A group may have several outputs (a value also used outside it), as long as
merging cannot create a cycle. Before grouping, two lowerings that
are exact in real arithmetic run on the chain: `1 + tanh(u)` becomes `2 / (1 + exp(-2u))` (numpy's
float32 exp is about twice as fast as its tanh; the form is stable, exp overflow gives the right
limit), and scalar factors are gathered. On a GPU (`xp` is cupy) the body becomes one
`cupy.ElementwiseKernel`.
"""
import numpy as np

from ...graph.ir import Graph, Node, Value
from ...ops.infer import Aval
from ...ops.registry import REGISTRY, defop

# op name -> numpy ufunc name, for ops whose forward is exactly that ufunc on same-dtype float inputs
_UFUNC = {
    "add": "add", "sub": "subtract", "mul": "multiply", "div": "true_divide", "neg": "negative",
    "exp": "exp", "log": "log", "tanh": "tanh", "sin": "sin", "cos": "cos", "sqrt": "sqrt", "abs": "absolute",
    "maximum": "maximum", "minimum": "minimum", "log1p": "log1p", "expm1": "expm1",
}
_CUDA = {
    "add": "({0} + {1})", "sub": "({0} - {1})", "mul": "({0} * {1})", "div": "({0} / {1})", "neg": "(-{0})",
    "exp": "exp({0})", "log": "log({0})", "tanh": "tanh({0})", "sin": "sin({0})", "cos": "cos({0})",
    "sqrt": "sqrt({0})", "abs": "abs({0})", "maximum": "max({0}, {1})", "minimum": "min({0}, {1})",
    "relu": "max({0}, ({t})0)", "sigmoid": "(1 / (1 + exp(-{0})))", "where": "({0} ? {1} : {2})",
}


def _fused_infer(*xs, subgraphs=None):
    return tuple(v.aval for v in subgraphs["body"].outputs)


def _fused_forward(xp, *xs, subgraphs=None):
    from ..executor import interpret
    return interpret(subgraphs["body"], xs, xp)


FUSED = REGISTRY.get("fused_elementwise") or defop(
    "fused_elementwise", _fused_forward, _fused_infer, None, differentiable=False, elementwise=True, foldable=False,
    n_out=-1,
    extra={"subgraphs": True})


def _fusible(node):
    op = node.op
    if not op.elementwise or node.subgraphs or not op.pure or len(node.outputs) != 1:
        return False
    out = node.outputs[0].aval
    return all(isinstance(d, int) or d is not None for d in out.shape) and out.ndim > 0


def _lower_tanh(graph):
    """1 + tanh(u)  ->  2 / (1 + exp(-2 * u)) on float tensors; returns the graph."""
    users = graph.users()
    returned = {id(v) for v in graph.outputs}  # a graph output is read outside: never single-use
    prod = {}
    nodes = []
    repl = {}
    for node in graph.nodes:
        node.inputs = [repl.get(id(v), v) if v is not None else None for v in node.inputs]
        if node.op.name == "add" and len(node.inputs) == 2:
            a, b = node.inputs
            one, t = (a, b) if (a is not None and a.weak and a.const == 1) else (b, a)
            p = prod.get(id(t)) if t is not None else None
            if (one is not None and one.weak and one.const == 1 and p is not None and p.op.name == "tanh"
                    and len(users.get(id(t), ())) == 1 and id(t) not in returned and t.aval.dtype.kind == "f"
                    and node.outputs[0].aval == t.aval):
                u = p.inputs[0]
                if u.aval.dtype == t.aval.dtype:
                    aval = t.aval
                    m = Node(REGISTRY["mul"], [u, Value(Aval((), np.float64), const=-2.0, weak=True)], {}, [], p.source)
                    m.outputs = [Value(aval, producer=m)]
                    e = Node(REGISTRY["exp"], [m.outputs[0]], {}, [], p.source)
                    e.outputs = [Value(aval, producer=e)]
                    s = Node(REGISTRY["add"], [e.outputs[0], Value(Aval((), np.int64), const=1, weak=True)], {}, [],
                             node.source)
                    s.outputs = [Value(aval, producer=s)]
                    d = Node(REGISTRY["div"], [Value(Aval((), np.float64), const=2.0, weak=True), s.outputs[0]], {}, [],
                             node.source)
                    d.outputs = [node.outputs[0]]
                    node.outputs[0].producer = d
                    nodes.remove(p)
                    nodes.extend([m, e, s, d])
                    for n in (m, e, s, d):
                        prod[id(n.outputs[0])] = n
                    continue
        nodes.append(node)
        for o in node.outputs:
            prod[id(o)] = node
    graph.nodes = nodes
    # mul(A, div(c, s)) -> div(mul(A, c), s) when the div is single-use: lets scalars gather
    users = graph.users()
    prod = {id(o): n for n in graph.nodes for o in n.outputs}
    out_nodes = []
    for node in graph.nodes:
        if node.op.name == "mul" and len(node.inputs) == 2:
            a, b = node.inputs
            for x, y in ((a, b), (b, a)):
                p = prod.get(id(y)) if y is not None else None
                if (p is not None and p.op.name == "div" and p.inputs[0] is not None and p.inputs[0].weak
                        and len(users.get(id(y), ())) == 1 and id(y) not in returned and x is not None
                        and not x.weak
                        and x.aval == node.outputs[0].aval and y.aval == node.outputs[0].aval):
                    c, s = p.inputs
                    m = Node(REGISTRY["mul"], [x, c], {}, [], node.source)
                    m.outputs = [Value(x.aval, producer=m)]
                    p.inputs = [m.outputs[0], s]
                    p.outputs[0].producer = p
                    # p now computes x*c/s, the value this mul produced
                    out_nodes.remove(p)
                    out_nodes.extend([m, p])
                    repl_out = node.outputs[0]
                    p.outputs = [repl_out]
                    repl_out.producer = p
                    break
            else:
                out_nodes.append(node)
            continue
        out_nodes.append(node)
    graph.nodes = out_nodes
    return graph


def fuse(graph, min_size=2):
    from .simplify import simplify
    from .dce import dce
    graph = dce(simplify(_lower_tanh(graph)))
    users = graph.users()
    outputs = {id(v) for v in graph.outputs}
    group_of = {}
    groups = []
    taint = {}  # id(node) -> ids of groups it depends on through nodes outside them (merging would cycle)
    gdeps = {}  # id(group) -> ids of other groups its members depend on: a fused group is one node, so
    #             reading any of its outputs depends on what every member depends on
    for node in graph.nodes:
        deps = set()
        for v in node.inputs:
            if v is not None and v.producer is not None:
                deps |= taint.get(id(v.producer), set())
                g = group_of.get(id(v.producer))
                if g is not None:
                    deps.add(id(g))
                    deps |= gdeps.get(id(g), set())
        target = None
        if _fusible(node):
            for v in node.inputs:
                if v is None or v.producer is None or id(v.producer) not in group_of:
                    continue
                g = group_of[id(v.producer)]
                if v.aval.shape != node.outputs[0].aval.shape:
                    continue
                # no other input may reach g through a node outside it (or through another group)
                if all(u is None or u.producer is None or group_of.get(id(u.producer)) is g
                       or (id(g) not in taint.get(id(u.producer), set())
                           and id(g) not in gdeps.get(id(group_of.get(id(u.producer))), ()))
                       for u in node.inputs):
                    target = g
                    break
            if target is None:
                target = []
                groups.append(target)
            target.append(node)
            group_of[id(node)] = target
            deps.discard(id(target))
            gdeps.setdefault(id(target), set()).update(deps)
        taint[id(node)] = deps
    fused_ids = {}
    for g in groups:
        if len(g) >= min_size:
            for n in g:
                fused_ids[id(n)] = g
    if not fused_ids:
        return graph
    orig = list(graph.nodes)
    new_nodes, done = [], set()
    for node in graph.nodes:
        g = fused_ids.get(id(node))
        if g is None:
            new_nodes.append(node)
            continue
        if id(g[0]) in done:
            continue
        done.add(id(g[0]))
        new_nodes.append(_make_fused(g, users, outputs))
    # a fused node must come after all its inputs' producers: place it at its last member's position
    try:
        graph.nodes = _reorder(new_nodes)
    except _Cycle:
        # the grouping made two groups depend on each other (a dependency it did not see): run unfused
        for n in orig:
            for o in n.outputs:
                o.producer = n
        graph.nodes = orig
    return graph


class _Cycle(Exception):
    pass


def _make_fused(group, users, outputs):
    members = {id(n) for n in group}
    produced = {id(o) for n in group for o in n.outputs}
    body = Graph("body")
    ext, m = [], {}
    for n in group:
        for v in n.inputs:
            if v is None or v.const is not None or id(v) in produced or id(v) in m:
                continue
            m[id(v)] = body.add_input(v.aval)
            ext.append(v)
    outs = []
    for n in group:
        ins = [m.get(id(v), v) if v is not None else None for v in n.inputs]
        bn = body.add_node(n.op, ins, n.attrs, [o.aval for o in n.outputs], n.source)
        for o, bo in zip(n.outputs, bn.outputs):
            m[id(o)] = bo
            if id(o) in outputs or any(id(u) not in members for u in users.get(id(o), ())):
                outs.append(o)
    body.outputs = [m[id(o)] for o in outs]
    node = Node(FUSED, ext, {}, outs, group[-1].source, {"body": body})
    for o in outs:
        o.producer = node
    return node


def _reorder(nodes):
    """Topological order (stable) after fusion moved members into one node."""
    produced_by = {id(o): n for n in nodes for o in n.outputs}
    order, state = [], {}

    def visit(n):
        s = state.get(id(n))
        if s == 2:
            return
        state[id(n)] = 1
        for v in n.inputs:
            if v is not None and id(v) in produced_by:
                p = produced_by[id(v)]
                if state.get(id(p)) == 1:
                    raise _Cycle()
                if state.get(id(p)) != 2:
                    visit(p)
        state[id(n)] = 2
        order.append(n)
    import sys
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, 10 * len(nodes) + 1000))
    try:
        for n in nodes:
            visit(n)
    finally:
        sys.setrecursionlimit(limit)
    return order


# ---- kernels -----------------------------------------------------------------------------------------

def kernel_for(node, xp):
    key = "_kernel_cupy" if xp is not np else "_kernel"
    body = node.subgraphs["body"]
    k = body.meta.get(key)
    if k is None:
        if xp is np:
            from .ckernel import make
            k = make(body, _numpy_kernel(body))
        else:
            k = _cupy_kernel(body, xp)
        body.meta[key] = k
    return k


def _numpy_kernel(body):
    """Generated Python: each op a ufunc call with out= into a dead same-typed buffer when there is one."""
    from ..where_zero import is_where_zero as _is_where_zero, where_zero as _where_zero
    glob = {"np": np}
    names = {}
    lines = []
    args = []
    for i, v in enumerate(body.inputs):
        names[id(v)] = f"a{i}"
        args.append(f"a{i}")
    last = {}
    for k, n in enumerate(body.nodes):
        for v in n.inputs:
            if v is not None:
                last[id(v)] = k
    outs = {id(v) for v in body.outputs}
    owned = set()          # names of temporaries this kernel allocated (safe to overwrite)
    free = []              # (name, aval) of dead owned temporaries
    tmp = 0
    overflow = False

    def ref(v):
        if v.weak:
            c = v.const
            return repr(c) if isinstance(c, (bool, int)) or np.isfinite(c) else _g(glob, c)
        if v.const is not None:
            return _g(glob, v.const)
        return names[id(v)]

    for k, n in enumerate(body.nodes):
        o = n.outputs[0]
        ins = [ref(v) for v in n.inputs]
        uf = _UFUNC.get(n.op.name)
        float_ok = o.aval.dtype.kind == "f" and all(
            v is None or v.weak or (v.aval.dtype == o.aval.dtype) for v in n.inputs)
        if n.op.name == "exp":
            overflow = True
        # a buffer that dies here, of the output's type and full shape
        buf = None
        for v in n.inputs:
            if (v is not None and not v.weak and v.const is None and names.get(id(v)) in owned
                    and last.get(id(v)) == k and id(v) not in outs and v.aval == o.aval):
                buf = names[id(v)]
                break
        if buf is None:
            for i, (nm, av) in enumerate(free):
                if av == o.aval:
                    buf = nm
                    free.pop(i)
                    break
        final = len(body.outputs) == 1 and body.outputs[0] is o and k == len(body.nodes) - 1
        if final and (uf is not None or n.op.name == "relu") and float_ok:
            call = f"np.{uf}({', '.join(ins)}" if uf else f"np.maximum({ins[0]}, 0.0"
            dest = f"out if out is not None else {buf}" if buf is not None else "out"
            name = "r"
            lines.append(f"    r = {call}, out={dest})")
        elif uf is not None and float_ok:
            if buf is not None:
                lines.append(f"    np.{uf}({', '.join(ins)}, out={buf})")
                name = buf
            else:
                name = f"t{tmp}"
                tmp += 1
                lines.append(f"    {name} = np.{uf}({', '.join(ins)})")
        elif (n.op.name == "pow" and n.inputs[1] is not None and n.inputs[1].weak and n.inputs[1].const in (2, 3)
              and not isinstance(n.inputs[1].const, bool) and o.aval.dtype.kind == "f"
              and n.inputs[0].aval.dtype == o.aval.dtype):
            if buf is None or buf == ins[0]:
                if buf is not None:
                    free.append((buf, o.aval))
                name = f"t{tmp}"
                tmp += 1
                lines.append(f"    {name} = np.multiply({ins[0]}, {ins[0]})")
            else:
                name = buf
                lines.append(f"    np.multiply({ins[0]}, {ins[0]}, out={name})")
            if n.inputs[1].const == 3:
                lines.append(f"    np.multiply({name}, {ins[0]}, out={name})")
        elif n.op.name == "relu" and float_ok:
            if buf is not None:
                lines.append(f"    np.maximum({ins[0]}, 0.0, out={buf})")
                name = buf
            else:
                name = f"t{tmp}"
                tmp += 1
                lines.append(f"    {name} = np.maximum({ins[0]}, 0.0)")
        elif _is_where_zero(n):
            f = _g(glob, _where_zero)
            name = f"t{tmp}"
            tmp += 1
            lines.append(f"    {name} = {f}(np, {ins[0]}, {ins[1]})")
            if buf is not None:
                free.append((buf, o.aval))
        else:
            f = _g(glob, n.op.forward)
            kw = "".join(f", {a}={_g(glob, val)}" for a, val in n.attrs.items())
            name = f"t{tmp}"
            tmp += 1
            lines.append(f"    {name} = np.asarray({f}(np{''.join(', ' + i for i in ins)}{kw}))")
            if buf is not None:
                free.append((buf, o.aval))
        names[id(o)] = name
        owned.add(name)
        # temporaries that die here and were not reused become free
        for v in n.inputs:
            if (v is not None and not v.weak and v.const is None and last.get(id(v)) == k and id(v) not in outs
                    and names.get(id(v)) in owned and names[id(v)] != name
                    and all(names[id(v)] != f for f, _ in free)):
                free.append((names[id(v)], v.aval))
    rets = [names[id(v)] if id(v) in names else ref(v) for v in body.outputs]
    src = "def kernel(" + "".join(a + ", " for a in args) + "out=None):\n"
    if overflow:
        src += "    with np.errstate(over='ignore'):\n" + "\n".join("    " + ln for ln in lines) + "\n"
        src += f"        return ({''.join(r + ', ' for r in rets)})\n"
    else:
        src += "\n".join(lines) + f"\n    return ({''.join(r + ', ' for r in rets)})\n"
    exec(compile(src, "<dg-fused-kernel>", "exec"), glob)
    k = glob["kernel"]
    k.source = src
    return k


def _g(glob, obj):
    name = f"g{len(glob)}"
    glob[name] = obj
    return name


def _cupy_kernel(body, cp):
    """One cupy.ElementwiseKernel for the whole chain (falls back to the op forwards if unsupported)."""
    ctype = {"float32": "float", "float64": "double", "float16": "float16", "int64": "long long",
             "int32": "int", "bool": "bool"}
    try:
        names, params, code = {}, [], []
        for i, v in enumerate(body.inputs):
            names[id(v)] = f"a{i}"
            params.append(f"{ctype[str(v.aval.dtype)]} a{i}")
        for k, n in enumerate(body.nodes):
            tmpl = _CUDA[n.op.name]
            args = [repr(float(v.const)) if v.weak else names[id(v)] for v in n.inputs]
            t = ctype[str(n.outputs[0].aval.dtype)]
            code.append(f"{t} t{k} = ({t}){tmpl.format(*args, t=t)};")
            names[id(n.outputs[0])] = f"t{k}"
        outs = [f"{ctype[str(v.aval.dtype)]} o{i}" for i, v in enumerate(body.outputs)]
        code += [f"o{i} = {names[id(v)]};" for i, v in enumerate(body.outputs)]
        ek = cp.ElementwiseKernel(", ".join(params), ", ".join(outs), "\n".join(code), "dg_fused")

        def kernel(*xs, out=None):
            if out is not None and len(body.outputs) == 1:
                r = ek(*xs, out)  # written into the donated buffer (cupy broadcasts the inputs)
            else:
                r = ek(*xs)
            return r if isinstance(r, tuple) else (r,)
        return kernel
    except Exception:
        from ..executor import interpret
        return lambda *xs, out=None: interpret(body, xs, cp)
