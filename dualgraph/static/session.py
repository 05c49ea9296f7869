"""Session.run: prune the graph to what the fetches need, optimize it with @dg.function's passes,
compile it once per set of fetches, feed it, and write Variable updates back."""
import numpy as np

from ..function import passes as _passes
from ..function.executor import Executable
from ..tensor import Tensor
from .graph import (Operation, StaticGraphError, _session_stack, get_default_graph, plan_for,
                    respecialize)


class Session:
    """Runs fetches of a static graph (TF1's tf.Session): `sess.run(fetches, feed_dict)`.

    `with Session() as sess:` also makes it the default session, which `tensor.eval()` and
    `operation.run()` use."""

    def __init__(self, target="", graph=None, config=None, passes=None, disable=()):
        if graph is None and not isinstance(target, str):
            target, graph = "", target   # Session(graph): dualgraph's older positional form
        if target:
            raise StaticGraphError(f"Session: target {target!r}: dualgraph runs graphs in this process only "
                                   f"(target='')")
        if config is not None:
            raise StaticGraphError("Session: config= (a TensorFlow ConfigProto) has no dualgraph equivalent; "
                                   "leave it out")
        self.graph = graph or get_default_graph()
        self.passes = _passes.resolve(passes, disable)
        self._plans = {}
        self._closed = False

    def __enter__(self):
        _session_stack().append(self)
        return self

    def __exit__(self, *exc):
        stack = _session_stack()
        if stack and stack[-1] is self:
            stack.pop()
        self.close()

    def as_default(self):
        """`with sess.as_default():` makes this the default session without closing it afterwards."""
        return _AsDefault(self)

    def close(self):
        self._closed = True
        self._plans.clear()

    def compiled_graph(self, fetches):
        """The pruned, optimized IR graph this session runs for `fetches` (for reading and tests)."""
        return self._plan(self.graph, _flatten(fetches)[0]).optimized

    def _plan(self, graph, items):
        key = (id(graph),) + tuple(id(x) for x in items)
        plan = self._plans.get(key)
        if plan is None:
            plan = plan_for(graph, items)
            g = graph.ir.__class__(graph.ir.name)
            g.inputs, g.nodes, g.outputs = list(plan.inputs), list(plan.nodes), list(plan.outputs)
            plan.optimized = _passes.optimize(g, self.passes)
            plan.executable = Executable(plan.optimized, np)
            plan.keep = (graph, items)  # keeps ids in the key unique while the plan lives
            self._plans[key] = plan
        return plan

    def run(self, fetches, feed_dict=None):
        """Compute `fetches` as numpy values: a tensor, Variable, operation (None; an assign's new
        value), a tensor's name ("x:0"), or lists, tuples, dicts and nests of them, returned in the
        same structure."""
        if self._closed:
            raise StaticGraphError("this Session is closed")
        items, rebuild = _flatten(fetches)
        items = [self.graph.get_tensor_by_name(x) if isinstance(x, str) else x for x in items]
        fed = self._feeds(feed_dict or {})
        reads = [x.value for x in items if isinstance(x, Operation) and x.value is not None]
        graph, run_items = self.graph, items + reads
        ranks = {pid: arr.ndim for pid, (ph, arr) in fed.items() if ph._any_shape and arr.ndim != 0}
        if ranks:
            spec = respecialize(self.graph, ranks)
            graph, run_items = spec.graph, [spec.item(x) for x in run_items]
            fed = {id(spec.tensors[pid]): (spec.tensors[pid], arr) for pid, (_, arr) in fed.items()}
        plan = self._plan(graph, run_items)
        arrays = []
        for v in plan.inputs:
            src = plan.feeds_by_value.get(id(v))
            if src is None:
                raise StaticGraphError(f"graph input {v} is neither a placeholder nor a Variable")
            if isinstance(src, Tensor) and src._symbolic:  # a placeholder
                if id(src) not in fed:
                    raise StaticGraphError(
                        f"placeholder {src._placeholder_name!r} ({src._aval}) must be fed to compute these "
                        f"fetches: pass feed_dict={{{src._placeholder_name}: value}}")
                arrays.append(fed[id(src)][1])
            else:
                arrays.append(src._data)
        outs = plan.executable(*arrays)
        results = [np.array(o, copy=True) for o in outs[:plan.n_fetch]]
        for var, k in plan.updates:
            new = outs[k]
            np.copyto(var._data, new, casting="same_kind")
            var._version[0] += 1
        n_plain = len(results) - len(reads)
        plain, read = iter(results[:n_plain]), iter(results[n_plain:])
        values = [(None if x.value is None else _scalar(next(read))) if isinstance(x, Operation)
                  else _scalar(next(plain)) for x in items]
        return rebuild(values)

    def _feeds(self, feed_dict):
        fed = {}
        for key, value in feed_dict.items():
            if isinstance(key, str):
                bare = key[:-2] if key.endswith(":0") else key
                found = [p for p in self.graph.placeholders if p._placeholder_name == bare]
                if not found:
                    raise StaticGraphError(f"feed_dict: no placeholder named {key!r} in this graph")
                key = found[0]
            if not (isinstance(key, Tensor) and getattr(key, "_placeholder_name", None)):
                raise StaticGraphError(f"feed_dict keys must be placeholders of this graph (or their names), "
                                       f"got {key!r}")
            if key._builder is not self.graph.builder:
                raise StaticGraphError(f"placeholder {key._placeholder_name!r} belongs to another graph")
            fed[id(key)] = (key, _check_feed(key, value))
        return fed


