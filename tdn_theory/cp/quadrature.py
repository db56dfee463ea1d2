"""Exact CP decompositions of the "sphere" tensor from quadrature rules on the sphere (no fitting).

The sphere tensor (:mod:`tdn_theory.so3.sphere`), indexed ``[k (output), i (input 1), j (input 2)]``,

    ``T[k, i, j] = int Y_k Y_i Y_j dOmega  +  int Y_k r . (grad S_i x grad S_j) dOmega``

(even paths: real Gaunt tensor; odd paths: surface-curl pairing), has integrands that are
polynomials of degree ``J = l1 + l2 + l3`` (even part) and ``J - 1`` (odd part) restricted to the
unit sphere. A rule ``sum_n w_n f(r_n)`` exact to that degree turns each integral into a finite sum:

* even part, one rank-one term per point: ``w_n Y(r_n) (x) Y(r_n) (x) Y(r_n)``;
* odd part, two rank-one terms per point: with a tangent frame ``t1 _|_ r_n``, ``t2 = r_n x t1``,
  ``r . (u x v) = (t1.u)(t2.v) - (t2.u)(t1.v)``, so the point contributes
  ``w_n Y(r_n) (x) (G t1) (x) (G t2) - w_n Y(r_n) (x) (G t2) (x) (G t1)`` (``G[a, q] = dS_a/dr_q``).

Hence an exact CP of rank ``N`` (``parity="even"``), ``2N`` (``"odd"``) or ``3N`` (``"all"``),
``N`` the number of points of the smallest rule exact to :func:`required_degree`. Per-degree
scalings ``a_l, b_l, c_l`` (rows of A, B, C) give the path weights
``a_{l3} b_{l1} c_{l2} w(l1, l2, l3)`` at the same rank. Proof: ``proofs/sphere_product.md``.

Rules: ``"lebedev"`` (scipy.integrate.lebedev_rule, orders 3..131; some orders have negative
weights, handled by a signed cube root) and ``"gauss-legendre"`` (product rule: Gauss–Legendre in
``z`` times the trapezoid rule in the azimuth; ``floor(D/2) + 1`` times the smallest even number
``> D`` of points for degree ``D``). Both are centrally symmetric, which is what makes the odd
integrands of the wrong-parity index triples vanish exactly (``proofs/sphere_product.md``).
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from scipy.integrate import lebedev_rule

from tdn_theory import so3
from tdn_theory._checks import check_degree
from tdn_theory.so3.sphere import solid_harmonics

from .factor_files import save_factors
from .fit import CPFit
from .tensor_ops import cp_to_tensor, relative_error

__all__ = [
    "LEBEDEV_ORDERS",
    "RULES",
    "required_degree",
    "scaling_array",
    "sphere_cp",
    "sphere_rule",
    "sphere_tensor",
    "tangent_frames",
    "write_sphere_factors",
]

RULES = ("lebedev", "gauss-legendre")

#: Orders (= exact polynomial degree) accepted by scipy.integrate.lebedev_rule (scipy >= 1.15).
LEBEDEV_ORDERS = (
    3,
    5,
    7,
    9,
    11,
    13,
    15,
    17,
    19,
    21,
    23,
    25,
    27,
    29,
    31,
    35,
    41,
    47,
    53,
    59,
    65,
    71,
    77,
    83,
    89,
    95,
    101,
    107,
    113,
    119,
    125,
    131,
)

Scaling = Sequence[Sequence[float]] | Mapping[str, Sequence[Sequence[float]]] | None


def _check_rule(rule: object) -> str:
    if rule not in RULES:
        raise ValueError(f"rule must be one of {', '.join(map(repr, RULES))}; got {rule!r}")
    return str(rule)


def required_degree(L: int, parity: str = "all") -> int:
    """Polynomial degree a rule must integrate exactly for the sphere tensor of degree ``L``.

    The maximum over the paths of ``parity`` of ``J`` (even ``J``: ``Y Y Y``) and ``J - 1``
    (odd ``J``: ``Y r.(grad S x grad S)``), ``J = l1 + l2 + l3``. Equals ``3L`` for even ``L``
    and ``3L - 1`` for odd ``L`` when the even paths are included.
    """
    L = check_degree(L)
    path_list = so3.paths(L, parity)
    if not path_list:
        raise ValueError(f"there are no {parity} paths for L = {L}; use parity='even' or 'all'")
    return max(sum(p) - (sum(p) % 2) for p in path_list)


def sphere_rule(degree: int, rule: str = "lebedev") -> tuple[np.ndarray, np.ndarray]:
    """The smallest rule of the family ``rule`` exact for polynomials of degree ``<= degree``.

    Returns ``(points (N, 3), weights (N,))`` with unit points and ``sum w = 4 pi``, so that
    ``sum_n w_n p(r_n) = int_{S^2} p dOmega`` for every polynomial ``p`` of degree ``<= degree``.
    Both families are centrally symmetric (``-r_n`` is a node with the same weight as ``r_n``),
    so every odd polynomial integrates to exactly 0 as well, whatever its degree.
    Gauss–Legendre: ``floor(degree/2) + 1`` nodes in ``z`` times ``n_phi`` equally spaced
    azimuths, ``n_phi`` the smallest even number ``> degree``.
    """
    degree = check_degree(degree, "degree")
    rule = _check_rule(rule)
    if rule == "lebedev":
        order = next((n for n in LEBEDEV_ORDERS if n >= degree), None)
        if order is None:
            raise ValueError(
                f"no Lebedev rule is exact to degree {degree} (largest order "
                f"{LEBEDEV_ORDERS[-1]}); use rule='gauss-legendre'"
            )
        x, w = lebedev_rule(order)
        points = np.ascontiguousarray(x.T, dtype=np.float64)
        points /= np.linalg.norm(points, axis=1, keepdims=True)
        return points, np.asarray(w, dtype=np.float64)
    n_theta = degree // 2 + 1  # Gauss-Legendre with n nodes is exact to degree 2n - 1 >= degree
    # The trapezoid rule with n_phi nodes kills exp(i m phi) for 1 <= |m| < n_phi; an even n_phi
    # makes the grid centrally symmetric (phi + pi is a node), so odd polynomials integrate to 0.
    n_phi = degree + 1 + (degree + 1) % 2
    z, wz = np.polynomial.legendre.leggauss(n_theta)
    phi = 2.0 * math.pi * np.arange(n_phi) / n_phi
    rho = np.sqrt(1.0 - z**2)
    points = np.stack(
        [
            np.outer(rho, np.cos(phi)).ravel(),
            np.outer(rho, np.sin(phi)).ravel(),
            np.repeat(z, n_phi),
        ],
        axis=1,
    )
    weights = np.repeat(wz, n_phi) * (2.0 * math.pi / n_phi)
    return points, weights


def tangent_frames(
    points: np.ndarray, seed: int | np.random.Generator | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Orthonormal tangent frames ``(t1, t2)`` (each ``(N, 3)``) with ``t2 = r x t1``.

    ``t1`` is the normalized cross product of ``r`` with the coordinate axis least aligned with
    it; with a ``seed`` each frame is turned by a random angle in its tangent plane (the sphere
    tensor does not depend on the frame; the tests use this).
    """
    points = np.asarray(points, dtype=np.float64)
    axes = np.eye(3)[np.argmin(np.abs(points), axis=1)]
    t1 = np.cross(points, axes)
    t1 /= np.linalg.norm(t1, axis=1, keepdims=True)
    if seed is not None:
        angle = np.random.default_rng(seed).uniform(0.0, 2.0 * math.pi, size=(len(points), 1))
        t1 = np.cos(angle) * t1 + np.sin(angle) * np.cross(points, t1)
    t2 = np.cross(points, t1)
    return t1, t2


