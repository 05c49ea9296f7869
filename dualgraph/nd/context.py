"""MXNet's contexts as dualgraph devices: `mx.cpu()` is `dg.device('cpu')`, `mx.gpu(i)` is `'gpu:i'`."""
from .. import backend as _backend
from ..backend import device as _device


def cpu(device_id=0):
    """The CPU device (MXNet's device_id is accepted and ignored: there is one CPU device)."""
    return _device("cpu")


def gpu(device_id=0):
    """GPU `device_id`; raises DeviceError at once where no GPU or cupy is present (MXNet fails only
    when memory is first allocated there)."""
    return _device(f"gpu:{int(device_id)}")


def num_gpus():
    """How many GPUs dualgraph can use (0 without cupy)."""
    return _backend._GPU_COUNT if _backend._cupy is not None else 0


def current_context():
    return _device("cpu")


def Context(device_type, device_id=0):
    """MXNet's Context('cpu') / Context('gpu', 1) as a dualgraph device."""
    if not isinstance(device_type, str):
        return _device(device_type)
    return cpu() if device_type.startswith("cpu") else gpu(device_id)
