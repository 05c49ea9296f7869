"""Writing files so that the target path is never left half-written."""
import os
import tempfile


def atomic_write(path, chunks, suffix=".tmp"):
    """Write the byte chunks to a temporary file beside `path`, fsync it, then rename it over `path`.

    On any failure (including KeyboardInterrupt) the temporary file is removed and `path` keeps
    whatever it held before."""
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=directory, prefix="." + os.path.basename(path) + ".", suffix=suffix)
    try:
        with os.fdopen(fd, "wb") as f:
            for c in chunks:
                f.write(c)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
