"""Backward-graph nodes: what `tensor.grad_fn` holds.

A Node remembers the op, its input tensors (with their versions, to catch in-place
changes), the grad_fn each input had when the node was made (its edges: an in-place op
later gives the tensor a new grad_fn, but this node's gradient still goes to the history
it saw), its attributes and, when the op's vjp needs it, its output. It holds no
reference to its output Tensor, so graphs have no reference cycles and are freed
as soon as the user drops the output.
"""
import threading
import weakref

from .._state import STATE
from ..errors import AutogradError, user_line
from ..tensor import HookHandle, Tensor


class Node:
    __slots__ = ("op", "inputs", "attrs", "needs_input_grad", "_versions", "_fns", "__dict__", "__weakref__")
    # Rarely set attributes default on the class; instance values go to a lazily created
    # __dict__, so recording a node costs six attribute writes on the hot path.
    _out = None            # forward outputs, kept only for ops whose vjp reads ctx.out
    _out_versions = None   # ((version counter, version at record time), ...) for those outputs
    _out_avals = ()        # (shape, dtype) of each output of a several-output op whose outputs are not kept
    _freed = False
    _retained = None
    _hooks = None          # (output index, hook) registered on non-leaf outputs
    _recorded = False      # made inside autograd.record(): MXNet's implicit head gradient
    _source = ""           # the user's file:line of the forward op (kept under detect_anomaly only)
    _next = ()

    def __init__(self, op, inputs, attrs, needs, versions, fns=None):
        self.op = op
        self.inputs = inputs
        self.attrs = attrs
        self.needs_input_grad = needs
        self._versions = versions
        self._fns = fns if fns is not None else tuple(getattr(t, "_grad_fn", None) for t in inputs)
        st = STATE
        if st.recording:
            self._recorded = True
            for tape in st.tapes:
                tape._record(self)
        if st.anomaly:
            self._source = user_line()

    # --- what PyTorch users inspect -------------------------------------------------
    def name(self):
        return self.op.grad_name

    @property
    def next_functions(self):
        if self._freed:
            return tuple(_edge(t) if t is not None and not isinstance(t, tuple) else (t or (None, 0))
                         for t in self._next)
        return tuple(self.edge(i) if fn is not None else _edge(t) for i, (t, fn) in enumerate(zip(self.inputs, self._fns)))

    def edge(self, i):
        """(grad_fn, output index) input i had when this node was made, or (None, 0) for a leaf."""
        fn = self._fns[i]
        if fn is None:
            return None, 0
        t = self.inputs[i]
        if t._grad_fn is fn:
            return fn, t._out_index
        if fn.op.n_out == 1:
            return fn, 0
        raise AutogradError(
            f"{self.op.grad_name}: input {i} (an output of the multi-output {fn.op.grad_name}) was changed by an "
            f"in-place operation after this op used it; clone() it before modifying it")

    def __repr__(self):
        return f"<{self.op.grad_name} object at {id(self):#x}>"

    # --- what vjp rules read (ctx) ---------------------------------------------------
    @property
    def out(self):
        """The forward output as a Tensor whose grad_fn is this node (for vjps that reuse it)."""
        outs = tuple(Tensor._from_node_output(a, self, i) for i, a in enumerate(self._out))
        return outs if self.op.n_out > 1 else outs[0]

    def retain(self, tensor):
        """Keep `tensor`'s (an output of this node) gradient in its .grad during backward."""
        if self._retained is None:
            self._retained = []
        self._retained.append((tensor._out_index, weakref.ref(tensor)))

    def add_hook(self, tensor, hook):
        """register_hook on a non-leaf: the hook lives on its node (it runs even if the tensor is dropped)."""
        if self._hooks is None:
            self._hooks = []
        entry = (tensor._out_index, hook)
        self._hooks.append(entry)
        return HookHandle(self._hooks, entry, hook)

    def check_and_release(self, retain_graph):
        if self._freed:
            raise AutogradError(
                f"Trying to backward through the graph a second time ({self.op.grad_name}): its saved "
                f"tensors were freed after the first backward. Pass retain_graph=True to the first "
                f"backward() (or autograd.grad) if you need to backward through it again.")
        for t, v in zip(self.inputs, self._versions):  # the common case, without building lists
            if v >= 0 and t._version[0] != v:
                break
        else:
            if self._out_versions is None or all(counter[0] == v for counter, v in self._out_versions):
                return
        stale = [i for i, (t, v) in enumerate(zip(self.inputs, self._versions)) if v >= 0 and t._version[0] != v]
        stale_out = [k for k, (counter, v) in enumerate(self._out_versions or ()) if counter[0] != v]
        self._check_stale(stale, stale_out)

    def _check_stale(self, stale, stale_out):
        """Raise if the vjp reads a saved tensor that changed in place since the forward; a changed
        tensor the vjp does not read (both operands of add, the tensor of `d * 3`) is no error."""
        derive = getattr(self.op, "vjp_reads", None)
        reads = derive(self.inputs, self.attrs, self.needs_input_grad) if derive is not None else None

        def describe(i):
            t = self.inputs[i]
            return t.shape, f"it is at version {t._version[0]}, expected version {self._versions[i]}"
        msg = stale_read_message(self.op, stale, stale_out, reads, describe)
        if msg is not None:
            raise AutogradError(msg)

    def release(self):
        # keep the graph's edges (as PyTorch does) but drop saved values
        # cheap: (grad_fn, index) for non-leaves, the tensor for leaves that want grad, None otherwise
        self._next = [(fn, t._out_index if t._grad_fn is fn else 0) if fn is not None
                      else (t if getattr(t, "_requires_grad", False) else None)
                      for t, fn in zip(self.inputs, self._fns)]
        self.inputs = ()
        self._out = None
        self._freed = True
        release = getattr(self.op, "release_node", None)  # custom Functions drop ctx's saved tensors
        if release is not None:
            release(self)


