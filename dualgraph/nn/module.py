"""Module, Parameter and the containers (Sequential, ModuleList, ModuleDict), PyTorch's API.

A Module owns three ordered dicts: `_parameters` (Parameters), `_buffers` (plain tensors such as
BatchNorm's running statistics) and `_modules` (children). Assigning an attribute files the value
into the right dict, so `self.fc = Linear(4, 2)` registers a child. Everything else (state_dict,
to(), train()/eval(), repr) walks those dicts.
"""
import itertools
import threading
from collections import OrderedDict, namedtuple

from .. import dtypes as _dt
from ..autograd import no_grad
from ..backend import device as _parse_device, device_of_array, to_device
from ..errors import DTypeError, DualgraphError, ShapeError, user_line
from ..tensor import Tensor, register_tensor_type
from .utils import zero_grads

__all__ = ["Parameter", "Module", "Sequential", "ModuleList", "ModuleDict", "StateDictError",
           "RemovableHandle"]


class StateDictError(DualgraphError, RuntimeError):
    """load_state_dict found missing, unexpected or mis-shaped entries."""


@register_tensor_type
class Parameter(Tensor):
    """A tensor that a Module registers as a learnable parameter (requires_grad=True by default).

    Unlike torch.nn.Parameter, the data is always copied, so the tensor or array you pass in is
    never changed by training."""

    __slots__ = ()

    def __init__(self, data=None, requires_grad=True):
        if data is None:
            data = []
        Tensor.__init__(self, data)
        if requires_grad:
            self.requires_grad_(True)

    def __repr__(self):
        return "Parameter containing:\n" + Tensor.__repr__(self)

    __str__ = __repr__


class RemovableHandle:
    """Returned by register_*_hook; `handle.remove()` (or leaving a `with` block) unregisters the hook."""

    _ids = itertools.count()

    def __init__(self, hooks):
        self._hooks = hooks
        self.id = next(self._ids)

    def remove(self):
        self._hooks.pop(self.id, None)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.remove()


_IncompatibleKeys = namedtuple("IncompatibleKeys", ["missing_keys", "unexpected_keys"])
_CALLS = threading.local()  # the stack of modules being called, to name a failing one by its path


