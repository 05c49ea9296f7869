"""verify=True: run the exported model in onnxruntime and compare with dualgraph.

Compares on the example inputs and on inputs with randomized sizes along the dynamic axes. On a
mismatch the error gives, per output, the max abs/rel error, and the first graph node whose output
diverges (found by exposing every intermediate value of the model as an output and comparing it with
what dualgraph's interpreter, `function.executor.interpret`, computes for the same graph node by node).
"""
import numpy as np
import onnx
from onnx import helper

from ..function.executor import interpret
from ..ops.dims import DimExpr, resolve
from .export import VerificationError


def session(model):
    import onnxruntime as ort
    opts = ort.SessionOptions()
    opts.log_severity_level = 4   # errors come back as exceptions (and into our messages)
    data = model if isinstance(model, (bytes, str)) else model.SerializeToString()
    return ort.InferenceSession(data, opts, providers=["CPUExecutionProvider"])


def _impure_values(graph):
    """ids of values that depend on a random (impure) op: compared by shape only."""
    tainted = set()
    for node in graph.nodes:
        if not node.op.pure or any(v is not None and id(v) in tainted for v in node.inputs):
            tainted.update(id(o) for o in node.outputs)
    return tainted


def errors(got, want):
    got, want = np.asarray(got), np.asarray(want)
    if got.shape != want.shape:
        return np.inf, np.inf
    if got.dtype == np.bool_ or want.dtype == np.bool_:
        bad = float(np.mean(got != want)) if got.size else 0.0
        return bad, bad
    g, w = got.astype(np.float64), want.astype(np.float64)
    same = (g == w) | (np.isnan(g) & np.isnan(w))
    diff = np.where(same, 0.0, np.abs(g - w))
    if not diff.size:
        return 0.0, 0.0
    abs_err = float(np.max(diff))
    rel_err = float(np.max(diff / np.maximum(np.abs(w), 1e-30)))
    return abs_err, rel_err


def _close(got, want, rtol, atol):
    got, want = np.asarray(got), np.asarray(want)
    if got.shape != want.shape:
        return False
    if got.dtype.kind in "biu" and want.dtype.kind in "biu":
        return bool(np.array_equal(got, want))
    return bool(np.allclose(got.astype(np.float64), want.astype(np.float64), rtol=rtol, atol=atol,
                            equal_nan=True))


def first_divergence(model, info, graph, feeds, rtol, atol):
    """(op name, source, abs err, rel err) of the first node whose ONNX output differs, or None."""
    debug = onnx.ModelProto()
    debug.CopyFrom(model)
    have = {o.name for o in debug.graph.output}
    order = []
    for node in graph.nodes:
        for o in node.outputs:
            name = info.value_names.get(id(o))
            if name and name not in have:
                debug.graph.output.append(helper.make_empty_tensor_value_info(name))
                have.add(name)
            order.append((node, o, name))
    try:
        sess = session(debug)
        names = [o.name for o in sess.get_outputs()]
        got = dict(zip(names, sess.run(None, feeds)))
    except Exception:
        return None
    arrays = [feeds[info.input_names[info.fed.index(i)]] if i in info.fed else _init_array(model, info, graph, i)
              for i in range(len(graph.inputs))]
    vals = {}

    def keep(node, outs):
        vals.update((id(o), np.asarray(a)) for o, a in zip(node.outputs, outs))
    interpret(graph, arrays, on_node=keep)
    tainted = _impure_values(graph)
    for node, o, name in order:
        if name not in got or id(o) in tainted or id(o) not in vals:
            continue
        if not _close(got[name], vals[id(o)], rtol, atol):
            a, r = errors(got[name], vals[id(o)])
            return node.op.name, node.source, a, r
    return None


def _init_array(model, info, graph, i):
    from onnx import numpy_helper
    name = info.value_names[id(graph.inputs[i])]
    for t in model.graph.initializer:
        if t.name == name:
            return numpy_helper.to_array(t)
    raise KeyError(name)


def random_feeds(info, graph, feeds, rng):
    """Inputs like `feeds` with new random sizes along every symbolic dim (and fresh values)."""
    sizes = {}
    for d in _input_dims(info, graph):
        traced = info.traced_sizes.get(d)
        if traced is None:   # a dim symbolic in the trace: its size in the example
            traced = _example_size(info, graph, feeds, d)
        choices = [n for n in range(1, 2 * traced + 4) if n != traced]
        sizes[d] = int(rng.choice(choices))
    out = {}
    for k, i in enumerate(info.fed):
        v = graph.inputs[i]
        ex = np.asarray(feeds[info.input_names[k]])
        shape = resolve(tuple(v.aval.shape), sizes)
        out[info.input_names[k]] = _random_like(ex, shape, rng)
    return out, sizes