def _per_degree(values: object, L: int, name: str) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    if array.shape != (L + 1,) or not np.all(np.isfinite(array)):
        raise ValueError(
            f"scaling {name} must be {L + 1} finite numbers (one per degree 0..{L}); "
            f"got shape {array.shape}"
        )
    return array


def _scalings(scalings: Scaling, L: int) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """``{"even": (a, b, c), "odd": (a, b, c)}`` per-degree arrays from the user's ``scalings``."""
    ones = np.ones(L + 1)
    if scalings is None:
        return {"even": (ones, ones, ones), "odd": (ones, ones, ones)}
    if isinstance(scalings, Mapping):
        unknown = set(scalings) - {"even", "odd"}
        if unknown:
            raise ValueError(
                f"scalings keys must be 'even' and/or 'odd'; got {sorted(map(str, unknown))}"
            )
        out = {}
        for part in ("even", "odd"):
            out[part] = _scalings(scalings.get(part), L)[part]
        return out
    if len(scalings) != 3:
        raise ValueError(
            "scalings must be (a, b, c): per-degree factors of output, input 1, input 2"
        )
    abc = tuple(_per_degree(v, L, n) for v, n in zip(scalings, "abc", strict=True))
    return {"even": abc, "odd": abc}


def scaling_array(L: int, parity: str = "all", scalings: Scaling = None) -> np.ndarray:
    """``(d, d, d)`` array ``s[k, i, j] = a_{l(k)} b_{l(i)} c_{l(j)}`` (per parity of ``J``)."""
    scale = _scalings(scalings, L)
    deg = so3.degree_of_index(L)
    parity_of_J = (deg[:, None, None] + deg[None, :, None] + deg[None, None, :]) % 2
    out = np.zeros((len(deg),) * 3)
    for part, value in (("even", 0), ("odd", 1)):
        a, b, c = scale[part]
        block = a[deg][:, None, None] * b[deg][None, :, None] * c[deg][None, None, :]
        out = np.where(parity_of_J == value, block, out)
    return out


