"""dg.save / dg.load: checkpoints that never execute code when loaded (no pickle).

File layout (all integers little-endian):

    8 bytes   magic b"DGCKPT01"
    8 bytes   uint64 header length H (at most MAX_HEADER_BYTES)
    H bytes   UTF-8 JSON header: {"format", "version", "tree", "arrays": [{dtype, shape, offset, nbytes}],
              "data_bytes", "data_crc32"}, then b"\n#crc32:" and the header's CRC-32 in 8 lowercase hex
              digits (required)
    padding   zeros up to a 64-byte boundary
    data      the raw little-endian bytes of every array, in the order of "arrays", each at the first
              64-byte aligned offset after the previous one (zeros between), ending with the last array

`tree` is the saved object in JSON with tagged nodes for what JSON lacks: {"$dict": [[key, value], ...]}
(string or int keys, order kept), {"$tuple": [...]}, {"$float": "nan"|"inf"|"-inf"},
{"$tensor": i, "requires_grad": b} and {"$ndarray": i, "scalar": b} referring to entry i of "arrays";
every entry is referred to exactly once.
Only plain numeric dtypes are accepted (never object arrays), and CRC-32s of the header and of the data
catch corruption (a flipped byte in the header could otherwise rename a key, change a number or
transpose a shape).

A file is loaded only if it is exactly what dg.save would write for some object (whitespace and key order
of the JSON aside): the header's shapes, offsets and lengths must give the layout above, checked with
Python integers before any array is made, so the arrays never overlap or repeat and what is decoded is
never larger than the file. Anything else raises a CheckpointError subclass, also when a hostile file
carries correct CRCs.

Saving encodes everything first, writes a temporary file in the target's directory, fsyncs it and
renames it over the target with os.replace, so a crash or error mid-save never leaves a half-written
file under the final name and keeps an older checkpoint intact.
"""
import io
import json
import math
import os
import struct
import zlib

import numpy as _np

from . import dtypes as _dt
from ._files import atomic_write
from .backend import device as _parse, to_host
from .ops.creation import from_numpy
from .errors import DualgraphError
from .tensor import Tensor

__all__ = ["save", "load", "CheckpointError", "UnsafeCheckpointError", "TruncatedCheckpointError",
           "CorruptCheckpointError", "MAX_HEADER_BYTES"]

MAGIC = b"DGCKPT01"
FORMAT = "dualgraph-checkpoint"
VERSION = 1
ALIGN = 64
MAX_HEADER_BYTES = 64 * 1024 * 1024
# numpy 1.x arrays have at most 32 dimensions, numpy 2 at most 64
MAX_NDIM = 64 if int(_np.__version__.split(".")[0]) >= 2 else 32
# Python refuses to turn integers of more than 4300 digits into text (or back) by default
_MAX_INT_BITS = 14000
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

def save(obj, f):
    """Write `obj` (nested dicts/lists/tuples of tensors, numpy arrays, numbers, strings, None) to `f`.

    Typical use: `dg.save({"model": model.state_dict(), "optim": opt.state_dict(), "epoch": 3}, "ckpt.pt")`.
    `f` is a path of any name (PyTorch's ".pt"/".pth" too) or a binary file object with write() (an
    io.BytesIO, an open file). Nothing is written unless the whole object can be encoded; a path's
    file appears atomically. The format is dualgraph's own (below), not PyTorch's zip of pickles."""
    writer = getattr(f, "write", None)
    if writer is None and not isinstance(f, (str, bytes, os.PathLike)):
        raise TypeError(f"dg.save: expected a path or a binary file object with write(), got {type(f).__name__}")
    arrays = []
    try:
        tree = _encode(obj, arrays, "obj")
    except RecursionError:
        raise CheckpointError("dg.save: the object is nested too deeply or contains itself") from None
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
    try:
        header = json.dumps({"format": FORMAT, "version": VERSION, "tree": tree, "arrays": entries,
                             "data_bytes": offset, "data_crc32": crc}, allow_nan=False,
                            separators=(",", ":")).encode("utf-8")
    except RecursionError:
        raise CheckpointError("dg.save: the object is nested too deeply to be saved") from None
    header += _HEADER_CRC + b"%08x" % zlib.crc32(header)
    if len(header) > MAX_HEADER_BYTES:
        raise CheckpointError(f"dg.save: the header ({len(header)} bytes of structure) exceeds the "
                              f"{MAX_HEADER_BYTES}-byte limit; store large data as arrays")
    prefix = MAGIC + struct.pack("<Q", len(header)) + header
    prefix += b"\0" * ((-len(prefix)) % ALIGN)
    if writer is not None:
        for c in [prefix] + chunks:
            writer(c)
        return
    _atomic_write(os.fspath(f), [prefix] + chunks)


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
        if x.bit_length() > _MAX_INT_BITS:
            raise CheckpointError(f"dg.save: {where} is an integer of {x.bit_length()} bits; checkpoints hold "
                                  f"integers of up to {_MAX_INT_BITS} bits (save bigger ones as strings)")
        return int(x)
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
            k = _encode(k, arrays, f"a key of {where}")
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

