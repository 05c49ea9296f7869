"""Files, filling gaps left by test_serialization.py and test_onnx_export.py:
numpy pickles, a header longer than its file, every single-byte corruption of a checkpoint, and ONNX
export interrupted while writing."""
import io
import os
import pickle
import struct
import zipfile

import numpy as np
import onnx
import pytest

import dualgraph as dg
from dualgraph import serialization as ser


class _Marker:
    """Unpickling this creates a file: proof that code ran."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_numpy_files_holding_pickles_are_refused_without_running_them(tmp_path):
    marker = tmp_path / "pwned"
    obj = np.empty(1, dtype=object)
    obj[0] = _Marker(str(marker))
    npy = tmp_path / "w.npy"
    np.save(npy, obj, allow_pickle=True)
    npz = tmp_path / "w.npz"
    np.savez(npz, w=obj)
    for path in (npy, npz):
        with pytest.raises(dg.CheckpointError):
            dg.load(path)
    # a zip whose member is a raw pickle (what torch.save writes)
    z = tmp_path / "model.pt"
    with zipfile.ZipFile(z, "w") as f:
        f.writestr("archive/data.pkl", pickle.dumps(_Marker(str(marker))))
    with pytest.raises(ser.UnsafeCheckpointError):
        dg.load(z)
    assert not marker.exists()
    np.load(npy, allow_pickle=True)       # the payload is live: loading it with pickle does run it
    assert marker.exists()


def test_a_header_longer_than_the_file_is_truncation_not_an_allocation(tmp_path):
    path = tmp_path / "h.dg"
    for claimed in (10 ** 7, 2 ** 40):
        path.write_bytes(ser.MAGIC + struct.pack("<Q", claimed) + b"{}")
        with pytest.raises(dg.CheckpointError) as e:
            dg.load(path)
        assert isinstance(e.value, (ser.TruncatedCheckpointError, ser.CorruptCheckpointError))


def test_every_single_byte_corruption_is_caught_or_harmless(tmp_path):
    """Flip each byte (and cut at each length) of a small checkpoint: dg.load either returns exactly the
    saved values or raises CheckpointError, never another exception and never different numbers
    (the header's CRC is what stops a flip in it from renaming a key or changing a number)."""
    path = tmp_path / "c.dg"
    saved = {"w": dg.tensor(np.arange(6, dtype=np.float32).reshape(2, 3)), "step": 7, "name": "m"}
    dg.save(saved, path)
    data = path.read_bytes()
    bad = tmp_path / "bad.dg"
    outcomes = {"rejected": 0, "identical": 0}
    cases = [data[:i] + bytes([data[i] ^ 0x5A]) + data[i + 1:] for i in range(len(data))]
    cases += [data[:n] for n in range(0, len(data), 7)]
    for blob in cases:
        bad.write_bytes(blob)
        try:
            got = dg.load(bad)
        except dg.CheckpointError:
            outcomes["rejected"] += 1
            continue
        assert set(got) == set(saved) and got["step"] == 7 and got["name"] == "m"
        np.testing.assert_array_equal(got["w"].numpy(), saved["w"].numpy())
        outcomes["identical"] += 1
    (hlen,) = struct.unpack("<Q", data[8:16])
    padding = (-(16 + hlen)) % ser.ALIGN       # zeros between header and data: flipping them changes nothing
    assert outcomes["identical"] <= padding, outcomes
    assert outcomes["rejected"] == len(cases) - outcomes["identical"]


class _FailingFile(io.RawIOBase):
    """Writes half of what it is given, then fails (a full disk; an interrupt)."""

    def __init__(self, real, exc):
        self.real, self.exc = real, exc

    def write(self, b):
        self.real.write(bytes(b)[: len(b) // 2])
        self.real.flush()
        raise self.exc

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.real.close()


@pytest.mark.parametrize("exc", [OSError(28, "No space left on device"), KeyboardInterrupt()])
def test_onnx_export_interrupted_while_writing_leaves_no_half_file(tmp_path, monkeypatch, exc):
    import importlib
    files = importlib.import_module("dualgraph._files")   # the one atomic writer export and dg.save share
    real_fdopen = os.fdopen
    monkeypatch.setattr(files.os, "fdopen", lambda fd, mode="r", *a, **k: _FailingFile(real_fdopen(fd, mode), exc))
    x = dg.randn(2, 3)
    old = tmp_path / "old.onnx"
    old.write_bytes(b"previous model")
    new = tmp_path / "new.onnx"
    for target in (old, new):
        with pytest.raises(type(exc)):
            dg.onnx.export(lambda t: t * 2.0, (x,), target)
    assert old.read_bytes() == b"previous model"
    assert not new.exists()
    assert sorted(os.listdir(tmp_path)) == ["old.onnx"]      # no temp file left behind
    monkeypatch.undo()
    dg.onnx.export(lambda t: t * 2.0, (x,), new)
    assert onnx.load(str(new)).graph.node[0].op_type == "Mul"


def test_dg_save_interrupted_while_writing_leaves_the_old_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "ckpt.dg"
    dg.save({"w": dg.ones(3)}, path)
    before = path.read_bytes()
    real_fdopen = os.fdopen
    monkeypatch.setattr(ser.os, "fdopen",
                        lambda fd, mode="r", *a, **k: _FailingFile(real_fdopen(fd, mode), KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):
        dg.save({"w": dg.zeros(1000)}, path)
    monkeypatch.undo()
    assert path.read_bytes() == before and sorted(os.listdir(tmp_path)) == ["ckpt.dg"]
    np.testing.assert_array_equal(dg.load(path)["w"].numpy(), np.ones(3))
