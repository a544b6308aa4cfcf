"""File output: atomic writes, an exclusive lock for shared appends, output-path checks.

Atomic writes go through a temp file in the same folder + fsync + rename, so readers see the
old or the new file, never half of one. New files get the permissions ``open()`` would give
them (``0o666`` minus the umask) and a replaced file keeps its mode: a temp file alone would
be ``0o600`` and shared results unreadable to other users (issue #17).
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import stat
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NoReturn

from disagg_gym.errors import UserError


def _umask() -> int:
    """The process umask (read without changing it where ``/proc`` allows)."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)  # no other way to read it: set and restore at once
    os.umask(mask)
    return mask


def _target_mode(p: Path) -> int:
    try:
        return stat.S_IMODE(p.stat().st_mode)  # a replaced file keeps its mode
    except OSError:
        return 0o666 & ~_umask()


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Writes ``data`` to ``path`` atomically; readers see the old or the new file, never half.

    A new file gets ``0o666`` minus the umask (like ``open(path, "w")``); an existing one keeps
    its permissions. An existing path that is not a regular file (``/dev/null``, a pipe) is
    written through, never replaced: renaming a temp file onto ``/dev/null`` as root would
    turn the system's null device into a regular file (issue #17, found by the CLI fuzz
    campaign).
    """
    p = Path(path)
    try:
        st = os.stat(p)  # follows symlinks: a link to /dev/null is a device too
    except (FileNotFoundError, NotADirectoryError):
        st = None
    if st is not None and not stat.S_ISREG(st.st_mode):
        if stat.S_ISDIR(st.st_mode):
            raise IsADirectoryError(errno.EISDIR, "Is a directory", str(p))
        try:
            with open(p, "wb") as fh:
                fh.write(data)
        except OSError as exc:
            if exc.filename is None:  # a write() error (a full /dev/full) names no file: name it
                raise OSError(exc.errno, exc.strerror, str(p)) from None
            raise
        return p
    p.parent.mkdir(parents=True, exist_ok=True)
    mode = _target_mode(p)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=p.parent)
    except OSError as exc:  # name the file asked for, not the temp file beside it
        raise OSError(exc.errno, exc.strerror, str(p)) from None
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fchmod(fh.fileno(), mode)
            os.fsync(fh.fileno())
        os.replace(tmp, p)
    except BaseException as exc:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(exc, OSError) and exc.filename in (tmp, None):  # write()/fsync() errors name no file
            raise OSError(exc.errno, exc.strerror, str(p)) from None
        raise
    return p


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Text version of ``atomic_write_bytes`` (UTF-8)."""
    return atomic_write_bytes(path, text.encode())


def atomic_write_json(path: str | Path, obj: Any) -> Path:
    """Writes ``obj`` as indented, key-sorted JSON, atomically."""
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


@contextlib.contextmanager
def exclusive_lock(path: str | Path, busy: str | None = None) -> Iterator[None]:
    """Holds an exclusive advisory lock on ``path`` (created if missing) for the ``with`` block.

    Every process that appends to a shared file takes this lock first, so appends (and the
    rare full rewrite) never interleave. The lock file is separate from the data file because
    an atomic rewrite replaces the data file's inode. POSIX ``flock``; on platforms without
    ``fcntl`` it is a no-op (single writer assumed).

    ``busy``: do not wait; another holder is a ``UserError(busy)``. For outputs one process
    owns for its whole run (a training run folder), where a second process must stop at once
    rather than queue up and then overwrite the first one's files.
    """
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(p, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        try:
            import fcntl
        except ImportError:  # pragma: no cover - Windows
            yield
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_EX if busy is None else fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise UserError(busy) from None
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def lock_path(data: str | Path) -> Path:
    """The lock file of shared data file ``data``: ``.<name>.lock`` beside it (one naming
    for every shared file: results, manifest, tuned values, bounds cache).
    """
    p = Path(data)
    return p.with_name(f".{p.name}.lock")


def locked(data: str | Path) -> contextlib.AbstractContextManager[None]:
    """``exclusive_lock(lock_path(data))``: hold the lock of shared data file ``data``."""
    return exclusive_lock(lock_path(data))


def _nearest_existing(p: Path) -> Path:
    q = p
    while not q.exists() and q != q.parent:
        q = q.parent
    return q


def check_output_file(path: str | Path, flag: str) -> Path:
    """Checks, before any work, that a file can be written at ``path`` (parents may be missing).

    Args:
        path: The output file.
        flag: What names it for the user, e.g. ``"--records"``.

    Raises:
        UserError: ``path`` is a directory, a parent is a file, or the folder is not writable.
    """
    p = Path(path)
    if p.is_dir():
        raise UserError(f"{flag} {str(p)!r}: is a directory, expected a file path")
    if p.exists() and not os.access(p, os.W_OK):
        raise UserError(f"{flag} {str(p)!r}: file is not writable")
    _check_folder(p.parent, p, flag)
    return p


def check_output_dir(path: str | Path, flag: str) -> Path:
    """Checks, before any work, that ``path`` is (or can be created as) a writable folder.

    Raises:
        UserError: ``path`` or a parent is a file, or the nearest existing folder is not
            writable.
    """
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise UserError(f"{flag} {str(p)!r}: is a file, expected a folder")
    _check_folder(p, p, flag)
    return p


def _check_folder(folder: Path, target: Path, flag: str) -> None:
    base = _nearest_existing(folder)
    if not base.is_dir():
        raise UserError(f"{flag} {str(target)!r}: {str(base)!r} is a file, not a folder")
    if not os.access(base, os.W_OK | os.X_OK):
        raise UserError(f"{flag} {str(target)!r}: folder {str(base)!r} is not writable")
    # access() says yes to root everywhere, and to pseudo file systems (/proc, /sys) that take no
    # new files: a probe file shows the truth before any work is done.
    try:
        fd, probe = tempfile.mkstemp(prefix=".disagg-gym-probe.", dir=base)
    except OSError as exc:
        raise UserError(f"{flag} {str(target)!r}: cannot create files in {str(base)!r} ({exc.strerror})") from None
    os.close(fd)
    os.unlink(probe)


def check_input_path(path: str | Path, flag: str, what: str = "file") -> Path:
    """An input ``flag`` gave that must exist (a folder passes: the reader names it), else a
    ``UserError``: ``--results 'x.csv': results file not found``.
    """
    p = Path(path)
    if not p.exists():
        raise UserError(f"{flag} {str(path)!r}: {what} not found")
    return p


def describe_os_error(exc: OSError) -> str:
    """One line for an ``OSError``: what failed, on which path, and why."""
    what = exc.strerror or type(exc).__name__
    if exc.filename is not None and exc.filename2 is not None:
        return f"cannot write {str(exc.filename2)!r}: {what}"
    if exc.filename is not None:
        return f"{str(exc.filename)!r}: {what}"
    return str(exc) or what


def run_script(prog: str, main: Callable[..., int | None], *args: Any) -> NoReturn:
    """Runs a script's ``main(*args)`` and exits with its status (``None``: 0). Bad input (a
    ``UserError``) or an OS error (a path that went bad, a full disk) is one line on stderr,
    ``<prog>: error: ...``, exit 2; any other exception keeps its traceback: it is a bug.
    """
    try:
        rc = main(*args)
    except UserError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    except OSError as exc:
        print(f"{prog}: error: {describe_os_error(exc)}", file=sys.stderr)
        raise SystemExit(2) from None
    raise SystemExit(rc or 0)
