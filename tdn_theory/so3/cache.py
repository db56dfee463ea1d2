"""A small on-disk cache of float64 arrays (the real CG blocks), shared between processes.

Location: ``$TDN_THEORY_CACHE`` if set, else ``$XDG_CACHE_HOME/tdn_theory`` or
``~/.cache/tdn_theory``. Every entry sits under a folder named after ``FORMAT_VERSION``, so a
change of format invalidates old entries without touching them. Writes are atomic (temporary file
in the same folder, then ``os.replace``); an unreadable or malformed entry is treated as missing.
If the folder cannot be written, the cache is silently bypassed (results are still correct).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np

FORMAT_VERSION = 1


def cache_dir() -> Path:
    """The folder holding this format version's entries (not created here)."""
    root = os.environ.get("TDN_THEORY_CACHE")
    if root:
        base = Path(root)
    else:
        xdg = os.environ.get("XDG_CACHE_HOME")
        base = (Path(xdg) if xdg else Path.home() / ".cache") / "tdn_theory"
    return base / f"v{FORMAT_VERSION}"


def load(name: str, shape: tuple[int, ...]) -> np.ndarray | None:
    """The cached array ``name`` if present and of the expected shape, else ``None``."""
    path = cache_dir() / f"{name}.npy"
    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError):
        return None
    if array.shape != shape or array.dtype != np.float64 or not np.all(np.isfinite(array)):
        return None
    return array


def store(name: str, array: np.ndarray) -> None:
    """Write ``array`` atomically as entry ``name``; give up silently if the folder is unwritable."""
    folder = cache_dir()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".npy", dir=folder)
    except OSError:
        return
    try:
        with os.fdopen(fd, "wb") as handle:
            np.save(handle, np.ascontiguousarray(array, dtype=np.float64), allow_pickle=False)
        os.replace(tmp, folder / f"{name}.npy")
    except OSError:
        try:
            os.unlink(tmp)
        except OSError:
            pass
