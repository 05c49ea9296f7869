"""dg.save / dg.load: checkpoints that never execute code when loaded (no pickle).

File layout (all integers little-endian):

    8 bytes   magic b"DGCKPT01"
    8 bytes   uint64 header length H (at most MAX_HEADER_BYTES)
    H bytes   UTF-8 JSON header: {"format", "version", "tree", "arrays": [{dtype, shape, offset, nbytes}],
              "data_bytes", "data_crc32"}, then b"\n#crc32:" and the header's CRC-32 in 8 hex digits
              (a header without that suffix still loads)
    padding   zeros up to a 64-byte boundary
    data      the raw little-endian bytes of every array, each at a 64-byte aligned offset

`tree` is the saved object in JSON with tagged nodes for what JSON lacks: {"$dict": [[key, value], ...]}
(string or int keys, order kept), {"$tuple": [...]}, {"$float": "nan"|"inf"|"-inf"},
{"$tensor": i, "requires_grad": b} and {"$ndarray": i} referring to entry i of "arrays".
Only plain numeric dtypes are accepted (never object arrays), every shape/offset/length is checked
against the file before any array is made, and CRC-32s of the header and of the data catch corruption
(a flipped byte in the header could otherwise rename a key, change a number or transpose a shape).

Saving encodes everything first, writes a temporary file in the target's directory, fsyncs it and
renames it over the target with os.replace, so a crash or error mid-save never leaves a half-written
file under the final name and keeps an older checkpoint intact.
"""
import json
import math
import os
import struct
import zlib

import numpy as _np

from .backend import to_host
from ._files import atomic_write
from .errors import DualgraphError
from .tensor import Tensor

__all__ = ["save", "load", "CheckpointError", "UnsafeCheckpointError", "TruncatedCheckpointError",
           "CorruptCheckpointError", "MAX_HEADER_BYTES"]

MAGIC = b"DGCKPT01"
FORMAT = "dualgraph-checkpoint"
VERSION = 1
ALIGN = 64
MAX_HEADER_BYTES = 64 * 1024 * 1024
MAX_NDIM = 64
_HEADER_CRC = b"\n#crc32:"
_ALLOWED_DTYPES = {"|b1", "|i1", "|u1", "<i2", "<u2", "<i4", "<u4", "<i8", "<u8", "<f2", "<f4", "<f8"}


class CheckpointError(DualgraphError, ValueError):
    """The file is not a checkpoint dg.load can read, or the object cannot be saved."""


class UnsafeCheckpointError(CheckpointError):
    """The file is a pickle (or a PyTorch zip holding one): loading it could run arbitrary code."""


class TruncatedCheckpointError(CheckpointError):
    """The file ends before the header or the data it announces."""


class CorruptCheckpointError(CheckpointError):
    """The header or the data do not check out (bad JSON, bad dtype/shape/offsets, CRC mismatch)."""


# ---- saving ---------------------------------------------------------------------------------

def save(obj, path):
    """Write `obj` (nested dicts/lists/tuples of tensors, numpy arrays, numbers, strings, None) to `path`.

    Typical use: `dg.save({"model": model.state_dict(), "optim": opt.state_dict(), "epoch": 3}, "ckpt.dg")`.
    Nothing is written unless the whole object can be encoded; the file appears atomically."""
    arrays = []
    tree = _encode(obj, arrays, "obj")
    entries, chunks, offset = [], [], 0
    crc = 0
    for arr in arrays:
        data = _le_bytes(arr)
        pad = (-offset) % ALIGN
        if pad:
            chunks.append(b"\0" * pad)
            crc = zlib.crc32(b"\0" * pad, crc)
            offset += pad
        entries.append({"dtype": _dtype_key(arr.dtype),
                        "shape": list(arr.shape), "offset": offset, "nbytes": len(data)})
        chunks.append(data)
        crc = zlib.crc32(data, crc)
        offset += len(data)
    header = json.dumps({"format": FORMAT, "version": VERSION, "tree": tree, "arrays": entries,
                         "data_bytes": offset, "data_crc32": crc}, allow_nan=False,
                        separators=(",", ":")).encode("utf-8")
    header += _HEADER_CRC + b"%08x" % zlib.crc32(header)
    if len(header) > MAX_HEADER_BYTES:
        raise CheckpointError(f"dg.save: the header ({len(header)} bytes of structure) exceeds the "
                              f"{MAX_HEADER_BYTES}-byte limit; store large data as arrays")
    prefix = MAGIC + struct.pack("<Q", len(header)) + header
    prefix += b"\0" * ((-len(prefix)) % ALIGN)
    _atomic_write(os.fspath(path), [prefix] + chunks)


