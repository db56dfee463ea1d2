r"""Virial and stress of a potential by autograd through a homogeneous strain.

A symmetric strain ``eps`` (3 x 3) deforms every Cartesian row vector ``x`` as ``x -> x (I + eps)``:
the positions (N, 3), the cell rows (3, 3) and hence every edge vector ``r_e = x_j - x_i + S_e cell``.
With ``E(eps)`` the energy of the deformed structure,

    virial   W_ab     = -dE/d eps_ab            at eps = 0  (eV, any cell, periodic or not),
    stress   sigma_ab = (1/V) dE/d eps_ab = -W_ab / V       (eV/Å^3, V = |det cell|),

ASE's sign convention (``Atoms.get_stress``): a compressed crystal that pushes outwards has negative
stress. ``eps`` is symmetrised before it is applied (``(eps + eps^T)/2``), so ``W`` and ``sigma`` are
symmetric and hold no rotation part. The volume is defined only for a periodic structure (its cell
then has three independent vectors, see :func:`~tdn_theory.models.graph.check_structure`); the stress
of a non-periodic structure raises :class:`StressUndefinedError`. Voigt order ``xx, yy, zz, yz, xz, xy``.

Training data may give the virial instead of the stress (extended-XYZ ``REF_virials``, MACE's
convention ``W = -sigma V``); :func:`stress_from_virial` converts.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

__all__ = [
    "StressUndefinedError",
    "apply_strain",
    "has_volume",
    "energy_forces_stress",
    "stress_equivariance",
    "stress_from_virial",
    "symmetric_strain",
    "to_voigt",
    "voigt_to_matrix",
]

_VOIGT = ((0, 0), (1, 1), (2, 2), (1, 2), (0, 2), (0, 1))


class StressUndefinedError(ValueError):
    """The stress of a structure without a volume (no periodic direction) was asked for."""


def symmetric_strain(n: int = 1, *, dtype: torch.dtype, device: Any = None):
    """A zero strain leaf ``eps`` (n, 3, 3) that requires grad, and its symmetric part."""
    eps = torch.zeros(n, 3, 3, dtype=dtype, device=device, requires_grad=True)
    return eps, 0.5 * (eps + eps.transpose(1, 2))


def apply_strain(vectors: torch.Tensor, strain: torch.Tensor) -> torch.Tensor:
    """``x (I + strain)`` for row vectors ``vectors`` (..., 3) and a strain (3, 3) or per row (..., 3, 3)."""
    if strain.dim() == 2:
        return vectors + vectors @ strain
    return vectors + torch.einsum("na,nab->nb", vectors, strain)


def has_volume(cell: Any, pbc: Any) -> bool:
    """True for a structure with a periodic direction and a cell of nonzero volume."""
    c = np.asarray(cell, dtype=np.float64)
    return bool(np.any(pbc)) and c.shape == (3, 3) and abs(np.linalg.det(c)) > 1e-10


def volume(cell: np.ndarray, pbc: np.ndarray) -> float:
    """``|det cell|`` of a periodic structure; StressUndefinedError for a non-periodic one or a
    cell without volume (e.g. a slab whose non-periodic cell vector is zero)."""
    if not has_volume(cell, pbc):
        raise StressUndefinedError(
            "stress needs a periodic structure with a cell of nonzero volume (pbc with at least "
            "one True and three independent cell vectors); without a volume only the virial is "
            "defined"
        )
    return float(abs(np.linalg.det(np.asarray(cell, dtype=np.float64))))


def energy_forces_stress(
    model, positions: Any, numbers: Any, cell: Any = None, pbc: Any = None, *, virial: bool = False
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Energy (0-d), forces ``-dE/dx`` (N, 3) and the stress (3, 3) (or with ``virial`` the virial)
    of one structure for a :class:`~tdn_theory.models.TDNPotential`, by one backward pass.

    The stress is ``(1/V) dE/d eps`` in eV/Å^3 (ASE's sign); StressUndefinedError for a
    non-periodic structure unless ``virial`` (the virial ``-dE/d eps`` in eV is defined for any
    structure). Detached results, in the dtype of the prepared positions (float64 for arrays).
    """
    pos, cell_t, species, graph = model.prepare(positions, numbers, cell, pbc)
    pbc_np = np.broadcast_to(np.asarray(False if pbc is None else pbc, dtype=bool), (3,))
    cell_np = cell_t.detach().cpu().numpy()
    V = None if virial else volume(cell_np, pbc_np)
    pos = pos.detach().requires_grad_(True)
    # the strain in the positions' dtype (float64 for arrays: edge vectors are float64 differences)
    eps, sym = symmetric_strain(1, dtype=pos.dtype, device=model.device)
    out = model.evaluate(
        apply_strain(pos, sym[0]),
        apply_strain(cell_t.detach().to(pos.dtype), sym[0]),
        species,
        graph,
    )
    grad_pos, grad_eps = torch.autograd.grad(out["energy"], (pos, eps))
    dE_deps = grad_eps[0].detach()
    third = -dE_deps if virial else dE_deps / V
    return out["energy"].detach(), -grad_pos.detach(), third