_HEADER_KEYS = {"format", "version", "tree", "arrays", "data_bytes", "data_crc32"}
_ENTRY_KEYS = {"dtype", "shape", "offset", "nbytes"}
_FLOAT_TAGS = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}


def load(f, map_location=None, *, weights_only=None):
    """Read a checkpoint written by dg.save from `f`, a path (any name) or a binary file object with read()
    (read from its current position to its end).

    `map_location` says where tensors go: None (the CPU: dg.save stores values, not devices), a device
    or its name ('cpu', 'cuda:0', 'gpu'), a dict whose 'cpu' entry names the target (the only place a
    dualgraph checkpoint's tensors come from), or a callable `(tensor, 'cpu') -> tensor` (PyTorch's
    `lambda storage, loc: ...`, given the loaded tensor). `weights_only` is accepted with any value:
    dg.load only ever reads tensors, arrays, numbers, strings and containers, so it behaves as PyTorch's
    weights_only=True does, and weights_only=False does not make it unpickle.

    Never executes code from the file: pickles are refused with UnsafeCheckpointError, and truncated,
    damaged or malformed files raise TruncatedCheckpointError / CorruptCheckpointError (both
    CheckpointError). The arrays are read straight into their own memory (about the file's size, once;
    a file object's bytes are read first, so twice); parsing the JSON header costs at most some 25 times
    the header's size (MAX_HEADER_BYTES bounds it)."""
    if weights_only not in (None, True, False):
        raise TypeError(f"dg.load: weights_only must be a bool or None, got {weights_only!r}")
    place = _placement(map_location)
    reader = getattr(f, "read", None)
    if reader is not None:
        data = reader()
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(f"dg.load: the file object's read() gave {type(data).__name__}, not bytes; open "
                            f"the file in binary mode ('rb')")
        name = str(getattr(f, "name", f"<{type(f).__name__}>"))
        return _load(io.BytesIO(data), len(data), name, place)
    if not isinstance(f, (str, bytes, os.PathLike)):
        raise TypeError(f"dg.load: expected a path or a binary file object with read(), got {type(f).__name__}")
    path = os.fspath(f)
    with open(path, "rb") as fh:
        return _load(fh, os.fstat(fh.fileno()).st_size, path, place)


def _placement(map_location):
    """map_location -> None (stay on the CPU), a Device, or a callable applied to each loaded tensor."""
    if map_location is None:
        return None
    if isinstance(map_location, dict):
        target = map_location.get("cpu")
        return None if target is None else _parse(target)
    if callable(map_location) and not hasattr(map_location, "xp"):
        def place(t):
            out = map_location(t, "cpu")
            if not isinstance(out, Tensor):
                raise CheckpointError(f"dg.load: map_location returned {type(out).__name__}; it is called as "
                                      f"map_location(tensor, 'cpu') and must return a tensor")
            return out
        return place
    return _parse(map_location)


