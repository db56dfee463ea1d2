"""Compression of exact CP decompositions (tdn_theory.cp.compress), on small cases."""

from __future__ import annotations

import numpy as np
import pytest

from tdn_theory.cp import cp_to_tensor, relative_error
from tdn_theory.cp.compress import compress_exact, unfolding_rank_floor
from tdn_theory.cp.quadrature import sphere_cp, sphere_tensor


def test_levi_civita_compresses_to_its_rank_5():
    """The odd part at L = 1 is the cross product (rank 5); the quadrature gives rank 12."""
    T = sphere_tensor(1, "odd")
    fit = sphere_cp(1, "odd")
    # 6 columns tried per rank: with 3 the path depends on the BLAS thread count (summation order;
    # OMP_NUM_THREADS=1 stalls at 6), with 6 both 1 and 2 threads reach 5
    result = compress_exact(T, *fit.factors, time_budget=60.0, tries_per_rank=6)
    assert result.start_rank == 12
    assert result.smallest_rank == 5
    assert result.floor == 3
    assert 0 < result.max_term < 10  # bounded terms: a true decomposition, not a border-rank limit
    assert result.fit.relative_error <= 1e-12
    assert relative_error(T, cp_to_tensor(*result.fit.factors)) == pytest.approx(
        result.fit.relative_error
    )
    assert result.stopped == "no_attempt_succeeded"
    assert all(a["relative_error"] > 1e-12 for a in result.attempts if a["rank"] == 4)


def test_full_parity_l1_compresses_below_the_construction():
    T = sphere_tensor(1, "all")
    result = compress_exact(
        T, *sphere_cp(1, "all").factors, time_budget=6.0, attempt_budget=1.5, lm_iter=300
    )
    assert result.smallest_rank < 18
    assert result.fit.relative_error <= 1e-12


def test_planted_low_rank_tensor():
    """An exact rank-6 tensor written with 3 redundant extra columns compresses back to <= 6."""
    rng = np.random.default_rng(5)
    A, B, C = (rng.standard_normal((5, 6)) for _ in range(3))
    T = cp_to_tensor(A, B, C)
    # a redundant rank-9 form: split three columns into two halves each
    A9 = np.concatenate([A[:, :3], A[:, 3:] / 2, A[:, 3:] / 2], axis=1)
    B9 = np.concatenate([B, B[:, 3:]], axis=1)
    C9 = np.concatenate([C, C[:, 3:]], axis=1)
    assert relative_error(T, cp_to_tensor(A9, B9, C9)) < 1e-14
    result = compress_exact(T, A9, B9, C9, time_budget=6.0, attempt_budget=1.5)
    assert result.smallest_rank <= 6
    assert unfolding_rank_floor(T) == 5


def test_refuses_inexact_start():
    T = sphere_tensor(1, "even")
    A, B, C = sphere_cp(1, "even").factors
    with pytest.raises(ValueError, match="exact decomposition"):
        compress_exact(T, A * 1.01, B, C)
    with pytest.raises(ValueError, match="tries_per_rank"):
        compress_exact(T, A, B, C, tries_per_rank=0)
