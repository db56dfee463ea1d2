"""Exact CG tensor product with the spherical harmonics of an edge, computed in the edge frame.

In message passing the second input of the tensor product is ``y = Y(r̂)``, the component-normalised
real spherical harmonics (e3nn's basis; ``||Y^l|| = sqrt(2l+1)``) of the unit edge vector ``r̂``.
With a rotation ``R`` that takes ``r̂`` to the polar axis ``ŷ`` (e3nn's polar axis is y) and
``D = D(R) = blockdiag_l D^l(R)``, equivariance of the CG tensor ``M`` (indexed [k, i, j]) gives

    M(x, Y(r̂)) = M(x, Dᵀ Y(ŷ)) = Dᵀ M(D x, Y(ŷ)) = Dᵀ P D x,
    P[k, i] = sum_j M[k, i, j] Y_j(ŷ).

``Y^l(ŷ)`` is ``sqrt(2l+1)`` at m = 0 and zero elsewhere, so ``P`` is sparse: in the real basis it
only couples ``(l1, m)`` to ``(l3, ±m)``. The layer reads that pattern off the exact CG tensor
(it is not assumed) and contracts each connected block of ``P`` separately. Per edge and channel
that is ``O(L^3)`` work (two block rotations ``sum_l (2l+1)^2`` each and the blocks of ``P``), but
the Wigner blocks ``D^l(R)`` cost ``O(L^4)`` per edge (the coupling recursion, about
``24 L^4`` flops for large L; 48,150 at L = 6, as much as 18 channels of the rotate-and-contract
work): ``O(L^4 + C L^3)`` per edge in all, against ``O(C L^4)`` for CP at rank ``~L^2`` and
``O(L^6 + C L^4)`` for the dense product (``O(nnz(M) + C L^4)`` if the y contraction is sparse):
the SO(2) reduction used by eSCN and EquiformerV2. (A J-matrix / Euler-angle factorisation of the
rotation would bring the per-edge part to ``O(L^3)``; it is not done here.)

The rotation is chosen without Euler angles: the minimal (Rodrigues) rotation taking ``r̂`` to
``ŷ`` when ``r̂_y >= 0``, and otherwise the minimal rotation to ``-ŷ`` followed by a half turn
about z. Both are rational functions of ``r̂`` with denominator ``1 + |r̂_y| >= 1``, so they are
smooth and exact on each half, also at ``r̂ = ±ŷ``; the output does not depend on which rotation
about ``ŷ`` is chosen (``Y(ŷ)`` is invariant under it), so the switch between the halves leaves the
output and its derivatives smooth. ``D^l(R)`` comes from the coupling recursion
``D^l = Vᵀ (D^{l-1} ⊗ R) V`` (as in ``tdn_theory.so3.wigner``), batched in torch, so autograd
reaches ``edge_vec`` (also twice: forces in training).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from tdn_theory import so3
from tdn_theory.nn.cp_tensor_product import check_tensor_argument

__all__ = ["EdgeFrameTensorProduct", "edge_frame_rotation", "wigner_blocks"]


def edge_frame_rotation(unit: torch.Tensor) -> torch.Tensor:
    """Rotations ``R`` (..., 3, 3) with ``R @ unit = ŷ`` for unit vectors ``unit`` (..., 3).

    ``unit_y >= 0``: ``R = I + K + K²/(1 + u_y)`` with ``K = [u × ŷ]_×`` (Rodrigues, minimal
    rotation); ``unit_y < 0``: ``R = diag(-1, -1, 1) (I + K' + K'²/(1 - u_y))`` with
    ``K' = [u × (-ŷ)]_×``. Smooth on each half (denominators >= 1).
    """
    ux, uy, uz = unit.unbind(-1)
    zero = torch.zeros_like(ux)
    upper = uy >= 0
    # v = u x ŷ = (-uz, 0, ux) on the upper half, u x (-ŷ) = (uz, 0, -ux) on the lower half
    sign = torch.where(upper, torch.ones_like(ux), -torch.ones_like(ux))
    # 1 + |u_y|, written so that its derivative at u_y = 0 is the upper half's (abs'(0) = 0)
    denom = 1.0 + sign * uy
    vx, vz = -sign * uz, sign * ux
    K = torch.stack(
        [
            torch.stack([zero, -vz, zero], -1),
            torch.stack([vz, zero, -vx], -1),
            torch.stack([zero, vx, zero], -1),
        ],
        -2,
    )
    eye = torch.eye(3, dtype=unit.dtype, device=unit.device)
    R = eye + K + (K @ K) / denom[..., None, None]
    flip = torch.stack([sign, sign, torch.ones_like(ux)], -1)  # diag(-1,-1,1) on the lower half
    return R * flip.unsqueeze(-1)


def wigner_blocks(L: int, R: torch.Tensor, isometries: list[torch.Tensor]) -> list[torch.Tensor]:
    """``[D^0(R), ..., D^L(R)]`` in e3nn's real basis, each (..., 2l+1, 2l+1), differentiable.

    ``isometries[l]`` (l >= 2) is the real CG block of the path (l-1, 1, l) in standard
    normalization, shape (2l-1, 3, 2l+1) (``so3.real_cg(l-1, 1, l)``); then
    ``D^l[a, b] = sum V[a1, a2, a] D^{l-1}[a1, b1] R[a2, b2] V[b1, b2, b]``, contracted in three
    steps of ``O(l^3)``.
    """
    batch = R.shape[:-2]
    blocks = [torch.ones(*batch, 1, 1, dtype=R.dtype, device=R.device)]
    if L >= 1:
        blocks.append(R)
    for l in range(2, L + 1):
        V = isometries[l]  # (n, 3, m) with n = 2l-1, m = 2l+1
        prev = blocks[-1]
        # W[..., a2, b1, b] = sum_b2 R[a2, b2] V[b1, b2, b]
        W = torch.einsum("...ce,bem->...cbm", R, V)
        # T[..., a1, a2, b] = sum_b1 prev[a1, b1] W[a2, b1, b]
        T = torch.einsum("...ab,...cbm->...acm", prev, W)
        # D[..., a, b] = sum_{a1, a2} V[a1, a2, a] T[a1, a2, b]
        blocks.append(torch.einsum("acp,...acm->...pm", V, T))
    return blocks


def _components(pattern: np.ndarray) -> list[np.ndarray]:
    """Connected components (sorted index arrays) of the symmetric graph ``pattern | patternᵀ``."""
    d = pattern.shape[0]
    graph = pattern | pattern.T
    seen = np.zeros(d, dtype=bool)
    comps = []
    for start in range(d):
        if seen[start]:
            continue
        stack, comp = [start], []
        seen[start] = True
        while stack:
            i = stack.pop()
            comp.append(i)
            for j in np.flatnonzero(graph[i] & ~seen):
                seen[j] = True
                stack.append(int(j))
        comps.append(np.array(sorted(comp)))
    return comps


class EdgeFrameTensorProduct(torch.nn.Module):
    """Exact ``out[c, k] = w[c] sum_ij M[k, i, j] x[c, i] Y_j(r̂)``, computed in the edge frame.

    Parameters
    ----------
    L : int
        Maximal degree; d = (L+1)^2.
    normalization, parity : str
        Passed to ``so3.cg_tensor`` (``"unit"`` | ``"cg"`` | ``"gaunt"`` | ``"sphere"``;
        ``"all"`` | ``"even"`` | ``"odd"``), as for :class:`~tdn_theory.nn.CGTensorProduct`.
    dtype, device : optional
        float64 unless ``dtype`` says otherwise (``.float()`` gives a float32 layer).

    ``forward(x, edge_vec, weight=None)``: ``x`` (..., channels, d), ``edge_vec`` (..., 3) (any
    non-zero length; normalised inside), ``weight`` (..., channels) or None; batch shapes
    broadcast. Returns (..., channels, d), equal to ``CGTensorProduct(L)(x, Y(r̂), weight)`` with
    ``Y = e3nn.o3.spherical_harmonics(range(L+1), edge_vec, normalize=True,
    normalization="component")``.
    """

    def __init__(
        self,
        L: int,
        normalization: str = "unit",
        parity: str = "all",
        *,
        dtype: torch.dtype | None = None,
        device: Any = None,
    ) -> None:
        super().__init__()
        M = so3.cg_tensor(L, normalization=normalization, parity=parity)
        self.L = int(L)
        self.normalization = normalization
        self.parity = parity
        d = M.shape[0]
        dtype = dtype or torch.float64
        y_axis = np.zeros(d)
        for l, block in enumerate(so3.degree_slices(self.L)):
            y_axis[block.start + l] = math.sqrt(2 * l + 1)  # Y^l(ŷ): only m = 0
        P = np.einsum("kij,j->ki", M, y_axis)
        scale = max(float(np.abs(P).max()), 1.0)
        pattern = np.abs(P) > 1e-13 * scale
        comps = _components(pattern)
        self.block_sizes = [len(c) for c in comps]
        order = np.concatenate(comps)
        self.register_buffer("_order", torch.from_numpy(order), persistent=False)
        self.register_buffer("_inverse", torch.from_numpy(np.argsort(order)), persistent=False)
        for b, comp in enumerate(comps):
            # z_b = P_b x'_b on the block's entries
            block = torch.from_numpy(np.ascontiguousarray(P[np.ix_(comp, comp)]))
            self.register_buffer(f"_P{b}", block.to(dtype=dtype, device=device), persistent=False)
        for l in range(2, self.L + 1):
            V = so3.real_cg(l - 1, 1, l)  # standard normalization: an isometry
            self.register_buffer(
                f"_V{l}",
                torch.from_numpy(np.ascontiguousarray(V)).to(dtype=dtype, device=device),
                persistent=False,
            )
        self.register_buffer("P", torch.from_numpy(P).to(dtype=dtype, device=device))

    @property
    def d(self) -> int:
        """Feature dimension (L+1)^2."""
        return (self.L + 1) ** 2

    def flops(self, batch: int, channels: int) -> int:
        """Forward flops without weight, as multiply-adds x 2.

        Per edge: the Wigner recursion ``sum_{l>=2} 2 (9 n m + 3 n^2 m + 3 n m^2)`` (n = 2l-1,
        m = 2l+1); per edge and channel: two rotations ``2 * 2 sum_l (2l+1)^2`` and the blocks of
        ``P``, ``2 sum_b s_b^2``.
        """
        wigner = sum(
            2 * (9 * n * m + 3 * n * n * m + 3 * n * m * m)
            for n, m in ((2 * l - 1, 2 * l + 1) for l in range(2, self.L + 1))
        )
        rotate = 4 * sum((2 * l + 1) ** 2 for l in range(self.L + 1))
        contract = 2 * sum(s * s for s in self.block_sizes)
        return batch * wigner + batch * channels * (rotate + contract)

    def wigner(self, edge_vec: torch.Tensor) -> list[torch.Tensor]:
        """``D^l(R)`` for l = 0..L of the rotations taking the (normalised) edges to ŷ."""
        unit = edge_vec / torch.linalg.vector_norm(edge_vec, dim=-1, keepdim=True)
        R = edge_frame_rotation(unit)
        isometries = [None, None] + [getattr(self, f"_V{l}") for l in range(2, self.L + 1)]
        return wigner_blocks(self.L, R, isometries)

    def forward(
        self, x: torch.Tensor, edge_vec: torch.Tensor, weight: torch.Tensor | None = None
    ) -> torch.Tensor:
        d, layer = self.d, "EdgeFrameTensorProduct"
        ref = self.P
        check_tensor_argument(x, "x", ref, layer)
        check_tensor_argument(edge_vec, "edge_vec", ref, layer)
        if weight is not None:
            check_tensor_argument(weight, "weight", ref, layer)
        if x.ndim < 2 or x.shape[-1] != d:
            raise ValueError(
                f"{layer}: x has shape {tuple(x.shape)} but the layer expects (..., channels, {d})"
            )
        if edge_vec.ndim < 1 or edge_vec.shape[-1] != 3:
            raise ValueError(
                f"{layer}: edge_vec has shape {tuple(edge_vec.shape)}; it must be (..., 3)"
            )
        channels = x.shape[-2]
        shapes = [x.shape[:-2], edge_vec.shape[:-1]]
        if weight is not None:
            if weight.ndim < 1 or weight.shape[-1] != channels:
                raise ValueError(
                    f"{layer}: weight has shape {tuple(weight.shape)} but x has {channels} "
                    f"channels; weight must have shape (..., {channels})"
                )
            shapes.append(weight.shape[:-1])
        try:
            batch = torch.broadcast_shapes(*shapes)
        except RuntimeError:
            raise ValueError(
                f"{layer}: batch shapes {[tuple(s) for s in shapes]} of x, edge_vec, weight "
                "do not broadcast"
            ) from None
        if not torch.compiler.is_compiling():
            length = torch.linalg.vector_norm(edge_vec.detach(), dim=-1)
            if not bool(torch.isfinite(edge_vec.detach()).all()):
                raise ValueError(f"{layer}: edge_vec contains NaN or infinite entries")
            if bool((length == 0).any()):
                raise ValueError(
                    f"{layer}: edge_vec has a zero-length vector (no direction); "
                    "drop self-edges or coincident atoms before the layer"
                )
        n = math.prod(batch)
        xs = x.expand(*batch, channels, d).reshape(n, channels, d)
        es = edge_vec.expand(*batch, 3).reshape(n, 3)
        D = self.wigner(es)
        slices = so3.degree_slices(self.L)
        # Channels last, (n, d, C): each small matrix (a Wigner block, a block of P) then
        # multiplies C-long rows, which batched GEMM does far faster than (C, m) @ (m, m).
        # into the edge frame: x'_l = D^l x_l, then from degree order to block order
        rotated = torch.cat(
            [D[l] @ xs[..., s].transpose(1, 2).contiguous() for l, s in enumerate(slices)], 1
        )
        rotated = rotated.index_select(1, self._order)
        parts, start = [], 0
        for b, size in enumerate(self.block_sizes):
            parts.append(getattr(self, f"_P{b}") @ rotated[:, start : start + size])
            start += size
        z = torch.cat(parts, 1).index_select(1, self._inverse)
        # back: out_l = D^lᵀ z_l
        out = torch.cat([D[l].mT @ z[:, s] for l, s in enumerate(slices)], 1)
        out = out.transpose(1, 2)  # (n, C, d)
        if weight is not None:
            out = out * weight.expand(*batch, channels).reshape(n, channels).unsqueeze(-1)
        return out.contiguous().reshape(*batch, channels, d)

    def extra_repr(self) -> str:
        return (
            f"L={self.L}, d={self.d}, normalization={self.normalization!r}, "
            f"parity={self.parity!r}, blocks={self.block_sizes}, dtype={self.P.dtype}"
        )
