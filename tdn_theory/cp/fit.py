"""Multi-start CP fitting: tensorly ALS restarts, then a Levenberg–Marquardt polish.

fit_cp(T, R) looks for factors A (d3, R), B (d1, R), C (d2, R) minimising

    ||T - einsum("kr,ir,jr->kij", A, B, C)||_F / ||T||_F,

T indexed [k, i, j] = [output, input 1, input 2] (proofs/conventions.md, section 5). The procedure:

1. T is scaled to unit Frobenius norm (the result is scaled back into A).
2. `restarts` starts, each from its own child seed of `seed`: an HOSVD start (leading left
   singular vectors of each unfolding; columns beyond the unfolding's size are Gaussian) and
   Gaussian random starts. Each start runs tensorly's `parafac` (numpy backend, float64,
   line search on) in stages whose ridge (l2_reg) is annealed to zero: the ridge keeps
   nearly collinear, diverging components ("degeneracies") bounded early on, the last stage
   is plain least squares.
3. Small problems ((d1 + d2 + d3) R <= polish.DENSE_LIMIT unknowns, where a dense
   Levenberg–Marquardt step is cheap): the best 3 ALS results are each polished with
   Levenberg–Marquardt on all factors (tdn_theory.cp.polish); different starts end in
   different basins, and LM from the second- or third-best start often wins.
   Larger problems: the best start first continues with ALS until it stalls (cheap per
   iteration, effective in the slow "swamps" of these tensors), then LM polishes it.
4. The best factors seen in any phase are returned.

The result is deterministic for a given seed as long as the time budget does not cut a
stage short (a budget makes the amount of work depend on the machine's speed).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np
import tensorly as tl
from tensorly.cp_tensor import CPTensor
from tensorly.decomposition import parafac

from tdn_theory._checks import check_int

from .fit_result import CPFit
from .polish import DENSE_LIMIT, levenberg_marquardt
from .tensor_ops import check_rank, check_target, cp_to_tensor, relative_error, unfold

__all__ = ["CPFit", "fit_cp", "INIT_METHODS"]

INIT_METHODS = ("mixed", "svd", "random")
RIDGE_SCHEDULE = (1.0, 0.1, 0.01, 0.0)  # multiples of `ridge`, one ALS stage each
REFINE_ITER = 5000  # default ALS continuation of the best start (larger problems)
SMALL_POLISH_STARTS = 3  # starts polished by LM on small problems
SINGULAR_RIDGE = 1e-10  # ridge used to repeat a stage whose normal matrix was singular
RIDGE_STAGE_FRACTION = 0.1  # share of max_iter spent in each ridged stage (the rest: ridge 0)

ProgressCallback = Callable[[str, int, int, float], None]


def _hosvd_start(T: np.ndarray, rank: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Leading left singular vectors of each unfolding; first mode scaled by singular values."""
    factors = []
    for mode in range(3):
        unfolding = unfold(T, mode)
        U, s, _ = np.linalg.svd(unfolding, full_matrices=False)
        k = min(rank, U.shape[1])
        F = U[:, :k]
        if mode == 0:
            F = F * s[:k]
        if k < rank:
            scale = float(np.mean(np.abs(F))) if F.size else 1.0
            extra = rng.standard_normal((T.shape[mode], rank - k)) * scale
            F = np.concatenate([F, extra], axis=1)
        factors.append(F)
    return factors


