"""Gluon's Block and HybridBlock over dualgraph.

`Block.forward` runs eagerly. A HybridBlock's `hybridize()` makes its calls go through
`dg.function`: the first call after it traces `forward` into a graph (parameters become graph
inputs read at every call), later calls with the same input shapes run the optimized compiled graph,
and calls inside `autograd.record()` differentiate through it. `hybrid_forward(self, F, x, **params)`
receives `F` = dualgraph.nd (eager and traced alike) and each registered parameter's array."""
import threading
from collections import OrderedDict

from .. import nd
from .._state import STATE
from ..errors import DualgraphError
from ..function import function as _function
from ..serialization import load as _load, save as _save
from .parameter import DeferredInitializationError, Parameter, ParameterDict, ParameterError, _load_into
from ..onnx import export


class _Names(threading.local):
    def __init__(self):
        self.scopes = [("", {})]   # (prefix, counters) of the enclosing name_scope()s


_NAMES = _Names()


def _new_prefix(alias):
    prefix, counters = _NAMES.scopes[-1]
    n = counters.get(alias, 0)
    counters[alias] = n + 1
    return f"{prefix}{alias}{n}_"


class _NameScope:
    def __init__(self, block):
        self._block = block

    def __enter__(self):
        _NAMES.scopes.append((self._block.prefix, {}))
        return self

    def __exit__(self, *exc):
        _NAMES.scopes.pop()