def _le_bytes(arr):
    if arr.dtype.byteorder == ">":
        arr = arr.astype(arr.dtype.newbyteorder("<"))
    return _np.ascontiguousarray(arr).tobytes()


def _encode(x, arrays, where):
    if isinstance(x, (_np.ndarray, _np.generic)):  # before float: np.float64 is a float subclass
        arrays.append(_checked_array(_np.asarray(x), where))
        return {"$ndarray": len(arrays) - 1, "scalar": isinstance(x, _np.generic)}
    if x is None or isinstance(x, (bool, str)):
        return x
    if isinstance(x, int):
        return x
    if isinstance(x, float):
        if math.isfinite(x):
            return x
        return {"$float": "nan" if math.isnan(x) else ("inf" if x > 0 else "-inf")}
    if isinstance(x, Tensor):
        if x._data is None:
            raise CheckpointError(f"dg.save: {where} is a symbolic (traced) tensor; save concrete values")
        arrays.append(_checked_array(to_host(x._data), where))
        return {"$tensor": len(arrays) - 1, "requires_grad": bool(x.requires_grad)}
    if isinstance(x, dict):
        items = []
        for k, v in x.items():
            if not isinstance(k, (str, int)) or isinstance(k, bool):
                raise CheckpointError(f"dg.save: dict keys must be str or int, {where} has a key of type "
                                      f"{type(k).__name__}")
            items.append([k, _encode(v, arrays, f"{where}[{k!r}]")])
        return {"$dict": items}
    if isinstance(x, list):
        return [_encode(v, arrays, f"{where}[{i}]") for i, v in enumerate(x)]
    if isinstance(x, tuple):
        return {"$tuple": [_encode(v, arrays, f"{where}[{i}]") for i, v in enumerate(x)]}
    raise CheckpointError(f"dg.save: cannot save {where} of type {type(x).__name__}; checkpoints hold nested "
                          f"dicts/lists/tuples of tensors, numpy arrays, numbers, strings and None (no pickle)")


def _dtype_key(dt):
    """'<f4', '|b1': the little-endian name of a dtype (what the header stores)."""
    return dt.newbyteorder("<").str if dt.itemsize > 1 else "|" + dt.str[1:]


def _checked_array(arr, where):
    if _dtype_key(arr.dtype) not in _ALLOWED_DTYPES:
        raise CheckpointError(f"dg.save: {where} has dtype {arr.dtype}, which checkpoints do not store "
                              f"(only bool, int, uint and float arrays)")
    return arr


def _atomic_write(path, chunks):
    atomic_write(path, chunks)


# ---- loading --------------------------------------------------------------------------------

