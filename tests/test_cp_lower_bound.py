"""The certified Eckart–Young lower bound never exceeds the error of an actual rank-R fit."""

import numpy as np
import pytest
import tensorly as tl
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from tdn_theory.cp import error_lower_bound, fit_cp, relative_error
from tdn_theory.cp.lower_bound import absolute_lower_bound, unfolding_singular_values
from tdn_theory.so3 import cg_tensor

QUICK = {"restarts": 1, "max_iter": 40, "refine_iter": 0, "polish_iter": 15}


@st.composite
def small_tensors(draw):
    shape = tuple(draw(st.integers(2, 4)) for _ in range(3))
    T = draw(arrays(np.float64, shape, elements=st.floats(-2, 2, allow_nan=False, width=64)))
    if np.linalg.norm(T) < 1e-3:
        T = T.copy()
        T[(0, 0, 0)] += 1.0
    return T


@given(T=small_tensors(), rank=st.integers(1, 5), seed=st.integers(0, 2**16))
def test_lower_bound_never_exceeds_a_fitted_error(T, rank, seed):
    bound = error_lower_bound(T, rank)
    fit = fit_cp(T, rank, seed=seed, **QUICK)
    assert 0.0 <= bound <= fit.relative_error * (1 + 1e-9) + 1e-12


@given(rank=st.integers(1, 6), seed=st.integers(0, 2**16))
def test_lower_bound_never_exceeds_any_random_cp(rank, seed):
    rng = np.random.default_rng(seed)
    T = cg_tensor(1)
    factors = [rng.standard_normal((4, rank)) for _ in range(3)]
    err = relative_error(T, np.einsum("kr,ir,jr->kij", *factors))
    assert error_lower_bound(T, rank) <= err


@pytest.mark.parametrize(
    ("L", "ranks"), [(1, [1, 2, 3, 4, 5]), (2, [2, 5, 9, 12]), (3, [8, 16]), (4, [16])]
)
def test_lower_bound_below_fit_error_on_cg_tensors(L, ranks):
    T = cg_tensor(L)
    for rank in ranks:
        fit = fit_cp(T, rank, seed=0, restarts=2, max_iter=100, refine_iter=100, polish_iter=30)
        assert error_lower_bound(T, rank) <= fit.relative_error * (1 + 1e-9)


def test_matches_an_independent_tensorly_computation():
    T = cg_tensor(3)
    for rank in (1, 5, 10, 15, 16):
        tails = []
        for mode in range(3):
            s = np.linalg.svd(tl.unfold(tl.tensor(T), mode), compute_uv=False)
            tails.append(np.sqrt(np.sum(s[rank:] ** 2)))
        assert error_lower_bound(T, rank) == pytest.approx(
            max(tails) / np.linalg.norm(T), abs=1e-14
        )
        assert absolute_lower_bound(T, rank) == pytest.approx(max(tails), abs=1e-13)


def test_bound_is_attained_by_a_diagonal_tensor():
    """For T = sum_r w_r e_r (x) e_r (x) e_r the best rank-(n-1) CP drops the smallest term."""
    w = np.array([3.0, 2.0, 1.5, 0.5])
    T = np.zeros((4, 4, 4))
    T[np.arange(4), np.arange(4), np.arange(4)] = w
    bound = error_lower_bound(T, 3)
    assert bound == pytest.approx(0.5 / np.linalg.norm(w), rel=1e-12)
    fit = fit_cp(T, 3, seed=0, restarts=3, max_iter=100, refine_iter=100, polish_iter=30)
    assert fit.relative_error == pytest.approx(bound, rel=1e-6)


def test_zero_once_rank_reaches_the_unfolding_ranks():
    T = cg_tensor(2)
    d = T.shape[0]
    assert error_lower_bound(T, d) == pytest.approx(0.0, abs=1e-14)
    assert error_lower_bound(T, d - 1) > 0.0
    sv = unfolding_singular_values(T)
    assert [len(s) for s in sv] == [d, d, d]
    assert all(np.all(np.diff(s) <= 1e-12) for s in sv)


def test_monotone_in_rank():
    T = cg_tensor(3)
    bounds = [error_lower_bound(T, r) for r in range(1, 18)]
    assert all(b <= a + 1e-15 for a, b in zip(bounds, bounds[1:], strict=False))


@pytest.mark.parametrize(
    ("rank", "T", "match"),
    [
        (0, np.ones((2, 2, 2)), "rank must be an integer >= 1; got 0"),
        (1.0, np.ones((2, 2, 2)), "rank must be an integer"),
        (1, np.full((2, 2, 2), np.inf), "NaN or infinite"),
        (1, np.zeros((2, 2, 2)), "T is zero"),
    ],
)
def test_bad_input(rank, T, match):
    with pytest.raises(ValueError, match=match):
        error_lower_bound(T, rank)


def test_rank_lower_bound_is_a_deprecated_alias():
    """The old name (it bounds the error at rank R, not the rank) warns and returns the same."""
    from tdn_theory import cp

    T = cg_tensor(1)
    with pytest.warns(DeprecationWarning, match="error_lower_bound"):
        old = cp.rank_lower_bound(T, 3)
    assert old == error_lower_bound(T, 3) > 0.0


def test_unfold_is_tensorlys_unfolding():
    """The one unfolding of the package (tensor_ops.unfold) is tensorly's, mode by mode."""
    from tdn_theory.cp.tensor_ops import unfold

    T = np.random.default_rng(0).normal(size=(2, 3, 4))
    for mode in range(3):
        assert np.array_equal(unfold(T, mode), tl.unfold(tl.tensor(T), mode))
    assert unfold(T, 0)[1, 2 * 4 + 3] == T[1, 2, 3]  # mode 0: rows k, columns (i, j)