class Block:
    """Base class of Gluon layers and models: assign child Blocks and Parameters as attributes,
    define `forward`, call the block."""

    def __init__(self, prefix=None, params=None):
        object.__setattr__(self, "_children", OrderedDict())
        object.__setattr__(self, "_reg_params", OrderedDict())
        object.__setattr__(self, "_forward_hooks", [])
        object.__setattr__(self, "_forward_pre_hooks", [])
        prefix = _new_prefix(self._alias()) if prefix is None else prefix
        object.__setattr__(self, "_prefix", prefix)
        object.__setattr__(self, "_name", prefix[:-1] if prefix.endswith("_") else prefix)
        object.__setattr__(self, "_params", ParameterDict(prefix, shared=params))
        object.__setattr__(self, "_scope", _NameScope(self))

    def _alias(self):
        return type(self).__name__.lower()

    # ---- registration ---------------------------------------------------------------------------
    def __setattr__(self, name, value):
        if isinstance(value, Block):
            self.register_child(value, name)
        elif isinstance(value, Parameter):
            self._reg_params[name] = value
        object.__setattr__(self, name, value)

    def register_child(self, block, name=None):
        if name is None:
            name = str(len(self._children))
        self._children[name] = block

    @property
    def prefix(self):
        return self._prefix

    @property
    def name(self):
        return self._name

    @property
    def params(self):
        """This block's own ParameterDict (not its children's: use collect_params for those)."""
        return self._params

    def name_scope(self):
        """Blocks created inside `with self.name_scope():` get this block's prefix in their names."""
        return self._scope

    def _own_params(self):
        out = OrderedDict((p.name, p) for p in self._params.values())
        for p in self._reg_params.values():
            out.setdefault(p.name, p)
        return out

    def collect_params(self, select=None):
        """Every Parameter of this block and its descendants, keyed by name; `select` is a regex
        (e.g. '.*weight') that names must match."""
        out = ParameterDict(self._prefix)
        seen = set()

        def visit(block):
            for name, p in block._own_params().items():
                if id(p) not in seen:
                    seen.add(id(p))
                    out._params[name] = p
            for child in block._children.values():
                visit(child)
        visit(self)
        return out._select(select)

    def _collect_params_with_prefix(self, prefix=""):
        """Structural names ('0.weight', 'dense.bias'), as save_parameters writes them."""
        prefix = prefix + "." if prefix else ""
        out = OrderedDict((prefix + k, p) for k, p in self._reg_params.items())
        for name, child in self._children.items():
            out.update(child._collect_params_with_prefix(prefix + name))
        return out

    # ---- initialization, files, devices ---------------------------------------------------------
    def initialize(self, init=None, ctx=None, verbose=False, force_reinit=False):
        """Initialize every parameter (Uniform(0.07) unless `init` or the parameter's own initializer
        says otherwise); unknown shapes wait for the first forward pass."""
        self.collect_params().initialize(init, ctx, verbose, force_reinit)

    def save_parameters(self, filename, deduplicate=False):
        """Write the parameters by structural name through dg.save (a safe format, no pickle)."""
        params = self._collect_params_with_prefix()
        out, seen = {}, {}
        for name, p in params.items():
            if deduplicate and id(p) in seen:
                continue
            seen[id(p)] = name
            out[name] = p.data().detach()
        _save(out, filename)

    def load_parameters(self, filename, ctx=None, allow_missing=False, ignore_extra=False, cast_dtype=False,
                        dtype_source="current"):
        loaded = _load(filename)
        if not isinstance(loaded, dict):
            raise ParameterError(f"load_parameters: {filename!r} does not hold a dict of parameters")
        params = self._collect_params_with_prefix()
        if cast_dtype:
            loaded = {k: (v.astype(params[k].dtype) if k in params and dtype_source == "current" else v)
                      for k, v in loaded.items()}
        _load_into(params, loaded, filename, allow_missing, ignore_extra, ctx)

    save_params = save_parameters
    load_params = load_parameters

    def cast(self, dtype):
        for child in self._children.values():
            child.cast(dtype)
        for p in self._reg_params.values():
            p.cast(dtype)

    def reset_ctx(self, ctx):
        self.collect_params().reset_ctx(ctx)

    def zero_grad(self):
        self.collect_params().zero_grad()

    def apply(self, fn):
        for child in self._children.values():
            child.apply(fn)
        fn(self)
        return self

    def hybridize(self, active=True, **kwargs):
        """A plain Block cannot be compiled as a whole; its HybridBlock children are."""
        for child in self._children.values():
            child.hybridize(active, **kwargs)

    # ---- calling --------------------------------------------------------------------------------
    def register_forward_pre_hook(self, hook):
        self._forward_pre_hooks.append(hook)
        return _Handle(self._forward_pre_hooks, hook)

    def register_forward_hook(self, hook):
        self._forward_hooks.append(hook)
        return _Handle(self._forward_hooks, hook)

    def __call__(self, *args, **kwargs):
        for hook in self._forward_pre_hooks:
            hook(self, args)
        st = STATE
        if st.grad_enabled and not st.recording:
            # MXNet records only inside autograd.record(): a forward pass outside it builds no graph
            # (PyTorch's rule would record it, since the parameters want gradients)
            st.grad_enabled = False
            try:
                out = self._run(*args, **kwargs)
            finally:
                st.grad_enabled = True
        else:
            out = self._run(*args, **kwargs)
        for hook in self._forward_hooks:
            hook(self, args, out)
        return out

    def _run(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

    def forward(self, *args):
        raise DualgraphError(f"{type(self).__name__} must define forward(self, x, ...)")

    # ---- printing -------------------------------------------------------------------------------
    def __repr__(self):
        if not self._children:
            return f"{type(self).__name__}()"
        body = "\n".join(f"  ({k}): " + repr(v).replace("\n", "\n  ") for k, v in self._children.items())
        return f"{type(self).__name__}(\n{body}\n)"

    def summary(self, *inputs):
        """Print each child block's output shape and parameter count for one forward pass of `inputs`."""
        rows = []

        def hook(block, args, out):
            shape = tuple(out.shape) if hasattr(out, "shape") else type(out).__name__
            n = sum(p.data().numel() for p in block._reg_params.values() if p.initialized)
            rows.append((f"{type(block).__name__}-{len(rows) + 1}", shape, n))
        handles = []
        self.apply(lambda b: handles.append(b.register_forward_hook(hook)) if b is not self else None)
        try:
            self(*inputs)
        finally:
            for h in handles:
                h.detach()
        total = sum(p.data().numel() for p in self.collect_params().values())
        lines = [f"{'Layer (type)':>30} {'Output Shape':>25} {'Param #':>10}"]
        lines += [f"{a:>30} {str(b):>25} {c:>10}" for a, b, c in rows]
        lines.append(f"Total params: {total}")
        print("\n".join(lines))


class _Handle:
    def __init__(self, hooks, hook):
        self._hooks, self._hook = hooks, hook

    def detach(self):
        if self._hook in self._hooks:
            self._hooks.remove(self._hook)

    remove = detach


class HybridBlock(Block):
    """A Block whose forward can be compiled: define `hybrid_forward(self, F, x, *args, **params)` (F is
    dualgraph.nd; params are this block's registered Parameters' arrays by attribute name) or a plain
    `forward`. `hybridize()` compiles it through dg.function."""

    def __init__(self, prefix=None, params=None):
        super().__init__(prefix, params)
        object.__setattr__(self, "_active", False)
        object.__setattr__(self, "_compiled", None)

    def hybridize(self, active=True, **kwargs):
        """Compile calls from now on (active=True) or run eagerly again (False). MXNet's static_alloc and
        static_shape are accepted: the compiled graph always plans its buffers statically."""
        object.__setattr__(self, "_active", bool(active))
        object.__setattr__(self, "_compiled", None)
        for child in self._children.values():
            child.hybridize(active, **kwargs)

    @property
    def compiled(self):
        """The dg.function behind a hybridized block (None before its first hybridized call)."""
        return self._compiled

    def infer_shape(self, *args):
        """Fill the unknown sizes of this block's parameters from its inputs (layers define this)."""

    def _ready(self):
        return all(p._data is not None for p in self.collect_params().values())

    def _finish_init(self, *args):
        if any(p._data is None for p in self._reg_params.values()):
            self.infer_shape(*args)
            for p in self._reg_params.values():
                if p._data is None and p._deferred is not None:
                    if not p._shape_known():
                        raise DeferredInitializationError(
                            f"{type(self).__name__}: Parameter {p.name!r} still has an unknown shape {p.shape} "
                            f"after the first input; give its shape when creating it, or define "
                            f"infer_shape(self, x) on the block to set it")
                    p._finish_deferred_init()

    def _run(self, *args, **kwargs):
        if not self._active or STATE.mode.symbolic:
            return self.forward(*args, **kwargs)
        if not self._ready():
            # the first pass finds the deferred shapes; it runs eagerly, later ones compiled
            return self.forward(*args, **kwargs)
        if self._compiled is None:
            object.__setattr__(self, "_compiled", _function(self.forward, name=f"{type(self).__name__}.forward"))
        return self._compiled(*args, **kwargs)

    def forward(self, x, *args, **kwargs):
        self._finish_init(x, *args)
        params = {name: p.data() for name, p in self._reg_params.items()}
        return self.hybrid_forward(nd, x, *args, **kwargs, **params)

    def hybrid_forward(self, F, x, *args, **kwargs):
        raise DualgraphError(f"{type(self).__name__} must define hybrid_forward(self, F, x, ...) or forward")

    def export(self, path, epoch=0, example_inputs=None, **kwargs):
        """Save the parameters to `path-%04d.params`, and, given example inputs, the network as ONNX
        (`path.onnx`, through dg.onnx.export) in place of MXNet's symbol JSON."""
        self.save_parameters(f"{path}-{epoch:04d}.params")
        if example_inputs is not None:
            inputs = example_inputs if isinstance(example_inputs, (tuple, list)) else (example_inputs,)
            export(lambda *xs: self.forward(*xs), tuple(inputs), f"{path}.onnx", **kwargs)
