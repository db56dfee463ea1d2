"""Small helpers shared by the experiment scripts: results folder, atomic JSON, machine info."""

from __future__ import annotations

import json
import os
import platform
import tempfile
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def write_json_atomic(path: Path, data: object) -> None:
    """Write ``data`` as indented JSON to ``path`` atomically (temp file, then os.replace)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as handle:
            json.dump(data, handle, indent=2, sort_keys=False)
            handle.write("\n")
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def machine() -> dict:
    """A short description of the machine a result came from."""
    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
    }
