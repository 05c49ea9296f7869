"""Re-deriving symbolic shapes for a graph traced at concrete sizes.

When a graph was traced with concrete shapes and the user asks for dynamic axes, the exporter makes
those input dims symbolic and `generalize` rewrites the graph into the one a trace with those dims
symbolic would have given: each op's own `infer` rule propagates the symbols, and the ops whose
attributes spell shapes get their attributes generalized first:

* `reshape`: input and target dims are grouped by equal products (`(B, 3, 4) -> (B, 12)` pairs
  `[B]` with `[2]` and `[3, 4]` with `[12]`); a group holding a symbolic input dim gets symbolic output
  dims (`B*12` for a flatten): exported as Shape arithmetic, not a frozen constant.
* `broadcast_to`, `index_add_zeros`, `fold`: a target dim aligned with a symbolic input dim takes it;
  otherwise a dim equal to the traced size of exactly one symbol seen so far is taken to be that
  symbol (so trace with a batch size that no other dim shares; `verify=True` tries other sizes).
* `getitem`: a slice that stops at the traced size of a symbolic axis stops at the end instead.
* `mean`'s divisor, a Python int, becomes the `count` op of the summed tensor when its axes are symbolic
  (the same count divides in its gradient); a constant of a traced shape filled with one value
  (zeros(x.shape)) becomes a `broadcast_to` of that value to the symbolic shape.

Symbolic dims are those of ops/dims.py: products with a rational coefficient (`B*12`, `B*T//4`) are
`dims.product` / `dims.divide` expressions, evaluated and exported like any other size expression.

Every derived shape is checked against the traced one (symbols replaced by traced sizes); where the
rule cannot be trusted the traced dims are kept, and verification at other sizes will say so.
"""
import numpy as np

from ..graph.avals import Aval, Dim
from ..graph.ir import Graph
from ..ops.dims import divide, evaluate, key, product, resolve
from ..ops.onnx_rules import is_sym
from ..ops.reduction import COUNT
from ..ops.shape import BROADCAST_TO


def generalize(graph, sym_inputs, sizes):
    """A copy of `graph` (traced at `sizes` of its input dims) with the input shapes `sym_inputs` and every
    shape, attribute and constant derived from them symbolic (see the module docstring)."""
    deriver = Deriver(sizes)
    sym_shapes = {id(v): tuple(s) for v, s in zip(graph.inputs, sym_inputs)}
    attrs = deriver.run(graph, sym_shapes)
    return deriver.rebuild(graph, sym_shapes, attrs)


