r"""Bounds on the equivariance error of a CP tensor: a-posteriori and the paper's Theorem 3.1.

Conventions (proofs/conventions.md): a bilinear map on features of degree <= L (d = (L+1)^2) is a
tensor ``T`` (d, d, d) indexed ``[k, i, j] = [output, input 1, input 2]``; a rank-R CP fit has
factors A (d x R, output), B, C and T_hat = einsum("kr,ir,jr->kij", A, B, C). Rotations act by
D = D(R) = ``tdn_theory.so3.block_wigner_D`` and on tensors by rho(R) T = D^T T (D, D); the
equivariance error is eps(R, x, y) = || M_hat(D x, D y) - D M_hat(x, y) ||_2
= ||(rho(R) T_hat - T_hat)(x, y)|| (the full statement is in ``tdn_theory.theory.equivariance``).

Proofs in proofs/equivariance_bound.md.

* ``aposteriori_bound``: for E = T_hat - T with T exactly equivariant,
  eps <= 2 ||E_(1)||_2 ||x|| ||y|| <= 2 ||E||_F ||x|| ||y|| (E_(1) the d x d^2 output unfolding).
* ``thm31_bound``: Theorem 3.1 (a-priori, HOSVD form): the Frobenius error of the HOSVD
  truncation of T to multilinear rank R_T = floor(R^(1/3)) (``hosvd_cp``), not of an arbitrary fit.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tdn_theory._checks import check_int
from tdn_theory.cp.lower_bound import unfolding_singular_values
from tdn_theory.cp.tensor_ops import (
    Factors,
    cube_degree,
    to_dense,
    unfold,
)
from tdn_theory.theory.measurements import project_invariant

__all__ = [
    "aposteriori_bound",
    "hosvd_cp",
    "mode_tail_energies",
    "thm31_bound",
    "thm31_equivariance_bound",
    "thm31_truncation_rank",
]


# --------------------------------------------------------------------------------------------
# bounds
# --------------------------------------------------------------------------------------------


def aposteriori_bound(T: np.ndarray, T_hat: Any) -> dict[str, float]:
    """A-posteriori bounds on eps per unit inputs, for T exactly equivariant and E = T_hat - T.

    Returns {"spectral": 2 ||E_(1)||_2, "frobenius": 2 ||E||_F,
    "projected_spectral": 2 ||((I - P) E)_(1)||_2}: E_(1) the output-mode unfolding (d3 x d1 d2,
    rows k, columns (i, j)), P the projection onto the invariant path tensors. For all R, x, y,

        eps(R, x, y) <= spectral ||x|| ||y|| <= frobenius ||x|| ||y||,
        eps(R, x, y) <= projected_spectral ||x|| ||y||.

    The projected form uses that the invariant part P E cancels in rho(R) E - E; as
    (I - P) E = (I - P) T_hat it needs T_hat only. It is usually the smallest of the three, but
    it is not ordered with "spectral" in general ((I - P) contracts the Frobenius norm, not the
    spectral norm of the unfolding).
    """
    T = np.asarray(T, dtype=np.float64)
    L = cube_degree(T)
    T_hat = to_dense(T_hat)
    if T_hat.shape != T.shape:
        raise ValueError(
            f"T_hat has shape {T_hat.shape} but T has shape {T.shape}; they must match"
        )
    E = T_hat - T
    E1 = E.reshape(E.shape[0], -1)
    Q = T_hat - project_invariant(T_hat, L)
    return {
        "spectral": 2.0 * float(np.linalg.norm(E1, 2)),
        "frobenius": 2.0 * float(np.linalg.norm(E)),
        "projected_spectral": 2.0 * float(np.linalg.norm(Q.reshape(Q.shape[0], -1), 2)),
    }


def mode_tail_energies(T: np.ndarray, r: int) -> np.ndarray:
    """[sum_{k>r} sigma_k(T_(n))^2 for n = 0, 1, 2], T_(n) the mode-n unfolding."""
    T = np.asarray(T, dtype=np.float64)
    if T.ndim != 3:
        raise ValueError(f"expected a 3-way tensor, got shape {T.shape}")
    r = check_int(r, "truncation rank")
    return np.array([float(np.sum(s[r:] ** 2)) for s in unfolding_singular_values(T)])


def thm31_truncation_rank(rank: int) -> int:
    """R_T = floor(R^(1/3)) computed in integers (no floating-point cube-root error)."""
    rank = check_int(rank, "rank", minimum=1)
    r = int(round(rank ** (1.0 / 3.0)))
    while r**3 > rank:
        r -= 1
    while (r + 1) ** 3 <= rank:
        r += 1
    return r


def thm31_bound(T: np.ndarray, rank: int) -> float:
    """The paper's Theorem 3.1, a-priori HOSVD form: the ABSOLUTE Frobenius bound

        B_3.1(T, R) = sqrt( sum_{n=1..3} sum_{k > R_T} sigma_k(T_(n))^2 ),   R_T = floor(R^(1/3)),

    on ||T - T_R||_F where T_R is the HOSVD truncation of T to multilinear rank (R_T, R_T, R_T),
    which is a CP tensor of rank R_T^3 <= R (``hosvd_cp``). It does NOT bound an arbitrary fit;
    it shows that some rank-R CP tensor is this close. The paper's equivariance bound is then
    eps <= 2 B_3.1(T, R) ||x|| ||y|| for that T_R (``thm31_equivariance_bound``). The bound is
    vacuous when B_3.1 >= ||T||_F (the zero tensor already achieves error ||T||_F).
    """
    return float(np.sqrt(np.sum(mode_tail_energies(T, thm31_truncation_rank(rank)))))


def thm31_equivariance_bound(T: np.ndarray, rank: int) -> float:
    """2 * thm31_bound(T, rank): Thm 3.1's bound on eps per unit inputs for the HOSVD truncation."""
    return 2.0 * thm31_bound(T, rank)


def hosvd_cp(T: np.ndarray, rank: int) -> Factors:
    """CP factors (A, B, C) of the HOSVD truncation of T to multilinear rank R_T = floor(R^(1/3)).

    With U_n the leading R_T left singular vectors of T_(n) and core G = T x_1 U_1^T x_2 U_2^T x_3
    U_3^T, T_R = sum_{a,b,c} G[a,b,c] U_1[:,a] o U_2[:,b] o U_3[:,c]: one CP term per core entry,
    rank r_1 r_2 r_3 <= R_T^3 <= R with r_n = min(R_T, d_n), and
    ||T - T_R||_F <= thm31_bound(T, R) (proofs/equivariance_bound.md).
    """
    T = np.asarray(T, dtype=np.float64)
    if T.ndim != 3:
        raise ValueError(f"expected a 3-way tensor, got shape {T.shape}")
    r_t = thm31_truncation_rank(rank)
    Us = []
    for n in range(3):
        U, _, _ = np.linalg.svd(unfold(T, n), full_matrices=False)
        Us.append(U[:, : min(r_t, T.shape[n])])
    G = np.einsum("kij,ka,ib,jc->abc", T, Us[0], Us[1], Us[2], optimize=True)
    a, b, c = (i.ravel() for i in np.meshgrid(*(np.arange(n) for n in G.shape), indexing="ij"))
    A = Us[0][:, a] * G[a, b, c][None, :]
    B = Us[1][:, b]
    C = Us[2][:, c]
    return A, B, C
