"""Kernel selection: rewrite an optimized graph's node patterns into the kernel ops of
dualgraph.ops.kernels, which print in the IR and run their C loops (with numpy fallbacks).

    where(m, a, 0)                       -> where_zero(m, a)            bool m of a's shape, float a
    where(m, a, 0) and sum(it, axes=(0,)) -> where_colsum(m, a)         2-D, when the C loop builds
    log_softmax(z, 1) read by nll_loss   -> log_softmax_nll(z, t[, w])  2-D scores
    log_softmax_grad(nll_loss_grad(g, lp, t[, w]), lp, 1)
                                         -> nll_log_softmax_grad(g, lp, t[, w])
    transpose(matmul(a, b)), its only use -> matmul_t(a, b)             2-D floats
    matmul(a, b), a N-D and b 2-D           -> matmul_rows(a, b)          floats of one dtype
    full_like(x, c), a few fixed elements -> copy(constant)            (backward's seed ones_like(loss))

where_zero also replaces where-zero nodes inside fused elementwise bodies (the fused kernels take
it from its record). The cross-entropy, column-sum and transposed-matmul kernels are CPU loops: they
are chosen only when `graph.meta["device"]` (set by whoever compiles the graph) is absent or "cpu".
Runs after `fuse`; the ONNX exporter reads the graph before either.
"""
import numpy as np

from ...graph.avals import Aval
from ...ops.creation import FULL_LIKE
from ...dtypes import numpy_agrees
from ...graph.ir import Node, Value
from ...kernels.where_zero import c_where_colsum
from ...ops.elementwise import COPY, WHERE
from ...ops.kernels import (FUSED, FUSED_REDUCE, LOG_SOFTMAX_NLL, MATMUL_ROWS, MATMUL_T, NLL_LOG_SOFTMAX_GRAD,
                            WHERE_COLSUM, WHERE_ZERO)
from ...ops.linalg import MATMUL
from ...ops.loss import NLL_LOSS, NLL_LOSS_GRAD
from ...ops.reduction import SUM
from ...ops.shape import TRANSPOSE
from ...ops.softmax import LOG_SOFTMAX, LOG_SOFTMAX_GRAD

SMALL_FILL = 64  # elements: a fill this small is a copy of a constant made once


def lower_kernels(graph):
    cpu = str(graph.meta.get("device", "cpu")) == "cpu"
    for node in graph.nodes:
        if node.op is FUSED or node.op is FUSED_REDUCE:
            body = node.subgraphs["body"]
            body.nodes = [_where_zero(n) or n for n in body.nodes]
    users = graph.users()
    index = {id(n): k for k, n in enumerate(graph.nodes)}
    kept = {id(v) for v in graph.outputs} | {id(v) for v in graph.inputs}
    at = {}       # id(node) -> the kernel node that replaces it there
    gone = set()  # ids of nodes computed by a kernel node placed at another's position
    for node in graph.nodes:
        if id(node) in gone or id(node) in at:
            continue
        op = node.op
        new = None
        if cpu and op is LOG_SOFTMAX:
            new = _xent_forward(node, users, index)
        elif cpu and op is LOG_SOFTMAX_GRAD:
            new = _xent_backward(node, users, kept)
        elif cpu and op is TRANSPOSE:
            new = _matmul_t(node, users, kept)
        elif op is WHERE and _is_where_zero(node):
            new = (_where_colsum(node, users) if cpu else None) or (_where_zero(node), None)
        elif op is FULL_LIKE:
            new = _small_fill(node)
            new = new and (new, None)
        elif cpu and op is MATMUL:
            new = _matmul_rows(node)
            new = new and (new, None)
        if new is None:
            continue
        kernel, partner = new
        if partner is not None:
            gone.add(id(partner))
        anchor = node if op is not TRANSPOSE else node.inputs[0].producer
        if op is TRANSPOSE:
            gone.add(id(node))
        at[id(anchor)] = kernel
        for o in kernel.outputs:
            o.producer = kernel
    graph.nodes = [at.get(id(n), n) for n in graph.nodes if id(n) not in gone]
    return graph


def _is_where_zero(node):
    """where(bool mask, float a, 0) with a's shape and dtype."""
    ins = node.inputs
    return (len(ins) == 3 and ins[2] is not None and ins[2].weak and ins[2].const == 0
            and ins[1] is not None and not ins[1].weak and ins[1].aval.dtype.kind == "f"
            and ins[0] is not None and ins[0].aval.dtype.kind == "b"
            and ins[1].aval.dtype == node.outputs[0].aval.dtype
            and tuple(ins[1].aval.shape) == tuple(node.outputs[0].aval.shape))


