"""The experiments' shared command-line contract (experiments/_common.py) on one real script."""

from __future__ import annotations

import json

import pytest

from experiments import nbody_ranks
from tdn_theory.cp import best_known


def test_quick_run_writes_json_png_and_provenance(tmp_path):
    assert nbody_ranks.main(["--quick", "--out", str(tmp_path), "--samples", "20"]) == 0
    data = json.loads((tmp_path / "nbody_ranks.json").read_text())
    assert (tmp_path / "nbody_ranks.png").stat().st_size > 1000
    prov = data["provenance"]
    assert {
        "command",
        "git_commit",
        "started",
        "finished",
        "machine",
        "load_average_start",
        "load_average_end",
        "threads",
        "mode",
    } <= set(prov)
    assert prov["mode"] == "quick" and prov["command"].startswith(
        "python -m experiments.nbody_ranks"
    )
    # the ranks the shipped store holds are read, not refitted: the same number as best_known
    for row in data["rows"]:
        if row["rank"] < 81:
            assert row["relative_error"] == pytest.approx(
                best_known(2, row["rank"]).relative_error, rel=1e-9, abs=1e-15
            )


def test_out_must_be_a_folder(tmp_path, capsys):
    target = tmp_path / "file.txt"
    target.write_text("x")
    with pytest.raises(SystemExit) as exc:
        nbody_ranks.main(["--quick", "--out", str(target)])
    assert exc.value.code == 2
    assert "not a folder" in capsys.readouterr().err
