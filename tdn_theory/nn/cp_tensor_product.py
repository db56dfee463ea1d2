"""The TDN layer: the CG tensor product replaced by a CP decomposition of the CG tensor.

With factors ``A`` (d3 x R, output), ``B`` (d1 x R, input 1), ``C`` (d2 x R, input 2) that
approximate the CG tensor, ``M[k, i, j] ~ sum_r A[k, r] B[i, r] C[j, r]``, the layer computes for
every channel ``c``

    out[..., c, k] = weight[..., c]
                     * sum_r A[k, r] (sum_i B[i, r] x[..., c, i]) (sum_j C[j, r] y[..., (c,) j])

i.e. ``out = ((x @ B) * (y @ C)) @ A.T``, scaled per channel: three matrix products and one
elementwise product, ``O(d R)`` work per channel instead of ``O(d^3)``. Input 2 is either shared
by the channels, ``y`` of shape (..., d2) (the spherical harmonics of an edge), or carries the
channels, ``y`` of shape (..., C, d2) (the paper's shared-weight layer ``z_u = M(x_u, (W y)_u)``):
a ``y`` with as many dimensions as ``x`` is per channel. ``weight`` is one number per channel
shared by all paths (path-weight sharing); with exact factors the layer is exactly
SO(3)-equivariant for any weight.
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
) -> bool:
    """Raise a one-line ValueError when ``x``, ``y``, ``weight`` do not fit a layer.

    Expected: ``x`` (..., channels, d_in1); ``y`` (..., d_in2) shared by the channels or
    (..., channels, d_in2) per channel (a ``y`` with as many dimensions as ``x``); ``weight``
    (..., channels) or None; batch shapes broadcastable, all with ``reference``'s dtype and
    device. Returns True when ``y`` is per channel.
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
    channels = x.shape[-2]
    if y.ndim < 1 or y.shape[-1] != d_in2:
        raise ValueError(
            f"{layer}: y has shape {tuple(y.shape)} but the layer expects (..., {d_in2}) "
            f"(shared by the channels) or (..., {channels}, {d_in2}) (per channel)"
        )
    if y.ndim > x.ndim:
        raise ValueError(
            f"{layer}: y has {y.ndim} dimensions, more than x ({x.ndim}); a per-channel y has "
            "as many dimensions as x: add the batch dimensions to x (e.g. x[None])"
        )
    per_channel = y.ndim == x.ndim
    if per_channel and y.shape[-2] != channels:
        raise ValueError(
            f"{layer}: y has shape {tuple(y.shape)} (per channel: as many dimensions as x) but x "
            f"has {channels} channels; y must have shape (..., {channels}, {d_in2}) or "
            f"(..., {d_in2})"
        )
    batch_shapes = [x.shape[:-2], y.shape[: -2 if per_channel else -1]]
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
    return per_channel


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

    ``forward(x, y, weight=None)``: ``x`` (..., channels, d1), ``y`` (..., d2) shared by the
    channels or (..., channels, d2) per channel (as many dimensions as ``x``), ``weight``
    (..., channels) or None; batch shapes broadcast. Returns (..., channels, d3).
    """

    A: torch.Tensor
    B: torch.Tensor
    C: torch.Tensor

    #: Size in bytes per intra-op thread of the (samples x channels x R) intermediate of one
    #: block of :class:`_CPProduct` on CPU (one block on other devices). A quarter of a 2 MiB L2
    #: cache: best of 256 KiB..1 MiB at L = 3, 4, 6 on the 2-core VM (1-2 threads). 0 disables
    #: the Function: the plain path of autograd operations (needed under torch.func transforms).
    blocked_bytes: int = 1 << 19

    #: Where gradients go: "autograd" (default) takes the plain path of autograd operations
    #: whenever gradients are recorded (training, forces) and :class:`_CPProduct` only for a
    #: forward without gradients; "function" takes the Function (with its two-GEMM backward and
    #: the explicit second derivative of :class:`_CPProductGrad`) for gradients too. Measured by
    #: ``python -m experiments.bench_layer`` (model table, CPU, L = 2): the plain path trained
    #: faster than the Function on the 2-core VM, so it is the default.
    backward: str = "autograd"

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

    def flops(self, batch: int, channels: int, *, per_channel_y: bool = False) -> int:
        """Floating point operations of one forward without weight, as multiply-adds x 2.

        ``2 N C d1 R`` (x @ B) + ``2 N d2 R`` (y @ C; ``2 N C d2 R`` for a per-channel y)
        + ``N C R`` (product) + ``2 N C R d3`` (@ Aᵀ).
        """
        d1, d2, d3 = self.dims
        R = self.rank
        n, c = batch, channels
        y_rows = n * c if per_channel_y else n
        return 2 * n * c * d1 * R + 2 * y_rows * d2 * R + n * c * R + 2 * n * c * R * d3

    def forward(
        self, x: torch.Tensor, y: torch.Tensor, weight: torch.Tensor | None = None
    ) -> torch.Tensor:
        d1, d2, _ = self.dims
        per_channel = check_layer_inputs(
            x, y, weight, d_in1=d1, d_in2=d2, reference=self.A, layer="CPTensorProduct"
        )
        if self._use_function(x):
            return self._function(x, y, weight, per_channel)
        h = torch.matmul(x, self.B)  # (..., C, R): one GEMM over all edges and channels
        v = torch.matmul(y, self.C)  # (..., R) shared, or (..., C, R) per channel
        h = h * (v if per_channel else v.unsqueeze(-2))
        out = torch.matmul(h, self.A.mT)  # (..., C, d3)
        if weight is not None:
            out = out * weight.unsqueeze(-1)
        return out

    def _use_function(self, x: torch.Tensor) -> bool:
        """The :class:`_CPProduct` path: fixed factors, outside torch.compile, a non-empty x,
        and no gradients recorded unless ``backward = "function"``."""
        if self.blocked_bytes <= 0 or x.numel() == 0:  # empty: nothing to block
            return False
        if self.backward != "function" and torch.is_grad_enabled():
            return False
        if torch.compiler.is_compiling():
            return False
        return not any(f.requires_grad for f in (self.A, self.B, self.C))

    def _function(
        self, x: torch.Tensor, y: torch.Tensor, weight: torch.Tensor | None, per_channel: bool
    ) -> torch.Tensor:
        """The same product through :class:`_CPProduct`, block by block on CPU.

        Batch shapes are broadcast and flattened to n samples. On CPU the Function works on
        blocks of samples whose (block x channels x R) intermediates stay in cache (every fresh
        large temporary costs page faults that take longer than the arithmetic); elsewhere on
        one block. Values equal the plain path up to rounding;
        autograd (also double backward) goes through the Function's backward.
        """
        d1, d2, d3 = self.dims
        channels = x.shape[-2]
        y_batch = y.shape[:-2] if per_channel else y.shape[:-1]
        shapes = [x.shape[:-2], y_batch] + ([weight.shape[:-1]] if weight is not None else [])
        batch = torch.broadcast_shapes(*shapes)
        n = math.prod(batch)
        xs = x.expand(*batch, channels, d1).reshape(n, channels, d1)
        if per_channel:
            ys = y.expand(*batch, channels, d2).reshape(n, channels, d2)
        else:
            ys = y.expand(*batch, d2).reshape(n, 1, d2)
        ws = weight.expand(*batch, channels).reshape(n, channels) if weight is not None else None
        A, B, C = self._padded_factors()
        if x.device.type == "cpu":
            # each of the intra-op threads works on its share of a block's rows
            budget = self.blocked_bytes * max(1, torch.get_num_threads())
            block = max(1, budget // (channels * A.shape[1] * x.element_size()))
        else:
            block = n
        out = _CPProduct.apply(xs, ys, ws, A, B, C, block)
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


class _CPProduct(torch.autograd.Function):
    """``out[n, c] = w[n, c] * A((Bᵀ x[n, c]) ⊙ (Cᵀ y[n, c or 0]))`` on blocks of ``block`` samples.

    Shapes: x (n, C, d1), y (n, 1, d2) (shared by the channels) or (n, C, d2) (per channel),
    w (n, C) or None, A (d3, R), B (d1, R), C (d2, R) (fixed: no gradient). With g = dL/dout,
    u = x B, v = y C (both (.., R)), ga = g A and s = ga ⊙ u, the backward is

        dL/dx[c] = w[c] ((ga[c] ⊙ v) Bᵀ),
        dL/dy = (sum_c w[c] s[c]) Cᵀ   (per channel: w[c] (s[c] Cᵀ)),
        dL/dw[c] = sum_r s[c, r] v[r],

    two GEMMs per block (g A and · Bᵀ; the y side is one small GEMM per sample for a shared y),
    two elementwise products of size C R, and the weight applied on the d-sized outputs (the
    plain autograd backward multiplies by the weight at size C R and, for dL/dw, keeps the
    unweighted output). u is the one saved in the forward. Under ``create_graph`` (forces in
    training) the backward is :class:`_CPProductGrad`, a Function whose own backward (the
    second derivative) is written out in GEMMs too, instead of autograd replaying every
    operation of the first backward.
    """

    @staticmethod
    def forward(ctx, x, y, w, A, B, C, block):  # type: ignore[override]
        n, channels, _ = x.shape
        rank = A.shape[1]
        v = torch.matmul(y, C)  # (n, 1 or C, R)
        out = torch.empty(n, channels, A.shape[0], dtype=x.dtype, device=x.device)
        keep_u = any(ctx.needs_input_grad[:3])
        u_all = torch.empty(n, channels, rank, dtype=x.dtype, device=x.device) if keep_u else None
        buffer = torch.empty(min(block, n), channels, rank, dtype=x.dtype, device=x.device)
        A_t = A.mT.contiguous()
        for start in range(0, n, block):
            stop = min(start + block, n)
            h = buffer[: stop - start]
            if u_all is not None:
                torch.matmul(x[start:stop], B, out=u_all[start:stop])
                torch.mul(u_all[start:stop], v[start:stop], out=h)
            else:
                torch.matmul(x[start:stop], B, out=h)
                h.mul_(v[start:stop])
            torch.matmul(h, A_t, out=out[start:stop])
            if w is not None:
                out[start:stop].mul_(w[start:stop].unsqueeze(-1))
        ctx.save_for_backward(x, y, w, A, B, C, u_all)
        ctx.block = block
        return out

    @staticmethod
    def backward(ctx, g):  # type: ignore[override]
        x, y, w, A, B, C, u_saved = ctx.saved_tensors
        need_x, need_y, need_w = ctx.needs_input_grad[:3]
        if torch.is_grad_enabled():  # create_graph: a Function with an explicit backward
            weight = w if w is not None else x.new_ones(x.shape[:2])
            grad_x, grad_y, grad_w = _CPProductGrad.apply(g, x, y, weight, A, B, C, ctx.block)
            return (
                grad_x if need_x else None,
                grad_y if need_y else None,
                grad_w if need_w and w is not None else None,
                None,
                None,
                None,
                None,
            )
        shared = y.shape[1] == 1  # one y for all channels (with one channel: the same)
        block = ctx.block
        v = torch.matmul(y, C)  # (n, 1 or C, R)
        # torch.split, not slicing (a slice's backward scatters into a full-size zero tensor)
        g_s, x_s, v_s = g.split(block), x.split(block), v.split(block)
        u_s = x_s if u_saved is None else u_saved.split(block)
        w_s = w.split(block) if w is not None else [None] * len(g_s)
        parts_x, parts_y, parts_w = [], [], []
        for g_b, u_b, v_b, w_b in zip(g_s, u_s, v_s, w_s, strict=True):
            ga = torch.matmul(g_b, A)  # (b, C, R)
            if need_x:
                gx = torch.matmul(ga * v_b, B.mT)  # (b, C, d1)
                parts_x.append(gx * w_b.unsqueeze(-1) if w_b is not None else gx)
            if not (need_y or need_w):
                continue
            if u_saved is None:
                u_b = torch.matmul(u_b, B)  # (b, C, R) from x
            s = ga * u_b
            if need_w:
                parts_w.append((s * v_b).sum(-1))  # (b, C)
            if need_y:
                if shared:
                    if w_b is not None:
                        parts_y.append((s * w_b.unsqueeze(-1)).sum(-2, keepdim=True))
                    else:
                        parts_y.append(s.sum(-2, keepdim=True))
                else:
                    parts_y.append(s * w_b.unsqueeze(-1) if w_b is not None else s)
        grad_x = torch.cat(parts_x) if need_x else None
        grad_y = torch.matmul(torch.cat(parts_y), C.mT) if need_y else None
        grad_w = torch.cat(parts_w) if need_w else None
        return grad_x, grad_y, grad_w, None, None, None, None


class _CPProductGrad(torch.autograd.Function):
    """The backward of :class:`_CPProduct` as a Function of its own, for double backward.

    Forward: ``(g, x, y, w) -> (dL/dx, dL/dy, dL/dw)`` by the formulas of :class:`_CPProduct`
    (u = x B, v = y C, ga = g A; w a tensor, ones when the layer had no weight). Backward,
    given X = dL2/d(dL/dx), Y = dL2/d(dL/dy), W = dL2/d(dL/dw), with p = X B, q = Y C:

        dL2/dg = T Aᵀ,   T = w p ⊙ v + w q ⊙ u + W u ⊙ v,
        dL2/dx = (ga ⊙ (w q + W v)) Bᵀ,
        dL2/dy = (ga ⊙ (w p + W u)) Cᵀ   (summed over the channels for a shared y),
        dL2/dw = sum_r ga ⊙ (p ⊙ v + q ⊙ u),

    (w and W broadcast over r). Both directions run block by block (``block`` samples, the
    (block x C x R) intermediates in cache, u, v, ga recomputed per block rather than saved),
    where autograd through the first backward would replay every operation of it on
    full-size temporaries. Third derivatives are not supported (once_differentiable).
    """

    @staticmethod
    def forward(ctx, g, x, y, w, A, B, C, block):  # type: ignore[override]
        shared = y.shape[1] == 1
        v = torch.matmul(y, C)  # (n, 1 or C, R)
        grad_x = torch.empty_like(x)
        grad_w = torch.empty_like(w)
        rank = A.shape[1]
        gv = torch.empty(x.shape[0], y.shape[1], rank, dtype=x.dtype, device=x.device)
        for start in range(0, x.shape[0], block):
            rows = slice(start, min(start + block, x.shape[0]))
            u = torch.matmul(x[rows], B)  # (b, C, R)
            ga = torch.matmul(g[rows], A)  # (b, C, R)
            wc = w[rows].unsqueeze(-1)
            torch.matmul(ga * v[rows], B.mT, out=grad_x[rows])
            grad_x[rows].mul_(wc)
            s = ga.mul_(u)
            torch.sum(s * v[rows], -1, out=grad_w[rows])
            s.mul_(wc)
            if shared:
                torch.sum(s, -2, keepdim=True, out=gv[rows])
            else:
                gv[rows] = s
        grad_y = torch.matmul(gv, C.mT)
        ctx.save_for_backward(g, x, y, w, A, B, C)
        ctx.shared, ctx.block = shared, block
        return grad_x, grad_y, grad_w

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, X, Y, W):  # type: ignore[override]
        g, x, y, w, A, B, C = ctx.saved_tensors
        block = ctx.block
        v = torch.matmul(y, C)  # (n, 1 or C, R)
        q_all = torch.matmul(Y, C) if Y is not None else None  # (n, 1 or C, R)
        grad_g = torch.empty_like(g)
        grad_x = torch.empty_like(x)
        grad_w = torch.empty_like(w)
        dv_all = torch.empty(x.shape[0], y.shape[1], A.shape[1], dtype=x.dtype, device=x.device)
        for start in range(0, x.shape[0], block):
            rows = slice(start, min(start + block, x.shape[0]))
            u = torch.matmul(x[rows], B)
            ga = torch.matmul(g[rows], A)
            v_b, wc = v[rows], w[rows].unsqueeze(-1)
            T = torch.zeros_like(ga)
            du = torch.zeros_like(ga)  # dL2/du / ga
            dv = torch.zeros_like(ga)  # dL2/dv / ga
            dw = torch.zeros_like(ga)  # dL2/dw / ga (before the sum over r)
            if X is not None:
                p = torch.matmul(X[rows], B)
                dv.addcmul_(wc, p)
                p.mul_(v_b)
                T.addcmul_(wc, p)
                dw.add_(p)
            if q_all is not None:
                q = q_all[rows] * u
                T.addcmul_(wc, q)
                dw.add_(q)
                du.addcmul_(wc, q_all[rows].expand_as(du))
            if W is not None:
                Wc = W[rows].unsqueeze(-1)
                T.addcmul_(Wc, u * v_b)
                du.addcmul_(Wc, v_b.expand_as(du))
                dv.addcmul_(Wc, u)
            torch.matmul(T, A.mT, out=grad_g[rows])
            torch.matmul(du.mul_(ga), B.mT, out=grad_x[rows])
            dv.mul_(ga)
            if ctx.shared:
                torch.sum(dv, -2, keepdim=True, out=dv_all[rows])
            else:
                dv_all[rows] = dv
            torch.sum(dw.mul_(ga), -1, out=grad_w[rows])
        grad_y = torch.matmul(dv_all, C.mT)
        return grad_g, grad_x, grad_y, grad_w, None, None, None, None
