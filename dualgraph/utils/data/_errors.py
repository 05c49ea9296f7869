"""The data API's errors: dualgraph errors that are also the builtin type PyTorch raises in each case."""
from ...errors import DualgraphError, IndexOutOfRange, InvalidValue, ShapeError  # noqa: F401


class ArgumentTypeError(DualgraphError, TypeError):
    """An argument of the wrong kind (a generator that is not one, an object that is not a dataset)."""


class CollateShapeError(ShapeError, RuntimeError):
    """Samples of one batch that cannot be stacked (torch raises RuntimeError)."""


class WorkerError(DualgraphError, RuntimeError):
    """A DataLoader worker timed out, died, or raised an exception that cannot be rebuilt by type."""
