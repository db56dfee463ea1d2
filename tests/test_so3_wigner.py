"""Wigner D: e3nn agreement, homomorphism, orthogonality, accuracy near Euler singularities."""

import numpy as np
import pytest
import torch
from e3nn import o3
from hypothesis import given
from scipy.spatial.transform import Rotation

from tdn_theory.so3 import block_wigner_D, random_rotations, wigner_D
from tdn_theory.testing import strategies


@given(strategies.rotations(), strategies.rotations())
def test_homomorphism_and_orthogonality(R1, R2):
    D1, D2, D12 = (block_wigner_D(5, R) for R in (R1, R2, R1 @ R2))
    assert np.abs(D12 - D1 @ D2).max() < 1e-13
    assert np.abs(D1.T @ D1 - np.eye(36)).max() < 1e-13


def test_matches_e3nn_D_from_matrix():
    R = random_rotations(20, seed=3)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)  # e3nn's Euler-angle helpers use the default dtype
    try:
        for l in range(7):
            e3nn_D = o3.Irrep(l, 1).D_from_matrix(torch.tensor(R)).numpy()
            assert np.abs(wigner_D(l, R) - e3nn_D).max() < 1e-12
    finally:
        torch.set_default_dtype(previous)


@pytest.mark.parametrize("axis", ["x", "y", "z"])
@pytest.mark.parametrize("angle", [0.0, 1e-9, np.pi - 1e-9, np.pi])
def test_accurate_near_euler_singularities(axis, angle):
    R = Rotation.from_euler(axis, angle).as_matrix()
    R_inv = R.T
    for l in range(7):
        D, D_inv = wigner_D(l, R), wigner_D(l, R_inv)
        assert np.abs(D @ D_inv - np.eye(2 * l + 1)).max() < 1e-13
        assert np.abs(D @ D.T - np.eye(2 * l + 1)).max() < 1e-13
    # a tiny rotation is close to the identity to first order in the angle
    if angle < 1e-6:
        assert np.abs(wigner_D(6, R) - np.eye(13)).max() < 1e-8


def test_batched_equals_single():
    R = random_rotations(4, seed=0)
    batched = block_wigner_D(3, R)
    assert batched.shape == (4, 16, 16)
    for n in range(4):
        assert np.array_equal(batched[n], block_wigner_D(3, R[n]))


@pytest.mark.parametrize(
    "R",
    [np.eye(2), 2 * np.eye(3), np.diag([1.0, 1.0, -1.0]), np.full((3, 3), np.nan)],
)
def test_non_rotations_raise(R):
    with pytest.raises(ValueError, match="R"):
        wigner_D(2, R)


def test_random_rotations_are_seeded_and_haar():
    a, b = random_rotations(2000, seed=7), random_rotations(2000, seed=7)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, random_rotations(2000, seed=8))
    assert np.allclose(np.linalg.det(a), 1.0)
    # Haar measure: E[D^l(R)] = 0 for l >= 1 (Monte-Carlo error ~ 1/sqrt(2000) = 0.022)
    for l in (1, 2):
        assert np.abs(wigner_D(l, a).mean(axis=0)).max() < 0.1
    with pytest.raises(ValueError, match="n"):
        random_rotations(-1)


@given(strategies.rotations())
def test_strategy_draws_rotations(R):
    assert np.abs(R.T @ R - np.eye(3)).max() < 1e-12 and np.linalg.det(R) > 0
