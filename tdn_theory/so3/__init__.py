"""Exact SO(3) group theory in e3nn's real basis (no torch): CG blocks, CG tensor, Wigner D.

Conventions (``proofs/conventions.md``): degrees ``l = 0..L``,
feature vectors ``[l=0 | ... | l=L]`` of dimension ``d = (L+1)^2``, the CG tensor indexed
``[k (output), i (input 1), j (input 2)]``.
"""

from .cg_tensor import MAX_L, cg_tensor, unit_block
from .clebsch_gordan import complex_cg, real_cg
from .layout import degree_from_dim, degree_of_index, degree_slices, dim
from .normalization import NORMALIZATIONS, gaunt_weight_exact, path_weight
from .paths import PARITIES, paths
from .real_basis import change_of_basis
from .rotations import check_rotation, random_rotations
from .wigner import block_wigner_D, wigner_D

__all__ = [
    "MAX_L",
    "NORMALIZATIONS",
    "PARITIES",
    "block_wigner_D",
    "cg_tensor",
    "change_of_basis",
    "check_rotation",
    "complex_cg",
    "degree_of_index",
    "degree_slices",
    "degree_from_dim",
    "dim",
    "gaunt_weight_exact",
    "path_weight",
    "paths",
    "random_rotations",
    "real_cg",
    "unit_block",
    "wigner_D",
]
