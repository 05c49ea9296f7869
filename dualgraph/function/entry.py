"""One trace of a compiled function for one cache key: the `Entry`, and `build_entry` that makes it.

Building an entry runs the user's function once on symbolic tensors, then turns what the tracer saw
into a graph with fixed inputs and outputs: the arguments, then the tensors read from outside them
(captured state, found again at each call by `capture`); the user's outputs, then the in-place
updates and `.grad` assignments the call writes back. The graph is optimized and compiled; the entry
keeps both graphs, the executable and the plans `call` follows to run it and write back.
"""
import os
import weakref
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from ..backend import CPU, Device
from ..dispatch import using
from ..errors import _PKG_DIR, DualgraphError
from ..graph.avals import Dim
from ..graph.ir import Graph
from ..tensor import Tensor
from . import passes as _passes
from .capture import Captured, compile_reader, find_paths, frozen_globals, guard_reason, input_name
from .control import tree_flatten
from .executor import Executable
from .signature import avals_for, rebuild
from .tracer import FrozenValue, TraceError, Tracer


@dataclass(eq=False, slots=True, weakref_slot=True)
class Entry:
    """A traced, optimized and compiled graph for one cache key, and how to call it.

    Graph inputs are the `n_args` argument tensors (flattening order), then `captured`. Graph outputs
    are the `n_user_out` tensors the function returned, then the values written back to tensors the
    function changed in place (`writebacks`), then the gradients it assigned to `.grad`
    (`grad_writes`)."""

    # what was traced
    name: str                         # the function's name, for errors and the autograd node
    fn: Callable                      # the traced callable: its globals and closure are guarded
    passes: tuple                     # the passes, for the graphs a differentiating caller compiles
    struct: Optional[tuple]           # the cache key with sizes replaced by ranks (signature.struct_key)
    symbolic: bool                    # traced with symbolic dims: serves every call `accepts` takes
    leaf_shapes: list                 # the argument tensors' shapes at trace time
    arg_avals: list                   # [Aval] of the argument inputs, symbolic dims included
    n_args: int
    did_backward: bool                # the function ran backward itself: a caller does not differentiate it
    has_custom: bool                  # a custom autograd.Function ran inside (its backward is not traced)
    frozen: list                      # [FrozenValue] every Python value the trace baked in
    # state outside the arguments, and the guards on it
    captured: list                    # [Captured], in graph-input order after the arguments
    grad_guards: list                 # [(weakref to tensor, its .grad was None)] .grad reads the trace branched on
    global_guards: list               # [(kind, name, value)] global/closure numbers and strings baked in
    read_captured: Callable           # () -> the captured tensors to feed, or None when a guard fails
    # outputs and what the call writes back
    n_user_out: int
    out_consts: dict                  # {position in the returned structure: non-tensor value returned}
    out_tree: Any                     # structure of the returned value (control.tree_flatten), None: one tensor
    writebacks: list                  # [(kind "arg"|"cap", arg index or traced tensor, output index)]
    grad_writes: list                 # [((kind, arg index or traced tensor), output index or None: grad = None)]
    writeback_plan: list              # writebacks as a call addresses them: "capi" = index into `captured`
    grad_write_plan: list             # grad_writes as a call addresses them
    out_alias: list                   # [(output, argument)] outputs that are an input or a view of one
    simple: bool                      # one tensor returned, nothing written back: the call returns it as is
    diff_any: bool                    # some output required grad when traced
    # graphs and code
    graph: Graph                      # as traced, before any pass (what export lowers)
    opt: Graph                        # after the passes
    exec: Executable
    xp: Any                           # the backend namespace the executable runs on
    device: Device
    grad_ops: dict = field(default_factory=dict)   # wrt -> CompiledOp, for callers differentiating this call
    fwd_graph: Optional[Graph] = None               # the last forward/backward pair compiled for a caller
    bwd_graph: Optional[Graph] = None

    def accepts(self, leaves):
        """Whether a symbolic entry serves these argument tensors (ranks, dtypes, fixed and shared dims)."""
        if len(leaves) != len(self.arg_avals):
            return False
        sizes = {}
        for t, av in zip(leaves, self.arg_avals):
            shape = t.shape
            if len(shape) != len(av.shape) or t.dtype != av.dtype:
                return False
            for n, d in zip(shape, av.shape):
                if isinstance(d, Dim):
                    if sizes.setdefault(d, n) != n:
                        return False
                elif n != d:
                    return False
        return True

    def guard_reason(self):
        """Why `read_captured` refused the last call."""
        return guard_reason(self.fn, self.captured, self.grad_guards, self.global_guards)


