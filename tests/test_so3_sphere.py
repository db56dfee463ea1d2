"""The "sphere" path weights: closed forms against e3nn + quadrature, the pole formulas, non-zero.

Checks the statements of proofs/sphere_product.md, sections 2-4 (closed-form weights) and the
numpy solid harmonics used by the construction.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import sympy
import torch
from e3nn import o3
from scipy.integrate import lebedev_rule

from tdn_theory import so3
from tdn_theory.so3.sphere import solid_harmonics, sphere_path_weight, sphere_path_weight_exact


def _e3nn_values_and_gradients(L: int, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """e3nn's solid harmonics (normalize=False, "integral") and their autograd gradients."""
    r = torch.tensor(points, dtype=torch.float64, requires_grad=True)
    values = o3.spherical_harmonics(
        list(range(L + 1)), r, normalize=False, normalization="integral"
    )
    grads = [
        torch.autograd.grad(values[:, a].sum(), r, retain_graph=True)[0]
        for a in range(values.shape[1])
    ]
    return values.detach().numpy(), torch.stack(grads, dim=1).numpy()


def test_solid_harmonics_match_e3nn_and_autograd():
    L = 8
    points = np.random.default_rng(7).normal(size=(25, 3))
    values, grads = solid_harmonics(L, points)
    ref_values, ref_grads = _e3nn_values_and_gradients(L, points)
    assert np.max(np.abs(values - ref_values)) <= 1e-13 * np.max(np.abs(ref_values))
    assert np.max(np.abs(grads - ref_grads)) <= 1e-13 * np.max(np.abs(ref_grads))


def test_solid_harmonics_rejects_bad_points():
    with pytest.raises(ValueError, match="shape"):
        solid_harmonics(2, np.zeros((4, 2)))


def test_weights_equal_e3nn_quadrature_projection():
    """Independent route: e3nn harmonics + autograd gradients + a Lebedev rule of degree 3L."""
    L = 5
    x, w = lebedev_rule(15)
    points = x.T
    Y, G = _e3nn_values_and_gradients(L, points)
    gaunt = np.einsum("n,nk,ni,nj->kij", w, Y, Y, Y)
    curl = np.einsum("n,nk,nc,nijc->kij", w, Y, points, np.cross(G[:, :, None], G[:, None, :]))
    s = so3.degree_slices(L)
    for l1, l2, l3 in so3.paths(L):
        U = o3.wigner_3j(l1, l2, l3, dtype=torch.float64).numpy().transpose(2, 0, 1)
        block = (gaunt if (l1 + l2 + l3) % 2 == 0 else curl)[s[l3], s[l1], s[l2]]
        other = (curl if (l1 + l2 + l3) % 2 == 0 else gaunt)[s[l3], s[l1], s[l2]]
        weight = sphere_path_weight(l1, l2, l3)
        scale = max(1.0, abs(weight))
        assert np.max(np.abs(block - weight * U)) <= 1e-12 * scale, (l1, l2, l3)
        assert np.max(np.abs(other)) <= 1e-12 * scale, (l1, l2, l3)  # the wrong part vanishes


def test_even_weights_equal_the_gaunt_normalization():
    for path in so3.paths(8, "even"):
        assert sphere_path_weight(*path) == pytest.approx(
            so3.path_weight(*path, "gaunt"), rel=1e-14
        )
    for path in [(0, 0, 0), (1, 1, 2), (2, 3, 3)]:
        difference = sphere_path_weight_exact(*path) - so3.gaunt_weight_exact(*path)
        assert sympy.simplify(difference) == 0


def test_pole_formulas():
    """w from one evaluation at the pole e_y (proof, section 3) equals the closed form."""
    for l1, l2, l3 in so3.paths(8):
        U = so3.real_cg(l1, l2, l3) / math.sqrt(2 * l3 + 1)
        dims = (2 * l1 + 1) * (2 * l2 + 1) * (2 * l3 + 1)
        if (l1 + l2 + l3) % 2 == 0:
            pole = math.sqrt(dims / (4 * math.pi)) * U[l1, l2, l3]
        else:
            pole = (
                math.sqrt(dims * l1 * (l1 + 1) * l2 * (l2 + 1) / (4 * math.pi))
                / 2
                * (U[l1 + 1, l2 - 1, l3] - U[l1 - 1, l2 + 1, l3])
            )
        assert pole == pytest.approx(sphere_path_weight(l1, l2, l3), rel=1e-12, abs=1e-14)


def test_harmonics_at_the_pole():
    """The facts the pole formulas use: Y_l(e_y) and grad S_l(e_y) of e3nn's harmonics."""
    L = 10
    values, grads = solid_harmonics(L, np.array([[0.0, 1.0, 0.0]]))
    for l, s in enumerate(so3.degree_slices(L)):
        expected = np.zeros(2 * l + 1)
        expected[l] = math.sqrt((2 * l + 1) / (4 * math.pi))
        np.testing.assert_allclose(values[0, s], expected, atol=1e-13)
        if l == 0:
            continue
        kappa = math.sqrt((2 * l + 1) / (4 * math.pi)) * math.sqrt(l * (l + 1) / 2)
        g = grads[0, s]  # (2l+1, 3)
        expected_x = np.zeros(2 * l + 1)
        expected_x[l - 1] = kappa
        expected_z = np.zeros(2 * l + 1)
        expected_z[l + 1] = kappa
        np.testing.assert_allclose(g[:, 0], expected_x, atol=1e-12 * kappa)
        np.testing.assert_allclose(g[:, 2], expected_z, atol=1e-12 * kappa)


def test_every_path_has_a_nonzero_weight():
    weights = {path: sphere_path_weight(*path) for path in so3.paths(12)}
    assert all(abs(w) > 0.1 for w in weights.values())
    assert all(w > 0 for path, w in weights.items() if sum(path) % 2 == 0)  # Gaunt weights > 0


def test_levi_civita_weight():
    """Path (1, 1, 1): T[k, i, j] = sqrt(3 / (4 pi)) eps_kij, so w = 3 / sqrt(2 pi) (proof, 5)."""
    assert sphere_path_weight(1, 1, 1) == pytest.approx(3 / math.sqrt(2 * math.pi), rel=1e-15)
    block = so3.cg_tensor(1, "sphere", "odd")[1:, 1:, 1:]
    eps = np.zeros((3, 3, 3))
    for i, j, k in [(0, 1, 2), (1, 2, 0), (2, 0, 1)]:
        eps[i, j, k], eps[j, i, k] = 1.0, -1.0
    np.testing.assert_allclose(block, math.sqrt(3 / (4 * math.pi)) * eps, atol=1e-15)


def test_inadmissible_path_is_refused():
    with pytest.raises(ValueError, match="triangle"):
        sphere_path_weight(1, 1, 3)
    with pytest.raises(ValueError):
        sphere_path_weight(-1, 1, 1)
