"""dg.onnx: export the graph IR to ONNX and verify it against onnxruntime.

    dg.onnx.export(fn_or_module_or_graph, example_args, "model.onnx",
                   input_names=["x"], output_names=["y"], dynamic_axes={"x": {0: "batch"}}, verify=True)

Every op of the op table carries its lowering in `op.onnx` (see lowering.py and control.py);
`coverage()` lists them, `missing_lowerings()` lists ops that have none.
"""
from . import control as _control  # noqa: F401  (registers the If/Loop rules)
from .api import export, trace
from .context import NotExportable
from .export import (ExportError, VerificationError, check, default_opset, graph_to_model,
                     onnxruntime_max_opset, save_atomic, unexportable_nodes)
from .lowering import attach, coverage, missing_lowerings, not_exportable
from .verify import session

attach()

__all__ = ["export", "trace", "ExportError", "VerificationError", "NotExportable", "graph_to_model", "check",
           "default_opset", "onnxruntime_max_opset", "coverage", "missing_lowerings", "not_exportable",
           "session", "save_atomic", "unexportable_nodes"]
