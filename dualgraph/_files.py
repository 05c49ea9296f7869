"""Writing files so that the target path is never left half-written."""
import os
import secrets
import stat

_OPEN_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0) | getattr(os, "O_CLOEXEC", 0)


def atomic_write(path, chunks, suffix=".tmp"):
    """Write the byte chunks to a temporary file beside `path`, fsync it, then rename it over `path`.

    The file ends up with the permissions `open(path, "wb")` would give it: an existing target keeps
    its mode, a new one gets 0o666 minus the process umask (and the folder's default ACL).

    On any failure (including KeyboardInterrupt) the temporary file is removed and `path` keeps
    whatever it held before."""
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = _create_temporary(directory, "." + os.path.basename(path) + ".", suffix)
    try:
        try:
            _copy_mode(path, fd, tmp)
        except BaseException:
            os.close(fd)
            raise
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


def _create_temporary(directory, prefix, suffix):
    # Not tempfile.mkstemp: it creates the file 0o600 whatever the umask says, so every checkpoint
    # and exported model would be unreadable to the user's group. Creating it with 0o666 lets the
    # kernel apply the umask (and a default ACL) exactly as it does for open(); O_EXCL keeps the
    # name unique and refuses to follow a symlink planted under it.
    for _ in range(100):
        tmp = os.path.join(directory, prefix + secrets.token_hex(6) + suffix)
        try:
            return os.open(tmp, _OPEN_FLAGS, 0o666), tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"could not create a temporary file beside {directory!r}: 100 names were taken")


def _copy_mode(path, fd, tmp):
    try:
        st = os.stat(path)
    except OSError:
        return  # a new file: the mode the umask gave it stands
    if stat.S_ISREG(st.st_mode):
        mode = st.st_mode & 0o777  # never setuid/setgid: writing a file clears those bits anyway
        if hasattr(os, "fchmod"):
            os.fchmod(fd, mode)
        else:
            os.chmod(tmp, mode)
