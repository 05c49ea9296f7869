"""State a compiled function reads besides its arguments, and the guards that check it at each call.

A traced function may read tensors from its closure, its globals, `self` or a module passed to
dg.function (parameters, buffers, optimizer state). Those become graph inputs, found again at every
call by the path that reached them from the function's roots (closure cell, global name, `self` or
module attribute), so rebinding one is noticed. Python numbers and strings the code reads from
globals or its closure are baked into the trace and guarded by value. `compile_reader` generates,
per trace, one small function that checks all of this and returns the captured tensors to feed.
"""
import dis
import re
import types
import weakref

import numpy as np

from ..nn.module import Module
from ..tensor import Tensor


class Captured:
    """A tensor the trace read from outside its arguments: a graph input fed at every call."""

    __slots__ = ("ref", "value", "expr", "owner", "line", "aval")

    def __init__(self, t, v, expr, owner, line):
        self.ref = weakref.ref(t)   # the tensor last read (a rebound one of the same shape replaces it)
        self.value = v              # its graph input Value
        self.expr = expr            # path from the roots (see `roots`) or None when none was found
        self.owner = owner          # weakref to the tensor whose .grad this is, for a captured .grad
        self.line = line            # the user's source line that first read it
        self.aval = v.aval


def _function_of(fn):
    return fn.__func__ if isinstance(fn, types.MethodType) else fn


def roots(fn, module):
    """[(expression, object)] where capture paths start: the module (M), `self` (S), closure cells (C)
    and the globals the code names (G); and the plain function under a bound method."""
    found = []
    if module is not None:
        found.append(("M", module))
    f = fn
    if isinstance(f, types.MethodType):
        found.append(("S", f.__self__))
        f = f.__func__
    code = getattr(f, "__code__", None)
    if code is None:
        return found, f
    for i, name in enumerate(code.co_freevars):
        try:
            found.append((f"C[{i}].cell_contents", f.__closure__[i].cell_contents))
        except (ValueError, IndexError, TypeError):
            pass
    g = getattr(f, "__globals__", {})
    for name in _global_names(code):
        if name in g and not isinstance(g[name], types.ModuleType):
            found.append((f"G[{name!r}]", g[name]))
    return found, f


def _global_names(code):
    names = set(code.co_names)
    for c in code.co_consts:
        if isinstance(c, types.CodeType):
            names |= _global_names(c)
    return names


def closure_modules(fn):
    """Every nn.Module (with its submodules) that fn reads from its closure, globals or `self`."""
    mods, seen = [], set()
    for _, obj in roots(fn, None)[0]:
        if isinstance(obj, Module):
            for m in obj.modules():
                if id(m) not in seen:
                    seen.add(id(m))
                    mods.append(m)
    return mods


def find_paths(targets, fn, module, limit=20000):
    """id(tensor) -> expression reaching it from the function's roots (breadth first)."""
    want = {id(t) for t in targets}
    found = {}
    queue = [(expr, obj, 0) for expr, obj in roots(fn, module)[0]]
    seen = set()
    i = 0
    while i < len(queue) and len(found) < len(want) and i < limit:
        expr, obj, depth = queue[i]
        i += 1
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        if isinstance(obj, Tensor):
            if id(obj) in want and id(obj) not in found:
                found[id(obj)] = expr
            continue
        if depth >= 6 or isinstance(obj, (str, bytes, int, float, bool, type, types.ModuleType,
                                          types.FunctionType, types.BuiltinFunctionType, np.ndarray)):
            continue
        if isinstance(obj, dict):
            for k, v in list(obj.items()):
                if isinstance(k, (str, int)):
                    queue.append((f"{expr}[{k!r}]", v, depth + 1))
        elif isinstance(obj, (list, tuple)):
            for k, v in enumerate(obj):
                queue.append((f"{expr}[{k}]", v, depth + 1))
        else:
            d = getattr(obj, "__dict__", None)
            if isinstance(d, dict):
                for k, v in list(d.items()):
                    if isinstance(k, str):
                        queue.append((f"{expr}.__dict__[{k!r}]", v, depth + 1))
    return found


def frozen_globals(fn):
    """[(kind, name, value, file:line)] for the Python numbers, strings and arrays the function's code
    reads from globals ("global") or its closure ("closure variable")."""
    out = []
    f = _function_of(fn)
    code = getattr(f, "__code__", None)
    if code is None:
        return out
    g = getattr(f, "__globals__", {})
    cells = dict(zip(code.co_freevars, f.__closure__ or ()))
    seen = set()
    line = code.co_firstlineno
    for ins in dis.get_instructions(code):
        if ins.starts_line:
            line = ins.starts_line if isinstance(ins.starts_line, int) else (ins.positions.lineno or line)
        if ins.opname in ("LOAD_GLOBAL", "LOAD_NAME"):
            name = ins.argval
            if name in g:
                kind, value = "global", g[name]
            else:
                continue
        elif ins.opname in ("LOAD_DEREF", "LOAD_CLASSDEREF"):
            name = ins.argval
            cell = cells.get(name)
            try:
                kind, value = "closure variable", cell.cell_contents
            except (ValueError, AttributeError):
                continue
        else:
            continue
        if name in seen or not isinstance(value, (int, float, bool, str, np.ndarray, np.generic)):
            continue
        seen.add(name)
        out.append((kind, name, value, f"{code.co_filename}:{line}"))
    return out