def _random_start(T: np.ndarray, rank: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Gaussian factors scaled so that the CP tensor has roughly the norm of T."""
    factors = [rng.standard_normal((n, rank)) for n in T.shape]
    approx_norm = np.sqrt(rank * T.shape[0] * T.shape[1] * T.shape[2])
    scale = (np.linalg.norm(T) / approx_norm) ** (1.0 / 3.0)
    return [F * scale for F in factors]


def parafac_from(
    T: np.ndarray,
    factors: list[np.ndarray],
    n_iter: int,
    *,
    tol: float = 1e-300,
    l2_reg: float = 0.0,
    callback: Callable | None = None,
) -> list[np.ndarray]:
    """tensorly's ``parafac`` (ALS with line search, no normalisation) started from ``factors``.

    ``factors`` are ``[A, B, C]`` with the weights folded into ``A`` (unit weights are passed to
    tensorly); the result comes back the same way. ``tol`` is tensorly's stopping tolerance (a
    positive value is needed for tensorly to report errors to ``callback``); ``l2_reg`` its ridge.
    """
    rank = factors[0].shape[1]
    weights, fs = parafac(
        T,
        int(rank),
        n_iter_max=int(n_iter),
        init=CPTensor((np.ones(rank), factors)),
        tol=tol,
        l2_reg=l2_reg,
        linesearch=True,
        normalize_factors=False,
        callback=callback,
    )
    fs = [np.asarray(F, dtype=np.float64) for F in fs]
    fs[0] = fs[0] * np.asarray(weights, dtype=np.float64)[None, :]
    return fs


def _als(
    T: np.ndarray,
    factors: list[np.ndarray],
    *,
    max_iter: int,
    tol: float,
    ridge: float,
    deadline: float | None,
    stall_window: int = 0,
    stall_rtol: float = 0.0,
) -> tuple[list[np.ndarray], int, str]:
    """tensorly parafac with line search, ridge annealed along RIDGE_SCHEDULE; T has norm 1.

    Returns (factors, iterations, reason). With stall_window > 0 the last (ridge-free) stage
    also stops when the error improved by less than a factor (1 - stall_rtol) over the last
    stall_window iterations (ALS in a "swamp").
    """
    iterations = 0
    stage_iters = max(1, int(RIDGE_STAGE_FRACTION * max_iter))
    state = {"reason": "max_iter", "errors": [], "watch": False}

    def callback(_cp, err):
        nonlocal iterations
        iterations += 1
        if deadline is not None and time.perf_counter() > deadline:
            state["reason"] = "time_budget"
            return True
        if state["watch"]:
            errors = state["errors"]
            errors.append(float(err))
            if len(errors) > stall_window and err > (1.0 - stall_rtol) * errors[-1 - stall_window]:
                state["reason"] = "stalled"
                return True
        return False

    schedule = [m * ridge for m in RIDGE_SCHEDULE] if ridge > 0 else [0.0]
    for stage, l2 in enumerate(schedule):
        last = stage == len(schedule) - 1
        n_iter = max_iter - stage_iters * (len(schedule) - 1) if last else stage_iters
        if n_iter <= 0:
            continue
        state["watch"] = last and stall_window > 0
        fs = None
        # a ridge-free stage can meet a singular normal matrix (e.g. a column that collapsed
        # to zero); it is then repeated from its start with a tiny ridge
        for l2_try in (float(l2), max(float(l2), SINGULAR_RIDGE)):
            try:
                fs = parafac_from(
                    T,
                    factors,
                    n_iter,
                    tol=(tol if last else 0.0) or 1e-300,  # tensorly reports errors if tol > 0
                    l2_reg=l2_try,
                    callback=callback,
                )
                break
            except np.linalg.LinAlgError:
                continue
        if fs is None:
            state["reason"] = "singular"
            break
        factors = fs
        iterations -= 1  # parafac calls the callback once before its first iteration
        if state["reason"] != "max_iter":
            break
    if state["reason"] == "max_iter" and iterations < max_iter:
        state["reason"] = "tol"
    return factors, iterations, state["reason"]


def fit_cp(
    T: np.ndarray,
    rank: int,
    *,
    restarts: int = 8,
    seed: int = 0,
    max_iter: int = 300,
    tol: float = 1e-12,
    init: str = "mixed",
    ridge: float = 1e-3,
    refine_iter: int | None = None,
    polish: bool = True,
    polish_starts: int | None = None,
    polish_iter: int = 300,
    time_budget: float | None = None,
    phase_fractions: tuple[float, float] = (0.3, 0.7),
    progress: ProgressCallback | None = None,
) -> CPFit:
    """Fit a rank-`rank` CP decomposition to the 3-way tensor T (indexed [k, i, j]).

    Phases: (1) `restarts` ALS starts of `max_iter` iterations each (ridge annealed to zero);
    (2) the best start continues with ALS for up to `refine_iter` iterations, stopping early
    when it stalls (relative gain < 1e-4 over 250 iterations); (3) Levenberg–Marquardt polish
    of the best `polish_starts` results for up to `polish_iter` iterations each. The best
    factors seen are returned (the error never increases from phase to phase).

    Parameters
    ----------
    T : (d3, d1, d2) real array, finite, not zero.
    rank : int >= 1 (a float is refused: tensorly would read it as a fraction).
    restarts : number of ALS starts (>= 1).
    seed : int >= 0; every random draw derives from it (np.random.SeedSequence(seed).spawn).
    max_iter : ALS iterations per start (over all ridge stages).
    tol : an ALS start stops when its relative error changes by less than `tol`.
    init : "mixed" (first start HOSVD, the rest Gaussian), "svd" (HOSVD for every start,
        Gaussian only in the columns beyond an unfolding's size) or "random".
    ridge : initial ridge (l2_reg) on the unit-norm problem, annealed to zero (0 disables).
    refine_iter : ALS iterations for the continuation of the best start (0 skips it).
        None: 0 for small problems (see the module docstring), else REFINE_ITER.
    polish : run the Levenberg–Marquardt polish.
    polish_starts : how many of the best ALS results are polished. None: 3 for small
        problems, else 1.
    polish_iter : maximal Levenberg–Marquardt iterations per polished start.
    time_budget : seconds for the whole fit or None (no limit). Phase 1 ends at
        phase_fractions[0] * time_budget, phase 2 at phase_fractions[1] * time_budget, the
        polish uses the rest. At least one ALS start always runs.
    progress : optional callback(stage, done, total, relative_error) with stage "restart"
        (after each ALS start), "refine" (after the ALS continuation) or "polish" (after each
        Levenberg–Marquardt iteration).

    Returns
    -------
    CPFit with the best factors found (A carries the scale of T).
    """
    start_time = time.perf_counter()
    T = check_target(T, who="fit_cp")
    rank = check_rank(rank, who="fit_cp")
    restarts = check_int(restarts, "restarts", minimum=1, who="fit_cp")
    max_iter = check_int(max_iter, "max_iter", minimum=1, who="fit_cp")
    small = sum(T.shape) * rank <= DENSE_LIMIT
    if refine_iter is None:
        refine_iter = 0 if small else REFINE_ITER
    if polish_starts is None:
        polish_starts = SMALL_POLISH_STARTS if small else 1
    refine_iter = check_int(refine_iter, "refine_iter", who="fit_cp")
    polish_starts = check_int(polish_starts, "polish_starts", minimum=1, who="fit_cp")
    polish_iter = check_int(polish_iter, "polish_iter", who="fit_cp")
    seed = check_int(seed, "seed", who="fit_cp")
    if init not in INIT_METHODS:
        raise ValueError(f"fit_cp: init must be one of {INIT_METHODS}, got {init!r}")
    if not (np.isfinite(ridge) and ridge >= 0):
        raise ValueError(f"fit_cp: ridge must be a finite number >= 0, got {ridge!r}")
    if not (np.isfinite(tol) and tol >= 0):
        raise ValueError(f"fit_cp: tol must be a finite number >= 0, got {tol!r}")
    if time_budget is not None and not (np.isfinite(time_budget) and time_budget > 0):
        raise ValueError(
            f"fit_cp: time_budget must be a positive number of seconds or None, got {time_budget!r}"
        )
    f1, f2 = phase_fractions
    if not 0 < f1 <= f2 <= 1:
        raise ValueError(
            f"fit_cp: phase_fractions must satisfy 0 < f1 <= f2 <= 1, got {phase_fractions}"
        )

    tl.set_backend("numpy")
    norm = float(np.linalg.norm(T))
    Tn = T / norm
    # Children are spawned one at a time (spawn(1) n times gives the same children as spawn(n)),
    # so a huge `restarts` with a time budget costs nothing before the budget ends the loop.
    root_seed = np.random.SeedSequence(seed)

    def deadline(fraction: float) -> float | None:
        return None if time_budget is None else start_time + fraction * time_budget

    history: list[dict[str, Any]] = []
    candidates: list[tuple[float, list[np.ndarray]]] = []

    # phase 1: multi-start ALS
    for index in range(restarts):
        if index > 0 and time_budget is not None and time.perf_counter() > deadline(f1):
            break
        (child,) = root_seed.spawn(1)
        t0 = time.perf_counter()
        rng = np.random.default_rng(child)
        use_svd = init == "svd" or (init == "mixed" and index == 0)
        factors0 = _hosvd_start(Tn, rank, rng) if use_svd else _random_start(Tn, rank, rng)
        factors, iters, reason = _als(
            Tn, factors0, max_iter=max_iter, tol=tol, ridge=ridge, deadline=deadline(f1)
        )
        err = relative_error(Tn, cp_to_tensor(*factors))
        if not np.isfinite(err):  # a diverged start never wins
            err = float("inf")
        candidates.append((err, factors))
        history.append(
            {
                "stage": "als",
                "restart": index,
                "init": "svd" if use_svd else "random",
                "spawn_key": list(child.spawn_key),
                "iterations": int(iters),
                "relative_error": float(err),
                "reason": reason,
                "seconds": time.perf_counter() - t0,
            }
        )
        if progress is not None:
            progress("restart", index + 1, restarts, float(err))
    candidates.sort(key=lambda c: c[0])

    # phase 2: continue the best start with ALS until it stalls
    if refine_iter > 0 and candidates[0][0] > 1e-15:
        t0 = time.perf_counter()
        err0, factors0 = candidates[0]
        factors, iters, reason = _als(
            Tn,
            factors0,
            max_iter=refine_iter,
            tol=tol,
            ridge=0.0,
            deadline=deadline(f2),
            stall_window=250,
            stall_rtol=1e-4,
        )
        err = relative_error(Tn, cp_to_tensor(*factors))
        history.append(
            {
                "stage": "refine",
                "iterations": int(iters),
                "relative_error_before": float(err0),
                "relative_error": float(err),
                "reason": reason,
                "seconds": time.perf_counter() - t0,
            }
        )
        if progress is not None:
            progress("refine", int(iters), refine_iter, float(err))
        if err < err0:
            candidates[0] = (err, factors)

    # phase 3: Levenberg–Marquardt polish
    best_err, best = candidates[0]
    if polish and polish_iter > 0:
        to_polish = candidates[:polish_starts]
        for order, (err0, factors) in enumerate(to_polish):
            remaining = None
            if time_budget is not None:
                left = time_budget - (time.perf_counter() - start_time)
                if left <= 0 and order > 0:
                    break
                remaining = max(left / (len(to_polish) - order), 0.0)
            callback = None
            if progress is not None:

                def callback(i, e, _progress=progress):
                    _progress("polish", i, polish_iter, float(e))

            res = levenberg_marquardt(
                Tn,
                *factors,
                max_iter=polish_iter,
                time_budget=remaining,
                callback=callback,
                normalize=False,
            )
            lm = res.history[0]
            err = relative_error(Tn, cp_to_tensor(res.A, res.B, res.C))
            history.append(
                {
                    "stage": "polish",
                    "start": order,
                    "iterations": int(lm["iterations"]),
                    "relative_error_before": float(err0),
                    "relative_error": float(err),
                    "reason": lm["reason"],
                    "seconds": res.seconds,
                }
            )
            if err < best_err:
                best_err, best = err, [res.A, res.B, res.C]

    A, B, C = (np.ascontiguousarray(F, dtype=np.float64) for F in best)
    A = A * norm
    return CPFit(
        A=A,
        B=B,
        C=C,
        relative_error=relative_error(T, cp_to_tensor(A, B, C)),
        history=history,
        seed=seed,
        seconds=time.perf_counter() - start_time,
    )
