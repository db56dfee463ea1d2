"""Exact reference layer: the dense CG tensor product with path-weight sharing.

With the CG tensor ``M = so3.cg_tensor(L, normalization, parity)`` of shape (d, d, d), indexed
``[k (output), i (input 1), j (input 2)]``, the layer computes for every channel ``c``

    out[..., c, k] = weight[..., c] * sum_ij M[k, i, j] x[..., c, i] y[..., j].

Input 2 has one channel, so the contraction is done in the cheap order: first the per-sample
matrix ``Y[..., i, k] = sum_j M[k, i, j] y[..., j]`` (``2 d^3`` flops per sample), then
``out = x @ Y`` (``2 d^2`` flops per channel). Same interface as
:class:`~tdn_theory.nn.CPTensorProduct`.
"""

from __future__ import annotations

from typing import Any

import torch

from tdn_theory import so3
from tdn_theory.nn.cp_tensor_product import check_layer_inputs

__all__ = ["CGTensorProduct"]


class CGTensorProduct(torch.nn.Module):
    """Dense CG tensor product ``out[c, k] = w[c] sum_ij M[k, i, j] x[c, i] y[j]``.

    Parameters
    ----------
    L : int
        Maximal degree; d = (L+1)^2.
    normalization, parity : str
        Passed to ``so3.cg_tensor`` ("unit" | "cg" | "gaunt" | ...; "all" | "even" | "odd").
    dtype, device : optional
        The tensor is computed in float64 and kept in float64 unless ``dtype`` says otherwise
        (use ``.float()`` for a float32 layer).

    ``forward(x, y, weight=None)``: ``x`` (..., channels, d), ``y`` (..., d), ``weight``
    (..., channels) or None; batch shapes broadcast. Returns (..., channels, d).
    """

    M: torch.Tensor
    _M_j_ik: torch.Tensor

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
        tensor = torch.from_numpy(so3.cg_tensor(L, normalization=normalization, parity=parity))
        tensor = tensor.to(dtype=dtype or torch.float64, device=device)
        d = tensor.shape[0]
        self.L = int(L)
        self.normalization = normalization
        self.parity = parity
        self.register_buffer("M", tensor.contiguous())
        # [j, (i, k)]: y @ this gives Y[..., i, k] with k contiguous for the x @ Y product.
        self.register_buffer(
            "_M_j_ik", tensor.permute(2, 1, 0).reshape(d, d * d).contiguous(), persistent=False
        )

    @property
    def d(self) -> int:
        """Feature dimension (L+1)^2."""
        return int(self.M.shape[0])

    def flops(self, batch: int, channels: int) -> int:
        """Forward flops without weight: ``2 N d^3`` (y contraction) + ``2 N C d^2`` (x @ Y)."""
        d = self.d
        return 2 * batch * d**3 + 2 * batch * channels * d**2

    def forward(
        self, x: torch.Tensor, y: torch.Tensor, weight: torch.Tensor | None = None
    ) -> torch.Tensor:
        d = self.d
        check_layer_inputs(
            x, y, weight, d_in1=d, d_in2=d, reference=self.M, layer="CGTensorProduct"
        )
        Y = torch.matmul(y, self._M_j_ik).unflatten(-1, (d, d))  # (..., i, k)
        out = torch.matmul(x, Y)  # (..., C, k)
        if weight is not None:
            out = out * weight.unsqueeze(-1)
        return out

    def extra_repr(self) -> str:
        return (
            f"L={self.L}, d={self.d}, normalization={self.normalization!r}, "
            f"parity={self.parity!r}, dtype={self.M.dtype}"
        )
