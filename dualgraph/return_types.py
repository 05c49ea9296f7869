"""The named tuples that PyTorch's value-and-index ops return (`torch.return_types`).

`dg.max(x, dim=1)`, `sort`, `topk`, `median(dim=)`, `kthvalue`, `mode`, `cummax`, `cummin` give a
tuple of (values, indices) that unpacks, indexes and reads `.values` / `.indices`, as PyTorch's do.
Each type is built from one iterable, as PyTorch's structseq types are, so code that maps over
tuples and rebuilds them with `type(t)(items)` (dualgraph's own pytrees among them) keeps the type.
"""
import operator

__all__ = ["max", "min", "sort", "topk", "median", "kthvalue", "mode", "cummax", "cummin", "aminmax"]


class _Pair(tuple):
    """A 2-tuple whose items also read as the attributes named in `_fields`."""
    __slots__ = ()
    _fields = ("values", "indices")
    n_fields = n_sequence_fields = 2
    n_unnamed_fields = 0

    def __new__(cls, sequence):
        items = tuple(sequence)
        if len(items) != 2:
            raise TypeError(f"dualgraph.return_types.{cls.__name__} takes a 2-sequence ({', '.join(cls._fields)}), "
                            f"got {len(items)} items")
        return tuple.__new__(cls, items)

    def __repr__(self):
        a, b = self._fields
        return f"dualgraph.return_types.{type(self).__name__}(\n{a}={self[0]!r},\n{b}={self[1]!r})"

    def __reduce__(self):
        return type(self), (tuple(self),)

    def _asdict(self):
        return dict(zip(self._fields, self))


def _make(name, fields=("values", "indices"),
          docs=("the selected values", "their positions along the dim (int64)")):
    attrs = {"__slots__": (), "__module__": __name__, "__qualname__": name, "_fields": fields}
    attrs.update({f: property(operator.itemgetter(i), doc=d) for i, (f, d) in enumerate(zip(fields, docs))})
    return type(name, (_Pair,), attrs)


max = _make("max")
min = _make("min")
sort = _make("sort")
topk = _make("topk")
median = _make("median")
kthvalue = _make("kthvalue")
mode = _make("mode")
cummax = _make("cummax")
cummin = _make("cummin")
aminmax = _make("aminmax", ("min", "max"), ("the smallest values", "the largest values"))
