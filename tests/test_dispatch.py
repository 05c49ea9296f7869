"""The dispatch seam: every mode-dependent operation goes through the current `Mode`, and the modules
below it never reach up to the layers that implement the other modes."""
import ast
import os
import sys

import numpy as np
import pytest

import dualgraph as dg
from dualgraph._state import STATE
from dualgraph.dispatch import EAGER, EagerMode, Mode, using
from dualgraph.function.tracer import SymbolicTensor

PKG = os.path.dirname(dg.__file__)


class Counting(EagerMode):
    """The eager mode, counting which of its operations were asked for."""

    def __init__(self):
        self.seen = []

    def apply(self, op, inputs, attrs):
        self.seen.append(("apply", op.name))
        return super().apply(op, inputs, attrs)

    def apply_inplace(self, op, inputs, attrs, what):
        self.seen.append(("apply_inplace", what))
        return super().apply_inplace(op, inputs, attrs, what)

    def inplace(self, t, fn, other, what, keeps_old=False, ufunc=None):
        self.seen.append(("inplace", what))
        return super().inplace(t, fn, other, what, keeps_old, ufunc)

    def backward(self, outputs, grad_outputs, retain_graph, create_graph, inputs=None):
        self.seen.append(("backward", len(outputs)))
        return super().backward(outputs, grad_outputs, retain_graph, create_graph, inputs)

    def grad(self, outputs, grad_outputs, retain_graph, create_graph, inputs):
        self.seen.append(("grad", len(inputs)))
        return super().grad(outputs, grad_outputs, retain_graph, create_graph, inputs)

    def custom_function(self, cls, args, kwargs):
        self.seen.append(("custom_function", cls.__name__))
        return super().custom_function(cls, args, kwargs)

    def cond(self, pred, true_fn, false_fn, operands):
        self.seen.append(("cond", None))
        return super().cond(pred, true_fn, false_fn, operands)

    def move(self, op, x, device):
        self.seen.append(("move", str(device)))
        return super().move(op, x, device)


