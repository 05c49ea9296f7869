"""How tensors print: PyTorch's layout, numbers and summarisation, on the tensor's host copy.

    tensor([0.3333, 1.0000], requires_grad=True)
    tensor([1, 2, 3])          tensor(3.)          tensor([1., 2.], dtype=dualgraph.float64)

The rules are PyTorch's default print options (torch._tensor_str): floats get `precision` digits after
the point, or scientific notation when the largest and smallest nonzero magnitudes differ by more than
1000x, the largest exceeds 1e8 or the smallest is under 1e-4; floats that are all whole numbers print
as `3.`; every element of a tensor is padded to one width; more than `threshold` elements are
summarised with `edgeitems` at each end of each dimension and `...`; lines wrap at `linewidth`.
A dtype other than the default float dtype, int64 and bool is named as `dtype=dualgraph.<name>` (the
attribute of the dualgraph module that holds it), where PyTorch writes `dtype=torch.<name>`.
"""
import contextlib
import math

import numpy as _np

from . import dtypes as _dt


class _Options:
    __slots__ = ("precision", "threshold", "edgeitems", "linewidth", "sci_mode")

    def __init__(self):
        self.precision, self.threshold, self.edgeitems, self.linewidth, self.sci_mode = 4, 1000, 3, 80, None


OPTIONS = _Options()

_PROFILES = {"default": (4, 1000, 3, 80), "short": (2, 1000, 2, 80), "full": (4, math.inf, 3, 80)}


def set_printoptions(precision=None, threshold=None, edgeitems=None, linewidth=None, profile=None,
                     sci_mode=None):
    """PyTorch's torch.set_printoptions: digits after the point, the element count above which tensors
    are summarised, the items kept at each end when summarising, the line width, a profile
    ('default', 'short', 'full') to start from, and sci_mode (None: chosen per tensor)."""
    if profile is not None:
        if profile not in _PROFILES:
            raise ValueError(f"set_printoptions: profile must be one of {sorted(_PROFILES)}, got {profile!r}")
        OPTIONS.precision, OPTIONS.threshold, OPTIONS.edgeitems, OPTIONS.linewidth = _PROFILES[profile]
    for name, value in (("precision", precision), ("threshold", threshold), ("edgeitems", edgeitems),
                        ("linewidth", linewidth)):
        if value is not None:
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise ValueError(f"set_printoptions: {name} must be a non-negative number, got {value!r}")
            setattr(OPTIONS, name, value)
    OPTIONS.sci_mode = sci_mode  # as in PyTorch, leaving it out goes back to choosing per tensor


def get_printoptions():
    """The current options as a dict that set_printoptions(**options) accepts."""
    return {n: getattr(OPTIONS, n) for n in _Options.__slots__}


@contextlib.contextmanager
def printoptions(**kwargs):
    """Print options changed inside a with block only."""
    old = get_printoptions()
    set_printoptions(**kwargs)
    try:
        yield
    finally:
        set_printoptions(**old)


class _Formatter:
    """One width and one notation for every element of a tensor (from the elements that are shown)."""

    def __init__(self, a):
        self.floating = a.dtype.kind == "f"
        self.int_mode, self.sci_mode, self.width = True, False, 1
        p = OPTIONS.precision
        if not self.floating:
            for v in a.reshape(-1).tolist():
                self.width = max(self.width, len(str(v)))
        else:
            vals = a.reshape(-1)
            vals = vals[_np.isfinite(vals) & (vals != 0)]
            if vals.size:  # otherwise (only zeros, nan and inf) every element prints in whole-number form
                mags = _np.abs(vals).astype(_np.float64)
                lo, hi = float(mags.min()), float(mags.max())
                self.int_mode = bool(_np.all(vals == _np.ceil(vals)))
                self.sci_mode = (hi / lo > 1000.0 or hi > 1.0e8 or lo < 1.0e-4) if OPTIONS.sci_mode is None \
                    else bool(OPTIONS.sci_mode)
                values = vals.tolist()
                if self.sci_mode:
                    self.width = max(len(f"{v:.{p}e}") for v in values)
                elif self.int_mode:
                    self.width = max(len(f"{v:.0f}") + 1 for v in values)
                else:
                    self.width = max(len(f"{v:.{p}f}") for v in values)

    def __call__(self, value):
        if self.floating:
            p = OPTIONS.precision
            if self.sci_mode:
                s = f"{value:{self.width}.{p}e}"
            elif self.int_mode:
                s = f"{value:.0f}"
                if not (math.isinf(value) or math.isnan(value)):
                    s += "."
            else:
                s = f"{value:.{p}f}"
        else:
            s = str(value)
        return " " * (self.width - len(s)) + s


