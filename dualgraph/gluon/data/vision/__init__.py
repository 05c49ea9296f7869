"""gluon.data.vision: the image transforms (datasets that download, such as MNIST, are not provided)."""
from . import transforms  # noqa: F401
