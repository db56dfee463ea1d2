"""CPTensorProduct and CGTensorProduct: exactness against e3nn, bounds, autograd, shapes, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from e3nn.util.test import equivariance_error
from hypothesis import given
from hypothesis import strategies as st

from tdn_theory import so3
from tdn_theory.cp import FactorFileError, fit_cp, save_factors
from tdn_theory.cp.fit import CPFit
from tdn_theory.nn import (
    CGTensorProduct,
    CPTensorProduct,
    E3nnLayout,
    e3nn_path_weights,
    e3nn_tensor_product,
    from_e3nn_layout,
    irreps,
    to_e3nn_layout,
)
from tdn_theory.testing import assert_equivariant
from tdn_theory.testing.strategies import rotations
from tdn_theory.theory.universality import constructive_cp

F64 = torch.float64


def constructive_factors(T: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Thm 3.2's exact rank-d^2 factors (tdn_theory.theory.universality)."""
    return constructive_cp(T)


def inputs(L: int, channels: int, batch: tuple[int, ...], seed: int, dtype=F64):
    gen = torch.Generator().manual_seed(seed)
    d = (L + 1) ** 2
    x = torch.randn(*batch, channels, d, generator=gen, dtype=F64).to(dtype)
    y = torch.randn(*batch, d, generator=gen, dtype=F64).to(dtype)
    w = torch.randn(*batch, channels, generator=gen, dtype=F64).to(dtype)
    return x, y, w


def e3nn_output(L, channels, normalization, parity, x, y, w):
    tp = e3nn_tensor_product(L, channels, parity, dtype=x.dtype)
    z = tp(to_e3nn_layout(x), y, e3nn_path_weights(w, L, normalization, parity))
    return from_e3nn_layout(z, L, channels)


@pytest.mark.parametrize("L", [1, 2, 3])
@pytest.mark.parametrize(
    "normalization,parity", [("unit", "all"), ("cg", "all"), ("gaunt", "all"), ("unit", "odd")]
)
def test_exact_factors_equal_dense_and_e3nn_float64(L, normalization, parity):
    T = so3.cg_tensor(L, normalization=normalization, parity=parity)
    cp = CPTensorProduct(*constructive_factors(T))
    cg = CGTensorProduct(L, normalization, parity)
    assert cp.A.dtype == F64 and cg.M.dtype == F64
    x, y, w = inputs(L, 4, (6,), seed=L)
    ref = e3nn_output(L, 4, normalization, parity, x, y, w)
    # the e3nn reference is not trivially zero, and differs from an unweighted product
    assert ref.abs().max() > 0.1
    torch.testing.assert_close(cg(x, y, w), ref, rtol=0, atol=1e-10)
    torch.testing.assert_close(cp(x, y, w), ref, rtol=0, atol=1e-10)
    # weight=None means weight 1 for every channel
    torch.testing.assert_close(cp(x, y), cp(x, y, torch.ones_like(w)), rtol=0, atol=1e-12)


@pytest.mark.parametrize("L", [1, 3])
def test_exact_factors_equal_e3nn_float32(L):
    T = so3.cg_tensor(L)
    cp = CPTensorProduct(*constructive_factors(T)).float()
    cg = CGTensorProduct(L).to(torch.float32)
    assert cp.A.dtype == torch.float32 and cg.M.dtype == torch.float32
    x, y, w = inputs(L, 8, (5,), seed=10 + L)
    ref = e3nn_output(L, 8, "unit", "all", x, y, w)  # float64 reference
    for layer in (cp, cg):
        out = layer(x.float(), y.float(), w.float())
        assert out.dtype == torch.float32
        torch.testing.assert_close(out.double(), ref, rtol=0, atol=1e-5)
    ref32 = e3nn_output(L, 8, "unit", "all", x.float(), y.float(), w.float())
    torch.testing.assert_close(cp(x.float(), y.float(), w.float()), ref32, rtol=0, atol=1e-5)