def build_entry(cf, args, leaves, sym_mask, struct, symbolic, descs):
    """Trace `cf` (a CompiledFunction) on `args`, whose tensors are `leaves`, and compile the result.
    `sym_mask` gives the dims traced symbolically; `descs` (signature.describe) names the arguments."""
    tr, graph, out_vals, out_consts, out_tree = _trace(cf, args, leaves, sym_mask, symbolic)
    n_args = len(leaves)
    fx = _Effects(tr)
    outputs, writebacks, grad_writes = _outputs(tr, out_vals, fx)
    graph.outputs = outputs
    captured = _bind_captures(graph, n_args, fx, cf.fn, cf.module)
    for v, data in fx.dead:
        v.const = data
    graph.meta["donate"] = _donations(graph, outputs, writebacks, fx.alive)
    # whether a captured tensor's .grad was None is guarded (an argument is another tensor at each call)
    grad_guards = [(ref, was_none) for ref, was_none in fx.grad_reads
                   if ref() is not None and id(ref()) not in fx.sym_args]
    writeback_plan, grad_write_plan = _call_plans(captured, writebacks, grad_writes)
    globals_read = frozen_globals(cf.fn)
    global_guards = [(kind, name, value) for kind, name, value, _ in globals_read
                     if isinstance(value, (int, float, bool, str))]
    frozen = _frozen_values(fx.frozen, globals_read, descs)
    graph.frozen = list(frozen)
    # values the function changed in place: a differentiating caller's backward may not read them
    graph.meta["_overwritten"] = fx.overwritten   # (Value, node index the in-place op began at)
    device = leaves[0]._device if leaves else (fx.alive[0][0]._device if fx.alive else CPU)
    graph.meta["device"] = str(device)            # lower_kernels picks CPU-only kernels on "cpu" only
    opt = _passes.optimize(graph, cf.passes)
    opt.frozen = list(frozen)
    xp = leaves[0]._device.xp if leaves else CPU.xp
    return Entry(
        name=cf.__name__, fn=cf.fn, passes=cf.passes, struct=struct, symbolic=symbolic,
        leaf_shapes=[tuple(t.shape) for t in leaves], arg_avals=[v.aval for v in graph.inputs[:n_args]],
        n_args=n_args, did_backward=fx.did_backward, has_custom=fx.has_custom, frozen=frozen,
        captured=captured, grad_guards=grad_guards, global_guards=global_guards,
        read_captured=compile_reader(cf.__name__, cf.fn, cf.module, captured, grad_guards, global_guards),
        n_user_out=len(out_vals), out_consts=out_consts, out_tree=out_tree,
        writebacks=writebacks, grad_writes=grad_writes, writeback_plan=writeback_plan,
        grad_write_plan=grad_write_plan, out_alias=output_views(opt, len(out_vals)),
        simple=(not writebacks and not grad_writes and not out_consts and out_tree is None and len(out_vals) == 1),
        diff_any=any(rg for _, _, rg in out_vals),
        graph=graph, opt=opt, exec=Executable(opt, xp), xp=xp, device=device)


# ---- the steps of build_entry ------------------------------------------------------------------------

