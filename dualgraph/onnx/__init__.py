"""dg.onnx: export the graph IR to ONNX and verify it against onnxruntime.

    dg.onnx.export(fn_or_module_or_graph, example_args, "model.onnx",
                   input_names=["x"], output_names=["y"], dynamic_axes={"x": {0: "batch"}}, verify=True)

Every op record carries its lowering in `op.onnx` (defined beside its `defop`, built from
ops/onnx_rules.py), or `not_exportable(reason)`; `coverage()` lists them, `missing_lowerings()` lists
ops that have neither.
"""
from ..ops.onnx_rules import not_exportable
from .api import export, trace
from .context import NotExportable
from .export import (ExportError, VerificationError, check, coverage, default_opset, graph_to_model,
                     missing_lowerings, onnxruntime_max_opset, save_atomic, unexportable_nodes)
from .verify import session

__all__ = ["export", "trace", "ExportError", "VerificationError", "NotExportable", "graph_to_model", "check",
           "default_opset", "onnxruntime_max_opset", "coverage", "missing_lowerings", "not_exportable",
           "session", "save_atomic", "unexportable_nodes"]
