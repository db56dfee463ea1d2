"""The TDN layer: the CG tensor product replaced by a CP decomposition of the CG tensor.

With factors ``A`` (d3 x R, output), ``B`` (d1 x R, input 1), ``C`` (d2 x R, input 2) that
approximate the CG tensor, ``M[k, i, j] ~ sum_r A[k, r] B[i, r] C[j, r]``, the layer computes for
every channel ``c``

    out[..., c, k] = weight[..., c]
                     * sum_r A[k, r] (sum_i B[i, r] x[..., c, i]) (sum_j C[j, r] y[..., j])

i.e. ``out = ((x @ B) * (y @ C)[..., None, :]) @ A.T``, scaled per channel: three matrix
products and one elementwise product, ``O(d R)`` work per channel instead of ``O(d^3)``.
``weight`` is one number per channel shared by all paths (path-weight sharing); with exact
factors the layer is exactly SO(3)-equivariant for any weight.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

__all__ = ["CPTensorProduct", "check_layer_inputs", "check_tensor_argument"]


def _as_factor(value: Any, name: str, dtype: torch.dtype | None, device: Any) -> torch.Tensor:
    """A factor matrix as a floating torch tensor; numpy float64 stays float64 unless ``dtype``."""
    if isinstance(value, torch.Tensor):
        tensor = value.detach()
    else:
        array = np.asarray(value)
        if not np.issubdtype(array.dtype, np.floating) and not np.issubdtype(
            array.dtype, np.integer
        ):
            raise ValueError(f"factor {name} must hold real numbers, got dtype {array.dtype}")
        if np.issubdtype(array.dtype, np.integer):
            array = array.astype(np.float64)
        tensor = torch.from_numpy(np.ascontiguousarray(array))
    if not tensor.is_floating_point():
        raise ValueError(f"factor {name} must be a real floating tensor, got dtype {tensor.dtype}")
    if tensor.ndim != 2:
        raise ValueError(f"factor {name} must be a matrix (d x R), got shape {tuple(tensor.shape)}")
    if tensor.shape[0] < 1 or tensor.shape[1] < 1:
        raise ValueError(f"factor {name} is empty, shape {tuple(tensor.shape)}")
    tensor = tensor.to(dtype=dtype or tensor.dtype, device=device)
    if not bool(torch.isfinite(tensor).all()):
        raise ValueError(f"factor {name} contains NaN or infinite entries")
    return tensor.contiguous().clone()


def check_tensor_argument(t: Any, name: str, reference: torch.Tensor, layer: str) -> None:
    """Raise a one-line ValueError unless ``t`` is a tensor with ``reference``'s dtype and device.

    A floating input of another precision is told to cast the input or the layer; an integer,
    boolean or complex input is told to cast the input (a layer cannot hold such a dtype).
    """
    if not isinstance(t, torch.Tensor):
        raise ValueError(f"{layer}: {name} must be a torch.Tensor, got {type(t).__name__}")
    if t.dtype != reference.dtype:
        if t.is_floating_point():
            advice = f"cast the input to {reference.dtype} or call layer.to({t.dtype})"
        else:
            advice = (
                f"cast the input with .to({reference.dtype}) (the layer works in floating "
                "point only)"
            )
        raise ValueError(
            f"{layer}: {name} has dtype {t.dtype} but the layer holds {reference.dtype}; {advice}"
        )
    if t.device != reference.device:
        raise ValueError(
            f"{layer}: {name} is on {t.device} but the layer is on {reference.device}; "
            f"move the input or call layer.to('{t.device}')"
        )


def check_layer_inputs(
    x: torch.Tensor,
    y: torch.Tensor,
    weight: torch.Tensor | None,
    *,
    d_in1: int,
    d_in2: int,
    reference: torch.Tensor,
    layer: str,
) -> None:
    """Raise a one-line ValueError when ``x``, ``y``, ``weight`` do not fit a layer.

    Expected: ``x`` (..., channels, d_in1), ``y`` (..., d_in2), ``weight`` (..., channels) or
    None, batch shapes broadcastable, all with ``reference``'s dtype and device.
    """
    for name, t in (("x", x), ("y", y), ("weight", weight)):
        if t is None and name == "weight":
            continue
        check_tensor_argument(t, name, reference, layer)
    if x.ndim < 2:
        raise ValueError(
            f"{layer}: x must have shape (..., channels, {d_in1}), got {tuple(x.shape)}"
        )
    if x.shape[-1] != d_in1:
        raise ValueError(
            f"{layer}: x has last dimension {x.shape[-1]} but the layer expects d = {d_in1}; "
            "x must have shape (..., channels, d)"
        )
    if y.ndim < 1 or y.shape[-1] != d_in2:
        raise ValueError(
            f"{layer}: y has shape {tuple(y.shape)} but the layer expects (..., {d_in2}) "
            "(input 2 has one channel)"
        )
    channels = x.shape[-2]
    batch_shapes = [x.shape[:-2], y.shape[:-1]]
    if weight is not None:
        if weight.ndim < 1 or weight.shape[-1] != channels:
            raise ValueError(
                f"{layer}: weight has shape {tuple(weight.shape)} but x has {channels} channels; "
                f"weight must have shape (..., {channels})"
            )
        batch_shapes.append(weight.shape[:-1])
    try:
        torch.broadcast_shapes(*batch_shapes)
    except RuntimeError:
        raise ValueError(
            f"{layer}: batch shapes {[tuple(s) for s in batch_shapes]} of x, y, weight "
            "do not broadcast"
        ) from None


class CPTensorProduct(torch.nn.Module):
    """TDN tensor product ``out = w * A((Bᵀx) ⊙ (Cᵀy))`` per channel, from fixed CP factors.

    Parameters
    ----------
    A, B, C : arrays or tensors of shapes (d3, R), (d1, R), (d2, R)
        CP factors of the CG tensor (weights folded in), ``M ~ einsum("kr,ir,jr->kij", A, B, C)``.
        They become buffers (saved in ``state_dict``, moved by ``.to``, never trained).
    dtype, device : optional
        Where to keep the factors. By default a tensor keeps its dtype and numpy arrays their
        precision (float64 stays float64), so exact factors stay exact; use ``.float()`` or
        ``.to(torch.float32)`` for a float32 layer.

    ``forward(x, y, weight=None)``: ``x`` (..., channels, d1), ``y`` (..., d2), ``weight``
    (..., channels) or None; batch shapes broadcast. Returns (..., channels, d3).
    """

    A: torch.Tensor
    B: torch.Tensor
    C: torch.Tensor

    #: Size in bytes per intra-op thread of the (samples x channels x R) intermediate of one
    #: block in the blocked CPU path (0 disables it). A quarter of a 2 MiB L2 cache: best of
    #: 256 KiB..1 MiB at L = 3, 4, 6 on the 2-core VM (1-2 threads).
    blocked_bytes: int = 1 << 19

    def __init__(
        self,
        A: Any,
        B: Any,
        C: Any,
        *,
        dtype: torch.dtype | None = None,
        device: Any = None,
        meta: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        factors = {n: _as_factor(v, n, dtype, device) for n, v in (("A", A), ("B", B), ("C", C))}
        ranks = {n: f.shape[1] for n, f in factors.items()}
        if len(set(ranks.values())) != 1:
            raise ValueError(
                f"factors A, B, C must have the same number of columns (the rank R), got {ranks}"
            )
        dtypes = {f.dtype for f in factors.values()}
        if len(dtypes) != 1:
            raise ValueError(
                f"factors A, B, C have different dtypes {sorted(map(str, dtypes))}; "
                "pass dtype= to cast them"
            )
        for name, factor in factors.items():
            self.register_buffer(name, factor)
        self.meta: dict[str, Any] = dict(meta) if meta is not None else {}

    @classmethod
    def best_known(
        cls,
        L: int,
        rank: int,
        normalization: str = "unit",
        parity: str = "all",
        *,
        store: Any = None,
        dtype: torch.dtype | None = None,
        device: Any = None,
    ) -> CPTensorProduct:
        """The layer from the best stored rank-``rank`` CP of ``cg_tensor(L, normalization, parity)``
        (:func:`tdn_theory.cp.best_known`: the package's store, and ``store`` if given; never fits).

        Raises ``tdn_theory.cp.FitStoreError`` (a ValueError) listing what is available otherwise.
        """
        from tdn_theory.cp import best_fit

        fit, meta = best_fit(L, rank, normalization, parity, store=store, fit_missing=False)
        return cls(fit.A, fit.B, fit.C, dtype=dtype, device=device, meta=meta)

    @classmethod
    def from_file(
        cls,
        path: str | os.PathLike,
        *,
        expect: Mapping[str, Any] | None = None,
        dtype: torch.dtype | None = None,
        device: Any = None,
    ) -> CPTensorProduct:
        """Build the layer from a factor file written by ``python -m tdn_theory.fit_cp``.

        ``expect`` (e.g. ``{"L": 3, "normalization": "unit"}``) is passed to
        ``tdn_theory.cp.load_factors``, which raises ``FactorFileError`` (a ValueError) on a
        mismatch. The shapes are checked against the file's ``L`` (when present) and ``rank``;
        the metadata is kept in ``layer.meta``.
        """
        from tdn_theory.cp import load_factors

        fit, meta = load_factors(path, expect=expect)
        if "L" in meta:
            d = (int(meta["L"]) + 1) ** 2
            rank = int(meta["rank"])
            for name in ("A", "B", "C"):
                shape = tuple(np.shape(getattr(fit, name)))
                if shape != (d, rank):
                    raise ValueError(
                        f"{os.fspath(path)}: factor {name} has shape {shape} but the metadata "
                        f"says L = {meta['L']}, rank = {rank} (expected {(d, rank)}); "
                        "rewrite the file"
                    )
        return cls(fit.A, fit.B, fit.C, dtype=dtype, device=device, meta=meta)

    @property
    def rank(self) -> int:
        """Number of CP terms R."""
        return int(self.A.shape[1])

    @property
    def dims(self) -> tuple[int, int, int]:
        """``(d1, d2, d3)``: input 1, input 2 and output feature dimensions."""
        return int(self.B.shape[0]), int(self.C.shape[0]), int(self.A.shape[0])

    @property
    def L(self) -> int | None:
        """The degree L when d1 = d2 = d3 = (L+1)^2, else None."""
        d1, d2, d3 = self.dims
        root = math.isqrt(d1)
        return root - 1 if d1 == d2 == d3 and root * root == d1 else None

    def dense_tensor(self) -> torch.Tensor:
        """The approximated CG tensor ``einsum("kr,ir,jr->kij", A, B, C)``, shape (d3, d1, d2)."""
        return torch.einsum("kr,ir,jr->kij", self.A, self.B, self.C)

    def flops(self, batch: int, channels: int) -> int:
        """Floating point operations of one forward without weight, as multiply-adds x 2.

        ``2 N C d1 R`` (x @ B) + ``2 N d2 R`` (y @ C) + ``N C R`` (product) + ``2 N C R d3`` (@ Aᵀ).
        """
        d1, d2, d3 = self.dims
        R = self.rank
        n, c = batch, channels
        return 2 * n * c * d1 * R + 2 * n * d2 * R + n * c * R + 2 * n * c * R * d3

    def forward(
        self, x: torch.Tensor, y: torch.Tensor, weight: torch.Tensor | None = None
    ) -> torch.Tensor:
        d1, d2, _ = self.dims
        check_layer_inputs(
            x, y, weight, d_in1=d1, d_in2=d2, reference=self.A, layer="CPTensorProduct"
        )
        if self._use_blocked(x):
            return self._blocked(x, y, weight)
        h = torch.matmul(x, self.B)  # (..., C, R): one GEMM over all edges and channels
        yc = torch.matmul(y, self.C).unsqueeze(-2)  # (..., 1, R)
        h = h * yc
        out = torch.matmul(h, self.A.mT)  # (..., C, d3)
        if weight is not None:
            out = out * weight.unsqueeze(-1)
        return out

    def _use_blocked(self, x: torch.Tensor) -> bool:
        """On CPU, outside torch.compile, with fixed factors and a non-empty x: the blocked path."""
        if self.blocked_bytes <= 0 or x.device.type != "cpu":
            return False
        if x.numel() == 0:  # no samples or no channels: nothing to block (empty output)
            return False
        if torch.compiler.is_compiling():
            return False
        return not any(f.requires_grad for f in (self.A, self.B, self.C))

    def _blocked(
        self, x: torch.Tensor, y: torch.Tensor, weight: torch.Tensor | None
    ) -> torch.Tensor:
        """The same product, computed block by block over the flattened batch.

        Batch shapes are broadcast and flattened to n samples; :class:`_BlockedCPProduct` then
        works on blocks of samples whose (block x channels x R) intermediates stay in cache
        (on CPU every fresh large temporary costs page faults that take longer than the
        arithmetic). Values equal the plain path up to rounding; autograd (also double
        backward) goes through the blocked backward.
        """
        d1, d2, d3 = self.dims
        channels = x.shape[-2]
        shapes = [x.shape[:-2], y.shape[:-1]] + ([weight.shape[:-1]] if weight is not None else [])
        batch = torch.broadcast_shapes(*shapes)
        n = math.prod(batch)
        xs = x.expand(*batch, channels, d1).reshape(n, channels, d1)
        ys = y.expand(*batch, d2).reshape(n, d2)
        ws = weight.expand(*batch, channels).reshape(n, channels) if weight is not None else None
        A, B, C = self._padded_factors()
        # each of the intra-op threads works on its share of a block's rows
        budget = self.blocked_bytes * max(1, torch.get_num_threads())
        block = max(1, budget // (channels * A.shape[1] * x.element_size()))
        out = _BlockedCPProduct.apply(xs, ys, ws, A, B, C, block)
        return out.reshape(*batch, channels, d3)

    def _padded_factors(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """A, B, C with zero columns appended so that R is a multiple of 64 bytes of elements.

        Zero columns add exact zeros, so the product is unchanged; rows of R elements then start
        on cache lines and the GEMM kernels take their aligned path (x @ B at L = 3, R = 63:
        47 -> 79 GFLOP/s on the 2-core VM). Cached, and rebuilt when a factor is changed in
        place (``load_state_dict``, ``.copy_``: the tensor version counter) or moved.
        """
        factors = (self.A, self.B, self.C)
        key = tuple((f.data_ptr(), f._version, f.dtype, f.device) for f in factors)
        cached = self.__dict__.get("_padded_cache")
        if cached is not None and cached[0] == key:
            return cached[1]
        lanes = max(1, 64 // self.A.element_size())
        pad = -self.rank % lanes
        padded = tuple(torch.nn.functional.pad(f, (0, pad)).contiguous() for f in factors)
        self.__dict__["_padded_cache"] = (key, padded)
        return padded  # type: ignore[return-value]

    def extra_repr(self) -> str:
        d1, d2, d3 = self.dims
        return f"d1={d1}, d2={d2}, d3={d3}, rank={self.rank}, dtype={self.A.dtype}"


class _BlockedCPProduct(torch.autograd.Function):
    """``out[n, c] = w[n, c] * A((Bᵀ x[n, c]) ⊙ (Cᵀ y[n]))`` on blocks of ``block`` samples.

    Shapes: x (n, C, d1), y (n, d2), w (n, C) or None, A (d3, R), B (d1, R), C (d2, R) (fixed:
    no gradient). With g = dL/dout, gh = (w g) A, u = (Bᵀ x), v = (Cᵀ y):
    dL/dx = (gh ⊙ v) Bᵀ, dL/dy = (sum_c gh ⊙ u) Cᵀ, dL/dw = sum_k g ⊙ ((u ⊙ v) Aᵀ).
    The backward recomputes u per block and is built from differentiable operations, so
    double backward (forces in training) works.
    """

    @staticmethod
    def forward(ctx, x, y, w, A, B, C, block):  # type: ignore[override]
        n, channels, _ = x.shape
        rank = A.shape[1]
        v = torch.matmul(y, C)  # (n, R)
        out = torch.empty(n, channels, A.shape[0], dtype=x.dtype, device=x.device)
        buffer = torch.empty(min(block, n), channels, rank, dtype=x.dtype, device=x.device)
        A_t = A.mT.contiguous()
        for start in range(0, n, block):
            stop = min(start + block, n)
            h = buffer[: stop - start]
            torch.matmul(x[start:stop], B, out=h)
            h.mul_(v[start:stop].unsqueeze(-2))
            torch.matmul(h, A_t, out=out[start:stop])
            if w is not None:
                out[start:stop].mul_(w[start:stop].unsqueeze(-1))
        ctx.save_for_backward(x, y, w, A, B, C)
        ctx.block = block
        return out

    @staticmethod
    def backward(ctx, g):  # type: ignore[override]
        x, y, w, A, B, C = ctx.saved_tensors
        need_x, need_y, need_w = ctx.needs_input_grad[:3]
        block = ctx.block
        v = torch.matmul(y, C)
        parts_x, parts_y, parts_w = [], [], []
        for start in range(0, x.shape[0], block):
            rows = slice(start, start + block)
            g_b = g[rows]
            gw_b = g_b * w[rows].unsqueeze(-1) if w is not None else g_b
            gh = torch.matmul(gw_b, A)  # (b, C, R)
            if need_x:
                parts_x.append(torch.matmul(gh * v[rows].unsqueeze(-2), B.mT))
            if need_y or need_w:
                u = torch.matmul(x[rows], B)  # (b, C, R)
                if need_y:
                    parts_y.append((gh * u).sum(-2))
                if need_w:
                    o = torch.matmul(u * v[rows].unsqueeze(-2), A.mT)  # (b, C, d3)
                    parts_w.append((g_b * o).sum(-1))
        grad_x = torch.cat(parts_x) if need_x else None
        grad_y = torch.matmul(torch.cat(parts_y), C.mT) if need_y else None
        grad_w = torch.cat(parts_w) if need_w else None
        return grad_x, grad_y, grad_w, None, None, None, None
