"""EMT data sets and the extended-XYZ reader (tdn_theory.models.data)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from ase import Atoms
from ase.calculators.emt import EMT
from ase.calculators.singlepoint import SinglePointCalculator
from ase.io import write

from tdn_theory.models import data


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TDN_THEORY_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.mark.parametrize("name", sorted(data.EMT_DATASETS))
def test_generated_labels_are_emt_energies_and_forces(name, cache):
    configs = data.load_dataset(name, n_configs=4, seed=3)
    assert len(configs) == 4
    for atoms in configs:
        fresh = atoms.copy()
        fresh.calc = EMT()
        # extxyz stores 8 decimals (Å, eV/Å): the labels agree with EMT to that precision
        assert atoms.get_potential_energy() == pytest.approx(fresh.get_potential_energy(), abs=1e-6)
        np.testing.assert_allclose(atoms.get_forces(), fresh.get_forces(), atol=1e-6)
    sizes = {len(atoms) for atoms in configs}
    if name == "cuau-fcc":
        assert sizes == {32} and all(atoms.pbc.all() for atoms in configs)
    else:
        assert sizes <= {13, 19, 38, 39, 55} and not any(atoms.pbc.any() for atoms in configs)
    assert len(data.species_of(configs)) == 2


def test_generation_is_deterministic_for_a_seed_and_differs_between_seeds():
    a = data.generate_emt("cuau-fcc", n_configs=3, seed=7)
    b = data.generate_emt("cuau-fcc", n_configs=3, seed=7)
    c = data.generate_emt("cuau-fcc", n_configs=3, seed=8)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x.positions, y.positions)
        assert x.get_chemical_symbols() == y.get_chemical_symbols()
        np.testing.assert_array_equal(x.get_forces(), y.get_forces())
    assert not np.allclose(a[0].positions, c[0].positions)


def test_snapshots_of_one_trajectory_are_not_copies():
    configs = data.generate_emt("cuau-fcc", n_configs=2, seed=0)
    moved = np.linalg.norm(configs[1].positions - configs[0].positions, axis=1)
    assert moved.mean() > 0.05  # Å, 100 fs apart at >= 300 K


def test_cache_is_reused_and_a_tampered_file_is_regenerated(cache):
    path = data.dataset_path("cuau-fcc", n_configs=3, seed=2)
    original = path.read_bytes()
    stamp = path.stat().st_mtime_ns
    assert data.dataset_path("cuau-fcc", n_configs=3, seed=2) == path
    assert path.stat().st_mtime_ns == stamp  # read from the cache, not regenerated
    tampered = original.replace(b"Cu", b"Au", 1)
    assert tampered != original
    path.write_bytes(tampered)
    with pytest.warns(RuntimeWarning, match="SHA-256"):
        data.dataset_path("cuau-fcc", n_configs=3, seed=2)
    assert path.read_bytes() == original
    meta = json.loads(path.with_suffix(".json").read_text())
    assert meta["seed"] == 2 and meta["n_configs"] == 3


def test_extxyz_round_trip_through_ase_io(tmp_path):
    configs = data.generate_emt("agpd-cluster", n_configs=3, seed=1)
    path = tmp_path / "set.extxyz"
    write(path, configs, format="extxyz")
    back = data.read_extxyz(path, species=["Ag", "Pd"])
    assert len(back) == 3
    for x, y in zip(configs, back, strict=True):
        np.testing.assert_allclose(x.positions, y.positions, atol=1e-8)
        assert x.get_potential_energy() == pytest.approx(y.get_potential_energy(), abs=1e-8)
        np.testing.assert_allclose(x.get_forces(), y.get_forces(), atol=1e-8)


def test_reader_takes_labels_from_named_info_and_arrays(tmp_path):
    atoms = Atoms("Cu2", positions=[[0, 0, 0], [0, 0, 2.5]])
    atoms.info["REF_energy"] = -1.5
    atoms.arrays["REF_forces"] = np.array([[0.0, 0, 1], [0, 0, -1]])
    path = tmp_path / "ref.extxyz"
    write(path, atoms, format="extxyz")
    (back,) = data.read_extxyz(path, energy_key="REF_energy", forces_key="REF_forces")
    assert back.get_potential_energy() == -1.5
    np.testing.assert_array_equal(back.get_forces(), [[0, 0, 1], [0, 0, -1]])


def _write_one(path, *, energy=True, forces=True, symbols="Cu2"):
    atoms = Atoms(symbols, positions=[[0, 0, 0], [0, 0, 2.5]])
    results = {}
    if energy:
        results["energy"] = -1.0
    if forces:
        results["forces"] = np.zeros((2, 3))
    if results:
        atoms.calc = SinglePointCalculator(atoms, **results)
    write(path, atoms, format="extxyz")
    return path


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"energy": False}, "has no energy"),
        ({"forces": False}, "has no forces"),
        ({"symbols": "CuZn"}, r"elements \['Zn'\] outside"),
    ],
)
def test_reader_refuses_incomplete_files_with_one_line(tmp_path, kwargs, match):
    path = _write_one(tmp_path / "bad.extxyz", **kwargs)
    with pytest.raises(ValueError, match=match) as info:
        data.read_extxyz(path, species=["Cu", "Au"])
    assert "\n" not in str(info.value)


def test_reader_refuses_missing_and_garbage_files(tmp_path):
    with pytest.raises(ValueError, match="no such data file"):
        data.read_extxyz(tmp_path / "nothing.extxyz")
    garbage = tmp_path / "garbage.extxyz"
    garbage.write_text("this is not\nan xyz file\n")
    with pytest.raises(ValueError, match="not a readable extended-XYZ file"):
        data.read_extxyz(garbage)


def test_unknown_names_and_bad_parameters_are_refused():
    with pytest.raises(
        ValueError,
        match=r"cuzn: no such data file; .* \(agpd-cluster, cuau-fcc, ethanol-gfn2, malonaldehyde-gfn2\)",
    ):
        data.load_dataset("cuzn")
    with pytest.raises(ValueError, match="unknown data set 'cuzn'; named sets are agpd-cluster"):
        data.generate_emt("cuzn")
    with pytest.raises(ValueError, match="n_configs must be an integer >= 1"):
        data.dataset_path("cuau-fcc", n_configs=0)
    with pytest.raises(ValueError, match="seed must be an integer >= 0"):
        data.dataset_path("cuau-fcc", n_configs=2, seed=1.5)


def test_split_is_a_seeded_partition_and_refuses_empty_splits():
    items = list(range(20))
    train, val, test = data.split(items, seed=4)
    assert (len(train), len(val), len(test)) == (16, 2, 2)
    assert sorted(train + val + test) == items
    assert data.split(items, seed=4) == (train, val, test)
    assert data.split(items, seed=5) != (train, val, test)
    with pytest.raises(ValueError, match="empty split"):
        data.split(list(range(5)), seed=0)
