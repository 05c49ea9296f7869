"""Export-time rewrites: convolution and pooling back to ONNX's own Conv/MaxPool/AveragePool.

dualgraph writes conv2d as pad -> unfold (im2col) -> matmul and pooling as pad -> unfold -> max/mean,
so that every order of derivative comes from two linear primitives. For deployment the native ONNX
operators are smaller and much faster, so before lowering the exporter recognizes those chains in a
copy of the graph and replaces them with three export-only ops (not in the op table: they exist only
between this rewrite and the lowering; float32 only, the dtype onnxruntime has these kernels for, each with a numpy forward so verification can interpret the
rewritten graph node by node). Chains that do not match exactly (other users of the intermediate
values are fine; they keep their own nodes) are left to the general unfold lowering.
"""
import numpy as np

from ..ops.conv import _unfold_forward
from ..ops.infer import Aval, Dim
from ..ops.registry import Op


def _pad_spatial(xp, x, pads, value):
    (t, l, b, r) = pads
    if not any(pads):
        return x
    return xp.pad(x, ((0, 0), (0, 0), (t, b), (l, r)), mode="constant", constant_values=value)


def _conv_forward(xp, x, w, pads, strides, dilations, group):
    o, cg, kh, kw = w.shape
    cols = _unfold_forward(xp, _pad_spatial(xp, x, pads, 0), (kh, kw), strides, dilations)
    n, c, _, _, oh, ow = cols.shape
    cols = cols.reshape(n, group, cg * kh * kw, oh * ow)
    return (w.reshape(group, o // group, cg * kh * kw) @ cols).reshape(n, o, oh, ow)


def _out(size, k, s, d, p0, p1):
    if isinstance(size, Dim):
        return None
    return (size + p0 + p1 - d * (k - 1) - 1) // s + 1


def _conv_infer(x, w, pads, strides, dilations, group):
    k = w.shape[2:]
    spatial = tuple(_out(x.shape[2 + i], k[i], strides[i], dilations[i], pads[i], pads[i + 2]) for i in range(2))
    return Aval((x.shape[0], w.shape[0]) + spatial, x.dtype)


def _pool_forward(kind):
    def forward(xp, x, kernel, pads, strides, dilations):
        value = -np.inf if kind == "max" else 0
        cols = _unfold_forward(xp, _pad_spatial(xp, x, pads, value), kernel, strides, dilations)
        return cols.max(axis=(2, 3)) if kind == "max" else cols.mean(axis=(2, 3)).astype(x.dtype)
    return forward


def _pool_infer(x, kernel, pads, strides, dilations):
    spatial = tuple(_out(x.shape[2 + i], kernel[i], strides[i], dilations[i], pads[i], pads[i + 2])
                    for i in range(2))
    return Aval(tuple(x.shape[:2]) + spatial, x.dtype)


def _conv_rule(ctx, node, x, w):
    a = ctx.attrs(node)
    dt = node.outputs[0].aval.dtype
    return ctx.emit("Conv", [ctx.arg(node.inputs[0], x, dt), ctx.arg(node.inputs[1], w, dt)],
                    kernel_shape=list(node.inputs[1].aval.shape[2:]), pads=list(a["pads"]),
                    strides=list(a["strides"]), dilations=list(a["dilations"]), group=int(a["group"]))


def _maxpool_rule(ctx, node, x):
    a = ctx.attrs(node)
    return ctx.emit("MaxPool", [x], kernel_shape=list(a["kernel"]), pads=list(a["pads"]),
                    strides=list(a["strides"]), dilations=list(a["dilations"]))


def _avgpool_rule(ctx, node, x):
    a = ctx.attrs(node)
    return ctx.emit("AveragePool", [x], kernel_shape=list(a["kernel"]), pads=list(a["pads"]),
                    strides=list(a["strides"]), count_include_pad=1)


def _internal(name, forward, infer, rule):
    return Op(name=name, forward=forward, infer=infer, vjp=None, onnx=rule, extra={"export_only": True})


CONV = _internal("conv2d", _conv_forward, _conv_infer, _conv_rule)
MAXPOOL = _internal("max_pool2d", _pool_forward("max"), _pool_infer, _maxpool_rule)
AVGPOOL = _internal("avg_pool2d", _pool_forward("avg"), _pool_infer, _avgpool_rule)


def _producer(v, name):
    p = getattr(v, "producer", None) if v is not None else None
    return p if p is not None and p.op.name == name else None


def _source_and_pads(x, pad_value):
    """The unpadded input and ONNX pads [top, left, bottom, right] when x is a spatial constant pad."""
    p = _producer(x, "pad")
    if p is not None:
        a = p.attrs
        widths = a["pad_width"]
        fill = float(a["value"])
        same = fill == pad_value or (np.isinf(pad_value) and np.isinf(fill) and fill < 0)
        if a["mode"] == "constant" and same and len(widths) == 4 and widths[0] == (0, 0) and widths[1] == (0, 0):
            (t, b), (l, r) = widths[2], widths[3]
            return p.inputs[0], (int(t), int(l), int(b), int(r))
    return x, (0, 0, 0, 0)


def _static(shape):
    return all(isinstance(d, int) for d in shape)


def rewrite(graph):
    """A copy of `graph` with conv/pool chains as Conv/MaxPool/AveragePool nodes (or `graph` itself
    when nothing matches)."""
    if not any(n.op.name == "unfold" for n in graph.nodes):
        return graph
    g = graph.copy()
    users = g.users()
    outputs = {id(v) for v in g.outputs}
    replace = {}   # id(old node) -> new node (placed where the old one was)

    def only_user(v, node):
        return id(v) not in outputs and [u is node for u in users.get(id(v), [])] == [True]

    for node in g.nodes:
        name = node.op.name
        if node.outputs[0].aval.dtype != np.float32:   # onnxruntime's Conv/pooling kernels are float32
            continue
        if name == "matmul":
            _match_conv(node, users, outputs, only_user, replace)
        elif name == "max":
            _match_pool(node, "max", replace)
        elif name == "div":
            _match_avg(node, only_user, replace)
    if not replace:
        return graph
    nodes = []
    for node in g.nodes:
        new = replace.get(id(node))
        nodes.append(new if new is not None else node)
    g.nodes = nodes
    return _dce(g)


def _new_node(op, inputs, attrs, old):
    from ..graph.ir import Node
    node = Node(op, inputs, attrs, list(old.outputs), old.source)
    for o in node.outputs:
        o.producer = node
    return node


def _match_conv(m, users, outputs, only_user, replace):
    a, b = m.inputs
    r1 = _producer(b, "reshape")
    ra = _producer(a, "reshape")
    if r1 is None or ra is None:
        return
    u = _producer(r1.inputs[0], "unfold")
    w = ra.inputs[0]
    if u is None or w is None or len(w.aval.shape) != 4 or not _static(w.aval.shape):
        return
    r2s = users.get(id(m.outputs[0]), [])
    if len(r2s) != 1 or r2s[0].op.name != "reshape" or not only_user(m.outputs[0], r2s[0]):
        return
    r2 = r2s[0]
    o, cg, kh, kw = w.aval.shape
    at = u.attrs
    if tuple(at["kernel"]) != (kh, kw) or len(a.aval.shape) != 3:
        return
    group = a.aval.shape[0]
    cols = u.outputs[0].aval.shape          # (N, C, kh, kw, OH, OW)
    out = r2.outputs[0].aval.shape          # (N, O, OH, OW)
    if len(out) != 4 or len(cols) != 6 or not _static(out[1:]) or not _static(cols[1:]):
        return
    if out[1] != o or tuple(out[2:]) != tuple(cols[4:]) or cols[1] != cg * group or a.aval.shape[1] * group != o:
        return
    if tuple(b.aval.shape[1:]) != (group, cg * kh * kw, cols[4] * cols[5]):
        return
    x, pads = _source_and_pads(u.inputs[0], 0.0)
    replace[id(r2)] = _new_node(CONV, [x, w], {"pads": pads, "strides": tuple(at["stride"]),
                                             "dilations": tuple(at["dilation"]), "group": int(group)}, r2)


def _match_pool(node, kind, replace):
    u = _producer(node.inputs[0], "unfold")
    if u is None or tuple(node.attrs.get("axes") or ()) != (2, 3) or node.attrs.get("keepdims"):
        return
    if len(u.inputs[0].aval.shape) != 4:
        return
    x, pads = _source_and_pads(u.inputs[0], -np.inf)
    at = u.attrs
    replace[id(node)] = _new_node(MAXPOOL, [x], {"kernel": tuple(at["kernel"]), "pads": pads,
                                                 "strides": tuple(at["stride"]),
                                                 "dilations": tuple(at["dilation"])}, node)


def _match_avg(node, only_user, replace):
    s, c = node.inputs
    total = _producer(s, "sum")
    if total is None or c is None or not getattr(c, "weak", False) or not only_user(s, node):
        return
    u = _producer(total.inputs[0], "unfold")
    if u is None or tuple(total.attrs.get("axes") or ()) != (2, 3) or total.attrs.get("keepdims"):
        return
    at = u.attrs
    kh, kw = at["kernel"]
    if c.const != kh * kw or tuple(at["dilation"]) != (1, 1) or len(u.inputs[0].aval.shape) != 4:
        return
    if node.outputs[0].aval.dtype != u.inputs[0].aval.dtype:
        return
    x, pads = _source_and_pads(u.inputs[0], 0.0)
    replace[id(node)] = _new_node(AVGPOOL, [x], {"kernel": (kh, kw), "pads": pads, "strides": tuple(at["stride"]),
                                                 "dilations": (1, 1)}, node)


def _dce(g):
    """Drop pure nodes none of whose outputs is used any more."""
    live = {id(v) for v in g.outputs}
    keep = []
    for node in reversed(g.nodes):
        if not node.op.pure or any(id(o) in live for o in node.outputs) or node.subgraphs:
            keep.append(node)
            for v in node.inputs:
                if v is not None:
                    live.add(id(v))
    g.nodes = list(reversed(keep))
    return g
