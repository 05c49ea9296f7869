"""The kernel of a `fused_elementwise` or `fused_reduce` node: its `body` subgraph (a chain of elementwise
nodes, possibly of broadcastable shapes, and for fused_reduce reductions of its values) as one callable
`kernel(*arrays, out=None) -> tuple of arrays`.

On numpy: the generated C loop (.ckernel) where it applies, else generated Python over the ops'
numpy ufuncs (`Op.ufunc`) with `out=`: the chain computes in place in as few buffers as possible (a
dead temporary is overwritten instead of allocating), so a 10-op chain allocates one array instead of
ten. An op without a ufunc calls its forward. numexpr and numba's vectorize measured slower than
plain numpy on tanh-GELU, and cache-sized blocking of the numpy chain did not pay for its extra ufunc
calls (docs/performance.md). On a GPU (`xp` is cupy) the chain is one `cupy.ElementwiseKernel`
generated from the ops' `expr`, or the same generated Python over cupy's ufuncs when an op has none;
a chain ending in reductions runs the chain that way and then each reduction's forward (cupy's).
The numpy chain reduces with the reduction record's kernel (ufunc.reduce with the axes bound).

`out` is a buffer the caller gives up (a donated input): a single-output chain may write its result
there. Kernels are cached on the body graph, one per backend.
"""
import numpy as np

from ..graph.ir import Graph
from . import ckernel


def kernel_for(body, xp):
    key = "_kernel_cupy" if xp is not np else "_kernel"
    k = body.meta.get(key)
    if k is None:
        if xp is np:
            k = ckernel.make(body, python_kernel(body, np))
        else:
            k = _cupy_kernel(body, xp)
        body.meta[key] = k
    return k


def python_kernel(body, xp):
    """Generated Python: each op a ufunc call with out= into a dead same-typed buffer when there is one."""
    glob = {"xp": xp, "np": np}
    names = {}
    lines = []
    args = []
    for i, v in enumerate(body.inputs):
        names[id(v)] = f"a{i}"
        args.append(f"a{i}")
    last = body.last_uses()
    outs = {id(v) for v in body.outputs}
    owned = set()          # names of temporaries this kernel allocated (safe to overwrite)
    free = []              # (name, aval) of dead owned temporaries
    tmp = 0
    overflow = False

    def ref(v):
        if v.weak:
            c = v.const
            return repr(c) if isinstance(c, (bool, int)) or np.isfinite(c) else _g(glob, c)
        if v.const is not None:
            return _g(glob, v.const)
        return names[id(v)]

    for k, n in enumerate(body.nodes):
        o = n.outputs[0]
        ins = [ref(v) for v in n.inputs]
        uf = n.op.ufunc or None
        float_ok = uf is not None and not n.attrs and o.aval.dtype.kind == "f" and all(
            v is not None and (v.weak or v.aval.dtype == o.aval.dtype) for v in n.inputs)
        if uf == "exp":
            overflow = True  # exp overflowing to inf is the limit the chain wants (1 + tanh lowered to exp)
        # a buffer that dies here, of the output's type and full shape
        buf = None
        for v in n.inputs:
            if (v is not None and not v.weak and v.const is None and names.get(id(v)) in owned
                    and last.get(id(v)) == k and id(v) not in outs and v.aval == o.aval):
                buf = names[id(v)]
                break
        if buf is None:
            for i, (nm, av) in enumerate(free):
                if av == o.aval:
                    buf = nm
                    free.pop(i)
                    break
        final = len(body.outputs) == 1 and body.outputs[0] is o and k == len(body.nodes) - 1
        if final and float_ok:
            dest = f"out if out is not None else {buf}" if buf is not None else "out"
            name = "r"
            lines.append(f"    r = xp.{uf}({', '.join(ins)}, out={dest})")
        elif float_ok:
            if buf is not None:
                lines.append(f"    xp.{uf}({', '.join(ins)}, out={buf})")
                name = buf
            else:
                name = f"t{tmp}"
                tmp += 1
                lines.append(f"    {name} = xp.{uf}({', '.join(ins)})")
        else:
            # a reduction's record kernel (numpy's ufunc.reduce with the axes bound) where it gives one
            k_red = n.op.kernel(n, xp) if n.op.reduce and n.op.kernel is not None else None
            name = f"t{tmp}"
            tmp += 1
            if k_red is not None:
                lines.append(f"    {name} = {_g(glob, k_red)}({', '.join(ins)})")
            else:
                f = _g(glob, n.op.forward)
                kw = "".join(f", {a}={_g(glob, val)}" for a, val in n.attrs.items())
                lines.append(f"    {name} = xp.asarray({f}(xp{''.join(', ' + i for i in ins)}{kw}))")
            if buf is not None:
                free.append((buf, o.aval))
        names[id(o)] = name
        owned.add(name)
        # temporaries that die here and were not reused become free
        for v in n.inputs:
            if (v is not None and not v.weak and v.const is None and last.get(id(v)) == k and id(v) not in outs
                    and names.get(id(v)) in owned and names[id(v)] != name
                    and all(names[id(v)] != f for f, _ in free)):
                free.append((names[id(v)], v.aval))
    rets = [names[id(v)] if id(v) in names else ref(v) for v in body.outputs]
    src = "def kernel(" + "".join(a + ", " for a in args) + "out=None):\n"
    if overflow:
        src += "    with np.errstate(over='ignore'):\n" + "\n".join("    " + ln for ln in lines) + "\n"
        src += f"        return ({''.join(r + ', ' for r in rets)})\n"
    else:
        src += "\n".join(lines) + f"\n    return ({''.join(r + ', ' for r in rets)})\n"
    exec(compile(src, "<dg-fused-kernel>", "exec"), glob)
    k = glob["kernel"]
    k.source = src
    return k