def test_low_rank_output_error_within_aposteriori_bound():
    L = 2
    T = so3.cg_tensor(L)
    fit = fit_cp(T, 10, restarts=1, seed=3, max_iter=60, polish=False)
    assert fit.relative_error > 0.05  # genuinely inexact
    cp = CPTensorProduct(fit.A, fit.B, fit.C)
    cg = CGTensorProduct(L)
    E = cp.dense_tensor().numpy() - T
    spectral = np.linalg.norm(E.reshape(E.shape[0], -1), 2)  # ||E_(1)||_2
    x, y, w = inputs(L, 16, (40,), seed=5)
    err = (cp(x, y, w) - cg(x, y, w)).norm(dim=-1)  # (batch, channel)
    bound = spectral * w.abs() * x.norm(dim=-1) * y.norm(dim=-1)[:, None]
    assert bool((err <= bound * (1 + 1e-12)).all())
    assert float((err / bound).max()) > 0.05  # the bound is not vacuous here
    # the worst case is attained: x ⊗ y along the top right singular vector of E_(1) if it is
    # a product; in general the ratio stays <= 1 (checked above) and the error is not zero
    assert float(err.max()) > 1e-3


@pytest.fixture
def float64_default():
    """e3nn's equivariance_error builds its Wigner matrices in torch's default dtype."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(F64)
    yield
    torch.set_default_dtype(previous)


def test_e3nn_equivariance_error_of_exact_layer(float64_default):
    L, channels = 3, 3
    T = so3.cg_tensor(L)
    layer = E3nnLayout(CPTensorProduct(*constructive_factors(T)), L, channels)
    x, y, w = inputs(L, channels, (4,), seed=7)
    # e3nn draws the rotations from torch's global generator: seed it here so that the result does
    # not depend on which tests ran before (e3nn's own Wigner D loses accuracy near some angles,
    # up to ~1e-9 in float64 for a few rotations in a hundred)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        errors = equivariance_error(
            layer,
            [to_e3nn_layout(x), y, w],
            irreps_in=[irreps(L, channels), irreps(L, 1), None],
            irreps_out=[irreps(L, channels)],
            ntrials=3,
            do_parity=False,  # all labels are "e": parity is the identity (see irreps_layout)
        )
    worst = max(float(v.max()) for v in errors.values())
    assert worst < 1e-9


def test_low_rank_layer_is_not_equivariant(float64_default):
    """The check above can fail: an inexact fit gives a visible equivariance error."""
    L, channels = 2, 2
    fit = fit_cp(so3.cg_tensor(L), 6, restarts=1, seed=1, max_iter=40, polish=False)
    layer = E3nnLayout(CPTensorProduct(fit.A, fit.B, fit.C), L, channels)
    x, y, w = inputs(L, channels, (4,), seed=8)
    errors = equivariance_error(
        layer,
        [to_e3nn_layout(x), y, w],
        irreps_in=[irreps(L, channels), irreps(L, 1), None],
        irreps_out=[irreps(L, channels)],
        do_parity=False,
    )
    assert max(float(v.max()) for v in errors.values()) > 1e-3


@given(R=rotations(), seed=st.integers(0, 999), L=st.integers(1, 3))
def test_exact_layer_commutes_with_rotations(R, seed, L):
    cp = CPTensorProduct(*constructive_factors(so3.cg_tensor(L)))
    x, y, w = inputs(L, 3, (2,), seed=seed)
    assert_equivariant(
        cp,
        L,
        inputs=(x.numpy(), y.numpy(), w.numpy()),
        kinds=("feature", "feature", "invariant"),
        rotations=np.stack([R, R]),
        adversarial=False,
        dtype=torch.float64,
    )


@pytest.mark.parametrize("layer_kind", ["cp", "cg"])
def test_gradcheck_float64(layer_kind):
    L = 2
    if layer_kind == "cp":
        fit = fit_cp(so3.cg_tensor(L), 12, restarts=1, seed=0, max_iter=20, polish=False)
        layer = CPTensorProduct(fit.A, fit.B, fit.C)
    else:
        layer = CGTensorProduct(L)
    x, y, w = inputs(L, 3, (2,), seed=11)
    args = tuple(t.clone().requires_grad_(True) for t in (x, y, w))
    assert torch.autograd.gradcheck(layer, args, eps=1e-6, atol=1e-7)
    assert torch.autograd.gradgradcheck(layer, args, eps=1e-6, atol=1e-6)


@pytest.mark.parametrize("layer_kind", ["cp", "cg"])
def test_extra_batch_dimensions_and_broadcasting(layer_kind):
    L, channels = 2, 3
    T = so3.cg_tensor(L)
    layer = CPTensorProduct(*constructive_factors(T)) if layer_kind == "cp" else CGTensorProduct(L)
    x, y, w = inputs(L, channels, (2, 5), seed=12)
    out = layer(x, y, w)
    assert out.shape == (2, 5, channels, 9)
    for a in range(2):
        for b in range(5):
            single = layer(x[a, b], y[a, b], w[a, b])  # no batch dimension at all
            torch.testing.assert_close(out[a, b], single, rtol=0, atol=1e-12)
    # one y and one weight vector shared by the whole batch
    shared = layer(x, y[0, 0], w[0, 0])
    torch.testing.assert_close(shared[1, 3], layer(x[1, 3], y[0, 0], w[0, 0]), rtol=0, atol=1e-12)


def plain_and_blocked(layer: CPTensorProduct, block_bytes: int):
    """The same factors twice: the plain path (blocked_bytes = 0) and the blocked CPU path."""
    plain = CPTensorProduct(layer.A, layer.B, layer.C)
    plain.blocked_bytes = 0
    blocked = CPTensorProduct(layer.A, layer.B, layer.C)
    blocked.blocked_bytes = block_bytes  # 1 byte: one sample per block
    blocked.backward = "function"  # the Function for gradients too (default: plain autograd)
    return plain, blocked


@pytest.mark.parametrize("block_bytes", [1, 700, 1 << 20])
def test_blocked_path_equals_plain_path(block_bytes):
    """On CPU the layer runs block by block; values and gradients equal the plain path."""
    L, channels = 2, 3
    fit = fit_cp(so3.cg_tensor(L), 12, restarts=1, seed=2, max_iter=20, polish=False)
    plain, blocked = plain_and_blocked(CPTensorProduct(fit.A, fit.B, fit.C), block_bytes)
    x, y, w = inputs(L, channels, (4, 5), seed=13)
    reference = plain(x, y, w)
    with torch.no_grad():
        torch.testing.assert_close(blocked(x, y, w), reference, rtol=0, atol=1e-12)
        torch.testing.assert_close(blocked(x, y, None), plain(x, y), rtol=0, atol=1e-12)
        # y and weight shared by the batch, x shared by the batch (x keeps y's dimensions:
        # a y with as many dimensions as x is per channel)
        torch.testing.assert_close(
            blocked(x, y[1, 2], w[1, 2]), plain(x, y[1, 2], w[1, 2]), rtol=0, atol=1e-12
        )
        x1 = x[:1, :1]
        torch.testing.assert_close(blocked(x1, y, w), plain(x1, y, w), rtol=0, atol=1e-12)
    # gradients, including a broadcast y (its gradient sums over the batch) and no weight
    g = torch.randn(reference.shape, generator=torch.Generator().manual_seed(1), dtype=F64)
    for args in ((x, y, w), (x, y[0, 0], w), (x, y, None)):
        grads = []
        for layer in (plain, blocked):
            leaves = [None if t is None else t.clone().requires_grad_(True) for t in args]
            layer(*leaves).backward(g)
            grads.append([None if t is None else t.grad for t in leaves])
        for a, b in zip(*grads, strict=True):
            if a is not None:
                torch.testing.assert_close(b, a, rtol=0, atol=1e-11)


def test_blocked_path_gradcheck_and_gradgradcheck():
    """Double backward (forces in training) through the blocked path, several blocks."""
    L = 2
    fit = fit_cp(so3.cg_tensor(L), 12, restarts=1, seed=0, max_iter=20, polish=False)
    _, blocked = plain_and_blocked(CPTensorProduct(fit.A, fit.B, fit.C), 700)
    x, y, w = inputs(L, 3, (5,), seed=14)
    args = tuple(t.clone().requires_grad_(True) for t in (x, y, w))
    assert torch.autograd.gradcheck(blocked, args, eps=1e-6, atol=1e-7)
    assert torch.autograd.gradgradcheck(blocked, args, eps=1e-6, atol=1e-6)


def test_padded_factor_cache_follows_in_place_changes_and_dtype():
    """The blocked path pads R to 64 bytes; a changed factor (load_state_dict) is picked up."""
    L = 2
    T = so3.cg_tensor(L)
    exact = CPTensorProduct(*constructive_factors(T))  # R = 81: padded to 88 in float64
    A, B, C = exact._padded_factors()
    assert A.shape == (9, 88) and float(A[:, 81:].abs().max()) == 0.0
    x, y, w = inputs(L, 3, (4,), seed=3)
    with torch.no_grad():
        before = exact(x, y, w)
        torch.testing.assert_close(before, CGTensorProduct(L)(x, y, w), rtol=0, atol=1e-12)
        state = {k: 2 * v for k, v in exact.state_dict().items()}
        exact.load_state_dict(state)  # in place: the cached padded copies are stale now
        torch.testing.assert_close(exact(x, y, w), 8 * before, rtol=0, atol=1e-11)
        f32 = exact.float()
        assert f32._padded_factors()[0].shape == (9, 96)  # 16 float32 per 64 bytes
        torch.testing.assert_close(
            f32(x.float(), y.float(), w.float()), 8 * before.float(), rtol=1e-5, atol=1e-4
        )


def test_factors_are_buffers_that_follow_to():
    T = so3.cg_tensor(1)
    cp = CPTensorProduct(*constructive_factors(T))
    assert list(cp.parameters()) == []
    assert set(cp.state_dict()) == {"A", "B", "C"}
    cp32 = cp.to(torch.float32)
    assert all(getattr(cp32, n).dtype == torch.float32 for n in "ABC")
    cg = CGTensorProduct(1).float()
    assert cg.M.dtype == torch.float32 and cg._M_j_ik.dtype == torch.float32
    assert set(cg.state_dict()) == {"M"}
    torch_factors = [torch.from_numpy(F).float() for F in constructive_factors(T)]
    assert CPTensorProduct(*torch_factors).A.dtype == torch.float32  # tensors keep their dtype
    assert CPTensorProduct(*constructive_factors(T), dtype=torch.float32).A.dtype == torch.float32


def test_flops_formula():
    T = so3.cg_tensor(2)
    cp = CPTensorProduct(*constructive_factors(T))
    N, C, d, R = 10, 4, 9, 81
    assert cp.rank == R and cp.dims == (d, d, d) and cp.L == 2
    assert cp.flops(N, C) == 2 * N * C * d * R + 2 * N * d * R + N * C * R + 2 * N * C * R * d
    assert CGTensorProduct(2).flops(N, C) == 2 * N * d**3 + 2 * N * C * d**2


def test_clear_errors_for_bad_inputs():
    L = 1
    T = so3.cg_tensor(L)
    cp = CPTensorProduct(*constructive_factors(T))
    cg = CGTensorProduct(L)
    x, y, w = inputs(L, 3, (2,), seed=0)
    for layer in (cp, cg):
        with pytest.raises(ValueError, match="last dimension 9"):
            layer(torch.zeros(2, 3, 9, dtype=F64), y, w)
        with pytest.raises(ValueError, match="y has shape"):
            layer(x, torch.zeros(2, 5, dtype=F64), w)
        with pytest.raises(ValueError, match="3 channels"):
            layer(x, y, torch.zeros(2, 4, dtype=F64))
        with pytest.raises(ValueError, match="dtype torch.float32"):
            layer(x.float(), y, w)
        with pytest.raises(ValueError, match="is on meta"):
            layer(x.to("meta"), y, w)
        with pytest.raises(ValueError, match="do not broadcast"):
            layer(x, torch.zeros(3, 4, dtype=F64), w)
        with pytest.raises(ValueError, match="must be a torch.Tensor"):
            layer(x.numpy(), y, w)
        # a per-channel y (as many dimensions as x) with the wrong channel count; a y with
        # more dimensions than x
        with pytest.raises(ValueError, match="x has 3 channels; y must have shape"):
            layer(x, torch.zeros(2, 5, 4, dtype=F64), w)
        with pytest.raises(ValueError, match="more than x"):
            layer(x[0], torch.zeros(2, 3, 4, dtype=F64), w[0])
        # an integer input is told to cast the input, never layer.to(torch.int64)
        with pytest.raises(ValueError) as info:
            layer(x.long(), y, w)
        assert "cast the input with .to(torch.float64)" in str(info.value)
        assert "layer.to" not in str(info.value)
    A, B, C = constructive_factors(T)
    with pytest.raises(ValueError, match="same number of columns"):
        CPTensorProduct(A[:, :5], B, C)
    with pytest.raises(ValueError, match="must be a matrix"):
        CPTensorProduct(A.ravel(), B, C)
    with pytest.raises(ValueError, match="NaN"):
        CPTensorProduct(A * np.nan, B, C)
    with pytest.raises(ValueError):
        CGTensorProduct(L, normalization="nonsense")


@pytest.mark.parametrize("shape", [(0, 3), (4, 0), (0, 0)])
@pytest.mark.parametrize("blocked_bytes", [0, 1 << 19])
def test_empty_batch_or_zero_channels_forward_and_backward(shape, blocked_bytes, monkeypatch):
    """0 samples or 0 channels give empty outputs and zero gradients."""
    L = 2
    T = so3.cg_tensor(L)
    cp = CPTensorProduct(*constructive_factors(T))
    monkeypatch.setattr(cp, "blocked_bytes", blocked_bytes)
    n, channels = shape
    x = torch.randn(n, channels, 9, dtype=F64, requires_grad=True)
    y = torch.randn(n, 9, dtype=F64, requires_grad=True)
    w = torch.randn(n, channels, dtype=F64, requires_grad=True)
    for layer in (cp, CGTensorProduct(L)):
        out = layer(x, y, w)
        assert out.shape == (n, channels, 9)
        out.sum().backward()
        assert x.grad.shape == x.shape and y.grad.shape == y.shape and w.grad.shape == w.shape
        assert float(y.grad.abs().sum()) == 0.0
        x.grad = y.grad = w.grad = None


def test_from_file_roundtrip_and_metadata_check(tmp_path):
    L = 2
    T = so3.cg_tensor(L)
    A, B, C = constructive_factors(T)
    fit = CPFit(A, B, C, relative_error=0.0)
    path = save_factors(
        tmp_path / "exact.npz", fit, {"L": L, "normalization": "unit", "parity": "all"}, target=T
    )
    layer = CPTensorProduct.from_file(path, expect={"L": L, "normalization": "unit"})
    assert layer.meta["L"] == L and layer.rank == 81 and layer.A.dtype == F64
    x, y, w = inputs(L, 2, (3,), seed=4)
    torch.testing.assert_close(layer(x, y, w), CGTensorProduct(L)(x, y, w), rtol=0, atol=1e-12)
    with pytest.raises(FactorFileError):
        CPTensorProduct.from_file(path, expect={"normalization": "cg"})
    with pytest.raises(FactorFileError):
        CPTensorProduct.from_file(tmp_path / "missing.npz")


def test_layout_roundtrip_matches_e3nn_slices():
    L, channels = 3, 4
    x, _, _ = inputs(L, channels, (2,), seed=2)
    z = to_e3nn_layout(x)
    ir = irreps(L, channels)
    assert z.shape == (2, ir.dim)
    for l, s in enumerate(ir.slices()):
        block = z[:, s].reshape(2, channels, 2 * l + 1)  # e3nn: [u, m]
        torch.testing.assert_close(block, x[:, :, l * l : (l + 1) ** 2], rtol=0, atol=0)
    torch.testing.assert_close(from_e3nn_layout(z, L, channels), x, rtol=0, atol=0)
    with pytest.raises(ValueError, match="not \\(L\\+1\\)\\^2"):
        to_e3nn_layout(torch.zeros(2, 3, 10))
    with pytest.raises(ValueError, match="expected last dimension"):
        from_e3nn_layout(z, L, channels + 1)


def test_torch_compile_traces_one_graph_with_autograd():
    """Dynamo captures the whole forward (fullgraph) and AOT autograd derives the backward.

    The "aot_eager" backend keeps this test fast; the inductor (C++) backend is exercised by
    experiments/bench_layer.py, which records compile success and time.
    """
    L = 2
    T = so3.cg_tensor(L)
    cp = CPTensorProduct(*constructive_factors(T))
    x, y, w = inputs(L, 4, (8,), seed=9)
    xr = x.clone().requires_grad_(True)
    torch._dynamo.reset()
    compiled = torch.compile(cp, backend="aot_eager", fullgraph=True, dynamic=False)
    out = compiled(xr, y, w)
    torch.testing.assert_close(out, cp(x, y, w), rtol=0, atol=1e-12)
    out.square().sum().backward()
    xe = x.clone().requires_grad_(True)
    cp(xe, y, w).square().sum().backward()
    torch.testing.assert_close(xr.grad, xe.grad, rtol=0, atol=1e-10)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")
def test_cuda_matches_cpu():
    L = 2
    cp = CPTensorProduct(*constructive_factors(so3.cg_tensor(L)))
    x, y, w = inputs(L, 4, (8,), seed=6)
    out = cp.to("cuda")(x.cuda(), y.cuda(), w.cuda())
    assert out.device.type == "cuda"
    torch.testing.assert_close(out.cpu(), CGTensorProduct(L)(x, y, w), rtol=0, atol=1e-10)
    with pytest.raises(ValueError, match="is on cpu"):
        cp(x, y.cuda(), w.cuda())


def per_channel_reference(T: torch.Tensor, x, y, w):
    """``w[c] * einsum("kij,ci,cj->ck")``: the tensor applied to a per-channel second input."""
    return torch.einsum("kij,...ci,...cj->...ck", T, x, y) * w.unsqueeze(-1)


@pytest.mark.parametrize("L", [1, 2, 3])
def test_per_channel_y_equals_the_einsum_of_the_tensor_float64(L):
    """y (..., C, d): CP (Function and plain paths), dense (outer, sparse), e3nn "uuu"."""
    channels = 4
    T = so3.cg_tensor(L)
    M = torch.from_numpy(T)
    x, _, w = inputs(L, channels, (3, 2), seed=30 + L)
    y = torch.randn(x.shape, generator=torch.Generator().manual_seed(L), dtype=F64)
    ref = per_channel_reference(M, x, y, w)
    assert ref.abs().max() > 0.1
    fit = fit_cp(T, 5, restarts=1, seed=0, max_iter=5, polish=False)  # an inexact CP
    exact, approx = CPTensorProduct(*constructive_factors(T)), CPTensorProduct(fit.A, fit.B, fit.C)
    approx_ref = per_channel_reference(approx.dense_tensor(), x, y, w)
    for block_bytes in (0, 700, 1 << 19):  # plain path, several blocks, one block
        exact.blocked_bytes = approx.blocked_bytes = block_bytes
        exact.backward = approx.backward = "function"
        torch.testing.assert_close(exact(x, y, w), ref, rtol=0, atol=1e-12)
        torch.testing.assert_close(approx(x, y, w), approx_ref, rtol=0, atol=1e-12)
        # a per-channel y shared by the batch broadcasts (it keeps x's number of dimensions)
        y1 = y[:1, :1]
        torch.testing.assert_close(
            exact(x, y1, w), per_channel_reference(M, x, y1, w), rtol=0, atol=1e-12
        )
    for form in ("outer", "sparse"):
        cg = CGTensorProduct(L, form=form)
        torch.testing.assert_close(cg(x, y, w), ref, rtol=0, atol=1e-12)
        assert cg.flops(10, channels, per_channel_y=True) == 10 * channels * (
            (L + 1) ** 4 + (2 * cg.nnz if form == "sparse" else 2 * (L + 1) ** 6)
        )
    tp = e3nn_tensor_product(L, channels, dtype=F64, per_channel_y=True)
    z = tp(to_e3nn_layout(x), to_e3nn_layout(y), e3nn_path_weights(w, L))
    torch.testing.assert_close(from_e3nn_layout(z, L, channels), ref, rtol=0, atol=1e-12)
    wrapped = E3nnLayout(CGTensorProduct(L), L, channels)
    torch.testing.assert_close(
        from_e3nn_layout(wrapped(to_e3nn_layout(x), to_e3nn_layout(y), w), L, channels),
        ref,
        rtol=0,
        atol=1e-12,
    )


@pytest.mark.parametrize("layer_kind", ["cp_function", "cp_plain", "cg_outer", "cg_sparse"])
def test_per_channel_y_gradcheck_and_gradgradcheck(layer_kind):
    """First and second derivatives through x, a per-channel y and the weight (float64)."""
    L, channels = 2, 3
    if layer_kind.startswith("cp"):
        fit = fit_cp(so3.cg_tensor(L), 12, restarts=1, seed=0, max_iter=20, polish=False)
        layer = CPTensorProduct(fit.A, fit.B, fit.C)
        layer.blocked_bytes = 700 if layer_kind == "cp_function" else 0
        layer.backward = "function"
    else:
        layer = CGTensorProduct(L, form=layer_kind.removeprefix("cg_"))
    x, _, w = inputs(L, channels, (4,), seed=15)
    y = torch.randn(x.shape, generator=torch.Generator().manual_seed(16), dtype=F64)
    args = tuple(t.clone().requires_grad_(True) for t in (x, y, w))
    assert torch.autograd.gradcheck(layer, args, eps=1e-6, atol=1e-7)
    assert torch.autograd.gradgradcheck(layer, args, eps=1e-6, atol=1e-6)


def test_cp_function_backward_equals_autograd_of_the_plain_path():
    """_CPProduct's backward (saved u; and under create_graph, recomputed u) against autograd."""
    L, channels = 3, 5
    fit = fit_cp(so3.cg_tensor(L), 20, restarts=1, seed=1, max_iter=10, polish=False)
    plain, function = plain_and_blocked(CPTensorProduct(fit.A, fit.B, fit.C), 1 << 12)
    x, y_shared, w = inputs(L, channels, (7,), seed=17)
    y_channel = torch.randn(x.shape, generator=torch.Generator().manual_seed(18), dtype=F64)
    g = torch.randn(7, channels, 16, generator=torch.Generator().manual_seed(19), dtype=F64)
    for y in (y_shared, y_channel):
        for weight in (w, None):
            grads = {}
            for name, layer in (("plain", plain), ("function", function)):
                leaves = [t.clone().requires_grad_(True) for t in (x, y)]
                if weight is not None:
                    leaves.append(weight.clone().requires_grad_(True))
                out = layer(*leaves) if weight is not None else layer(*leaves, None)
                first = torch.autograd.grad(out, leaves, g, create_graph=True)
                # a second derivative: d/d(leaves) of a scalar of the first derivatives
                second = torch.autograd.grad(sum((f**2).sum() for f in first), leaves)
                grads[name] = first + second
            for a, b in zip(grads["plain"], grads["function"], strict=True):
                torch.testing.assert_close(b, a, rtol=1e-12, atol=1e-10)


def test_default_backward_is_plain_autograd_and_function_on_request():
    """No gradients: the Function; gradients recorded: plain autograd unless backward="function"."""
    L = 1
    cp = CPTensorProduct(*constructive_factors(so3.cg_tensor(L)))
    x, y, w = inputs(L, 2, (3,), seed=20)
    xr = x.clone().requires_grad_(True)
    assert cp.backward == "autograd"

    def producer(out: torch.Tensor) -> str:  # the node below the final reshape
        return type(out.grad_fn.next_functions[0][0]).__name__

    assert "CPProduct" not in producer(cp(xr, y, w))
    cp.backward = "function"
    assert producer(cp(xr, y, w)) == "_CPProductBackward"
    with torch.no_grad():
        torch.testing.assert_close(cp(x, y, w), CGTensorProduct(L)(x, y, w), rtol=0, atol=1e-12)
