"""`dg.amp.GradScaler` (also `dg.cuda.amp.GradScaler`): PyTorch's dynamic loss scaling for float16 training.

    scaler = dg.amp.GradScaler("cpu")          # or GradScaler() / dg.cuda.amp.GradScaler() for the GPU
    scaler.scale(loss).backward()
    scaler.step(opt)                           # unscales the grads; skips the step if one is inf/nan
    scaler.update()                            # backs the scale off after an overflow, grows it after
                                               # growth_interval clean steps

As in PyTorch, a scaler for the GPU ("cuda", the default) where no GPU is available warns and disables
itself: scale() returns its argument, step() calls optimizer.step(), update() does nothing, so scripts
that build `GradScaler(enabled=(dtype == "float16"))` run unchanged on the CPU. The scale and the
inf/nan check are host-side Python values, so the scaler's calls cannot be inside a `dg.function` trace
(the check reads tensor values: a ConcretizationError); the forward and backward can.
"""
import warnings

from . import backend as _backend
from .autograd import no_grad
from .errors import InvalidValue
from .ops.elementwise import isfinite
from .tensor import Tensor

__all__ = ["GradScaler"]

_READY, _UNSCALED, _STEPPED = 0, 1, 2


class GradScaler:
    def __init__(self, device="cuda", init_scale=2.0 ** 16, growth_factor=2.0, backoff_factor=0.5,
                 growth_interval=2000, enabled=True):
        self._device = str(device)
        if enabled and self._device.split(":")[0] in ("cuda", "gpu") and not _backend.gpu_available():
            warnings.warn("dg.amp.GradScaler is enabled for the GPU, but no GPU is available. Disabling.",
                          UserWarning, stacklevel=2)
            enabled = False
        self._enabled = bool(enabled)
        if self._enabled:
            if growth_factor <= 1.0:
                raise InvalidValue(f"GradScaler: growth_factor must be > 1, got {growth_factor}")
            if not 0.0 < backoff_factor < 1.0:
                raise InvalidValue(f"GradScaler: backoff_factor must be in (0, 1), got {backoff_factor}")
            if int(growth_interval) != growth_interval or growth_interval <= 0:
                raise InvalidValue(f"GradScaler: growth_interval must be a positive int, got {growth_interval}")
        self._scale = float(init_scale)
        self._growth_factor, self._backoff_factor = float(growth_factor), float(backoff_factor)
        self._growth_interval, self._growth_tracker = int(growth_interval), 0
        self._per_optimizer = {}  # id(optimizer) -> [stage, found_inf]

    def is_enabled(self):
        return self._enabled

    def get_scale(self):
        return self._scale if self._enabled else 1.0

    def get_growth_factor(self):
        return self._growth_factor

    def set_growth_factor(self, new_factor):
        self._growth_factor = float(new_factor)

    def get_backoff_factor(self):
        return self._backoff_factor

    def set_backoff_factor(self, new_factor):
        self._backoff_factor = float(new_factor)

    def get_growth_interval(self):
        return self._growth_interval

    def set_growth_interval(self, new_interval):
        self._growth_interval = int(new_interval)

    def scale(self, outputs):
        """`outputs` (a tensor, or lists/tuples of them) multiplied by the scale factor."""
        if not self._enabled:
            return outputs
        if isinstance(outputs, Tensor):
            return outputs * self._scale
        if isinstance(outputs, (list, tuple)):
            return type(outputs)(self.scale(o) for o in outputs)
        raise InvalidValue(f"GradScaler.scale: expected a tensor or a list/tuple of tensors, got "
                           f"{type(outputs).__name__}")

    def _state(self, optimizer):
        return self._per_optimizer.setdefault(id(optimizer), [_READY, False])

    def unscale_(self, optimizer):
        """Divide the gradients of `optimizer`'s parameters by the scale, in place, and note whether any
        is inf or nan (then step() skips this optimizer's update)."""
        if not self._enabled:
            return
        state = self._state(optimizer)
        if state[0] == _UNSCALED:
            raise RuntimeError("unscale_() has already been called on this optimizer since the last update().")
        if state[0] == _STEPPED:
            raise RuntimeError("unscale_() is being called after step().")
        inv = 1.0 / self._scale
        found = False
        with no_grad():
            for group in optimizer.param_groups:
                for p in group["params"]:
                    g = p.grad
                    if g is None:
                        continue
                    if g.dtype == "float16":
                        raise InvalidValue("GradScaler.unscale_: attempting to unscale float16 gradients; keep "
                                           "the parameters (and so their gradients) in float32")
                    g.mul_(inv)
                    if not found and not bool(isfinite(g).all()):
                        found = True
        state[:] = [_UNSCALED, found]

    def step(self, optimizer, *args, **kwargs):
        """optimizer.step(*args, **kwargs) on unscaled gradients, unless one was inf or nan (then None)."""
        if not self._enabled:
            return optimizer.step(*args, **kwargs)
        if "closure" in kwargs:
            raise RuntimeError("Closure use is not currently supported if GradScaler is enabled.")
        state = self._state(optimizer)
        if state[0] == _STEPPED:
            raise RuntimeError("step() has already been called since the last update().")
        if state[0] == _READY:
            self.unscale_(optimizer)
        result = None if state[1] else optimizer.step(*args, **kwargs)
        state[0] = _STEPPED
        return result

    def update(self, new_scale=None):
        """Back the scale off (x backoff_factor) if any step since the last update met inf/nan, else count a
        clean step and grow it (x growth_factor) every growth_interval of them; or set `new_scale`."""
        if not self._enabled:
            return
        if new_scale is not None:
            self._scale = float(new_scale.item() if isinstance(new_scale, Tensor) else new_scale)
        else:
            if not self._per_optimizer:
                raise RuntimeError("No inf checks were recorded prior to update(): call scaler.step(optimizer) "
                                   "(or unscale_) first.")
            if any(found for _, found in self._per_optimizer.values()):
                self._scale *= self._backoff_factor
                self._growth_tracker = 0
            else:
                self._growth_tracker += 1
                if self._growth_tracker == self._growth_interval:
                    grown = self._scale * self._growth_factor
                    if grown != float("inf"):
                        self._scale = grown
                    self._growth_tracker = 0
        self._per_optimizer = {}

    def state_dict(self):
        if not self._enabled:
            return {}
        return {"scale": self._scale, "growth_factor": self._growth_factor, "backoff_factor": self._backoff_factor,
                "growth_interval": self._growth_interval, "_growth_tracker": self._growth_tracker}

    def load_state_dict(self, state_dict):
        if not self._enabled:
            return
        if len(state_dict) == 0:
            raise RuntimeError("The source state dict is empty, possibly because it was saved from a disabled "
                               "instance of GradScaler.")
        self._scale = float(state_dict["scale"])
        self._growth_factor = float(state_dict["growth_factor"])
        self._backoff_factor = float(state_dict["backoff_factor"])
        self._growth_interval = int(state_dict["growth_interval"])
        self._growth_tracker = int(state_dict["_growth_tracker"])
