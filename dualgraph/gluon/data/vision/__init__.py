"""gluon.data.vision: image transforms, and MNIST/FashionMNIST read from local files (no download)."""
from . import datasets, transforms  # noqa: F401
from .datasets import FashionMNIST, MNIST  # noqa: F401
