"""Molecular GFN2-xTB data sets (tdn_theory.models.molecules), trajectory splits and labels by key."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator
from ase.io import write

from tdn_theory.models import data, molecules


def _tiny_recipe(name: str) -> molecules.MoleculeRecipe:
    """The named set's protocol with very short MD (for tests only)."""
    return dataclasses.replace(
        molecules.MOLECULE_DATASETS[name],
        equilibration_steps=10,
        snapshot_every=10,
        snapshots_per_trajectory=2,
    )


def test_tblite_dipole_is_in_e_angstrom():
    pytest.importorskip("tblite")
    # translating a cation of charge +1 by t changes its dipole by 1 * t: in e·Å the change is t
    ion = Atoms(
        "NH4",
        positions=[
            [0, 0, 0],
            [0.63, 0.63, 0.63],
            [-0.63, -0.63, 0.63],
            [-0.63, 0.63, -0.63],
            [0.63, -0.63, -0.63],
        ],
    )
    ion.calc = molecules.tblite_calculator(method="GFN2-xTB", charge=1)
    before = ion.get_dipole_moment().copy()
    ion.translate([0.7, -0.2, 0.4])
    after = ion.get_dipole_moment()
    np.testing.assert_allclose(after - before, [0.7, -0.2, 0.4], atol=1e-6)