def stale_read_message(op, stale, stale_out, reads, describe, where=""):
    """The error for a vjp that reads a saved value an in-place op changed, or None when it reads none
    of them. `stale`/`stale_out`: positions of the changed inputs/outputs; `reads`: `op.vjp_reads`'s
    answer (None: everything counts as read); `describe(i)`: (shape, detail) of input i."""
    reads_in, reads_out = reads if reads is not None else (set(stale), set(stale_out))
    for i in stale:
        if i in reads_in:
            return inplace_message(op.grad_name, *describe(i))
    if any(k in reads_out for k in stale_out):
        return (f"the output of {op.name} is needed by {op.grad_name} but was modified by an in-place "
                f"operation afterwards{where}. Clone it before modifying it.")
    return None


def inplace_message(grad_name, shape, detail):
    return (f"one of the tensors needed for gradient computation of {grad_name} (shape {tuple(shape)}) has "
            f"been modified by an in-place operation: {detail}. Clone it before modifying it.")


_BACKWARDS = threading.local()  # .stack: one list of queued callbacks per backward running on this thread


class running_backward:
    """Brackets one backward pass (eager or traced): callbacks queued inside run when it ends."""

    def __enter__(self):
        stack = getattr(_BACKWARDS, "stack", None)
        if stack is None:
            stack = _BACKWARDS.stack = []
        stack.append([])
        return self

    def __exit__(self, exc_type, *exc):
        callbacks = _BACKWARDS.stack.pop()
        if exc_type is None:
            for fn in callbacks:  # a callback may queue another one: it runs too
                fn()


def queue_callback(fn):
    """Run fn() once when the backward pass now running ends, after every leaf's .grad is written (the
    hook PyTorch's engine offers DistributedDataParallel to wait for its gradient reductions)."""
    stack = getattr(_BACKWARDS, "stack", None)
    if not stack:
        raise AutogradError("queue_callback: no backward pass is running on this thread")
    stack[-1].append(fn)


def node_versions(inputs):
    return tuple(t._version[0] if getattr(t, "_version", None) is not None else -1 for t in inputs)


class AccumulateGrad:
    """The sink for a leaf tensor's gradient, as shown in `next_functions`."""

    __slots__ = ("variable",)

    def __init__(self, variable):
        self.variable = variable

    def name(self):
        return "AccumulateGrad"

    @property
    def next_functions(self):
        return ()

    def __repr__(self):
        return f"<AccumulateGrad object at {id(self):#x}>"


def _edge(t):
    if not isinstance(t, Tensor):
        return (None, 0)
    if t._grad_fn is not None:
        return (t._grad_fn, t._out_index)
    if t._requires_grad:
        return (AccumulateGrad(t), 0)
    return (None, 0)
