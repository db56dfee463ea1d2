"""The (truncated) real CG tensor ``M`` of the TDN paper, indexed ``[k, i, j]``.

``M[k, i, j]`` with ``k`` the output, ``i`` input 1, ``j`` input 2, each a flat index into
``[l=0 | ... | l=L]`` (``d = (L+1)^2``), so that the bilinear map is
``m(x, y)_k = sum_{i, j} M[k, i, j] x_i y_j``. The block of an admissible path
``(l1, l2, l3)`` sits at ``[slice(l3), slice(l1), slice(l2)]`` and equals
``path_weight(l1, l2, l3, normalization) * U.transpose(2, 0, 1)`` with ``U`` the unit block
(index ``[m1, m2, m3]``). Equivariance: ``M(D x, D y) = D M(x, y)`` with
``D = block_wigner_D(L, R)``.
"""

from __future__ import annotations

import math

import numpy as np

from tdn_theory._checks import check_choice, check_degree

from .clebsch_gordan import real_cg
from .layout import degree_slices, dim
from .normalization import NORMALIZATIONS, path_weight
from .paths import PARITIES, paths

#: Largest L accepted by cg_tensor (d = 441; the dense tensor then takes 0.7 GB).
MAX_L = 20


def unit_block(l1: int, l2: int, l3: int) -> np.ndarray:
    """Unit-norm block of a path in ``[m3, m1, m2]`` order (e3nn's wigner_3j, transposed)."""
    return real_cg(l1, l2, l3).transpose(2, 0, 1) / math.sqrt(2 * l3 + 1)


def cg_tensor(L: int, normalization: str = "unit", parity: str = "all") -> np.ndarray:
    """The ``(d, d, d)`` float64 CG tensor ``M[k, i, j]`` with ``d = (L+1)^2``.

    ``normalization``: "unit" (default), "cg", "gaunt" or "sphere" (see
    :mod:`tdn_theory.so3.normalization`); ``parity``: "all" (default), "even", "odd".
    """
    L = check_degree(L, "L", maximum=MAX_L)
    check_choice(normalization, "normalization", NORMALIZATIONS)
    check_choice(parity, "parity", PARITIES)
    d = dim(L)
    s = degree_slices(L)
    tensor = np.zeros((d, d, d))
    for l1, l2, l3 in paths(L, parity):
        weight = path_weight(l1, l2, l3, normalization)
        if weight != 0.0:
            tensor[s[l3], s[l1], s[l2]] = weight * unit_block(l1, l2, l3)
    return tensor
