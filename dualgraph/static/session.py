"""Session.run: prune the graph to what the fetches need, optimize it with @dg.function's passes,
compile it once per set of fetches, feed it, and write Variable updates back."""
import numpy as np

from ..function import passes as _passes
from ..function.executor import Executable
from ..tensor import Tensor
from .graph import Operation, StaticGraphError, get_default_graph, plan_for


class Session:
    """Runs fetches of a static graph (TF1's tf.Session): `sess.run(fetches, feed_dict)`."""

    def __init__(self, graph=None, passes=None, disable=()):
        self.graph = graph or get_default_graph()
        self.passes = _passes.resolve(passes, disable)
        self._plans = {}
        self._closed = False

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        self._closed = True
        self._plans.clear()

    def compiled_graph(self, fetches):
        """The pruned, optimized IR graph this session runs for `fetches` (for reading and tests)."""
        return self._plan(_flatten(fetches)[0]).optimized

    def _plan(self, items):
        key = tuple(id(x) for x in items)
        plan = self._plans.get(key)
        if plan is None:
            plan = plan_for(self.graph, items)
            g = self.graph.ir.__class__(self.graph.ir.name)
            g.inputs, g.nodes, g.outputs = list(plan.inputs), list(plan.nodes), list(plan.outputs)
            plan.optimized = _passes.optimize(g, self.passes)
            plan.executable = Executable(plan.optimized, np)
            plan.keep = items  # keeps ids in the key unique while the plan lives
            self._plans[key] = plan
        return plan

    def run(self, fetches, feed_dict=None):
        """Compute `fetches` (a tensor, Variable, operation, or a list/tuple/dict of them) as numpy arrays."""
        if self._closed:
            raise StaticGraphError("this Session is closed")
        items, rebuild = _flatten(fetches)
        plan = self._plan(items)
        fed = self._feeds(feed_dict or {})
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
                arrays.append(fed[id(src)])
            else:
                arrays.append(src._data)
        outs = plan.executable(*arrays)
        results = [np.array(o, copy=True) for o in outs[:plan.n_fetch]]
        for var, k in plan.updates:
            new = outs[k]
            np.copyto(var._data, new, casting="same_kind")
            var._version[0] += 1
        it = iter(results)
        values = [None if isinstance(x, Operation) else _scalar(next(it)) for x in items]
        return rebuild(values)

    def _feeds(self, feed_dict):
        fed = {}
        for key, value in feed_dict.items():
            if isinstance(key, str):
                key = next((p for p in self.graph.placeholders if p._placeholder_name == key), None) or key
            if not (isinstance(key, Tensor) and getattr(key, "_placeholder_name", None)):
                raise StaticGraphError(f"feed_dict keys must be placeholders of this graph, got {key!r}")
            if key._builder is not self.graph.builder:
                raise StaticGraphError(f"placeholder {key._placeholder_name!r} belongs to another graph")
            fed[id(key)] = _check_feed(key, value)
        return fed


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
    elif arr.ndim != 0:
        raise StaticGraphError(f"placeholder {name!r} is a scalar (shape=None), was fed shape {arr.shape}")
    return arr


def _scalar(arr):
    return arr[()] if arr.ndim == 0 else arr


def _flatten(fetches):
    """Flat list of fetch items and a function rebuilding the user's structure from their values."""
    if isinstance(fetches, dict):
        keys = list(fetches)
        return [fetches[k] for k in keys], lambda vals: dict(zip(keys, vals))
    if isinstance(fetches, (list, tuple)):
        kind = type(fetches)
        return list(fetches), lambda vals: kind(vals)
    return [fetches], lambda vals: vals[0]