def _load(f, size, path, place):
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
    if len(raw) != hlen:
        raise TruncatedCheckpointError(f"{path}: the file ended while reading the header")
    header = _parse_header(raw, path)
    data_start = 16 + hlen + ((-(16 + hlen)) % ALIGN)
    expected = data_start + header["data_bytes"]
    if size < expected:
        raise TruncatedCheckpointError(f"{path}: the header announces {header['data_bytes']} bytes of array "
                                       f"data but the file has only {max(0, size - data_start)}; the file "
                                       f"is truncated")
    if size > expected:
        raise CorruptCheckpointError(f"{path}: {size - expected} unexpected bytes after the array data")
    # the whole layout is checked before anything as large as the data is allocated
    layout = _layout(header["arrays"], header["data_bytes"], path)
    f.seek(16 + hlen)
    if any(f.read(data_start - 16 - hlen)):
        raise CorruptCheckpointError(f"{path}: the padding after the header is not zeros")
    arrays = _read_arrays(f, layout, header["data_crc32"], path)
    device = place
    taken = [0]
    try:
        obj = _decode(header["tree"], arrays, taken, device, path)
    except RecursionError:
        raise CorruptCheckpointError(f"{path}: the header is nested too deeply to be a checkpoint") from None
    if taken[0] != len(arrays):
        raise CorruptCheckpointError(f"{path}: array {taken[0]} is stored but nothing in the header refers to it")
    return obj


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


def _is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def _parse_header(raw, path):
    # Every header dg.save writes ends with its CRC; one without it is damaged (or not written by dg.save),
    # and accepting it would let a flipped byte rename a key or change a number unnoticed.
    n = len(_HEADER_CRC) + 8
    if len(raw) < n or raw[-n:-8] != _HEADER_CRC:
        raise CorruptCheckpointError(f"{path}: the header does not end with its CRC-32; the file is damaged or "
                                     f"was not written by dg.save")
    raw, want = raw[:-n], raw[-8:]
    if b"%08x" % zlib.crc32(raw) != want:
        raise CorruptCheckpointError(f"{path}: the header fails its CRC-32 check; the file is damaged")
    try:
        header = json.loads(raw.decode("utf-8"), parse_constant=_reject_constant, parse_float=_finite_float,
                            object_pairs_hook=_unique_keys)
    except ValueError as e:  # also UnicodeDecodeError, and integers too long to convert
        raise CorruptCheckpointError(f"{path}: the header is not valid JSON ({e}); the file is damaged") from None
    except RecursionError:
        raise CorruptCheckpointError(f"{path}: the header is nested too deeply to be a checkpoint") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise CorruptCheckpointError(f"{path}: the header does not describe a {FORMAT}")
    version = header.get("version")
    if not _is_int(version) or version != VERSION:
        raise CheckpointError(f"{path}: checkpoint format version {version!r} is not supported "
                              f"(this dualgraph reads version {VERSION})")
    if set(header) != _HEADER_KEYS:
        raise CorruptCheckpointError(f"{path}: the header has the keys {sorted(header)}, expected "
                                     f"{sorted(_HEADER_KEYS)}")
    if not isinstance(header["arrays"], list):
        raise CorruptCheckpointError(f"{path}: the header's 'arrays' entry is not a list")
    if not _is_int(header["data_bytes"]) or header["data_bytes"] < 0:
        raise CorruptCheckpointError(f"{path}: the header's 'data_bytes' entry is not a byte count")
    if not _is_int(header["data_crc32"]) or not 0 <= header["data_crc32"] < 2 ** 32:
        raise CorruptCheckpointError(f"{path}: the header's 'data_crc32' entry is not a CRC-32")
    return header


def _reject_constant(name):
    raise ValueError(f"non-standard JSON constant {name}")


def _finite_float(text):
    x = float(text)
    if not math.isfinite(x):  # 1e400 parses as inf; dg.save writes infinities as {"$float": "inf"}
        raise ValueError(f"the number {text[:40]} is out of range")
    return x


def _unique_keys(pairs):
    out = dict(pairs)
    if len(out) != len(pairs):
        seen = set()
        dup = next(k for k, _ in pairs if k in seen or seen.add(k))
        raise ValueError(f"the key {dup[:40]!r} appears twice in one object")
    return out


