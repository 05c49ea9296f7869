"""MNIST and FashionMNIST read from the files MXNet keeps under ~/.mxnet/datasets/. dualgraph never
downloads: where the four idx files are missing, the error names the directory and the files."""
import gzip
import os
import struct

import numpy as np

from .... import nd
from ....errors import InvalidValue
from ..dataset import Dataset

_FILES = {True: ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
          False: ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")}


def _read_idx(path):
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        raw = f.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 8:
        raise InvalidValue(f"{path} is not an idx file of unsigned bytes")
    ndim = raw[3]
    dims = struct.unpack(f">{ndim}I", raw[4:4 + 4 * ndim])
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(dims)):
        raise InvalidValue(f"{path}: header says shape {dims} but the file holds {data.size} values")
    return data.reshape(dims)


class MNIST(Dataset):
    """Items are (image, label): a uint8 NDArray of shape (28, 28, 1) and an int32 label, as MXNet's."""

    _default = os.path.join("~", ".mxnet", "datasets", "mnist")

    def __init__(self, root=None, train=True, transform=None):
        root = os.path.expanduser(root or self._default)
        paths = [os.path.join(root, f) for f in _FILES[bool(train)]]
        for p in paths:
            if not os.path.exists(p) and not os.path.exists(p[:-3]):
                raise InvalidValue(
                    f"{type(self).__name__}: {p} not found. dualgraph does not download datasets; put "
                    f"{', '.join(_FILES[bool(train)])} (gzipped idx files) in {root} or pass root=")
        images, labels = (_read_idx(p if os.path.exists(p) else p[:-3]) for p in paths)
        if len(images) != len(labels):
            raise InvalidValue(f"{type(self).__name__}: {len(images)} images but {len(labels)} labels in {root}")
        self._data = nd.array(images.reshape(images.shape[0], images.shape[1], images.shape[2], 1), dtype="uint8")
        self._label = labels.astype(np.int32)
        self._transform = transform

    def __getitem__(self, idx):
        if self._transform is not None:
            return self._transform(self._data[idx], self._label[idx])
        return self._data[idx], self._label[idx]

    def __len__(self):
        return len(self._label)


class FashionMNIST(MNIST):
    _default = os.path.join("~", ".mxnet", "datasets", "fashion-mnist")
