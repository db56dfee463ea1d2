"""The paper's statements as executable checks: equivariance bounds, universality, weight sharing.

Modules: ``equivariance`` (errors, Thm 3.1 / a-posteriori bounds, exact Haar average, adversarial
search, ``check_fit``), ``universality`` (Thm 3.2's constructive exact CP, random equivariant maps,
rank study), ``weight_sharing`` (path-weight sharing with one W for all paths).
"""

from tdn_theory.theory.equivariance import (
    aposteriori_bound,
    check_fit,
    equivariance_error,
    haar_mean_square,
    hosvd_cp,
    sample_equivariance_errors,
    thm31_bound,
    thm31_equivariance_bound,
    worst_case_equivariance_error,
)

__all__ = [
    "aposteriori_bound",
    "check_fit",
    "equivariance_error",
    "haar_mean_square",
    "hosvd_cp",
    "sample_equivariance_errors",
    "thm31_bound",
    "thm31_equivariance_bound",
    "worst_case_equivariance_error",
]
