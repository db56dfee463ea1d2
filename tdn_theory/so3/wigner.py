"""Real-basis Wigner matrices ``D^l(R)`` in e3nn's basis, built without Euler angles.

``D^0 = 1`` and ``D^1(R) = R`` (e3nn's real basis for ``l = 1`` is ``(x, y, z)``). Higher degrees
follow from the coupling ``(l-1) x 1 -> l``: the real CG block ``V[(m1, m2), m3]`` of the path
``(l-1, 1, l)`` is an isometry (standard normalization) that intertwines,
``(D^{l-1} (x) D^1) V = V D^l``, hence

    ``D^l(R) = V^T (D^{l-1}(R) (x) R) V``.

Only products of matrices are involved, so the accuracy is uniform over SO(3): there is no
singularity at Euler angle ``beta = 0`` or ``pi`` (where e3nn's ``D_from_matrix`` loses digits).
"""

from __future__ import annotations

import functools

import numpy as np
import scipy.linalg

from tdn_theory._checks import check_degree

from .clebsch_gordan import real_cg
from .rotations import check_rotation


@functools.cache
def _isometry(l: int) -> np.ndarray:
    """``V`` of shape ``(3 (2l-1), 2l+1)``: the path ``(l-1, 1, l)`` with rows ``(m1, m2)``."""
    v = real_cg(l - 1, 1, l).reshape(3 * (2 * l - 1), 2 * l + 1)
    v.setflags(write=False)
    return v


def _all_degrees(L: int, R: np.ndarray) -> list[np.ndarray]:
    batch = R.shape[:-2]
    out = [np.ones(batch + (1, 1))]
    if L >= 1:
        out.append(R.copy())
    for l in range(2, L + 1):
        prev = out[-1]
        n = 2 * l - 1
        kron = np.einsum("...ac,...be->...abce", prev, R).reshape(batch + (3 * n, 3 * n))
        v = _isometry(l)
        out.append(np.einsum("pa,...pq,qb->...ab", v, kron, v, optimize=True))
    return out


def wigner_D(l: int, R: object) -> np.ndarray:
    """``D^l(R)``, shape ``(..., 2l+1, 2l+1)``, for ``R`` of shape ``(3, 3)`` or ``(..., 3, 3)``.

    Equals e3nn's ``Irrep(l, p).D_from_matrix(R)``; a homomorphism,
    ``D^l(R1 R2) = D^l(R1) D^l(R2)``, and orthogonal.
    """
    l = check_degree(l, "l")
    R = check_rotation(R)
    return _all_degrees(l, R)[l]


def block_wigner_D(L: int, R: object) -> np.ndarray:
    """``D(R) = blockdiag(D^0, ..., D^L)``, shape ``(..., d, d)`` with ``d = (L+1)^2``."""
    L = check_degree(L, "L")
    R = check_rotation(R)
    blocks = _all_degrees(L, R)
    if R.ndim == 2:
        return scipy.linalg.block_diag(*blocks)
    d = (L + 1) ** 2
    out = np.zeros(R.shape[:-2] + (d, d))
    start = 0
    for block in blocks:
        n = block.shape[-1]
        out[..., start : start + n, start : start + n] = block
        start += n
    return out
