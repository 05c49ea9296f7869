"""dg.nn: functional ops now; modules arrive with the modules issue."""
from . import functional  # noqa: F401