def load(path, map_location=None):
    """Read a checkpoint written by dg.save. Tensors go to `map_location` (a device; default CPU).

    Never executes code from the file: pickles are refused with UnsafeCheckpointError, and truncated
    or damaged files raise TruncatedCheckpointError / CorruptCheckpointError."""
    path = os.fspath(path)
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        head = f.read(16)
        _check_magic(head, path)
        if len(head) < 16:
            raise TruncatedCheckpointError(f"{path}: the file ends inside the 16-byte preamble ({size} bytes)")
        (hlen,) = struct.unpack("<Q", head[8:16])
        if hlen > MAX_HEADER_BYTES:
            raise CorruptCheckpointError(f"{path}: the header claims {hlen} bytes, over the {MAX_HEADER_BYTES}-byte "
                                         f"limit; the file is damaged or not a dualgraph checkpoint")
        if 16 + hlen > size:
            raise TruncatedCheckpointError(f"{path}: the header needs {hlen} bytes but the file has only "
                                           f"{size - 16} after the preamble; the file is truncated")
        raw = f.read(hlen)
        header = _parse_header(raw, path)
        data_start = 16 + hlen + ((-(16 + hlen)) % ALIGN)
        expected = data_start + header["data_bytes"]
        if size < expected:
            raise TruncatedCheckpointError(f"{path}: the header announces {header['data_bytes']} bytes of array "
                                           f"data but the file has only {max(0, size - data_start)}; the file "
                                           f"is truncated")
        if size > expected:
            raise CorruptCheckpointError(f"{path}: {size - expected} unexpected bytes after the array data")
        f.seek(data_start)
        data = bytearray(header["data_bytes"])
        if f.readinto(data) != len(data):
            raise TruncatedCheckpointError(f"{path}: the file ended while reading the array data")
    if zlib.crc32(data) != header["data_crc32"]:
        raise CorruptCheckpointError(f"{path}: the array data fails its CRC-32 check; the file is damaged")
    arrays = [_array(e, data, path, i) for i, e in enumerate(header["arrays"])]
    device = None
    if map_location is not None:
        from .backend import device as _parse
        device = _parse(map_location)
    try:
        return _decode(header["tree"], arrays, device, path)
    except RecursionError:
        raise CorruptCheckpointError(f"{path}: the header is nested too deeply to be a checkpoint") from None


def _check_magic(head, path):
    if head.startswith(MAGIC[:len(head)]) and len(head) >= len(MAGIC):
        return
    if head[:1] == b"\x80" and len(head) > 1 and head[1] <= 5:
        raise UnsafeCheckpointError(
            f"{path} is a pickle file. dg.load never unpickles, because loading a pickle can run arbitrary "
            f"code. Load it with a trusted tool and re-save its tensors with dg.save.")
    if head.startswith(b"PK\x03\x04"):
        raise UnsafeCheckpointError(
            f"{path} is a zip archive (the format of torch.save, which stores pickles). dg.load does not "
            f"unpickle; in a trusted environment load it with torch.load(weights_only=True), convert the "
            f"tensors to numpy and save them with dg.save.")
    if head.startswith(b"\x93NUMPY"):
        raise CheckpointError(f"{path} is a .npy file; read it with numpy.load(allow_pickle=False)")
    if not head:
        raise TruncatedCheckpointError(f"{path} is empty")
    if len(head) < len(MAGIC) and MAGIC.startswith(head):
        raise TruncatedCheckpointError(f"{path}: the file ends inside the magic number ({len(head)} bytes)")
    raise CorruptCheckpointError(f"{path} is not a dualgraph checkpoint (it does not start with {MAGIC!r}); "
                                 f"note that dg.load never reads pickles")


def _parse_header(raw, path):
    crc_ok = True
    i = raw.rfind(_HEADER_CRC)
    if i >= 0 and len(raw) - i == len(_HEADER_CRC) + 8:
        raw, want = raw[:i], raw[i + len(_HEADER_CRC):]
        crc_ok = b"%08x" % zlib.crc32(raw) == want
    try:
        header = json.loads(raw.decode("utf-8"), parse_constant=_reject_constant)
    except (UnicodeDecodeError, ValueError) as e:
        raise CorruptCheckpointError(f"{path}: the header is not valid JSON ({e}); the file is damaged") from None
    except RecursionError:
        raise CorruptCheckpointError(f"{path}: the header is nested too deeply to be a checkpoint") from None
    if not crc_ok:
        raise CorruptCheckpointError(f"{path}: the header fails its CRC-32 check; the file is damaged")
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise CorruptCheckpointError(f"{path}: the header does not describe a {FORMAT}")
    if header.get("version") != VERSION:
        raise CheckpointError(f"{path}: checkpoint format version {header.get('version')!r} is not supported "
                              f"(this dualgraph reads version {VERSION})")
    for key, kind in (("arrays", list), ("data_bytes", int), ("data_crc32", int)):
        if not isinstance(header.get(key), kind) or isinstance(header.get(key), bool):
            raise CorruptCheckpointError(f"{path}: the header's {key!r} entry is missing or malformed")
    if header["data_bytes"] < 0 or "tree" not in header:
        raise CorruptCheckpointError(f"{path}: the header is malformed")
    return header


