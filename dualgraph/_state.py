"""Per-thread state: grad mode, MXNet-style recording/training, active tapes, the current dispatch mode.

Thread-local so two threads training two models never see each other's modes.
"""
import threading


class _State(threading.local):
    grad_enabled = True   # PyTorch's grad mode (no_grad / enable_grad)
    recording = False     # MXNet's autograd.record() scope
    training = False      # MXNet's train_mode / predict_mode (dropout reads it)
    tapes = ()            # tapes of the enclosing record() scopes, innermost last
    mode = None           # the current dualgraph.dispatch.Mode; dispatch makes the eager mode the default
    anomaly = False       # autograd.detect_anomaly(): nodes remember their source line, backward checks NaN/inf
    inference = False     # inside inference_mode(): tensors made are marked is_inference()


STATE = _State()
