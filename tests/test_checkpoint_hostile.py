"""dg.load on files crafted to hurt it, with correct CRCs (so the checksums hide nothing): every such
file either loads as exactly what dg.save would write for the result, or raises a CheckpointError
subclass, and loading never needs much more memory than the file's size. Also exact round trips of
every stored dtype's extreme values, and the permissions of written files."""
import copy
import json
import math
import os
import stat
import struct
import tracemalloc
import zlib

import numpy as np
import pytest

import dualgraph as dg
from dualgraph import serialization as ser

_CRC = b"\n#crc32:"


def _pack(header, data, crc=True):
    """A checkpoint file from a header dict and the data section, laid out as dg.save lays it out."""
    raw = json.dumps(header, separators=(",", ":")).encode()
    if crc:
        raw += _CRC + b"%08x" % zlib.crc32(raw)
    prefix = ser.MAGIC + struct.pack("<Q", len(raw)) + raw
    return prefix + b"\0" * ((-len(prefix)) % ser.ALIGN) + data


def _unpack(blob):
    (hlen,) = struct.unpack("<Q", blob[8:16])
    raw = blob[16:16 + hlen]
    assert raw[-16:-8] == _CRC and b"%08x" % zlib.crc32(raw[:-16]) == raw[-8:]
    start = 16 + hlen + (-(16 + hlen)) % ser.ALIGN
    return json.loads(raw[:-16]), blob[start:]


def _header(arrays, tree, data):
    return {"format": ser.FORMAT, "version": ser.VERSION, "tree": tree, "arrays": arrays,
            "data_bytes": len(data), "data_crc32": zlib.crc32(data)}


def _load_measured(path):
    """(result or the exception raised, tracemalloc's peak in bytes while loading)."""
    tracemalloc.start()
    try:
        try:
            out = dg.load(path)
        except Exception as e:  # noqa: BLE001 - the callers assert on the type
            out = e
        return out, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.fixture(scope="module", autouse=True)
def _warm_imports(tmp_path_factory):
    # the first load imports a few modules; keep their allocations out of the measured peaks
    p = tmp_path_factory.mktemp("warm") / "w.dg"
    dg.save({"t": dg.ones(2, requires_grad=True), "a": np.ones(2)}, p)
    dg.load(p)


# ---- one byte range, many arrays ----------------------------------------------------------------

def test_a_byte_range_named_many_times_is_refused_without_copying_it(tmp_path):
    block = np.arange(65536, dtype=np.float32)      # 256 KiB, stored once
    data = block.tobytes()
    entry = {"dtype": "<f4", "shape": [65536], "offset": 0, "nbytes": len(data)}
    path = tmp_path / "bomb.dg"
    # 200 header entries over the same bytes, each a different key of the tree
    tree = {"$dict": [[f"k{i}", {"$ndarray": i, "scalar": False}] for i in range(200)]}
    # and one entry that 200 tree nodes point at
    tree1 = {"$dict": [[f"k{i}", {"$tensor": 0, "requires_grad": False}] for i in range(200)]}
    for arrays, t in (([entry] * 200, tree), ([entry], tree1)):
        path.write_bytes(_pack(_header(arrays, t, data), data))
        size = path.stat().st_size
        got, peak = _load_measured(path)
        assert isinstance(got, ser.CorruptCheckpointError), got
        assert "more than once" in str(got) or "overlapping or repeating" in str(got)
        # 200 copies would be 50 MiB; refusing early needs about the file itself
        assert peak < 3 * size + 2 ** 20, (peak, size)
    # the same bytes named once load, within the same bound
    path.write_bytes(_pack(_header([entry], {"$dict": [["k", {"$ndarray": 0, "scalar": False}]]}, data), data))
    got, peak = _load_measured(path)
    np.testing.assert_array_equal(got["k"], block)
    assert peak < 3 * path.stat().st_size + 2 ** 20


