"""The graph IR shared by @dg.function, the static builder and the ONNX exporter."""
from .ir import Graph, Node, Value  # noqa: F401
