"""`dg.cuda`: PyTorch's `torch.cuda` questions answered for dualgraph's GPU device.

dualgraph's GPU device is `"gpu"` / `"gpu:N"` (cupy arrays); `"cuda"` and `"cuda:N"` name the same
device, so `x.to("cuda")` and `dg.device("cuda:0")` work as in PyTorch. Without cupy or a visible GPU
every question has PyTorch's answer on a machine without CUDA: `is_available()` is False,
`device_count()` is 0, seeding and `empty_cache()` do nothing, memory counters read 0, and what needs
a device (`current_device`, `synchronize`, `get_device_name`, `set_device`) raises DeviceError.
"""
import types as _types

from . import amp as _amp
from . import backend as _backend
from .errors import DeviceError
from .ops.creation import manual_seed as _seed

__all__ = ["is_available", "device_count", "current_device", "set_device", "get_device_name",
           "get_device_properties", "get_device_capability", "is_bf16_supported", "manual_seed", "manual_seed_all", "seed",
           "seed_all", "synchronize", "empty_cache", "memory_allocated", "memory_reserved",
           "max_memory_allocated", "is_initialized", "device", "amp"]


def is_available():
    """True when cupy imports and sees at least one GPU."""
    return _backend.gpu_available()


def is_initialized():
    return _backend.gpu_available()


def device_count():
    return _backend._GPU_COUNT


def _need_gpu(what):
    if not _backend.gpu_available():
        raise DeviceError(f"dg.cuda.{what}: no GPU is available (cupy is "
                          f"{'not installed' if _backend._cupy is None else 'installed but sees no device'}); "
                          f"dg.cuda.is_available() is False, use device='cpu'")
    return _backend._cupy


def _index(device, what):
    """The GPU index `device` names: None (the current one), an int, 'cuda:1', 'gpu:1' or a Device."""
    cp = _need_gpu(what)
    if device is None:
        return cp.cuda.Device().id
    if isinstance(device, int) and not isinstance(device, bool):
        index = device
    else:
        dev = _backend.device(device)
        if dev.type != "gpu":
            raise DeviceError(f"dg.cuda.{what}: expected a GPU device, got {device!r}")
        index = dev.index
    if not 0 <= index < _backend._GPU_COUNT:
        raise DeviceError(f"dg.cuda.{what}: GPU {index} does not exist ({_backend._GPU_COUNT} visible)")
    return index


def current_device():
    """The index of the GPU cupy allocates on (PyTorch: the current CUDA device)."""
    return _index(None, "current_device")


def set_device(device):
    cp = _need_gpu("set_device")
    cp.cuda.Device(_index(device, "set_device")).use()


class device:
    """Context manager that makes `device` the current GPU inside the block (torch.cuda.device)."""

    def __init__(self, device):
        self.index = _index(device, "device")
        self._ctx = None

    def __enter__(self):
        self._ctx = _backend._cupy.cuda.Device(self.index)
        self._ctx.__enter__()
        return self

    def __exit__(self, *exc):
        self._ctx.__exit__(*exc)


class _DeviceProperties:
    __slots__ = ("name", "major", "minor", "total_memory", "multi_processor_count")

    def __init__(self, props):
        name = props["name"]
        self.name = name.decode() if isinstance(name, bytes) else str(name)
        self.major, self.minor = int(props["major"]), int(props["minor"])
        self.total_memory = int(props["totalGlobalMem"])
        self.multi_processor_count = int(props["multiProcessorCount"])

    def __repr__(self):
        return (f"_CudaDeviceProperties(name='{self.name}', major={self.major}, minor={self.minor}, "
                f"total_memory={self.total_memory // (1024 * 1024)}MB, "
                f"multi_processor_count={self.multi_processor_count})")


def get_device_properties(device=None):
    index = _index(device, "get_device_properties")
    return _DeviceProperties(_backend._cupy.cuda.runtime.getDeviceProperties(index))


def get_device_name(device=None):
    return get_device_properties(device).name


def get_device_capability(device=None):
    p = get_device_properties(device)
    return (p.major, p.minor)


def is_bf16_supported(including_emulation=True):
    """False: dualgraph has no bfloat16 dtype (float16 is its half precision)."""
    return False


def manual_seed(seed):
    """Seed the GPU generators. As in PyTorch this is silently ignored where there is no GPU.

    dualgraph has one seed for every device (dg.manual_seed); setting it here reseeds the CPU's
    generator too, which torch.cuda.manual_seed would leave alone."""
    if _backend.gpu_available():
        _seed(seed)


manual_seed_all = manual_seed


def seed():
    """Seed the GPU generators with a random number (ignored without a GPU, as in PyTorch)."""
    if _backend.gpu_available():
        import secrets
        manual_seed(secrets.randbits(63))


seed_all = seed


def synchronize(device=None):
    """Wait until every kernel queued on the GPU has finished."""
    index = _index(device, "synchronize")
    _backend._cupy.cuda.Device(index).synchronize()


def empty_cache():
    """Give cupy's cached, unused GPU memory back to the driver (nothing to do without a GPU)."""
    if _backend.gpu_available():
        _backend._cupy.get_default_memory_pool().free_all_blocks()
        _backend._cupy.get_default_pinned_memory_pool().free_all_blocks()


def memory_allocated(device=None):
    """Bytes of GPU memory held by tensors (cupy's default pool, in use); 0 without a GPU, as in PyTorch."""
    if not _backend.gpu_available():
        return 0
    index = _index(device, "memory_allocated")
    with _backend._cupy.cuda.Device(index):
        return int(_backend._cupy.get_default_memory_pool().used_bytes())


def memory_reserved(device=None):
    """Bytes of GPU memory cupy's pool holds, in use or cached; 0 without a GPU."""
    if not _backend.gpu_available():
        return 0
    index = _index(device, "memory_reserved")
    with _backend._cupy.cuda.Device(index):
        return int(_backend._cupy.get_default_memory_pool().total_bytes())


def max_memory_allocated(device=None):
    """0 without a GPU (PyTorch's answer too). With a GPU this raises: cupy's memory pool keeps no
    peak, and any other number would be made up."""
    if not _backend.gpu_available():
        return 0
    raise DeviceError("dg.cuda.max_memory_allocated: cupy's memory pool does not record a peak; read "
                      "dg.cuda.memory_allocated() at the points you care about instead")


class _GradScaler(_amp.GradScaler):
    """torch.cuda.amp.GradScaler: dg.amp.GradScaler for the GPU (it disables itself, with a warning,
    where there is none)."""

    def __init__(self, init_scale=2.0 ** 16, growth_factor=2.0, backoff_factor=0.5, growth_interval=2000,
                 enabled=True):
        super().__init__("cuda", init_scale, growth_factor, backoff_factor, growth_interval, enabled)


amp = _types.SimpleNamespace(GradScaler=_GradScaler)
