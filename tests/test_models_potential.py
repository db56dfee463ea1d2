"""TDNPotential: exact symmetries with the exact backends, backend agreement, forces, bad input."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import bulk
from e3nn import o3
from hypothesis import given, settings
from hypothesis import strategies as st

from tdn_theory import so3
from tdn_theory.cp import FitStoreError, best_known
from tdn_theory.models import TDNCalculator, TDNPotential
from tdn_theory.testing import strategies as tst

ROOT = Path(__file__).resolve().parents[1]
FACTORS = ROOT / "experiments" / "results" / "factors"
EXACT_L2 = FACTORS / "exact_unit_all_L2.npz"  # rank 30, error 3.5e-16
EXACT_L3 = FACTORS / "exact_unit_all_L3.npz"


def alloy() -> Atoms:
    """8-atom periodic Cu/Au cell, rattled (cutoff 4 Å gives 12-18 neighbours)."""
    atoms = bulk("Cu", "fcc", a=3.6, cubic=True) * (2, 1, 1)
    atoms.symbols[[0, 3, 5]] = "Au"
    atoms.rattle(0.15, seed=1)
    return atoms


def cluster() -> Atoms:
    """A non-periodic 6-atom cluster."""
    rng = np.random.default_rng(2)
    pos = np.array(
        [[0, 0, 0], [2.5, 0, 0], [0, 2.5, 0], [0, 0, 2.5], [2.5, 2.5, 0], [1.2, 1.3, 1.9]]
    )
    return Atoms("Cu3Au3", positions=pos + 0.1 * rng.standard_normal(pos.shape))


def small_model(backend: str = "dense", *, L: int = 2, layers: int = 2, **kw) -> TDNPotential:
    return TDNPotential(["Cu", "Au"], L, 3, layers, 4.0, backend, seed=7, **kw)


def evaluate(model: TDNPotential, atoms: Atoms, R: np.ndarray | None = None):
    pos, cell = atoms.positions, np.asarray(atoms.cell)
    if R is not None:
        pos, cell = pos @ R.T, cell @ R.T
    E, F = model.energy_and_forces(pos, atoms.numbers, cell, atoms.pbc)
    return float(E.detach()), F.detach().numpy()


MODELS = {
    "dense": lambda: small_model("dense"),
    "e3nn": lambda: small_model("e3nn"),
    "sphere": lambda: small_model("sphere"),
    "cp_exact": lambda: small_model("cp", factors=EXACT_L2),
}


# --------------------------------------------------------------------------------------------
# the edge harmonics are in the basis of the CG tensor
# --------------------------------------------------------------------------------------------


@given(R=tst.rotations(), seed=st.integers(0, 2**32 - 1))
def test_spherical_harmonics_rotate_with_block_wigner_D(R, seed):
    r = np.random.default_rng(seed).standard_normal((5, 3))
    Y = o3.spherical_harmonics(list(range(4)), torch.from_numpy(r), True, normalization="norm")
    YR = o3.spherical_harmonics(
        list(range(4)), torch.from_numpy(r @ R.T), True, normalization="norm"
    )
    D = so3.block_wigner_D(3, R)
    assert np.abs(YR.numpy() - Y.numpy() @ D.T).max() < 1e-12


def test_spherical_harmonics_products_are_the_gaunt_tensor():
    """Y_i Y_j = sum_k G[k, i, j] Y_k for l_i + l_j <= L: signs and order match cg_tensor."""
    L = 4
    G = so3.cg_tensor(L, "gaunt", "all")
    r = torch.from_numpy(np.random.default_rng(0).standard_normal((7, 3)))
    Y = o3.spherical_harmonics(list(range(L + 1)), r, True, normalization="integral").numpy()
    deg = so3.degree_of_index(L)
    low = deg[:, None] + deg[None, :] <= L
    product = Y[:, :, None] * Y[:, None, :]
    expanded = np.einsum("kij,nk->nij", G, Y)
    assert low.sum() > 100
    assert np.abs((product - expanded)[:, low]).max() < 1e-12


# --------------------------------------------------------------------------------------------
# symmetries (float64, exact backends)
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", list(MODELS))
@settings(max_examples=5)
@given(R=tst.rotations())
def test_exact_backends_invariant_energy_equivariant_forces(backend, R):
    model = MODELS[backend]()
    for atoms in (alloy(), cluster()):
        E, F = evaluate(model, atoms)
        E_R, F_R = evaluate(model, atoms, R)
        assert abs(E_R - E) <= 1e-10 * abs(E)
        assert np.linalg.norm(F_R - F @ R.T) <= 1e-9 * np.linalg.norm(F)


def test_translation_invariance():
    model = small_model(layers=3)
    for atoms in (alloy(), cluster()):
        E, F = evaluate(model, atoms)
        moved = atoms.copy()
        moved.positions += np.array([0.7, -1.3, 2.9])
        E_t, F_t = evaluate(model, moved)
        assert abs(E_t - E) <= 1e-10 * abs(E)
        assert np.abs(F_t - F).max() <= 1e-9 * np.abs(F).max()


def test_permutation_invariance():
    model = small_model(layers=3)
    atoms = alloy()
    perm = np.random.default_rng(3).permutation(len(atoms))
    E, F = evaluate(model, atoms)
    E_p, F_p = evaluate(model, atoms[perm])
    assert abs(E_p - E) <= 1e-10 * abs(E)
    assert np.abs(F_p - F[perm]).max() <= 1e-9 * np.abs(F).max()


def test_periodic_images():
    """A supercell has twice the energy and the same forces; wrapping an atom changes nothing."""
    model = small_model(layers=2)
    atoms = alloy()
    E, F = evaluate(model, atoms)
    E2, F2 = evaluate(model, atoms * (1, 2, 1))
    assert abs(E2 - 2 * E) <= 1e-10 * abs(E)
    assert np.abs(F2 - np.concatenate([F, F])).max() <= 1e-9 * np.abs(F).max()
    shifted = atoms.copy()
    shifted.positions[2] += shifted.cell[0] - 2 * shifted.cell[2]
    E_s, F_s = evaluate(model, shifted)
    assert abs(E_s - E) <= 1e-10 * abs(E)
    assert np.abs(F_s - F).max() <= 1e-9 * np.abs(F).max()


def test_forces_are_minus_the_energy_gradient():
    model = small_model("e3nn", layers=2)
    atoms = alloy()
    _, F = evaluate(model, atoms)
    h = 1e-5
    for atom, axis in [(0, 0), (3, 1), (6, 2)]:
        plus, minus = atoms.copy(), atoms.copy()
        plus.positions[atom, axis] += h
        minus.positions[atom, axis] -= h
        fd = -(evaluate(model, plus)[0] - evaluate(model, minus)[0]) / (2 * h)
        assert abs(fd - F[atom, axis]) <= 1e-7 * max(1.0, np.abs(F).max())


# --------------------------------------------------------------------------------------------
# backends on identical weights
# --------------------------------------------------------------------------------------------


def test_exact_backends_agree_on_identical_weights():
    dense = small_model("dense", layers=3)
    atoms = alloy()
    E, F = evaluate(dense, atoms)
    for other in (dense.with_backend("e3nn"), dense.with_backend("cp", factors=EXACT_L2)):
        assert other.embedding is not dense.embedding
        assert torch.equal(other.interactions[0].mix, dense.interactions[0].mix)
        E_o, F_o = evaluate(other, atoms)
        assert abs(E_o - E) <= 1e-10 * abs(E)
        assert np.abs(F_o - F).max() <= 1e-10 * np.abs(F).max()
    sphere = dense.with_backend("sphere")
    sphere_dense = dense.with_backend("dense", normalization="sphere")
    assert sphere.normalization == "sphere"
    E_s, F_s = evaluate(sphere, atoms)
    E_sd, F_sd = evaluate(sphere_dense, atoms)
    assert abs(E_s - E_sd) <= 1e-10 * abs(E_sd)
    assert np.abs(F_s - F_sd).max() <= 1e-10 * np.abs(F_sd).max()
    assert abs(E_s - E) > 1e-6 * abs(E)  # a different tensor: a different function
    # e3nn expresses the sphere tensor through its path weights
    E_se, _ = evaluate(sphere_dense.with_backend("e3nn"), atoms)
    assert abs(E_se - E_sd) <= 1e-10 * abs(E_sd)


def test_approximate_cp_is_close_but_not_exact(tmp_path, monkeypatch):
    """rank= takes the best-known fit from the fit store (L = 1, R = 7: below the exact rank 8)."""
    monkeypatch.setenv("TDN_THEORY_CACHE", str(tmp_path))
    model = small_model("cp", L=1, layers=2, rank=7)
    err = model.tp.meta["relative_error"]
    assert err == pytest.approx(best_known(1, 7).relative_error, rel=1e-9)
    assert 1e-4 < err < 0.1
    dense = model.with_backend("dense")
    atoms = alloy()
    E, _ = evaluate(model, atoms)
    E_d, _ = evaluate(dense, atoms)
    assert 0 < abs(E - E_d) < 0.5 * abs(E_d)


def test_a_rank_missing_from_the_store_is_fitted_once_into_the_user_store(tmp_path, monkeypatch):
    monkeypatch.setenv("TDN_THEORY_CACHE", str(tmp_path))
    with pytest.raises(FitStoreError, match="no stored fit"):
        best_known(1, 3, "gaunt", "all")
    model = small_model("cp", L=1, layers=1, rank=3, normalization="gaunt")
    stored = list((tmp_path / "fits").glob("*.npz"))
    assert [p.name for p in stored] == ["gaunt_all_L1_R3.npz"]
    stamp = stored[0].stat().st_mtime_ns
    again = small_model("cp", L=1, layers=1, rank=3, normalization="gaunt")
    assert torch.equal(model.tp.A, again.tp.A)  # read back from the user store, not refitted
    assert stored[0].stat().st_mtime_ns == stamp
    # an altered store entry is refused with one line
    with np.load(stored[0]) as data:
        arrays = {k: data[k] for k in data.files}
    arrays["A"] = arrays["A"] * 1.01
    np.savez(stored[0], **arrays)
    with pytest.raises(ValueError) as info:
        small_model("cp", L=1, layers=1, rank=3, normalization="gaunt")
    assert "gaunt_all_L1_R3.npz" in str(info.value) and "\n" not in str(info.value)


# --------------------------------------------------------------------------------------------
# parity
# --------------------------------------------------------------------------------------------


def test_even_parity_is_mirror_invariant_and_all_is_not():
    atoms = cluster()
    mirrored = atoms.copy()
    mirrored.positions = -mirrored.positions
    even = small_model(layers=3, parity="even")
    E, F = evaluate(even, atoms)
    E_m, F_m = evaluate(even, mirrored)
    assert abs(E_m - E) <= 1e-10 * abs(E)
    assert np.abs(F_m + F).max() <= 1e-9 * np.abs(F).max()
    full = small_model(layers=3, parity="all")
    E, _ = evaluate(full, atoms)
    E_m, _ = evaluate(full, mirrored)
    assert abs(E_m - E) > 1e-10 * abs(E)  # measured: ~5e-8 relative at 3 layers


# --------------------------------------------------------------------------------------------
# ASE calculator, dtypes
# --------------------------------------------------------------------------------------------


def test_ase_calculator_float64_and_float32():
    model = small_model()
    atoms = alloy()
    E, F = evaluate(model, atoms)
    atoms.calc = TDNCalculator(model)
    assert atoms.get_potential_energy() == pytest.approx(E, rel=1e-14)
    assert np.allclose(atoms.get_forces(), F, rtol=0, atol=1e-14)
    atoms32 = alloy()
    atoms32.calc = TDNCalculator(small_model().float())
    assert atoms32.get_potential_energy() == pytest.approx(E, rel=1e-4)
    assert np.allclose(atoms32.get_forces(), F, atol=1e-4 * np.abs(F).max())
    with pytest.raises(ValueError, match="TDNPotential"):
        TDNCalculator(object())


def test_float32_model_cp_backend():
    model = small_model("cp", factors=EXACT_L2).to(torch.float32)
    assert model.tp.A.dtype == torch.float32
    E, _ = evaluate(model, alloy())
    E64, _ = evaluate(small_model(), alloy())
    assert E == pytest.approx(E64, rel=1e-4)


# --------------------------------------------------------------------------------------------
# bad input: one-line ValueErrors
# --------------------------------------------------------------------------------------------


def _one_line(excinfo) -> str:
    message = str(excinfo.value)
    assert "\n" not in message and message
    return message


@pytest.mark.parametrize(
    "change, match",
    [
        (lambda a: a.__setitem__("numbers", np.array([29, 79, 26, 29, 29, 29])), "unknown species"),
        (lambda a: a["positions"].__setitem__((1, 2), math.nan), "NaN"),
        (lambda a: a.update(pbc="False"), "pbc must be a bool"),
        (lambda a: a.__setitem__("numbers", np.array(["Cu"] * 6)), "got symbols"),
        (lambda a: a.update(cell=np.diag([5.0, 5.0, 0.0]), pbc=True), "zero cell vector|singular"),
        (
            lambda a: a.update(cell=np.array([[5.0, 0, 0], [0, 5.0, 0], [5.0, 5.0, 0]]), pbc=True),
            "singular",
        ),
        (lambda a: a.__setitem__("numbers", np.array([29, 79, 29])), "numbers must have shape"),
        (lambda a: a.__setitem__("positions", a["positions"][:, :2]), r"shape \(n_atoms, 3\)"),
        (lambda a: a["positions"].__setitem__(1, a["positions"][0]), "coincide"),
    ],
)
def test_bad_structures_raise_one_line(change, match):
    atoms = cluster()
    args = {
        "positions": atoms.positions.copy(),
        "numbers": atoms.numbers.copy(),
        "cell": None,
        "pbc": None,
    }
    change(args)
    with pytest.raises(ValueError, match=match) as excinfo:
        small_model().energy_and_forces(**args)
    _one_line(excinfo)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"backend": "cp", "factors": EXACT_L3}, "L = 3|another|for L"),
        ({"backend": "cp"}, "exactly one of rank"),
        ({"backend": "cp", "rank": 0}, "rank must be"),
        ({"backend": "magic"}, "unknown backend"),
        ({"backend": "dense", "rank": 5}, "for backend 'cp'"),
        ({"backend": "sphere", "normalization": "unit"}, "sphere"),
        ({"parity": "odd"}, "parity"),
        ({"normalization": "weird"}, "normalization"),
        ({"backend": "cp", "factors": FACTORS / "exact_unit_even_L2.npz"}, "parity"),
    ],
)
def test_bad_model_arguments_raise_one_line(kwargs, match):
    with pytest.raises(ValueError, match=match) as excinfo:
        small_model(**kwargs)
    _one_line(excinfo)


def test_bad_species_and_sizes():
    for species in ([], ["Xx"], ["Cu", "Cu"], "Cu"):
        with pytest.raises(ValueError) as excinfo:
            TDNPotential(species, 2, 3, 2, 4.0)
        _one_line(excinfo)
    for kwargs in ({"L": -1}, {"channels": 0}, {"layers": 0}, {"cutoff": -1.0}):
        args = {"L": 2, "channels": 3, "layers": 2, "cutoff": 4.0} | kwargs
        with pytest.raises(ValueError) as excinfo:
            TDNPotential(["Cu"], **args)
        _one_line(excinfo)
    model = small_model()
    with pytest.raises(ValueError, match="dtype") as excinfo:
        model.energy_and_forces(torch.tensor([[0.0, 0, 0], [2.0, 0, 0]]).float(), [29, 29])
    _one_line(excinfo)


def test_create_graph_lets_a_force_loss_train_the_weights():
    model = small_model()
    atoms = alloy()
    pos = torch.as_tensor(atoms.positions)
    _, F = model.energy_and_forces(
        pos, atoms.numbers, np.asarray(atoms.cell), True, create_graph=True
    )
    (F**2).sum().backward()
    grads = [p.grad for p in model.interactions[0].parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert any(g.abs().max() > 0 for g in grads)
    state = model.state_dict()
    clone = small_model()
    clone.load_state_dict(state)
    assert evaluate(clone, atoms)[0] == evaluate(model, atoms)[0]