class InteractiveSession(Session):
    """A Session that makes itself the default on creation (TF1's tf.InteractiveSession), so that
    `tensor.eval()` and `op.run()` work without a `with` block; `close()` undoes that."""

    def __init__(self, target="", graph=None, config=None, **kwargs):
        super().__init__(target, graph, config, **kwargs)
        _session_stack().append(self)

    def close(self):
        stack = _session_stack()
        if self in stack:
            stack.remove(self)
        super().close()


class _AsDefault:
    def __init__(self, sess):
        self.sess = sess

    def __enter__(self):
        _session_stack().append(self.sess)
        return self.sess

    def __exit__(self, *exc):
        _session_stack().remove(self.sess)


def _check_feed(ph, value):
    name, aval = ph._placeholder_name, ph._aval
    arr = value.numpy() if isinstance(value, Tensor) else np.asarray(value)
    if arr.dtype != aval.dtype:
        bool_mix = (arr.dtype == np.bool_) != (aval.dtype == np.bool_)
        if arr.dtype == object or bool_mix or not np.can_cast(arr.dtype, aval.dtype, casting="same_kind"):
            raise StaticGraphError(f"placeholder {name!r} expects dtype {aval.dtype}, was fed {arr.dtype}")
        arr = arr.astype(aval.dtype)
    declared = ph._declared_shape
    if declared is not None:
        ok = len(arr.shape) == len(declared) and all(not isinstance(d, int) or d == s
                                                     for d, s in zip(declared, arr.shape))
        if not ok:
            shown = tuple(None if not isinstance(d, int) else d for d in declared)
            raise StaticGraphError(f"placeholder {name!r} expects shape {shown}, was fed shape {arr.shape}")
    return arr


def _scalar(arr):
    return arr[()] if arr.ndim == 0 else arr


def _flatten(fetches):
    """Flat list of fetch items and a function rebuilding the user's structure (nested lists, tuples,
    named tuples and dicts) from their values."""
    items = []

    def walk(x):
        if isinstance(x, dict):
            keys = list(x)
            subs = [walk(x[k]) for k in keys]
            return lambda vals: type(x)((k, s(vals)) for k, s in zip(keys, subs)) if type(x) is not dict \
                else {k: s(vals) for k, s in zip(keys, subs)}
        if isinstance(x, (list, tuple)):
            subs = [walk(i) for i in x]
            if isinstance(x, tuple) and hasattr(x, "_fields"):
                return lambda vals: type(x)(*[s(vals) for s in subs])
            kind = type(x)
            return lambda vals: kind([s(vals) for s in subs])
        k = len(items)
        items.append(x)
        return lambda vals: vals[k]

    return items, walk(fetches)
