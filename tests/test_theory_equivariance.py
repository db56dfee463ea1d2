"""Equivariance error of CP fits versus the bounds of proofs/equivariance_bound.md.

Checked here: the exact CG tensor is equivariant to round-off; every sampled and every
adversarially found error of a fit lies below both a-posteriori bounds; the spectral bound is
attained (sharp); Thm 3.1 bounds its HOSVD truncation (and is vacuous at R = 7 L^2); the
Monte-Carlo Haar average of ||rho(R) T_hat - T_hat||_F^2 agrees with the exact formula
2 ||(I - P) T_hat||_F^2 within a Hoeffding tolerance.
"""

from __future__ import annotations

from functools import cache

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tdn_theory.cp import cp_to_tensor, fit_cp
from tdn_theory.so3 import cg_tensor, random_rotations
from tdn_theory.testing import assert_equivariant
from tdn_theory.testing.references import monte_carlo_mean_square
from tdn_theory.testing.strategies import rotations
from tdn_theory.theory.equivariance import (
    FitCheck,
    aposteriori_bound,
    check_fit,
    equivariance_defect_tensor,
    equivariance_error,
    haar_mean_square,
    hosvd_cp,
    invariant_path_basis,
    project_invariant,
    sample_equivariance_errors,
    thm31_bound,
    thm31_equivariance_bound,
    thm31_truncation_rank,
    to_dense,
    worst_case_equivariance_error,
)

# (L, rank): under-complete fits whose error is far from zero, so the bounds are exercised.
FIT_CASES = [(1, 2), (1, 5), (2, 4), (2, 12), (3, 9), (3, 30)]
ROUNDOFF = 1e-12
seeds = st.integers(min_value=0, max_value=2**32 - 1)


@cache
def _fit(L: int, rank: int):
    fit = fit_cp(cg_tensor(L), rank, restarts=1, seed=L * 100 + rank, max_iter=60, polish=False)
    return fit.A, fit.B, fit.C


def _unit_pair(seed: int, d: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x, y = rng.standard_normal((2, d))
    return x / np.linalg.norm(x), y / np.linalg.norm(y)


# ------------------------------------------------------------------ exact tensor


@settings(max_examples=20, deadline=None)
@given(
    R=rotations(), seed=seeds, L=st.integers(1, 3), norm=st.sampled_from(["unit", "cg", "gaunt"])
)
def test_exact_cg_tensor_is_equivariant(R, seed, L, norm):
    T = cg_tensor(L, norm)
    x, y = _unit_pair(seed, T.shape[0])
    assert equivariance_error(T, R, x, y) < ROUNDOFF
    assert np.abs(equivariance_defect_tensor(T, R)).max() < ROUNDOFF


@pytest.mark.parametrize("L", [1, 2, 3])
def test_exact_tensor_sampled_errors_and_haar_average_vanish(L):
    T = cg_tensor(L)
    assert sample_equivariance_errors(T, 200, seed=1).max() < ROUNDOFF
    assert haar_mean_square(T) < ROUNDOFF**2


def test_error_is_not_trivially_zero():
    """Negative control: perturbing one l=1 entry breaks equivariance by a visible amount."""
    T = cg_tensor(1)
    T[1, 1, 1] += 0.1
    R = random_rotations(1, 3)[0]
    x, y = _unit_pair(0, 4)
    assert equivariance_error(T, R, x, y) > 1e-4


# ------------------------------------------------------------------ a-posteriori bounds


@pytest.mark.parametrize("L, rank", FIT_CASES)
@settings(max_examples=15, deadline=None)
@given(R=rotations(), seed=seeds)
def test_every_error_below_both_aposteriori_bounds(L, rank, R, seed):
    T = cg_tensor(L)
    factors = _fit(L, rank)
    bounds = aposteriori_bound(T, factors)
    x, y = _unit_pair(seed, T.shape[0])
    eps = equivariance_error(factors, R, 3.0 * x, 0.5 * y)  # bilinear: ||x|| ||y|| = 1.5
    assert eps <= bounds["spectral"] * 1.5 * (1 + 1e-12)
    assert eps <= bounds["projected_spectral"] * 1.5 * (1 + 1e-12)
    assert bounds["spectral"] <= bounds["frobenius"] * (1 + 1e-12)


@pytest.mark.parametrize("L, rank", FIT_CASES)
def test_sampled_errors_below_bounds(L, rank):
    T = cg_tensor(L)
    factors = _fit(L, rank)
    errors = sample_equivariance_errors(factors, 300, seed=7)
    bounds = aposteriori_bound(T, factors)
    assert errors.shape == (300,)
    assert errors.max() <= bounds["spectral"] * (1 + 1e-12)
    assert errors.max() <= bounds["frobenius"] * (1 + 1e-12)
    assert errors.max() <= bounds["projected_spectral"] * (1 + 1e-12)
    assert errors.max() > 1e-6
    # Thm 3.1's figure: the fit beats the a-priori HOSVD bound here, so 2 B_3.1 bounds eps too
    assert np.linalg.norm(to_dense(factors) - T) <= thm31_bound(T, rank)
    assert errors.max() <= thm31_equivariance_bound(
        T, rank
    )  # a fit this coarse is visibly non-equivariant


def test_sample_equivariance_errors_is_seeded():
    factors = _fit(2, 4)
    a = sample_equivariance_errors(factors, 20, seed=5)
    b = sample_equivariance_errors(factors, 20, seed=5)
    c = sample_equivariance_errors(factors, 20, seed=6)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)