class Module:
    """Base class of every layer and model: subclass it, create children in __init__, write forward()."""

    def __init__(self):
        d = self.__dict__
        d["training"] = True
        d["_parameters"] = OrderedDict()
        d["_buffers"] = OrderedDict()
        d["_non_persistent"] = set()
        d["_modules"] = OrderedDict()
        d["_forward_hooks"] = OrderedDict()
        d["_forward_pre_hooks"] = OrderedDict()

    def forward(self, *args, **kwargs):
        raise NotImplementedError(f"{type(self).__name__} has no forward(); define one in the subclass")

    # ---- calling --------------------------------------------------------------------------
    def __call__(self, *args, **kwargs):
        d = self.__dict__
        pre_hooks = d.get("_forward_pre_hooks")
        if pre_hooks is None:
            raise DualgraphError(f"{type(self).__name__}: call Module.__init__ (super().__init__()) first")
        if pre_hooks:
            for hook in list(pre_hooks.values()):
                res = hook(self, args)
                if res is not None:
                    args = res if isinstance(res, tuple) else (res,)
        try:
            stack = _CALLS.stack
        except AttributeError:
            stack = _CALLS.stack = []
        stack.append(self)
        try:
            out = self.forward(*args, **kwargs)
        except (ShapeError, DTypeError) as e:
            self._name_in_error(e)
            raise
        finally:
            stack.pop()
        hooks = d["_forward_hooks"]
        if hooks:
            for hook in list(hooks.values()):
                res = hook(self, args, out)
                if res is not None:
                    out = res
        return out

    def register_forward_hook(self, hook):
        """hook(module, args, output) runs after forward; a non-None result replaces the output."""
        handle = RemovableHandle(self._forward_hooks)
        self._forward_hooks[handle.id] = hook
        return handle

    def register_forward_pre_hook(self, hook):
        """hook(module, args) runs before forward; a non-None result replaces the args."""
        handle = RemovableHandle(self._forward_pre_hooks)
        self._forward_pre_hooks[handle.id] = hook
        return handle

    def _input_error(self, expected, x, what="input"):
        """A ShapeError naming this module (its path inside the called model), what it expects and got."""
        got = tuple(x.shape) if hasattr(x, "shape") else type(x).__name__
        line = user_line()
        err = ShapeError(f"{self._call_path()}: expected {what} {expected}, got shape {got}"
                         + (f" (at {line})" if line else ""))
        err._dg_module_named = True
        return err

    def _name_in_error(self, err):
        """Prefix a shape/dtype error raised inside forward with the innermost module it came from."""
        if getattr(err, "_dg_module_named", False) or not err.args or not isinstance(err.args[0], str):
            return
        err._dg_module_named = True
        err.args = (f"in {self._call_path()}: {err.args[0]}",) + err.args[1:]

    def _call_path(self):
        me = f"{type(self).__name__}({self.extra_repr()})"
        stack = getattr(_CALLS, "stack", [])
        if not stack or stack[-1] is not self:
            return me
        names = []
        for parent, child in zip(stack, stack[1:]):
            name = next((k for k, m in parent._modules.items() if m is child), None)
            if name is None:
                return me
            names.append(name)
        if not names:
            return me
        return f"{type(stack[0]).__name__}.{'.'.join(names)} = {me}"

    # ---- registration -----------------------------------------------------------------------
    def __setattr__(self, name, value):
        d = self.__dict__
        params = d.get("_parameters")
        if isinstance(value, Parameter):
            if params is None:
                raise DualgraphError("cannot assign parameters before Module.__init__() is called")
            self._discard(name)
            params[name] = value
        elif params is not None and name in params:
            if value is not None:
                raise TypeError(f"cannot assign {type(value).__name__} as parameter {name!r} "
                                f"(dg.nn.Parameter or None expected)")
            params[name] = None
        elif isinstance(value, Module):
            if params is None:
                raise DualgraphError("cannot assign modules before Module.__init__() is called")
            self._discard(name)
            d["_modules"][name] = value
        elif params is not None and name in d["_modules"]:
            if value is not None:
                raise TypeError(f"cannot assign {type(value).__name__} as child module {name!r} "
                                f"(a Module or None expected)")
            d["_modules"][name] = None
        elif params is not None and name in d["_buffers"]:
            if value is not None and not isinstance(value, Tensor):
                raise TypeError(f"cannot assign {type(value).__name__} as buffer {name!r} (a Tensor or None expected)")
            d["_buffers"][name] = value
        else:
            object.__setattr__(self, name, value)

    def _discard(self, name):
        d = self.__dict__
        d.pop(name, None)
        for key in ("_parameters", "_buffers", "_modules"):
            d[key].pop(name, None)
        d["_non_persistent"].discard(name)

    def __getattr__(self, name):
        d = self.__dict__
        for key in ("_parameters", "_buffers", "_modules"):
            store = d.get(key)
            if store is not None and name in store:
                return store[name]
        raise AttributeError(f"'{type(self).__name__}' object has no attribute '{name}'")

    def __delattr__(self, name):
        d = self.__dict__
        for key in ("_parameters", "_buffers", "_modules"):
            if name in d[key]:
                del d[key][name]
                d["_non_persistent"].discard(name)
                return
        object.__delattr__(self, name)

    def __dir__(self):
        return sorted(set(super().__dir__()) | set(self._parameters) | set(self._buffers) | set(self._modules))

    def _check_name(self, name, kind):
        if not isinstance(name, str) or not name or "." in name:
            raise KeyError(f"{kind} name must be a non-empty string without '.', got {name!r}")
        if name in self.__dict__ and name not in self._parameters | self._buffers | self._modules:
            raise KeyError(f"attribute {name!r} already exists")

    def register_parameter(self, name, param):
        self._check_name(name, "parameter")
        if param is not None and not isinstance(param, Parameter):
            raise TypeError(f"cannot register {type(param).__name__} as parameter {name!r} "
                            f"(dg.nn.Parameter or None expected)")
        self._discard(name)
        self._parameters[name] = param

    def register_buffer(self, name, tensor, persistent=True):
        """A tensor that is state but not a parameter (running statistics); in state_dict if persistent."""
        self._check_name(name, "buffer")
        if tensor is not None and not isinstance(tensor, Tensor):
            raise TypeError(f"cannot register {type(tensor).__name__} as buffer {name!r} (a Tensor or None expected)")
        self._discard(name)
        self._buffers[name] = tensor
        if not persistent:
            self._non_persistent.add(name)

    def add_module(self, name, module):
        self._check_name(name, "module")
        if module is not None and not isinstance(module, Module):
            raise TypeError(f"{type(module).__name__} is not a Module")
        self._discard(name)
        self._modules[name] = module

    register_module = add_module

    def get_submodule(self, target):
        mod = self
        for part in target.split(".") if target else ():
            if part not in mod._modules:
                raise AttributeError(f"{type(mod).__name__} has no submodule {part!r} (looking up {target!r})")
            mod = mod._modules[part]
        return mod

    def get_parameter(self, target):
        path, _, name = target.rpartition(".")
        mod = self.get_submodule(path)
        if name not in mod._parameters:
            raise AttributeError(f"{type(mod).__name__} has no parameter {name!r}")
        return mod._parameters[name]

    # ---- iteration ------------------------------------------------------------------------
    def named_modules(self, memo=None, prefix="", remove_duplicate=True):
        if memo is None:
            memo = set()
        if remove_duplicate:
            if id(self) in memo:
                return
            memo.add(id(self))
        yield prefix, self
        for name, mod in self._modules.items():
            if mod is None:
                continue
            yield from mod.named_modules(memo, prefix + ("." if prefix else "") + name, remove_duplicate)

    def modules(self):
        for _, m in self.named_modules():
            yield m

    def named_children(self):
        seen = set()
        for name, mod in self._modules.items():
            if mod is not None and id(mod) not in seen:
                seen.add(id(mod))
                yield name, mod

    def children(self):
        for _, m in self.named_children():
            yield m

    def _named_members(self, store, prefix, recurse, remove_duplicate=True):
        seen = set()
        mods = self.named_modules(prefix=prefix) if recurse else [(prefix, self)]
        for mod_prefix, mod in mods:
            for name, t in mod.__dict__[store].items():
                if t is None or (remove_duplicate and id(t) in seen):
                    continue
                seen.add(id(t))
                yield mod_prefix + ("." if mod_prefix else "") + name, t

    def named_parameters(self, prefix="", recurse=True, remove_duplicate=True):
        yield from self._named_members("_parameters", prefix, recurse, remove_duplicate)

    def parameters(self, recurse=True):
        for _, p in self.named_parameters(recurse=recurse):
            yield p

    def named_buffers(self, prefix="", recurse=True, remove_duplicate=True):
        yield from self._named_members("_buffers", prefix, recurse, remove_duplicate)

    def buffers(self, recurse=True):
        for _, b in self.named_buffers(recurse=recurse):
            yield b

    def apply(self, fn):
        """Call fn(m) on every submodule (children first) and on self, like torch's Module.apply."""
        for m in self.children():
            m.apply(fn)
        fn(self)
        return self

    # ---- modes ----------------------------------------------------------------------------
    def train(self, mode=True):
        if not isinstance(mode, bool):
            raise TypeError(f"train(mode) expects a bool, got {type(mode).__name__}")
        for m in self.modules():
            m.__dict__["training"] = mode
        return self

    def eval(self):
        return self.train(False)

    def requires_grad_(self, requires_grad=True):
        for p in self.parameters():
            p.requires_grad_(requires_grad)
        return self

    def zero_grad(self, set_to_none=True):
        zero_grads(self.parameters(), set_to_none)

    # ---- state ----------------------------------------------------------------------------
    def state_dict(self, destination=None, prefix="", keep_vars=False):
        """An ordered dict name -> tensor of every parameter and persistent buffer.

        The tensors are detached but share memory with the module (as in PyTorch): save them or
        clone them before training further if you need a snapshot."""
        out = OrderedDict() if destination is None else destination
        for mod_prefix, mod in self.named_modules(prefix=prefix.rstrip(".")):
            dot = mod_prefix + ("." if mod_prefix else "")
            for name, p in mod._parameters.items():
                if p is not None:
                    out[dot + name] = p if keep_vars else p.detach()
            for name, b in mod._buffers.items():
                if b is not None and name not in mod._non_persistent:
                    out[dot + name] = b if keep_vars else b.detach()
        return out

    def load_state_dict(self, state_dict, strict=True):
        """Copy values into this module's parameters and buffers (checked first, then all copied).

        strict=True: missing or unexpected keys are an error. A shape mismatch is always an error.
        Returns (missing_keys, unexpected_keys). The dict you pass in is not changed."""
        if not hasattr(state_dict, "keys"):
            raise TypeError(f"load_state_dict expects a dict of tensors, got {type(state_dict).__name__}")
        own = self.state_dict(keep_vars=True)
        missing = [k for k in own if k not in state_dict]
        unexpected = [k for k in state_dict if k not in own]
        problems = []
        if strict and unexpected:
            problems.append("Unexpected key(s) in state_dict: " + ", ".join(f'"{k}"' for k in unexpected) + ".")
        if strict and missing:
            problems.append("Missing key(s) in state_dict: " + ", ".join(f'"{k}"' for k in missing) + ".")
        pairs = []
        for key, target in own.items():
            if key not in state_dict:
                continue
            value = state_dict[key]
            shape = tuple(getattr(value, "shape", ()))
            if not hasattr(value, "shape") and not isinstance(value, (int, float, bool)):
                problems.append(f'For "{key}": expected a tensor or array, got {type(value).__name__}.')
            elif shape != tuple(target.shape):
                problems.append(f'size mismatch for {key}: copying a param with shape {shape} from checkpoint, '
                                f'the shape in current model is {tuple(target.shape)}.')
            else:
                pairs.append((target, value))
        if problems:
            raise StateDictError(f"Error(s) in loading state_dict for {type(self).__name__}:\n\t"
                                 + "\n\t".join(problems))
        with no_grad():
            for target, value in pairs:
                if isinstance(value, Tensor) and value.device is not target.device:
                    value = value.to(target.device)
                target.copy_(value)
        return _IncompatibleKeys(missing, unexpected)

    # ---- devices and dtypes -------------------------------------------------------------------
    def _apply_arrays(self, fn):
        """Replace every parameter's and buffer's array (and grad) in place: the objects stay the same,
        so optimizers holding them keep working."""
        for t in itertools.chain(self.parameters(), self.buffers()):
            new = fn(t._data)
            if new is not t._data:
                t._data = new
                t._device = _device_of(new)
                t._version[0] += 1
            if t._grad is not None:
                g = fn(t._grad._data)
                t._grad = Tensor(g, device=_device_of(g)) if g is not t._grad._data else t._grad
        return self

    def to(self, device=None, dtype=None):
        """Move (and/or cast floating-point) parameters and buffers in place; returns self.

        `m.to("gpu")`, `m.to(dg.float64)`, `m.to("cpu", dg.float32)`."""
        if device is not None and not isinstance(device, str) and not hasattr(device, "xp"):
            device, dtype = None, device
        elif isinstance(device, str) and device != "cpu" and not device.startswith(("gpu", "cuda")):
            device, dtype = None, device
        dev = _parse_device(device) if device is not None else None
        dt = _dt.resolve(dtype) if dtype is not None else None
        if dt is not None and not _dt.is_floating(dt):
            raise TypeError(f"Module.to only casts to floating-point dtypes, got {dt}")

        def fn(arr):
            if dt is not None and arr.dtype.kind == "f" and arr.dtype != dt:
                arr = arr.astype(dt)
            if dev is not None and _device_of(arr) is not dev:
                arr = to_device(arr, dev)
            return arr
        return self._apply_arrays(fn)

    def cpu(self):
        return self.to("cpu")

    def gpu(self, index=0):
        return self.to(f"gpu:{index}")

    cuda = gpu

    def float(self):
        return self.to(_dt.float32)

    def double(self):
        return self.to(_dt.float64)

    def half(self):
        return self.to(_dt.float16)

    # ---- printing -------------------------------------------------------------------------
    def extra_repr(self):
        """The text inside this module's parentheses in repr (override in layers)."""
        return ""

    def _get_name(self):
        return type(self).__name__

    def __repr__(self):
        lines = []
        extra = self.extra_repr()
        if extra:
            lines.extend(extra.split("\n"))
        for name, mod in self._modules.items():
            body = repr(mod).replace("\n", "\n  ")
            lines.append(f"({name}): {body}")
        if not lines:
            return f"{self._get_name()}()"
        if not self._modules and len(lines) == 1:
            return f"{self._get_name()}({lines[0]})"
        return f"{self._get_name()}(\n  " + "\n  ".join(lines) + "\n)"

    def num_parameters(self, trainable_only=False):
        """Total element count of the parameters (only those requiring grad when trainable_only)."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad or not trainable_only)


def _device_of(arr):
    return device_of_array(arr)


# ---- containers ------------------------------------------------------------------------------

class Sequential(Module):
    """Children called in order; `Sequential(a, b)` or `Sequential(OrderedDict(name=a, ...))`."""

    def __init__(self, *modules):
        super().__init__()
        if len(modules) == 1 and isinstance(modules[0], OrderedDict):
            for name, m in modules[0].items():
                self.add_module(name, m)
        else:
            for i, m in enumerate(modules):
                self.add_module(str(i), m)

    def forward(self, x):
        for m in self._modules.values():
            x = m(x)
        return x

    def __len__(self):
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules.values())

    def __getitem__(self, idx):
        if isinstance(idx, slice):
            return Sequential(OrderedDict(list(self._modules.items())[idx]))
        return list(self._modules.values())[_index(idx, len(self))]

    def __setitem__(self, idx, module):
        key = list(self._modules)[_index(idx, len(self))]
        self.add_module(key, module)

    def __delitem__(self, idx):
        keys = list(self._modules)
        for key in (keys[idx] if isinstance(idx, slice) else [keys[_index(idx, len(self))]]):
            del self._modules[key]

    def append(self, module):
        self.add_module(str(len(self)), module)
        return self


def _index(idx, n):
    idx = int(idx)
    if not -n <= idx < n:
        raise IndexError(f"index {idx} is out of range for a container of {n} modules")
    return idx % n


class ModuleList(Module):
    """A list of modules whose parameters belong to the owning module."""

    def __init__(self, modules=None):
        super().__init__()
        if modules is not None:
            self.extend(modules)

    def __len__(self):
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules.values())

    def __getitem__(self, idx):
        if isinstance(idx, slice):
            return ModuleList(list(self._modules.values())[idx])
        return self._modules[str(_index(idx, len(self)))]

    def __setitem__(self, idx, module):
        self.add_module(str(_index(idx, len(self))), module)

    def __delitem__(self, idx):
        mods = list(self._modules.values())
        del mods[idx if isinstance(idx, slice) else _index(idx, len(self))]
        self._modules.clear()
        self.extend(mods)

    def append(self, module):
        self.add_module(str(len(self)), module)
        return self

    def extend(self, modules):
        for m in modules:
            self.append(m)
        return self

    def insert(self, index, module):
        mods = list(self._modules.values())
        mods.insert(index, module)
        self._modules.clear()
        self.extend(mods)

    def forward(self, *args, **kwargs):
        raise NotImplementedError("ModuleList has no forward(); iterate over it in your own forward")


class ModuleDict(Module):
    """A dict of modules whose parameters belong to the owning module (keys keep insertion order)."""

    def __init__(self, modules=None):
        super().__init__()
        if modules is not None:
            self.update(modules)

    def __getitem__(self, key):
        return self._modules[key]

    def __setitem__(self, key, module):
        self.add_module(key, module)

    def __delitem__(self, key):
        del self._modules[key]

    def __len__(self):
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules)

    def __contains__(self, key):
        return key in self._modules

    def keys(self):
        return self._modules.keys()

    def values(self):
        return self._modules.values()

    def items(self):
        return self._modules.items()

    def pop(self, key):
        return self._modules.pop(key)

    def clear(self):
        self._modules.clear()

    def update(self, modules):
        items = modules.items() if hasattr(modules, "items") else modules
        for k, m in items:
            self[k] = m

    def forward(self, *args, **kwargs):
        raise NotImplementedError("ModuleDict has no forward(); index it in your own forward")
