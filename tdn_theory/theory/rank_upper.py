"""Upper bounds on the CP rank of a 3-way tensor: exact fits found by search, and constructions.

An upper bound ``rank(T) <= R`` is *demonstrated* by factors A (d3, R), B (d1, R), C (d2, R)
whose reconstruction ``einsum("kr,ir,jr->kij", A, B, C)`` has relative error below
``EXACT_RTOL = 1e-10`` in float64 (tensors indexed ``[k, i, j]``, proofs/conventions.md, section 5). A
float fit that small is not an algebraic proof by itself; it is evidence that the rank-R
variety contains T or passes within 1e-10 ||T|| of it (so the *border* rank is at most R, and
in every case the TDN layer built from those factors is equivariant to 1e-10). Every such
claim in the atlas comes with its factor file, re-checked by ``tests/test_experiments_rank_atlas.py``.

Search (``search_exact_rank``): ranks are tried with the fitting engine
(``tdn_theory.cp.fit_cp``: multi-start ALS, then Levenberg–Marquardt), each with a time
budget; a hit is confirmed by a final Levenberg–Marquardt polish (``confirm_exact``). Above a
hit every larger rank is exact too (add zero columns), so the smallest hit is found by
bisection between the largest rank known to fail in this search and the smallest hit. A miss
is a failure of the search, not a proof that the rank is higher: the result is the smallest
rank *found*, an upper bound.

Construction (``scaled_sphere_cp``): any path weights u, e.g. the "unit" tensor, as a sum of S
degree-scaled copies of the exact sphere-quadrature CP (tdn_theory.cp.quadrature), S the rank
of a CP completion of u / w_sphere on the (L+1)^3 degree grid; exact, rank S_e N_e + 2 S_o N_o.
Proofs and references: ``proofs/rank_bounds.md``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from tdn_theory.cp import (
    EXACT_RTOL,
    CPFit,
    cp_to_tensor,
    fit_cp,
    levenberg_marquardt,
    relative_error,
)

__all__ = [
    "EXACT_RTOL",
    "RankAttempt",
    "ScaledSphereCP",
    "complete_weights",
    "confirm_exact",
    "scaled_sphere_cp",
    "search_exact_rank",
    "try_rank",
    "weight_ratio",
]


@dataclass
class RankAttempt:
    """One fit at one rank: its relative error, whether it counts as exact, and its cost."""

    rank: int
    relative_error: float
    exact: bool
    seconds: float
    seed: int
    restarts: int
    time_budget: float | None
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dictionary."""
        return asdict(self)


def confirm_exact(T: np.ndarray, fit: CPFit, *, max_iter: int = 100) -> CPFit:
    """Final high-precision Levenberg–Marquardt polish (target 1e-16) of a near-exact fit.

    The relative error is recomputed from the factors against T; the better of the input and
    the polished factors is returned.
    """
    T = np.asarray(T, dtype=np.float64)
    res = levenberg_marquardt(T, *fit.factors, max_iter=int(max_iter), target_error=1e-16)
    A, lm = res.A, res.history[0]
    err = relative_error(T, cp_to_tensor(A, res.B, res.C))
    if err <= fit.relative_error:
        history = list(fit.history) + [
            {
                "stage": "confirm",
                "iterations": int(lm["iterations"]),
                "relative_error": float(err),
                "reason": lm["reason"],
            }
        ]
        return CPFit(
            A=A,
            B=res.B,
            C=res.C,
            relative_error=err,
            history=history,
            seed=fit.seed,
            seconds=fit.seconds + res.seconds,
        )
    return fit