def _trace(cf, args, leaves, sym_mask, symbolic):
    """Run the function on symbolic tensors: (tracer, graph, [(position, Value, requires_grad)] for the
    returned tensors, {position: value} for returned non-tensors, the returned structure)."""
    graph = Graph(cf.__name__ if cf.__name__.isidentifier() else "graph")
    tr = Tracer(graph, strict=cf.strict, shapes_declared=cf.input_signature is not None)
    sig = cf.signature
    names = sig.leaf_names(args)
    syms = []
    for i, (t, av) in enumerate(zip(leaves, avals_for(leaves, sym_mask))):
        v = graph.add_input(av, names[i] if i < len(names) else None)
        for ax, d in enumerate(av.shape):
            if isinstance(d, Dim):
                tr.dim_origin.setdefault(d, (v, ax))
        s = tr.sym(v, t._device, requires_grad=t._requires_grad)
        tr.args[id(s)] = [s, v, i]
        syms.append(s)
    call_args, call_kwargs = sig.unbind(rebuild(args, iter(syms)))
    with using(tr):
        try:
            out = cf.fn(*call_args, **call_kwargs)
        except DualgraphError as exc:
            where = _user_frame_of(exc)
            if where and where not in str(exc):
                exc.args = (f"{exc.args[0] if exc.args else exc} (while tracing {cf.__name__}, at {where})",) \
                    + tuple(exc.args[1:])
            raise
        except TypeError as exc:
            if "Dim" not in str(exc) or not symbolic:
                raise
            # Python arithmetic or numpy met a symbolic dim: an op (or the user's code) needed a
            # concrete size of an axis this trace treats as unknown
            where = _user_frame_of(exc)
            raise TraceError(
                f"{cf.__name__}: an operation needs the concrete size of a dim that this trace keeps "
                f"symbolic{f' (at {where})' if where else ''}: {exc}. Declare that dim with a fixed size "
                f"in input_signature= (or call with one size only) so it is traced as a number") from exc
        out_leaves, out_tree = tree_flatten(out)
        out_vals, out_consts = [], {}
        for i, o in enumerate(out_leaves):
            if isinstance(o, Tensor):
                out_vals.append((i, tr.value_of(o), o._requires_grad))
            else:
                out_consts[i] = o
    return tr, graph, out_vals, out_consts, out_tree


def _user_frame_of(exc):
    """file:line of the innermost frame outside dualgraph in an exception's traceback."""
    tb, where = exc.__traceback__, None
    while tb is not None:
        fname = tb.tb_frame.f_code.co_filename
        if not os.path.abspath(fname).startswith(_PKG_DIR):
            where = f"{fname}:{tb.tb_lineno}"
        tb = tb.tb_next
    return where


class _Effects:
    """What the tracer saw besides the returned values, held weakly where it names outside tensors.

    Taking it releases the tracer's own references, so a tensor made inside the trace (dg.tensor([...])
    in the body) dies here: it is in `dead`, a constant of the graph; `alive` are captured state."""

    def __init__(self, tr):
        caps = [(weakref.ref(t), v, line, t._data) for t, v, line in tr.captured]
        self.mutations = [(weakref.ref(t), v) for t, v in tr.mutations.values()]
        self.grad_assigns = [(weakref.ref(t), v) for t, v in tr.grad_writes.values()]
        self.grad_reads = [(weakref.ref(t), was_none) for t, was_none in tr.grad_reads.values()]
        self.grad_parent = {k: weakref.ref(p) for k, p in tr.grad_parent.items()}
        self.arg_index = {id(s): i for s, _, i in tr.args.values()}
        self.sym_args = {id(s): s for s, _, _ in tr.args.values()}
        self.frozen = list(tr.frozen)
        self.overwritten = list(tr.overwritten.values())
        self.did_backward, self.has_custom = tr.did_backward, tr.has_custom
        tr.keep.clear()
        tr.captured = tr.mutations = tr.grad_writes = tr.grad_reads = tr.grad_parent = None
        tr.tensor_of.clear()
        self.alive = [(ref(), v, line) for ref, v, line, _ in caps if ref() is not None]
        self.dead = [(v, data) for ref, v, _, data in caps if ref() is None]


def _outputs(tr, out_vals, fx):
    """The graph's outputs (user outputs, written-back state, assigned grads) and the write-backs:
    [(kind, target, output index)] and [((kind, target), output index or None)]."""
    outputs = [v for _, v, _ in out_vals]
    writebacks = []
    for ref, v in fx.mutations:
        t = ref()
        if t is None:
            continue
        if id(t) in fx.arg_index:
            writebacks.append(("arg", fx.arg_index[id(t)], len(outputs)))
        else:
            writebacks.append(("cap", t, len(outputs)))
        outputs.append(v)
    grad_writes = []
    for ref, v in fx.grad_assigns:
        t = ref()
        if t is None:
            continue
        target = ("arg", fx.arg_index[id(t)]) if id(t) in fx.sym_args else ("cap", t)
        if v is None:
            grad_writes.append((target, None))
        else:
            grad_writes.append((target, len(outputs)))
            outputs.append(tr.value_of(v) if isinstance(v, Tensor) else v)
    return outputs, writebacks, grad_writes


