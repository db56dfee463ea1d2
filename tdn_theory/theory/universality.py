r"""Theorem 3.2 (universality) made executable: every equivariant bilinear map has an exact CP form.

Setting (proofs/conventions.md): features on degrees 0..L, d = (L+1)^2, bilinear maps as tensors
T (d, d, d) indexed [k, i, j] = [output, input 1, input 2], M_T(x, y)_k = sum_ij T[k,i,j] x_i y_j.

* By Schur's lemma the SO(3)-equivariant bilinear maps are exactly
  T = sum_{paths p} alpha_p U_p, U_p the unit CG block of the admissible path p = (l1, l2, l3)
  embedded at [l3, l1, l2] (``equivariant_map``; the dimension count per degree triple is
  checked by ``tdn_theory.testing.references.equivariant_space_dimension``).
* Theorem 3.2 (constructive): any T (d3, d1, d2) equals A (B^T x ⊙ C^T y) with R = d1 d2,
  B[i, (i', j')] = [i = i'], C[j, (i', j')] = [j = j'], A[k, (i, j)] = T[k, i, j]
  (``constructive_cp``); the reconstruction is exact in floating point (each entry is one
  product T[k,i,j] * 1 * 1). Dropping the zero fibres T[:, i, j] = 0 keeps it exact
  (``prune=True``).
* Empirical rank study (``rank_scan``): fitted relative error of random equivariant maps versus
  rank, up to the first rank where the fit is exact (< 1e-10).

Proofs: proofs/universality.md.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from tdn_theory._checks import check_degree
from tdn_theory.cp import EXACT_RTOL, cp_to_tensor, fit_cp
from tdn_theory.cp.tensor_ops import Factors
from tdn_theory.so3 import (
    degree_from_dim,
    degree_slices,
    dim,
    paths,
    unit_block,
)
from tdn_theory.theory.measurements import invariant_path_basis, project_invariant

__all__ = [
    "constructive_cp",
    "equivariant_map",
    "path_coefficients",
    "random_equivariant_map",
    "rank_scan",
]

Path = tuple[int, int, int]


def constructive_cp(T: np.ndarray, *, prune: bool = False) -> Factors:
    """Thm 3.2's exact CP of any 3-way tensor T (d3, d1, d2): rank d1 d2 (indicator factors).

    Column r = i d2 + j: A[:, r] = T[:, i, j], B[:, r] = e_i, C[:, r] = e_j, so
    sum_r A[k, r] B[i', r] C[j', r] = T[k, i', j'] and A (B^T x ⊙ C^T y) = M_T(x, y).
    ``prune=True`` keeps only the columns with a non-zero fibre T[:, i, j] (still exact).
    """
    T = np.asarray(T, dtype=np.float64)
    if T.ndim != 3:
        raise ValueError(f"T must be a 3-way tensor (d3, d1, d2), got shape {T.shape}")
    d3, d1, d2 = T.shape
    ii, jj = np.meshgrid(np.arange(d1), np.arange(d2), indexing="ij")
    ii, jj = ii.ravel(), jj.ravel()
    if prune:
        keep = np.any(T[:, ii, jj] != 0.0, axis=0)
        ii, jj = ii[keep], jj[keep]
    A = np.ascontiguousarray(T[:, ii, jj])
    B = np.zeros((d1, ii.size))
    C = np.zeros((d2, ii.size))
    B[ii, np.arange(ii.size)] = 1.0
    C[jj, np.arange(ii.size)] = 1.0
    return A, B, C


def equivariant_map(L: int, coefficients: Mapping[Path, float]) -> np.ndarray:
    """T = sum_p alpha_p U_p (d, d, d): U_p the unit CG block of path p at [l3, l1, l2].

    ``coefficients`` maps admissible paths (l1, l2, l3), all <= L, to alpha_p; missing paths
    get 0. Every SO(3)-equivariant bilinear map on degrees 0..L has this form (Schur).
    """
    L = check_degree(L)
    admissible = set(paths(L))
    sl = degree_slices(L)
    d = dim(L)
    T = np.zeros((d, d, d))
    for p, alpha in coefficients.items():
        p = tuple(int(v) for v in p)
        if p not in admissible:
            raise ValueError(
                f"{p} is not an admissible path for L={L}: need |l1-l2| <= l3 <= l1+l2, all <= L"
            )
        l1, l2, l3 = p
        T[sl[l3], sl[l1], sl[l2]] += float(alpha) * unit_block(l1, l2, l3)
    return T


def random_equivariant_map(
    L: int, seed: int | np.random.Generator, parity: str = "all"
) -> np.ndarray:
    """A random equivariant map: alpha_p ~ N(0, 1) independently for each path of ``parity``."""
    L = check_degree(L)
    rng = np.random.default_rng(seed)
    path_list = paths(L, parity)
    alphas = rng.standard_normal(len(path_list))
    return equivariant_map(L, dict(zip(path_list, alphas, strict=True)))


def path_coefficients(T: np.ndarray) -> tuple[dict[Path, float], float]:
    """(alpha_p = <U_p, T>_F for every path, ||(I - P) T||_F): coordinates and non-equivariant rest.

    For an equivariant T the residual is 0 and T == equivariant_map(L, alpha).
    """
    T = np.asarray(T, dtype=np.float64)
    if T.ndim != 3 or len(set(T.shape)) != 1:
        raise ValueError(f"T must have shape (d, d, d), got {T.shape}")
    L = degree_from_dim(T.shape[0])
    alphas = {p: float(np.sum(U * T[s3, s1, s2])) for p, (s3, s1, s2), U in invariant_path_basis(L)}
    residual = float(np.linalg.norm(T - project_invariant(T, L)))
    return alphas, residual


def rank_scan(
    T: np.ndarray,
    ranks: Iterable[int],
    *,
    seed: int = 0,
    exact_tol: float = EXACT_RTOL,
    stop_at_exact: bool = True,
    fit_kwargs: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Fit T at each rank (``tdn_theory.cp.fit_cp``) and record the relative error.

    Returns {"ranks": [...], "relative_errors": [...], "smallest_exact_rank": R or None}: the
    first rank whose fitted relative error is < ``exact_tol`` (with ``stop_at_exact`` the scan
    ends there). "Smallest found" is an upper bound on the true CP rank (a fit can miss an
    exact decomposition); the constructive bound R <= d1 d2 always holds.
    """
    kwargs = {"restarts": 4, "polish": True, "polish_iter": 400}
    kwargs.update(dict(fit_kwargs or {}))
    out: dict[str, Any] = {"ranks": [], "relative_errors": [], "smallest_exact_rank": None}
    for r in ranks:
        fit = fit_cp(T, int(r), seed=seed, **kwargs)
        err = float(np.linalg.norm(cp_to_tensor(fit.A, fit.B, fit.C) - T) / np.linalg.norm(T))
        out["ranks"].append(int(r))
        out["relative_errors"].append(err)
        if err < exact_tol and out["smallest_exact_rank"] is None:
            out["smallest_exact_rank"] = int(r)
            if stop_at_exact:
                break
    return out