def _lm_from_gaussian(
    T: np.ndarray, rank: int, seed: int, max_iter: int, time_budget: float | None
) -> CPFit:
    """Levenberg–Marquardt (the engine's polish) from seeded Gaussian factors of T's scale.

    The factors are drawn for T / ||T||_F (entries scale (R |T|)^(-1/6)), which is the scale the
    polish works at; it is called on that tensor with ``normalize=False`` and A scaled back.
    """
    T = np.asarray(T, dtype=np.float64)
    norm = float(np.linalg.norm(T))
    rng = np.random.default_rng(int(seed))
    scale = (1.0 / np.sqrt(int(rank) * T.size)) ** (1.0 / 3.0)
    F = [rng.standard_normal((n, int(rank))) * scale for n in T.shape]
    res = levenberg_marquardt(
        T / norm, *F, max_iter=int(max_iter), time_budget=time_budget, normalize=False
    )
    A, lm = res.A * norm, res.history[0]
    err = relative_error(T, cp_to_tensor(A, res.B, res.C))
    return CPFit(
        A=A,
        B=res.B,
        C=res.C,
        relative_error=err,
        seed=int(seed),
        seconds=res.seconds,
        history=[
            {
                "stage": "lm-gaussian",
                "seed": int(seed),
                "reason": lm["reason"],
                "iterations": int(lm["iterations"]),
                "relative_error": float(err),
            }
        ],
    )


def try_rank(
    T: np.ndarray,
    rank: int,
    *,
    seed: int = 0,
    restarts: int = 4,
    time_budget: float = 60.0,
    polish_iter: int = 3000,
    exact_rtol: float = EXACT_RTOL,
) -> tuple[CPFit, RankAttempt]:
    """Fit T at `rank`; a fit below 1e-6 is confirmed by confirm_exact (final polish).

    Half the time budget goes to the engine (fit_cp: `restarts` ALS starts, then
    Levenberg–Marquardt); if that is not exact, the rest goes to Levenberg–Marquardt from
    seeded Gaussian starts (seeds 10^6 seed + 1, + 2, ...), which at ranks well above the
    dimensions often converges where ALS swamps. When tensorly's unregularised ALS stage breaks
    on a singular normal matrix (LinAlgError), the whole budget goes to the second method.
    The best fit over all starts is returned.
    """
    if not (np.isfinite(time_budget) and time_budget > 0):
        raise ValueError(f"try_rank: time_budget must be a positive number, got {time_budget!r}")
    start = time.perf_counter()
    notes = []
    best: CPFit | None = None
    try:
        best = fit_cp(
            T,
            int(rank),
            restarts=int(restarts),
            seed=int(seed),
            polish_starts=min(2, int(restarts)),
            polish_iter=int(polish_iter),
            time_budget=0.5 * time_budget,
        )
        notes.append(f"engine {best.relative_error:.1e}")
    except np.linalg.LinAlgError:
        notes.append("engine ALS singular")
    k = 0
    while best is None or best.relative_error >= 1e-6:
        left = time_budget - (time.perf_counter() - start)
        if left <= 0.05 * time_budget and best is not None:
            break
        k += 1
        fit = _lm_from_gaussian(T, int(rank), 10**6 * int(seed) + k, polish_iter, max(left, 1.0))
        notes.append(f"lm#{k} {fit.relative_error:.1e}")
        if best is None or fit.relative_error < best.relative_error:
            best = fit
    if best.relative_error < 1e-6:
        best = confirm_exact(T, best)
    attempt = RankAttempt(
        rank=int(rank),
        relative_error=float(best.relative_error),
        exact=bool(best.relative_error < exact_rtol),
        seconds=time.perf_counter() - start,
        seed=int(seed),
        restarts=int(restarts),
        time_budget=float(time_budget),
        note="; ".join(notes),
    )
    return best, attempt


AttemptFn = Callable[[int], tuple[CPFit | None, RankAttempt]]


