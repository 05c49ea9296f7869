"""Per-thread mode state: grad mode, MXNet-style recording/training, active tapes, tracer.

Thread-local so two threads training two models never see each other's modes.
"""
import threading


class _State(threading.local):
    grad_enabled = True   # PyTorch's grad mode (no_grad / enable_grad)
    recording = False     # MXNet's autograd.record() scope
    training = False      # MXNet's train_mode / predict_mode (dropout reads it)
    tapes = ()            # tapes of the enclosing record() scopes, innermost last
    tracer = None         # the active graph builder when tracing (see dualgraph.function)
    anomaly = False       # autograd.detect_anomaly(): nodes remember their source line, backward checks NaN/inf


STATE = _State()
