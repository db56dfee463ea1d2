"""Small helpers shared by the experiment scripts: results folder, atomic JSON, machine info."""

from __future__ import annotations

import io
import json
import os
import platform
import tempfile
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically: a temporary file in the same folder, then os.replace.

    A reader never sees a half-written file, and an interrupted write leaves the old file intact.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_text_atomic(path: Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    write_bytes_atomic(path, text.encode("utf-8"))


def write_json_atomic(path: Path, data: object, *, indent: int = 2) -> None:
    """Write ``data`` as indented JSON to ``path`` atomically."""
    write_text_atomic(path, json.dumps(data, indent=indent) + "\n")


def save_figure_atomic(
    fig: object, path: Path, *, dpi: int = 120, **savefig_kwargs: object
) -> None:
    """Render a matplotlib figure to PNG in memory, then write it atomically."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, **savefig_kwargs)
    write_bytes_atomic(path, buffer.getvalue())


def machine() -> dict:
    """A short description of the machine a result came from."""
    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
    }


def hash_files(h, paths, root: Path) -> None:
    """Feed each file's path relative to ``root`` and its bytes into the hash object ``h``."""
    for path in paths:
        h.update(str(Path(path).relative_to(root)).encode())
        h.update(Path(path).read_bytes())


def read_records(path: Path | None, context: str) -> list[dict]:
    """The records of a JSON-lines file of finished units (one ``{"context", "record"}`` object a
    line, appended by :func:`append_record`) that were made in ``context``; [] without a file."""
    if path is None or not Path(path).exists():
        return []
    found = []
    for line in Path(path).read_text().splitlines():
        entry = json.loads(line) if line.strip() else {}
        if entry.get("context") == context:
            found.append(entry["record"])
    return found


def append_record(path: Path, context: str, record: dict) -> None:
    """Append one finished unit: an interrupted run loses one unit at most."""
    with open(path, "a") as handle:
        handle.write(json.dumps({"context": context, "record": record}) + "\n")
