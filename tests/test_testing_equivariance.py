"""assert_equivariant: passes on exact maps, fails (one-line AssertionError) on approximate or broken ones."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tdn_theory import so3
from tdn_theory.cp import fit_cp
from tdn_theory.nn import CGTensorProduct, CPTensorProduct
from tdn_theory.testing import assert_equivariant


def test_exact_dense_layer_passes_float64_and_float32():
    L = 2
    layer = CGTensorProduct(L)
    res = assert_equivariant(lambda x, y: layer(x, y), L, shapes=((3,), ()), dtype=torch.float64)
    assert res.max_error <= 1e-10 and res.tolerance == 1e-10 and res.rotation.shape == (3, 3)
    layer32 = CGTensorProduct(L, dtype=torch.float32)
    res32 = assert_equivariant(
        lambda x, y: layer32(x, y), L, shapes=((2,), ()), dtype=torch.float32
    )
    assert 1e-10 < res32.max_error <= 1e-4  # float32 rounding is seen, and tolerated


def test_cp_layer_at_rank_7L2_fails():
    L = 2
    fit = fit_cp(so3.cg_tensor(L), 7 * L * L, restarts=1, seed=0, max_iter=50, polish=False)
    assert fit.relative_error > 1e-8  # not an exact decomposition
    layer = CPTensorProduct(fit.A, fit.B, fit.C)
    with pytest.raises(
        AssertionError, match=r"^not equivariant: relative error .* > rtol 1\.0e-10"
    ):
        assert_equivariant(lambda x, y: layer(x, y), L, shapes=((1,), ()), dtype=torch.float64)


def test_broken_map_fails_and_adversarial_search_does_not_lose_ground():
    L = 1
    T = so3.cg_tensor(L).copy()
    T[0, 1, 2] += 1e-3  # breaks equivariance slightly

    def broken(x, y):
        return np.einsum("kij,ni,nj->nk", T, x, y)

    with pytest.raises(AssertionError, match="not equivariant"):
        assert_equivariant(broken, L)
    res = assert_equivariant(broken, L, rtol=1.0)
    assert res.adversarial_gain >= 1.0 and res.max_error > 1e-6
    exact = so3.cg_tensor(L)
    assert (
        assert_equivariant(lambda x, y: np.einsum("kij,ni,nj->nk", exact, x, y), L).max_error
        < 1e-12
    )


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="kinds"):
        assert_equivariant(lambda x: x, 1, shapes=((),), kinds=("spinor",))
    with pytest.raises(ValueError, match="rtol"):
        assert_equivariant(lambda x: x, 1, shapes=((),), dtype=np.float16)
