"""Rotation matrices: validation and Haar-random draws (scipy's ``Rotation.random``)."""

from __future__ import annotations

import numpy as np
from scipy.spatial.transform import Rotation

from tdn_theory._checks import check_int

#: Tolerance on ``max |R^T R - I|`` for a matrix to count as a rotation.
ORTHOGONALITY_TOLERANCE = 1e-8


def check_rotation(R: object, name: str = "R") -> np.ndarray:
    """Return ``R`` as a float64 array of shape ``(..., 3, 3)`` after checking it is in SO(3)."""
    array = np.asarray(R, dtype=np.float64)
    if array.ndim < 2 or array.shape[-2:] != (3, 3):
        raise ValueError(
            f"{name} must be a rotation matrix of shape (..., 3, 3); got shape {array.shape}"
        )
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} must be a rotation matrix; it contains NaN or infinity")
    gram = np.einsum("...ji,...jk->...ik", array, array)
    deviation = float(np.abs(gram - np.eye(3)).max()) if array.size else 0.0
    if deviation > ORTHOGONALITY_TOLERANCE:
        raise ValueError(
            f"{name} must be a rotation matrix (R^T R = I, det R = +1); "
            f"max |R^T R - I| = {deviation:.1e}"
        )
    if array.size and np.any(np.linalg.det(array) < 0):
        raise ValueError(
            f"{name} must be a proper rotation (det R = +1); got a reflection (det -1)"
        )
    return array


def random_rotations(n: int, seed: int | np.random.Generator | None = 0) -> np.ndarray:
    """``n`` Haar-uniform rotation matrices, shape ``(n, 3, 3)``, drawn from ``seed``."""
    n = check_int(n, "n")
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    if n == 0:
        return np.zeros((0, 3, 3))
    return Rotation.random(int(n), rng=rng).as_matrix().reshape(int(n), 3, 3)
