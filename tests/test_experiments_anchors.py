"""experiments.anchors: environments, exported splits, the big cells, pairing, the quick study."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import stats

from experiments import accuracy_vs_rank as avr
from experiments import anchors


def test_missing_or_stale_environment_is_reported_not_built(tmp_path):
    python, reason = anchors.ensure_env("mace", tmp_path, build=False)
    assert python is None and "--setup" in reason and str(tmp_path) in reason
    # an environment built from other pins is not reused
    folder = tmp_path / "mace" / "bin"
    folder.mkdir(parents=True)
    (folder / "python").write_text("")
    marker = tmp_path / "mace" / "tdn_anchor_env.json"
    marker.write_text(json.dumps({"requirements_sha256": "0" * 64}))
    assert anchors.env_python("mace", tmp_path) is None
    marker.write_text(json.dumps({"requirements_sha256": anchors._requirements_digest("mace")}))
    assert anchors.env_python("mace", tmp_path) == folder / "python"


def test_every_anchor_has_pinned_requirements_and_a_worker():
    for name, info in anchors.ANCHORS.items():
        lines = [x for x in info["requirements"].read_text().splitlines() if x and x[0] != "#"]
        assert all("==" in x for x in lines), f"{name}: unpinned requirement"
        assert "torch==2.13.0" in lines and info["worker"].is_file()


def test_exported_split_reads_back_with_mace_keys(tmp_path, monkeypatch):
    from tdn_theory.models import data

    monkeypatch.setenv("TDN_THEORY_CACHE", str(tmp_path / "cache"))
    s = anchors.settings(quick=True)
    files = anchors.export_split("cuau-fcc", s, 1, tmp_path / "split")
    expected = avr.load_split("cuau-fcc", s, 1)
    for part, configs in zip(("train", "val", "test"), expected, strict=True):
        back = data.read_extxyz(files[part], energy_key="REF_energy", forces_key="REF_forces")
        assert len(back) == len(configs)
        for a, b in zip(back, configs, strict=True):
            assert a.get_potential_energy() == b.get_potential_energy()
            np.testing.assert_array_equal(a.get_forces(), b.get_forces())
            np.testing.assert_array_equal(a.positions, b.positions)


def test_big_cells_have_about_2000_atoms_and_no_overlaps(tmp_path, monkeypatch):
    monkeypatch.setenv("TDN_THEORY_CACHE", str(tmp_path / "cache"))
    s = anchors.settings(quick=True)
    train, _, _ = avr.load_split("cuau-fcc", s, 0)
    metal = anchors.big_cell("cuau-fcc", train)
    assert len(metal) == 2048 and metal.pbc.all()
    assert list(metal.symbols).count("Au") == 512
    distances = metal.get_distances(0, range(1, len(metal)), mic=True)
    assert distances.min() > 2.0  # nearest fcc neighbours, no overlap
    volume = np.mean([a.get_volume() / len(a) for a in train])
    assert metal.get_volume() / len(metal) == pytest.approx(volume)


def test_tdn_minus_anchor_is_paired_by_seed():
    runs = []
    for seed, (tdn, mace) in enumerate([(10.0, 9.0), (11.5, 10.0), (12.0, 10.0)]):
        for model, value in (("tdn_dense", tdn), ("mace", mace)):
            record = {"data": "cuau-fcc", "model": model, "seed": seed, "params": 1}
            record.update(best_epoch=1, epochs_run=1, train_seconds=1.0)
            runs.append(record | dict.fromkeys(anchors.METRICS, value))
    runs.append(runs[0] | {"seed": 7, "model": "tdn_dense"})  # no MACE run of seed 7: unpaired
    rows = {r["model"]: r for r in anchors.summarize(runs, ["tdn_dense", "mace"], ["cuau-fcc"])}
    p = rows["tdn_dense"]["minus"]["mace"]["test_force_mae_mev_per_A"]
    assert p["differences"] == [1.0, 1.5, 2.0]
    half = stats.t.ppf(0.975, 2) * 0.5 / np.sqrt(3)  # std of the differences 0.5
    assert (p["low"], p["high"]) == pytest.approx((1.5 - half, 1.5 + half))
    assert p["verdict"] == "distinguishable"
    assert "minus" not in rows["mace"] and rows["tdn_dense"]["seeds"] == [0, 1, 2, 7]


def test_quick_study_without_anchor_environments_skips_them_with_the_reason(tmp_path, monkeypatch):
    monkeypatch.setenv("TDN_THEORY_CACHE", str(tmp_path / "cache"))
    argv = ["--quick", "--out", str(tmp_path / "out"), "--env-root", str(tmp_path / "envs")]
    argv += ["--no-build", "--models", "tdn_cp28", "mace", "--records", str(tmp_path / "u.jsonl")]
    assert anchors.main(argv) == 0
    result = json.loads((tmp_path / "out" / "anchors.json").read_text())
    assert set(result["skipped"]) == {"mace"} and "--setup" in result["skipped"]["mace"]
    assert {r["model"] for r in result["runs"]} == {"tdn_dense", "tdn_cp28"}
    speed = result["speed"]["cuau-fcc"]
    assert speed["n_big_atoms"] == 2048
    assert speed["models"]["tdn_dense"]["train_step_vs_tdn_dense"] == 1.0
    s = anchors.settings(quick=True)  # every repeat's rounds are pooled
    assert speed["models"]["tdn_cp28"]["rounds"] == s["timing_repeats"] * s["timing_rounds"] == 4
    assert (tmp_path / "out" / "anchors.md").read_text().count("mace not run") == 1
    assert result["provenance"]["mode"] == "quick"
    # a rerun with the records file trains nothing again: the records are reused as they are
    assert anchors.main([*argv, "--no-speed"]) == 0
    again = json.loads((tmp_path / "out" / "anchors.json").read_text())
    assert again["runs"] == result["runs"]
    assert len((tmp_path / "u.jsonl").read_text().splitlines()) == 2


@pytest.mark.parametrize("bad", [["--seeds", "-1"], ["--models", "schnet"], ["--data", "qm9"]])
def test_bad_options_are_one_line_errors(bad, capsys):
    with pytest.raises(SystemExit) as exit_:
        anchors.main(["--quick", "--no-build", *bad])
    assert exit_.value.code == 2
    assert (
        capsys.readouterr().err.strip().splitlines()[-1].startswith("python -m experiments.anchors")
    )


@pytest.mark.parametrize("anchor", sorted(anchors.ANCHORS))
def test_quick_anchor_run_in_its_environment(anchor, tmp_path, monkeypatch):
    python = anchors.env_python(anchor, anchors.env_root())
    if python is None:
        pytest.skip(
            f"the {anchor} environment is not built on this machine "
            f"(python -m experiments.anchors --setup builds it; needs PyPI)"
        )
    monkeypatch.setenv("TDN_THEORY_CACHE", str(tmp_path / "cache"))
    argv = ["--quick", "--out", str(tmp_path / "out"), "--no-build", "--no-speed"]
    argv += ["--env-root", str(python.parent.parent.parent), "--models", anchor]
    assert anchors.main(argv) == 0
    result = json.loads((tmp_path / "out" / "anchors.json").read_text())
    run = next(r for r in result["runs"] if r["model"] == anchor)
    assert run["params"] > 1000 and run["epochs_run"] == 1
    assert np.isfinite(run["test_force_mae_mev_per_A"]) and run["test_force_mae_mev_per_A"] > 0
