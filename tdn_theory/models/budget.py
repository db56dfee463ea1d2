"""Up-front size estimates for training a :class:`~tdn_theory.models.TDNPotential`.

Rough upper estimates in bytes, used to refuse a run that cannot fit in memory before it starts
(the training command compares them with half of the machine's memory, as ``fit_cp`` does).
They count numbers, not measured allocations: good to a small factor, meant to catch settings
that are off by orders of magnitude (``--channels 1000000000``, ``--cutoff 1e9``).

- parameters: per layer ``(L+1) C^2`` (mixing) ``+ L C^2`` (gates) ``+ n_basis h + h C`` (radial
  MLP), plus the embedding ``S C`` and the readout ``C h + h``; each held 6 times in training
  (weights, gradients, two AdamW moments, the best-epoch copy, a spare);
- periodic images within the cutoff: ``prod_i m_i`` with ``m_i = 2 ceil(r_c / h_i) + 1`` along each
  periodic direction i (``h_i`` the lattice plane spacing of that direction within the periodic
  sub-lattice), ``m_i = 1`` otherwise. Every atom sees its own images up to the cutoff, so a
  configuration of N atoms has at least about ``N prod_i m_i / 2`` neighbour pairs: a cell far
  smaller than the cutoff (``--cutoff 1e9``, a 0.001 Å cell) is caught before ASE builds the list;
- activations of one mini-batch with E edges and N atoms, per layer: ``3 (4 C d + d^2 + 2 C R +
  C + 16)`` numbers per edge and ``3 * 4 C d`` per atom (forward values kept for the double
  backward of the force loss, about three times), d = (L+1)^2, R the CP rank (0 otherwise).
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["activation_bytes", "neighbour_pairs", "parameter_bytes", "periodic_images"]


def parameter_bytes(
    L: int,
    channels: int,
    layers: int,
    *,
    n_species: int = 1,
    itemsize: int = 8,
    n_basis: int = 8,
    hidden: int = 16,
) -> int:
    """Bytes of the weights during training (see the module docstring)."""
    C = channels
    per_layer = (L + 1) * C * C + L * C * C + n_basis * hidden + hidden * C
    count = layers * per_layer + n_species * C + C * hidden + hidden + n_species
    return 6 * itemsize * count


def neighbour_pairs(n_atoms: int, cell: np.ndarray, pbc: np.ndarray, cutoff: float) -> float:
    """``n_atoms * periodic_images(...)``: the order of the neighbour pairs a small periodic cell
    forces (a float: it may be huge); not a bound for large cells, whose real count is used."""
    return float(n_atoms) * periodic_images(cell, pbc, cutoff)


def periodic_images(cell: np.ndarray, pbc: np.ndarray, cutoff: float) -> float:
    """``prod_i m_i`` of the module docstring (1.0 without periodic directions)."""
    cell = np.asarray(cell, dtype=np.float64).reshape(3, 3)
    periodic = np.flatnonzero(np.asarray(pbc, dtype=bool))
    images = 1.0
    if periodic.size:
        vectors = cell[periodic]  # (k, 3), independent (checked elsewhere)
        reciprocal = np.linalg.pinv(vectors)  # (3, k): vectors @ reciprocal = identity
        norms = np.linalg.norm(reciprocal, axis=0)
        if not np.all(np.isfinite(norms)) or np.any(norms == 0):
            return math.inf
        for spacing in 1.0 / norms:
            images *= 2 * math.ceil(cutoff / spacing) + 1
    return images


def activation_bytes(
    L: int,
    channels: int,
    layers: int,
    n_edges: int,
    n_atoms: int,
    *,
    rank: int = 0,
    itemsize: int = 8,
) -> int:
    """Bytes of the activations of one mini-batch (see the module docstring)."""
    C, d = channels, (L + 1) ** 2
    per_edge = 3 * (4 * C * d + d * d + 2 * C * rank + C + 16)
    per_atom = 3 * 4 * C * d
    return itemsize * layers * (n_edges * per_edge + n_atoms * per_atom)
