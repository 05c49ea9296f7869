"""The package version, in one place: the package, the ONNX exporter and the build read it."""
__version__ = "0.1.0"