def _bind_captures(graph, n_args, fx, fn, module):
    """Make the live captured tensors the graph inputs after the arguments, each with the path that
    reads it at a call and, where the path says one, a readable input name."""
    tensors = [t for t, _, _ in fx.alive]
    paths = find_paths(tensors, fn, module) if tensors else {}
    for t in tensors:
        if id(t) not in paths and id(t) in fx.grad_parent:
            owner = fx.grad_parent[id(t)]()
            if owner is not None:
                paths.setdefault(id(owner), None)
    inputs = list(graph.inputs[:n_args])
    captured = []
    used_names = {v.name for v in graph.inputs if v.name}
    for t, v, line in fx.alive:
        inputs.append(v)
        owner_ref = fx.grad_parent.get(id(t))
        expr = paths.get(id(t))
        if v.name is None:
            owner = owner_ref() if owner_ref is not None else None
            owner_name = input_name(paths.get(id(owner))) if owner is not None and paths.get(id(owner)) else None
            # (a closure variable has a path but no name worth printing: its grad stays unnamed)
            base = input_name(expr) if expr else (owner_name + "_grad" if owner_name else None)
            if base:
                n, k = base, 1
                while n in used_names:
                    k += 1
                    n = f"{base}_{k}"
                used_names.add(n)
                v.name = n
        captured.append(Captured(t, v, expr, owner_ref, line))
    graph.inputs = inputs
    return captured


def _call_plans(captured, writebacks, grad_writes):
    """The write-backs as a call addresses them. A captured target is addressed by its capture index
    ("capi"): the call writes to the tensor it read this time (a rebound attribute gets the update),
    and no strong reference is kept. `writebacks` and `grad_writes` keep the traced targets, which
    dg.onnx names the outputs after."""
    cap_index = {id(c.ref()): i for i, c in enumerate(captured)}
    writeback_plan = [("capi", cap_index[id(t)], k) if kind == "cap" and id(t) in cap_index else (kind, t, k)
                      for kind, t, k in writebacks]
    grad_write_plan = [(("capi", cap_index[id(t[1])]) if t[0] == "cap" and id(t[1]) in cap_index else t, k)
                       for t, k in grad_writes]
    return writeback_plan, grad_write_plan


def _donations(graph, outputs, writebacks, alive):
    """{output index: input index} for written-back state that may be computed straight into its own
    buffer (see executor: donate)."""
    cap_val = {id(t): v for t, v, _ in alive}
    pos = {id(v): i for i, v in enumerate(graph.inputs)}
    donate = {}
    for kind, target, k in writebacks:
        v_in = graph.inputs[target] if kind == "arg" else cap_val.get(id(target))
        if v_in is not None and id(v_in) in pos and v_in.aval == outputs[k].aval:
            donate[k] = pos[id(v_in)]
    return donate


def _frozen_values(traced, globals_read, descs):
    """Every Python value the trace baked in: static arguments first, then what the trace froze and the
    globals/closure values the code reads; numbers already explained by one of those are dropped."""
    frozen = list(traced)
    for kind, name, value, where in globals_read:
        frozen.append(FrozenValue(kind, name, value, where))
    for path, d in reversed(descs):
        if d[0] == "value":
            frozen.insert(0, FrozenValue("argument", path, d[2], ""))
    known = set()
    for fv in frozen:
        if fv.kind == "number":
            continue
        values = fv.value if isinstance(fv.value, tuple) else (fv.value,)
        for v in values:
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                known.add(v)
    return [fv for fv in frozen if not (fv.kind == "number" and fv.value in known)]


def view_root(v):
    """The value v is a view of (through view ops), or v."""
    while v is not None and v.producer is not None and getattr(v.producer.op, "view", False):
        v = v.producer.inputs[0]
    return v


def output_views(graph, n_out):
    """[(output, input)] for the first n_out outputs that are an input or a view of one (the executor
    returns that very memory)."""
    in_pos = {id(v): i for i, v in enumerate(graph.inputs)}
    return [(j, in_pos[id(r)]) for j, v in enumerate(graph.outputs[:n_out]) if id(r := view_root(v)) in in_pos]

