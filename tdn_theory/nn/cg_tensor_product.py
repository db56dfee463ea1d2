"""Exact reference layer: the dense CG tensor product with path-weight sharing.

With the CG tensor ``M = so3.cg_tensor(L, normalization, parity)`` of shape (d, d, d), indexed
``[k (output), i (input 1), j (input 2)]``, the layer computes for every channel ``c``

    out[..., c, k] = weight[..., c] * sum_ij M[k, i, j] x[..., c, i] y[..., (c,) j].

When input 2 is shared by the channels (``y`` of shape (..., d)) the contraction is done in the
cheap order: first the per-sample matrix ``Y[..., i, k] = sum_j M[k, i, j] y[..., j]``
(``2 d^3`` flops per sample), then ``out = x @ Y`` (``2 d^2`` flops per channel). When it carries
the channels (``y`` of shape (..., C, d), as many dimensions as ``x``: the paper's layer
``z_u = M(x_u, (W y)_u)``) no such order exists; the layer forms ``x_c ⊗ y_c`` (``d^2``) and
contracts it with M, either as one GEMM with M as a (d^2 x d) matrix (``form="outer"``,
``2 d^3`` flops per channel) or as a sparse product over the ``nnz(M)`` non-zeros
(``form="sparse"``, ``2 nnz(M)`` flops per channel; nnz(M) / d^3 = 0.25, 0.19, 0.15, 0.13,
0.11, 0.10 for L = 1..6, all paths). Which is faster depends on the machine (the GEMM runs near
peak, the sparse product far below); ``experiments/bench_layer.py`` times both. Same interface as
:class:`~tdn_theory.nn.CPTensorProduct`.
"""

from __future__ import annotations

import warnings
from typing import Any

import torch

from tdn_theory import so3
from tdn_theory.nn.cp_tensor_product import check_layer_inputs

__all__ = ["CGTensorProduct", "FORMS"]

#: The contractions of a per-channel second input: one GEMM with M, or a sparse product.
FORMS = ("outer", "sparse")


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
    form : "outer" | "sparse"
        How a per-channel ``y`` is contracted (see the module docstring); a shared ``y`` always
        takes the y-first order.

    ``forward(x, y, weight=None)``: ``x`` (..., channels, d), ``y`` (..., d) shared by the
    channels or (..., channels, d) per channel, ``weight`` (..., channels) or None; batch shapes
    broadcast. Returns (..., channels, d).
    """

    M: torch.Tensor
    _M_j_ik: torch.Tensor
    _M_ij_k: torch.Tensor

    def __init__(
        self,
        L: int,
        normalization: str = "unit",
        parity: str = "all",
        *,
        dtype: torch.dtype | None = None,
        device: Any = None,
        form: str = "outer",
    ) -> None:
        super().__init__()
        if form not in FORMS:
            raise ValueError(f"form must be one of {FORMS}, got {form!r}")
        self.form = form
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
        # [(i, j), k]: (x ⊗ y) @ this is the per-channel product
        self.register_buffer(
            "_M_ij_k", tensor.permute(1, 2, 0).reshape(d * d, d).contiguous(), persistent=False
        )

    @property
    def d(self) -> int:
        """Feature dimension (L+1)^2."""
        return int(self.M.shape[0])

    @property
    def nnz(self) -> int:
        """Number of non-zero entries of M."""
        return int(torch.count_nonzero(self.M))

    def flops(self, batch: int, channels: int, *, per_channel_y: bool = False) -> int:
        """Forward flops without weight.

        Shared y: ``2 N d^3`` (y contraction) + ``2 N C d^2`` (x @ Y). Per-channel y:
        ``N C d^2`` (x ⊗ y) + ``2 N C d^3`` (form "outer") or ``2 N C nnz(M)`` ("sparse").
        """
        d, n, c = self.d, batch, channels
        if not per_channel_y:
            return 2 * n * d**3 + 2 * n * c * d**2
        contraction = 2 * self.nnz if self.form == "sparse" else 2 * d**3
        return n * c * d * d + n * c * contraction

    def forward(
        self, x: torch.Tensor, y: torch.Tensor, weight: torch.Tensor | None = None
    ) -> torch.Tensor:
        d = self.d
        per_channel = check_layer_inputs(
            x, y, weight, d_in1=d, d_in2=d, reference=self.M, layer="CGTensorProduct"
        )
        if per_channel:
            outer = (x.unsqueeze(-1) * y.unsqueeze(-2)).flatten(-2)  # (..., C, (i, j))
            if self.form == "sparse":
                flat = outer.reshape(-1, d * d)
                out = (self._sparse_M() @ flat.mT).mT.reshape(*outer.shape[:-1], d)
            else:
                out = torch.matmul(outer, self._M_ij_k)  # (..., C, k)
        else:
            Y = torch.matmul(y, self._M_j_ik).unflatten(-1, (d, d))  # (..., i, k)
            out = torch.matmul(x, Y)  # (..., C, k)
        if weight is not None:
            out = out * weight.unsqueeze(-1)
        return out

    def _sparse_M(self) -> torch.Tensor:
        """M as a sparse CSR matrix [k, (i, j)], cached and rebuilt when M changes or moves."""
        key = (self.M.data_ptr(), self.M._version, self.M.dtype, self.M.device)
        cached = self.__dict__.get("_sparse_cache")
        if cached is not None and cached[0] == key:
            return cached[1]
        d = self.d
        with warnings.catch_warnings():  # "sparse CSR support is in beta"
            warnings.simplefilter("ignore", UserWarning)
            matrix = self.M.reshape(d, d * d).to_sparse_csr()
        self.__dict__["_sparse_cache"] = (key, matrix)
        return matrix

    def extra_repr(self) -> str:
        return (
            f"L={self.L}, d={self.d}, normalization={self.normalization!r}, "
            f"parity={self.parity!r}, form={self.form!r}, dtype={self.M.dtype}"
        )
