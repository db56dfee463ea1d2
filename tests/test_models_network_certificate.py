"""Theorem 2 of proofs/network_propagation.md: first order plus a proven second-order remainder.

Each test checks one step of the proof (named in the proof): Lemma 5 (rotating the configuration
is rotating the tensor), the gradients the expansion uses, the orbit bounds of the first-order
term (Lemma 8), the remainder bound, the a-priori feature bounds (Lemma 9), the whole certificate
at Haar and adversarial rotations, and the rounding refusal.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import bulk
from scipy.special import expit

from tdn_theory import so3
from tdn_theory.models import TDNPotential
from tdn_theory.models.network_bound import (
    BoundBelowRounding,
    adversarial_rotation,
    evaluate_bound,
    measure_defects,
)
from tdn_theory.models.network_linearised import linearised_quantities, tensor_forward
from tdn_theory.theory import network_second_order as so2
from tdn_theory.theory.measurements import project_invariant


def alloy() -> Atoms:
    atoms = bulk("Cu", "fcc", a=3.6, cubic=True) * (2, 1, 1)
    atoms.symbols[[0, 3, 5]] = "Au"
    atoms.rattle(0.15, seed=4)
    return atoms


def args(atoms: Atoms):
    return atoms.positions, atoms.numbers, np.asarray(atoms.cell), atoms.pbc


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    mp.setenv("TDN_THEORY_CACHE", str(tmp_path_factory.mktemp("cache")))
    yield
    mp.undo()


@pytest.fixture(scope="module")
def cp_model(cache):
    """L = 2, rank 7 L^2 = 28 (relative tensor error about 1 %), 3 layers."""
    return TDNPotential(["Cu", "Au"], 2, 3, 3, 4.0, "cp", rank=28, seed=3)


@pytest.fixture(scope="module")
def quantities(cp_model):
    return linearised_quantities(cp_model, *args(alloy()))


@pytest.fixture(scope="module")
def cert(cp_model):
    return evaluate_bound(cp_model, *args(alloy()))


def _prepared(model, atoms):
    return model.prepare(*args(atoms))


def _rotated_tensor(T: np.ndarray, R: np.ndarray, L: int) -> np.ndarray:
    D = so3.block_wigner_D(L, R)
    return np.einsum("ak,bi,cj,abc->kij", D, D, D, T)


def _energy_forces(model, atoms, X: np.ndarray):
    pos, cell, species, graph = _prepared(model, atoms)
    pos = pos.detach().requires_grad_(True)
    E = tensor_forward(model, pos, cell, species, graph, torch.as_tensor(X))["energy"]
    (g,) = torch.autograd.grad(E, pos)
    return float(E.detach()), -g.numpy()


def test_tensor_forward_is_the_model(cp_model):
    atoms = alloy()
    pos, cell, species, graph = _prepared(cp_model, atoms)
    with torch.no_grad():
        want = cp_model.evaluate(pos, cell, species, graph)["energy"]
        got = tensor_forward(cp_model, pos, cell, species, graph, cp_model.tp.dense_tensor())[
            "energy"
        ]
    assert float(got) == pytest.approx(float(want), rel=1e-12, abs=1e-12)


def test_rotating_the_configuration_is_rotating_the_tensor(cp_model):
    """Lemma 5: E(Rx; T_hat) = E(x; rho(R) T_hat) and F(Rx; T_hat) = R F(x; rho(R) T_hat)."""
    atoms = alloy()
    T_hat = cp_model.tp.dense_tensor().detach().numpy()
    for R in so3.random_rotations(3, seed=7):
        rot = atoms.copy()
        rot.positions = atoms.positions @ R.T
        rot.cell = np.asarray(atoms.cell) @ R.T
        E_rot, F_rot = cp_model.energy_and_forces(*args(rot))
        E_x, F_x = _energy_forces(cp_model, atoms, _rotated_tensor(T_hat, R, 2))
        assert float(E_rot.detach()) == pytest.approx(E_x, rel=1e-11, abs=1e-11)
        np.testing.assert_allclose(F_rot.detach().numpy(), F_x @ R.T, atol=1e-10)
        E0, _ = cp_model.energy_and_forces(*args(atoms))
        assert abs(float(E_rot.detach()) - float(E0.detach())) > 1e-9  # a real defect


def test_tensor_gradients_match_finite_differences(cp_model, quantities):
    """Gamma = dE/dX and dF/dX (used in the first-order term) against central differences."""
    atoms = alloy()
    q = quantities
    rng = np.random.default_rng(0)
    direction = rng.standard_normal(q.T_hat.shape)
    tau = 1e-5
    Ep, Fp = _energy_forces(cp_model, atoms, q.T_hat + tau * direction)
    Em, Fm = _energy_forces(cp_model, atoms, q.T_hat - tau * direction)
    assert (Ep - Em) / (2 * tau) == pytest.approx(
        np.sum(q.energy_grad_tensor * direction), rel=1e-6
    )
    fd = ((Fp - Fm) / (2 * tau)).reshape(-1)
    np.testing.assert_allclose(
        fd, q.force_grad_tensor.reshape(len(fd), -1) @ direction.reshape(-1), atol=1e-6
    )


def test_linear_term_plus_remainder_bound_covers_the_defect(cp_model, quantities):
    """ΔE(R) - <Gamma, Delta_R> and ΔF(R) - (dF/dX) Delta_R stay within the remainder bounds."""
    atoms = alloy()
    q = quantities
    c = so2.certificate(q, grid=False)
    E0, F0 = _energy_forces(cp_model, atoms, q.T_hat)
    worst = []
    for R in so3.random_rotations(6, seed=11):
        XR = _rotated_tensor(q.T_hat, R, 2)
        E, F = _energy_forces(cp_model, atoms, XR)
        delta = (XR - q.T_hat).reshape(-1)
        rem_E = abs(E - E0 - q.energy_grad_tensor.reshape(-1) @ delta)
        rem_F = np.linalg.norm(
            (F - F0).reshape(-1) - q.force_grad_tensor.reshape(len(q.forces), -1) @ delta
        )
        assert rem_E <= c.energy_remainder
        assert rem_F <= np.linalg.norm(c.force_remainder)
        worst.append(rem_E / c.energy_remainder)
    assert max(worst) > 1e-4  # the remainder bound is not vacuous by orders of magnitude


def test_orbit_bounds_of_the_first_order_term(quantities):
    """Lemma 8: the grid bound (Bernstein) and the Cauchy-Schwarz bound both dominate the linear
    term at sampled rotations; the grid bound is within 1 / (1 - kappa) of the grid maximum."""
    q = quantities
    L = 2
    Q = q.T_hat - project_invariant(q.T_hat, L)
    G = q.energy_grad_tensor[None]
    ub, gmax, _, _ = so2.orbit_grid_bound(G, Q, L, np.zeros(1, int), kappa=0.25)
    GQ, op = so2.first_order_orbit_bound(G, Q, L)
    cs = abs(GQ[0]) + op * np.linalg.norm(Q)
    Rs = so3.random_rotations(300, seed=5)
    D = so3.block_wigner_D(L, Rs)
    rotated = np.einsum("nak,nbi,ncj,abc->nkij", D, D, D, Q)
    samples = np.abs(np.einsum("kij,nkij->n", G[0], rotated) - np.sum(G[0] * Q))
    assert samples.max() <= ub[0] and samples.max() <= cs
    assert samples.max() <= gmax[0] * (1 + 1e-9) / (1 - 0.25)
    assert ub[0] < cs  # the grid bound is the sharper one here


def test_certificate_holds_at_haar_and_adversarial_rotations(cp_model, cert):
    atoms = alloy()
    lipschitz = evaluate_bound(cp_model, *args(atoms), method="lipschitz")
    Rs = so3.random_rotations(6, seed=1)
    measured = measure_defects(cp_model, *args(atoms), rotations=Rs)
    worst = Rs[int(np.argmax(measured["forces"]))]
    R, force = adversarial_rotation(cp_model, *args(atoms), start=worst, iterations=15)
    adv = measure_defects(cp_model, *args(atoms), rotations=R[None])
    for m in (measured, adv):
        assert np.all(m["energy"] <= cert.energy)
        assert np.all(m["forces"] <= cert.force_total)
        assert np.all(m["features"] <= cert.feature_total[None] * (1 + 1e-9))  # Lemma 9
    assert cert.force_total < lipschitz.force_total and cert.energy < lipschitz.energy
    # tight: within 30x of the worst found here
    assert cert.force_total <= 30 * max(measured["forces"].max(), force)
    assert cert.energy <= 30 * max(measured["energy"].max(), adv["energy"][0])
    # the estimate is reported beside the bound and is not larger than it
    assert 0 < cert.energy_estimate <= cert.energy and 0 < cert.force_estimate <= cert.force_total


def test_exact_and_float32_models_never_print_a_non_certificate(cp_model):
    """Rounding: exact (dense), near-exact (parity "even" rank 28 = the exact rank-19 fit padded
    with zeros) and float32 models refuse rather than print a bound rounding could exceed."""
    atoms = alloy()
    dense = TDNPotential(["Cu", "Au"], 2, 3, 3, 4.0, "dense", seed=3)
    assert evaluate_bound(dense, *args(atoms), method="lipschitz").energy == 0
    even = TDNPotential(["Cu", "Au"], 2, 3, 3, 4.0, "cp", rank=28, parity="even", seed=3)
    for model in (dense, even):
        with pytest.raises(BoundBelowRounding, match="rounding"):
            evaluate_bound(model, *args(atoms))
    single = TDNPotential(["Cu", "Au"], 2, 3, 3, 4.0, "cp", rank=28, seed=3, dtype=torch.float32)
    try:
        b = evaluate_bound(single, *args(atoms))
    except BoundBelowRounding:
        return
    m = measure_defects(single, *args(atoms), rotations=so3.random_rotations(4, seed=2))
    assert np.all(m["energy"] <= b.energy) and np.all(m["forces"] <= b.force_total)


def test_unknown_method_is_refused(cp_model):
    with pytest.raises(ValueError, match="method"):
        evaluate_bound(cp_model, *args(alloy()), method="taylor")


def test_third_derivative_constants():
    x = np.linspace(-30, 30, 600001)
    s = expit(x)
    ds = s * (1 - s)
    sig2 = ds * (1 - 2 * s)
    sig3 = ds * (1 - 6 * s + 6 * s * s)
    silu3 = 3 * sig2 + x * sig3
    assert np.abs(sig3).max() <= so2.SIGMOID_THIRD
    assert np.abs(silu3).max() <= so2.SILU_THIRD
    assert np.abs(silu3).max() > so2.SILU_THIRD - 1e-5
