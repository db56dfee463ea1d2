"""CP (CANDECOMP/PARAFAC) decompositions of 3-way tensors: fitting, bounds, factor files.

Convention (proofs/conventions.md, section 5): T[k, i, j] ≈ sum_r A[k, r] B[i, r] C[j, r], A the output
factor (d3, R), B the input-1 factor (d1, R), C the input-2 factor (d2, R), weights folded in.
"""

from .compress import compress_exact
from .factor_files import FactorFileError, load_factors, save_factors
from .fit import CPFit, fit_cp
from .lower_bound import error_lower_bound, rank_lower_bound, unfolding_singular_values
from .polish import levenberg_marquardt
from .quadrature import sphere_cp, sphere_rule
from .store import (
    FitKey,
    FitStore,
    FitStoreError,
    available,
    best_fit,
    best_known,
    smallest_exact_rank,
)
from .tensor_ops import EXACT_RTOL, cp_to_tensor, relative_error

__all__ = [
    "EXACT_RTOL",
    "CPFit",
    "FitKey",
    "FitStore",
    "FitStoreError",
    "available",
    "best_fit",
    "best_known",
    "compress_exact",
    "error_lower_bound",
    "FactorFileError",
    "cp_to_tensor",
    "fit_cp",
    "levenberg_marquardt",
    "load_factors",
    "rank_lower_bound",  # deprecated alias of error_lower_bound
    "relative_error",
    "save_factors",
    "sphere_cp",
    "sphere_rule",
    "unfolding_singular_values",
    "smallest_exact_rank",
]
