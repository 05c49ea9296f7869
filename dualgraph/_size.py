"""torch.Size: the tuple type of shapes, so scripts that build or compare one keep working."""
import math


class Size(tuple):
    """A shape: a tuple of ints (a tensor's `.shape` is a plain tuple and compares equal to it)."""

    def __new__(cls, sizes=()):
        sizes = tuple(sizes)
        for s in sizes:
            if not isinstance(s, int) and not hasattr(s, "__index__"):
                raise TypeError(f"Size: sizes must be ints, got {type(s).__name__} ({s!r})")
        return super().__new__(cls, (s.__index__() for s in sizes))

    def numel(self):
        return math.prod(self)

    def __repr__(self):
        return f"dualgraph.Size({list(self)})"

    def __getitem__(self, i):
        out = super().__getitem__(i)
        return Size(out) if isinstance(i, slice) else out