def test_spectral_bound_is_attained():
    """Sharpness: E = c e_z(x)e_z(x)e_z in the l=1 block, R = rotation by pi about x.

    rho(R) E = -E (z -> -z three times), so the defect is -2 E and eps(R, e_z, e_z) = 2 |c|
    = 2 ||E_(1)||_2: the a-posteriori spectral bound holds with equality.
    """
    T = cg_tensor(1)
    c = 0.3
    E = np.zeros_like(T)
    E[3, 3, 3] = c  # flat index 3 = z component of the l=1 block (basis x, y, z)
    R = np.diag([1.0, -1.0, -1.0])
    ez = np.eye(4)[3]
    bound = aposteriori_bound(T, T + E)["spectral"]
    assert bound == pytest.approx(2 * c, rel=1e-14)
    assert aposteriori_bound(T, T + E)["projected_spectral"] == pytest.approx(bound, rel=1e-12)
    assert equivariance_error(T + E, R, ez, ez) == pytest.approx(bound, rel=1e-12)
    found = worst_case_equivariance_error(T + E, starts=4, seed=0)
    assert bound * 0.999 <= found["value"] <= bound * (1 + 1e-12)


@pytest.mark.parametrize("L, rank", [(1, 2), (2, 4), (3, 9)])
def test_worst_case_search_is_consistent_and_below_bound(L, rank):
    T = cg_tensor(L)
    factors = _fit(L, rank)
    found = worst_case_equivariance_error(factors, starts=3, seed=1)
    x, y, R = found["x"], found["y"], found["rotation"]
    assert np.linalg.norm(x) == pytest.approx(1.0, abs=1e-12)
    assert np.linalg.norm(y) == pytest.approx(1.0, abs=1e-12)
    np.testing.assert_allclose(R.T @ R, np.eye(3), atol=1e-10)
    assert np.linalg.det(R) == pytest.approx(1.0, abs=1e-10)
    assert equivariance_error(factors, R, x, y) == pytest.approx(found["value"], rel=1e-9)
    bounds = aposteriori_bound(T, factors)
    assert found["value"] <= min(bounds["spectral"], bounds["projected_spectral"]) * (1 + 1e-12)
    # the search must do at least as well as random sampling of the same cost
    assert found["value"] >= sample_equivariance_errors(factors, 100, seed=2).max()


# ------------------------------------------------------------------ Theorem 3.1 (HOSVD form)


@pytest.mark.parametrize("L", [1, 2, 3])
@pytest.mark.parametrize("rank", [1, 8, 27, 64, 100, 5000])
def test_thm31_bounds_its_hosvd_truncation(L, rank):
    T = cg_tensor(L)
    A, B, C = hosvd_cp(T, rank)
    r_t = int(np.floor(rank ** (1 / 3) + 1e-9))
    assert A.shape[1] == min(r_t, T.shape[0]) ** 3 <= rank
    err = float(np.linalg.norm(cp_to_tensor(A, B, C) - T))
    bound = thm31_bound(T, rank)
    assert err <= bound * (1 + 1e-12) + 1e-12
    # the truncation's equivariance errors obey 2 * bound per unit inputs
    errors = sample_equivariance_errors((A, B, C), 50, seed=rank)
    assert errors.max() <= thm31_equivariance_bound(T, rank) * (1 + 1e-12) + 1e-12
    assert thm31_equivariance_bound(T, rank) == pytest.approx(2 * bound)


