"""Grad mode (PyTorch) and recording/training scopes (MXNet), all thread-local.

Each is both a context manager and a decorator, like torch.no_grad.
"""
import functools
import threading

from .._state import STATE
from ..tensor import INFERENCE_SCOPES

_SCOPES_LOCK = threading.Lock()


class _Mode:
    _bare_decorator = False  # no_grad/enable_grad also decorate without parentheses: @dg.no_grad

    def __new__(cls, *args):
        if cls._bare_decorator and len(args) == 1 and callable(args[0]):
            return cls()(args[0])
        return super().__new__(cls)

    def __call__(self, fn):
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            with self.__class__(*self._args):
                return fn(*args, **kwargs)
        return wrapper

    _args = ()


class no_grad(_Mode):
    """Ops inside record nothing: results have requires_grad=False."""

    _bare_decorator = True

    def __enter__(self):
        self._prev = STATE.grad_enabled
        STATE.grad_enabled = False

    def __exit__(self, *exc):
        STATE.grad_enabled = self._prev


class enable_grad(_Mode):
    _bare_decorator = True

    def __enter__(self):
        self._prev = STATE.grad_enabled
        STATE.grad_enabled = True

    def __exit__(self, *exc):
        STATE.grad_enabled = self._prev


class set_grad_enabled(_Mode):
    def __init__(self, mode):
        self._args = (mode,)
        self._prev = STATE.grad_enabled
        STATE.grad_enabled = bool(mode)  # also works as a plain function call, as in PyTorch

    def __call__(self, fn):
        STATE.grad_enabled = self._prev  # used as a decorator: switch only while fn runs
        return super().__call__(fn)

    def __enter__(self):
        pass

    def __exit__(self, *exc):
        STATE.grad_enabled = self._prev


def is_grad_enabled():
    return STATE.grad_enabled


class inference_mode(_Mode):
    """PyTorch's inference_mode(mode=True): no_grad, and the tensors made inside report is_inference().

    A context manager and a decorator (`@inference_mode`, `@inference_mode()`, `@inference_mode(False)`).
    `mode=False` switches inference mode off inside an enclosing one and, as in PyTorch, turns grad mode
    on. Unlike PyTorch's inference tensors, dualgraph's may later be used in autograd and updated in
    place outside the scope; they are ordinary tensors carrying the mark."""

    _bare_decorator = True

    def __init__(self, mode=True):
        self._args = (mode,)
        self.mode = bool(mode)

    def __enter__(self):
        self._prev = (STATE.grad_enabled, STATE.inference)
        STATE.grad_enabled, STATE.inference = not self.mode, self.mode
        with _SCOPES_LOCK:
            INFERENCE_SCOPES[0] += 1

    def __exit__(self, *exc):
        STATE.grad_enabled, STATE.inference = self._prev
        with _SCOPES_LOCK:
            INFERENCE_SCOPES[0] -= 1


def is_inference_mode_enabled():
    return STATE.inference


class Tape:
    """The nodes recorded inside one `record()` scope, in the order they ran."""

    def __init__(self):
        self._nodes = []
        self._inputs = []  # input descriptions, kept readable after backward frees the nodes

    def _record(self, node):
        self._nodes.append(node)
        self._inputs.append(", ".join(_describe(t) for t in node.inputs))

    @property
    def nodes(self):
        return list(self._nodes)

    def __len__(self):
        return len(self._nodes)

    def __iter__(self):
        return iter(self._nodes)

    def __repr__(self):
        lines = [f"Tape({len(self._nodes)} nodes)"]
        for i, (node, ins) in enumerate(zip(self._nodes, self._inputs)):
            lines.append(f"  {i}: {node.op.grad_name}({ins})")
        return "\n".join(lines)


def _describe(t):
    shape = getattr(t, "shape", None)
    if shape is None:
        return repr(t)
    return f"{getattr(t, 'dtype', '')}{list(shape)}"


class record:
    """MXNet's autograd.record(train_mode=True): record ops for backward; yields the Tape."""

    def __init__(self, train_mode=True):
        self.train_mode = train_mode
        self.tape = Tape()

    def __enter__(self):
        self._prev = (STATE.grad_enabled, STATE.recording, STATE.training, STATE.tapes)
        STATE.grad_enabled, STATE.recording, STATE.training = True, True, self.train_mode
        STATE.tapes = STATE.tapes + (self.tape,)
        return self.tape

    def __exit__(self, *exc):
        STATE.grad_enabled, STATE.recording, STATE.training, STATE.tapes = self._prev


class pause:
    """MXNet's autograd.pause(train_mode=False): stop recording inside a record() scope."""

    def __init__(self, train_mode=False):
        self.train_mode = train_mode

    def __enter__(self):
        self._prev = (STATE.grad_enabled, STATE.recording, STATE.training)
        STATE.grad_enabled, STATE.recording, STATE.training = False, False, self.train_mode

    def __exit__(self, *exc):
        STATE.grad_enabled, STATE.recording, STATE.training = self._prev


class train_mode:
    def __enter__(self):
        self._prev = STATE.training
        STATE.training = True

    def __exit__(self, *exc):
        STATE.training = self._prev


class predict_mode:
    def __enter__(self):
        self._prev = STATE.training
        STATE.training = False

    def __exit__(self, *exc):
        STATE.training = self._prev


class detect_anomaly(_Mode):
    """Inside, backward raises at the first NaN/inf gradient, naming the forward op and the user's
    source line that called it (nodes remember their line only in this mode; it costs a frame walk per op)."""

    def __init__(self, check_nan=True):
        self._args = (check_nan,)
        self.check_nan = check_nan

    def __enter__(self):
        self._prev = STATE.anomaly
        STATE.anomaly = bool(self.check_nan)

    def __exit__(self, *exc):
        STATE.anomaly = self._prev


def is_anomaly_enabled():
    return STATE.anomaly


def is_recording():
    return STATE.recording


def is_training():
    return STATE.training


def set_training(flag):
    prev, STATE.training = STATE.training, bool(flag)
    return prev


def set_recording(flag):
    prev, STATE.recording = STATE.recording, bool(flag)
    return prev
