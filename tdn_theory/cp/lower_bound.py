"""Certified (Eckart–Young) lower bound on the error of any rank-R CP approximation.

A CP tensor T_hat = sum_{r<R} a_r (x) b_r (x) c_r has every mode-n unfolding T_hat_(n) of
matrix rank <= R. The unfolding is linear and preserves the Frobenius norm, so for ANY such
T_hat and every mode n, by the Eckart–Young–Mirsky theorem,

    ||T - T_hat||_F = ||T_(n) - T_hat_(n)||_F >= sqrt( sum_{k > R} sigma_k(T_(n))^2 ),

sigma_k(T_(n)) the singular values of the unfolding in decreasing order. The bound is the
maximum over the three modes; it is zero once R >= max over n of rank(T_(n)) (each mode's tail
vanishes once R reaches that unfolding's rank, so all three vanish only at the largest).

Exact arithmetic. The statement holds for the exact singular values. The returned number is
computed in float64 and is not inflated or deflated: by Mirsky's theorem the tail is 1-Lipschitz
in the singular values, so the computed value can exceed the exact one by up to about
c n eps ||T||_F (n the unfolding's larger side, eps = 2^-52, c a modest constant); e.g. a
planted exact rank-3 tensor (9 x 9 x 9, Gaussian factors) gives 1.8e-16 instead of 0 at R = 3.
Read values below ~1e-13 (relative) as zero; above that the bound is certified up to that margin.
"""

from __future__ import annotations

import warnings

import numpy as np

from .tensor_ops import check_rank, check_target, unfold

__all__ = [
    "unfolding_singular_values",
    "error_lower_bound",
    "absolute_lower_bound",
    "rank_lower_bound",
]


def unfolding_singular_values(T: np.ndarray) -> list[np.ndarray]:
    """Singular values (decreasing) of the mode-0, mode-1, mode-2 unfoldings of a 3-way T."""
    T = np.asarray(T, dtype=np.float64)
    out = []
    for mode in range(3):
        out.append(np.linalg.svd(unfold(T, mode), compute_uv=False))
    return out


def absolute_lower_bound(T: np.ndarray, rank: int) -> float:
    """max_n sqrt(sum_{k>rank} sigma_k(T_(n))^2) <= ||T - T_hat||_F, any rank-R T_hat."""
    T = check_target(T, who="absolute_lower_bound")
    rank = check_rank(rank, who="absolute_lower_bound")
    tails = [float(np.sqrt(np.sum(s[rank:] ** 2))) for s in unfolding_singular_values(T)]
    return max(tails)


def error_lower_bound(T: np.ndarray, rank: int) -> float:
    """Certified lower bound on the RELATIVE error ||T - T_hat||_F / ||T||_F of any rank-`rank` CP.

    Computed as the maximum over the three unfoldings of the Eckart–Young tail (module
    docstring) divided by ||T||_F. It holds in exact arithmetic; the float64 value may differ
    from the exact one by rounding, about n eps (relative), so values below ~1e-13 mean zero.
    """
    T = check_target(T, who="error_lower_bound")
    return absolute_lower_bound(T, rank) / float(np.linalg.norm(T))


def rank_lower_bound(T: np.ndarray, rank: int) -> float:
    """Deprecated name of :func:`error_lower_bound` (it bounds the error at a rank, not the rank);
    kept for one release."""
    warnings.warn(
        "tdn_theory.cp.rank_lower_bound is deprecated: it bounds the error at rank R, not the "
        "rank; use tdn_theory.cp.error_lower_bound",
        DeprecationWarning,
        stacklevel=2,
    )
    return error_lower_bound(T, rank)