@given(rank=st.integers(1, 10**6))
def test_thm31_truncation_rank_is_the_integer_cube_root(rank):
    r = thm31_truncation_rank(rank)
    assert r**3 <= rank < (r + 1) ** 3


@settings(max_examples=15, deadline=None)
@given(seed=seeds, rank=st.integers(1, 130))
def test_thm31_on_random_tensors(seed, rank):
    """HOSVD truncation error <= Thm 3.1 bound for arbitrary tensors, not only CG tensors."""
    T = np.random.default_rng(seed).standard_normal((5, 6, 7))
    err = float(np.linalg.norm(to_dense(hosvd_cp(T, rank)) - T))
    assert err <= thm31_bound(T, rank) * (1 + 1e-12) + 1e-12


@pytest.mark.parametrize("L", [1, 2, 3, 4])
def test_thm31_is_vacuous_at_the_papers_rank(L):
    """At R = 7 L^2 the a-priori bound exceeds ||T||_F (the zero tensor does better)."""
    T = cg_tensor(L)
    assert thm31_bound(T, 7 * L * L) >= np.linalg.norm(T)


def test_thm31_is_exact_at_full_multilinear_rank():
    T = cg_tensor(2)
    assert thm31_bound(T, 9**3) == pytest.approx(0.0, abs=1e-12)
    assert np.linalg.norm(to_dense(hosvd_cp(T, 9**3)) - T) < 1e-12


# ------------------------------------------------------------------ Haar average


def test_invariant_basis_is_orthonormal_and_invariant():
    L = 2
    basis = invariant_path_basis(L)
    assert len(basis) == 15
    d = 9
    for _, (s3, s1, s2), U in basis:
        assert np.linalg.norm(U) == pytest.approx(1.0, rel=1e-14)
        embedded = np.zeros((d, d, d))
        embedded[s3, s1, s2] = U
        assert_equivariant(
            lambda x, y, T=embedded: np.einsum("kij,ni,nj->nk", T, x, y),
            L,
            n_samples=4,
            seed=11,
            adversarial=False,
            rtol=1e-12,
        )


@pytest.mark.parametrize("L, rank", [(1, 2), (2, 4), (3, 30)])
def test_monte_carlo_haar_average_matches_exact(L, rank):
    """E_R ||rho(R) T_hat - T_hat||_F^2 = 2 q, q = ||(I - P) T_hat||_F^2.

    Each sample lies in [0, 4 q] (rho(R) P T_hat = P T_hat), so by Hoeffding the mean of
    N = 2000 samples deviates from 2 q by more than 0.3 q with probability
    <= 2 exp(-2 N (0.3 q)^2 / (4 q)^2) = 2 exp(-22.5) ~ 3e-10 (and the seed is fixed).
    """
    factors = _fit(L, rank)
    exact = haar_mean_square(factors)
    q = exact / 2
    mean, samples = monte_carlo_mean_square(factors, 2000, seed=L)
    assert samples.max() <= 4 * q * (1 + 1e-9)
    assert abs(mean - exact) <= 0.3 * q
    # the unit-input version: E[eps^2] = 2 q / d^2 (CLT, 5 standard errors)
    d = (L + 1) ** 2
    eps2 = sample_equivariance_errors(factors, 4000, seed=L + 10) ** 2 * d * d
    assert abs(eps2.mean() - exact) <= 5 * eps2.std() / np.sqrt(eps2.size)
    # and the exact average is at most 2 ||E||_F^2
    T = cg_tensor(L)
    assert exact <= 2 * np.linalg.norm(to_dense(factors) - T) ** 2 * (1 + 1e-12)


def test_projection_is_idempotent_and_removes_noise():
    rng = np.random.default_rng(0)
    T = cg_tensor(2, "cg")
    noise = rng.standard_normal(T.shape)
    P_noise = project_invariant(noise)
    np.testing.assert_allclose(project_invariant(P_noise), P_noise, atol=1e-13)
    np.testing.assert_allclose(project_invariant(T), T, atol=1e-13)
    assert haar_mean_square(T + noise) == pytest.approx(
        2 * np.linalg.norm(noise - P_noise) ** 2, rel=1e-12
    )


# ------------------------------------------------------------------ check_fit and input errors