def sphere_tensor(L: int, parity: str = "all", scalings: Scaling = None) -> np.ndarray:
    """The exact target: ``so3.cg_tensor(L, "sphere", parity)`` times :func:`scaling_array`."""
    return so3.cg_tensor(L, "sphere", parity) * scaling_array(L, parity, scalings)


def _signed_cbrt(w: np.ndarray) -> np.ndarray:
    return np.sign(w) * np.abs(w) ** (1.0 / 3.0)


def _interleave(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Columns ``u[:, 0], v[:, 0], u[:, 1], v[:, 1], ...`` (the two odd terms of each point)."""
    return np.stack([u, v], axis=2).reshape(u.shape[0], -1)


def sphere_cp(
    L: int,
    parity: str = "all",
    rule: str = "lebedev",
    scalings: Scaling = None,
    *,
    frame_seed: int | None = None,
    check: bool = True,
) -> CPFit:
    """Exact CP factors of the sphere tensor of degree ``L`` from the smallest exact rule.

    ``parity``: "all" (rank 3N), "even" (Gaunt tensor, rank N), "odd" (curl pairing, rank 2N).
    ``rule``: "lebedev" or "gauss-legendre". ``scalings``: None, ``(a, b, c)`` (per-degree
    factors, each of length L+1, applied to both parts) or ``{"even": (a, b, c), "odd": ...}``.
    ``frame_seed`` turns the tangent frames randomly (the tensor does not change).
    Columns are ordered: the N even terms, then for each point its two odd terms. The quadrature
    weight ``w_n`` is split as ``cbrt(w_n)`` over A, B, C. ``relative_error`` is measured against
    :func:`sphere_tensor` when ``check`` (else NaN); ``history[0]`` records rule, degree, points.
    """
    start = time.perf_counter()
    L = check_degree(L)
    if parity not in so3.PARITIES:
        raise ValueError(f"parity must be one of {so3.PARITIES}; got {parity!r}")
    rule = _check_rule(rule)
    scale = _scalings(scalings, L)
    degree = required_degree(L, parity)
    points, weights = sphere_rule(degree, rule)
    values, grads = solid_harmonics(L, points)  # (N, d), (N, d, 3); on the unit sphere S = Y
    deg = so3.degree_of_index(L)
    cw = _signed_cbrt(weights)
    columns: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    if parity in ("all", "even"):
        a, b, c = (s[deg][:, None] for s in scale["even"])
        Y = (values * cw[:, None]).T  # (d, N)
        columns.append((a * Y, b * Y, c * Y))
    if parity in ("all", "odd"):
        a, b, c = (s[deg][:, None] for s in scale["odd"])
        t1, t2 = tangent_frames(points, frame_seed)
        g1 = np.einsum("naq,nq->an", grads, t1) * cw  # (d, N): (grad S_a . t1) cbrt(w)
        g2 = np.einsum("naq,nq->an", grads, t2) * cw
        Y = (values * cw[:, None]).T
        columns.append((a * _interleave(Y, Y), b * _interleave(g1, g2), c * _interleave(g2, -g1)))
    A, B, C = (
        np.ascontiguousarray(np.concatenate([col[n] for col in columns], axis=1)) for n in range(3)
    )
    error = float("nan")
    if check:
        error = relative_error(sphere_tensor(L, parity, scalings), cp_to_tensor(A, B, C))
    record: dict[str, Any] = {
        "stage": "quadrature",
        "rule": rule,
        "degree": degree,
        "points": int(len(weights)),
        "parity": parity,
        "frame_seed": frame_seed,
        "scaled": scalings is not None,
    }
    return CPFit(
        A=A,
        B=B,
        C=C,
        relative_error=error,
        history=[record],
        seed=frame_seed,
        seconds=time.perf_counter() - start,
    )


def write_sphere_factors(
    path: str | Path, L: int, parity: str = "all", rule: str = "lebedev"
) -> tuple[Path, CPFit]:
    """Build :func:`sphere_cp` (no scalings) and save it as a normal factor file.

    The metadata says ``L``, ``normalization="sphere"``, ``parity``, ``method="quadrature"``,
    the rule, its degree and number of points; the target's SHA-256 is stored too.
    """
    fit = sphere_cp(L, parity, rule)
    record = fit.history[0]
    meta = {
        "L": int(L),
        "normalization": "sphere",
        "parity": parity,
        "method": "quadrature",
        "rule": rule,
        "rule_degree": record["degree"],
        "rule_points": record["points"],
    }
    out = save_factors(path, fit, meta, target=sphere_tensor(L, parity))
    return out, fit