def _layout(entries, data_bytes, path):
    """Check every array entry against the layout dg.save writes and return [(dtype, shape, start, end)].

    Plain Python integers throughout: a shape like [0, 2**70] or an offset near 2**64 is refused here,
    never wrapped or handed to numpy. Since the arrays follow each other without overlapping, the bytes
    they cover (hence what loading allocates for them) never exceed the data section, which the caller
    has already matched against the file's size."""
    out, end = [], 0
    for i, e in enumerate(entries):
        if not isinstance(e, dict) or set(e) != _ENTRY_KEYS:
            raise CorruptCheckpointError(f"{path}: array entry {i} of the header is malformed (expected the keys "
                                         f"{sorted(_ENTRY_KEYS)})")
        dtype, shape, offset, nbytes = e["dtype"], e["shape"], e["offset"], e["nbytes"]
        if not isinstance(dtype, str) or dtype not in _ALLOWED_DTYPES:
            raise CorruptCheckpointError(f"{path}: array {i} has dtype {dtype!r}, which checkpoints never contain")
        if not isinstance(shape, list) or not all(_is_int(s) and s >= 0 for s in shape):
            raise CorruptCheckpointError(f"{path}: array entry {i} of the header is malformed: its shape "
                                         f"{str(shape)[:80]} is not a list of non-negative integers")
        if len(shape) > MAX_NDIM:
            raise CorruptCheckpointError(f"{path}: array {i} has {len(shape)} dimensions; numpy arrays have at "
                                         f"most {MAX_NDIM}")
        if not _is_int(offset) or not _is_int(nbytes) or offset < 0 or nbytes < 0:
            raise CorruptCheckpointError(f"{path}: array entry {i} of the header is malformed: offset "
                                         f"{str(offset)[:40]} and nbytes {str(nbytes)[:40]} must be byte counts")
        dt = _np.dtype(dtype)
        count, extent = 1, dt.itemsize
        for s in shape:
            count *= s
            extent *= max(s, 1)
            if extent >= 2 ** 63:  # numpy cannot even describe it (strides overflow), empty or not
                raise CorruptCheckpointError(f"{path}: array {i} (dtype {dtype}) has the shape "
                                             f"{str(shape)[:80]}, too large for any array")
        if count * dt.itemsize != nbytes:
            raise CorruptCheckpointError(f"{path}: array {i} (dtype {dtype}, shape {tuple(shape)}) does not fit "
                                         f"its entry: it needs {count * dt.itemsize} bytes, the entry says "
                                         f"{nbytes}")
        start = end + (-end) % ALIGN
        if offset != start or offset + nbytes > data_bytes:
            raise CorruptCheckpointError(
                f"{path}: array {i} (dtype {dtype}, shape {tuple(shape)}) at byte {offset} does not fit the data "
                f"section of {data_bytes} bytes: arrays follow each other in order at 64-byte aligned offsets, "
                f"never overlapping or repeating, so it must start at byte {start}")
        end = offset + nbytes
        out.append((dt, shape, offset, end))
    if end != data_bytes:
        raise CorruptCheckpointError(f"{path}: the data section has {data_bytes} bytes but its arrays end at "
                                     f"byte {end}")
    return out


