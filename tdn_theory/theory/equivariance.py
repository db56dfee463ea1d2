r"""Equivariance error of a CP-approximated Clebsch–Gordan product, and bounds on it.

Conventions (proofs/conventions.md). A bilinear map on features of degree <= L (d = (L+1)^2) is a
tensor ``T`` of shape (d, d, d) indexed ``[k, i, j] = [output, input 1, input 2]``:

    M_T(x, y)_k = sum_{i,j} T[k, i, j] x_i y_j.

A rank-R CP fit is given by factors ``A`` (d x R, output), ``B`` (d x R), ``C`` (d x R) and

    M_hat(x, y)_k = sum_r A[k, r] (B^T x)_r (C^T y)_r,   T_hat = einsum("kr,ir,jr->kij", A, B, C).

Rotations act by ``D = D(R) = blockdiag_l D^l(R)`` (``tdn_theory.so3.block_wigner_D``). The
*equivariance error* of ``T_hat`` at (R, x, y) is

    eps(R, x, y) = || M_hat(D x, D y) - D M_hat(x, y) ||_2.

The group acts on tensors by
``(rho(R) T)[k, i, j] = sum D[k', k] T[k', i', j'] D[i', i] D[j', j]`` (that is T -> D^T T (D, D));
then ``M_hat(Dx, Dy) - D M_hat(x, y) = D (rho(R) T_hat - T_hat)(x, y)``, so
``eps(R, x, y) = ||(rho(R) T_hat - T_hat)(x, y)||`` and T is equivariant iff rho(R) T = T.

Measurements live in ``tdn_theory.theory.measurements`` and bounds in ``tdn_theory.theory.bounds``
(proofs in proofs/equivariance_bound.md); this module holds the one-call report ``check_fit`` /
``FitCheck`` and re-exports the rest under their former names:

* ``aposteriori_bound``: for E = T_hat - T with T exactly equivariant,
  eps <= 2 ||E_(1)||_2 ||x|| ||y|| <= 2 ||E||_F ||x|| ||y|| (E_(1) the d x d^2 output unfolding).
* ``thm31_bound``: the paper's Theorem 3.1 (a-priori, HOSVD form). It bounds the Frobenius error
  of one specific rank-<=R CP tensor, the HOSVD truncation of T to multilinear rank
  R_T = floor(R^(1/3)) (``hosvd_cp``), not the error of an arbitrary fit.
* ``haar_mean_square``: the exact Haar average
  E_R ||rho(R) T_hat - T_hat||_F^2 = 2 ||(I - P) T_hat||_F^2, P the orthogonal projection onto the
  span of the invariant (path) tensors.
"""

from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

from tdn_theory.cp.lower_bound import absolute_lower_bound
from tdn_theory.cp.tensor_ops import (
    as_factors,
    bilinear,
    cube_degree,
    degree_of,
    is_dense,
    to_dense,
)
from tdn_theory.so3 import (
    degree_from_dim,
)
from tdn_theory.theory.bounds import (
    aposteriori_bound,
    hosvd_cp,
    mode_tail_energies,
    thm31_bound,
    thm31_equivariance_bound,
    thm31_truncation_rank,
)
from tdn_theory.theory.measurements import (
    equivariance_defect_tensor,
    equivariance_error,
    haar_mean_square,
    invariant_path_basis,
    project_invariant,
    sample_equivariance_errors,
    worst_case_equivariance_error,
)

__all__ = [
    "aposteriori_bound",
    "as_factors",
    "bilinear",
    "check_fit",
    "degree_from_dim",
    "degree_of",
    "equivariance_defect_tensor",
    "equivariance_error",
    "FitCheck",
    "haar_mean_square",
    "hosvd_cp",
    "invariant_path_basis",
    "is_dense",
    "mode_tail_energies",
    "project_invariant",
    "sample_equivariance_errors",
    "thm31_bound",
    "thm31_equivariance_bound",
    "thm31_truncation_rank",
    "to_dense",
    "worst_case_equivariance_error",
]


# --------------------------------------------------------------------------------------------
# one-call report for a fit
# --------------------------------------------------------------------------------------------


def _ratio(a: float, b: float) -> float:
    return float(a / b) if b > 0 else float("nan")


#: the optional fields of FitCheck, present only after an adversarial search
_WORST_CASE_EXTRAS = ("worst_case_rotation", "worst_case_x", "worst_case_y")


