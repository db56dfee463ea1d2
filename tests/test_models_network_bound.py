"""Theorem 1 of proofs/network_propagation.md (``method="lipschitz"``) holds on sampled rotations.

The theorem: for every rotation R, |h^t(Rx) - D h^t(x)| <= feature_total[t] for each layer t,
|E(Rx) - E(x)| <= energy and |F(Rx) - R F(x)| <= force_total, with the bound evaluated at x from
the tensor product's a-posteriori constants and the network's own quantities.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import bulk
from hypothesis import given, settings
from scipy.special import expit

from tdn_theory import so3
from tdn_theory.models import TDNPotential
from tdn_theory.models.network_bound import (
    adversarial_rotation,
    bound_quantities,
    evaluate_bound,
    measure_defects,
    tensor_product_error,
)
from tdn_theory.testing import strategies as tst
from tdn_theory.theory import network as net


def alloy() -> Atoms:
    atoms = bulk("Cu", "fcc", a=3.6, cubic=True) * (2, 1, 1)
    atoms.symbols[[0, 3, 5]] = "Au"
    atoms.rattle(0.15, seed=4)
    return atoms


def args(atoms: Atoms):
    return atoms.positions, atoms.numbers, np.asarray(atoms.cell), atoms.pbc


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """Fits go to a temporary cache folder (not the user's)."""
    mp = pytest.MonkeyPatch()
    mp.setenv("TDN_THEORY_CACHE", str(tmp_path_factory.mktemp("cache")))
    yield
    mp.undo()


@pytest.fixture(scope="module")
def cp_model(cache):
    """L = 2, rank 7 L^2 = 28 (relative tensor error about 1 %), 3 layers."""
    return TDNPotential(["Cu", "Au"], 2, 3, 3, 4.0, "cp", rank=28, seed=3)


@pytest.fixture(scope="module")
def cp_bound(cp_model):
    return evaluate_bound(cp_model, *args(alloy()), method="lipschitz")


@settings(max_examples=8)
@given(R=tst.rotations())
def test_cp_at_7L2_stays_inside_the_network_bound(cp_model, cp_bound, R):
    measured = measure_defects(cp_model, *args(alloy()), rotations=R[None])
    assert np.all(measured["features"][0] <= cp_bound.feature_total * (1 + 1e-9) + 1e-13)
    assert measured["energy"][0] <= cp_bound.energy * (1 + 1e-9) + 1e-13
    assert measured["forces"][0] <= cp_bound.force_total * (1 + 1e-9) + 1e-13


def test_bound_holds_on_haar_rotations_and_the_adversarial_one(cp_model, cp_bound):
    atoms = alloy()
    measured = measure_defects(cp_model, *args(atoms), rotations=so3.random_rotations(6, seed=1))
    assert measured["forces"].min() > 1e-8  # the CP model is not equivariant: defects are real
    assert np.all(measured["features"] <= cp_bound.feature_total[None] * (1 + 1e-9))
    worst = so3.random_rotations(6, seed=1)[int(np.argmax(measured["forces"]))]
    R, force = adversarial_rotation(cp_model, *args(atoms), start=worst, iterations=15)
    assert force >= measured["forces"].max() * (1 - 1e-12)
    assert force <= cp_bound.force_total
    # the per-layer feature bound grows with depth, starts at 0 (the embedding is invariant)
    assert cp_bound.feature_total[0] == 0
    assert np.all(np.diff(cp_bound.feature_total) > 0)


def test_exact_backends_have_a_bound_at_rounding_level():
    model = TDNPotential(["Cu", "Au"], 2, 3, 3, 4.0, "dense", seed=3)
    eps, S, rel = tensor_product_error(model)
    assert np.all(eps == 0) and rel == 0 and S > 0
    bound = evaluate_bound(model, *args(alloy()), method="lipschitz")
    assert bound.force_total == 0 and bound.energy == 0
    sphere = model.with_backend("sphere")
    eps, _, rel = tensor_product_error(sphere)
    assert eps.max() < 1e-13 and rel < 1e-13
    b = evaluate_bound(sphere, *args(alloy()), method="lipschitz")
    assert b.force_total < 1e-10


def test_tensor_product_constants_bound_the_defect_per_degree(cp_model):
    """|M̂(Da, Db) - D M̂(a, b)| <= 2 sum_l eps_l |a_l| |b| and |M̂(a, b)| <= S |a| |b|."""
    from tdn_theory.theory import aposteriori_bound

    L = 2
    T = so3.cg_tensor(L)
    T_hat = cp_model.tp.dense_tensor().numpy()
    eps, S = net.tensor_product_constants(T, T_hat)
    spectral = aposteriori_bound(T, T_hat)["spectral"]
    assert eps.shape == (L + 1,) and 0 < 2 * eps.max() <= spectral * (1 + 1e-12)
    rng = np.random.default_rng(0)
    slices = so3.degree_slices(L)
    ratios = []
    for R in so3.random_rotations(30, seed=2):
        D = so3.block_wigner_D(L, R)
        a, b = rng.standard_normal((2, 9))
        a[slices[int(rng.integers(0, L + 1))]] *= 10  # inputs concentrated on one degree
        defect = np.linalg.norm(
            np.einsum("kij,i,j->k", T_hat, D @ a, D @ b) - D @ np.einsum("kij,i,j->k", T_hat, a, b)
        )
        bound = 2 * sum(e * np.linalg.norm(a[s]) for e, s in zip(eps, slices, strict=True))
        bound *= np.linalg.norm(b)
        assert defect <= bound * (1 + 1e-12)
        ratios.append(defect / bound)
        out = np.einsum("kij,i,j->k", T_hat, a, b)
        assert np.linalg.norm(out) <= S * np.linalg.norm(a) * np.linalg.norm(b) * (1 + 1e-12)
    assert max(ratios) > 0.05  # the per-degree constants are not vacuous


def test_per_degree_constants_of_the_L1_fit_lie_below_the_aposteriori_constant(cache):
    """At L = 1, rank 7 (the best-known fit, not exact): 0 < eps_l <= ||E_(1)||_2 for each l."""
    model = TDNPotential(["Cu"], 1, 2, 1, 4.0, "cp", rank=7)
    eps, _, rel = tensor_product_error(model)
    E = model.tp.dense_tensor().detach().double().numpy() - so3.cg_tensor(1)
    whole = np.linalg.norm(E.reshape(4, -1), 2)
    assert rel > 0.01 and np.all(eps > 0) and np.all(eps <= whole * (1 + 1e-12))


def test_measured_jacobians_agree_with_reverse_mode():
    """scalar_tangent[k, i] = ||d h^K_i[:, 0] / d x_k||_2, checked against autograd.functional."""
    model = TDNPotential(["Cu", "Au"], 1, 2, 2, 4.0, "dense", seed=5)
    atoms = alloy()[:5]
    atoms.pbc = False
    q = bound_quantities(model, atoms.positions, atoms.numbers)
    pos, cell, species, graph = model.prepare(atoms.positions, atoms.numbers)

    def scalars(p):
        return model.evaluate(p, cell, species, graph, keep=True)["scalars"]

    J = torch.autograd.functional.jacobian(scalars, pos.detach()).numpy()  # (N, C, N, 3)
    for k in range(5):
        for i in range(5):
            want = np.linalg.norm(J[i, :, k, :], 2)
            assert q.scalar_tangent[k, i] == pytest.approx(want, rel=1e-9, abs=1e-14)
    assert np.all(q.layers[0].input_tangent == 0)  # h^0 is the embedding
    assert np.all(q.layers[0].input_norms[:, :, 1:] == 0)  # ... and scalar


def test_activation_constants():
    x = np.linspace(-30, 30, 600001)
    s = expit(x)
    silu1 = s * (1 + x * (1 - s))
    ds = s * (1 - s)
    silu2 = ds * (2 + x * (1 - 2 * s))
    sig2 = ds * (1 - 2 * s)
    assert np.abs(silu1).max() <= net.SILU_LIPSCHITZ
    assert np.abs(silu2).max() <= net.SILU_CURVATURE
    assert np.abs(ds).max() <= net.SIGMOID_LIPSCHITZ
    assert np.abs(sig2).max() <= net.SIGMOID_CURVATURE
    assert np.abs(silu1).max() > net.SILU_LIPSCHITZ - 1e-5  # the constants are the suprema
    assert np.abs(sig2).max() > net.SIGMOID_CURVATURE - 1e-6


def test_bound_algebra_scales_and_validates(cp_model):
    q = bound_quantities(cp_model, *args(alloy()))
    b = net.network_bound(q)
    global_slope = net.network_bound(dataclasses.replace(q, readout_gradient=None))
    assert global_slope.force_total >= b.force_total and global_slope.energy >= b.energy
    assert np.all(q.readout_gradient <= q.readout_lipschitz)
    zero = net.network_bound(dataclasses.replace(q, eps=0 * q.eps))
    assert zero.force_total == 0 and zero.energy == 0
    doubled = net.network_bound(dataclasses.replace(q, eps=2 * q.eps))
    with pytest.raises(ValueError, match="eps"):
        net.network_bound(dataclasses.replace(q, eps=-q.eps))
    assert doubled.energy > 2 * b.energy * (1 - 1e-12)  # superlinear in eps (defects compound)
    with pytest.raises(ValueError, match="avg_neighbors"):
        net.network_bound(dataclasses.replace(q, avg_neighbors=0.0))
    with pytest.raises(ValueError, match="per edge"):
        net.network_bound(dataclasses.replace(q, dst=q.dst[:-1]))
    with pytest.raises(ValueError, match="layers is empty"):
        net.network_bound(dataclasses.replace(q, layers=[]))
    with pytest.raises(ValueError, match="shape"):
        net.tensor_product_constants(np.zeros((4, 4, 4)), np.zeros((9, 9, 9)))


def test_layering_theory_and_lower_layers_do_not_import_models_or_nn():
    """Layering (README, Layout): so3 < cp < theory < nn < models; theory.network works on arrays."""
    import ast
    from pathlib import Path

    package = Path(net.__file__).resolve().parents[1]
    forbidden = {"so3": ("cp", "theory", "nn", "models"), "cp": ("theory", "nn", "models")}
    forbidden["theory"] = ("nn", "models")
    forbidden["nn"] = ("models",)
    for layer, above in forbidden.items():
        for path in (package / layer).glob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                names = []
                if isinstance(node, ast.ImportFrom) and node.module:
                    names = [node.module]
                elif isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                for name in names:
                    parts = name.split(".")
                    assert not (
                        parts[0] == "tdn_theory" and len(parts) > 1 and parts[1] in above
                    ), f"{path.name} ({layer}) imports {name}"
