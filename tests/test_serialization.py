"""dg.save / dg.load: round trips, no code execution from pickles, truncated/corrupt/oversized files
rejected with clear errors, and atomic saves."""
import json
import math
import os
import pickle
import struct

import numpy as np
import pytest

import dualgraph as dg
from dualgraph import serialization as ser


def _nested():
    return {
        "model": {"w": dg.tensor(np.arange(12, dtype=np.float32).reshape(3, 4)),
                  "b": dg.tensor([1.5, -2.0], dtype="float64", requires_grad=True),
                  "steps": dg.tensor(7), "mask": dg.tensor([True, False]), "empty": dg.zeros(0, 3),
                  "half": dg.tensor([0.5, 1.0], dtype="float16"), "scalar": dg.tensor(3.25)},
        "arrays": [np.arange(6, dtype=np.int16).reshape(2, 3).T,  # non-contiguous
                   np.array([1, 2], dtype=">i4"),                 # big-endian
                   np.uint8(200), np.float64(0.1)],
        "meta": {"name": "modèle ✓", "epoch": 3, "lr": 1e-3, "nan": float("nan"), "inf": -math.inf,
                 "none": None, "flag": True, "betas": (0.9, 0.999), 0: "int key", 12: [1, "a", None]},
    }


def test_round_trip_of_nested_state(tmp_path):
    obj = _nested()
    path = tmp_path / "ckpt.dg"
    dg.save(obj, path)
    back = dg.load(path)
    assert list(back) == ["model", "arrays", "meta"]
    for k, t in obj["model"].items():
        got = back["model"][k]
        assert isinstance(got, dg.Tensor) and got.dtype == t.dtype and got.shape == t.shape
        np.testing.assert_array_equal(got.numpy(), t.numpy())
    assert back["model"]["b"].requires_grad and not back["model"]["w"].requires_grad
    a0, a1, a2, a3 = back["arrays"]
    np.testing.assert_array_equal(a0, obj["arrays"][0])
    assert a0.dtype == np.int16 and a0.flags.writeable
    np.testing.assert_array_equal(a1, [1, 2])
    assert a2 == 200 and type(a2) is np.uint8 and a3 == 0.1 and type(a3) is np.float64
    meta = back["meta"]
    assert meta["name"] == "modèle ✓" and meta["epoch"] == 3 and meta["lr"] == 1e-3
    assert math.isnan(meta["nan"]) and meta["inf"] == -math.inf and meta["none"] is None
    assert meta["flag"] is True and meta["betas"] == (0.9, 0.999)
    assert meta[0] == "int key" and meta[12] == [1, "a", None]
    # loaded tensors own their memory: changing one changes neither the file nor the other entries
    back["model"]["w"].add_(1)
    np.testing.assert_array_equal(dg.load(path)["model"]["w"].numpy(), obj["model"]["w"].numpy())


def test_model_checkpoint_round_trip(tmp_path):
    from dualgraph import nn
    net = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 2))
    net(dg.randn(5, 3))
    dg.save(net.state_dict(), tmp_path / "m.dg")
    net2 = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 2))
    net2.load_state_dict(dg.load(tmp_path / "m.dg"))
    net.eval(), net2.eval()
    x = dg.randn(2, 3)
    np.testing.assert_array_equal(net(x).numpy(), net2(x).numpy())


class _CreatesAFile:
    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_a_pickle_is_rejected_without_running_it(tmp_path):
    marker = tmp_path / "pwned"
    # the payload really would run code if unpickled (so this test can fail)
    probe = tmp_path / "probe"
    pickle.loads(pickle.dumps(_CreatesAFile(str(probe)))).close()
    assert probe.exists()
    for protocol in (0, 2, pickle.HIGHEST_PROTOCOL):
        path = tmp_path / f"evil{protocol}.pt"
        path.write_bytes(pickle.dumps({"state": _CreatesAFile(str(marker))}, protocol=protocol))
        with pytest.raises(dg.CheckpointError) as e:
            dg.load(path)
        assert "pickle" in str(e.value)
        if protocol:
            assert isinstance(e.value, ser.UnsafeCheckpointError)
        assert not marker.exists()


