"""CG tensor: shape, path counts, normalizations, parity, equivariance, Gaunt by quadrature."""

import math

import numpy as np
import pytest
import torch
from e3nn import o3
from hypothesis import given
from scipy.integrate import lebedev_rule

import tdn_theory
from tdn_theory.so3 import (
    block_wigner_D,
    cg_tensor,
    degree_of_index,
    degree_slices,
    dim,
    path_weight,
    paths,
    real_cg,
    wigner_D,
)
from tdn_theory.testing import strategies


def test_top_level_reexports_and_shape():
    assert tdn_theory.cg_tensor(4).shape == (25, 25, 25)
    assert tdn_theory.real_cg is real_cg and tdn_theory.wigner_D is wigner_D


def test_path_counts():
    assert [len(paths(L)) for L in range(1, 7)] == [5, 15, 34, 65, 111, 175]
    for L in range(5):
        assert len(paths(L, "even")) + len(paths(L, "odd")) == len(paths(L))
        assert all((a + b + c) % 2 == 0 for a, b, c in paths(L, "even"))
        assert all((a + b + c) % 2 == 1 for a, b, c in paths(L, "odd"))


def test_layout_helpers():
    assert dim(3) == 16
    assert [s.stop - s.start for s in degree_slices(3)] == [1, 3, 5, 7]
    assert list(degree_of_index(2)) == [0, 1, 1, 1, 2, 2, 2, 2, 2]


def block_of(M, L, path):
    s = degree_slices(L)
    l1, l2, l3 = path
    return M[s[l3], s[l1], s[l2]]


@pytest.mark.parametrize("L", [1, 2, 3])
def test_normalizations(L):
    unit, cg = cg_tensor(L, "unit"), cg_tensor(L, "cg")
    for path in paths(L):
        assert np.isclose(np.linalg.norm(block_of(unit, L, path)), 1.0, atol=1e-14)
        c = block_of(cg, L, path)  # [m3, m1, m2]
        assert np.allclose((c**2).sum(axis=(1, 2)), 1.0, atol=1e-14)
        assert np.allclose(c, real_cg(*path).transpose(2, 0, 1), atol=1e-15)
    # the whole tensor is the sum of its parity parts
    assert np.array_equal(cg_tensor(L, parity="even") + cg_tensor(L, parity="odd"), unit)


def test_gaunt_equals_quadrature_of_e3nn_harmonics():
    L = 3
    points, weights = lebedev_rule(17)  # exact for degree 17 >= 3 L
    r = torch.tensor(points.T)
    Y = o3.spherical_harmonics(list(range(L + 1)), r, normalize=True, normalization="integral")
    Y = Y.numpy()
    quadrature = np.einsum("n,nk,ni,nj->kij", weights, Y, Y, Y)
    gaunt = cg_tensor(L, "gaunt")
    assert np.abs(quadrature - gaunt).max() < 1e-13
    for path in paths(L):
        w = path_weight(*path, "gaunt")
        assert (w > 0) if sum(path) % 2 == 0 else (w == 0)


@given(strategies.rotations(), strategies.features(3), strategies.features(3))
def test_cg_tensor_is_equivariant(R, x, y):
    for normalization in ("unit", "gaunt"):
        M = cg_tensor(3, normalization)
        D = block_wigner_D(3, R)
        lhs = np.einsum("kij,i,j->k", M, D @ x, D @ y)
        rhs = D @ np.einsum("kij,i,j->k", M, x, y)
        assert np.abs(lhs - rhs).max() < 1e-12


@given(strategies.rotations(), strategies.paths(5))
def test_every_block_is_invariant(R, path):
    l1, l2, l3 = path
    c = real_cg(*path)
    rotated = np.einsum("abc,ax,by,cz->xyz", c, wigner_D(l1, R), wigner_D(l2, R), wigner_D(l3, R))
    assert np.abs(rotated - c).max() < 1e-12


@pytest.mark.parametrize(
    "call, word",
    [
        (lambda: cg_tensor(-1), "L"),
        (lambda: cg_tensor(2.5), "L"),
        (lambda: cg_tensor(2, normalization="norm"), "normalization"),
        (lambda: cg_tensor(2, parity="both"), "parity"),
        (lambda: cg_tensor(1000), "L"),
        (lambda: paths(-2), "L"),
    ],
)
def test_bad_input_raises(call, word):
    with pytest.raises(ValueError, match=word):
        call()


def test_weights_scale_unit_blocks():
    for path in paths(3):
        assert path_weight(*path, "cg") == pytest.approx(math.sqrt(2 * path[2] + 1))
