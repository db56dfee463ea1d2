"""Stress and virial of a TDN potential (tdn_theory.models.stress), its calculator, training on
stresses, the data-derived avg_neighbors, and a cell relaxation with a trained model."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import bulk
from ase.calculators.calculator import PropertyNotImplementedError
from ase.calculators.emt import EMT
from ase.calculators.fd import calculate_numerical_stress
from ase.calculators.singlepoint import SinglePointCalculator
from ase.io import write
from scipy.spatial.transform import Rotation

from tdn_theory.models import TDNCalculator, TDNPotential, average_neighbors, data
from tdn_theory.models.checkpoint import _digest, load_potential, save_potential
from tdn_theory.models.stress import (
    StressUndefinedError,
    energy_forces_stress,
    stress_from_virial,
    to_voigt,
    voigt_to_matrix,
)
from tdn_theory.models.train import TrainSettings, collate, errors, predict_stress, train

FACTORS = Path(__file__).resolve().parent.parent / "experiments/results/factors"
BACKENDS = [
    ("dense", {}),
    ("e3nn", {}),
    ("sphere", {}),
    ("cp", {"factors": FACTORS / "exact_unit_all_L1.npz"}),
]


def _triclinic(seed: int = 0) -> Atoms:
    """A 4-atom Cu-Au cell, skewed (angles far from 90 degrees) and rattled."""
    rng = np.random.default_rng(seed)
    atoms = bulk("Cu", "fcc", a=3.7, cubic=True)
    atoms[1].symbol = "Au"
    skew = np.array([[1.0, 0.0, 0.0], [0.35, 0.95, 0.0], [0.2, -0.3, 1.05]])
    atoms.set_cell(skew @ atoms.cell[:], scale_atoms=True)
    atoms.positions += 0.1 * rng.standard_normal(atoms.positions.shape)
    return atoms


def _model(backend="dense", dtype=torch.float64, **kwargs):
    options = {"L": 1, "channels": 4, "layers": 2, "cutoff": 4.0, "seed": 1} | kwargs
    return TDNPotential(["Cu", "Au"], backend=backend, dtype=dtype, **options)


@pytest.mark.parametrize(("backend", "options"), BACKENDS)
def test_stress_equals_ase_finite_differences_on_a_skewed_triclinic_cell(backend, options):
    atoms = _triclinic()
    angles = atoms.cell.cellpar()[3:]
    assert np.all(np.abs(angles - 90) > 10)
    atoms.calc = TDNCalculator(_model(backend, **options))
    stress = atoms.get_stress()
    numerical = calculate_numerical_stress(atoms, eps=1e-5)
    assert stress.shape == (6,) and np.abs(stress).max() > 1e-4
    assert np.abs(stress - numerical).max() <= 1e-6 * np.abs(numerical).max()


@pytest.mark.parametrize(("backend", "options"), BACKENDS)
def test_float32_stress_agrees_with_float64(backend, options):
    atoms = _triclinic(1)
    model = _model(backend, **options)
    atoms.calc = TDNCalculator(model)
    reference = atoms.get_stress()
    atoms.calc = TDNCalculator(model.float())
    single = atoms.get_stress()
    assert single.dtype == np.float64
    assert np.abs(single - reference).max() <= 1e-4 * np.abs(reference).max()


@pytest.mark.parametrize("backend", ["dense", "e3nn", "sphere"])
def test_stress_rotates_as_r_sigma_rt_for_exact_backends(backend):
    atoms = _triclinic(2)
    model = _model(backend)
    args = (atoms.get_atomic_numbers(),)
    pos, cell = atoms.get_positions(), np.asarray(atoms.cell)
    sigma = energy_forces_stress(model, pos, *args, cell, True)[2].numpy()
    for R in Rotation.random(3, random_state=0).as_matrix():
        rotated = energy_forces_stress(model, pos @ R.T, *args, cell @ R.T, True)[2].numpy()
        assert np.linalg.norm(rotated - R @ sigma @ R.T) <= 1e-10 * np.linalg.norm(sigma)


def test_stress_of_a_non_periodic_structure_is_one_clear_error():
    atoms = _triclinic()
    model = _model()
    cell = np.asarray(atoms.cell)
    with pytest.raises(StressUndefinedError, match="needs a periodic structure"):
        energy_forces_stress(model, atoms.positions, atoms.numbers, cell, False)
    # the virial is defined for any structure; for a periodic one it is -sigma V
    _, _, virial = energy_forces_stress(
        model, atoms.positions, atoms.numbers, cell, True, virial=True
    )
    _, _, sigma = energy_forces_stress(model, atoms.positions, atoms.numbers, cell, True)
    torch.testing.assert_close(virial, -sigma * atoms.get_volume(), rtol=1e-12, atol=0)
    atoms.pbc = False
    atoms.calc = TDNCalculator(model)
    assert np.isfinite(atoms.get_potential_energy()) and atoms.get_forces().shape == (4, 3)
    with pytest.raises(PropertyNotImplementedError, match="needs a periodic structure"):
        atoms.get_stress()


def test_voigt_and_virial_conversions():
    m = np.array([[1.0, 6, 5], [6, 2, 4], [5, 4, 3]])
    np.testing.assert_array_equal(to_voigt(m), [1, 2, 3, 4, 5, 6])
    np.testing.assert_array_equal(voigt_to_matrix([1, 2, 3, 4, 5, 6]), m)
    np.testing.assert_array_equal(voigt_to_matrix(m.ravel()), m)
    np.testing.assert_allclose(stress_from_virial(m, 2 * np.eye(3)), -m / 8)
    with pytest.raises(ValueError, match="6 \\(Voigt\\), 9 or 3 x 3"):
        voigt_to_matrix([1, 2, 3])


def test_reader_takes_stress_and_converts_virials(tmp_path):
    atoms = _triclinic()
    atoms.calc = EMT()
    sigma = atoms.get_stress()
    labels = {"REF_energy": atoms.get_potential_energy()}
    plain = atoms.copy()
    plain.info.update(
        labels, REF_stress=sigma, REF_virials=-voigt_to_matrix(sigma).ravel() * atoms.get_volume()
    )
    plain.arrays["REF_forces"] = atoms.get_forces()
    path = tmp_path / "ref.extxyz"
    write(path, plain, format="extxyz")
    keys = {"energy_key": "REF_energy", "forces_key": "REF_forces"}
    (a,) = data.read_extxyz(path, **keys, stress_key="REF_stress")
    (b,) = data.read_extxyz(path, **keys, virials_key="REF_virials")
    np.testing.assert_allclose(a.get_stress(), sigma, atol=1e-12)
    np.testing.assert_allclose(b.get_stress(), sigma, atol=1e-12)
    with pytest.raises(ValueError, match="has no virial"):
        data.read_extxyz(path, **keys, virials_key="virial")


@pytest.fixture(scope="module")
def configs(tmp_path_factory):
    cache = tmp_path_factory.mktemp("cache")
    old = os.environ.get("TDN_THEORY_CACHE")
    os.environ["TDN_THEORY_CACHE"] = str(cache)
    try:
        yield data.load_dataset("cuau-fcc", n_configs=12, seed=0)
    finally:
        if old is None:
            del os.environ["TDN_THEORY_CACHE"]
        else:
            os.environ["TDN_THEORY_CACHE"] = old


def test_emt_sets_store_the_stress_under_a_new_cache_key(configs):
    assert data.GENERATOR_VERSION >= 2
    assert data._key("cuau-fcc", 12, 0)["generator_version"] == data.GENERATOR_VERSION
    fresh = configs[0].copy()
    fresh.calc = EMT()
    np.testing.assert_allclose(configs[0].get_stress(), fresh.get_stress(), atol=1e-6)


def test_batched_stress_equals_one_structure_at_a_time(configs):
    model = _model(layers=1)
    batch = collate(model, configs[:3])
    assert bool(batch.has_stress.all())
    _, _, stress = predict_stress(model, batch)
    for s, atoms in enumerate(configs[:3]):
        _, _, one = energy_forces_stress(
            model, atoms.positions, atoms.numbers, np.asarray(atoms.cell), atoms.pbc
        )
        torch.testing.assert_close(stress[s], one, atol=1e-12, rtol=1e-9)


def test_average_neighbors_counts_fcc_shells():
    atoms = bulk("Cu", "fcc", a=3.6, cubic=True)
    # first shell 12 at a/sqrt2 = 2.55 Å, second 6 at a = 3.6 Å
    assert average_neighbors([atoms], 3.0) == 12
    assert average_neighbors([atoms, atoms.repeat(2)], 4.0) == 18
    with pytest.raises(ValueError, match="at least one configuration"):
        average_neighbors([], 3.0)


def test_a_checkpoint_without_avg_neighbors_loads_with_the_fixed_value(tmp_path):
    path = save_potential(tmp_path / "m.pt", _model(avg_neighbors=22.4))
    assert load_potential(path)[0].avg_neighbors == 22.4
    payload = torch.load(path, weights_only=True)
    del payload["model"]["avg_neighbors"]  # as written before avg_neighbors was stored
    payload["sha256"] = _digest(payload["model"], payload["info"], payload["state"])
    torch.save(payload, path)
    assert load_potential(path)[0].avg_neighbors == 12.0


def test_training_on_stress_then_a_cell_relaxation_lowers_energy_and_stress(configs):
    from ase.filters import FrechetCellFilter
    from ase.optimize import FIRE

    train_set, val_set, test_set = data.split(configs, seed=0)
    model = _model(layers=1, channels=8, avg_neighbors=average_neighbors(train_set, 4.0))
    unlabelled = []
    for atoms in train_set[:2]:
        copy = atoms.copy()
        copy.calc = SinglePointCalculator(
            copy, energy=atoms.get_potential_energy(), forces=atoms.get_forces()
        )
        unlabelled.append(copy)
    with pytest.raises(ValueError, match="no training configuration is periodic with a stress"):
        train(model, unlabelled, val_set, TrainSettings(stress_weight=1.0))
    before = errors(model, test_set)["stress_mae_mev_per_A3"]
    settings = TrainSettings(epochs=6, lr=1e-2, batch_size=2, stress_weight=100.0)
    result = train(model, train_set, val_set, settings)
    assert "val_stress_mae_mev_per_A3" in result.history[0]
    assert errors(model, test_set)["stress_mae_mev_per_A3"] < before

    atoms = bulk("Cu", "fcc", a=3.8, cubic=True)
    atoms[1].symbol = atoms[2].symbol = "Au"
    atoms.set_cell(atoms.cell[:] @ np.diag([1.04, 0.98, 1.0]), scale_atoms=True)
    atoms.calc = TDNCalculator(model)
    e0, s0 = atoms.get_potential_energy(), np.abs(atoms.get_stress()).max()
    FIRE(FrechetCellFilter(atoms), logfile=None).run(fmax=1e-3, steps=60)
    assert atoms.get_potential_energy() < e0
    assert np.abs(atoms.get_stress()).max() < 0.5 * s0


def test_cli_trains_on_stress_and_stores_avg_neighbors(configs, tmp_path, capsys):
    from tdn_theory.train_potential import main

    out = tmp_path / "model.pt"
    argv = ["--data", "cuau-fcc", "--n-configs", "12", "--backend", "dense", "--L", "1"]
    argv += ["--channels", "4", "--layers", "1", "--cutoff", "4.0", "--epochs", "1"]
    argv += ["--rotations", "1", "--stress-weight", "10", "--out", str(out), "--json", "--quiet"]
    assert main(argv) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["test_stress_mae_mev_per_A3"] > 0
    train_set = data.split(configs, seed=0)[0]
    model, info = load_potential(out)
    assert model.avg_neighbors == pytest.approx(average_neighbors(train_set, 4.0))
    assert info["train_settings"]["stress_weight"] == 10.0
    assert main([*argv[:-4], "--avg-neighbors", "0", "--out", str(out)]) == 2
    assert "--avg-neighbors must be a finite number > 0" in capsys.readouterr().err


def test_stress_labels_on_non_periodic_configs_are_left_out(configs):
    cluster = Atoms("Cu2", positions=[[0, 0, 0], [0, 0, 2.5]])
    cluster.calc = SinglePointCalculator(
        cluster, energy=0.0, forces=np.zeros((2, 3)), stress=np.ones(6)
    )
    model = _model(layers=1)
    batch = collate(model, [configs[0], cluster])
    assert batch.has_stress.tolist() == [True, False]
    model.zero_grad()
    from tdn_theory.models.train import _loss

    _loss(model, batch, TrainSettings(stress_weight=1.0), create_graph=True).backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
