"""Slow, definition-level reference implementations used to check the fast ones (tests only).

Each follows its defining formula literally (proofs/conventions.md: tensors [k, i, j] = [output,
input 1, input 2], d = (L+1)^2): the Monte-Carlo Haar average of ||rho(R) T_hat - T_hat||_F^2
(checks ``tdn_theory.theory.haar_mean_square``), the double sum of path-weight sharing (checks
``tdn_theory.theory.shared_weight_product``), and the numerical dimension of the invariants of
one degree triple (checks Schur's lemma behind ``tdn_theory.theory.universality``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .._checks import check_degree, check_int
from ..cp.tensor_ops import cube_degree, to_dense
from ..so3 import block_wigner_D, degree_slices, random_rotations
from ..theory.weight_sharing import _check_inputs as check_weight_sharing_inputs

__all__ = ["equivariant_space_dimension", "monte_carlo_mean_square", "shared_weight_product_naive"]


def monte_carlo_mean_square(
    T_hat: Any, n_rotations: int, seed: int | np.random.Generator
) -> tuple[float, np.ndarray]:
    """Monte-Carlo estimate of E_R ||rho(R) T_hat - T_hat||_F^2 over seeded Haar rotations.

    Returns (mean, samples). Each sample lies in [0, 4 ||(I - P) T_hat||_F^2] (since
    rho(R) P T_hat = P T_hat), which gives the Hoeffding tolerance used in the tests.
    """
    n_rotations = check_int(n_rotations, "n_rotations", minimum=1)
    T = to_dense(T_hat)
    L = cube_degree(T)
    D = block_wigner_D(L, random_rotations(int(n_rotations), np.random.default_rng(seed)))
    samples = np.empty(int(n_rotations))
    for n in range(int(n_rotations)):
        Dn = D[n]
        rot = np.einsum("ak,aij->kij", Dn, T)
        rot = np.einsum("kij,ib->kbj", rot, Dn)
        rot = np.einsum("kbj,jc->kbc", rot, Dn)
        samples[n] = np.sum((rot - T) ** 2)
    return float(samples.mean()), samples


def shared_weight_product_naive(
    T_or_factors: Any, W: np.ndarray, x: np.ndarray, y: np.ndarray
) -> np.ndarray:
    """The defining double sum z_u = sum_v W[u, v] M(x_u, y_v) (O(U V) products; for checks)."""
    check_weight_sharing_inputs(T_or_factors, W, x, y)
    T = to_dense(T_or_factors)
    pair = np.einsum("kij,ui,vj->uvk", T, x, y)  # M(x_u, y_v)
    return np.einsum("uv,uvk->uk", W, pair)


def equivariant_space_dimension(
    l1: int, l2: int, l3: int, *, n_rotations: int = 3, seed: int = 0, rtol: float = 1e-9
) -> int:
    """Numerical dimension of {X (2l3+1, 2l1+1, 2l2+1) : D^l3(R)^T X (D^l1(R), D^l2(R)) = X}.

    Computed as the null space of the stacked (K(R_n) - I), K(R) = D^l3(R) ⊗ D^l1(R) ⊗ D^l2(R),
    over ``n_rotations`` seeded Haar rotations (two generic rotations generate a dense subgroup,
    so the null space is the space of invariants). Schur's lemma predicts 1 when
    |l1 - l2| <= l3 <= l1 + l2 and 0 otherwise.
    """
    l1, l2, l3 = (check_degree(v, name) for v, name in ((l1, "l1"), (l2, "l2"), (l3, "l3")))
    Lmax = max(l1, l2, l3)
    sl = degree_slices(Lmax)
    Ds = block_wigner_D(
        Lmax, random_rotations(check_int(n_rotations, "n_rotations", minimum=1), seed)
    )
    n = (2 * l1 + 1) * (2 * l2 + 1) * (2 * l3 + 1)
    rows = []
    for D in Ds:
        K = np.kron(np.kron(D[sl[l3], sl[l3]], D[sl[l1], sl[l1]]), D[sl[l2], sl[l2]])
        rows.append(K - np.eye(n))
    s = np.linalg.svd(np.vstack(rows), compute_uv=False)
    return int(np.sum(s <= rtol * max(1.0, s[0])))
