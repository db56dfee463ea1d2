"""Atomic graphs: checked inputs and the neighbour list (periodic images by shift vectors).

An edge ``e = (i, j, S)`` says that atom ``j`` shifted by the lattice vector ``S @ cell``
(``S`` integer, shape (3,)) lies within ``cutoff`` of atom ``i``. The edge vector is

    r_e = positions[j] - positions[i] + S @ cell,

computed in torch from the positions (and cell), so that energies stay differentiable in them; only
the *list* of edges is found with ``ase.neighborlist.primitive_neighbor_list`` on detached numbers.
Messages flow from ``j`` (source) to ``i`` (destination). The difference is taken in float64 and cast
to the model's dtype afterwards: a float32 model far from the origin (absolute coordinates of 1e7 Å)
still sees edge vectors exact to float32 rounding of the edge, not of the position.

A direction that is not periodic may have a zero cell vector (a slab from ``ase.build.fcc111`` has
pbc (T, T, F) and c = 0); the periodic vectors must be linearly independent.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from ase.neighborlist import primitive_neighbor_list

from tdn_theory.models.budget import neighbour_pairs

__all__ = ["Graph", "average_neighbors", "build_graph", "check_structure"]

#: Refuse a neighbour list of more pairs than this (estimated before it is built, from the periodic
#: images each atom sees, :func:`tdn_theory.models.budget.neighbour_pairs`): tens of GB in ASE.
MAX_NEIGHBOUR_PAIRS = 1e9


@dataclass(frozen=True)
class Graph:
    """Edges of one structure: destination ``i`` (receives), source ``j``, integer shifts ``S``."""

    dst: torch.Tensor  # (E,) int64, atom i
    src: torch.Tensor  # (E,) int64, atom j
    shifts: torch.Tensor  # (E, 3) float (positions' dtype), integer values
    n_atoms: int

    def edge_vectors(
        self, positions: torch.Tensor, cell: torch.Tensor, dtype: torch.dtype | None = None
    ) -> torch.Tensor:
        """``r_e = x_j - x_i + S_e @ cell``, shape (E, 3), differentiable in positions and cell.

        Computed in float64 and returned in ``dtype`` (default: the dtype of ``positions``).
        """
        x = positions.double()
        r = x[self.src] - x[self.dst] + self.shifts.double() @ cell.double()
        return r.to(positions.dtype if dtype is None else dtype)


def check_structure(
    positions: Any, numbers: Any, cell: Any = None, pbc: Any = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Validate one structure; return float64 positions (N, 3), int numbers (N,), cell, pbc.

    Raises a one-line ValueError for: positions not (N, 3) or not finite, numbers not (N,)
    integers (chemical symbols are refused with a hint), a cell not (3, 3) or not finite, pbc not
    a bool or 3 bools (a string such as "False" is refused, not read as true), a periodic
    direction whose cell vector is zero, or periodic cell vectors that are linearly dependent.
    Non-periodic directions may have any cell vector, zero included.
    """
    pos = positions.detach().cpu().numpy() if isinstance(positions, torch.Tensor) else positions
    pos = np.asarray(pos, dtype=np.float64)
    if pos.ndim != 2 or pos.shape[1] != 3 or pos.shape[0] < 1:
        raise ValueError(f"positions must have shape (n_atoms, 3), got {pos.shape}")
    if not np.all(np.isfinite(pos)):
        raise ValueError("positions contain NaN or infinite values; pass finite coordinates")
    num = numbers.detach().cpu().numpy() if isinstance(numbers, torch.Tensor) else numbers
    num = np.asarray(num)
    if num.dtype.kind not in "biuf":
        what = "symbols" if num.dtype.kind in "US" else f"dtype {num.dtype}"
        raise ValueError(
            f"numbers must be integer atomic numbers, got {what} {num.ravel()[:3].tolist()}; "
            "convert symbols with ase.data.atomic_numbers"
        )
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
    p = _check_pbc(pbc)
    if p.any():
        if np.any(np.linalg.norm(c[p], axis=1) == 0):
            raise ValueError(
                "a periodic direction has a zero cell vector; give the cell or pbc=False"
            )
        # the periodic vectors must span a k-dimensional lattice (k = number of periodic ones)
        sv = np.linalg.svd(c[p], compute_uv=False)
        if sv.min() < 1e-10 * max(1.0, np.abs(c).max()):
            raise ValueError(
                f"the cell is singular in its periodic directions (smallest singular value "
                f"{sv.min():.3g}); periodic directions need independent cell vectors"
            )
    return pos, num, c, p


def _check_pbc(pbc: Any) -> np.ndarray:
    """pbc as three bools; a bool (or 0/1) or three of them, never a string."""
    if pbc is None:
        return np.zeros(3, dtype=bool)
    raw = pbc.detach().cpu().numpy() if isinstance(pbc, torch.Tensor) else pbc
    arr = np.asarray(raw, dtype=object)
    flat = arr.ravel().tolist()
    ok = arr.shape in ((), (3,)) and all(
        isinstance(v, (bool, np.bool_)) or (isinstance(v, (int, np.integer)) and v in (0, 1))
        for v in flat
    )
    if not ok:
        raise ValueError(
            f"pbc must be a bool or three bools, got {pbc!r}; write pbc=False or pbc=(True, True, False)"
        )
    p = np.asarray([bool(v) for v in flat], dtype=bool)
    return np.full(3, p[0]) if arr.shape == () else p


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
    pairs = neighbour_pairs(positions.shape[0], cell, pbc, float(cutoff))
    if pairs > MAX_NEIGHBOUR_PAIRS:
        raise ValueError(
            f"cutoff {cutoff} Å in this cell gives about {pairs:.3g} neighbour pairs (each atom "
            f"sees its periodic images), more than {MAX_NEIGHBOUR_PAIRS:.0e}; the cell is too small "
            "for the cutoff (or the cutoff too large)"
        )
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
        graph = build_graph(
            pos, cell, pbc, float(cutoff), dtype=torch.float64, require_neighbours=False
        )
        edges += int(graph.dst.numel())
        atoms_total += len(pos)
    if atoms_total == 0:
        raise ValueError("average_neighbors needs at least one configuration")
    return edges / atoms_total