def _input_dims(info, graph):
    seen = []
    for i in info.fed:
        for d in graph.inputs[i].aval.shape:
            if hasattr(d, "name") and not isinstance(d, DimExpr) and d not in seen:
                seen.append(d)
    return seen


def _example_size(info, graph, feeds, d):
    for k, i in enumerate(info.fed):
        for axis, e in enumerate(graph.inputs[i].aval.shape):
            if e is d:
                return int(np.shape(feeds[info.input_names[k]])[axis])
    return 2


def _random_like(ex, shape, rng):
    if ex.dtype == np.bool_:
        return rng.random(shape) < 0.5
    if ex.dtype.kind in "iu":
        lo, hi = (int(ex.min()), int(ex.max())) if ex.size else (0, 1)
        return rng.integers(lo, hi + 1, size=shape).astype(ex.dtype)
    mean, std = (float(ex.mean()), float(ex.std()) or 1.0) if ex.size else (0.0, 1.0)
    return (rng.standard_normal(shape) * std + mean).astype(ex.dtype)


def check_outputs(model, info, graph, feeds, reference, rtol, atol, label):
    """Run ORT on feeds, compare with reference(feeds) -> list of arrays; raise VerificationError."""
    sess = session(model)
    try:
        got = sess.run(info.output_names, feeds)
    except Exception as e:   # the model cannot even run at these sizes
        shapes = ", ".join(f"{k}{list(np.shape(v))}" for k, v in feeds.items())
        raise VerificationError(f"onnx export verification failed ({label}): onnxruntime could not run the "
                                f"model on {shapes}: {str(e).splitlines()[0][:500]}\n  a dim declared dynamic "
                                f"was probably specialized while tracing (a size-1 axis squeezed or broadcast, "
                                f"a size used in Python): declare that axis static") from None
    want = reference(feeds)
    tainted = _impure_values(graph)
    bad = []
    for k, (g, w) in enumerate(zip(got, want)):
        v = graph.outputs[k]
        if id(v) in tainted:
            if np.shape(g) != np.shape(w):
                bad.append((info.output_names[k], np.inf, np.inf, f"shape {np.shape(g)} vs {np.shape(w)}"))
            continue
        if not _close(g, w, rtol, atol):
            a, r = errors(g, w)
            note = "" if np.shape(g) == np.shape(w) else f"shape {np.shape(g)} vs {np.shape(w)}"
            bad.append((info.output_names[k], a, r, note))
    if bad:
        lines = [f"onnx export verification failed ({label}; rtol={rtol}, atol={atol}):"]
        for name, a, r, note in bad:
            lines.append(f"  output {name!r}: max abs error {a:.3g}, max rel error {r:.3g}"
                         + (f" ({note})" if note else ""))
        first = first_divergence(model, info, graph, feeds, rtol, atol)
        if first is not None:
            op, src, a, r = first
            lines.append(f"  first diverging node: {op} at {src or '<unknown source>'} "
                         f"(max abs error {a:.3g}, max rel error {r:.3g})")
        else:
            lines.append("  every node agrees with dualgraph's interpreter of the same graph: the traced graph "
                         "itself is only right at the traced sizes")
            frozen = [f for f in getattr(graph, "frozen", ()) if getattr(f, "kind", "") == "shape"]
            if frozen:
                lines.append("  shapes the trace read as Python numbers (frozen into the graph):")
                lines.extend(f"    {f!r}" for f in frozen[:8])
            lines.append("  keep sizes inside dualgraph (tensor ops, or + - * / on x.shape) instead of math, "
                         "numpy or int() on them")
        raise VerificationError("\n".join(lines))
    return got


def verify(model, info, graph, feeds, reference, rtol=1e-4, atol=1e-5, n_random=2, seed=0):
    """Compare onnxruntime with `reference` on `feeds` and on n_random randomly resized copies."""
    check_outputs(model, info, graph, feeds, reference, rtol, atol, "example inputs")
    if not _input_dims(info, graph):
        return
    rng = np.random.default_rng(seed)
    for _ in range(n_random):
        new, sizes = random_feeds(info, graph, feeds, rng)
        label = "dynamic sizes " + ", ".join(f"{d.name}={n}" for d, n in sizes.items())
        check_outputs(model, info, graph, new, reference, rtol, atol, label)


def graph_reference(info, graph, initial):
    """A reference that runs the IR interpreter (for exports of a bare Graph)."""
    def ref(feeds):
        arrays = []
        for i, v in enumerate(graph.inputs):
            if i in info.fed:
                arrays.append(feeds[info.input_names[info.fed.index(i)]])
            else:
                arrays.append(initial[i])
        return [np.asarray(o) for o in interpret(graph, arrays)]
    return ref
