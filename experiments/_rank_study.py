"""Shared pieces of the rank-study scripts (error_vs_rank, rank_schedules, nbody_ranks).

Conventions (proofs/conventions.md): the CG tensor M is indexed [k (output), i (input 1), j (input 2)],
d = (L+1)^2, "unit" normalization unless stated; a rank-R CP approximation has factors A (d x R,
output), B (d x R), C (d x R) and M_hat(x, y) = A ((B^T x) * (C^T y)).

Equivariance error (the figure the scripts report). For a Haar rotation R with block Wigner matrix
D = D(R) and inputs x, y drawn uniformly from the unit sphere of R^d,

    eps_abs(R, x, y) = || M_hat(D x, D y) - D M_hat(x, y) ||_2          (per unit inputs)
    eps_rel(R, x, y) = eps_abs(R, x, y) / || M(x, y) ||_2                  (M the exact CG product)

Both are summarised over N seeded samples (mean, RMS, max); ``haar_rms`` is the exact
(sampling-free) RMS of eps_abs, sqrt(2 ||(I - P) M_hat||_F^2) / d (tdn_theory.theory.haar_mean_square).
The paper's n-body table gives one number per rank without a formula; its values match the relative
Frobenius error ||M - M_hat||_F / ||M||_F of a fit and the relative form eps_rel, which are of the
same size (see experiments/results/nbody_ranks.json), so both are reported.
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np

from tdn_theory.cp import error_lower_bound
from tdn_theory.so3 import cg_tensor, random_rotations
from tdn_theory.testing.equivariance import equivariance_defects, unit_inputs
from tdn_theory.theory import check_fit, thm31_bound
from tdn_theory.theory.universality import constructive_cp

Factors = tuple[np.ndarray, np.ndarray, np.ndarray]

#: The paper's four rank schedules (Fig. 3). log is the natural logarithm; ranks are rounded up.
SCHEDULES: dict[str, Any] = {
    "7L": lambda L: 7 * L,
    "7L^2": lambda L: 7 * L * L,
    "16log^2(L+1)": lambda L: math.ceil(16.0 * math.log(L + 1) ** 2),
    "(L+1)^4": lambda L: (L + 1) ** 4,
}


def paper_and_exact_ranks(L: int) -> dict[str, int | None]:
    """The paper's schedules 7L, ceil(16 ln^2(L+1)), 7L^2 at L (from SCHEDULES) and the smallest
    exact rank in the fit store (tdn_theory.cp.smallest_exact_rank), under the keys the model
    experiments store."""
    from tdn_theory.cp import smallest_exact_rank

    return {
        "7L": SCHEDULES["7L"](L),
        "16ln^2(L+1)": SCHEDULES["16log^2(L+1)"](L),
        "7L^2": SCHEDULES["7L^2"](L),
        "exact": smallest_exact_rank(L),
    }


def bilinear(A: np.ndarray, B: np.ndarray, C: np.ndarray, x: np.ndarray, y: np.ndarray):
    """M_hat(x, y) = A ((B^T x) * (C^T y)) for batches x, y of shape (n, d); returns (n, d)."""
    return ((x @ B) * (y @ C)) @ A.T


def equivariance_samples(
    T: np.ndarray, factors: Factors, n_samples: int, seed: int
) -> dict[str, np.ndarray]:
    """eps_abs and eps_rel (module docstring) at n_samples seeded (R, x, y) draws.

    Draws from np.random.default_rng(seed): rotations first, then x, then y (the same order as
    tdn_theory.theory.sample_equivariance_errors, so eps_abs equals its output for the same seed);
    the defects are tdn_theory.testing.equivariance.equivariance_defects (the sampling code of
    assert_equivariant), whose relative form divides by ||M_hat|| where eps_rel divides by ||M||.
    """
    d = T.shape[0]
    L = math.isqrt(d) - 1
    rng = np.random.default_rng(seed)
    Rs = random_rotations(n_samples, rng)
    X = unit_inputs(rng, (n_samples, d))
    Y = unit_inputs(rng, (n_samples, d))
    A, B, C = factors
    eps_abs, _ = equivariance_defects(lambda x, y: bilinear(A, B, C, x, y), L, Rs, (X, Y))
    exact = np.linalg.norm(np.einsum("kij,ni,nj->nk", T, X, Y), axis=1)
    return {"abs": eps_abs, "rel": eps_abs / exact}


def fit_rank(
    T: np.ndarray, rank: int, *, store: Any, quick: bool = False
) -> tuple[Factors, dict[str, Any]]:
    """The best known rank-`rank` CP of the unit tensor T: from the fit store, or Thm 3.2.

    rank >= d1 d2: tdn_theory.theory.universality.constructive_cp (exact, rank d1 d2, zero columns
    added up to `rank`). Otherwise the store's fit (experiments._common.stored_fit: fitted with
    tdn_theory.cp.best_fit only when the store lacks the key).
    """
    d3, d1, d2 = T.shape
    t0 = time.perf_counter()
    if rank >= d1 * d2:
        A, B, C = constructive_cp(T)
        pad = rank - A.shape[1]
        if pad:
            A, B, C = (np.concatenate([F, np.zeros((F.shape[0], pad))], axis=1) for F in (A, B, C))
        info = {"method": "constructive (Thm 3.2)", "seconds": time.perf_counter() - t0}
        return (A, B, C), info
    from experiments._common import stored_fit

    L = math.isqrt(d3) - 1
    fit, info = stored_fit(L, rank, store, quick=quick)
    return fit.factors, {"method": "fit store", **info, "seconds": time.perf_counter() - t0}


def rank_record(
    T: np.ndarray,
    rank: int,
    *,
    seed: int,
    n_samples: int,
    store: Any = None,
    quick: bool = False,
    factors: Factors | None = None,
    info: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Collect every figure of the rank study for the best known rank-`rank` CP (one JSON row).

    Factors come from fit_rank (the fit store) unless `factors` are given; `info` then
    describes where they come from.
    """
    if factors is None:
        factors, info = fit_rank(T, rank, store=store, quick=quick)
    info = dict(info or {})
    report = check_fit(T, factors, n_rotations=n_samples, seed=seed)
    eps = equivariance_samples(T, factors, n_samples, seed)
    norm = float(np.linalg.norm(T))
    return {
        "rank": int(rank),
        **info,
        "relative_error": report.relative_error,
        "certified_lower_bound": float(error_lower_bound(T, rank)),
        "thm31_relative_bound": float(thm31_bound(T, rank)) / norm,
        "thm31_vacuous": bool(report.thm31_vacuous),
        "aposteriori_spectral": report.aposteriori_spectral,
        "haar_rms": report.haar_rms_error,
        "eps_abs_mean": float(eps["abs"].mean()),
        "eps_abs_max": float(eps["abs"].max()),
        "eps_rel_mean": float(eps["rel"].mean()),
        "eps_rel_median": float(np.median(eps["rel"])),
        "eps_rel_max": float(eps["rel"].max()),
        "n_samples": int(n_samples),
    }


def unit_cg(L: int) -> np.ndarray:
    """The CG tensor of the study: so3.cg_tensor(L, "unit", "all"), shape (d, d, d), [k, i, j]."""
    return cg_tensor(L, normalization="unit", parity="all")


def add_max_L_arg(parser: Any) -> None:
    """--max-L, shared by the scripts that sweep L = 1..max_L (default 6; 3 with --quick)."""
    parser.add_argument("--max-L", type=int, default=None, help="largest L (default 6; quick 3)")


def resolve_max_L(args: Any, parser: Any) -> int:
    """The validated --max-L (1..6), defaulting to 3 with --quick and 6 otherwise."""
    max_L = args.max_L if args.max_L is not None else (3 if args.quick else 6)
    if not 1 <= max_L <= 6:
        parser.error(f"--max-L must lie in 1..6, got {max_L}")
    return max_L


def save_figure(fig: Any, path: Any) -> None:
    """Save a matplotlib figure atomically as PNG (see experiments._io.save_figure_atomic)."""
    from experiments._io import save_figure_atomic

    save_figure_atomic(fig, path, dpi=120, bbox_inches="tight")
