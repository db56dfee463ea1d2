"""Layout of a feature vector with degrees l = 0..L.

A feature vector is the concatenation of blocks ``[l=0 | l=1 | ... | l=L]``; block ``l`` has
length ``2l+1`` with ``m = -l..l`` in e3nn's order, so the total dimension is
``d = sum_l (2l+1) = (L+1)^2`` and block ``l`` occupies the flat indices ``l^2 .. (l+1)^2 - 1``.
"""

from __future__ import annotations

import math
import numbers

import numpy as np

from tdn_theory._checks import check_degree


def dim(L: int) -> int:
    """Dimension ``d = (L+1)^2`` of a feature vector with degrees ``0..L``."""
    L = check_degree(L)
    return (L + 1) ** 2


def degree_from_dim(d: int) -> int:
    """The degree ``L`` with ``d = (L+1)^2`` (the inverse of :func:`dim`); ValueError otherwise."""
    n = int(d) if isinstance(d, numbers.Integral) and not isinstance(d, bool) else 0
    root = math.isqrt(n) if n >= 1 else 0
    if root < 1 or root * root != n:
        raise ValueError(
            f"feature dimension {d!r} is not (L+1)^2 for an integer L >= 0; "
            "features must hold the blocks l = 0..L"
        )
    return root - 1


def degree_slices(L: int) -> list[slice]:
    """``[slice(l^2, (l+1)^2) for l in 0..L]``: where block ``l`` sits in a flat vector."""
    L = check_degree(L)
    return [slice(l * l, (l + 1) * (l + 1)) for l in range(L + 1)]


def degree_of_index(L: int) -> np.ndarray:
    """Integer array of shape ``(d,)``: the degree ``l`` of each flat index."""
    L = check_degree(L)
    return np.repeat(np.arange(L + 1), [2 * l + 1 for l in range(L + 1)])
