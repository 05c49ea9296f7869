"""The op table: every primitive is one `Op` record in `registry.REGISTRY`."""
from .registry import REGISTRY, Op, defop  # noqa: F401
