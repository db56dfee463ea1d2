"""Basic operations on 3-way CP tensors in the project's convention.

A rank-R CP tensor of shape (d3, d1, d2) is given by three factor matrices with the weights
folded in (proofs/conventions.md, section 5):

    A : (d3, R)  output mode k,
    B : (d1, R)  input-1 mode i,
    C : (d2, R)  input-2 mode j,

    T_hat[k, i, j] = sum_r A[k, r] * B[i, r] * C[j, r]      (einsum "kr,ir,jr->kij").

The relative error of an approximation is ||T - T_hat||_F / ||T||_F.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from tdn_theory._checks import check_int
from tdn_theory.so3.layout import degree_from_dim

__all__ = [
    "EXACT_RTOL",
    "Factors",
    "as_factors",
    "bilinear",
    "check_rank",
    "check_target",
    "cp_to_tensor",
    "cube_degree",
    "degree_of",
    "is_dense",
    "relative_error",
    "to_dense",
    "unfold",
]

#: The one exactness tolerance: a CP fit whose relative error ||T - T_hat||_F / ||T||_F is at this
#: level is called exact (float64 rounding for d <= 49); used by the fit store, the rank search
#: and the experiments.
EXACT_RTOL = 1e-10


def cp_to_tensor(A: np.ndarray, B: np.ndarray, C: np.ndarray) -> np.ndarray:
    """Return T_hat[k, i, j] = sum_r A[k, r] B[i, r] C[j, r] as a float64 array (d3, d1, d2)."""
    A, B, C = (np.asarray(F, dtype=np.float64) for F in (A, B, C))
    if A.ndim != 2 or B.ndim != 2 or C.ndim != 2:
        raise ValueError("cp_to_tensor: A, B, C must be 2-D factor matrices (rows, rank)")
    if not (A.shape[1] == B.shape[1] == C.shape[1]):
        raise ValueError(
            f"cp_to_tensor: factors disagree on the rank ({A.shape[1]}, {B.shape[1]}, "
            f"{C.shape[1]}); A, B, C must have the same number of columns"
        )
    return np.einsum("kr,ir,jr->kij", A, B, C, optimize=True)


def relative_error(T: np.ndarray, T_hat: np.ndarray) -> float:
    """Return ||T - T_hat||_F / ||T||_F (T must be non-zero and of the same shape as T_hat)."""
    T = np.asarray(T, dtype=np.float64)
    T_hat = np.asarray(T_hat, dtype=np.float64)
    if T.shape != T_hat.shape:
        raise ValueError(f"relative_error: shapes differ, {T.shape} vs {T_hat.shape}")
    norm = float(np.linalg.norm(T))
    if norm == 0.0:
        raise ValueError("relative_error: the reference tensor T is zero, relative error undefined")
    return float(np.linalg.norm(T - T_hat)) / norm


def unfold(T: np.ndarray, mode: int) -> np.ndarray:
    """The mode-``mode`` unfolding ``T_(n)``: shape ``(T.shape[mode], prod of the other sides)``.

    Row ``a`` holds ``T`` with index ``mode`` fixed to ``a``, the remaining indices in their order
    (C order), i.e. ``moveaxis(T, mode, 0).reshape(d_mode, -1)``, the same matrix as tensorly's
    ``tl.unfold(T, mode)``. For ``T[k, i, j]`` mode 0 is ``(k, (i, j))``.
    """
    return np.moveaxis(T, mode, 0).reshape(T.shape[mode], -1)


def check_target(T: np.ndarray, *, who: str = "fit_cp") -> np.ndarray:
    """Validate a target tensor: 3-way, real, finite, non-zero; return it as float64."""
    arr = np.asarray(T)
    if arr.dtype.kind not in "biuf":
        raise ValueError(f"{who}: T must be a real numeric array, got dtype {arr.dtype}")
    arr = arr.astype(np.float64, copy=False)
    if arr.ndim != 3:
        raise ValueError(f"{who}: T must be a 3-way array (d3, d1, d2), got shape {arr.shape}")
    if min(arr.shape) < 1:
        raise ValueError(f"{who}: T has an empty mode, shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{who}: T contains NaN or infinite entries; pass a finite tensor")
    if not np.any(arr):
        raise ValueError(f"{who}: T is zero, so relative errors are undefined; pass a non-zero T")
    return arr


def check_rank(rank: object, *, who: str = "fit_cp") -> int:
    """Validate a CP rank: an integer >= 1 (a float is refused: tensorly reads it as a fraction)."""
    return check_int(rank, "rank", minimum=1, who=who)


#: CP factors (A, B, C): A (d3, R) the output factor, B (d1, R) and C (d2, R) the inputs.
Factors = tuple[np.ndarray, np.ndarray, np.ndarray]


def as_factors(factors: Any) -> Factors:
    """Return (A, B, C) as float64 arrays from a tuple/list or an object with .A .B .C (e.g. CPFit).

    A is (d3, R), B is (d1, R), C is (d2, R), all with the same R.
    """
    if all(hasattr(factors, name) for name in ("A", "B", "C")):
        A, B, C = factors.A, factors.B, factors.C
    elif isinstance(factors, Sequence) and not isinstance(factors, str) and len(factors) == 3:
        A, B, C = factors
    else:
        raise ValueError(
            "factors must be a tuple (A, B, C) or an object with attributes .A .B .C "
            f"(got {type(factors).__name__})"
        )
    A, B, C = (np.asarray(F, dtype=np.float64) for F in (A, B, C))
    if A.ndim != 2 or B.ndim != 2 or C.ndim != 2:
        raise ValueError(f"CP factors must be 2-D, got shapes {A.shape}, {B.shape}, {C.shape}")
    if not (A.shape[1] == B.shape[1] == C.shape[1]):
        raise ValueError(
            f"CP factors must share the rank (columns), got {A.shape}, {B.shape}, {C.shape}"
        )
    return A, B, C


def is_dense(obj: Any) -> bool:
    """True for a 3-way numpy array (a dense tensor), False for CP factors."""
    return isinstance(obj, np.ndarray) and obj.ndim == 3


def to_dense(factors_or_tensor: Any) -> np.ndarray:
    """Dense (d3, d1, d2) tensor T_hat[k, i, j] = sum_r A[k, r] B[i, r] C[j, r].

    A (d, d, d) array passes through unchanged (as float64).
    """
    if is_dense(factors_or_tensor):
        return np.asarray(factors_or_tensor, dtype=np.float64)
    A, B, C = as_factors(factors_or_tensor)
    return np.einsum("kr,ir,jr->kij", A, B, C)


def cube_degree(T: np.ndarray) -> int:
    """L of a (d, d, d) tensor with d = (L+1)^2 (ValueError for any other shape)."""
    if T.ndim != 3 or not (T.shape[0] == T.shape[1] == T.shape[2]):
        raise ValueError(f"expected a (d, d, d) tensor over degrees 0..L, got shape {T.shape}")
    return degree_from_dim(T.shape[0])


def _factor_degree(A: np.ndarray, B: np.ndarray, C: np.ndarray) -> int:
    if not (A.shape[0] == B.shape[0] == C.shape[0]):
        raise ValueError(
            f"factors must have equal row counts d = (L+1)^2, got {A.shape[0]}, {B.shape[0]}, "
            f"{C.shape[0]}"
        )
    return degree_from_dim(A.shape[0])


def degree_of(obj: Any) -> int:
    """L of a dense (d, d, d) tensor or of CP factors with d = (L+1)^2 rows (ValueError otherwise)."""
    if is_dense(obj):
        return cube_degree(np.asarray(obj))
    return _factor_degree(*as_factors(obj))


def bilinear(obj: Any, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """M(x, y)_k = sum_ij T[k, i, j] x_i y_j (dense T) or A ((B^T x) ⊙ (C^T y)) (factors).

    x, y of shape (..., d), broadcast together; returns (..., d3).
    """
    if is_dense(obj):
        return np.einsum("kij,...i,...j->...k", obj, x, y)
    A, B, C = as_factors(obj)
    return ((x @ B) * (y @ C)) @ A.T
