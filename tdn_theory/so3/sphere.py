"""The "sphere" normalization: Gaunt weights on even paths, the surface-curl pairing on odd paths.

With e3nn's real spherical harmonics ``Y`` (orthonormal on ``S^2``:
``int Y_a Y_b dOmega = delta_ab``,
``e3nn.o3.spherical_harmonics(l, r, normalize=True, normalization="integral")``) and the
gradients ``grad S`` of the solid harmonics ``S_l(r) = |r|^l Y_l(r / |r|)``, the sphere tensor is

    ``T[k, i, j] = int_{S^2} Y_k Y_i Y_j dOmega + int_{S^2} Y_k  r . (grad S_i x grad S_j) dOmega``

indexed ``[k (output), i (input 1), j (input 2)]``. The first term (the real Gaunt tensor) lives on
the paths with ``J = l1 + l2 + l3`` even, the second (the curl pairing) on the paths with ``J`` odd.
Each path block is a multiple of the unit block (``e3nn.o3.wigner_3j(l1, l2, l3)`` transposed to
``[m3, m1, m2]``); the multiple, in closed form (proof: ``proofs/sphere_product.md``), is

* ``J`` even: ``w = (-1)^((l1+l2-l3)/2) sqrt((2l1+1)(2l2+1) / (4 pi)) <l1 0 l2 0 | l3 0>``
  ``= sqrt((2l1+1)(2l2+1)(2l3+1) / (4 pi)) |(l1 l2 l3; 0 0 0)|  > 0``;
* ``J`` odd:  ``w = (-1)^((l1+l2-l3-1)/2) sqrt((2l1+1)(2l2+1) l1(l1+1) l2(l2+1) / (4 pi))``
  ``<l1 1 l2 -1 | l3 0>``  (non-zero on every odd path with degrees <= 20, checked once;
  the tests check <= 12),

with ``<l1 m1 l2 m2 | l3 m3>`` the Condon–Shortley CG coefficients (sympy). The CP construction of
this tensor from a sphere quadrature is in :mod:`tdn_theory.cp.quadrature`.

This module also evaluates the solid harmonics and their gradients in numpy (no torch), by the
recursion e3nn uses to define its spherical harmonics:
``S_l[m](r) = c_l sum_{q, mu} U_l[m, q, mu] r_q S_{l-1}[mu](r)`` with ``U_l = wigner_3j(l, 1, l-1)``
and ``c_l > 0`` fixed by ``sum_m S_l[m](r)^2 = (2l+1) / (4 pi)`` on the unit sphere; since
``grad S_l`` is an equivariant harmonic polynomial of degree ``l-1`` and ``r . grad S_l = l S_l``
(Euler), ``d S_l[m] / d r_q = l c_l sum_mu U_l[m, q, mu] S_{l-1}[mu](r)``.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import sympy
from sympy.physics.wigner import clebsch_gordan

from tdn_theory._checks import check_degree

from .clebsch_gordan import check_path, real_cg
from .layout import degree_slices, dim


def sphere_path_weight_exact(l1: int, l2: int, l3: int) -> sympy.Expr:
    """Exact path weight ``w`` of the sphere tensor (block = ``w`` * unit block), as a sympy number.

    ``J = l1 + l2 + l3`` even: ``(-1)^((l1+l2-l3)/2) sqrt((2l1+1)(2l2+1)/(4 pi)) <l1 0 l2 0|l3 0>``
    (the real Gaunt coefficient, always > 0). ``J`` odd:
    ``(-1)^((l1+l2-l3-1)/2) sqrt((2l1+1)(2l2+1) l1(l1+1) l2(l2+1)/(4 pi)) <l1 1 l2 -1|l3 0>``
    (the curl pairing ``int Y_k r . (grad S_i x grad S_j)``).
    """
    l1, l2, l3 = check_path(l1, l2, l3)
    four_pi = 4 * sympy.pi
    if (l1 + l2 + l3) % 2 == 0:
        sign = -1 if ((l1 + l2 - l3) // 2) % 2 else 1
        factor = sympy.sqrt(sympy.Integer((2 * l1 + 1) * (2 * l2 + 1)) / four_pi)
        return sign * factor * clebsch_gordan(l1, l2, l3, 0, 0, 0)
    if l1 == 0 or l2 == 0:  # unreachable for an admissible odd path, kept for clarity
        return sympy.Integer(0)
    sign = -1 if ((l1 + l2 - l3 - 1) // 2) % 2 else 1
    factor = sympy.sqrt(
        sympy.Integer((2 * l1 + 1) * (2 * l2 + 1) * l1 * (l1 + 1) * l2 * (l2 + 1)) / four_pi
    )
    return sign * factor * clebsch_gordan(l1, l2, l3, 1, -1, 0)


@functools.cache
def _sphere_path_weight(l1: int, l2: int, l3: int) -> float:
    return float(sphere_path_weight_exact(l1, l2, l3))


def sphere_path_weight(l1: int, l2: int, l3: int) -> float:
    """Float path weight ``w`` of the "sphere" normalization: block = ``w`` * unit block.

    The unit block is ``e3nn.o3.wigner_3j(l1, l2, l3)`` transposed to ``[m3, m1, m2]``; ``w`` is
    :func:`sphere_path_weight_exact` rounded to float64 (memoised).
    """
    l1, l2, l3 = check_path(l1, l2, l3)
    return _sphere_path_weight(l1, l2, l3)


@functools.cache
def _recursion_factor(l: int) -> tuple[float, np.ndarray]:
    """``(c_l, U_l)`` of the recursion ``S_l = c_l U_l . (r (x) S_{l-1})``, ``l >= 1``.

    ``U_l = real_cg(l, 1, l-1) / sqrt(2l - 1)`` (e3nn's ``wigner_3j(l, 1, l-1)``, index
    ``[m, q, mu]``, read-only). ``c_l`` is evaluated at the unit point ``e_y``; the norm of the
    un-normalized recursion is the same at every point of the sphere (it is invariant).
    """
    unit = real_cg(l, 1, l - 1) / math.sqrt(2 * l - 1)
    unit.setflags(write=False)
    point = np.array([0.0, 1.0, 0.0])
    previous = np.full(1, 1.0 / math.sqrt(4.0 * math.pi))
    for degree in range(1, l):
        c, u = _recursion_factor(degree)
        previous = c * np.einsum("mqu,q,u->m", u, point, previous)
    raw = np.einsum("mqu,q,u->m", unit, point, previous)
    return math.sqrt((2 * l + 1) / (4.0 * math.pi)) / float(np.linalg.norm(raw)), unit


def solid_harmonics(L: int, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Solid harmonics ``S[n, a] = |r_n|^l Y_a(r_n / |r_n|)``, gradients ``G[n, a, q] = dS_a/dr_q``.

    ``points``: array ``(N, 3)`` (any length; on the unit sphere ``S = Y``). ``a`` runs over the
    flat feature index ``[l=0 | ... | l=L]`` (``d = (L+1)^2``) in e3nn's real basis and
    normalization ``"integral"``; equal to ``e3nn.o3.spherical_harmonics(range(L+1), r,
    normalize=False)``. Returns ``(S (N, d), G (N, d, 3))`` float64.
    """
    L = check_degree(L, "L")
    points = np.asarray(points, dtype=np.float64)
    if points.ndim != 2 or points.shape[1] != 3:
        raise ValueError(f"points must have shape (N, 3); got {points.shape}")
    n = points.shape[0]
    slices = degree_slices(L)
    values = np.zeros((n, dim(L)))
    grads = np.zeros((n, dim(L), 3))
    values[:, 0] = 1.0 / math.sqrt(4.0 * math.pi)
    for l in range(1, L + 1):
        factor, unit = _recursion_factor(l)
        previous = values[:, slices[l - 1]]
        grads[:, slices[l], :] = l * factor * np.einsum("mqu,nu->nmq", unit, previous)
        values[:, slices[l]] = factor * np.einsum("mqu,nq,nu->nm", unit, points, previous)
    return values, grads