def _reject_constant(name):
    raise ValueError(f"non-standard JSON constant {name}")


def _array(entry, data, path, i):
    bad = CorruptCheckpointError(f"{path}: array entry {i} of the header is malformed")
    if not isinstance(entry, dict):
        raise bad
    dtype, shape, offset, nbytes = entry.get("dtype"), entry.get("shape"), entry.get("offset"), entry.get("nbytes")
    if dtype not in _ALLOWED_DTYPES:
        raise CorruptCheckpointError(f"{path}: array {i} has dtype {dtype!r}, which checkpoints never contain")
    if (not isinstance(shape, list) or len(shape) > MAX_NDIM
            or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in shape)):
        raise bad
    for v in (offset, nbytes):
        if not isinstance(v, int) or isinstance(v, bool) or v < 0:
            raise bad
    dt = _np.dtype(dtype)
    count = 1
    for s in shape:
        count *= s
    if count * dt.itemsize != nbytes or offset + nbytes > len(data):
        raise CorruptCheckpointError(f"{path}: array {i} (dtype {dtype}, shape {tuple(shape)}) does not fit "
                                     f"the data section")
    arr = _np.frombuffer(data, dtype=dt, count=count, offset=offset).reshape(shape)
    return arr if dt.isnative else arr.astype(dt.newbyteorder("="))


def _decode(x, arrays, device, path):
    if x is None or isinstance(x, (bool, int, float, str)):
        return x
    if isinstance(x, list):
        return [_decode(v, arrays, device, path) for v in x]
    if isinstance(x, dict) and len(x) >= 1:
        if "$dict" in x:
            items = x["$dict"]
            if not isinstance(items, list) or not all(isinstance(it, list) and len(it) == 2
                                                      and isinstance(it[0], (str, int)) for it in items):
                raise CorruptCheckpointError(f"{path}: a dict node of the header is malformed")
            return {k: _decode(v, arrays, device, path) for k, v in items}
        if "$tuple" in x and isinstance(x["$tuple"], list):
            return tuple(_decode(v, arrays, device, path) for v in x["$tuple"])
        if "$float" in x and x["$float"] in ("nan", "inf", "-inf"):
            return float(x["$float"])
        if "$tensor" in x or "$ndarray" in x:
            i = x.get("$tensor", x.get("$ndarray"))
            if not isinstance(i, int) or isinstance(i, bool) or not 0 <= i < len(arrays):
                raise CorruptCheckpointError(f"{path}: the header refers to array {i!r}, which does not exist")
            arr = arrays[i]
            if "$ndarray" in x:
                out = arr.copy()
                return out[()] if x.get("scalar") else out
            return _tensor(arr, device, bool(x.get("requires_grad")))
    raise CorruptCheckpointError(f"{path}: the header holds a node dg.load does not know: {str(x)[:80]}")


def _tensor(arr, device, requires_grad):
    from . import dtypes as _dt
    try:
        _dt.resolve(arr.dtype)
    except DualgraphError:
        arr = arr.astype(_np.int64 if arr.dtype.kind in "iu" else _np.float32)
    t = Tensor(arr, device=device)  # a copy: the tensor owns writable memory
    if requires_grad and t.dtype.kind == "f":
        t.requires_grad_(True)
    return t
