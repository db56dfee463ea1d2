"""A small on-disk cache of float64 arrays (the real CG blocks), shared between processes.

Location: ``$TDN_THEORY_CACHE`` if set, else ``$XDG_CACHE_HOME/tdn_theory`` or
``~/.cache/tdn_theory``. Every entry sits under a folder named after ``FORMAT_VERSION``, so a
change of format invalidates old entries without touching them.

An entry ``<name>.npz`` (no pickles) holds the array ``value`` and ``sha256``, the SHA-256 of its
shape, dtype and C-order bytes, written together in one atomic write (temporary file in the same
folder, then ``os.replace``; the umask is respected). Loading verifies the checksum, the shape and
dtype the caller expects, finiteness and, when the caller passes one, a ``validate`` predicate
(for the CG blocks: their exact orthogonality relations). Any failure counts as a miss: the caller
recomputes the value and the next ``store`` replaces the bad entry. If the folder cannot be
written, or the entry's path is not a regular file, the cache is silently bypassed (results are
still correct).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ._files import atomic_write, check_regular_or_absent

#: Version 2: .npz entries with a SHA-256 checksum (version 1, bare .npy files, is ignored).
FORMAT_VERSION = 2


def cache_dir() -> Path:
    """The folder holding this format version's entries (not created here)."""
    root = os.environ.get("TDN_THEORY_CACHE")
    if root:
        base = Path(root)
    else:
        xdg = os.environ.get("XDG_CACHE_HOME")
        base = (Path(xdg) if xdg else Path.home() / ".cache") / "tdn_theory"
    return base / f"v{FORMAT_VERSION}"


def entry_path(name: str) -> Path:
    """Where entry ``name`` lives."""
    return cache_dir() / f"{name}.npz"


def checksum(array: np.ndarray) -> str:
    """SHA-256 (hex) of a float64 array's shape, dtype and C-order little-endian bytes."""
    array = np.ascontiguousarray(array, dtype="<f8")
    h = hashlib.sha256()
    h.update(json.dumps({"shape": list(array.shape), "dtype": "<f8"}).encode())
    h.update(array.tobytes())
    return h.hexdigest()


def load(
    name: str,
    shape: tuple[int, ...],
    validate: Callable[[np.ndarray], bool] | None = None,
) -> np.ndarray | None:
    """The cached array ``name`` if present and verified, else ``None``.

    Verified means: a regular file (a FIFO, link or device there is a miss, never opened), a
    readable .npz with ``value`` (float64, of the expected ``shape``, finite)
    and ``sha256`` equal to :func:`checksum` of ``value``, and ``validate(value)`` true if given.
    """
    path = entry_path(name)
    try:
        if check_regular_or_absent(path) is None:
            return None
        with np.load(path, allow_pickle=False) as data:
            array = np.array(data["value"])
            stored = str(data["sha256"].item())
    except Exception:  # any unreadable or malformed entry is a miss
        return None
    if array.shape != tuple(shape) or array.dtype != np.float64:
        return None
    if not np.all(np.isfinite(array)) or stored != checksum(array):
        return None
    if validate is not None and not validate(array):
        return None
    return array


def store(name: str, array: np.ndarray) -> None:
    """Write ``array`` with its checksum atomically as entry ``name``; give up silently if the
    folder is unwritable or the entry's path is not a regular file."""
    value = np.ascontiguousarray(array, dtype=np.float64)
    digest = checksum(value)

    def write(handle):
        np.savez(handle, value=value, sha256=np.array(digest))

    try:
        cache_dir().mkdir(parents=True, exist_ok=True)
        atomic_write(entry_path(name), write)
    except OSError:
        return
