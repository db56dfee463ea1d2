"""The dipole head (tdn_theory.models.dipole), its training, checkpoints and calculator; residual
reference energies."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.calculators.calculator import PropertyNotImplementedError
from ase.calculators.singlepoint import SinglePointCalculator
from scipy.spatial.transform import Rotation

from tdn_theory.models import TDNCalculator, TDNPotential, load_potential, save_potential
from tdn_theory.models.train import (
    TrainSettings,
    collate,
    errors,
    fit_reference_energies,
    predict_all,
    symmetry_errors,
    train,
)


def _molecule(seed: int) -> Atoms:
    rng = np.random.default_rng(seed)
    base = np.array(
        [[0, 0, 0], [1.4, 0.1, 0], [2.0, 1.2, 0.2], [-0.6, 0.9, 0.3], [-0.5, -0.9, 0.2]], float
    )
    atoms = Atoms("COHHH", positions=base + 0.1 * rng.standard_normal(base.shape))
    q = np.array([0.2, -0.5, 0.1, 0.1, 0.1])  # per species: learnable
    dipole = (q[:, None] * atoms.positions).sum(0)
    atoms.calc = SinglePointCalculator(
        atoms,
        energy=-10.0 + float(rng.normal()),
        forces=0.1 * rng.standard_normal((5, 3)),
        dipole=dipole,
    )
    return atoms


def _model(backend="dense", parity="all", dipole=True, **kw) -> TDNPotential:
    return TDNPotential(
        ["H", "C", "O"], 2, 4, 2, 3.0, backend=backend, parity=parity, seed=1, dipole=dipole, **kw
    )


@pytest.mark.parametrize("parity", ["all", "even"])
def test_dipole_of_exact_backends_rotates_and_translates_exactly(parity):
    model = _model(parity=parity)
    atoms = _molecule(0)
    mu = model.run(atoms.positions, atoms.numbers)["dipole"].detach().numpy()
    assert np.linalg.norm(mu) > 1e-3
    for R in Rotation.random(3, random_state=4).as_matrix():
        rotated = model.run(atoms.positions @ R.T + [1.0, -2.0, 0.5], atoms.numbers)["dipole"]
        np.testing.assert_allclose(rotated.detach().numpy(), R @ mu, atol=1e-10)
    out = model.run(atoms.positions, atoms.numbers)
    assert abs(float(out["charges"].detach().sum())) < 1e-12  # neutral


def test_even_parity_dipole_is_mirror_equivariant():
    model = _model(parity="even")
    atoms = _molecule(1)
    mu = model.run(atoms.positions, atoms.numbers)["dipole"].detach().numpy()
    mirrored = model.run(-atoms.positions, atoms.numbers)["dipole"].detach().numpy()
    np.testing.assert_allclose(mirrored, -mu, atol=1e-10)


def test_batched_dipoles_equal_single_structure_dipoles():
    model = _model()
    configs = [_molecule(k) for k in range(3)]
    batch = collate(model, configs)
    out = predict_all(model, batch)
    for k, atoms in enumerate(configs):
        single = model.run(atoms.positions, atoms.numbers)["dipole"]
        torch.testing.assert_close(out["dipole"][k], single, atol=1e-12, rtol=0)
    np.testing.assert_allclose(
        batch.dipole.numpy(), [a.calc.results["dipole"] for a in configs], atol=0
    )


def test_the_head_leaves_the_rest_of_the_initialisation_unchanged():
    with_head, without = _model(dipole=True), _model(dipole=False)
    plain = without.state_dict()
    for name, value in with_head.state_dict().items():
        if name.startswith("dipole_head."):
            assert name not in plain
        else:
            torch.testing.assert_close(value, plain[name], atol=0, rtol=0)


def test_residual_reference_energies_centre_the_initial_model():
    configs = [_molecule(k) for k in range(6)]
    model = _model(dipole=False)
    fit_reference_energies(model, configs)
    batch = collate(model, configs)
    with torch.no_grad():
        energies = predict_all(model, batch, forces=False)["energy"].numpy()
    reference = np.array([a.get_potential_energy() for a in configs])
    # one composition: the fitted references absorb the mean residual of the untrained network
    assert abs((energies - reference).mean()) < 1e-10
    mae = errors(model, configs)
    assert mae["energy_mae_mev_per_structure"] == pytest.approx(
        1e3 * np.abs(energies - reference).mean(), rel=1e-8
    )
    assert mae["energy_mae_mev_per_atom"] == pytest.approx(mae["energy_mae_mev_per_structure"] / 5)
    # 1 kcal/mol = 43.364 meV
    assert mae["energy_mae_kcal_per_mol"] == pytest.approx(
        mae["energy_mae_mev_per_structure"] / 43.364, rel=1e-4
    )


def test_training_on_dipoles_lowers_the_dipole_error_and_checkpoints_keep_the_head(tmp_path):
    configs = [_molecule(k) for k in range(10)]
    model = _model()
    before = errors(model, configs[8:])["dipole_mae_eA"]
    settings = TrainSettings(
        epochs=15, batch_size=4, lr=2e-2, energy_weight=0, force_weight=0, dipole_weight=1
    )
    result = train(model, configs[:8], configs[8:], settings)
    after = errors(model, configs[8:])
    assert after["dipole_mae_eA"] < 0.5 * before
    assert "val_dipole_mae_eA" in result.history[0]
    assert after["dipole_mae_debye"] == pytest.approx(4.803204 * after["dipole_mae_eA"])
    path = save_potential(tmp_path / "m.pt", model)
    loaded, _ = load_potential(path, expect={"dipole": True})
    atoms = configs[9].copy()
    atoms.calc = TDNCalculator(loaded)
    mu = atoms.get_dipole_moment()
    expected = model.run(atoms.positions, atoms.numbers)["dipole"].detach().numpy()
    np.testing.assert_allclose(mu, expected, atol=1e-12)
    sym = symmetry_errors(loaded, configs[8:9], rotations=2, iterations=4)
    assert sym["dipole_rotation_error_eA"] < 1e-10
    assert sym["force_equivariance_worst_found"] < 1e-9


def test_dipole_training_needs_the_head_and_the_labels():
    configs = [_molecule(k) for k in range(4)]
    settings = TrainSettings(epochs=1, dipole_weight=1.0)
    with pytest.raises(ValueError, match="needs a model with the dipole head"):
        train(_model(dipole=False), configs[:2], configs[2:], settings)
    unlabelled = configs[0].copy()
    unlabelled.calc = SinglePointCalculator(unlabelled, energy=0.0, forces=np.zeros((5, 3)))
    with pytest.raises(ValueError, match="training configuration 1 has no dipole"):
        train(_model(), [configs[1], unlabelled], configs[2:], settings)


def test_calculator_without_head_refuses_the_dipole():
    atoms = _molecule(2)
    atoms.calc = TDNCalculator(_model(dipole=False))
    assert np.isfinite(atoms.get_potential_energy())
    with pytest.raises(PropertyNotImplementedError, match="no dipole head"):
        atoms.get_dipole_moment()


def test_periodic_cell_gives_stress_and_dipole_together():
    """The calculator's stress path (one strained backward pass) also serves the dipole head, and
    training on stresses and dipoles at once uses one prediction with both outputs."""
    from tdn_theory.models.stress import energy_forces_stress
    from tdn_theory.models.train import predict_stress

    atoms = _molecule(3)
    atoms.cell = np.diag([6.0, 6.5, 7.0]) + 0.3 * np.eye(3)[[1, 2, 0]]
    atoms.pbc = True
    model = _model()
    atoms.calc = TDNCalculator(model)
    stress, mu = atoms.get_stress(), atoms.get_dipole_moment()
    args = (atoms.positions, atoms.numbers, np.asarray(atoms.cell), atoms.pbc)
    expected_mu = model.run(*args)["dipole"].detach().numpy()
    np.testing.assert_allclose(mu, expected_mu, atol=1e-12)
    _, forces, sigma = energy_forces_stress(model, *args)
    np.testing.assert_allclose(atoms.get_forces(), forces.numpy(), atol=1e-12)
    batch = collate(model, [atoms])
    out = predict_all(model, batch, stress=True)
    np.testing.assert_allclose(out["dipole"][0].detach().numpy(), expected_mu, atol=1e-12)
    np.testing.assert_allclose(out["stress"][0].detach().numpy(), sigma.numpy(), atol=1e-12)
    e, f, s = predict_stress(model, batch)
    assert torch.equal(s, out["stress"]) and torch.equal(f, out["forces"])
    from tdn_theory.models.stress import to_voigt

    np.testing.assert_allclose(stress, to_voigt(sigma.double().numpy()), atol=1e-12)