def input_name(expr):
    """A graph input name from a capture path: G['W'] -> W, M.__dict__['_parameters']['w'] -> w."""
    if not expr:
        return None
    parts = re.findall(r"\['([A-Za-z_][A-Za-z0-9_]*)'\]|\[(\d+)\]", expr)
    names = [a or b for a, b in parts if (a or b) not in ("_parameters", "_buffers", "_modules", "__dict__")]
    if expr.startswith("C[") and not names[1:]:
        return None
    return ".".join(names) if names else None


def _readable(expr):
    return expr.replace(".__dict__[", "[").replace("C[", "closure[").replace(".cell_contents", "")


# ---- guards ------------------------------------------------------------------------------------------

def compile_reader(name, fn, module, captured, grad_guards, global_guards):
    """Generate `read()`: the captured tensors to feed this call, or None when a guard fails.

    Guards: every captured tensor is still reachable by its path (or, if rebound, by one of the same
    shape and dtype, which then replaces it); each guarded `.grad` is None exactly when it was at
    trace time; each guarded global or closure number/string has its traced value."""
    f = roots(fn, module)[1]
    freevars = _freevars(fn)
    env = {"M": module, "S": getattr(fn, "__self__", None), "C": getattr(f, "__closure__", None),
           "G": getattr(f, "__globals__", {})}
    lines = ["def read():", "    try:"]
    for i, c in enumerate(captured):
        env[f"R{i}"] = c.ref
        if c.expr is not None:
            lines.append(f"        t{i} = {c.expr}")
            lines.append(f"        if t{i} is not R{i}() and not _same(t{i}, {i}): return None")
        elif c.owner is not None:
            env[f"O{i}"] = c.owner
            lines.append(f"        t{i} = O{i}()._grad")
            lines.append(f"        if t{i} is None or (t{i} is not R{i}() and not _same(t{i}, {i})): return None")
        else:
            lines.append(f"        t{i} = R{i}()")
            lines.append(f"        if t{i} is None: return None")
    for j, (ref, was_none) in enumerate(grad_guards):
        env[f"Q{j}"] = ref
        lines.append(f"        if (Q{j}()._grad is None) is not {was_none}: return None")
    for j, (kind, gname, value) in enumerate(global_guards):
        env[f"V{j}"] = value
        if kind == "global":
            lines.append(f"        if G[{gname!r}] != V{j}: return None")
        elif gname in freevars:
            lines.append(f"        if C[{freevars.index(gname)}].cell_contents != V{j}: return None")
    lines.append(f"        return ({''.join(f't{i}, ' for i in range(len(captured)))})")
    lines.append("    except Exception:")
    lines.append("        return None")

    def _same(t, i):
        c = captured[i]
        ok = isinstance(t, Tensor) and not t._symbolic and tuple(t.shape) == tuple(c.aval.shape) \
            and t.dtype == c.aval.dtype
        if ok:
            c.ref = weakref.ref(t)
        return ok
    env["_same"] = _same
    exec(compile("\n".join(lines) + "\n", f"<dg-read-{name}>", "exec"), env)
    return env["read"]


def _freevars(fn):
    return list(getattr(getattr(_function_of(fn), "__code__", None), "co_freevars", ()))


def guard_reason(fn, captured, grad_guards, global_guards):
    """In words, which guard of `compile_reader` failed."""
    for c in captured:
        if c.ref() is None:
            return f"{_readable(c.expr or 'a captured tensor')} was replaced or freed"
    for ref, was_none in grad_guards:
        t = ref()
        if t is not None and (t._grad is None) != was_none:
            return f"the .grad of a {t.dtype}{list(t.shape)} tensor was {'None' if was_none else 'set'} when " \
                   f"traced and is {'None' if t._grad is None else 'set'} now"
    f = _function_of(fn)
    g = getattr(f, "__globals__", {})
    cells = dict(zip(_freevars(fn), getattr(f, "__closure__", None) or ()))
    for kind, name, value in global_guards:
        if kind == "global" and g.get(name) != value:
            return f"global {name} changed from {value!r} to {g.get(name)!r} (it was baked into the trace)"
        if kind != "global" and name in cells:
            try:
                now = cells[name].cell_contents
            except ValueError:
                continue
            if now != value:
                return f"closure variable {name} changed from {value!r} to {now!r} (it was baked into the trace)"
    return "a captured tensor was replaced by one of another shape or dtype"