def test_check_fit_report_is_consistent():
    L, rank = 2, 4
    T = cg_tensor(L)
    A, B, C = _fit(L, rank)
    report = check_fit(T, (A, B, C), n_rotations=50, seed=0, worst_case=True, worst_case_starts=2)
    assert report.rank == rank and report.L == L and report.thm31_rank == 1
    assert report.lower_bound <= report.fit_error * (1 + 1e-12)
    assert report.relative_error == pytest.approx(report.fit_error / np.linalg.norm(T))
    assert report.mc_max_error <= report.aposteriori_spectral
    assert report.worst_case_error <= report.aposteriori_spectral * (1 + 1e-12)
    assert 0 < report.tightness_spectral <= 1 and report.tightness_frobenius <= 1
    assert 0 < report.tightness_projected <= 1 + 1e-12
    assert report.thm31_vacuous == (report.thm31_bound >= report.norm_T)
    assert report.hosvd_error <= report.thm31_bound * (1 + 1e-12)
    assert len(report.worst_case_rotation) == 3


#: the keys check_fit's dictionary always had, in order (worst-case extras after the method)
FIT_CHECK_KEYS = [
    "L",
    "d",
    "rank",
    "norm_T",
    "fit_error",
    "relative_error",
    "lower_bound",
    "relative_lower_bound",
    "thm31_rank",
    "thm31_bound",
    "thm31_equivariance_bound",
    "thm31_vacuous",
    "hosvd_error",
    "aposteriori_spectral",
    "aposteriori_frobenius",
    "aposteriori_projected",
    "haar_mean_square",
    "haar_rms_error",
    "n_rotations",
    "mc_mean_error",
    "mc_rms_error",
    "mc_max_error",
    "worst_case_error",
    "worst_case_method",
]
TIGHTNESS = ["tightness_spectral", "tightness_frobenius", "tightness_projected"]
EXTRAS = ["worst_case_rotation", "worst_case_x", "worst_case_y"]


@pytest.mark.parametrize("worst_case", [False, True])
def test_check_fit_is_a_frozen_report_with_the_same_keys(worst_case):
    import dataclasses
    import json

    T = cg_tensor(1)
    A, B, C = _fit(1, 2)
    report = check_fit(
        T, (A, B, C), n_rotations=5, seed=0, worst_case=worst_case, worst_case_starts=1
    )
    assert isinstance(report, FitCheck)
    as_dict = report.to_dict()
    assert list(as_dict) == FIT_CHECK_KEYS + (EXTRAS if worst_case else []) + TIGHTNESS
    assert as_dict["mc_max_error"] == report.mc_max_error and json.dumps(as_dict)
    assert (report.worst_case_method == "max over samples") != worst_case
    with pytest.raises(dataclasses.FrozenInstanceError):
        report.rank = 3
    with pytest.warns(DeprecationWarning, match="FitCheck"):
        assert report["rank"] == 2  # the old dictionary access, kept for one release


class _FitLike:
    def __init__(self, A, B, C):
        self.A, self.B, self.C = A, B, C


def test_objects_with_factor_attributes_are_accepted():
    A, B, C = _fit(1, 2)
    R = random_rotations(1, 0)[0]
    x, y = _unit_pair(1, 4)
    assert equivariance_error(_FitLike(A, B, C), R, x, y) == equivariance_error((A, B, C), R, x, y)


@pytest.mark.parametrize(
    "call",
    [
        lambda: equivariance_error(np.zeros((5, 5, 5)), np.eye(3), np.ones(5), np.ones(5)),
        lambda: equivariance_error(cg_tensor(1), np.eye(3), np.ones(3), np.ones(4)),
        lambda: equivariance_error(
            (np.ones((4, 2)), np.ones((4, 3)), np.ones((4, 2))), np.eye(3), np.ones(4), np.ones(4)
        ),
        lambda: equivariance_error("abc", np.eye(3), np.ones(4), np.ones(4)),
        lambda: sample_equivariance_errors(cg_tensor(1), 0, seed=0),
        lambda: thm31_bound(cg_tensor(1), 0),
        lambda: thm31_bound(cg_tensor(1), 2.5),
        lambda: worst_case_equivariance_error(cg_tensor(1), starts=0),
        lambda: aposteriori_bound(cg_tensor(1), cg_tensor(2)),
    ],
)
def test_bad_input_raises_value_error(call):
    with pytest.raises(ValueError):
        call()
