"""EdgeFrameTensorProduct: equals the dense CG product with y = Y(r̂), also at ±ŷ; autograd; errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from e3nn import o3
from hypothesis import given, settings
from hypothesis import strategies as st

from tdn_theory import so3
from tdn_theory.nn import CGTensorProduct, EdgeFrameTensorProduct
from tdn_theory.nn.edge_frame import edge_frame_rotation
from tdn_theory.testing import assert_equivariant
from tdn_theory.testing.strategies import rotations

F64 = torch.float64

#: Edges at and next to the polar axis ±ŷ (e3nn's), on the equator, and random ones.
SPECIAL_EDGES = [
    [0.0, 1.0, 0.0],
    [0.0, -2.5, 0.0],
    [1e-9, 1.0, -1e-9],
    [-1e-9, -1.0, 1e-12],
    [1e-300, -1.0, 0.0],
    [1.0, 0.0, 0.0],
    [0.0, 0.0, -3.0],
    [1.0, -1e-15, 1.0],
]


def edges(n: int, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    random = torch.randn(n, 3, generator=gen, dtype=F64)
    return torch.cat([torch.tensor(SPECIAL_EDGES, dtype=F64), random])


def harmonics(L: int, edge_vec: torch.Tensor) -> torch.Tensor:
    return o3.spherical_harmonics(
        list(range(L + 1)), edge_vec, normalize=True, normalization="component"
    )


@pytest.mark.parametrize("L", [1, 2, 3, 4, 5, 6])
def test_equals_dense_product_with_harmonics_including_polar_axis(L):
    layer = EdgeFrameTensorProduct(L)
    dense = CGTensorProduct(L)
    e = edges(24, seed=L)
    gen = torch.Generator().manual_seed(100 + L)
    x = torch.randn(len(e), 5, layer.d, generator=gen, dtype=F64)
    w = torch.randn(len(e), 5, generator=gen, dtype=F64)
    got = layer(x, e, w)
    want = dense(x, harmonics(L, e), w)
    scale = want.abs().max()
    assert float((got - want).abs().max() / scale) < 1e-12
    # per edge too: the polar-axis edges are as exact as the others
    per_edge = (got - want).abs().amax(dim=(1, 2)) / want.abs().amax(dim=(1, 2))
    assert float(per_edge[: len(SPECIAL_EDGES)].max()) < 1e-12


@pytest.mark.parametrize(
    "normalization,parity", [("cg", "even"), ("unit", "odd"), ("gaunt", "all"), ("sphere", "all")]
)
def test_other_normalizations_and_parities(normalization, parity):
    L = 3
    layer = EdgeFrameTensorProduct(L, normalization, parity)
    dense = CGTensorProduct(L, normalization, parity)
    e = edges(10, seed=3)
    x = torch.randn(len(e), 2, layer.d, generator=torch.Generator().manual_seed(1), dtype=F64)
    want = dense(x, harmonics(L, e))
    assert float((layer(x, e) - want).abs().max() / want.abs().max()) < 1e-12


def test_sparse_blocks_read_from_the_cg_tensor():
    """P = M(., Y(ŷ)) is block diagonal after grouping; blocks pair (l, ±m) (all paths)."""
    L = 4
    layer = EdgeFrameTensorProduct(L)
    P = layer.P.numpy()
    order = layer._order.numpy()
    permuted = P[np.ix_(order, order)]
    start, mask = 0, np.zeros_like(permuted, dtype=bool)
    for size in layer.block_sizes:
        mask[start : start + size, start : start + size] = True
        start += size
    assert np.abs(permuted[~mask]).max() == 0.0
    assert sum(layer.block_sizes) == layer.d
    # all paths: m = 0 alone (L+1 entries), then |m| = 1..L pairs (2 (L+1-|m|) entries)
    assert layer.block_sizes == [L + 1] + [2 * (L + 1 - m) for m in range(1, L + 1)]
    # the even paths alone never couple +m with -m: twice as many, half-size blocks
    even = EdgeFrameTensorProduct(L, parity="even")
    assert sorted(even.block_sizes) == sorted([L + 1] + [L + 1 - m for m in range(1, L + 1)] * 2)
    # far fewer multiply-adds than a dense d x d contraction
    assert sum(s * s for s in layer.block_sizes) < layer.d**2 / 3


def test_rotation_takes_edge_to_polar_axis_and_is_orthogonal():
    e = edges(50, seed=0)
    unit = e / e.norm(dim=-1, keepdim=True)
    R = edge_frame_rotation(unit)
    y_axis = torch.tensor([0.0, 1.0, 0.0], dtype=F64)
    assert float((R @ unit.unsqueeze(-1)).squeeze(-1).sub(y_axis).abs().max()) < 1e-15
    assert float((R @ R.mT - torch.eye(3, dtype=F64)).abs().max()) < 1e-15
    assert float((torch.linalg.det(R) - 1).abs().max()) < 1e-15


def test_wigner_blocks_equal_the_package_wigner_matrices():
    layer = EdgeFrameTensorProduct(5)
    e = edges(6, seed=4)
    D = layer.wigner(e)
    unit = e / e.norm(dim=-1, keepdim=True)
    R = edge_frame_rotation(unit).numpy()
    for l in range(6):
        assert np.abs(D[l].numpy() - so3.wigner_D(l, R)).max() < 1e-14


@settings(max_examples=25, deadline=None)
@given(R=rotations(), seed=st.integers(0, 2**16), L=st.integers(1, 4))
def test_equivariance_under_rotations(R, seed, L):
    """out(D x, R r) = D out(x, r) for the package's Hypothesis rotations."""
    layer = EdgeFrameTensorProduct(L)
    gen = torch.Generator().manual_seed(seed)
    e = torch.cat(
        [torch.tensor(SPECIAL_EDGES[:4], dtype=F64), torch.randn(4, 3, generator=gen, dtype=F64)]
    )
    x = torch.randn(len(e), 3, layer.d, generator=gen, dtype=F64)
    assert_equivariant(
        layer,
        L,
        inputs=(x.numpy(), e.numpy()),
        kinds=("feature", "vector"),
        rotations=np.repeat(R[None], len(e), axis=0),
        adversarial=False,
        dtype=F64,
        rtol=1e-12,
    )


