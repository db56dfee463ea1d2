"""Atomic graphs: checked inputs and the neighbour list (periodic images by shift vectors).

An edge ``e = (i, j, S)`` says that atom ``j`` shifted by the lattice vector ``S @ cell``
(``S`` integer, shape (3,)) lies within ``cutoff`` of atom ``i``. The edge vector is

    r_e = positions[j] - positions[i] + S @ cell,

computed in torch from the positions (and cell), so that energies stay differentiable in them; only
the *list* of edges is found with ``ase.neighborlist.primitive_neighbor_list`` on detached numbers.
Messages flow from ``j`` (source) to ``i`` (destination).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from ase.neighborlist import primitive_neighbor_list

__all__ = ["Graph", "average_neighbors", "build_graph", "check_structure"]


@dataclass(frozen=True)
class Graph:
    """Edges of one structure: destination ``i`` (receives), source ``j``, integer shifts ``S``."""

    dst: torch.Tensor  # (E,) int64, atom i
    src: torch.Tensor  # (E,) int64, atom j
    shifts: torch.Tensor  # (E, 3) float (positions' dtype), integer values
    n_atoms: int

    def edge_vectors(self, positions: torch.Tensor, cell: torch.Tensor) -> torch.Tensor:
        """``r_e = x_j - x_i + S_e @ cell``, shape (E, 3), differentiable in positions and cell."""
        return positions[self.src] - positions[self.dst] + self.shifts @ cell


def check_structure(
    positions: Any, numbers: Any, cell: Any = None, pbc: Any = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Validate one structure; return float64 positions (N, 3), int numbers (N,), cell, pbc.

    Raises a one-line ValueError for: positions not (N, 3) or not finite, numbers not (N,)
    integers, a cell not (3, 3) or not finite, pbc not a bool or 3 bools, a periodic direction
    whose cell vector is zero, or a singular cell with any periodic direction.
    """
    pos = positions.detach().cpu().numpy() if isinstance(positions, torch.Tensor) else positions
    pos = np.asarray(pos, dtype=np.float64)
    if pos.ndim != 2 or pos.shape[1] != 3 or pos.shape[0] < 1:
        raise ValueError(f"positions must have shape (n_atoms, 3), got {pos.shape}")
    if not np.all(np.isfinite(pos)):
        raise ValueError("positions contain NaN or infinite values; pass finite coordinates")
    num = numbers.detach().cpu().numpy() if isinstance(numbers, torch.Tensor) else numbers
    num = np.asarray(num)
    if num.shape != (pos.shape[0],):
        raise ValueError(
            f"numbers must have shape ({pos.shape[0]},) (one atomic number per position), "
            f"got {num.shape}"
        )
    if num.size and not np.issubdtype(num.dtype, np.integer):
        if not np.all(np.equal(np.mod(num, 1), 0)):
            raise ValueError(f"numbers must be integer atomic numbers, got dtype {num.dtype}")
    num = num.astype(np.int64)
    if cell is None:
        c = np.zeros((3, 3))
    else:
        c = cell.detach().cpu().numpy() if isinstance(cell, torch.Tensor) else cell
        c = np.asarray(c, dtype=np.float64)
    if c.shape != (3, 3):
        raise ValueError(f"cell must have shape (3, 3), got {c.shape}")
    if not np.all(np.isfinite(c)):
        raise ValueError("cell contains NaN or infinite values")
    p = np.zeros(3, dtype=bool) if pbc is None else np.asarray(pbc, dtype=bool)
    if p.shape == ():
        p = np.full(3, bool(p))
    if p.shape != (3,):
        raise ValueError(f"pbc must be a bool or three bools, got shape {p.shape}")
    if p.any():
        if np.any(np.linalg.norm(c[p], axis=1) == 0):
            raise ValueError(
                "a periodic direction has a zero cell vector; give the cell or pbc=False"
            )
        if abs(np.linalg.det(c)) < 1e-10 * max(1.0, np.abs(c).max()) ** 3:
            raise ValueError(
                f"the cell is singular (det = {np.linalg.det(c):.3g}); periodic cells need three "
                "independent vectors"
            )
    return pos, num, c, p


def build_graph(
    positions: np.ndarray,
    cell: np.ndarray,
    pbc: np.ndarray,
    cutoff: float,
    *,
    dtype: torch.dtype,
    device: Any = None,
    require_neighbours: bool = True,
) -> Graph:
    """Neighbour list of checked arrays (see :func:`check_structure`) within ``cutoff``.

    Pairs closer than 1e-8 (coincident atoms, or an atom and its own image) are refused, since
    r̂ is undefined there. With ``require_neighbours`` every atom must have a neighbour (an atom
    without one would keep its embedding only; usually the cutoff is too small).
    """
    i, j, S = primitive_neighbor_list(
        "ijS", pbc, cell, positions, float(cutoff), self_interaction=False
    )
    n = positions.shape[0]
    if len(i):
        dist = np.linalg.norm(positions[j] - positions[i] + S @ cell, axis=1)
        if dist.min() < 1e-8:
            k = int(np.argmin(dist))
            raise ValueError(
                f"atoms {int(i[k])} and {int(j[k])} (or an image) coincide; r̂ is undefined there"
            )
    if require_neighbours:
        lonely = np.setdiff1d(np.arange(n), i)
        if lonely.size:
            raise ValueError(
                f"atom {int(lonely[0])} has no neighbour within cutoff {cutoff} "
                f"({lonely.size} such atom(s)); increase the cutoff or remove isolated atoms"
            )
    as_long = {"dtype": torch.int64, "device": device}
    return Graph(
        dst=torch.as_tensor(i, **as_long),
        src=torch.as_tensor(j, **as_long),
        shifts=torch.as_tensor(S, dtype=dtype, device=device),
        n_atoms=n,
    )


def average_neighbors(configs: Any, cutoff: float) -> float:
    """Mean number of neighbours within ``cutoff`` per atom over ``configs`` (ase.Atoms-like):
    ``(sum of edges) / (sum of atoms)``, periodic images counted. The data-derived message
    normalisation ``avg_neighbors`` of :class:`~tdn_theory.models.TDNPotential`.
    """
    if not isinstance(cutoff, (int, float)) or not np.isfinite(cutoff) or cutoff <= 0:
        raise ValueError(f"cutoff must be a positive number of Å, got {cutoff!r}")
    edges = atoms_total = 0
    for atoms in configs:
        pos, _, cell, pbc = check_structure(
            atoms.get_positions(), atoms.get_atomic_numbers(), np.asarray(atoms.cell), atoms.pbc
        )
        i = primitive_neighbor_list("i", pbc, cell, pos, float(cutoff), self_interaction=False)
        edges += len(i)
        atoms_total += len(pos)
    if atoms_total == 0:
        raise ValueError("average_neighbors needs at least one configuration")
    return edges / atoms_total
