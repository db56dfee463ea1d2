"""Lower bounds on CP rank (theory.rank_lower), the Levi-Civita rank-5 form, the rank search.

Each bound is checked against its definition (an independent construction of the
Koszul–Young map, numpy's matrix rank), against known values (generic tensors, the
Levi-Civita tensor) and for validity: no bound may exceed the rank of a planted CP tensor.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tdn_theory import so3
from tdn_theory.cp import cp_to_tensor, relative_error
from tdn_theory.cp.levi_civita import levi_civita, levi_civita_cp, path_111_cp
from tdn_theory.testing.strategies import degrees
from tdn_theory.theory.rank_lower import (
    best_lower_bound,
    flattening_bound,
    flattening_ranks,
    koszul_young_bound,
    koszul_young_matrix,
    lower_bounds,
    numerical_rank,
    restriction_matrix,
)
from tdn_theory.theory.rank_upper import (
    RankAttempt,
    scaled_sphere_cp,
    search_exact_rank,
    try_rank,
    weight_ratio,
)


def planted_cp(dims, rank, seed):
    rng = np.random.default_rng(seed)
    return cp_to_tensor(*(rng.standard_normal((n, rank)) for n in dims))


def wedge_reference(slices: np.ndarray, p: int) -> np.ndarray:
    """Koszul–Young map built from its definition on basis vectors (independent code path).

    e_S ⊗ e_b ↦ Σ_a (e_a ∧ e_S) ⊗ T_aᵀ e_b, with e_a ∧ e_S expanded as the signed sorted
    tuple; the sign is the parity of the permutation that sorts (a, *S).
    """
    n, dB, dC = slices.shape
    cols = list(itertools.combinations(range(n), p))
    rows = list(itertools.combinations(range(n), p + 1))
    M = np.zeros((len(rows) * dC, len(cols) * dB))
    for j, S in enumerate(cols):
        for b in range(dB):
            image = np.zeros((len(rows), dC))
            for a in range(n):
                word = (a, *S)
                if len(set(word)) < len(word):
                    continue
                inversions = sum(1 for x, y in itertools.combinations(word, 2) if x > y)
                image[rows.index(tuple(sorted(word)))] += (-1) ** inversions * slices[a][b, :]
            M[:, j * dB + b] = image.ravel()
    return M


# ---------------------------------------------------------------- numerical rank
@given(st.integers(0, 2**32 - 1), st.integers(1, 6), st.integers(0, 6))
def test_numerical_rank_matches_matrix_rank(seed, m, r):
    rng = np.random.default_rng(seed)
    n = m + 2
    r = min(r, m)
    M = rng.standard_normal((m, r)) @ rng.standard_normal((r, n))
    nr = numerical_rank(M)
    assert nr.rank == np.linalg.matrix_rank(M, tol=1e-10 * max(np.linalg.norm(M, 2), 1e-300))
    assert nr.rank == r
    if r:
        assert nr.sigma_kept > nr.threshold >= nr.delta
        assert nr.sigma_dropped <= nr.threshold


def test_numerical_rank_rejects_bad_input():
    with pytest.raises(ValueError, match="matrix"):
        numerical_rank(np.zeros(3))
    with pytest.raises(ValueError, match="non-finite"):
        numerical_rank(np.array([[np.nan]]))
    with pytest.raises(ValueError, match="rtol"):
        numerical_rank(np.eye(2), rtol=2.0)


# ---------------------------------------------------------------- Koszul–Young map
@pytest.mark.parametrize("n,p", [(3, 1), (4, 1), (5, 2), (3, 0), (5, 1)])
def test_koszul_young_matrix_matches_definition(n, p):
    rng = np.random.default_rng(n * 10 + p)
    slices = rng.standard_normal((n, 3, 4))
    assert np.array_equal(koszul_young_matrix(slices, p), wedge_reference(slices, p))


def test_koszul_young_p0_is_the_flattening():
    T = planted_cp((4, 5, 6), 3, seed=1)
    for mode in range(3):
        b = koszul_young_bound(T, 0, mode=mode, n=T.shape[mode] + 1, seed=2)
        assert b.value == flattening_ranks(T)[mode].rank == 3


def test_koszul_young_generic_value_is_strassen_bound():
    # A generic tensor in C^3 ⊗ C^m ⊗ C^m: T^{∧1} has full rank 3m, bound ceil(3m/2).
    rng = np.random.default_rng(0)
    for m in (2, 3, 5):
        T = rng.standard_normal((3, m, m))
        b = koszul_young_bound(T, 1, mode=0, seed=0)
        assert b.matrix_rank.rank == 3 * m
        assert b.value == math.ceil(3 * m / 2)


def test_levi_civita_rank_is_exactly_five():
    eps = levi_civita()
    assert koszul_young_bound(eps, 1, mode=0, seed=0).value == 5  # border rank >= 5
    assert flattening_bound(eps).value == 3
    A, B, C = levi_civita_cp()
    assert A.shape == (3, 5)
    assert np.array_equal(cp_to_tensor(A, B, C), eps)  # exact, not just close
    # The cross product itself.
    u, v = np.array([1.0, 2.0, -3.0]), np.array([0.5, -1.0, 4.0])
    assert np.allclose(A @ ((B.T @ u) * (C.T @ v)), np.cross(u, v), atol=1e-14)


@pytest.mark.parametrize("normalization", ["unit", "cg"])
def test_path_111_cp_reproduces_the_cg_block(normalization):
    A, B, C = path_111_cp(1, normalization)
    assert relative_error(so3.cg_tensor(1, normalization, "odd"), cp_to_tensor(A, B, C)) < 1e-15
    A2, B2, C2 = path_111_cp(2, normalization)
    T2 = so3.cg_tensor(2, normalization)
    sl = so3.degree_slices(2)[1]
    assert np.allclose(cp_to_tensor(A2, B2, C2)[sl, sl, sl], T2[sl, sl, sl], atol=1e-15)


@given(st.integers(0, 2**32 - 1), st.integers(1, 9), st.sampled_from([(4, 4, 4), (3, 5, 6)]))
def test_every_lower_bound_is_at_most_a_planted_rank(seed, rank, dims):
    T = planted_cp(dims, rank, seed)
    for b in lower_bounds(T, max_p=2, seeds=(0, 1)):
        assert b.value <= rank, b


@given(degrees(3))
def test_cg_tensor_flattenings_are_full(L):
    d = so3.dim(L)
    assert flattening_bound(so3.cg_tensor(L)).value == d
    # odd paths never touch l = 0, so their unfoldings have rank d - 1
    assert flattening_bound(so3.cg_tensor(L, "unit", "odd")).value == d - 1


def test_koszul_young_beats_flattening_on_cg_tensor():
    T = so3.cg_tensor(2)
    best = best_lower_bound(T, max_p=2)
    assert best.kind == "koszul_young" and best.value == 15 > flattening_bound(T).value == 9
    assert best.matrix_rank.relative_gap[0] > 1e-6  # far above the rounding threshold


def test_restriction_and_bound_inputs_are_checked():
    assert np.array_equal(restriction_matrix(3, 4, 7), restriction_matrix(3, 4, 7))
    with pytest.raises(ValueError, match="seed"):
        restriction_matrix(3, 4, -1)
    with pytest.raises(ValueError, match="mode"):
        koszul_young_bound(np.ones((2, 2, 2)), 1, mode=3)
    with pytest.raises(ValueError, match="3-way"):
        flattening_bound(np.ones((2, 2)))
    with pytest.raises(ValueError, match="p must"):
        koszul_young_matrix(np.ones((3, 2, 2)), 3)


# ---------------------------------------------------------------- upper-bound search
def oracle(threshold, calls):
    def attempt(R):
        calls.append(R)
        ok = R >= threshold
        return None, RankAttempt(R, 0.0 if ok else 0.1, ok, 0.0, 0, 1, None)

    return attempt


@given(st.integers(3, 60), st.integers(1, 80))
def test_bisection_finds_the_threshold_of_a_monotone_oracle(threshold, start):
    calls = []
    hi, tried = search_exact_rank(
        oracle(threshold, calls), lower=2, start=start, ceiling=200, max_up_steps=50
    )
    assert hi == threshold
    assert len(calls) == len(set(calls))  # no rank fitted twice
    again = []
    hi2, _ = search_exact_rank(
        oracle(threshold, again), lower=2, start=start, ceiling=200, known=tried
    )
    assert hi2 == threshold and again == []  # resuming repeats nothing


def test_bisection_gives_up_above_the_ceiling_and_honours_resolution():
    hi, _ = search_exact_rank(oracle(500, []), lower=1, start=10, ceiling=40, max_up_steps=50)
    assert hi is None
    calls = []
    hi, _ = search_exact_rank(oracle(70, calls), lower=1, start=100, ceiling=200, resolution=0.1)
    assert 70 <= hi <= 80 and len(calls) < 6


def test_try_rank_finds_a_planted_rank_and_confirms_it():
    T = planted_cp((5, 5, 5), 4, seed=3)
    fit, att = try_rank(T, 4, seed=0, restarts=2, time_budget=20.0)
    assert att.exact and att.relative_error < 1e-12
    assert relative_error(T, cp_to_tensor(fit.A, fit.B, fit.C)) == pytest.approx(
        att.relative_error, rel=1e-6, abs=1e-15
    )
    _, att3 = try_rank(T, 3, seed=0, restarts=2, time_budget=3.0)
    assert not att3.exact  # below the flattening rank 4: impossible
    with pytest.raises(ValueError, match="time_budget"):
        try_rank(T, 4, time_budget=0.0)


@pytest.mark.parametrize("L,normalization,parity", [(1, "unit", "all"), (2, "cg", "odd")])
def test_scaled_sphere_cp_is_exact_with_the_stated_rank(L, normalization, parity):
    res = scaled_sphere_cp(L, normalization, parity, restarts=3)
    T = so3.cg_tensor(L, normalization, parity)
    assert relative_error(T, cp_to_tensor(*res.fit.factors)) < 1e-12
    expected = sum(res.ranks[p] * res.points[p] * (1 if p == "even" else 2) for p in res.ranks)
    assert res.fit.rank == expected
    W, mask = weight_ratio(L, normalization, "even")
    assert mask.sum() == len(so3.paths(L, "even"))
    assert np.all(W[mask == 0] == 0) and np.all(W[mask == 1] != 0)
