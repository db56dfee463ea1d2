"""experiments/network_equivariance.py: committed results obey the theorem; README table is generated."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from experiments import network_equivariance as ne

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "experiments" / "results" / "network_equivariance.json"


@pytest.fixture(scope="module")
def data():
    if not RESULTS.is_file():
        pytest.skip("full results not committed yet")
    return json.loads(RESULTS.read_text())


def test_committed_results_stay_inside_the_bound(data):
    """Theorems 1 and 2 of proofs/network_propagation.md on every stored point: each bound is at
    least the worst defect found (Haar rotations and the Nelder-Mead adversarial rotation)."""
    approximate = [r for r in data["rows"] if not r["exact"]]
    assert approximate
    for r in approximate:
        assert r["force_rel_worst"] <= r["force_bound_rel"]
        assert r["energy_rel_worst"] <= r["energy_bound_rel"]
        for m, b in zip(r["feature_defect"], r["feature_bound"], strict=True):
            assert m <= b * (1 + 1e-9) + 1e-15
    exact = [r for r in data["rows"] if r["exact"]]
    assert exact and max(r["force_rel_worst"] for r in exact) < 1e-11


def test_committed_results_stay_inside_theorem_2(data):
    """Theorem 2 (with its rounding allowance) on every approximate point up to BOUND2_MAX_L (it is
    not evaluated on exact tensor products, where it refuses: tests/test_models_network_certificate.py)."""
    rows = [r for r in data["rows"] if not r["bound2_skipped"]]
    printed = [r for r in rows if not r["exact"]]
    assert printed
    for r in printed:
        assert r["force_rel_worst"] <= r["force_bound2_rel"]
        assert r["energy_rel_worst"] <= r["energy_bound2_rel"]
        for m, b in zip(r["feature_defect"], r["feature_bound2"], strict=True):
            assert m <= b * (1 + 1e-9) + 1e-15
        assert r["force_bound2_rel"] <= r["force_bound_rel"]  # never looser than Theorem 1
    assert not any(r["bound2_refused"] for r in rows)
    assert {r["L"] for r in printed} == {r["L"] for r in data["rows"] if r["L"] <= ne.BOUND2_MAX_L}


def test_tightness_summary_is_the_rows(data):
    """The stored tightness summary (README and issue target: <= 30x) is recomputed from the rows."""
    assert data["tightness"] == ne.tightness_summary(
        data, tuple(sorted({r["L"] for r in data["rows"]}))
    )


def test_mirror_check(data):
    note = data["closing_note"]["mirror_max"]
    assert note["even"]["energy_rel"] < 1e-10 and note["even"]["force_rel"] < 1e-9
    assert note["all"]["energy_rel"] > 1e-10


def test_readme_table_is_generated_from_the_json(data):
    readme = (ROOT / "experiments" / "README.md").read_text()
    assert ne.markdown_table(data) in readme, "regenerate: python -m experiments.readme"


def test_schedules():
    assert ne.schedules(2) == {"7L": 14, "16ln^2(L+1)": 20, "7L^2": 28, "exact": 30}
    assert ne.schedules(4)["16ln^2(L+1)"] == 42


@pytest.mark.parametrize(
    "argv",
    [
        ["--L", "7"],
        ["--rotations", "0"],
        ["--search", "-1"],
        ["--table", "--out", "/nonexistent/x.json"],
    ],
)
def test_bad_arguments_exit_2(argv):
    with pytest.raises(SystemExit) as excinfo:
        ne.main(argv)
    assert excinfo.value.code == 2