def test_loading_needs_the_file_size_once(tmp_path):
    path = tmp_path / "big.dg"
    obj = {"w": dg.tensor(np.random.default_rng(0).standard_normal((512, 1024), dtype=np.float32)),
           "a": np.arange(2 ** 20, dtype=np.int64)}
    dg.save(obj, path)
    got, peak = _load_measured(path)
    np.testing.assert_array_equal(got["w"].numpy(), obj["w"].numpy())
    np.testing.assert_array_equal(got["a"], obj["a"])
    assert peak < 1.25 * path.stat().st_size + 2 ** 20     # each array read straight into its own memory


def test_overlapping_gapped_or_reordered_arrays_are_refused(tmp_path):
    data = np.arange(32, dtype=np.float32).tobytes()   # two 64-byte arrays
    tree = {"$tuple": [{"$ndarray": 0, "scalar": False}, {"$ndarray": 1, "scalar": False}]}
    path = tmp_path / "c.dg"

    def entries(o0, o1, n0=64, n1=64):
        return [{"dtype": "<f4", "shape": [n0 // 4], "offset": o0, "nbytes": n0},
                {"dtype": "<f4", "shape": [n1 // 4], "offset": o1, "nbytes": n1}]
    path.write_bytes(_pack(_header(entries(0, 64), tree, data), data))
    a, b = dg.load(path)                                # the layout dg.save writes
    np.testing.assert_array_equal(np.concatenate([a, b]), np.arange(32, dtype=np.float32))
    for arrays in (entries(0, 32), entries(64, 0), entries(0, 0), entries(0, 64, n1=32),
                   entries(0, 128, n1=0), entries(0, 2 ** 64 - 64), entries(0, -64)):
        path.write_bytes(_pack(_header(arrays, tree, data), data))
        with pytest.raises(ser.CorruptCheckpointError):
            dg.load(path)


# ---- shapes and sizes ---------------------------------------------------------------------------

@pytest.mark.parametrize("shape", [[0, 2 ** 70], [2 ** 70, 0], [0] + [2 ** 16] * 4, [2 ** 64], [-1, 0],
                                   [0, -2 ** 63], [0.0], ["0"], [True], [[0]], None, {"0": 0}, 0,
                                   [1] * (ser.MAX_NDIM + 1)])
def test_impossible_shapes_are_refused(tmp_path, shape):
    path = tmp_path / "s.dg"
    entry = {"dtype": "<f8", "shape": shape, "offset": 0, "nbytes": 0}
    path.write_bytes(_pack(_header([entry], {"$tensor": 0, "requires_grad": False}, b""), b""))
    with pytest.raises(ser.CorruptCheckpointError):
        dg.load(path)


def test_empty_arrays_with_large_dims_still_load(tmp_path):
    path = tmp_path / "e.dg"
    obj = {"a": np.zeros((0, 2 ** 40), dtype=np.float32), "t": dg.zeros(3, 0), "nd": np.zeros((1,) * ser.MAX_NDIM)}
    dg.save(obj, path)
    got = dg.load(path)
    assert got["a"].shape == (0, 2 ** 40) and got["a"].dtype == np.float32
    assert got["t"].shape == (3, 0) and got["nd"].shape == (1,) * ser.MAX_NDIM


@pytest.mark.parametrize("field,value", [("offset", 2 ** 64), ("offset", 1.0), ("nbytes", 2 ** 70),
                                         ("nbytes", -8), ("nbytes", "8"), ("dtype", "<c8"), ("dtype", ["<f4"]),
                                         ("dtype", ">f4")])
def test_bad_offsets_lengths_and_dtypes_are_refused(tmp_path, field, value):
    data = b"\0" * 8
    entry = {"dtype": "<f4", "shape": [2], "offset": 0, "nbytes": 8, field: value}
    path = tmp_path / "o.dg"
    path.write_bytes(_pack(_header([entry], {"$tensor": 0, "requires_grad": False}, data), data))
    with pytest.raises(ser.CorruptCheckpointError):
        dg.load(path)


# ---- exact values -------------------------------------------------------------------------------

_DTYPES = [np.bool_, np.int8, np.uint8, np.int16, np.uint16, np.int32, np.uint32, np.int64, np.uint64,
           np.float16, np.float32, np.float64]


def _extremes(dt):
    dt = np.dtype(dt)
    if dt.kind == "b":
        return np.array([True, False])
    if dt.kind in "iu":
        info = np.iinfo(dt)
        return np.array([info.min, info.max, 0, 1, info.max - 1], dtype=dt)
    info = np.finfo(dt)
    vals = np.array([info.min, info.max, info.tiny, info.smallest_subnormal, -0.0, np.inf, -np.inf, 1 / 3],
                    dtype=dt)
    nan = np.array([np.nan, -np.nan, np.nan], dtype=dt)
    nan.view(f"u{dt.itemsize}")[2] |= 1                 # a NaN with a payload
    return np.concatenate([vals, nan])


def test_every_stored_dtype_round_trips_bit_for_bit(tmp_path):
    obj = {}
    for dt in _DTYPES:
        a = _extremes(dt)
        obj[f"a_{np.dtype(dt).name}"] = a
        obj[f"be_{np.dtype(dt).name}"] = a.astype(np.dtype(dt).newbyteorder(">"))
        obj[f"s_{np.dtype(dt).name}"] = list(a)       # numpy scalars
        if np.dtype(dt) in dg.dtypes.SUPPORTED:
            obj[f"t_{np.dtype(dt).name}"] = dg.tensor(a)
    obj["ints"] = [2 ** 64 - 1, -2 ** 63 - 1, 2 ** 200, -(2 ** 13000)]
    obj["floats"] = [-0.0, 5e-324, 1.7976931348623157e308, float("inf"), float("-inf"), 0.1]
    path = tmp_path / "x.dg"
    dg.save(obj, path)
    got = dg.load(path)
    assert list(got) == list(obj)
    for k, v in obj.items():
        g = got[k]
        if isinstance(v, np.ndarray):
            want = v.astype(v.dtype.newbyteorder("<"))
            assert type(g) is np.ndarray and g.dtype == want.dtype and g.shape == want.shape, k
            assert g.tobytes() == want.tobytes(), k      # bit for bit: NaN payloads, -0.0, uint64 max
        elif isinstance(v, dg.Tensor):
            assert g.dtype == v.dtype and g.numpy().tobytes() == v.numpy().tobytes(), k
        elif k.startswith("s_"):
            assert [type(x) for x in g] == [type(x) for x in v], k
            assert [x.tobytes() for x in g] == [x.tobytes() for x in v], k
    assert got["s_uint64"][1] == 2 ** 64 - 1 and type(got["s_uint64"][1]) is np.uint64
    assert got["a_uint64"][1] == 2 ** 64 - 1
    assert got["ints"] == obj["ints"] and all(type(i) is int for i in got["ints"])
    assert [math.copysign(1, f) for f in got["floats"]] == [math.copysign(1, f) for f in obj["floats"]]
    assert got["floats"] == obj["floats"]


def test_a_uint64_tensor_entry_is_refused_not_wrapped_to_int64(tmp_path):
    data = b"\xff" * 8                                  # uint64 2**64-1, which int64 reads as -1
    path = tmp_path / "u.dg"
    entry = {"dtype": "<u8", "shape": [], "offset": 0, "nbytes": 8}
    path.write_bytes(_pack(_header([entry], {"$tensor": 0, "requires_grad": False}, data), data))
    with pytest.raises(ser.CorruptCheckpointError, match="uint64"):
        dg.load(path)
    path.write_bytes(_pack(_header([entry], {"$ndarray": 0, "scalar": True}, data), data))
    got = dg.load(path)                                 # as a numpy scalar it is exact
    assert type(got) is np.uint64 and int(got) == 2 ** 64 - 1


def test_numbers_json_cannot_hold_are_refused_on_save(tmp_path):
    path = tmp_path / "n.dg"
    for obj in ({"big": 2 ** 20000}, {2 ** 20000: 1}):
        with pytest.raises(dg.CheckpointError, match="bits"):
            dg.save(obj, path)
    loop = []
    loop.append(loop)
    with pytest.raises(dg.CheckpointError, match="contains itself"):
        dg.save({"loop": loop}, path)
    assert not path.exists() and os.listdir(tmp_path) == []
    big = -(2 ** ser._MAX_INT_BITS - 1)                 # the largest integer the format holds
    dg.save({big: big}, path)
    assert dg.load(path) == {big: big}
    for tree in (2 ** ser._MAX_INT_BITS, {"$dict": [[2 ** ser._MAX_INT_BITS, 1]]}):  # one bit more
        path.write_bytes(_pack(_header([], tree, b""), b""))
        with pytest.raises(ser.CorruptCheckpointError, match="bits"):
            dg.load(path)


# ---- header integrity ---------------------------------------------------------------------------

def test_a_header_without_its_crc_is_refused(tmp_path):
    path = tmp_path / "c.dg"
    dg.save({"w": dg.ones(2), "epoch": 3}, path)
    header, data = _unpack(path.read_bytes())
    path.write_bytes(_pack(header, data, crc=False))
    with pytest.raises(ser.CorruptCheckpointError, match="CRC"):
        dg.load(path)
    path.write_bytes(_pack(header, data))
    assert dg.load(path)["epoch"] == 3


def _mutated(tmp_path, mutate):
    path = tmp_path / "m.dg"
    dg.save({"w": dg.tensor([1.0, 2.0], requires_grad=True), "i": dg.tensor([1, 2]), "m": np.array([True, False]),
             "k": {"a": 1, 2: (3.5,)}}, path)
    header, data = _unpack(path.read_bytes())
    crc = header["data_crc32"]
    header, data = mutate(header, bytearray(data))
    if header["data_crc32"] == crc:
        header["data_crc32"] = zlib.crc32(bytes(data))
    path.write_bytes(_pack(header, bytes(data)))
    return path


def _set(path_keys, value):
    def mutate(h, d):
        node = h
        for k in path_keys[:-1]:
            node = node[k]
        node[path_keys[-1]] = value
        return h, d
    return mutate


def _node(h, name):
    return next(v for k, v in h["tree"]["$dict"] if k == name)


def _edit(fn):
    """A header mutation from a function that edits (header, data) in place."""
    def mutate(h, d):
        fn(h, d)
        return h, d
    return mutate


_MUTATIONS = {
    "bool bytes other than 0/1": _edit(lambda h, d: d.__setitem__(h["arrays"][2]["offset"], 2)),
    "nonzero padding": _edit(lambda h, d: d.__setitem__(h["arrays"][1]["offset"] - 1, 7)),
    "array never referred to": _edit(lambda h, d: h["tree"]["$dict"].pop(0)),
    "int tensor requiring grad": _edit(lambda h, d: _node(h, "i").update(requires_grad=True)),
    "scalar flag on a vector": _edit(lambda h, d: _node(h, "m").update(scalar=True)),
    "bool dict key": _edit(lambda h, d: _node(h, "k")["$dict"][0].__setitem__(0, True)),
    "repeated dict key": _edit(lambda h, d: _node(h, "k")["$dict"].append(["a", 5])),
    "extra key in a node": _edit(lambda h, d: _node(h, "w").update({"$float": "nan"})),
    "missing flag": _edit(lambda h, d: _node(h, "w").pop("requires_grad")),
    "extra header key": _set(["extra"], 1),
    "extra array key": _set(["arrays", 0, "strides"], [4]),
    "version true": _set(["version"], True),
    "crc out of range": _set(["data_crc32"], 2 ** 40),
    "negative data_bytes": _set(["data_bytes"], -1),
    "float tag unknown": _set(["tree", "$dict", 3, 1], {"$float": "NaN"}),
}


@pytest.mark.parametrize("name", sorted(_MUTATIONS))
def test_headers_dg_save_never_writes_are_refused(tmp_path, name):
    path = _mutated(tmp_path, _MUTATIONS[name])
    with pytest.raises(dg.CheckpointError):
        dg.load(path)


@pytest.mark.parametrize("text", [b'{"a":1,"a":2}', b'{"a":1e400}', b'{"a":NaN}', b'{"a":"\xff"}',
                                  b'{"a":' + b"9" * 5000 + b"}", b"[" * 50000 + b"]" * 50000])
def test_json_a_checkpoint_never_holds_is_refused(tmp_path, text):
    raw = text + _CRC + b"%08x" % zlib.crc32(text)
    prefix = ser.MAGIC + struct.pack("<Q", len(raw)) + raw
    path = tmp_path / "j.dg"
    path.write_bytes(prefix + b"\0" * ((-len(prefix)) % ser.ALIGN))
    with pytest.raises(ser.CorruptCheckpointError):
        dg.load(path)


# ---- the property: mutate valid headers at the JSON level -----------------------------------------

def _reference():
    return {"model": {"w": dg.tensor(np.arange(4096, dtype=np.float32).reshape(64, 64)),
                      "b": dg.tensor([0.5, -1.0], dtype="float64", requires_grad=True),
                      "mask": dg.tensor([True, False, True]), "steps": dg.tensor(7), "e": dg.zeros(0, 3)},
            "arrays": [np.array([2 ** 64 - 1, 0], dtype=np.uint64), np.int16(-3), np.float16(0.5)],
            "meta": {"epoch": 3, "lr": 1e-3, "betas": (0.9, 0.999), "inf": float("inf"), 0: None, "s": "x"}}


def _paths(x, prefix=()):
    yield prefix
    if isinstance(x, dict):
        for k, v in x.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(x, list):
        for i, v in enumerate(x):
            yield from _paths(v, prefix + (i,))


def _at(x, path):
    for k in path:
        x = x[k]
    return x


def _strict_eq(a, b):
    """JSON values equal with their types (1 is not 1.0 nor True; -0.0 is not 0.0); object key order aside."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_strict_eq(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(_strict_eq(x, y) for x, y in zip(a, b))
    if isinstance(a, float):
        return a == b and math.copysign(1, a) == math.copysign(1, b)
    return a == b


def test_mutated_headers_load_exactly_or_raise_checkpoint_errors(tmp_path_factory):
    from hypothesis import HealthCheck, given, settings, strategies as st
    tmp = tmp_path_factory.mktemp("mut")
    ref_path = tmp / "ref.dg"
    dg.save(_reference(), ref_path)
    base_header, base_data = _unpack(ref_path.read_bytes())
    tags = st.sampled_from(["$tensor", "$ndarray", "$dict", "$tuple", "$float", "requires_grad", "scalar",
                            "dtype", "shape", "offset", "nbytes"])
    atoms = (st.none() | st.booleans() | st.integers(-2 ** 70, 2 ** 70)
             | st.sampled_from([0, 1, 2, 64, -1, 2 ** 31, 2 ** 63 - 1, 2 ** 63, 2 ** 64 - 1, 2 ** 64, 2 ** 70,
                                16384, 16448, len(base_data)])
             | st.floats(allow_nan=False, allow_infinity=False)
             | st.sampled_from(["<f4", "<u8", "|b1", "|O", ">f4", "<c8", "nan", "inf", "-inf", ""])
             | st.text(max_size=5))
    junk = st.recursive(atoms, lambda kids: st.lists(kids, max_size=3)
                        | st.dictionaries(tags | st.text(max_size=4), kids, max_size=3), max_leaves=6)

    @settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
    @given(st.data())
    def check(data):
        header = copy.deepcopy(base_header)
        for _ in range(data.draw(st.integers(1, 3))):
            paths = list(_paths(header))
            kind = data.draw(st.sampled_from(["replace", "replace", "repoint", "duplicate", "delete", "insert"]))
            if kind == "replace":
                p = data.draw(st.sampled_from(paths[1:]))
                _at(header, p[:-1])[p[-1]] = data.draw(junk)
            elif kind == "repoint":            # send a tree node to another (or the same) array
                refs = [p for p in paths if len(p) and p[-1] in ("$tensor", "$ndarray")]
                if refs:
                    p = data.draw(st.sampled_from(refs))
                    _at(header, p[:-1])[p[-1]] = data.draw(st.integers(-1, len(base_header["arrays"])))
            else:
                containers = [p for p in paths if isinstance(_at(header, p), (list, dict)) and _at(header, p)]
                p = data.draw(st.sampled_from(containers))
                c = _at(header, p)
                if isinstance(c, list):
                    i = data.draw(st.integers(0, len(c) - 1))
                    if kind == "duplicate":
                        c.insert(i, copy.deepcopy(c[i]))
                    elif kind == "delete":
                        del c[i]
                    else:
                        c.insert(i, data.draw(junk))
                else:
                    k = data.draw(st.sampled_from(sorted(c, key=str)))
                    if kind == "delete":
                        del c[k]
                    else:
                        c[data.draw(tags | st.text(max_size=4))] = copy.deepcopy(c[k]) if kind == "duplicate" \
                            else data.draw(junk)
        path = tmp / "m.dg"
        path.write_bytes(_pack(header, base_data))
        got, peak = _load_measured(path)
        size = path.stat().st_size
        assert peak < 3 * size + 2 ** 20, (peak, size)
        if isinstance(got, Exception):
            assert isinstance(got, dg.CheckpointError), repr(got)
            return
        # it loaded: then it is exactly the file dg.save writes for what came out (no value was guessed,
        # wrapped, shared or dropped), up to the JSON's key order and spacing
        again = tmp / "again.dg"
        dg.save(got, again)
        h2, d2 = _unpack(again.read_bytes())
        assert _strict_eq(h2, header) and d2 == base_data
    check()


# ---- file permissions ---------------------------------------------------------------------------

@pytest.mark.skipif(os.name != "posix", reason="POSIX permission bits")
def test_written_files_get_the_mode_open_would_give(tmp_path):
    old = os.umask(0o022)
    try:
        dg.save({"w": dg.ones(2)}, tmp_path / "a.dg")
        dg.onnx.export(lambda t: t * 2.0, (dg.ones(2),), tmp_path / "a.onnx")
        os.umask(0o077)
        dg.save({"w": dg.ones(2)}, tmp_path / "private.dg")
        os.umask(0o002)
        dg.save({"w": dg.ones(2)}, tmp_path / "group.dg")
        with open(tmp_path / "reference", "wb"):
            pass
    finally:
        os.umask(old)

    def mode(name):
        return stat.S_IMODE(os.stat(tmp_path / name).st_mode)
    assert mode("a.dg") == 0o644 and mode("a.onnx") == 0o644
    assert mode("private.dg") == 0o600 and mode("group.dg") == 0o664 == mode("reference")
    # saving over an existing file keeps its mode, as writing through open() would
    os.chmod(tmp_path / "a.dg", 0o640)
    dg.save({"w": dg.zeros(2)}, tmp_path / "a.dg")
    assert mode("a.dg") == 0o640 and dg.load(tmp_path / "a.dg")["w"].numpy().tolist() == [0.0, 0.0]
    assert sorted(os.listdir(tmp_path)) == ["a.dg", "a.onnx", "group.dg", "private.dg", "reference"]
