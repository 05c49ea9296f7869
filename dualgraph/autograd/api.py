"""dg.autograd.grad and dg.autograd.backward: differentiate several outputs at once, in the current mode
(eagerly the engine walks the recorded Nodes; inside a trace the tracer differentiates its graph)."""
from .._state import STATE
from ..errors import AutogradError


def _as_list(x):
    return [x] if not isinstance(x, (list, tuple)) else list(x)


def grad(outputs, inputs, grad_outputs=None, retain_graph=None, create_graph=False, allow_unused=False):
    """Gradients of `outputs` with respect to `inputs`, returned (not accumulated into .grad)."""
    outputs, inputs = _as_list(outputs), _as_list(inputs)
    grad_outputs = _as_list(grad_outputs) if grad_outputs is not None else [None] * len(outputs)
    if retain_graph is None:
        retain_graph = create_graph
    for i, t in enumerate(inputs):
        if not t.requires_grad:
            raise AutogradError(f"autograd.grad: input {i} does not require grad; call requires_grad_() on it "
                                f"before computing the outputs")
    grads = STATE.mode.grad(outputs, grad_outputs, retain_graph, create_graph, inputs)
    if not allow_unused:
        for i, g in enumerate(grads):
            if g is None:
                raise AutogradError(f"autograd.grad: input {i} was not used to compute the outputs; "
                                   f"pass allow_unused=True to get None for it")
    return tuple(grads)


def backward(tensors, grad_tensors=None, retain_graph=None, create_graph=False):
    """Backpropagate from several outputs at once (MXNet's autograd.backward, torch.autograd.backward)."""
    tensors = _as_list(tensors)
    grad_tensors = _as_list(grad_tensors) if grad_tensors is not None else [None] * len(tensors)
    STATE.mode.backward(tensors, grad_tensors, retain_graph, create_graph)
