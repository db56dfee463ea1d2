"""Command-line plumbing shared by the entry points (``fit_cp``, ``train_potential``).

Bad input is reported as one line on stderr with exit status 2: every check raises
:class:`UsageError`, and :class:`OneLineParser` turns argparse's own errors into one.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from tdn_theory.so3._files import NotRegularFileError, check_regular_or_absent

__all__ = ["OneLineParser", "UsageError", "check_output_path", "parse_int"]


class UsageError(Exception):
    """Bad command-line input: reported as one line on stderr, exit status 2."""


class OneLineParser(argparse.ArgumentParser):
    """argparse that reports errors as a single line (no usage block) and exits with 2."""

    def error(self, message: str):  # type: ignore[override]
        raise UsageError(message)


def parse_int(text: str, name: str, low: int) -> int:
    """``int(text)`` if it is an integer >= ``low`` (a float such as "8.0" is refused)."""
    try:
        value = int(text)
    except (TypeError, ValueError):
        raise UsageError(f"--{name} must be an integer >= {low}, got {text!r}") from None
    if value < low:
        raise UsageError(f"--{name} must be an integer >= {low}, got {value}")
    return value


def check_output_path(text: str) -> Path:
    """The ``--out`` path, if a file may be written there: its folder exists and is writable, and
    the path is absent or a writable regular file (never a folder, link, FIFO or device)."""
    if text.endswith(("/", os.sep)):
        raise UsageError(f"--out {text!r} names a folder (trailing slash); give a file name")
    out = Path(text)
    if out.is_dir() and not out.is_symlink():
        raise UsageError(f"--out {str(out)!r} is a folder; give a file name")
    folder = out.parent if str(out.parent) else Path(".")
    if not folder.is_dir():
        raise UsageError(f"--out: folder {str(folder)!r} does not exist; create it first")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise UsageError(f"--out: folder {str(folder)!r} is not writable; choose another --out")
    try:
        check_regular_or_absent(out)
    except NotRegularFileError as exc:
        raise UsageError(f"--out {exc}") from None
    if out.exists() and not os.access(out, os.W_OK):
        raise UsageError(f"--out {str(out)!r} exists and is not writable; choose another --out")
    return out