def test_missing_tblite_names_the_extra(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_tblite(name, *args, **kwargs):
        if name.startswith("tblite"):
            raise ImportError("No module named 'tblite'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_tblite)
    with pytest.raises(molecules.MissingExtraError, match=r"tdn_theory\[qm\]") as info:
        molecules.generate_molecules("ethanol-gfn2", n_configs=2)
    assert "\n" not in str(info.value)


def test_start_geometries_are_the_named_molecules():
    ethanol = molecules.start_geometry("ethanol")
    assert sorted(ethanol.get_chemical_symbols()) == sorted("CCOHHHHHH")
    mal = molecules.start_geometry("malonaldehyde")
    assert mal.get_chemical_formula() == "C3H4O2"
    h, a, b = molecules.MOLECULE_DATASETS["malonaldehyde-gfn2"].proton
    assert mal[h].symbol == "H" and mal[a].symbol == "O" and mal[b].symbol == "O"
    assert molecules.proton_side(mal.positions, (h, a, b), 1, 0.3) == 0  # on O_a at the start
    with pytest.raises(ValueError, match="unknown molecule"):
        molecules.start_geometry("benzene")


def test_proton_side_has_hysteresis():
    # O_a at x = 0, O_b at x = 2.5; the proton moves along x
    def side(x, previous):
        positions = np.array([[x, 0.0, 0.0], [0.0, 0.0, 0.0], [2.5, 0.0, 0.0]])
        return molecules.proton_side(positions, (0, 1, 2), previous, 0.3)

    assert side(1.0, 0) == 0 and side(1.0, 1) == 0  # clearly on O_a
    assert side(1.5, 1) == 1 and side(1.5, 0) == 1  # clearly on O_b (1.0 vs 1.5 from O_a)
    assert side(1.3, 0) == 0 and side(1.3, 1) == 1  # within the hysteresis band: unchanged


def test_generation_is_deterministic_labelled_and_records_trajectories():
    pytest.importorskip("tblite")
    recipe = _tiny_recipe("malonaldehyde-gfn2")
    a = molecules.generate_molecules("malonaldehyde-gfn2", n_configs=3, seed=5, recipe=recipe)
    b = molecules.generate_molecules("malonaldehyde-gfn2", n_configs=3, seed=5, recipe=recipe)
    c = molecules.generate_molecules("malonaldehyde-gfn2", n_configs=3, seed=6, recipe=recipe)
    assert [x.info["trajectory"] for x in a] == [0, 0, 1]
    # bit-identical only with OMP_NUM_THREADS=1 (module docstring): with several OpenMP threads
    # tblite's reductions differ in the last bits, which this short MD keeps at rounding level
    for x, y in zip(a, b, strict=True):
        np.testing.assert_allclose(x.positions, y.positions, rtol=0, atol=1e-9)
        np.testing.assert_allclose(x.calc.results["dipole"], y.calc.results["dipole"], atol=1e-9)
    assert not np.allclose(a[0].positions, c[0].positions)
    fresh = a[1].copy()
    fresh.calc = molecules.tblite_calculator(method="GFN2-xTB", accuracy=0.01)
    assert a[1].get_potential_energy() == pytest.approx(fresh.get_potential_energy(), abs=1e-8)
    np.testing.assert_allclose(a[1].get_forces(), fresh.get_forces(), atol=1e-7)
    np.testing.assert_allclose(a[1].calc.results["dipole"], fresh.get_dipole_moment(), atol=1e-7)
    summary = molecules.proton_transfer_summary(a)
    assert summary["snapshots_side_0"] + summary["snapshots_side_1"] == 3
    assert summary["md_transfers"] >= summary["snapshot_side_changes"] >= 0


def test_named_set_is_cached_with_its_recipe(tmp_path, monkeypatch):
    pytest.importorskip("tblite")
    monkeypatch.setenv("TDN_THEORY_CACHE", str(tmp_path / "cache"))
    monkeypatch.setitem(
        data.DATASETS, "malonaldehyde-gfn2", _tiny_recipe("malonaldehyde-gfn2")
    )  # the cache key holds the recipe: a tiny recipe is its own entry
    path = data.dataset_path("malonaldehyde-gfn2", n_configs=2, seed=1)
    meta = json.loads(path.with_suffix(".json").read_text())
    assert meta["recipe"]["equilibration_steps"] == 10 and "tblite_version" in meta
    configs = data.load_dataset("malonaldehyde-gfn2", n_configs=2, seed=1)
    assert [len(x) for x in configs] == [9, 9]
    assert all(x.calc.results["dipole"].shape == (3,) for x in configs)
    assert all("proton_side" in x.info and "trajectory" in x.info for x in configs)


def _labelled(n: int, trajectory_of=lambda k: k // 3) -> list:
    configs = []
    for k in range(n):
        atoms = Atoms("H2", positions=[[0, 0, 0], [0, 0, 0.7 + 0.01 * k]])
        atoms.calc = SinglePointCalculator(
            atoms, energy=-1.0 - k, forces=np.full((2, 3), 0.1 * k), dipole=np.array([k, 0, 1.0])
        )
        atoms.info["trajectory"] = trajectory_of(k)
        configs.append(atoms)
    return configs


def test_split_trajectories_holds_out_whole_trajectories():
    configs = _labelled(30)  # 10 trajectories of 3
    train, val, test = data.split_trajectories(configs, seed=2)
    groups = [{a.info["trajectory"] for a in part} for part in (train, val, test)]
    assert [len(g) for g in groups] == [8, 1, 1]
    assert not (groups[0] & groups[1] or groups[0] & groups[2] or groups[1] & groups[2])
    assert len(train) + len(val) + len(test) == 30
    assert data.split_trajectories(configs, seed=2) == (train, val, test)
    assert data.split_trajectories(configs, seed=3) != (train, val, test)
    with pytest.raises(ValueError, match="2 trajectories cannot give three"):
        data.split_trajectories(_labelled(6), seed=0)
    del configs[4].info["trajectory"]
    with pytest.raises(ValueError, match="configuration 4 has no info"):
        data.split_trajectories(configs)


def test_labels_by_key_and_a_named_key_wins(tmp_path):
    configs = _labelled(3)
    path = data.write_extxyz(tmp_path / "ref.extxyz", configs)
    text = path.read_text()
    assert "REF_energy" in text and "REF_forces" in text and "REF_dipole" in text
    with pytest.raises(ValueError, match="has no energy under 'energy'"):
        data.read_extxyz(path)
    back = data.read_extxyz(
        path, energy_key="REF_energy", forces_key="REF_forces", dipole_key="REF_dipole"
    )
    for x, y in zip(configs, back, strict=True):
        assert y.get_potential_energy() == x.get_potential_energy()
        np.testing.assert_array_equal(y.get_forces(), x.get_forces())
        np.testing.assert_array_equal(y.calc.results["dipole"], x.calc.results["dipole"])
        assert y.info["trajectory"] == x.info["trajectory"]
    # a file with calculator results AND REF_ keys: the named key wins
    both = []
    for atoms in configs:
        frame = atoms.copy()
        frame.calc = SinglePointCalculator(frame, energy=123.0, forces=np.zeros((2, 3)))
        frame.info["REF_energy"] = atoms.get_potential_energy()
        frame.arrays["REF_forces"] = atoms.get_forces()
        both.append(frame)
    mixed = tmp_path / "both.extxyz"
    write(mixed, both, format="extxyz")
    named = data.read_extxyz(mixed, energy_key="REF_energy", forces_key="REF_forces")
    assert [a.get_potential_energy() for a in named] == [-1.0, -2.0, -3.0]
    assert named[2].get_forces()[0, 0] == pytest.approx(0.2)
    default = data.read_extxyz(mixed)
    assert [a.get_potential_energy() for a in default] == [123.0] * 3
    assert "dipole" not in default[0].calc.results  # optional, absent under "dipole"


def test_bad_dipole_is_refused(tmp_path):
    atoms = _labelled(1)[0]
    frame = atoms.copy()
    frame.calc = SinglePointCalculator(frame, energy=1.0, forces=np.zeros((2, 3)))
    frame.info["REF_dipole"] = np.array([1.0, np.nan, 0.0])
    path = tmp_path / "bad.extxyz"
    write(path, [frame], format="extxyz")
    with pytest.raises(ValueError, match="dipole under 'REF_dipole' must be 3 finite numbers"):
        data.read_extxyz(path, dipole_key="REF_dipole")


@pytest.fixture(scope="module")
def small_ethanol(tmp_path_factory):
    """The named set ethanol-gfn2 with a short protocol (4 trajectories of 3 snapshots) in a
    fresh cache: what `--data ethanol-gfn2 --n-configs 12` reads while the fixture is active."""
    pytest.importorskip("tblite")
    small = dataclasses.replace(
        molecules.MOLECULE_DATASETS["ethanol-gfn2"],
        equilibration_steps=100,
        snapshot_every=20,
        snapshots_per_trajectory=3,
    )
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TDN_THEORY_CACHE", str(tmp_path_factory.mktemp("cache")))
        patch.setitem(data.DATASETS, "ethanol-gfn2", small)
        yield data.load_dataset("ethanol-gfn2", n_configs=12, seed=0)


def test_cli_trains_ethanol_with_a_dipole_head_the_calculator_serves(
    small_ethanol, tmp_path, capsys
):
    from tdn_theory.models import TDNCalculator, load_potential
    from tdn_theory.train_potential import main

    out = tmp_path / "model.pt"
    argv = ["--data", "ethanol-gfn2", "--n-configs", "12", "--backend", "cp", "--L", "2"]
    argv += ["--rank", "28", "--dipole-weight", "1", "--epochs", "2", "--channels", "4"]
    argv += ["--layers", "1", "--rotations", "2", "--split", "trajectory", "--out", str(out)]
    assert main([*argv, "--json", "--quiet"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["n_train"] == 6 and report["n_val"] == 3 and report["n_test"] == 3
    assert report["test_dipole_mae_eA"] > 0 and report["dipole_spread_eA"] > 0
    assert report["test_energy_mae_kcal_per_mol"] == pytest.approx(
        report["test_energy_mae_mev_per_structure"] / 43.364, rel=1e-4
    )
    assert report["dipole_rotation_error_eA"] > 0  # CP at 7L^2 is not exactly equivariant
    model, info = load_potential(out, expect={"backend": "cp", "rank": 28, "dipole": True})
    assert info["split"] == "trajectory"
    atoms = small_ethanol[0].copy()
    atoms.calc = TDNCalculator(model)
    assert np.isfinite(atoms.get_potential_energy())
    assert atoms.get_forces().shape == (9, 3)
    assert atoms.get_dipole_moment().shape == (3,)


def test_cli_trains_on_mace_style_keys(small_ethanol, tmp_path, capsys):
    from tdn_theory.train_potential import main

    path = data.write_extxyz(tmp_path / "ref.extxyz", small_ethanol)
    base = ["--data", str(path), "--backend", "dense", "--L", "1", "--channels", "4"]
    base += ["--layers", "1", "--epochs", "1", "--rotations", "1", "--out", str(tmp_path / "m.pt")]
    assert main([*base, "--quiet"]) == 2
    assert "has no energy under 'energy'" in capsys.readouterr().err
    keys = ["--energy-key", "REF_energy", "--forces-key", "REF_forces"]
    keys += ["--dipole-key", "REF_dipole", "--dipole-weight", "0.5"]
    assert main([*base, *keys, "--json", "--quiet"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["test_dipole_mae_eA"] > 0 and report["dipole_rotation_error_eA"] < 1e-10
    assert main([*base, "--energy-key", "a b"]) == 2
    err = capsys.readouterr().err
    assert "--energy-key must be a plain key name" in err and err.count("\n") == 1
