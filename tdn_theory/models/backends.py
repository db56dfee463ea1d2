"""Tensor-product backends of the potential, chosen by name, behind one interface.

Every backend is a ``torch.nn.Module`` with ``forward(x, y, weight)``: ``x`` (E, C, d) neighbour
features, ``y`` (E, d) edge harmonics or (E, C, d) per channel (weighted harmonics, see
``per_channel_y``), ``weight`` (E, C) one weight per channel per edge or None
(path-weight sharing), returning (E, C, d) = ``weight[c] * M(x[c], y[(c)])`` for a tensor ``M``
indexed ``[k (output), i (input 1), j (input 2)]``, and ``dense_tensor()`` returning the (d, d, d)
tensor it computes (for bounds and comparisons).

- ``"dense"``: :class:`~tdn_theory.nn.CGTensorProduct`, the exact CG tensor.
- ``"e3nn"``: e3nn's ``"uvu"`` TensorProduct over the same paths (the external reference).
- ``"cp"``: :class:`~tdn_theory.nn.CPTensorProduct` from a factor file (``factors=``) or the
  best-known fit at ``rank=`` from the fit store (see :func:`fitted_factors`).
- ``"sphere"``: the exact quadrature CP of the "sphere" tensor (``tdn_theory.cp.sphere_cp``).
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from tdn_theory import so3
from tdn_theory._checks import check_int
from tdn_theory.cp import CPFit, best_fit, sphere_cp
from tdn_theory.cp.factor_files import FactorFileError
from tdn_theory.nn import (
    CGTensorProduct,
    CPTensorProduct,
    e3nn_path_weights,
    e3nn_tensor_product,
    from_e3nn_layout,
    to_e3nn_layout,
)
from tdn_theory.so3.cache import cache_dir

__all__ = ["BACKENDS", "E3nnProduct", "fitted_factors", "make_tensor_product", "user_fit_store"]

BACKENDS = ("dense", "e3nn", "cp", "sphere")


class E3nnProduct(torch.nn.Module):
    """e3nn's TensorProduct computing ``weight[c] * M(x[c], y)`` in this project's layout."""

    def __init__(
        self,
        L: int,
        channels: int,
        normalization: str,
        parity: str,
        dtype: torch.dtype,
        per_channel_y: bool = False,
    ) -> None:
        super().__init__()
        self.L, self.channels = int(L), int(channels)
        self.normalization, self.parity = normalization, parity
        self.per_channel_y = bool(per_channel_y)
        self.tp = e3nn_tensor_product(L, channels, parity, dtype=dtype, per_channel_y=per_channel_y)

    def forward(
        self, x: torch.Tensor, y: torch.Tensor, weight: torch.Tensor | None = None
    ) -> torch.Tensor:
        if (y.ndim == x.ndim) != self.per_channel_y:
            want = "(E, C, d)" if self.per_channel_y else "(E, d)"
            raise ValueError(
                f"E3nnProduct: y has shape {tuple(y.shape)} but this product was built with "
                f"per_channel_y={self.per_channel_y}; pass y of shape {want}"
            )
        if weight is None:
            weight = x.new_ones(x.shape[:-1])
        w = e3nn_path_weights(weight, self.L, self.normalization, self.parity)
        y = to_e3nn_layout(y) if self.per_channel_y else y
        out = self.tp(to_e3nn_layout(x), y, w)
        return from_e3nn_layout(out, self.L, self.channels)

    def dense_tensor(self) -> torch.Tensor:
        return torch.from_numpy(so3.cg_tensor(self.L, self.normalization, self.parity))


class _Dense(CGTensorProduct):
    def dense_tensor(self) -> torch.Tensor:
        return self.M


def fitted_factors(
    L: int, rank: int, normalization: str = "unit", parity: str = "all", seed: int = 0
) -> tuple[CPFit, dict]:
    """The best known rank-``rank`` CP of ``so3.cg_tensor(L, normalization, parity)``.

    Taken from :func:`tdn_theory.cp.best_fit`: the package's store of best-known fits, else the
    user's store ``<user cache>/fits`` (filled on first use by ``fit_cp`` with ``seed`` and the
    store's recipe for L). Every stored file is verified on read. Returns (fit, provenance).
    """
    return best_fit(L, rank, normalization, parity, store=user_fit_store(), seed=seed)


def user_fit_store() -> Path:
    """The user's fit store: ``fits/`` beside the versioned CG cache in the user cache folder."""
    return cache_dir().parent / "fits"


def _check_factor_file(factors: str | os.PathLike, L: int, normalization: str, parity: str):
    """Load a factor file for this model; a file for another L/normalization/parity is refused."""
    try:
        layer = CPTensorProduct.from_file(factors)
    except FactorFileError as exc:
        raise ValueError(str(exc)) from None
    meta = layer.meta
    want = {"L": L, "normalization": normalization, "parity": parity}
    for key, value in want.items():
        if key in meta and meta[key] != value:
            raise ValueError(
                f"factor file {os.fspath(factors)} is for {key} = {meta[key]!r} but the model "
                f"has {key} = {value!r}; use a file fitted for the model's tensor"
            )
    if layer.L != L:
        raise ValueError(
            f"factor file {os.fspath(factors)} has d = {layer.dims} but the model has L = {L} "
            f"(d = {(L + 1) ** 2}); use a file fitted for L = {L}"
        )
    return layer


def make_tensor_product(
    backend: str,
    L: int,
    channels: int,
    *,
    normalization: str,
    parity: str,
    rank: int | None = None,
    factors: str | os.PathLike | None = None,
    seed: int = 0,
    dtype: torch.dtype = torch.float64,
    per_channel_y: bool = False,
) -> torch.nn.Module:
    """Build the named backend (see the module docstring); one-line ValueError on bad input.

    ``per_channel_y``: the second input will carry the channels (E, C, d); only e3nn's product
    is built differently (mode "uuu"), the others accept both shapes.
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose one of {BACKENDS}")
    if backend != "cp" and (rank is not None or factors is not None):
        raise ValueError(f"rank= and factors= are for backend 'cp', not {backend!r}")
    if backend == "dense":
        return _Dense(L, normalization, parity, dtype=dtype)
    if backend == "e3nn":
        return E3nnProduct(L, channels, normalization, parity, dtype, per_channel_y)
    if backend == "sphere":
        if normalization != "sphere":
            raise ValueError(
                f"backend 'sphere' computes the 'sphere' tensor; got normalization={normalization!r}"
            )
        fit = sphere_cp(L, parity)
        layer = CPTensorProduct(
            fit.A, fit.B, fit.C, dtype=dtype, meta={"method": "sphere_cp", "L": L}
        )
        return layer
    # cp
    if (rank is None) == (factors is None):
        raise ValueError(
            "backend 'cp' needs exactly one of rank= (fit and cache) or factors= (file)"
        )
    if factors is not None:
        layer = _check_factor_file(factors, L, normalization, parity)
        return CPTensorProduct(layer.A, layer.B, layer.C, dtype=dtype, meta=layer.meta)
    rank = check_int(rank, "rank", minimum=1)
    fit, provenance = fitted_factors(L, int(rank), normalization, parity, seed)
    meta = {"L": L, "rank": int(rank), "relative_error": fit.relative_error}
    meta.update({k: provenance[k] for k in ("method", "source") if k in provenance})
    return CPTensorProduct(fit.A, fit.B, fit.C, dtype=dtype, meta=meta)