@dataclass(frozen=True)
class FitCheck:
    """Every equivariance figure of one CP fit of an exactly equivariant tensor (see check_fit).

    All figures are per unit inputs ``||x|| = ||y|| = 1`` where an eps is involved; absolute
    figures are Frobenius norms of tensors indexed ``[k, i, j]``. :meth:`to_dict` gives the
    plain dictionary (the field names as keys; the worst-case rotation and inputs only when an
    adversarial search ran).
    """

    L: int
    d: int
    rank: int
    norm_T: float  #: ||T||_F
    fit_error: float  #: ||E||_F, E = T_hat - T
    relative_error: float  #: ||E||_F / ||T||_F
    lower_bound: float  #: certified lower bound on ||T - T'||_F over every rank-R CP T'
    relative_lower_bound: float  #: lower_bound / ||T||_F
    thm31_rank: int  #: R_T = floor(R^(1/3))
    thm31_bound: float  #: Thm 3.1 a-priori absolute Frobenius bound (HOSVD truncation)
    thm31_equivariance_bound: float  #: 2 * thm31_bound
    thm31_vacuous: bool  #: thm31_bound >= ||T||_F
    hosvd_error: float  #: actual ||T - T_R||_F of that truncation
    aposteriori_spectral: float  #: 2 ||E_(1)||_2
    aposteriori_frobenius: float  #: 2 ||E||_F
    aposteriori_projected: float  #: 2 ||((I - P) E)_(1)||_2
    haar_mean_square: float  #: 2 ||(I - P) T_hat||_F^2
    haar_rms_error: float  #: sqrt(haar_mean_square) / d: exact RMS of eps (Haar R, unit x, y)
    n_rotations: int
    mc_mean_error: float  #: mean eps over n_rotations samples
    mc_rms_error: float
    mc_max_error: float
    worst_case_error: float  #: adversarial search if worst_case else the sampled maximum
    worst_case_method: str
    tightness_spectral: float  #: worst_case_error / aposteriori_spectral
    tightness_frobenius: float  #: worst_case_error / aposteriori_frobenius
    tightness_projected: float  #: worst_case_error / aposteriori_projected
    worst_case_rotation: list | None = None  #: 3x3, with worst_case=True only
    worst_case_x: list | None = None
    worst_case_y: list | None = None

    def to_dict(self) -> dict[str, Any]:
        """The figures as a dictionary, in field order, the worst-case rotation and inputs
        (when present) right after ``worst_case_method``."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            if f.name in _WORST_CASE_EXTRAS:
                continue
            out[f.name] = getattr(self, f.name)
            if f.name == "worst_case_method":
                for extra in _WORST_CASE_EXTRAS:
                    if getattr(self, extra) is not None:
                        out[extra] = getattr(self, extra)
        return out

    def __getitem__(self, key: str) -> Any:
        """Deprecated dictionary access (``check_fit`` returned a dict): use attributes or
        :meth:`to_dict`."""
        warnings.warn(
            "check_fit now returns a FitCheck: use report.<name> or report.to_dict()[name]",
            DeprecationWarning,
            stacklevel=2,
        )
        return self.to_dict()[key]


def check_fit(
    T: np.ndarray,
    factors: Any,
    *,
    n_rotations: int = 100,
    seed: int = 0,
    worst_case: bool = False,
    worst_case_starts: int = 8,
) -> FitCheck:
    """Every equivariance figure for one CP fit of an exactly equivariant tensor T (d, d, d).

    Returns a :class:`FitCheck` (its fields document each figure); ``worst_case=True`` runs the
    adversarial search (:func:`worst_case_equivariance_error`, ``worst_case_starts`` starts) and
    records the rotation and inputs it found, otherwise the worst case is the sampled maximum.
    """
    T = np.asarray(T, dtype=np.float64)
    L = cube_degree(T)
    A, B, C = as_factors(factors)
    if A.shape[0] != T.shape[0]:
        raise ValueError(f"factors have d={A.shape[0]} but T has d={T.shape[0]}")
    rank = int(A.shape[1])
    T_hat = to_dense((A, B, C))
    norm_T = float(np.linalg.norm(T))
    fit_error = float(np.linalg.norm(T_hat - T))
    post = aposteriori_bound(T, T_hat)
    t31 = thm31_bound(T, rank)
    hosvd_err = float(np.linalg.norm(to_dense(hosvd_cp(T, rank)) - T))
    hms = haar_mean_square(T_hat, L)
    errs = sample_equivariance_errors((A, B, C), n_rotations, seed)
    lower = float(absolute_lower_bound(T, rank))
    mc_max = float(errs.max())
    extras: dict[str, Any] = {}
    if worst_case:
        wc = worst_case_equivariance_error(T_hat, starts=worst_case_starts, seed=seed)
        worst, method = wc["value"], f"adversarial search ({worst_case_starts} starts)"
        extras = {
            "worst_case_rotation": np.asarray(wc["rotation"]).tolist(),
            "worst_case_x": np.asarray(wc["x"]).tolist(),
            "worst_case_y": np.asarray(wc["y"]).tolist(),
        }
    else:
        worst, method = mc_max, "max over samples"
    return FitCheck(
        L=L,
        d=int(T.shape[0]),
        rank=rank,
        norm_T=norm_T,
        fit_error=fit_error,
        relative_error=_ratio(fit_error, norm_T),
        lower_bound=lower,
        relative_lower_bound=_ratio(lower, norm_T),
        thm31_rank=thm31_truncation_rank(rank),
        thm31_bound=t31,
        thm31_equivariance_bound=2.0 * t31,
        thm31_vacuous=bool(t31 >= norm_T),
        hosvd_error=hosvd_err,
        aposteriori_spectral=post["spectral"],
        aposteriori_frobenius=post["frobenius"],
        aposteriori_projected=post["projected_spectral"],
        haar_mean_square=hms,
        haar_rms_error=float(np.sqrt(hms)) / T.shape[0],
        n_rotations=int(n_rotations),
        mc_mean_error=float(errs.mean()),
        mc_rms_error=float(np.sqrt(np.mean(errs**2))),
        mc_max_error=mc_max,
        worst_case_error=worst,
        worst_case_method=method,
        tightness_spectral=_ratio(worst, post["spectral"]),
        tightness_frobenius=_ratio(worst, post["frobenius"]),
        tightness_projected=_ratio(worst, post["projected_spectral"]),
        **extras,
    )