def search_exact_rank(
    attempt: AttemptFn,
    *,
    lower: int,
    start: int,
    ceiling: int,
    known: dict[int, RankAttempt] | None = None,
    on_result: Callable[[CPFit | None, RankAttempt], None] | None = None,
    resolution: float = 0.0,
    max_up_steps: int = 2,
) -> tuple[int | None, dict[int, RankAttempt]]:
    """Smallest rank found exact by bisection; returns (rank or None, all attempts by rank).

    attempt(R) fits at rank R. `lower` is a certified lower bound (ranks below it are never
    tried), `start` the first rank tried, `ceiling` the largest rank tried when searching
    upwards, in at most `max_up_steps` steps of +25% after a miss at `start` (a known exact
    construction gives the answer above it). `known` holds attempts
    from an earlier, interrupted run (resuming skips them); `on_result(fit, attempt)` is
    called after each new attempt (to save factors and progress at once). Bisection stops
    once (smallest hit - largest miss below it) <= max(1, resolution * smallest hit).
    """
    tried: dict[int, RankAttempt] = dict(known or {})

    def run(R: int) -> RankAttempt:
        if R not in tried:
            fit, att = attempt(R)
            tried[R] = att
            if on_result is not None:
                on_result(fit, att)
        return tried[R]

    def hits() -> list[int]:
        return sorted(r for r, a in tried.items() if a.exact)

    # 1. Find a hit: from `start` upwards (geometric steps) unless one is known already.
    R = max(int(start), int(lower))
    steps = 0
    while not hits():
        if R > ceiling or steps > max_up_steps:
            return None, tried
        if not run(R).exact:
            R = R + max(1, R // 4)
            steps += 1
    # 2. Bisection between the largest miss below the smallest hit and the smallest hit.
    while True:
        hi = hits()[0]
        misses = [r for r, a in tried.items() if not a.exact and r < hi]
        lo = max(misses) if misses else int(lower) - 1
        if hi - lo <= max(1, int(resolution * hi)):
            return hi, tried
        run((lo + hi) // 2)


# ----------------------------------------------------------------------------------------------
# Exact construction: sums of degree-scaled sphere CPs (any path weights, rank O(N))
# ----------------------------------------------------------------------------------------------
@dataclass
class ScaledSphereCP:
    """Exact CP of cg_tensor(L, normalization, parity) built from scaled sphere quadratures.

    fit : the factors (A, B, C) and their relative error against the target.
    ranks : {"even": S_e, "odd": S_o}, the CP ranks of the completed weight-ratio tensors.
    points : {"even": N_e, "odd": N_o}, quadrature points of each part.
    completion_error : {"even": e, "odd": e}, relative residual of each weight completion.
    """

    fit: CPFit
    ranks: dict[str, int]
    points: dict[str, int]
    completion_error: dict[str, float]


def weight_ratio(L: int, normalization: str, part: str) -> tuple[np.ndarray, np.ndarray]:
    """(W, mask) on the (L+1)^3 degree grid, indexed [l3, l1, l2].

    W = path_weight(normalization) / path_weight("sphere") on the admissible paths of the given
    parity part ("even" or "odd"), 0 elsewhere; mask is 1 exactly on those paths (elsewhere the
    sphere blocks vanish, so any value works there).
    """
    from tdn_theory import so3

    W = np.zeros((L + 1,) * 3)
    mask = np.zeros((L + 1,) * 3)
    for l1, l2, l3 in so3.paths(L, part):
        sphere = so3.path_weight(l1, l2, l3, "sphere")
        if sphere == 0.0:
            raise ValueError(f"weight_ratio: sphere weight of path {(l1, l2, l3)} is zero")
        W[l3, l1, l2] = so3.path_weight(l1, l2, l3, normalization) / sphere
        mask[l3, l1, l2] = 1.0
    return W, mask


def complete_weights(
    W: np.ndarray,
    mask: np.ndarray,
    *,
    max_rank: int = 8,
    restarts: int = 6,
    seed: int = 0,
    rtol: float = 1e-13,
    min_rank: int = 1,
) -> tuple[list[np.ndarray], float]:
    """Smallest-rank CP (a, b, c) with sum_s a_s ⊗ b_s ⊗ c_s = W on the mask; returns
    (factors, relative residual on the mask).

    A CP *completion* of a tiny (L+1)^3 grid (at most a few hundred unknowns): the CP engine has
    no mask, so each rank S = 1, 2, ... is fitted by scipy.optimize.least_squares
    (trust region, exact Jacobian) from `restarts` seeded Gaussian starts. Raises
    ValueError when no rank <= max_rank reaches relative residual < rtol. Ranks below
    `min_rank` are not tried (the result is then the smallest rank >= min_rank found).
    """
    from scipy.optimize import least_squares

    W = np.asarray(W, dtype=np.float64)
    idx = np.nonzero(mask)
    target = W[idx]
    norm = float(np.linalg.norm(target))
    dims = W.shape
    rng = np.random.default_rng(int(seed))
    best_err = np.inf
    for S in range(max(1, int(min_rank)), int(max_rank) + 1):
        sizes = [n * S for n in dims]

        def split(x, S=S, sizes=sizes):
            out, pos = [], 0
            for n, size in zip(dims, sizes, strict=True):
                out.append(x[pos : pos + size].reshape(n, S))
                pos += size
            return out

        def residual(x, split=split):
            a, b, c = split(x)
            return (a[idx[0]] * b[idx[1]] * c[idx[2]]).sum(axis=1) - target

        def jacobian(x, split=split, S=S, sizes=sizes):
            a, b, c = split(x)
            rows = np.arange(len(target))
            J = np.zeros((len(target), sum(sizes)))
            offsets = np.cumsum([0, *sizes[:-1]])
            for mode, (G, H) in enumerate(((b, c), (a, c), (a, b))):
                others = [idx[m] for m in range(3) if m != mode]
                vals = G[others[0]] * H[others[1]]  # (n_obs, S)
                for s in range(S):
                    J[rows, offsets[mode] + idx[mode] * S + s] = vals[:, s]
            return J

        for _ in range(int(restarts)):
            x0 = rng.standard_normal(sum(sizes)) * (norm / np.sqrt(len(target))) ** (1 / 3)
            sol = least_squares(
                residual,
                x0,
                jac=jacobian,
                method="trf",
                xtol=1e-15,
                ftol=1e-15,
                gtol=1e-15,
                max_nfev=4000,
            )
            err = float(np.linalg.norm(residual(sol.x))) / norm
            best_err = min(best_err, err)
            if err < rtol:
                return split(sol.x), err
    raise ValueError(
        f"complete_weights: no CP of rank <= {max_rank} matches the weights "
        f"(best residual {best_err:.1e}); raise max_rank"
    )


def scaled_sphere_cp(
    L: int,
    normalization: str = "unit",
    parity: str = "all",
    *,
    seed: int = 0,
    max_rank: int = 8,
    restarts: int = 6,
    min_rank: int = 1,
) -> ScaledSphereCP:
    """Exact CP of cg_tensor(L, normalization, parity) of rank S_e N_e + 2 S_o N_o.

    The sphere CP (tdn_theory.cp.quadrature.sphere_cp) realises the path weights
    w(l1, l2, l3) of the "sphere" normalization, and per-degree scalings (a, b, c) turn them
    into a_{l3} b_{l1} c_{l2} w at the same rank. Writing the wanted weights as
    u = w * sum_{s<S} a_s ⊗ b_s ⊗ c_s on the admissible paths (a CP *completion* of u / w on
    the (L+1)^3 degree grid: only admissible entries are constrained) gives
    T = sum_s sphere_cp(scalings_s): N_e columns per even term, 2 N_o per odd term.
    """
    from tdn_theory import so3
    from tdn_theory.cp.quadrature import sphere_cp

    parts = {"all": ("even", "odd"), "even": ("even",), "odd": ("odd",)}[parity]
    columns, ranks, points, residuals = [], {}, {}, {}
    for part in parts:
        W, mask = weight_ratio(L, normalization, part)
        if not mask.any():
            continue
        (a, b, c), err = complete_weights(
            W, mask, max_rank=max_rank, restarts=restarts, seed=seed, min_rank=min_rank
        )
        ranks[part], residuals[part] = a.shape[1], err
        for s in range(a.shape[1]):
            fit = sphere_cp(L, part, scalings={part: (a[:, s], b[:, s], c[:, s])}, check=False)
            points[part] = int(fit.history[0]["points"])
            columns.append((fit.A, fit.B, fit.C))
    A, B, C = (np.concatenate([col[n] for col in columns], axis=1) for n in range(3))
    T = so3.cg_tensor(L, normalization, parity)
    err = relative_error(T, cp_to_tensor(A, B, C))
    fit = CPFit(
        A=A,
        B=B,
        C=C,
        relative_error=err,
        seed=int(seed),
        history=[{"stage": "scaled-sphere", "ranks": ranks, "points": points}],
    )
    return ScaledSphereCP(fit=fit, ranks=ranks, points=points, completion_error=residuals)
