r"""Measured equivariance error of a CP tensor: sampled, exact Haar average, adversarial search.

Conventions (proofs/conventions.md): a bilinear map on features of degree <= L (d = (L+1)^2) is a
tensor ``T`` (d, d, d) indexed ``[k, i, j] = [output, input 1, input 2]``; a rank-R CP fit has
factors A (d x R, output), B, C and T_hat = einsum("kr,ir,jr->kij", A, B, C). Rotations act by
D = D(R) = ``tdn_theory.so3.block_wigner_D`` and on tensors by rho(R) T = D^T T (D, D); the
equivariance error is eps(R, x, y) = || M_hat(D x, D y) - D M_hat(x, y) ||_2
= ||(rho(R) T_hat - T_hat)(x, y)|| (the full statement is in ``tdn_theory.theory.equivariance``).

* ``equivariance_error`` / ``sample_equivariance_errors``: eps at given or seeded (R, x, y);
  ``equivariance_defect_tensor``: rho(R) T_hat - T_hat.
* ``haar_mean_square``: E_R ||rho(R) T_hat - T_hat||_F^2 = 2 ||(I - P) T_hat||_F^2 exactly, P the
  projection onto the invariant path tensors (``invariant_path_basis``, ``project_invariant``).
* ``worst_case_equivariance_error``: adversarial search for the largest eps at unit x, y.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import numpy as np
from scipy.optimize import minimize
from scipy.spatial.transform import Rotation

from tdn_theory._checks import check_degree, check_int
from tdn_theory.cp.tensor_ops import (
    as_factors,
    bilinear,
    cube_degree,
    degree_of,
    is_dense,
    to_dense,
)
from tdn_theory.so3 import (
    block_wigner_D,
    degree_slices,
    paths,
    random_rotations,
    unit_block,
)

__all__ = [
    "equivariance_defect_tensor",
    "equivariance_error",
    "haar_mean_square",
    "invariant_path_basis",
    "project_invariant",
    "sample_equivariance_errors",
    "worst_case_equivariance_error",
]


def _rotation_matrix(R: np.ndarray) -> np.ndarray:
    R = np.asarray(R, dtype=np.float64)
    if R.shape[-2:] != (3, 3):
        raise ValueError(f"rotation must have shape (3, 3) or (..., 3, 3), got {R.shape}")
    return R


# --------------------------------------------------------------------------------------------
# equivariance error
# --------------------------------------------------------------------------------------------


def equivariance_error(factors: Any, R: np.ndarray, x: np.ndarray, y: np.ndarray) -> float:
    """eps(R, x, y) = ||M_hat(D x, D y) - D M_hat(x, y)||_2 with D = block_wigner_D(L, R).

    ``factors``: (A, B, C), an object with .A .B .C (e.g. ``tdn_theory.cp.CPFit``), or a dense
    (d, d, d) tensor indexed [k, i, j]. L is read from d = (L+1)^2. x, y: vectors of length d
    (not normalised here; the error is bilinear in x, y).
    """
    L = degree_of(factors)
    d = (L + 1) ** 2
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if x.shape != (d,) or y.shape != (d,):
        raise ValueError(f"x and y must have shape ({d},) for L={L}, got {x.shape} and {y.shape}")
    D = block_wigner_D(L, _rotation_matrix(R))
    if D.shape != (d, d):
        raise ValueError(f"R must be a single (3, 3) rotation, got shape {np.shape(R)}")
    lhs = bilinear(factors, D @ x, D @ y)
    rhs = D @ bilinear(factors, x, y)
    return float(np.linalg.norm(lhs - rhs))


def _random_unit(rng: np.random.Generator, n: int, d: int) -> np.ndarray:
    v = rng.standard_normal((n, d))
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def sample_equivariance_errors(
    factors: Any, n_rotations: int, seed: int | np.random.Generator
) -> np.ndarray:
    """eps(R_n, x_n, y_n), n = 1..N: Haar rotations R_n; x_n, y_n uniform on the unit sphere of R^d.

    All draws come from ``np.random.default_rng(seed)`` (rotations first, then x, then y). Returns
    an array of shape (N,). For uniform unit x, y,
    E[eps^2 | R] = ||rho(R) T_hat - T_hat||_F^2 / d^2, so E[eps^2] = haar_mean_square(T_hat) / d^2.
    """
    n = check_int(n_rotations, "n_rotations", minimum=1)
    L = degree_of(factors)
    d = (L + 1) ** 2
    rng = np.random.default_rng(seed)
    Rs = random_rotations(n, rng)
    X = _random_unit(rng, n, d)
    Y = _random_unit(rng, n, d)
    D = block_wigner_D(L, Rs)  # (n, d, d)
    DX = np.einsum("nab,nb->na", D, X)
    DY = np.einsum("nab,nb->na", D, Y)
    lhs = bilinear(factors, DX, DY)
    rhs = np.einsum("nab,nb->na", D, bilinear(factors, X, Y))
    return np.linalg.norm(lhs - rhs, axis=1)


def equivariance_defect_tensor(factors: Any, R: np.ndarray) -> np.ndarray:
    """rho(R) T_hat - T_hat, rho(R) T = D^T T (D, D) in [k, i, j] order, D = block_wigner_D(L, R).

    M_hat(Dx, Dy) - D M_hat(x, y) = D (rho(R) T_hat - T_hat)(x, y), so this tensor carries the whole
    equivariance defect at R (its Frobenius norm squared is d^2 E_{x,y}[eps^2]).
    """
    L = degree_of(factors)
    D = block_wigner_D(L, _rotation_matrix(R))
    if is_dense(factors):
        T = np.asarray(factors, dtype=np.float64)
        return np.einsum("ak,aij,ib,jc->kbc", D, T, D, D, optimize=True) - T
    A, B, C = as_factors(factors)
    return np.einsum("kr,ir,jr->kij", D.T @ A, D.T @ B, D.T @ C) - np.einsum(
        "kr,ir,jr->kij", A, B, C
    )


# --------------------------------------------------------------------------------------------
# invariant subspace and the Haar average
# --------------------------------------------------------------------------------------------


Path = tuple[int, int, int]
PathBlock = tuple[Path, tuple[slice, slice, slice], np.ndarray]


@lru_cache(maxsize=16)
def _invariant_basis_cached(L: int) -> tuple[PathBlock, ...]:
    sl = degree_slices(L)
    out = []
    for l1, l2, l3 in paths(L, parity="all"):
        blk = np.array(unit_block(l1, l2, l3), dtype=np.float64)
        blk.setflags(write=False)
        out.append(((l1, l2, l3), (sl[l3], sl[l1], sl[l2]), blk))
    return tuple(out)


def invariant_path_basis(L: int) -> list[PathBlock]:
    """Orthonormal basis of the rho-invariant (equivariant) tensors on degrees 0..L.

    One entry per admissible path (l1, l2, l3): (path, (slice_l3, slice_l1, slice_l2), U) with U the
    unit-Frobenius CG block indexed [m3, m1, m2] (read-only). The embedded blocks occupy disjoint
    index sets, so they are orthonormal; that they span all invariants is Schur's lemma (l1 x l2
    contains l3 at most once), checked numerically in tests/test_theory_universality.py.
    """
    return list(_invariant_basis_cached(check_degree(L)))


def project_invariant(T_hat: Any, L: int | None = None) -> np.ndarray:
    """P T_hat: the orthogonal (Frobenius) projection onto span of the invariant path tensors."""
    T = to_dense(T_hat)
    L = cube_degree(T) if L is None else L
    if T.shape != ((L + 1) ** 2,) * 3:
        raise ValueError(f"tensor shape {T.shape} does not match L={L} (d={(L + 1) ** 2})")
    out = np.zeros_like(T)
    for _, (s3, s1, s2), U in invariant_path_basis(L):
        out[s3, s1, s2] = np.sum(U * T[s3, s1, s2]) * U
    return out


def haar_mean_square(T_hat: Any, L: int | None = None) -> float:
    """Exact Haar average E_R ||rho(R) T_hat - T_hat||_F^2 = 2 ||(I - P) T_hat||_F^2.

    ``T_hat``: dense (d, d, d) tensor [k, i, j] or CP factors. For unit x, y drawn uniformly,
    E_{R,x,y}[eps^2] = haar_mean_square / d^2. If T_hat = T + E with T equivariant, (I - P) T_hat =
    (I - P) E, so the value is <= 2 ||E||_F^2.
    """
    T = to_dense(T_hat)
    L = cube_degree(T) if L is None else L
    if T.shape != ((L + 1) ** 2,) * 3:
        raise ValueError(f"tensor shape {T.shape} does not match L={L} (d={(L + 1) ** 2})")
    residual = T - project_invariant(T, L)  # no cancellation: exact zero for equivariant T
    return 2.0 * float(np.sum(residual * residual))


# --------------------------------------------------------------------------------------------
# adversarial search
# --------------------------------------------------------------------------------------------


def _rank1_power(
    E: np.ndarray, x: np.ndarray, y: np.ndarray, iters: int = 200, tol: float = 1e-13
) -> tuple[float, np.ndarray, np.ndarray]:
    """Alternating (higher-order power) maximisation of ||E(x, y)|| over unit x, y; monotone."""
    val = float(np.linalg.norm(np.einsum("kij,i,j->k", E, x, y)))
    for _ in range(iters):
        z = np.einsum("kij,i,j->k", E, x, y)
        nz = np.linalg.norm(z)
        if nz == 0.0:
            return 0.0, x, y
        z /= nz
        x_new = np.einsum("kij,k,j->i", E, z, y)
        nx = np.linalg.norm(x_new)
        if nx == 0.0:
            return val, x, y
        x = x_new / nx
        y_new = np.einsum("kij,k,i->j", E, z, x)
        ny = np.linalg.norm(y_new)
        if ny == 0.0:
            return val, x, y
        y = y_new / ny
        new_val = float(np.linalg.norm(np.einsum("kij,i,j->k", E, x, y)))
        if new_val - val <= tol * max(new_val, 1.0):
            val = max(val, new_val)
            break
        val = new_val
    return val, x, y


def worst_case_equivariance_error(
    factors: Any,
    *,
    starts: int = 8,
    seed: int | np.random.Generator = 0,
    rounds: int = 6,
) -> dict[str, Any]:
    """Adversarial search for max eps(R, x, y) over rotations R and unit x, y.

    From ``starts`` seeded starts (Haar rotation, uniform unit x, y), alternate ``rounds`` times:
    (a) at fixed R, a higher-order power iteration maximises ||(rho(R) T_hat - T_hat)(x, y)|| over
    unit x, y; (b) at fixed x, y, L-BFGS-B over a rotation vector w (R <- R expm([w]_x)) maximises
    eps. Both steps never decrease eps. Returns {"value", "rotation" (3x3), "x", "y"} for the
    largest eps found; value is a lower bound on the true maximum, and value <= 2 ||E_(1)||_2.
    """
    starts = check_int(starts, "starts", minimum=1)
    T_hat = to_dense(factors)
    L = cube_degree(T_hat)
    d = (L + 1) ** 2
    rng = np.random.default_rng(seed)
    best: dict[str, Any] = {"value": -1.0}

    def eps_at(Rm: np.ndarray, x: np.ndarray, y: np.ndarray) -> float:
        D = block_wigner_D(L, Rm)
        return float(np.linalg.norm(bilinear(T_hat, D @ x, D @ y) - D @ bilinear(T_hat, x, y)))

    for _ in range(int(starts)):
        Rm = random_rotations(1, rng)[0]
        x, y = _random_unit(rng, 2, d)
        val = eps_at(Rm, x, y)
        for _ in range(int(rounds)):
            E = equivariance_defect_tensor(T_hat, Rm)
            val_p, x_p, y_p = _rank1_power(E, x, y)
            if val_p >= val:
                val, x, y = val_p, x_p, y_p

            def neg(w: np.ndarray, R0: np.ndarray = Rm, x=x, y=y) -> float:
                return -eps_at(R0 @ Rotation.from_rotvec(w).as_matrix(), x, y)

            res = minimize(neg, np.zeros(3), method="L-BFGS-B", options={"maxiter": 50})
            if -res.fun > val:
                val = -float(res.fun)
                Rm = Rm @ Rotation.from_rotvec(res.x).as_matrix()
        if val > best["value"]:
            best = {"value": val, "rotation": Rm.copy(), "x": x.copy(), "y": y.copy()}
    return best
