"""The paper's statements as executable checks: equivariance bounds, universality, weight sharing.

Modules: ``measurements`` (equivariance errors: sampled, exact Haar average, adversarial search),
``bounds`` (Thm 3.1 / a-posteriori bounds), ``equivariance`` (the one-call report ``check_fit``;
it re-exports the two former ones), ``universality`` (Thm 3.2's constructive exact CP, random equivariant maps,
rank study), ``weight_sharing`` (path-weight sharing with one W for all paths), ``rank_lower``
(certified lower bounds on the CP rank: flattening ranks and Koszul–Young flattenings, counted from
singular values with a stated tolerance and a rounding certificate), ``rank_upper`` (demonstrated
upper bounds: the smallest rank at which a fit is exact, and the exact scaled-sphere construction;
the atlas is ``experiments/rank_atlas.py``, proofs in ``proofs/rank_bounds.md``),
``network`` (how tensor-product errors propagate through a message-passing network: ``network_bound``).
"""

from tdn_theory.theory.bounds import (
    aposteriori_bound,
    hosvd_cp,
    thm31_bound,
    thm31_equivariance_bound,
)
from tdn_theory.theory.equivariance import FitCheck, check_fit
from tdn_theory.theory.measurements import (
    equivariance_error,
    haar_mean_square,
    sample_equivariance_errors,
    worst_case_equivariance_error,
)
from tdn_theory.theory.network import network_bound, tensor_product_constants
from tdn_theory.theory.rank_lower import (
    best_lower_bound,
    flattening_bound,
    koszul_young_bound,
    lower_bounds,
)
from tdn_theory.theory.rank_upper import scaled_sphere_cp, search_exact_rank, try_rank
from tdn_theory.theory.universality import (
    constructive_cp,
    equivariant_map,
    path_coefficients,
    random_equivariant_map,
    rank_scan,
)
from tdn_theory.theory.weight_sharing import (
    shared_weight_product,
    weight_sharing_bound,
    weight_sharing_equivariance_error,
)

__all__ = [
    "FitCheck",
    "aposteriori_bound",
    "best_lower_bound",
    "flattening_bound",
    "koszul_young_bound",
    "lower_bounds",
    "network_bound",
    "scaled_sphere_cp",
    "search_exact_rank",
    "try_rank",
    "check_fit",
    "constructive_cp",
    "equivariance_error",
    "equivariant_map",
    "haar_mean_square",
    "hosvd_cp",
    "path_coefficients",
    "random_equivariant_map",
    "rank_scan",
    "sample_equivariance_errors",
    "shared_weight_product",
    "tensor_product_constants",
    "thm31_bound",
    "thm31_equivariance_bound",
    "weight_sharing_bound",
    "weight_sharing_equivariance_error",
    "worst_case_equivariance_error",
]
