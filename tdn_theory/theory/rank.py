"""CP rank of the CG tensor: certified lower bounds and demonstrated upper bounds (one import).

Lower bounds (``rank_lower``): flattening ranks and Koszul–Young flattenings, each counted from
singular values with a stated tolerance and a rounding certificate. Upper bounds
(``rank_upper``): the smallest rank at which a fit is exact to 1e-10 (bisection over the
fitting engine), and the exact scaled-sphere construction. The atlas that tabulates both for
L = 1..6 is ``experiments/rank_atlas.py``; proofs in ``proofs/rank_bounds.md``.
"""

from tdn_theory.theory.rank_lower import (
    DEFAULT_RTOL,
    LowerBound,
    NumericalRank,
    best_lower_bound,
    flattening_bound,
    flattening_ranks,
    koszul_young_bound,
    koszul_young_matrix,
    lower_bounds,
    numerical_rank,
)
from tdn_theory.theory.rank_upper import (
    EXACT_RTOL,
    RankAttempt,
    ScaledSphereCP,
    confirm_exact,
    scaled_sphere_cp,
    search_exact_rank,
    try_rank,
)

__all__ = [
    "DEFAULT_RTOL",
    "EXACT_RTOL",
    "LowerBound",
    "NumericalRank",
    "RankAttempt",
    "ScaledSphereCP",
    "best_lower_bound",
    "confirm_exact",
    "flattening_bound",
    "flattening_ranks",
    "koszul_young_bound",
    "koszul_young_matrix",
    "lower_bounds",
    "numerical_rank",
    "scaled_sphere_cp",
    "search_exact_rank",
    "try_rank",
]
