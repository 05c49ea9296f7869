"""The named tuples that PyTorch's value-and-index ops return (`torch.return_types`).

`dg.max(x, dim=1)`, `sort`, `topk`, `median(dim=)`, `kthvalue`, `mode`, `cummax`, `cummin` give a
tuple of (values, indices) that unpacks, indexes and reads `.values` / `.indices`, as PyTorch's do.
Each type is built from one iterable, as PyTorch's structseq types are, so code that maps over
tuples and rebuilds them with `type(t)(items)` (dualgraph's own pytrees among them) keeps the type.
"""
import operator

__all__ = ["max", "min", "sort", "topk", "median", "kthvalue", "mode", "cummax", "cummin", "aminmax"]


class _ValuesIndices(tuple):
    __slots__ = ()
    _fields = ("values", "indices")
    n_fields = n_sequence_fields = 2
    n_unnamed_fields = 0

    def __new__(cls, sequence):
        items = tuple(sequence)
        if len(items) != 2:
            raise TypeError(f"dualgraph.return_types.{cls.__name__} takes a 2-sequence (values, indices), "
                            f"got {len(items)} items")
        return tuple.__new__(cls, items)

    values = property(operator.itemgetter(0), doc="the selected values")
    indices = property(operator.itemgetter(1), doc="their positions along the dim (int64)")

    def __repr__(self):
        return f"dualgraph.return_types.{type(self).__name__}(\nvalues={self[0]!r},\nindices={self[1]!r})"

    def __reduce__(self):
        return type(self), (tuple(self),)

    def _asdict(self):
        return {"values": self[0], "indices": self[1]}


def _make(name):
    return type(name, (_ValuesIndices,), {"__slots__": (), "__module__": __name__, "__qualname__": name})


max = _make("max")
min = _make("min")
sort = _make("sort")
topk = _make("topk")
median = _make("median")
kthvalue = _make("kthvalue")
mode = _make("mode")
cummax = _make("cummax")
cummin = _make("cummin")


class aminmax(tuple):
    """torch.return_types.aminmax: (min, max)."""
    __slots__ = ()
    _fields = ("min", "max")
    n_fields = n_sequence_fields = 2
    n_unnamed_fields = 0

    def __new__(cls, sequence):
        items = tuple(sequence)
        if len(items) != 2:
            raise TypeError(f"dualgraph.return_types.aminmax takes a 2-sequence (min, max), got {len(items)} items")
        return tuple.__new__(cls, items)

    min = property(operator.itemgetter(0), doc="the smallest values")
    max = property(operator.itemgetter(1), doc="the largest values")

    def __repr__(self):
        return f"dualgraph.return_types.aminmax(\nmin={self[0]!r},\nmax={self[1]!r})"

    def __reduce__(self):
        return type(self), (tuple(self),)
