"""MXNet's learning-rate schedulers (`mx.lr_scheduler`): `scheduler(num_update) -> lr`.

Give one to a Trainer as `{'lr_scheduler': sched, 'learning_rate': lr}` (the optimizer sets the
scheduler's base_lr from learning_rate); num_update counts the optimizer's updates of a parameter."""
import math

from ..errors import InvalidValue


class LRScheduler:
    """Base class: warmup_steps of linear (from warmup_begin_lr) or constant warmup, then get_lr."""

    def __init__(self, base_lr=0.01, warmup_steps=0, warmup_begin_lr=0, warmup_mode="linear"):
        if warmup_mode not in ("linear", "constant"):
            raise InvalidValue(f"Supports only linear and constant modes of warmup, got {warmup_mode!r}")
        if warmup_steps < 0:
            raise InvalidValue(f"warmup_steps must be >= 0, got {warmup_steps}")
        self.base_lr = base_lr
        self.warmup_steps, self.warmup_begin_lr, self.warmup_mode = warmup_steps, warmup_begin_lr, warmup_mode
        self.warmup_final_lr = base_lr

    def get_warmup_lr(self, num_update):
        if self.warmup_mode == "linear":
            inc = (self.warmup_final_lr - self.warmup_begin_lr) * num_update / self.warmup_steps
            return self.warmup_begin_lr + inc
        return self.warmup_begin_lr

    def __call__(self, num_update):
        if num_update < self.warmup_steps:
            return self.get_warmup_lr(num_update)
        return self.get_lr(num_update)

    def get_lr(self, num_update):
        return self.base_lr


class FactorScheduler(LRScheduler):
    """base_lr * factor^(floor((num_update - 1) / step)), never below stop_factor_lr."""

    def __init__(self, step, factor=1, stop_factor_lr=1e-8, base_lr=0.01, warmup_steps=0, warmup_begin_lr=0,
                 warmup_mode="linear"):
        super().__init__(base_lr, warmup_steps, warmup_begin_lr, warmup_mode)
        if step < 1:
            raise InvalidValue("Schedule step must be greater or equal than 1 round")
        if factor > 1.0:
            raise InvalidValue("Factor must be no more than 1 to make lr reduce")
        self.step, self.factor, self.stop_factor_lr = step, factor, stop_factor_lr
        self.count = 0

    def get_lr(self, num_update):
        while num_update > self.count + self.step:
            self.count += self.step
            self.base_lr *= self.factor
            if self.base_lr < self.stop_factor_lr:
                self.base_lr = self.stop_factor_lr
        return self.base_lr


class MultiFactorScheduler(LRScheduler):
    """Multiply the rate by factor each time num_update passes one of the increasing `step` values."""

    def __init__(self, step, factor=1, base_lr=0.01, warmup_steps=0, warmup_begin_lr=0, warmup_mode="linear"):
        super().__init__(base_lr, warmup_steps, warmup_begin_lr, warmup_mode)
        step = list(step)
        if not step or any(s < 1 for s in step) or any(b <= a for a, b in zip(step, step[1:])):
            raise InvalidValue(f"Schedule steps must be an increasing list of integers >= 1, got {step}")
        if factor > 1.0:
            raise InvalidValue("Factor must be no more than 1 to make lr reduce")
        self.step, self.factor = step, factor
        self.cur_step_ind, self.count = 0, 0

    def get_lr(self, num_update):
        while self.cur_step_ind < len(self.step) and num_update > self.step[self.cur_step_ind]:
            self.count = self.step[self.cur_step_ind]
            self.cur_step_ind += 1
            self.base_lr *= self.factor
        return self.base_lr


class PolyScheduler(LRScheduler):
    """final_lr + (base_lr - final_lr) * (1 - (t - warmup) / (max_update - warmup))^pwr."""

    def __init__(self, max_update, base_lr=0.01, pwr=2, final_lr=0, warmup_steps=0, warmup_begin_lr=0,
                 warmup_mode="linear"):
        super().__init__(base_lr, warmup_steps, warmup_begin_lr, warmup_mode)
        if max_update < 1:
            raise InvalidValue("maximum number of updates must be strictly positive")
        self.max_update, self.power, self.final_lr = max_update, pwr, final_lr
        self.base_lr_orig = base_lr
        self.max_steps = max_update - warmup_steps

    def get_lr(self, num_update):
        if num_update <= self.max_update:
            frac = 1 - float(num_update - self.warmup_steps) / self.max_steps
            self.base_lr = self.final_lr + (self.base_lr_orig - self.final_lr) * frac ** self.power
        return self.base_lr


class CosineScheduler(LRScheduler):
    """final_lr + (base_lr - final_lr) * (1 + cos(pi * (t - warmup) / (max_update - warmup))) / 2."""

    def __init__(self, max_update, base_lr=0.01, final_lr=0, warmup_steps=0, warmup_begin_lr=0,
                 warmup_mode="linear"):
        super().__init__(base_lr, warmup_steps, warmup_begin_lr, warmup_mode)
        if max_update < 1:
            raise InvalidValue("maximum number of updates must be strictly positive")
        self.max_update, self.final_lr = max_update, final_lr
        self.base_lr_orig = base_lr
        self.max_steps = max_update - warmup_steps

    def get_lr(self, num_update):
        if num_update <= self.max_update:
            t = float(num_update - self.warmup_steps) / self.max_steps
            self.base_lr = self.final_lr + (self.base_lr_orig - self.final_lr) * (1 + math.cos(math.pi * t)) / 2
        return self.base_lr