def _summarized(a):
    """The elements a summarised print shows (edgeitems at each end of every dimension)."""
    e = OPTIONS.edgeitems
    if a.ndim == 0:
        return a
    if a.ndim == 1:
        return _np.concatenate((a[:e], a[-e:])) if a.shape[0] > 2 * e else a
    if not e:
        return a[(slice(0, 0),) * a.ndim]
    rows = list(range(e)) + list(range(a.shape[0] - e, a.shape[0])) if a.shape[0] > 2 * e else range(a.shape[0])
    return _np.stack([_summarized(a[i]) for i in rows])


def _vector(a, indent, summarize, fmt):
    e = OPTIONS.edgeitems
    per_line = max(1, int(math.floor((OPTIONS.linewidth - indent) / (fmt.width + 2))))
    if summarize and not e:
        data = ["..."]
    elif summarize and a.shape[0] > 2 * e:
        data = [fmt(v) for v in a[:e].tolist()] + [" ..."] + [fmt(v) for v in a[-e:].tolist()]
    else:
        data = [fmt(v) for v in a.tolist()]
    lines = [", ".join(data[i:i + per_line]) for i in range(0, len(data), per_line)]
    return "[" + (",\n" + " " * (indent + 1)).join(lines) + "]"


def _nested(a, indent, summarize, fmt):
    if a.ndim == 0:
        return fmt(a.item())
    if a.ndim == 1:
        return _vector(a, indent, summarize, fmt)
    e, n = OPTIONS.edgeitems, a.shape[0]
    if summarize and n > 2 * e:
        parts = ([_nested(a[i], indent + 1, summarize, fmt) for i in range(e)] + ["..."]
                 + [_nested(a[i], indent + 1, summarize, fmt) for i in range(n - e, n)])
    else:
        parts = [_nested(a[i], indent + 1, summarize, fmt) for i in range(n)]
    return "[" + ("," + "\n" * (a.ndim - 1) + " " * (indent + 1)).join(parts) + "]"


def array_str(a, indent):
    """The bracketed values of host array `a` as PyTorch prints them, continuation lines indented by `indent`."""
    if a.size == 0:
        return "[]"
    if a.dtype == _np.float16:
        a = a.astype(_np.float32)
    summarize = a.size > OPTIONS.threshold
    fmt = _Formatter(_summarized(a) if summarize else a)
    return _nested(a, indent, summarize, fmt)


def dtype_name(dt):
    return f"dualgraph.{_np.dtype(dt).name if dt != _dt.bool_ else 'bool_'}"


def tensor_repr(arr, dtype, device, grad_fn_name, requires_grad, prefix="tensor("):
    """`tensor(...)` for a host array with its dtype, device (None for the CPU) and autograd fields."""
    indent = len(prefix)
    suffixes = []
    if device is not None:
        suffixes.append(f"device='{device}'")
    if arr.size == 0:
        if arr.ndim != 1:
            suffixes.append(f"size={tuple(arr.shape)}")
        if dtype != _dt.DEFAULT_FLOAT:
            suffixes.append(f"dtype={dtype_name(dtype)}")
        body = "[]"
    else:
        if not OPTIONS.edgeitems:
            suffixes.append(f"size={tuple(arr.shape)}")
        if dtype not in (_dt.DEFAULT_FLOAT, _dt.int64, _dt.bool_):
            suffixes.append(f"dtype={dtype_name(dtype)}")
        body = array_str(arr, indent)
    if grad_fn_name is not None:
        suffixes.append(f"grad_fn=<{grad_fn_name}>")
    elif requires_grad:
        suffixes.append("requires_grad=True")
    out = [prefix + body]
    last = len(out[0]) - out[0].rfind("\n") + 1
    for s in suffixes:
        if last + len(s) + 2 > OPTIONS.linewidth:
            out.append(",\n" + " " * indent + s)
            last = indent + len(s)
        else:
            out.append(", " + s)
            last += len(s) + 2
    out.append(")")
    return "".join(out)