class Cube(dg.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x * x * x

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return g * 3 * x * x


def test_every_mode_dependent_operation_asks_the_current_mode():
    mode = Counting()
    xn = np.array([1.0, 2.0, 3.0], np.float32)
    with using(mode):
        x = dg.tensor(xn, requires_grad=True)
        y = x * 2.0 + dg.exp(x)            # operators and op functions
        z = y.clone()
        z.add_(1.0)                          # in-place method
        z[0] = 5.0                           # setitem
        c = Cube.apply(x)                    # custom Function
        w = dg.cond(dg.tensor(True), lambda a: a * 2.0, lambda a: a, z)
        m = w.to("cpu", dg.float64).to(dg.device("cpu"))
        (m.sum() + c.sum()).backward()
        (g,) = dg.autograd.grad((x * x).sum(), x)
    assert STATE.mode is EAGER
    kinds = {k for k, _ in mode.seen}
    assert {"apply", "inplace", "apply_inplace", "custom_function", "cond", "backward", "grad"} <= kinds
    assert ("apply", "mul") in mode.seen and ("apply", "exp") in mode.seen
    assert ("inplace", "add_") in mode.seen and ("apply_inplace", "setitem") in mode.seen
    # the values are eager's: d/dx of 2*(2x + e^x) (rows 1, 2; row 0 was overwritten) + 3x^2
    grad = 3 * xn ** 2 + np.where([False, True, True], 2 * (2 + np.exp(xn)), 0)
    np.testing.assert_allclose(x.grad.numpy(), grad, rtol=1e-5)
    np.testing.assert_allclose(g.numpy(), 2 * xn, rtol=1e-6)
    np.testing.assert_allclose(m.numpy()[1:], 2 * (2 * xn[1:] + np.exp(xn[1:]) + 1), rtol=1e-5)


def test_a_mode_must_implement_the_whole_interface():
    class Partial(Mode):
        def apply(self, op, inputs, attrs):
            return None
    with pytest.raises(TypeError, match="abstract"):
        Partial()


def test_operators_on_static_graph_nodes_build_without_running_forward():
    """A node of a static graph used outside its scope is a SymbolicTensor: the operator's eager fast
    path never tries it (no exception raised and caught on the way), the graph's builder gets the op."""
    g = dg.static.Graph()
    with g.as_default():
        p = dg.static.placeholder((3,), "float32", name="p")
    raised = []

    def trace(frame, event, arg):
        if event == "exception":
            raised.append((arg[0].__name__, frame.f_code.co_name))
        return trace
    sys.settrace(trace)
    try:
        q = p * p - p
    finally:
        sys.settrace(None)
    assert raised == []
    assert isinstance(q, SymbolicTensor) and q._builder is g.builder
    with dg.static.Session(g) as sess:
        out = sess.run(q, feed_dict={p: np.array([1.0, 2.0, 3.0], np.float32)})
    np.testing.assert_allclose(out, [0.0, 2.0, 6.0])


def test_static_graph_nodes_detach_and_update_in_their_graph_outside_its_scope():
    """Every eager-mode operation on a node of a static graph goes to that graph's builder, not only
    apply: detach() is a node of the graph (not a tensor without data), add_ rebinds the node."""
    g = dg.static.Graph()
    with g.as_default():
        p = dg.static.placeholder((3,), "float32", name="p")
    q = p * 2.0
    d = q.detach()
    assert isinstance(d, SymbolicTensor) and d._builder is g.builder
    q.add_(1.0)
    with dg.static.Session(g) as sess:
        dq, qq = sess.run([d + 0.5, q], feed_dict={p: np.array([1.0, 2.0, 3.0], np.float32)})
    np.testing.assert_allclose(dq, [2.5, 4.5, 6.5])
    np.testing.assert_allclose(qq, [3.0, 5.0, 7.0])


def test_symbolic_tensors_are_their_own_class():
    seen = {}

    @dg.function
    def f(x):
        seen["traced"] = type(x)
        return x + 1
    f(dg.ones(2))
    assert seen["traced"] is SymbolicTensor
    assert type(dg.ones(2)) is dg.Tensor and not dg.ones(2)._symbolic


def test_cond_and_while_loop_records_live_with_the_ops():
    from dualgraph.ops import REGISTRY
    assert REGISTRY["cond"].forward.__module__ == "dualgraph.ops.control"
    assert REGISTRY["while_loop"].forward.__module__ == "dualgraph.ops.control"


# ---- layering: who may import whom (every import statement, function-local ones included) --------

def _imports(rel):
    """Modules of dualgraph that the file at `rel` (a path under the package) imports."""
    path = os.path.join(PKG, rel)
    pkg = ["dualgraph"] + os.path.dirname(rel).split(os.sep) if os.path.dirname(rel) else ["dualgraph"]
    out = set()
    for node in ast.walk(ast.parse(open(path).read())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = pkg[:len(pkg) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            names = [mod] + [f"{mod}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            continue
        out.update(n for n in names if n.startswith("dualgraph"))
    return out


def _reaches(rel, forbidden):
    return sorted(m for m in _imports(rel) for f in forbidden if m == f or m.startswith(f + "."))


_OP_LAYERS = ("gather", "elementwise", "shape", "reduction", "indexing", "selection", "math", "stats",
              "tensor_ops")


@pytest.mark.parametrize("rel,forbidden", [
    # the Tensor sits below autograd, dispatch and the ops
    ("tensor.py", ["dualgraph.autograd", "dualgraph.dispatch", "dualgraph.ops", "dualgraph.function",
                   "dualgraph.static"]),
    # autograd below dispatch and the ops (the engine reaches ops through bound Tensor methods)
    *[(f"autograd/{f}", ["dualgraph.dispatch", "dualgraph.ops", "dualgraph.function", "dualgraph.static",
                         "dualgraph.nn", "dualgraph.viz"])
      for f in ("engine.py", "graph.py", "function.py", "modes.py", "api.py", "check.py")],
    # dispatch below the ops and the tracer
    ("dispatch.py", ["dualgraph.ops", "dualgraph.function", "dualgraph.static"]),
    # the op modules below the graph layer (ops/control.py runs and differentiates subgraphs with it)
    *[(f"ops/{f}", ["dualgraph.function", "dualgraph.static", "dualgraph.nn", "dualgraph.onnx"])
      for f in ("creation.py", "gather.py", "elementwise.py", "reduction.py", "shape.py", "indexing.py", "linalg.py",
                "conv.py", "loss.py", "softmax.py", "dims.py", "infer.py", "selection.py", "collective.py", "math.py",
                "stats.py", "tensor_ops.py", "optimizer.py", "attention.py", "normalization.py")],
    # collectives: the op records know groups by name; the transport (mpi4py) sits above them
    ("ops/collective.py", ["dualgraph.distributed", *[f"dualgraph.ops.{g}" for g in _OP_LAYERS]]),
    *[(f"distributed/{f}", ["dualgraph.function", "dualgraph.static", "dualgraph.nn", "dualgraph.onnx",
                            "dualgraph.optim"]) for f in ("__init__.py", "_mpi.py")],
    ("utils/data/distributed.py", ["dualgraph.function", "dualgraph.static", "dualgraph.nn", "dualgraph.onnx",
                                   "dualgraph.optim", "dualgraph.autograd"]),
    # the op families whose gradients use each other's ops, in layers: gather < elementwise < shape <
    # reduction < indexing < selection < math < stats < tensor_ops (each imports only the ones before it)
    *[(f"ops/{f}.py", [f"dualgraph.ops.{g}" for g in _OP_LAYERS[i + 1:]]) for i, f in enumerate(_OP_LAYERS)],
    # the recurrent layers: below the graph-running layers, and their vjps are their own gradient ops
    ("ops/rnn.py", ["dualgraph.function", "dualgraph.static", "dualgraph.nn", "dualgraph.onnx",
                    *[f"dualgraph.ops.{g}" for g in _OP_LAYERS]]),
    # the graph IR and its abstract values sit below everything that builds or runs graphs
    *[(f"graph/{f}", ["dualgraph.ops", "dualgraph.tensor", "dualgraph.dispatch", "dualgraph.function",
                      "dualgraph.onnx"]) for f in ("avals.py", "ir.py")],
    # the op record finds the tracer through dispatch
    ("ops/registry.py", ["dualgraph.function", "dualgraph.static"]),
    # the tracer uses autodiff and control; they create tracers through dispatch
    ("function/autodiff.py", ["dualgraph.function.tracer"]),
    ("function/control.py", ["dualgraph.function.tracer"]),
    ("static/graph.py", ["dualgraph.static.session", "dualgraph.static.train"]),
    # the TF1 functions build graphs and never run them
    *[(f"static/{f}", ["dualgraph.static.session"])
      for f in ("ops.py", "nn.py", "losses.py", "layers.py", "init_ops.py", "train.py")],
    # data loading sits on tensors and ops only (worker processes import no more than it needs)
    *[(f"utils/data/{f}", ["dualgraph.function", "dualgraph.static", "dualgraph.nn", "dualgraph.onnx",
                           "dualgraph.optim", "dualgraph.autograd"])
      for f in ("__init__.py", "collate.py", "dataset.py", "sampler.py", "dataloader.py", "_worker.py")],
    # printing sits with the Tensor; the device namespaces beside the backend, below everything that traces
    ("_printing.py", ["dualgraph.tensor", "dualgraph.autograd", "dualgraph.dispatch", "dualgraph.ops",
                      "dualgraph.function", "dualgraph.static", "dualgraph.nn"]),
    *[(f, ["dualgraph.function", "dualgraph.static", "dualgraph.nn", "dualgraph.onnx", "dualgraph.dispatch"])
      for f in ("cuda.py", "accelerator.py", "backends.py")],
])
def test_imports_go_down_the_layers(rel, forbidden):
    assert _reaches(rel, forbidden) == []


def test_no_module_imports_the_package_root_it_sits_under():
    # `from .. import name` runs (or finds half-run) dualgraph/__init__.py from below it
    # (importing a submodule, `from .. import dtypes`, is not that)
    hits = []
    for root, _, files in os.walk(PKG):
        for f in files:
            rel = os.path.relpath(os.path.join(root, f), PKG)
            if not f.endswith(".py") or rel == "__init__.py":
                continue
            for name in _imports(rel):
                head, _, last = name.rpartition(".")
                if head == "dualgraph" and not (os.path.exists(os.path.join(PKG, last + ".py"))
                                                or os.path.isdir(os.path.join(PKG, last))):
                    hits.append(f"{rel}: {last}")
    assert hits == []


def test_no_module_checks_for_a_tracer_in_the_state():
    hits = []
    for root, _, files in os.walk(PKG):
        for f in files:
            if f.endswith(".py"):
                text = open(os.path.join(root, f)).read()
                if "STATE.tracer" in text:
                    hits.append(os.path.relpath(os.path.join(root, f), PKG))
    assert hits == []
