"""experiments.accuracy_vs_rank: paired differences, independent units, the quick study, resuming."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import stats

from experiments import accuracy_vs_rank as avr


def test_paired_difference_interval_and_verdicts():
    d = [1.0, 2.0, 3.0, 2.5, 1.5]
    p = avr.paired_difference(d, scale=40.0)
    half = stats.t.ppf(0.975, 4) * np.std(d, ddof=1) / np.sqrt(5)
    assert p["mean"] == pytest.approx(2.0)
    assert (p["low"], p["high"]) == pytest.approx((2.0 - half, 2.0 + half))
    assert p["verdict"] == "distinguishable from dense"
    assert avr.paired_difference([1.0, -1.0, 0.5], 40.0)["verdict"] == "not distinguishable"
    assert avr.paired_difference([1e-12, -2e-12], 40.0)["verdict"] == "same to rounding"
    assert avr.paired_difference([0.3], 40.0)["verdict"] == "one seed: no interval"


def test_units_are_independent_plain_descriptions():
    s = avr.settings(quick=True)
    specs = avr.backends_for(2)
    names = [sp["name"] for sp in specs]
    assert names[:2] == ["dense", "sphere"] and {"cp14", "cp20", "cp28", "cp30"} <= set(names)
    units = avr.units(["cuau-fcc"], specs, [0, 1], 2, s, 4.5)
    assert len(units) == 2 * len(specs)
    json.dumps(units)  # plain data: can be shipped to a worker as is
    assert {(u["spec"]["name"], u["seed"]) for u in units} == {
        (n, k) for n in names for k in (0, 1)
    }


def test_quick_study_writes_paired_results_and_resumes(tmp_path, monkeypatch):
    monkeypatch.setenv("TDN_THEORY_CACHE", str(tmp_path / "cache"))
    records = tmp_path / "units.jsonl"
    # one seed, dense and the exact CP (R = 30): the smallest run that exercises every part
    argv = ["--quick", "--out", str(tmp_path / "out"), "--backends", "cp30"]
    argv += ["--seeds", "3", "--no-speed", "--records", str(records)]
    assert avr.main(argv) == 0
    result = json.loads((tmp_path / "out" / "accuracy_vs_rank.json").read_text())
    assert len(result["runs"]) == 2 and len(records.read_text().splitlines()) == 2
    rows = {r["name"]: r for r in result["summary"]}
    # the exact CP computes the dense model's function: paired differences are rounding
    assert rows["cp30"]["paired"]["test_force_mae_mev_per_A"]["verdict"] == "same to rounding"
    assert rows["dense"]["force_equivariance_worst_found"] < 1e-9
    assert rows["cp30"]["best_epochs"][0] <= rows["cp30"]["epochs_run"][0] == 2
    split = result["data"][0]["trajectories"]
    assert not set(split["test"]) & set(split["train"])  # held-out trajectories
    assert "worst found" in (tmp_path / "out" / "accuracy_vs_rank.md").read_text()
    assert (tmp_path / "out" / "accuracy_vs_rank.png").stat().st_size > 1000

    def no_training(unit):
        raise AssertionError("a finished unit was run again")

    monkeypatch.setattr(avr, "run_unit", no_training)
    assert avr.main(argv) == 0  # every unit comes from the records file
    again = json.loads((tmp_path / "out" / "accuracy_vs_rank.json").read_text())
    assert again["runs"] == result["runs"]