def stress_from_virial(virial: Any, cell: Any) -> np.ndarray:
    """``sigma = -W / V`` (3, 3) from a virial given as 3 x 3, 9 values (row-major) or Voigt 6."""
    W = voigt_to_matrix(virial)
    V = abs(np.linalg.det(np.asarray(cell, dtype=np.float64)))
    if not V > 0:
        raise StressUndefinedError("a virial converts to a stress only for a cell with a volume")
    return -W / V


def voigt_to_matrix(values: Any) -> np.ndarray:
    """A symmetric 3 x 3 from Voigt 6 (xx, yy, zz, yz, xz, xy), 9 values or 3 x 3; ValueError else."""
    a = np.asarray(values, dtype=np.float64)
    if a.shape == (6,):
        m = np.empty((3, 3))
        for k, (i, j) in enumerate(_VOIGT):
            m[i, j] = m[j, i] = a[k]
        return m
    if a.shape in ((9,), (3, 3)):
        return a.reshape(3, 3).copy()
    raise ValueError(f"a stress or virial needs 6 (Voigt), 9 or 3 x 3 values, got shape {a.shape}")


def to_voigt(matrix: Any) -> np.ndarray:
    """Voigt 6 (xx, yy, zz, yz, xz, xy) of a 3 x 3 (upper triangle)."""
    m = np.asarray(matrix, dtype=np.float64)
    return np.array([m[i, j] for i, j in _VOIGT])


def stress_equivariance(model, configs, *, rotations: int = 8, seed: int = 0) -> dict[str, float]:
    """``|sigma(R x, R cell) - R sigma(x) R^T|_F / |sigma(x)|_F``, mean and largest over ``rotations``
    Haar rotations (``scipy`` ``Rotation.random`` with ``seed``) and the periodic ``configs``
    (rotating positions and cell rows as ``x -> x R^T``). Empty dict when no config is periodic.
    """
    from scipy.spatial.transform import Rotation

    haar = Rotation.random(rotations, random_state=seed).as_matrix()
    values = []
    for atoms in configs:
        if not np.any(atoms.pbc):
            continue
        pos, cell, numbers = (
            atoms.get_positions(),
            np.asarray(atoms.cell),
            atoms.get_atomic_numbers(),
        )
        sigma = energy_forces_stress(model, pos, numbers, cell, atoms.pbc)[2].double().cpu().numpy()
        for R in haar:
            rotated = energy_forces_stress(model, pos @ R.T, numbers, cell @ R.T, atoms.pbc)[2]
            rotated = rotated.double().cpu().numpy()
            values.append(np.linalg.norm(rotated - R @ sigma @ R.T) / np.linalg.norm(sigma))
    if not values:
        return {}
    return {
        "stress_equivariance_mean": float(np.mean(values)),
        "stress_equivariance_max_found": float(np.max(values)),
    }
