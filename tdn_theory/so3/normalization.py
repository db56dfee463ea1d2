"""Path weights: how each path block of the CG tensor is normalized.

Every normalization scales the *unit* block of a path, ``U = C_real / sqrt(2 l3 + 1)``
(Frobenius norm 1; equal to ``e3nn.o3.wigner_3j(l1, l2, l3)``), by a scalar ``w(l1, l2, l3)``:

* ``"unit"``:  ``w = 1`` (what the published TDN code decomposes; the default);
* ``"cg"``:    ``w = sqrt(2 l3 + 1)`` (standard CG: ``sum_{m1, m2} C^2 = 1`` for each ``m3``);
* ``"gaunt"``: the real Gaunt coefficients ``G[k, i, j] = int_{S^2} Y_k Y_i Y_j dOmega`` with e3nn's
  orthonormal real spherical harmonics, i.e.
  ``w = (-1)^(J/2) sqrt((2l1+1)(2l2+1)(2l3+1) / (4 pi)) (l1 l2 l3; 0 0 0)`` for
  ``J = l1 + l2 + l3`` even (this is ``> 0``), and ``w = 0`` for odd ``J``;
* ``"sphere"``: Gaunt weights on even paths plus the surface-curl pairing on odd paths
  (see :mod:`tdn_theory.so3.sphere`).
"""

from __future__ import annotations

import functools
import math

import sympy
from sympy.physics.wigner import wigner_3j

from tdn_theory._checks import check_choice

from .clebsch_gordan import check_path

NORMALIZATIONS = ("unit", "cg", "gaunt", "sphere")


def gaunt_weight_exact(l1: int, l2: int, l3: int) -> sympy.Expr:
    """Exact Gaunt path weight ``(-1)^(J/2) sqrt((2l1+1)(2l2+1)(2l3+1)/(4 pi)) (l1 l2 l3; 0 0 0)``."""
    l1, l2, l3 = check_path(l1, l2, l3)
    J = l1 + l2 + l3
    if J % 2:
        return sympy.Integer(0)
    factor = sympy.sqrt(sympy.Integer((2 * l1 + 1) * (2 * l2 + 1) * (2 * l3 + 1)) / (4 * sympy.pi))
    return sympy.simplify((-1) ** (J // 2) * factor * wigner_3j(l1, l2, l3, 0, 0, 0))


@functools.cache
def _path_weight(l1: int, l2: int, l3: int, normalization: str) -> float:
    if normalization == "unit":
        return 1.0
    if normalization == "cg":
        return math.sqrt(2 * l3 + 1)
    if normalization == "gaunt":
        return float(gaunt_weight_exact(l1, l2, l3))
    from .sphere import sphere_path_weight  # the "sphere" normalization lives in its own module

    return float(sphere_path_weight(l1, l2, l3))


def path_weight(l1: int, l2: int, l3: int, normalization: str = "unit") -> float:
    """The scalar ``w`` with ``block = w * unit block`` for this path and normalization."""
    l1, l2, l3 = check_path(l1, l2, l3)
    check_choice(normalization, "normalization", NORMALIZATIONS)
    return _path_weight(l1, l2, l3, normalization)
