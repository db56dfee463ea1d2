"""The quadrature CP construction of the sphere tensor (tdn_theory.cp.quadrature).

Checks proofs/sphere_product.md sections 1, 5, 6: exactness (degree count), rank N / 2N / 3N,
frame independence, per-degree scalings, equivariance of the layer built from the factors.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from tdn_theory import so3
from tdn_theory.cp import load_factors
from tdn_theory.cp.quadrature import (
    LEBEDEV_ORDERS,
    required_degree,
    sphere_cp,
    sphere_rule,
    sphere_tensor,
    tangent_frames,
    write_sphere_factors,
)
from tdn_theory.nn import CPTensorProduct
from tdn_theory.testing.strategies import features, rotations

RULES = ("lebedev", "gauss-legendre")


def _monomial_integral(a: int, b: int, c: int) -> float:
    """int_{S^2} x^a y^b z^c dOmega = 2 G((a+1)/2) G((b+1)/2) G((c+1)/2) / G((a+b+c+3)/2)."""
    if a % 2 or b % 2 or c % 2:
        return 0.0
    g = math.gamma
    return 2 * g((a + 1) / 2) * g((b + 1) / 2) * g((c + 1) / 2) / g((a + b + c + 3) / 2)


@pytest.mark.parametrize("rule", RULES)
@pytest.mark.parametrize("degree", [0, 2, 5, 8, 12])
def test_rule_integrates_monomials_exactly(rule, degree):
    points, weights = sphere_rule(degree, rule)
    np.testing.assert_allclose(np.linalg.norm(points, axis=1), 1.0, atol=1e-15)
    # every monomial up to the degree, and (central symmetry) odd ones of any degree
    for a, b, c in itertools.product(range(degree + 4), repeat=3):
        total = a + b + c
        if total > degree and total % 2 == 0 or total > degree + 3:
            continue
        approx = float(np.sum(weights * points[:, 0] ** a * points[:, 1] ** b * points[:, 2] ** c))
        assert approx == pytest.approx(_monomial_integral(a, b, c), abs=1e-13), (a, b, c)


def test_lebedev_rule_is_the_smallest_exact_one():
    for degree in (2, 6, 8, 12, 14, 18):
        points, _ = sphere_rule(degree, "lebedev")
        index = next(i for i, n in enumerate(LEBEDEV_ORDERS) if n >= degree)
        assert index == 0 or LEBEDEV_ORDERS[index - 1] < degree  # the next smaller is not exact
        assert len(points) == len(sphere_rule(LEBEDEV_ORDERS[index], "lebedev")[0])


def test_required_degree():
    for L in range(1, 9):
        assert required_degree(L, "all") == required_degree(L, "even") == 3 * L - L % 2
        odd = max(sum(p) - 1 for p in so3.paths(L, "odd"))
        assert required_degree(L, "odd") == odd


@pytest.mark.parametrize("rule", RULES)
@pytest.mark.parametrize("L", range(1, 9))
def test_construction_equals_cg_tensor(L, rule):
    fit = sphere_cp(L, "all", rule)
    T = so3.cg_tensor(L, "sphere")
    assert fit.relative_error < 1e-13
    assert np.max(np.abs(fit.to_tensor() - T)) <= 1e-12 * np.max(np.abs(T))
    assert fit.rank == 3 * fit.history[0]["points"]


def test_lebedev_ranks_match_the_known_point_counts():
    """Lebedev points for degree 3L (L even) / 3L - 1 (L odd): 6, 26, 38, 74, 86, 146."""
    for L, n in zip(range(1, 7), (6, 26, 38, 74, 86, 146), strict=True):
        assert sphere_cp(L, "even", check=False).rank == n
        assert sphere_cp(L, "all", check=False).rank == 3 * n


@pytest.mark.parametrize("rule", RULES)
@pytest.mark.parametrize("parity", ["even", "odd"])
def test_parts(parity, rule):
    L = 4
    fit = sphere_cp(L, parity, rule)
    per_point = 1 if parity == "even" else 2
    assert fit.rank == per_point * fit.history[0]["points"]
    T = so3.cg_tensor(L, "sphere", parity)
    assert np.max(np.abs(fit.to_tensor() - T)) <= 1e-12 * np.max(np.abs(T))
    if parity == "even":  # the Gaunt tensor of the lead's "gaunt" normalization
        gaunt = so3.cg_tensor(L, "gaunt", "even")
        assert np.max(np.abs(fit.to_tensor() - gaunt)) <= 1e-12 * np.max(np.abs(gaunt))


def test_every_path_block_is_nonzero():
    L = 6
    T = sphere_cp(L, "all").to_tensor()
    s = so3.degree_slices(L)
    for l1, l2, l3 in so3.paths(L):
        assert np.linalg.norm(T[s[l3], s[l1], s[l2]]) > 0.1, (l1, l2, l3)


@pytest.mark.parametrize("rule", RULES)
def test_tangent_frame_does_not_change_the_tensor(rule):
    L = 5
    base = sphere_cp(L, "all", rule)
    for seed in (1, 2):
        turned = sphere_cp(L, "all", rule, frame_seed=seed)
        assert not np.allclose(turned.B, base.B)  # different factors ...
        scale = np.max(np.abs(base.to_tensor()))
        assert np.max(np.abs(turned.to_tensor() - base.to_tensor())) <= 1e-13 * scale  # same T


def test_tangent_frames_are_orthonormal():
    points, _ = sphere_rule(9, "lebedev")
    t1, t2 = tangent_frames(points, seed=3)
    for u, v in [(t1, t1), (t2, t2)]:
        np.testing.assert_allclose(np.sum(u * v, axis=1), 1.0, atol=1e-14)
    for u, v in [(t1, t2), (t1, points), (t2, points)]:
        np.testing.assert_allclose(np.sum(u * v, axis=1), 0.0, atol=1e-14)
    np.testing.assert_allclose(np.cross(t1, t2), points, atol=1e-14)


def test_scalings_keep_the_rank_and_scale_the_path_weights():
    L = 3
    rng = np.random.default_rng(11)
    even = tuple(rng.uniform(0.5, 2.0, L + 1) for _ in range(3))
    odd = tuple(rng.uniform(0.5, 2.0, L + 1) for _ in range(3))
    fit = sphere_cp(L, "all", "lebedev", scalings={"even": even, "odd": odd})
    assert fit.rank == sphere_cp(L, "all", check=False).rank
    assert fit.relative_error < 1e-13
    T = fit.to_tensor()
    s = so3.degree_slices(L)
    for l1, l2, l3 in so3.paths(L):
        a, b, c = even if (l1 + l2 + l3) % 2 == 0 else odd
        expected = a[l3] * b[l1] * c[l2] * so3.path_weight(l1, l2, l3, "sphere")
        block = T[s[l3], s[l1], s[l2]]
        np.testing.assert_allclose(block, expected * so3.unit_block(l1, l2, l3), atol=1e-13)
    shared = sphere_cp(L, "all", scalings=even)
    expected = sphere_tensor(L, "all", {"even": even, "odd": even})
    assert np.max(np.abs(shared.to_tensor() - expected)) <= 1e-13 * np.max(np.abs(expected))


@given(R=rotations(), x1=features(3), x2=features(3), y=features(3))
def test_cp_layer_is_equivariant(R, x1, x2, y):
    L = 3
    D = so3.block_wigner_D(L, R)
    for rule in RULES:
        fit = sphere_cp(L, "all", rule, check=False)
        layer = CPTensorProduct(fit.A, fit.B, fit.C)
        x = np.stack([x1, x2])  # (channels, d)
        out = layer(torch.from_numpy(x), torch.from_numpy(y)).numpy()
        out_rotated = layer(torch.from_numpy(x @ D.T), torch.from_numpy(D @ y)).numpy()
        # |M(x, y)| <= ||T||_F |x| |y|: relative equivariance error below 1e-10
        scale = np.linalg.norm(so3.cg_tensor(L, "sphere")) * np.linalg.norm(x) * np.linalg.norm(y)
        assert np.linalg.norm(out_rotated - out @ D.T) <= 1e-10 * scale


@given(L=st.integers(1, 4), seed=st.integers(0, 2**16))
def test_construction_is_exact_for_drawn_degrees_and_frames(L, seed):
    fit = sphere_cp(L, "all", "gauss-legendre", frame_seed=seed)
    assert fit.relative_error < 1e-13


def test_factor_file_round_trip(tmp_path):
    path, fit = write_sphere_factors(tmp_path / "sphere_L3.npz", 3)
    loaded, meta = load_factors(path, expect={"L": 3, "normalization": "sphere"})
    assert meta["method"] == "quadrature" and meta["rank"] == fit.rank == 114
    np.testing.assert_array_equal(loaded.A, fit.A)
    layer = CPTensorProduct.from_file(path, expect={"normalization": "sphere"})
    assert layer.rank == 114


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"L": 2, "rule": "simpson"}, "rule"),
        ({"L": 2, "parity": "both"}, "parity"),
        ({"L": 0, "parity": "odd"}, "no odd paths"),
        ({"L": 2, "scalings": ([1, 1], [1, 1, 1], [1, 1, 1])}, "scaling a"),
        ({"L": 2, "scalings": {"evn": ([1] * 3,) * 3}}, "keys"),
        ({"L": -1}, "L must be"),
    ],
)
def test_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        sphere_cp(**kwargs)


def test_no_lebedev_rule_beyond_order_131():
    with pytest.raises(ValueError, match="gauss-legendre"):
        sphere_rule(132, "lebedev")