def test_a_torch_zip_is_rejected(tmp_path):
    path = tmp_path / "model.pt"
    path.write_bytes(b"PK\x03\x04" + b"\0" * 100)
    with pytest.raises(ser.UnsafeCheckpointError, match="torch.save"):
        dg.load(path)


def test_truncated_files_are_rejected(tmp_path):
    path = tmp_path / "ckpt.dg"
    dg.save({"w": dg.randn(100, 10), "step": 3}, path)
    data = path.read_bytes()
    (hlen,) = struct.unpack("<Q", data[8:16])
    cut = tmp_path / "cut.dg"
    for n in (0, 5, 12, 16 + hlen // 2, 16 + hlen + 70, len(data) - 1):
        cut.write_bytes(data[:n])
        with pytest.raises(ser.TruncatedCheckpointError):
            dg.load(cut)


def test_corrupt_files_are_rejected(tmp_path):
    path = tmp_path / "ckpt.dg"
    dg.save({"w": dg.randn(100, 10)}, path)
    data = bytearray(path.read_bytes())
    (hlen,) = struct.unpack("<Q", data[8:16])
    flipped = bytearray(data)
    flipped[-7] ^= 0x40  # a bit in the array data
    bad = tmp_path / "bad.dg"
    bad.write_bytes(bytes(flipped))
    with pytest.raises(ser.CorruptCheckpointError, match="CRC"):
        dg.load(bad)
    broken_json = bytearray(data)
    broken_json[16] = ord("[")
    bad.write_bytes(bytes(broken_json))
    with pytest.raises(ser.CorruptCheckpointError, match="CRC"):
        dg.load(bad)
    raw = bytes(broken_json[16:16 + hlen - 16])   # the header without its CRC suffix, CRC recomputed
    bad.write_bytes(bytes(broken_json[:16]) + _with_crc(raw) + bytes(broken_json[16 + hlen:]))
    with pytest.raises(ser.CorruptCheckpointError, match="JSON"):
        dg.load(bad)
    bad.write_bytes(b"hello, this is not a checkpoint at all")
    with pytest.raises(ser.CorruptCheckpointError, match="not a dualgraph checkpoint"):
        dg.load(bad)
    bad.write_bytes(bytes(data) + b"extra")
    with pytest.raises(ser.CorruptCheckpointError, match="unexpected bytes"):
        dg.load(bad)


def _with_crc(raw):
    import zlib
    return raw + b"\n#crc32:" + b"%08x" % zlib.crc32(raw)


def _write_raw(path, header, data=b"", crc=True):
    raw = json.dumps(header).encode()
    if crc:
        raw = _with_crc(raw)
    prefix = ser.MAGIC + struct.pack("<Q", len(raw)) + raw
    prefix += b"\0" * ((-len(prefix)) % ser.ALIGN)
    path.write_bytes(prefix + data)


def _header(arrays, tree, data):
    import zlib
    return {"format": ser.FORMAT, "version": ser.VERSION, "tree": tree, "arrays": arrays,
            "data_bytes": len(data), "data_crc32": zlib.crc32(data)}


def test_hostile_headers_are_rejected(tmp_path):
    path = tmp_path / "h.dg"
    path.write_bytes(ser.MAGIC + struct.pack("<Q", 2 ** 62) + b"{}")
    with pytest.raises(ser.CorruptCheckpointError, match="limit"):
        dg.load(path)
    data = b"\0" * 16
    cases = [
        ([{"dtype": "|O", "shape": [2], "offset": 0, "nbytes": 16}], "dtype"),           # object arrays
        ([{"dtype": "<f4", "shape": [3], "offset": 0, "nbytes": 16}], "does not fit"),   # shape vs length
        ([{"dtype": "<f4", "shape": [4], "offset": 8, "nbytes": 16}], "does not fit"),   # past the end
        ([{"dtype": "<f4", "shape": [-4], "offset": 0, "nbytes": 16}], "malformed"),
    ]
    for arrays, match in cases:
        _write_raw(path, _header(arrays, {"$tensor": 0, "requires_grad": False}, data), data)
        with pytest.raises(ser.CorruptCheckpointError, match=match):
            dg.load(path)
    ok = [{"dtype": "<f4", "shape": [4], "offset": 0, "nbytes": 16}]
    for tree in ({"$tensor": 5, "requires_grad": False}, {"$pickle": "gASV"}, {"$dict": [[1.5, 2]]}):
        _write_raw(path, _header(ok, tree, data), data)
        with pytest.raises(ser.CorruptCheckpointError):
            dg.load(path)
    deep = tmp_path / "deep.dg"
    raw = b'{"format":"%s","version":1,"arrays":[],"data_bytes":0,"data_crc32":0,"tree":' % ser.FORMAT.encode()
    raw += b"[" * 100000 + b"]" * 100000 + b"}"
    raw = _with_crc(raw)
    prefix = ser.MAGIC + struct.pack("<Q", len(raw)) + raw
    deep.write_bytes(prefix + b"\0" * ((-len(prefix)) % ser.ALIGN))
    with pytest.raises(ser.CorruptCheckpointError, match="nested"):
        dg.load(deep)
    _write_raw(path, _header(ok, {"$dict": [["w", {"$tensor": 0, "requires_grad": False}]]}, data), data)
    assert dg.load(path)["w"].numpy().tolist() == [0.0] * 4  # the hand-made file itself is valid


def test_unsavable_objects_fail_before_touching_the_target(tmp_path):
    path = tmp_path / "ckpt.dg"
    dg.save({"epoch": 1}, path)
    before = path.read_bytes()
    for obj in ({"fn": lambda: 0}, {"arr": np.array([object()])}, {(1, 2): 3}, {"c": np.array([1j])}):
        with pytest.raises(dg.CheckpointError):
            dg.save(obj, path)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["ckpt.dg"]


def test_a_save_that_fails_midway_leaves_the_old_file_intact(tmp_path, monkeypatch):
    path = tmp_path / "ckpt.dg"
    dg.save({"w": dg.ones(3)}, path)
    before = path.read_bytes()
    written = []

    def failing_fsync(fd):
        written.append(os.fstat(fd).st_size)
        raise OSError("disk full")
    monkeypatch.setattr(ser.os, "fsync", failing_fsync)
    with pytest.raises(OSError, match="disk full"):
        dg.save({"w": dg.zeros(1000)}, path)
    assert written and written[0] > len(before)  # the new data had been written to a temporary file...
    assert path.read_bytes() == before           # ...but never under the final name
    assert os.listdir(tmp_path) == ["ckpt.dg"]   # and the temporary file is gone
    monkeypatch.undo()
    dg.save({"w": dg.zeros(4)}, path)
    assert dg.load(path)["w"].numpy().tolist() == [0.0] * 4


def test_map_location(tmp_path):
    dg.save({"w": dg.ones(2)}, tmp_path / "c.dg")
    assert dg.load(tmp_path / "c.dg", map_location="cpu")["w"].device == dg.device("cpu")


def _equal_arrays(a, b):
    return a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a, b, equal_nan=a.dtype.kind == "f")