def _g(glob, obj):
    name = f"g{len(glob)}"
    glob[name] = obj
    return name


_CTYPES = {"float32": "float", "float64": "double", "float16": "float16", "int64": "long long",
           "int32": "int", "bool": "bool"}


def _cupy_kernel(body, cp):
    """One cupy.ElementwiseKernel for the whole chain, or the generated ufunc calls when an op of it has
    no expression (or a dtype has no CUDA type here).

    The C follows the CPU's arithmetic: a weak Python float is cast to the type of the tensor it meets
    (numpy computes `float32 * 0.1` with float32(0.1), C would use the double), a weak int stays an
    integer literal (an int64 chain never goes through a double), and a non-finite one is a kernel
    argument (CUDA C has no literal for inf/nan). cupy compiles at the first call, so a compile error
    surfaces there and falls back to the ufunc calls too."""
    reds = [n for n in body.nodes if n.op.reduce]
    if reds:
        return _cupy_reduce_kernel(body, reds, cp)
    if any(not n.op.expr or n.attrs for n in body.nodes):
        return python_kernel(body, cp)
    shapes = {tuple(v.aval.shape) for v in body.outputs}
    if len(shapes) != 1 or any(not _covers(next(iter(shapes)), v.aval.shape) for v in body.inputs):
        return python_kernel(body, cp)  # an output smaller than the loop: cupy gives every output the loop's shape
    try:
        names, params, code, scalars = {}, [], [], []
        for i, v in enumerate(body.inputs):
            names[id(v)] = f"a{i}"
            _CTYPES[str(v.aval.dtype)]  # a dtype without a CUDA type here: the ufunc calls instead
            params.append(f"{v.aval.dtype} a{i}")  # cupy's parameter types are numpy's names, the body's are C's
        for k, n in enumerate(body.nodes):
            t = _CTYPES[str(n.outputs[0].aval.dtype)]
            typed = [v.aval.dtype for v in n.inputs if not v.weak]
            args = []
            for v in n.inputs:
                if not v.weak:
                    args.append(names[id(v)])
                    continue
                c = v.const
                if isinstance(c, (bool, np.bool_)):
                    args.append("true" if c else "false")
                elif isinstance(c, (int, np.integer)):
                    args.append(f"{int(c)}LL" if abs(int(c)) > 2 ** 31 - 1 else str(int(c)))
                elif not np.isfinite(c):
                    args.append(f"s{len(scalars)}")
                    scalars.append(float(c))
                else:
                    ft = next((d for d in typed if d.kind == "f"), None)
                    args.append(f"(({_CTYPES[str(ft)]}){float(c)!r})" if ft is not None else repr(float(c)))
            code.append(f"{t} t{k} = ({t}){n.op.expr.format(*args, t=t)};")
            names[id(n.outputs[0])] = f"t{k}"
        params += [f"float64 s{j}" for j in range(len(scalars))]
        outs = [f"{v.aval.dtype} o{i}" for i, v in enumerate(body.outputs) if _CTYPES[str(v.aval.dtype)]]
        code += [f"o{i} = {names[id(v)]};" for i, v in enumerate(body.outputs)]
        ek = cp.ElementwiseKernel(", ".join(params), ", ".join(outs), "\n".join(code), "dg_fused")
    except (KeyError, IndexError):
        return python_kernel(body, cp)
    compile_error = getattr(getattr(cp.cuda, "compiler", None), "CompileException", Exception)
    state = {"ek": ek, "ran": False, "fallback": None}

    def kernel(*xs, out=None):
        ek = state["ek"]
        if ek is None:
            return state["fallback"](*xs, out=out)
        args = xs + tuple(scalars)
        try:
            if out is not None and len(body.outputs) == 1:
                r = ek(*args, out)  # written into the donated buffer (cupy broadcasts the inputs)
            else:
                r = ek(*args)
        except compile_error:
            if state["ran"]:
                raise
            state["ek"], state["fallback"] = None, python_kernel(body, cp)
            return state["fallback"](*xs, out=out)
        state["ran"] = True
        return r if isinstance(r, tuple) else (r,)
    kernel.source = "\n".join(code)
    return kernel


def _covers(big, small):
    big, small = tuple(big), tuple(small)
    return len(small) <= len(big) and all(s == 1 or s == b for s, b in zip(small[::-1], big[::-1]))


def _cupy_reduce_kernel(body, reds, cp):
    """A chain ending in reductions on a GPU: the chain as one kernel (its outputs: the body's other outputs
    and the reductions' operands), then each reduction as its record's forward (cupy's own reduction)."""
    chain = Graph("chain")
    m = {id(v): chain.add_input(v.aval) for v in body.inputs}
    for n in body.nodes:
        if not n.op.reduce:
            bn = chain.add_node(n.op, [m.get(id(v), v) if v is not None else None for v in n.inputs], n.attrs,
                                [o.aval for o in n.outputs], n.source)
            m.update(zip((id(o) for o in n.outputs), bn.outputs))
    vals = [v for v in body.outputs if not v.producer.op.reduce]
    chain.outputs = [m[id(v)] for v in vals] + [m[id(n.inputs[0])] for n in reds]
    run_chain = _cupy_kernel(chain, cp)
    where = [("v", vals.index(v)) if not v.producer.op.reduce else ("r", reds.index(v.producer))
             for v in body.outputs]
    n_val = len(vals)

    def kernel(*xs, out=None):
        got = run_chain(*xs)
        done = [n.op.forward(cp, got[n_val + k], **n.attrs) for k, n in enumerate(reds)]
        return tuple(got[i] if w == "v" else done[i] for w, i in where)
    kernel.source = getattr(run_chain, "source", "")
    return kernel
