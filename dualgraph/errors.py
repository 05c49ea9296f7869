"""dualgraph's exceptions and the helper that points an error at the user's own code.

Each error subclasses the builtin a user would catch anyway (ValueError, TypeError, ...),
so `except ValueError` keeps working, while `except dg.DualgraphError` catches them all.
"""
import os
import sys

_PKG_DIR = os.path.dirname(os.path.abspath(__file__))


class DualgraphError(Exception):
    """Base class of every error dualgraph raises on purpose."""


class ShapeError(DualgraphError, ValueError):
    pass


class DTypeError(DualgraphError, TypeError):
    pass


class InvalidValue(DualgraphError, ValueError):
    """An op refused its inputs' values (not their shapes or dtypes)."""


class DeviceError(DualgraphError, RuntimeError):
    pass


class AutogradError(DualgraphError, RuntimeError):
    pass


class IndexOutOfRange(DualgraphError, IndexError):
    pass


def user_frame():
    """(filename, lineno) of the innermost frame outside the dualgraph package."""
    frame = sys._getframe(1)
    while frame is not None:
        fname = frame.f_code.co_filename
        if not os.path.abspath(fname).startswith(_PKG_DIR):
            return fname, frame.f_lineno
        frame = frame.f_back
    return None, None


def user_line():
    """'file.py:12' for the user's line that led here, or '' when unknown."""
    fname, lineno = user_frame()
    return f"{fname}:{lineno}" if fname else ""