def _where_zero(node):
    if node.op is not WHERE or not _is_where_zero(node):
        return None
    kernel = Node(WHERE_ZERO, node.inputs[:2], {}, node.outputs, node.source)
    for o in kernel.outputs:
        o.producer = kernel
    return kernel


def _where_colsum(node, users):
    """A 2-D where-zero whose result is also summed over axis 0 (ReLU backward and the bias gradient)."""
    m, a = node.inputs[:2]
    av = a.aval
    if (av.ndim != 2 or m.aval.dtype != np.bool_ or tuple(m.aval.shape) != tuple(av.shape)
            or c_where_colsum(av.dtype) is None):
        return None
    for u in users.get(id(node.outputs[0]), ()):
        if (u.op is SUM and tuple(u.attrs.get("axes") or ()) == (0,) and not u.attrs.get("keepdims")
                and u.outputs[0].aval.dtype == av.dtype):
            return Node(WHERE_COLSUM, [m, a], {}, [node.outputs[0], u.outputs[0]], node.source), u
    return None


def _xent_forward(node, users, index):
    """log_softmax(z, 1) of 2-D z with an nll_loss reading it, whose other operands exist already."""
    lp = node.outputs[0]
    if node.attrs["axis"] != 1 or lp.aval.ndim != 2:
        return None
    for u in users.get(id(lp), ()):
        if (u.op is NLL_LOSS and u.inputs[0] is lp
                and all(v is None or v.producer is None or index.get(id(v.producer), -1) < index[id(node)]
                        for v in u.inputs[1:])):
            # the loss's source line: a bad target is the loss's error
            return Node(LOG_SOFTMAX_NLL, [node.inputs[0]] + u.inputs[1:], u.attrs, [lp, u.outputs[0]],
                        u.source), u
    return None


def _xent_backward(node, users, kept):
    """log_softmax_grad(gl, lp, 1) whose gl = nll_loss_grad(g, lp, ...) feeds only it."""
    if node.attrs["axis"] != 1 or node.outputs[0].aval.ndim != 2:
        return None
    gl, lp = node.inputs
    p = gl.producer
    if (p is None or p.op is not NLL_LOSS_GRAD or p.inputs[1] is not lp or len(users.get(id(gl), ())) != 1
            or id(gl) in kept):
        return None
    return Node(NLL_LOG_SOFTMAX_GRAD, p.inputs, p.attrs, node.outputs, node.source), p


def _matmul_t(node, users, kept):
    """transpose(v, (1, 0)) of a 2-D float v = matmul(a, b) read nowhere else."""
    if tuple(node.attrs["axes"]) != (1, 0):
        return None
    v = node.inputs[0]
    p = v.producer
    if (p is None or p.op is not MATMUL or len(users.get(id(v), ())) != 1 or id(v) in kept
            or not all(u is not None and u.aval.ndim == 2 for u in p.inputs) or v.aval.dtype.kind != "f"
            or len(p.outputs) != 1
            or not numpy_agrees(*[u.const if u.weak else u.aval for u in p.inputs])):
        return None
    return Node(MATMUL_T, p.inputs, {}, node.outputs, p.source), None


def _matmul_rows(node):
    """matmul(a, b) with a of 3 or more dims and b 2-D (a linear layer on a sequence): the kernel runs it
    as one 2-D product over a's rows where a is contiguous, instead of numpy's per-batch BLAS calls."""
    a, b = node.inputs
    if (a is None or b is None or a.weak or b.weak or a.aval.ndim <= 2 or b.aval.ndim != 2
            or a.aval.dtype != b.aval.dtype or a.aval.dtype.kind != "f" or len(node.outputs) != 1):
        return None
    return Node(MATMUL_ROWS, [a, b], {}, node.outputs, node.source)


def _small_fill(node):
    out = node.outputs[0].aval
    if not all(isinstance(d, int) for d in out.shape) or int(np.prod(out.shape)) > SMALL_FILL:
        return None
    filled = np.full(tuple(out.shape), node.attrs["value"], dtype=out.dtype)
    c = Value(Aval(filled.shape, filled.dtype), const=filled)
    return Node(COPY, [c], {}, node.outputs, node.source)
