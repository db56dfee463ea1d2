"""Certified (Eckart–Young) lower bound on the error of any rank-R CP approximation.

A CP tensor T_hat = sum_{r<R} a_r (x) b_r (x) c_r has every mode-n unfolding T_hat_(n) of
matrix rank <= R. The unfolding is linear and preserves the Frobenius norm, so for ANY such
T_hat and every mode n, by the Eckart–Young–Mirsky theorem,

    ||T - T_hat||_F = ||T_(n) - T_hat_(n)||_F >= sqrt( sum_{k > R} sigma_k(T_(n))^2 ),

sigma_k(T_(n)) the singular values of the unfolding in decreasing order. The bound is the
maximum over the three modes; it is zero once R >= min over n of rank(T_(n)).
"""

from __future__ import annotations

import numpy as np

from .tensor_ops import check_rank, check_target

__all__ = ["unfolding_singular_values", "rank_lower_bound", "absolute_lower_bound"]


def unfolding_singular_values(T: np.ndarray) -> list[np.ndarray]:
    """Singular values (decreasing) of the mode-0, mode-1, mode-2 unfoldings of a 3-way T."""
    T = np.asarray(T, dtype=np.float64)
    out = []
    for mode in range(3):
        unfolding = np.moveaxis(T, mode, 0).reshape(T.shape[mode], -1)
        out.append(np.linalg.svd(unfolding, compute_uv=False))
    return out


def absolute_lower_bound(T: np.ndarray, rank: int) -> float:
    """max_n sqrt(sum_{k>rank} sigma_k(T_(n))^2) <= ||T - T_hat||_F, any rank-R T_hat."""
    T = check_target(T, who="rank_lower_bound")
    rank = check_rank(rank, who="rank_lower_bound")
    tails = [float(np.sqrt(np.sum(s[rank:] ** 2))) for s in unfolding_singular_values(T)]
    return max(tails)


def rank_lower_bound(T: np.ndarray, rank: int) -> float:
    """Certified lower bound on the RELATIVE error ||T - T_hat||_F / ||T||_F of any rank-`rank` CP.

    Computed as the maximum over the three unfoldings of the Eckart–Young tail (module
    docstring) divided by ||T||_F. Floating-point round-off in the SVD (relative ~1e-15) is
    the only uncertainty; the value returned is not inflated.
    """
    T = check_target(T, who="rank_lower_bound")
    return absolute_lower_bound(T, rank) / float(np.linalg.norm(T))
