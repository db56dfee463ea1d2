"""The code base is ruff-clean and ruff-formatted (configuration in pyproject.toml)."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_ruff_clean():
    if (
        shutil.which("ruff") is None
        and subprocess.run(
            [sys.executable, "-m", "ruff", "--version"], capture_output=True
        ).returncode
    ):
        pytest.fail("ruff is not installed: pip install -e '.[test]'")
    result = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "tdn_theory", "tests", "experiments"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff_format_clean():
    """`ruff format --check` (the formatter's style; notebooks/ excluded in pyproject.toml)."""
    result = subprocess.run(
        [sys.executable, "-m", "ruff", "format", "--check", "tdn_theory", "tests", "experiments"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
