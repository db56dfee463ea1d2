"""Path-weight sharing (proofs/path_weight_sharing.md): one W for all paths keeps equivariance."""

from __future__ import annotations

from functools import cache

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tdn_theory.cp import fit_cp
from tdn_theory.so3 import block_wigner_D, cg_tensor, degree_of_index
from tdn_theory.testing.references import shared_weight_product_naive
from tdn_theory.testing.strategies import rotations
from tdn_theory.theory.weight_sharing import (
    shared_weight_product,
    weight_sharing_bound,
    weight_sharing_equivariance_error,
)

seeds = st.integers(min_value=0, max_value=2**32 - 1)


def _channels(seed: int, d: int, U: int = 3, V: int = 4):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((U, V)), rng.standard_normal((U, d)), rng.standard_normal((V, d))


@cache
def _fit(L: int, rank: int):
    fit = fit_cp(cg_tensor(L), rank, restarts=1, seed=rank, max_iter=60, polish=False)
    return fit.A, fit.B, fit.C


@settings(max_examples=15, deadline=None)
@given(
    R=rotations(), seed=seeds, L=st.integers(1, 3), norm=st.sampled_from(["unit", "cg", "gaunt"])
)
def test_shared_weights_with_the_exact_tensor_are_exactly_equivariant(R, seed, L, norm):
    T = cg_tensor(L, norm)
    W, x, y = _channels(seed, T.shape[0])
    err = weight_sharing_equivariance_error(T, W, x, y, R)
    scale = np.linalg.norm(x, axis=1) * np.linalg.norm(W @ y, axis=1)
    assert np.all(err <= 1e-12 * (1.0 + scale))


@settings(max_examples=10, deadline=None)
@given(seed=seeds, L=st.integers(1, 3))
def test_shared_product_equals_the_defining_double_sum(seed, L):
    T = cg_tensor(L)
    W, x, y = _channels(seed, T.shape[0])
    np.testing.assert_allclose(
        shared_weight_product(T, W, x, y), shared_weight_product_naive(T, W, x, y), atol=1e-12
    )
    factors = _fit(L, 2 * L * L)
    np.testing.assert_allclose(
        shared_weight_product(factors, W, x, y),
        shared_weight_product_naive(factors, W, x, y),
        atol=1e-10,
    )


@pytest.mark.parametrize("L, rank", [(1, 3), (2, 8), (3, 20)])
@settings(max_examples=10, deadline=None)
@given(R=rotations(), seed=seeds)
def test_cp_tensor_with_shared_weights_obeys_the_product_bound(L, rank, R, seed):
    """With T_hat = T + E the defect of channel u is <= 2 ||E_(1)||_2 ||x_u|| ||(W y)_u||."""
    T = cg_tensor(L)
    factors = _fit(L, rank)
    W, x, y = _channels(seed, T.shape[0])
    err = weight_sharing_equivariance_error(factors, W, x, y, R)
    bound = weight_sharing_bound(T, factors, W, x, y)
    assert np.all(err <= bound * (1 + 1e-12))


def test_cp_tensor_with_shared_weights_is_measurably_non_equivariant():
    """Quantify: a coarse fit shows a defect well above round-off (the test can fail)."""
    L, rank = 2, 8
    factors = _fit(L, rank)
    W, x, y = _channels(0, 9)
    R = np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    assert weight_sharing_equivariance_error(factors, W, x, y, R).max() > 1e-3


def test_component_dependent_weights_break_equivariance():
    """Negative control: weights that vary with m inside a degree are not equivariant."""
    L = 2
    T = cg_tensor(L)
    W, x, y = _channels(1, 9)
    scale = 1.0 + 0.5 * np.arange(9) * (degree_of_index(L) > 0)  # differs between m's
    R = np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    D = block_wigner_D(L, R)

    def broken(x_, y_):
        return shared_weight_product(T, W, x_, y_) * scale

    assert np.linalg.norm(broken(x @ D.T, y @ D.T) - broken(x, y) @ D.T) > 1e-3


def test_bad_shapes_raise_value_error():
    T = cg_tensor(1)
    W, x, y = _channels(0, 4)
    with pytest.raises(ValueError):
        shared_weight_product(T, W.T, x, y)
    with pytest.raises(ValueError):
        shared_weight_product(T, W, x[:, :3], y)
