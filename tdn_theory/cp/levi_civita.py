"""An exact rank-5 CP of the Levi-Civita tensor (the cross product, the CG path 1 ⊗ 1 -> 1).

The cross product c = u × v has components c_k = Σ_ij ε[k, i, j] u_i v_j = uᵀ E_k v with the
skew matrices E_k[i, j] = ε[k, i, j]. Naively that is 6 products; 5 suffice:

Write a rank-one bilinear form (x·u)(y·v) as the matrix x yᵀ = S + K (symmetric part
S = (x yᵀ + y xᵀ)/2, skew part K = (x yᵀ - y xᵀ)/2). Take, with e_1, e_2, e_3 the standard basis,

    x1 = e2 + e3, y1 = e2 - e3   ->  S1 = diag(0, 1, -1),  K1 = -E_1
    x2 = e3 + e1, y2 = e3 - e1   ->  S2 = diag(-1, 0, 1),  K2 = -E_2
    x3 = e1 + e2, y3 = e1 - e2   ->  S3 = diag(1, -1, 0),  K3 = -E_3

and the five forms F1 = x1 y1ᵀ, F2 = y1 x1ᵀ, F3 = x2 y2ᵀ, F4 = x3 y3ᵀ, F5 = y3 x3ᵀ. Because
S1 + S2 + S3 = 0:

    E_1 = (F2 - F1) / 2,   E_3 = (F5 - F4) / 2,
    E_2 = -K2 = S2 - F3 = -(S1 + S3) - F3 = -F3 - (F1 + F2)/2 - (F4 + F5)/2.

So ε[k, i, j] = Σ_{r<5} A[k, r] B[i, r] C[j, r] with B's columns (x1, y1, x2, x3, y3), C's
columns (y1, x1, y2, y3, x3) and A the coefficient rows above. All entries are in {0, ±1/2, ±1}:
the decomposition is exact in floating point. Rank 5 is optimal: the Koszul–Young bound of
tdn_theory.theory.rank_lower certifies border rank >= 5 (proofs/rank_bounds.md).

In e3nn's real basis the l = 1 components are ordered (y, z, x), a cyclic (orientation
preserving) permutation of (x, y, z), so ε keeps its form; the unit-normalized CG block of the
path (1, 1, 1) is ±ε/√6, and the sign is read off so3.unit_block.
"""

from __future__ import annotations

import math

import numpy as np

from tdn_theory.so3 import cg_tensor, degree_slices, path_weight, unit_block

__all__ = ["levi_civita", "levi_civita_cp", "path_111_cp"]


def levi_civita() -> np.ndarray:
    """The (3, 3, 3) Levi-Civita tensor ε[k, i, j] (ε[0, 1, 2] = 1): (u × v)_k = ε[k] u v."""
    eps = np.zeros((3, 3, 3))
    for k, i, j in ((0, 1, 2), (1, 2, 0), (2, 0, 1)):
        eps[k, i, j] = 1.0
        eps[k, j, i] = -1.0
    return eps


def levi_civita_cp() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Exact rank-5 factors (A, B, C), each (3, 5), with ε = einsum("kr,ir,jr->kij", A, B, C)."""
    e = np.eye(3)
    x1, y1 = e[1] + e[2], e[1] - e[2]
    x2, y2 = e[2] + e[0], e[2] - e[0]
    x3, y3 = e[0] + e[1], e[0] - e[1]
    B = np.stack([x1, y1, x2, x3, y3], axis=1)
    C = np.stack([y1, x1, y2, y3, x3], axis=1)
    A = np.array(
        [
            [-0.5, 0.5, 0.0, 0.0, 0.0],
            [-0.5, -0.5, -1.0, -0.5, -0.5],
            [0.0, 0.0, 0.0, -0.5, 0.5],
        ]
    )
    return A, B, C


def path_111_cp(
    L: int = 1, normalization: str = "unit"
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Exact rank-5 factors (A, B, C), each (d, 5), d = (L+1)^2, of the path (1, 1, 1) alone.

    The reconstruction is the (d, d, d) tensor that is zero except for the block
    [l3=1, l1=1, l2=1] of cg_tensor(L, normalization), i.e. for L = 1 exactly
    cg_tensor(1, normalization, "odd").
    """
    sl = degree_slices(L)[1]
    block = unit_block(1, 1, 1)  # [m3, m1, m2]
    eps = levi_civita()
    scale = float(np.sum(block * eps) / np.sum(eps * eps))  # ±1/sqrt(6)
    if not np.allclose(block, scale * eps, atol=1e-15) or not math.isclose(
        abs(scale), 1 / math.sqrt(6), rel_tol=1e-14
    ):
        raise ValueError("path_111_cp: so3.unit_block(1, 1, 1) is not ±ε/√6 (basis mismatch)")
    a, b, c = levi_civita_cp()
    d = cg_tensor(L, normalization).shape[0]
    A, B, C = (np.zeros((d, 5)) for _ in range(3))
    A[sl] = scale * path_weight(1, 1, 1, normalization) * a
    B[sl], C[sl] = b, c
    return A, B, C