def _read_arrays(f, layout, want_crc, path):
    """Read each array straight into memory of its own (no buffer of the whole data section, so loading
    needs about the file's size once), checking the zero padding and the data's CRC-32 on the way."""
    out, crc, pos = [], 0, 0
    for dt, shape, start, end in layout:
        if start > pos:
            gap = f.read(start - pos)
            if len(gap) != start - pos:
                raise TruncatedCheckpointError(f"{path}: the file ended while reading the array data")
            if any(gap):
                raise CorruptCheckpointError(f"{path}: the padding before byte {start} of the data is not zeros")
            crc = zlib.crc32(gap, crc)
        arr = _np.empty((end - start) // dt.itemsize, dtype=dt)
        raw = arr.view(_np.uint8)
        if raw.size and f.readinto(raw) != raw.size:
            raise TruncatedCheckpointError(f"{path}: the file ended while reading the array data")
        crc = zlib.crc32(raw, crc)
        out.append(arr)
        pos = end
    if crc != want_crc:
        raise CorruptCheckpointError(f"{path}: the array data fails its CRC-32 check; the file is damaged")
    for i, ((dt, shape, _, _), arr) in enumerate(zip(layout, out)):
        if dt.kind == "b" and arr.size and arr.view(_np.uint8).max() > 1:
            raise CorruptCheckpointError(f"{path}: bool array {i} holds bytes other than 0 and 1")
        out[i] = (arr if dt.isnative else arr.astype(dt.newbyteorder("="))).reshape(shape)
    return out


def _decode(x, arrays, taken, device, path):
    if x is None or isinstance(x, (bool, float, str)):
        return x
    if isinstance(x, int):
        if x.bit_length() > _MAX_INT_BITS:
            raise CorruptCheckpointError(f"{path}: the header holds an integer of {x.bit_length()} bits; dg.save "
                                         f"writes at most {_MAX_INT_BITS}")
        return x
    if isinstance(x, list):
        # in place: the parsed header is ours, and a second list per list would double the memory a header of
        # many small lists costs
        for j, v in enumerate(x):
            x[j] = _decode(v, arrays, taken, device, path)
        return x
    if isinstance(x, dict):
        keys = set(x)
        if keys == {"$dict"} and isinstance(x["$dict"], list):
            out = {}
            for it in x["$dict"]:
                if not (isinstance(it, list) and len(it) == 2 and (isinstance(it[0], str) or _is_int(it[0]))):
                    raise CorruptCheckpointError(f"{path}: a dict node of the header is malformed: {str(it)[:80]}")
                _decode(it[0], arrays, taken, device, path)  # the same bound on integer keys
                if it[0] in out:
                    raise CorruptCheckpointError(f"{path}: a dict of the header has the key {it[0]!r} twice")
                out[it[0]] = _decode(it[1], arrays, taken, device, path)
            return out
        if keys == {"$tuple"} and isinstance(x["$tuple"], list):
            return tuple(_decode(v, arrays, taken, device, path) for v in x["$tuple"])
        if keys == {"$float"} and isinstance(x["$float"], str) and x["$float"] in _FLOAT_TAGS:
            return _FLOAT_TAGS[x["$float"]]
        for tag, flag in (("$tensor", "requires_grad"), ("$ndarray", "scalar")):
            if keys == {tag, flag} and isinstance(x[flag], bool):
                arr = _take(x[tag], arrays, taken, path)
                if tag == "$ndarray":
                    if x["scalar"] and arr.ndim:
                        raise CorruptCheckpointError(f"{path}: array {x[tag]} of shape {arr.shape} is marked "
                                                     f"as a numpy scalar")
                    return arr[()] if x["scalar"] else arr  # the array is the loader's own: no copy
                return _tensor(arr, device, x[flag], x[tag], path)
    raise CorruptCheckpointError(f"{path}: the header holds a node dg.load does not know: {str(x)[:80]}")


def _take(i, arrays, taken, path):
    # dg.save numbers the arrays in the order it meets them, so the tree refers to each exactly once and in
    # that order (a tensor saved twice is stored twice). A header pointing many nodes at one array would
    # otherwise make a small file decode into many copies of it.
    if not _is_int(i) or not 0 <= i < len(arrays):
        raise CorruptCheckpointError(f"{path}: the header refers to array {str(i)[:40]}, which does not exist")
    if i < taken[0]:
        raise CorruptCheckpointError(f"{path}: the header refers to array {i} more than once")
    if i > taken[0]:
        raise CorruptCheckpointError(f"{path}: the header refers to array {i} where dg.save would refer to array "
                                     f"{taken[0]} (each array once, in order)")
    taken[0] += 1
    arr, arrays[i] = arrays[i], None  # what the tree makes of it is the only reference left
    return arr


def _tensor(arr, device, requires_grad, i, path):
    if arr.dtype not in _dt.SUPPORTED:
        # dg.save only meets tensors of supported dtypes; converting (uint64 to int64, say) would change values
        raise CorruptCheckpointError(f"{path}: array {i} is stored as a tensor of dtype {arr.dtype}, which "
                                     f"dualgraph tensors never have")
    if requires_grad and arr.dtype.kind != "f":
        raise CorruptCheckpointError(f"{path}: array {i} is a {arr.dtype} tensor marked requires_grad; only "
                                     f"floating tensors can require grad")
    t = from_numpy(arr)  # shares the loader's own array, which nothing else refers to
    if device is not None:
        t = t.to(device) if hasattr(device, "xp") else device(t)
    if requires_grad:
        t.requires_grad_(True)
    return t
