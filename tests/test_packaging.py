"""Packaging: the license and extras declared in pyproject.toml, the console scripts, lazy imports."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
tomllib = pytest.importorskip("tomllib")  # Python >= 3.11


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def _python(code: str, *args: str, **kwargs) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        cwd=kwargs.pop("cwd", ROOT),
        env=env,
        capture_output=True,
        text=True,
        **kwargs,
    )


def test_license_file_is_declared():
    project = _pyproject()["project"]
    assert project["license"] == "MIT"
    assert project["license-files"] == ["LICENSE"]
    text = (ROOT / "LICENSE").read_text()
    assert text.startswith("MIT License") and "tdn_theory developers" in text


def test_matplotlib_is_an_extra_that_the_tests_pull_in():
    project = _pyproject()["project"]
    names = [req.split(">")[0].split("=")[0].split("[")[0] for req in project["dependencies"]]
    assert "matplotlib" not in names
    extras = project["optional-dependencies"]
    assert any(req.startswith("matplotlib") for req in extras["experiments"])
    assert "tdn_theory[experiments,qm]" in extras["test"]


def test_tblite_is_the_qm_extra_and_never_imported_by_the_library():
    project = _pyproject()["project"]
    names = [req.split(">")[0].split("=")[0] for req in project["dependencies"]]
    assert "tblite" not in names
    assert any(req.startswith("tblite") for req in project["optional-dependencies"]["qm"])
    result = _python(
        "import sys, tdn_theory.models, tdn_theory.models.molecules, tdn_theory.train_potential\n"
        "print('tblite' in sys.modules)\n"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["False"]


def test_library_imports_neither_matplotlib_nor_e3nn_for_nn():
    """matplotlib is never imported by the library; ``tdn_theory.nn`` loads e3nn only on use."""
    result = _python(
        "import sys, tdn_theory, tdn_theory.cp, tdn_theory.theory, tdn_theory.nn\n"
        "print('e3nn' in sys.modules)\n"
        "import tdn_theory.models, tdn_theory.testing, tdn_theory.fit_cp, tdn_theory.train_potential\n"
        "print('matplotlib' in sys.modules)\n"
        "tdn_theory.nn.irreps(1)\n"
        "print('e3nn' in sys.modules)\n"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["False", "False", "True"]


def test_console_scripts_point_to_the_entry_points():
    scripts = _pyproject()["project"]["scripts"]
    assert scripts == {
        "tdn-fit-cp": "tdn_theory.fit_cp:main",
        "tdn-train-potential": "tdn_theory.train_potential:main",
    }
    for target in scripts.values():
        module, attr = target.split(":")
        assert callable(getattr(importlib.import_module(module), attr))


def test_tdn_fit_cp_runs_as_its_console_script_does(tmp_path):
    """The wrapper pip writes for ``tdn-fit-cp`` calls ``sys.exit(main())`` with sys.argv."""
    out = tmp_path / "m.npz"
    args = [
        "--L",
        "1",
        "--rank",
        "3",
        "--restarts",
        "1",
        "--rotations",
        "5",
        "--time-budget",
        "5",
        "--json",
        "--quiet",
        "--out",
        str(out),
    ]
    wrapper = "import sys\nfrom tdn_theory.fit_cp import main\nsys.exit(main())\n"
    result = _python(wrapper, *args, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert (report["L"], report["rank"], report["out"]) == (1, 3, str(out)) and out.is_file()
    bad = _python(wrapper, "--L", "1", "--rank", "8.0", cwd=tmp_path)
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1
