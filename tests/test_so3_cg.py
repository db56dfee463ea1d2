"""Real CG blocks: reality, agreement with e3nn, orthogonality, symmetries (proofs/conventions.md)."""

import math

import numpy as np
import pytest
import sympy
import torch
from e3nn import o3

from tdn_theory.so3 import change_of_basis, paths, real_cg
from tdn_theory.so3.clebsch_gordan import _real_cg_float_uncached


def e3nn_block(l1, l2, l3):
    return o3.wigner_3j(l1, l2, l3, dtype=torch.float64).numpy()


def test_change_of_basis_is_unitary():
    for l in range(6):
        q = change_of_basis(l)
        assert np.allclose(q @ q.conj().T, np.eye(2 * l + 1), atol=1e-15)
        exact = change_of_basis(l, exact=True)
        assert sympy.simplify(exact * exact.H - sympy.eye(2 * l + 1)) == sympy.zeros(2 * l + 1)


@pytest.mark.parametrize("path", paths(2) + [(1, 2, 3), (2, 2, 3), (3, 1, 3)])
def test_real_cg_exact_is_real(path):
    exact = real_cg(*path, exact=True)
    values = np.array(exact.tolist(), dtype=object)
    for value in values.ravel():
        assert sympy.im(value) == 0  # exactly zero, not discarded
    assert np.allclose(np.array(exact.tolist(), dtype=float), real_cg(*path), atol=1e-15, rtol=0)


def test_real_cg_matches_e3nn_for_every_path_up_to_6():
    worst = 0.0
    for l1, l2, l3 in paths(6):
        reference = math.sqrt(2 * l3 + 1) * e3nn_block(l1, l2, l3)
        worst = max(worst, float(np.abs(real_cg(l1, l2, l3) - reference).max()))
    assert worst < 1e-13


@pytest.mark.parametrize("l1,l2", [(0, 0), (1, 1), (1, 2), (2, 3), (3, 3), (4, 2)])
def test_orthogonality_relations(l1, l2):
    blocks = [real_cg(l1, l2, l3) for l3 in range(abs(l1 - l2), l1 + l2 + 1)]
    for c in blocks:  # sum_{m1 m2} C[m1 m2 m3] C[m1 m2 m3'] = delta
        flat = c.reshape(-1, c.shape[2])
        assert np.allclose(flat.T @ flat, np.eye(c.shape[2]), atol=1e-13)
    # completeness: sum_{l3 m3} C[m1 m2 m3] C[m1' m2' m3] = delta_{m1 m1'} delta_{m2 m2'}
    stacked = np.concatenate([c.reshape(-1, c.shape[2]) for c in blocks], axis=1)
    assert np.allclose(stacked @ stacked.T, np.eye(stacked.shape[0]), atol=1e-13)


@pytest.mark.parametrize("path", [(0, 1, 1), (1, 2, 1), (1, 2, 2), (2, 1, 3), (3, 2, 2), (3, 4, 4)])
def test_swap_symmetry(path):
    l1, l2, l3 = path
    sign = (-1) ** (l1 + l2 - l3)
    direct = _real_cg_float_uncached(l2, l1, l3)  # computed without the symmetry
    assert np.allclose(direct, sign * real_cg(l1, l2, l3).transpose(1, 0, 2), atol=1e-15)


def test_swap_symmetry_exact():
    a = np.array(real_cg(1, 2, 2, exact=True).tolist(), dtype=object)
    b = np.array(real_cg(2, 1, 2, exact=True).tolist(), dtype=object)
    assert all(
        sympy.simplify(x + y) == 0
        for x, y in zip(b.ravel(), a.transpose(1, 0, 2).ravel(), strict=True)
    )


def test_levi_civita_and_dot_product():
    # 1 x 1 -> 1 is the cross product (up to 1/sqrt 2); 1 x 1 -> 0 the dot product (up to 1/sqrt 3)
    cross = real_cg(1, 1, 1)
    x, y = np.array([0.3, -1.2, 0.5]), np.array([2.0, 0.1, -0.7])
    z = np.einsum("abc,a,b->c", cross, x, y)
    assert np.allclose(np.abs(z), np.abs(np.cross(x, y)) / math.sqrt(2), atol=1e-15)
    assert np.allclose(np.einsum("abc,a,b->c", real_cg(1, 1, 0), x, y), (x @ y) / math.sqrt(3))


@pytest.mark.parametrize("args", [(-1, 0, 1), (1, 1, 3), (1.5, 1, 1), ("1", 1, 1), (True, 1, 1)])
def test_bad_paths_raise(args):
    with pytest.raises(ValueError, match=r"l1|l2|l3|triangle"):
        real_cg(*args)


@pytest.mark.parametrize("path", [(1, 1, 1), (2, 1, 2), (1, 2, 3), (3, 2, 1), (2, 2, 2), (3, 3, 2)])
def test_complex_cg_equals_sympy_clebsch_gordan(path):
    from sympy.physics.wigner import clebsch_gordan

    from tdn_theory.so3 import complex_cg

    l1, l2, l3 = path
    ours = complex_cg(l1, l2, l3)
    for m1 in range(-l1, l1 + 1):
        for m2 in range(-l2, l2 + 1):
            if abs(m1 + m2) <= l3:
                reference = clebsch_gordan(l1, l2, l3, m1, m2, m1 + m2)
                assert sympy.simplify(ours.get((m1, m2), 0) - reference) == 0
