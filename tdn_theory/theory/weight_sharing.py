r"""Path-weight sharing: one channel-mixing matrix W for all paths keeps exact equivariance.

Channels u = 1..U (input 1, output) and v = 1..V (input 2) carry features on degrees 0..L
(arrays x (U, d), y (V, d), d = (L+1)^2). With a bilinear map M_T (tensor T (d, d, d) indexed
[k, i, j], exact CG or CP approximation) and one weight matrix W (U, V) shared by every path,

    z_u = sum_v W[u, v] M_T(x_u, y_v) = M_T(x_u, (W y)_u)         (bilinearity in y).

If T is equivariant (M_T(Dx, Dy) = D M_T(x, y)), then since W acts on channels and D on the
degree index, (W (y D^T))_u = D (W y)_u and z_u(x D^T, y D^T) = D z_u(x, y): exact equivariance,
for every W (proofs/path_weight_sharing.md). For a CP tensor T_hat = T + E the channel-wise
defect is bounded by the a-posteriori bound of one product:

    ||z_u(Dx, Dy) - D z_u(x, y)|| <= 2 ||E_(1)||_2 ||x_u|| ||(W y)_u||,

and in the CP form z_u = A ((B^T x_u) ⊙ (C^T (W y)_u)): one factor contraction per channel.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tdn_theory.cp.tensor_ops import as_factors, bilinear, degree_of, is_dense, to_dense
from tdn_theory.so3 import block_wigner_D

__all__ = [
    "shared_weight_product",
    "weight_sharing_bound",
    "weight_sharing_equivariance_error",
]


def _check_inputs(obj: Any, W: np.ndarray, x: np.ndarray, y: np.ndarray) -> tuple[int, ...]:
    L = degree_of(obj)
    d = (L + 1) ** 2
    W, x, y = (np.asarray(a, dtype=np.float64) for a in (W, x, y))
    if x.ndim != 2 or y.ndim != 2 or x.shape[1] != d or y.shape[1] != d:
        raise ValueError(
            f"x and y must have shapes (U, {d}) and (V, {d}); got {x.shape}, {y.shape}"
        )
    if W.shape != (x.shape[0], y.shape[0]):
        raise ValueError(f"W must have shape (U, V) = ({x.shape[0]}, {y.shape[0]}); got {W.shape}")
    return L, d


def shared_weight_product(
    T_or_factors: Any, W: np.ndarray, x: np.ndarray, y: np.ndarray
) -> np.ndarray:
    """z (U, d), z_u = sum_v W[u, v] M(x_u, y_v), computed as M(x_u, (W y)_u).

    ``T_or_factors``: dense (d, d, d) tensor [k, i, j], (A, B, C) or an object with .A .B .C.
    """
    _check_inputs(T_or_factors, W, x, y)
    Wy = np.asarray(W, dtype=np.float64) @ np.asarray(y, dtype=np.float64)
    if is_dense(T_or_factors):
        return bilinear(
            np.asarray(T_or_factors, dtype=np.float64), np.asarray(x, dtype=np.float64), Wy
        )
    return bilinear(as_factors(T_or_factors), np.asarray(x, dtype=np.float64), Wy)


def weight_sharing_equivariance_error(
    T_or_factors: Any, W: np.ndarray, x: np.ndarray, y: np.ndarray, R: np.ndarray
) -> np.ndarray:
    """Per channel u: ||z_u(x D^T, y D^T) - D z_u(x, y)||, D = block_wigner_D(L, R). Shape (U,)."""
    L, _ = _check_inputs(T_or_factors, W, x, y)
    D = block_wigner_D(L, R)
    if D.ndim != 2:
        raise ValueError(f"R must be a single (3, 3) rotation, got shape {np.shape(R)}")
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    rotated = shared_weight_product(T_or_factors, W, x @ D.T, y @ D.T)
    reference = shared_weight_product(T_or_factors, W, x, y) @ D.T
    return np.linalg.norm(rotated - reference, axis=1)


def weight_sharing_bound(
    T: np.ndarray, T_hat: Any, W: np.ndarray, x: np.ndarray, y: np.ndarray
) -> np.ndarray:
    """Per channel u: 2 ||E_(1)||_2 ||x_u|| ||(W y)_u||, E = T_hat - T (T exactly equivariant)."""
    _check_inputs(T, W, x, y)
    E = to_dense(T_hat) - np.asarray(T, dtype=np.float64)
    spectral = float(np.linalg.norm(E.reshape(E.shape[0], -1), 2))
    Wy = np.asarray(W, dtype=np.float64) @ np.asarray(y, dtype=np.float64)
    return 2.0 * spectral * np.linalg.norm(x, axis=1) * np.linalg.norm(Wy, axis=1)
