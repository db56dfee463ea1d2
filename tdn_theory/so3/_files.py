"""Atomic file writes that never replace a special file and respect the umask.

Used by the CG disk cache (:mod:`.cache`) and the factor files (:mod:`tdn_theory.cp.factor_files`).
A write goes to a temporary file in the destination's folder, is flushed to disk, gets its final
mode, and is then moved over the destination with ``os.replace`` (atomic on POSIX): a reader sees
the old file or the new one, never a half-written one. The destination must be absent or a regular
file: a symbolic link, FIFO, device node, socket or folder is refused (``NotRegularFileError``), so
that pointing an output at ``/dev/null`` or a pipe cannot replace it. The new file gets the mode of
the file it replaces, else ``0o666`` minus the process umask (what ``open(path, "w")`` would give).

Temporary files are named ``.<name>.<pid>.<random>.tmp``. A process killed during a write (``kill -9``
skips every cleanup) leaves one behind; the next write to the same destination removes those whose
process no longer runs on this machine (never another live writer's file).
"""

from __future__ import annotations

import os
import re
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

__all__ = [
    "NotRegularFileError",
    "atomic_write",
    "check_regular_or_absent",
    "new_file_mode",
    "remove_stale_temporaries",
]

_KINDS = (
    (stat.S_ISLNK, "a symbolic link"),
    (stat.S_ISDIR, "a folder"),
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


class NotRegularFileError(OSError):
    """The destination exists and is not a regular file (link, FIFO, device, socket, folder)."""


def check_regular_or_absent(path: str | os.PathLike) -> os.stat_result | None:
    """``lstat`` of ``path`` if it is a regular file, ``None`` if it does not exist.

    Raises NotRegularFileError (with a one-line reason) for anything else; symbolic links are
    refused, not followed, so the link and whatever it points to stay untouched.
    """
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return None
    if stat.S_ISREG(info.st_mode):
        return info
    kind = next((name for test, name in _KINDS if test(info.st_mode)), "not a regular file")
    raise NotRegularFileError(
        f"{str(path)!r} exists and is {kind}; refusing to replace it (give a regular file's path)"
    )


def _umask() -> int:
    """The process umask, read without changing it where Linux allows (else set and restore)."""
    try:
        with open("/proc/self/status", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def new_file_mode(existing: os.stat_result | None) -> int:
    """Mode for a file about to replace ``existing``: its permission bits, else 0o666 & ~umask."""
    if existing is not None:
        return stat.S_IMODE(existing.st_mode)
    return 0o666 & ~_umask()


def _pid_running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError, OverflowError):  # exists but not ours, or an odd pid
        return True
    return True


def remove_stale_temporaries(path: str | os.PathLike) -> list[Path]:
    """Remove the temporary files that :func:`atomic_write` left for ``path`` in processes that
    no longer run (e.g. killed with ``kill -9``); returns what was removed. Only regular files
    named ``.<name>.<pid>.<random>.tmp`` are considered; errors are ignored."""
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    pattern = re.compile(re.escape(f".{path.name}.") + r"(\d+)\.[A-Za-z0-9_]+\.tmp$")
    removed = []
    try:
        names = os.listdir(folder)
    except OSError:
        return removed
    for name in names:
        m = pattern.match(name)
        if m is None or int(m[1]) == os.getpid() or _pid_running(int(m[1])):
            continue
        candidate = folder / name
        try:
            if stat.S_ISREG(os.lstat(candidate).st_mode):
                os.unlink(candidate)
                removed.append(candidate)
        except OSError:
            pass
    return removed


def atomic_write(path: str | os.PathLike, write: Callable[[BinaryIO], None]) -> Path:
    """Write ``path`` atomically: ``write(handle)`` fills a temporary file that then replaces it.

    Raises NotRegularFileError when ``path`` exists and is not a regular file, OSError when the
    folder cannot be written. The temporary file is removed on every failure, including
    KeyboardInterrupt and SystemExit (a SIGTERM handler that raises reaches this cleanup).
    """
    path = Path(path)
    existing = check_regular_or_absent(path)
    folder = path.parent if str(path.parent) else Path(".")
    remove_stale_temporaries(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp", dir=folder)
    done = False
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, new_file_mode(existing))
        check_regular_or_absent(path)  # again, just before the move
        os.replace(tmp, path)
        done = True
    finally:
        if not done:
            try:
                os.unlink(tmp)
            except OSError:
                pass
    return path