class Deriver:
    def __init__(self, sizes):
        self.sizes = sizes          # Dim -> traced size
        self.seen = {}              # traced size -> {dims.key: symbolic dim carrying it}
        self.scalars = {}           # (id(node), input index) -> symbolic dim replacing a weak int operand
        self.counted = {}           # (id(node), input index) -> (tensor, axes) whose count that dim is
        self.counts = {}            # traced count -> (symbolic count, tensor, axes): mean's divisor, for its gradient
        self.uniform = {}           # id(const Value) -> (symbolic shape, fill value)

    def note(self, shape):
        for d in shape:
            if is_sym(d):
                self.seen.setdefault(evaluate(d, self.sizes), {})[key(d)] = d

    def guess(self, n):
        cands = self.seen.get(n, {})
        return next(iter(cands.values())) if len(cands) == 1 else n

    def consistent(self, shape, concrete):
        try:
            return len(shape) == len(concrete) and all(evaluate(d, self.sizes) == c
                                                       for d, c in zip(shape, concrete))
        except (KeyError, TypeError):
            return False

    # ---- attribute rules -------------------------------------------------------------------
    def reshape_attrs(self, in_sym, in_conc, attrs):
        out_conc = [int(d) for d in attrs["shape"]]
        if -1 in out_conc:
            total = 1
            for d in in_conc:
                total *= d
            known = 1
            for d in out_conc:
                known *= d if d != -1 else 1
            out_conc = [total // known if d == -1 else d for d in out_conc]
        out, i, j = [], 0, 0
        n, m = len(in_conc), len(out_conc)
        while i < n or j < m:
            gi, gj, pi, pj = [], [], 1, 1
            if i < n:
                gi.append(i)
                pi *= in_conc[i]
                i += 1
            if j < m:
                gj.append(j)
                pj *= out_conc[j]
                j += 1
            while pi != pj:
                if (pi < pj or j >= m) and i < n:
                    gi.append(i)
                    pi *= in_conc[i]
                    i += 1
                elif j < m:
                    gj.append(j)
                    pj *= out_conc[j]
                    j += 1
                else:
                    break
            syms = [in_sym[k] for k in gi]
            if any(is_sym(d) for d in syms) and gj:
                total = product(syms)
                # the output dim that carries the symbol: one equal to the whole group's traced size
                # (a unit dim added or dropped: (B,) -> (1, B)), else the first non-unit dim
                exact = [k for k in gj if out_conc[k] == evaluate(total, self.sizes)]
                pick = exact[0] if exact else next((k for k in gj if out_conc[k] != 1), gj[0])
                rest = 1
                for k in gj:
                    if k != pick:
                        rest *= out_conc[k]
                for k in gj:
                    if k == pick:
                        out.append(divide(total, rest) if rest != 1 else total)
                    else:
                        out.append(out_conc[k])
            else:
                out.extend(out_conc[k] for k in gj)
        return dict(attrs, shape=tuple(out))

    def aligned_attrs(self, x_sym, target, key):
        target = tuple(target)
        lead = len(target) - len(x_sym)
        out = []
        for k, d in enumerate(target):
            src = x_sym[k - lead] if k >= lead else 1
            if is_sym(src) and evaluate(src, self.sizes) == d:
                out.append(src)
            elif isinstance(d, int) and d != 1 and (src == 1 or not is_sym(src)) and src != d:
                out.append(self.guess(d))
            else:
                out.append(d)
        return {key: tuple(out)}

    def guessed_attrs(self, values, key):
        return {key: tuple(self.guess(d) if isinstance(d, int) and d > 1 else d for d in values)}

    def getitem_attrs(self, x_sym, attrs):
        template = attrs["template"]
        if any(t is Ellipsis for t in template):
            return attrs
        out, axis = [], 0
        for t in template:
            if isinstance(t, slice) and axis < len(x_sym) and is_sym(x_sym[axis]) and t.stop is not None \
                    and (t.step is None or t.step > 0) and t.stop == evaluate(x_sym[axis], self.sizes):
                t = slice(t.start, None, t.step)
            out.append(t)
            if t is not None:
                axis += 1
        return dict(attrs, template=tuple(out))

    def mean_divisor(self, node, sym_shapes):
        """`mean` divides a sum by a Python int, the element count: over a symbolic axis that count
        is symbolic too (`sum(x, axis=0) / B`), and so is the same divisor in its gradient."""
        a, b = node.inputs
        if b is None or not getattr(b, "weak", False) or isinstance(b.const, bool) or not isinstance(b.const, int):
            return
        c = int(b.const)
        p = a.producer if a is not None else None
        if p is not None and p.op.name == "sum":
            xs = sym_shapes.get(id(p.inputs[0]), p.inputs[0].aval.shape)
            axes = p.attrs.get("axes")
            dims = [xs[i] for i in (range(len(xs)) if axes is None else axes)]
            if any(is_sym(d) for d in dims):
                total = product(dims)
                if evaluate(total, self.sizes) == c:
                    self.counts[c] = (total, p.inputs[0], axes)
        if c in self.counts:
            total, x, axes = self.counts[c]
            self.scalars[(id(node), 1)] = total
            self.counted[(id(node), 1)] = (x, axes)

    # ---- the walk ------------------------------------------------------------------------------
    def run(self, graph, sym_shapes):
        """Fill sym_shapes (id(Value) -> shape) for every node output; returns {id(node): attrs}."""
        node_attrs = {}
        for v in graph.inputs:
            self.note(sym_shapes.get(id(v), v.aval.shape))
        for node in graph.nodes:
            ins = []
            for v in node.inputs:
                if v is None:
                    ins.append(None)
                elif getattr(v, "weak", False):
                    ins.append(v.const)
                else:
                    ins.append(Aval(sym_shapes.get(id(v), v.aval.shape), v.aval.dtype))
            for sub in node.subgraphs.values():   # bodies read the node's trailing operands
                n = len(sub.inputs)
                for sv, v in zip(sub.inputs, node.inputs[len(node.inputs) - n:]):
                    if v is not None and not getattr(v, "weak", False):
                        sym_shapes[id(sv)] = sym_shapes.get(id(v), v.aval.shape)
                node_attrs.update(self.run(sub, sym_shapes))
            if node.subgraphs:
                key = "then" if "then" in node.subgraphs else "body"
                outs = [sym_shapes.get(id(o), o.aval.shape) for o in node.subgraphs[key].outputs]
                for o, s in zip(node.outputs, outs):
                    sym_shapes[id(o)] = tuple(s)
                continue
            attrs = dict(node.attrs)
            name = node.op.name
            if name == "div":
                self.mean_divisor(node, sym_shapes)
            x = ins[0] if ins and isinstance(ins[0], Aval) else None
            for v in node.inputs:   # zeros(x.shape) made while tracing: a constant of a traced size
                if v is not None and v.const is not None and not getattr(v, "weak", False) \
                        and id(v) not in self.uniform and np.ndim(v.const) > 0 and np.size(v.const) > 1:
                    arr = np.asarray(v.const)
                    if np.all(arr == arr.reshape(-1)[0]):
                        shape = tuple(self.guess(d) if d > 1 else d for d in arr.shape)
                        if any(is_sym(d) for d in shape):
                            self.uniform[id(v)] = (shape, arr.reshape(-1)[0])
                            sym_shapes[id(v)] = shape
                            ins[node.inputs.index(v)] = Aval(shape, arr.dtype)
            if node.op.sized_attrs is not None:
                attrs = node.op.sized_attrs(self, node, x.shape if x is not None else (), attrs)
            outs = None
            try:
                res = node.op.infer(*ins, **attrs)
                res = res if isinstance(res, tuple) else (res,)
                outs = [r.shape for r in res]
                if not all(self.consistent(s, o.aval.shape) for s, o in zip(outs, node.outputs)):
                    outs = None
            except Exception:
                outs = None
            if outs is None:   # the rule cannot be trusted: keep the traced dims (guessing symbols)
                attrs = dict(node.attrs)
                outs = [tuple(self.guess(d) if isinstance(d, int) and d > 1 else d for d in o.aval.shape)
                        for o in node.outputs]
            if attrs != node.attrs:
                node_attrs[id(node)] = attrs
            for o, s in zip(node.outputs, outs):
                sym_shapes[id(o)] = tuple(s)
                self.note(s)
        return node_attrs


    # ---- the generalized graph ----------------------------------------------------------------------
    def rebuild(self, graph, sym_shapes, attrs):
        """A copy of `graph` with the derived shapes (`sym_shapes`) and attributes (`attrs`), mean's
        divisors as `count` nodes and uniform constants of a traced shape as `broadcast_to` nodes."""
        g = Graph(graph.name)
        g.meta = {k: v for k, v in graph.meta.items() if not k.startswith("_")}
        g.frozen = list(graph.frozen)
        new = {}

        def shaped(v):
            return Aval(sym_shapes.get(id(v), v.aval.shape), v.aval.dtype)

        def get(v, node, k):
            if v is None or id(v) in new:
                return None if v is None else new[id(v)]
            if v.const is None:
                raise KeyError(f"value {v} used before it is defined")
            counted = self.counted.get((id(node), k))
            if counted is not None and id(counted[0]) in new:
                x = new[id(counted[0])]
                dt = x.aval.dtype
                return g.add_node(COUNT, [x], {"axes": counted[1], "dtype": dt}, [Aval((), dt)], node.source).outputs[0]
            if id(v) in self.uniform:
                shape, fill = self.uniform[id(v)]
                fill = g.add_const(np.asarray(fill, v.aval.dtype))
                new[id(v)] = g.add_node(BROADCAST_TO, [fill], {"shape": tuple(shape)}, [Aval(shape, v.aval.dtype)],
                                        node.source).outputs[0]
                return new[id(v)]
            return v

        for v in graph.inputs:
            new[id(v)] = g.add_input(shaped(v), v.name)
        for node in graph.nodes:
            ins = [get(v, node, k) for k, v in enumerate(node.inputs)]
            subs = {name: self.rebuild(s, sym_shapes, attrs) for name, s in node.subgraphs.items()}
            n = g.add_node(node.op, ins, attrs.get(id(node), node.attrs), [shaped(o) for o in node.outputs],
                           node.source, subs)
            for o, no in zip(node.outputs, n.outputs):
                no.name = o.name
                new[id(o)] = no
        g.outputs = [get(v, None, -1) for v in graph.outputs]
        return g


# ---- checking a re-derived graph against a trace at other sizes ----------------------------------------

def _same(a, b):
    if isinstance(a, (tuple, list)) and isinstance(b, (tuple, list)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, slice) and isinstance(b, slice):
        return _same((a.start, a.stop, a.step), (b.start, b.stop, b.step))
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return np.shape(a) == np.shape(b) and np.array_equal(np.asarray(a), np.asarray(b))
    try:
        return bool(a == b)
    except Exception:
        return repr(a) == repr(b)


def mismatch_at_other_sizes(graph, other, sym_inputs, sizes, other_sizes):
    """Where `graph` (traced at `sizes` of its dims), generalized by the Deriver, disagrees with `other`
    (the same function traced at `other_sizes`): None, or (node or None, what differs).

    A size the function turned into a Python number (np.sqrt(x.shape[0]), a constant array of that
    length, a loop over it) holds its traced value in `graph` and another one in `other`: the
    generalized graph would only be right at the traced size."""
    sym_shapes = {id(v): s for v, s in zip(graph.inputs, sym_inputs)}
    deriver = Deriver(sizes)
    attrs = deriver.run(graph, sym_shapes)
    env = dict(other_sizes)
    pair = {}

    def at_other(d):
        return resolve(d, env)

    def same_value(v1, v2, node, k):
        if v1 is None or v2 is None:
            return v1 is None and v2 is None
        if v1.const is not None or v2.const is not None:
            if v1.const is None or v2.const is None or bool(v1.weak) != bool(v2.weak):
                return False
            if v1.weak:
                d = deriver.scalars.get((id(node), k))
                want = at_other(d) if d is not None else v1.const
                return _same(want, v2.const)
            if id(v1) in deriver.uniform:
                shape, fill = deriver.uniform[id(v1)]
                arr = np.asarray(v2.const)
                return tuple(at_other(tuple(shape))) == arr.shape and arr.size > 0 and np.all(arr == fill)
            return _same(np.asarray(v1.const), np.asarray(v2.const))
        return pair.get(id(v1)) is v2

    def walk(g1, g2):
        for a, b in zip(g1.inputs, g2.inputs):
            pair[id(a)] = b
        if len(g1.nodes) != len(g2.nodes):
            first = next((n1 for n1, n2 in zip(g1.nodes, g2.nodes) if n1.op.name != n2.op.name), None)
            return first, f"the graph has {len(g1.nodes)} nodes at the traced sizes and {len(g2.nodes)} at others"
        for n1, n2 in zip(g1.nodes, g2.nodes):
            if n1.op.name != n2.op.name or len(n1.inputs) != len(n2.inputs) or len(n1.outputs) != len(n2.outputs):
                return n1, f"{n1.op.name} at the traced sizes, {n2.op.name} at others"
            for k, (v1, v2) in enumerate(zip(n1.inputs, n2.inputs)):
                if not same_value(v1, v2, n1, k):
                    return n1, f"operand {k} differs ({_show(v1)} at the traced sizes, {_show(v2)} at others)"
            try:
                a1 = at_other(attrs.get(id(n1), n1.attrs))
            except (KeyError, TypeError):
                a1 = n1.attrs
            if not _same(a1, n2.attrs):
                return n1, f"its attributes {n1.attrs} hold a traced size (at other sizes: {n2.attrs})"
            for k in n1.subgraphs:
                if k not in n2.subgraphs:
                    return n1, "its subgraphs differ"
                bad = walk(n1.subgraphs[k], n2.subgraphs[k])
                if bad is not None:
                    return bad
            for o1, o2 in zip(n1.outputs, n2.outputs):
                pair[id(o1)] = o2
                try:
                    got = tuple(at_other(tuple(sym_shapes.get(id(o1), o1.aval.shape))))
                except (KeyError, TypeError):
                    continue
                if any(isinstance(d, Dim) for d in o2.aval.shape) or not _same(got, o2.aval.shape):
                    if not any(isinstance(d, Dim) for d in o2.aval.shape):
                        return n1, f"its output has shape {got} derived from the traced one, {o2.aval.shape} traced"
        for a, b in zip(g1.outputs, g2.outputs):
            if not same_value(a, b, None, -1):
                return None, "the outputs differ"
        return None
    return walk(graph, other)


def _show(v):
    if v is None:
        return "None"
    if v.const is not None:
        arr = np.asarray(v.const)
        return repr(arr.item()) if arr.size == 1 else f"a constant of shape {arr.shape}"
    return str(v.aval)
