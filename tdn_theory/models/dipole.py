r"""A dipole head for :class:`~tdn_theory.models.TDNPotential`: charges and atomic dipoles.

For a structure ``s`` with atoms ``i`` at ``r_i`` and last-layer features ``h_i`` (C, d):

    q~_i = psi(h_i[:, 0])                          raw charge, psi = Linear(C, H)-SiLU-Linear(H, 1)
    q_i  = q~_i - (1/n_s) sum_{j in s} q~_j         shifted so that every structure is neutral
    p_i  = sum_c w_c h_i[c, 1:4]                    atomic dipole: a linear map of the l = 1 channels
    mu_s = sum_{i in s} q_i (r_i - r_center) + sum_{i in s} p_i

``r_center`` is the centroid of the structure (with neutral charges mu does not depend on it). The
l = 1 block of the features is ordered (x, y, z) and rotates with D^1(R) = R (e3nn's real basis), so
``p_i`` is a Cartesian vector; mu is in e·Å when trained on e·Å labels. mu depends on the positions
directly, so a dipole loss needs no double backward.

Parity. With ``parity="all"`` the odd paths (e.g. the cross product 1 x 1 -> 1) make some l = 1
channels pseudo-vectors: mu is still rotation-equivariant, but not mirror-equivariant. A dipole is
a polar vector; ``parity="even"`` makes every l = 1 channel polar and is the recommended setting for
dipoles. The dipole of a periodic structure is not defined by this formula (positions are not
unwrapped); the head is meant for molecules.
"""

from __future__ import annotations

import math

import torch

__all__ = ["DipoleHead", "structure_dipoles"]


class DipoleHead(torch.nn.Module):
    """Weights of the dipole head: charge MLP (C -> hidden -> 1) and l = 1 weights (C)."""

    def __init__(self, channels: int, hidden: int, L: int, gen: torch.Generator, dtype) -> None:
        super().__init__()
        C = channels

        def normal(*shape: int, fan_in: int) -> torch.nn.Parameter:
            t = torch.randn(*shape, generator=gen, dtype=torch.float64) / math.sqrt(fan_in)
            return torch.nn.Parameter(t.to(dtype))

        self.charge_1 = normal(C, hidden, fan_in=C)
        self.charge_2 = normal(hidden, fan_in=hidden)
        # L = 0 has no l = 1 channels: charges only
        self.vector = normal(C, fan_in=C) if L >= 1 else None

    def forward(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Raw charges (N,) and atomic dipoles (N, 3) (None for L = 0) of features h (N, C, d)."""
        q = torch.nn.functional.silu(h[:, :, 0] @ self.charge_1) @ self.charge_2
        p = None if self.vector is None else torch.einsum("nck,c->nk", h[:, :, 1:4], self.vector)
        return q, p


def structure_dipoles(
    positions: torch.Tensor,
    raw_charges: torch.Tensor,
    atomic_dipoles: torch.Tensor | None,
    structure: torch.Tensor,
    n_structures: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Dipoles (B, 3) and neutral charges (N,) of ``n_structures`` structures (module docstring).

    ``structure`` (N,) is the index of each atom's structure (all zeros for one structure).
    """
    ones = torch.ones_like(raw_charges)
    counts = ones.new_zeros(n_structures).index_add(0, structure, ones)
    mean_q = raw_charges.new_zeros(n_structures).index_add(0, structure, raw_charges) / counts
    q = raw_charges - mean_q[structure]
    centroid = positions.new_zeros(n_structures, 3).index_add(0, structure, positions)
    centroid = centroid / counts[:, None]
    terms = q[:, None] * (positions - centroid[structure])
    if atomic_dipoles is not None:
        terms = terms + atomic_dipoles
    return positions.new_zeros(n_structures, 3).index_add(0, structure, terms), q
