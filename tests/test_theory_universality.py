"""Theorem 3.2 (universality) and the Gaunt-by-quadrature exact CP (proofs/universality.md)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tdn_theory.cp import cp_to_tensor
from tdn_theory.cp.quadrature import required_degree, sphere_cp, sphere_rule
from tdn_theory.so3 import cg_tensor, paths
from tdn_theory.testing.references import equivariant_space_dimension
from tdn_theory.testing.strategies import rotations
from tdn_theory.theory.equivariance import (
    equivariance_error,
    haar_mean_square,
    sample_equivariance_errors,
)
from tdn_theory.theory.universality import (
    constructive_cp,
    equivariant_map,
    path_coefficients,
    random_equivariant_map,
    rank_scan,
)

seeds = st.integers(min_value=0, max_value=2**32 - 1)


@settings(max_examples=10, deadline=None)
@given(seed=seeds, L=st.integers(1, 3), parity=st.sampled_from(["all", "even", "odd"]))
def test_constructive_cp_reproduces_random_equivariant_maps(seed, L, parity):
    """Thm 3.2: R = d^2 indicator factors reproduce T to 1e-12 (in fact bit for bit)."""
    T = random_equivariant_map(L, seed, parity)
    A, B, C = constructive_cp(T)
    d = (L + 1) ** 2
    assert A.shape == B.shape == C.shape == (d, d * d)
    assert np.abs(cp_to_tensor(A, B, C) - T).max() <= 1e-12 * max(1.0, np.abs(T).max())
    # the layer form A (B^T x ⊙ C^T y) equals the bilinear map
    rng = np.random.default_rng(seed)
    x, y = rng.standard_normal((2, d))
    np.testing.assert_allclose(
        A @ ((B.T @ x) * (C.T @ y)), np.einsum("kij,i,j->k", T, x, y), atol=1e-12
    )
    pruned = constructive_cp(T, prune=True)
    assert pruned[0].shape[1] == int(np.count_nonzero(np.any(T != 0, axis=0)))
    assert np.abs(cp_to_tensor(*pruned) - T).max() <= 1e-12 * max(1.0, np.abs(T).max())


@settings(max_examples=10, deadline=None)
@given(R=rotations(), seed=seeds, L=st.integers(1, 3))
def test_random_equivariant_maps_are_equivariant(R, seed, L):
    T = random_equivariant_map(L, seed)
    rng = np.random.default_rng(seed)
    x, y = rng.standard_normal((2, T.shape[0]))
    assert equivariance_error(T, R, x, y) < 1e-12 * max(1.0, np.abs(T).max()) * 10
    assert equivariance_error(constructive_cp(T), R, x, y) < 1e-11 * max(1.0, np.abs(T).max())


def test_constructive_cp_of_a_non_equivariant_tensor_is_exact_but_not_equivariant():
    """The construction does not need equivariance; equivariance is inherited from T only."""
    T = np.random.default_rng(0).standard_normal((9, 9, 9))
    assert np.array_equal(cp_to_tensor(*constructive_cp(T)), T)
    assert sample_equivariance_errors(constructive_cp(T), 20, seed=0).max() > 1e-3


@pytest.mark.parametrize("L", [1, 2, 3])
def test_path_coefficients_recover_the_map(L):
    T = random_equivariant_map(L, seed=L)
    alphas, residual = path_coefficients(T)
    assert residual < 1e-12
    assert set(alphas) == set(paths(L))
    np.testing.assert_allclose(equivariant_map(L, alphas), T, atol=1e-13)


@pytest.mark.parametrize("L", [1, 2, 3])
@pytest.mark.parametrize("normalization", ["unit", "cg", "gaunt", "sphere"])
def test_cg_tensors_lie_in_the_span_of_path_tensors(L, normalization):
    T = cg_tensor(L, normalization)
    _, residual = path_coefficients(T)
    assert residual < 1e-12 * np.linalg.norm(T)
    assert haar_mean_square(T) < 1e-24 * np.linalg.norm(T) ** 2


def test_random_maps_differ_by_seed():
    assert not np.allclose(random_equivariant_map(2, 0), random_equivariant_map(2, 1))
    np.testing.assert_array_equal(random_equivariant_map(2, 5), random_equivariant_map(2, 5))


@pytest.mark.parametrize(
    "l1, l2, l3",
    [
        (0, 0, 0),
        (1, 1, 0),
        (1, 1, 1),
        (1, 1, 2),
        (1, 1, 3),
        (2, 1, 0),
        (2, 2, 4),
        (2, 1, 3),
        (3, 1, 1),
        (0, 2, 1),
    ],
)
def test_schur_dimension_of_equivariant_blocks(l1, l2, l3):
    """dim of invariants in l3 x l1 x l2 is 1 iff the triangle rule holds, else 0 (Schur)."""
    expected = 1 if abs(l1 - l2) <= l3 <= l1 + l2 else 0
    assert equivariant_space_dimension(l1, l2, l3, seed=1) == expected


def test_rank_scan_finds_an_exact_fit_for_L1():
    """Empirical study, smallest case: a random L=1 map is fitted exactly (< 1e-10) at rank 8.

    The constructive bound gives 16; the fit finds 8 (measured; ALS + Levenberg-Marquardt).
    """
    T = random_equivariant_map(1, seed=0)
    result = rank_scan(T, range(6, 10), seed=0)
    errors = dict(zip(result["ranks"], result["relative_errors"], strict=True))
    assert errors[6] > 1e-3  # well below the exact rank the fit is visibly inexact
    assert result["smallest_exact_rank"] is not None
    assert result["smallest_exact_rank"] <= 16  # never worse than Thm 3.2's construction
    assert errors[result["smallest_exact_rank"]] < 1e-10


# ------------------------------------------------------------------ Gaunt by quadrature


@pytest.mark.parametrize("L", [1, 2, 3])
@pytest.mark.parametrize("rule", ["lebedev", "gauss-legendre"])
def test_gaunt_tensor_has_an_exact_quadrature_cp(L, rule):
    """sum_n w_n Y(r_n)^(x)3 equals the real Gaunt tensor when the rule is exact to degree 3L."""
    fit = sphere_cp(L, parity="even", rule=rule)
    points, _ = sphere_rule(required_degree(L, "even"), rule)
    assert fit.A.shape[1] == len(points)
    gaunt = cg_tensor(L, "gaunt")
    assert np.abs(cp_to_tensor(fit.A, fit.B, fit.C) - gaunt).max() < 1e-12
    assert sample_equivariance_errors(fit, 50, seed=L).max() < 1e-12


def test_odd_paths_vanish_under_scalar_quadrature():
    """Y_k Y_i Y_j integrates to 0 on odd paths: the scalar form cannot produce them."""
    fit = sphere_cp(2, parity="even")
    T = cp_to_tensor(fit.A, fit.B, fit.C)
    alphas, _ = path_coefficients(T)
    for (l1, l2, l3), alpha in alphas.items():
        if (l1 + l2 + l3) % 2:
            assert abs(alpha) < 1e-13


@pytest.mark.parametrize(
    "call",
    [
        lambda: constructive_cp(np.zeros((3, 3))),
        lambda: equivariant_map(1, {(1, 1, 3): 1.0}),
        lambda: equivariant_map(-1, {}),
        lambda: path_coefficients(np.zeros((5, 5, 5))),
        lambda: random_equivariant_map(1.5, 0),
    ],
)
def test_bad_input_raises_value_error(call):
    with pytest.raises(ValueError):
        call()