def _same(a, b):
    if isinstance(a, dg.Tensor):
        return isinstance(b, dg.Tensor) and _equal_arrays(a.numpy(), b.numpy())
    if isinstance(a, np.ndarray):
        return isinstance(b, np.ndarray) and _equal_arrays(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and list(a) == list(b) and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, float) and math.isnan(a):
        return isinstance(b, float) and math.isnan(b)
    return type(a) is type(b) and a == b


def test_round_trip_property(tmp_path_factory):
    from hypothesis import given, settings, strategies as st
    from hypothesis.extra import numpy as hnp
    arrays = hnp.arrays(st.sampled_from([np.float32, np.float64, np.int64, np.int32, np.uint8, np.bool_]),
                        hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=4))
    leaves = st.none() | st.booleans() | st.integers(-2 ** 63, 2 ** 63 - 1) | st.floats() | st.text(max_size=8) \
        | arrays | arrays.map(dg.tensor)
    trees = st.recursive(leaves, lambda kids: st.lists(kids, max_size=3) | st.tuples(kids, kids)
                         | st.dictionaries(st.text(max_size=5) | st.integers(-5, 5), kids, max_size=3), max_leaves=12)
    path = tmp_path_factory.mktemp("prop") / "x.dg"

    @settings(max_examples=40, deadline=None)
    @given(trees)
    def check(obj):
        dg.save(obj, path)
        assert _same(obj, dg.load(path))
    check()