@pytest.mark.parametrize("L", [1, 3])
def test_gradcheck_and_gradgradcheck_through_x_edge_and_weight(L):
    layer = EdgeFrameTensorProduct(L)
    gen = torch.Generator().manual_seed(L)
    e = torch.cat(
        [
            torch.tensor(SPECIAL_EDGES[:4] + SPECIAL_EDGES[5:6], dtype=F64),
            torch.randn(2, 3, generator=gen, dtype=F64),
        ]
    ).requires_grad_(True)
    x = torch.randn(len(e), 2, layer.d, generator=gen, dtype=F64, requires_grad=True)
    w = torch.randn(len(e), 2, generator=gen, dtype=F64, requires_grad=True)
    assert torch.autograd.gradcheck(layer, (x, e, w))
    assert torch.autograd.gradgradcheck(layer, (x, e, w))


def test_edge_gradient_equals_dense_product_gradient():
    """d out / d edge_vec through the edge frame = through e3nn's harmonics (also at ±ŷ)."""
    L = 4
    layer, dense = EdgeFrameTensorProduct(L), CGTensorProduct(L)
    e = edges(6, seed=9)
    x = torch.randn(len(e), 3, layer.d, generator=torch.Generator().manual_seed(2), dtype=F64)
    g = torch.randn(len(e), 3, layer.d, generator=torch.Generator().manual_seed(3), dtype=F64)
    e1, e2 = e.clone().requires_grad_(True), e.clone().requires_grad_(True)
    (layer(x, e1) * g).sum().backward()
    (dense(x, harmonics(L, e2)) * g).sum().backward()
    assert float((e1.grad - e2.grad).abs().max()) < 1e-10 * float(e2.grad.abs().max())


def test_broadcasting_float32_and_empty_inputs():
    L = 2
    layer = EdgeFrameTensorProduct(L)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(4, 1, 3, layer.d, generator=gen, dtype=F64)
    e = torch.randn(5, 3, generator=gen, dtype=F64)
    w = torch.randn(3, generator=gen, dtype=F64)
    out = layer(x, e, w)
    assert out.shape == (4, 5, 3, layer.d)
    want = CGTensorProduct(L)(x, harmonics(L, e), w)
    assert float((out - want).abs().max()) < 1e-12
    f32 = EdgeFrameTensorProduct(L, dtype=torch.float32)
    assert float((f32(x.float(), e.float(), w.float()) - want).abs().max()) < 1e-4
    assert layer(x[:0], e[:1]).shape == (0, 1, 3, layer.d)
    empty = torch.zeros(0, 3, layer.d, dtype=F64, requires_grad=True)
    layer(empty, torch.zeros(0, 3, dtype=F64)).sum().backward()
    assert empty.grad.shape == empty.shape
    assert layer(torch.zeros(2, 0, layer.d, dtype=F64), e[:2]).shape == (2, 0, layer.d)


def test_one_line_errors_for_bad_input():
    layer = EdgeFrameTensorProduct(2)
    x = torch.zeros(3, 4, 9, dtype=F64)
    e = torch.ones(3, 3, dtype=F64)
    cases = [
        ((x, torch.tensor([[0.0, 0.0, 0.0]] * 3, dtype=F64)), "zero-length"),
        ((x, torch.tensor([[float("nan"), 1.0, 0.0]] * 3, dtype=F64)), "NaN"),
        ((x, torch.ones(3, 4, dtype=F64)), "(..., 3)"),
        ((torch.zeros(3, 4, 16, dtype=F64), e), "(..., channels, 9)"),
        ((x, torch.ones(2, 3, dtype=F64)), "do not broadcast"),
        ((x, e, torch.ones(3, 5, dtype=F64)), "4 channels"),
        ((x.float(), e), "layer.to(torch.float32)"),
        ((x.long(), e), "cast the input with .to(torch.float64)"),
        (([[0.0]], e), "must be a torch.Tensor"),
    ]
    for args, fragment in cases:
        with pytest.raises(ValueError) as info:
            layer(*args)
        message = str(info.value)
        assert fragment in message and "\n" not in message, message
