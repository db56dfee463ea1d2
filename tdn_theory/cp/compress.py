"""Compressing an exact CP decomposition: search for exact decompositions of smaller rank.

Start: exact factors ``A (d3, R), B (d1, R), C (d2, R)`` of ``T[k, i, j]`` (for example the
quadrature construction of :mod:`tdn_theory.cp.quadrature`). Greedy deflation:

1. balance the columns (``||A[:, r]|| = ||B[:, r]|| = ||C[:, r]||``) and order them by the size
   ``||A[:, r]|| ||B[:, r]|| ||C[:, r]||`` of their rank-one term, smallest first;
2. drop one column (the smallest first, then the next ones, up to ``tries_per_rank``), run
   tensorly's ALS (``parafac`` with line search, up to ``als_iter`` iterations) from the
   remaining ``R - 1`` columns and, unless that is already exact, Levenberg–Marquardt
   (:func:`tdn_theory.cp.levenberg_marquardt`; dense Cholesky steps while the number of
   unknowns ``(d1 + d2 + d3) R`` is at most ``dense_limit``, which converges far better than its
   conjugate-gradient mode here); accept as soon as the relative error
   ``||T - T_hat||_F / ||T||_F <= tol``;
   and its largest rank-one term is at most ``max_term * ||T||_F`` (bounded terms);
3. if no dropped column works, optionally run :func:`tdn_theory.cp.fit_cp` at rank ``R - 1``
   (``refit_restarts`` ALS starts with its own Levenberg–Marquardt polish);
4. repeat from the accepted factors until an attempt fails, the time budget is spent, or the rank
   reaches the largest rank of an unfolding (no CP decomposition can be smaller).

The result is an *upper* bound on the exact CP rank (the smallest exact rank found), not a
proof of minimality; every accepted decomposition has its error measured against ``T``, and
the largest rank-one term ``max_r ||A[:, r]|| ||B[:, r]|| ||C[:, r]|| / ||T||_F`` is recorded:
a bounded value shows a genuine decomposition, not a border-rank sequence whose terms diverge.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import tensorly as tl

from tdn_theory._checks import check_int

from .fit import CPFit, fit_cp, parafac_from
from .polish import balance_factors, levenberg_marquardt
from .tensor_ops import check_target, cp_to_tensor, relative_error, unfold

__all__ = ["CompressionResult", "compress_exact", "unfolding_rank_floor"]


@dataclass
class CompressionResult:
    """Outcome of :func:`compress_exact`.

    fit : the smallest exact decomposition found (``fit.relative_error <= tol``).
    start_rank : rank of the given decomposition; smallest_rank : ``fit.rank``.
    floor : largest numerical rank of an unfolding of ``T`` (a lower bound on the CP rank).
    max_term : largest ``||A[:, r]|| ||B[:, r]|| ||C[:, r]||`` of ``fit`` divided by ``||T||_F``.
    attempts : one dict per attempt (rank tried, method, dropped column, error, seconds, reason).
    seconds : total wall time; stopped : why the search ended.
    """

    fit: CPFit
    start_rank: int
    smallest_rank: int
    floor: int
    max_term: float
    attempts: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0
    stopped: str = ""


def _max_term(A: np.ndarray, B: np.ndarray, C: np.ndarray) -> float:
    """``max_r ||A[:, r]|| ||B[:, r]|| ||C[:, r]||`` (0 for rank 0)."""
    sizes = np.prod([np.linalg.norm(F, axis=0) for F in (A, B, C)], axis=0)
    return float(sizes.max()) if sizes.size else 0.0


def _als_from(T: np.ndarray, factors: list[np.ndarray], n_iter: int, deadline: float):
    """tensorly ALS (line search, no normalisation) started from ``factors``; weights folded."""

    def stop(_cp, _err) -> bool:
        return time.perf_counter() > deadline

    tl.set_backend("numpy")
    return parafac_from(T, factors, n_iter, callback=stop)


def _drop_attempt(
    T: np.ndarray,
    factors: list[np.ndarray],
    *,
    tol: float,
    als_iter: int,
    lm_iter: int,
    budget: float,
    dense_limit: int,
    max_term: float,
) -> tuple[list[np.ndarray], float, str, str]:
    """ALS, then (unless exact) Levenberg–Marquardt from ``factors``: (factors, error, method, why)."""
    start = time.perf_counter()
    method = "drop"
    if als_iter > 0:
        try:
            als = _als_from(T, factors, als_iter, start + budget / 2)
        except np.linalg.LinAlgError:  # a singular normal matrix: keep the plain start
            als = None
        if als is not None and _max_term(*als) <= max_term:
            # a diverging ALS result (terms far larger than T) is dropped: LM from the plain start
            factors, method = als, "drop+als"
    err = relative_error(T, cp_to_tensor(*factors))
    if err <= tol:
        return factors, err, method, "tol"
    unknowns = sum(F.shape[0] for F in factors) * factors[0].shape[1]
    res = levenberg_marquardt(
        T,
        *factors,
        max_iter=lm_iter,
        time_budget=max(budget - (time.perf_counter() - start), 1e-3),
        target_error=min(tol, 1e-14) / 10,
        dense=True if unknowns <= dense_limit else None,
        normalize=False,
    )
    polished = [res.A, res.B, res.C]
    err_lm = relative_error(T, cp_to_tensor(*polished))
    if err_lm < err:
        return polished, err_lm, method + "+lm", res.history[0]["reason"]
    return factors, err, method, res.history[0]["reason"]


def unfolding_rank_floor(T: np.ndarray, rtol: float = 1e-10) -> int:
    """Largest numerical rank of the three unfoldings of ``T`` (singular values > rtol * max)."""
    T = np.asarray(T, dtype=np.float64)
    ranks = []
    for mode in range(3):
        s = np.linalg.svd(unfold(T, mode), compute_uv=False)
        ranks.append(int(np.sum(s > rtol * s[0])) if s.size and s[0] > 0 else 0)
    return max(ranks)


def compress_exact(
    T: np.ndarray,
    A: np.ndarray,
    B: np.ndarray,
    C: np.ndarray,
    *,
    tol: float = 1e-12,
    tries_per_rank: int = 3,
    als_iter: int = 2000,
    lm_iter: int = 1000,
    attempt_budget: float = 30.0,
    time_budget: float = 120.0,
    refit_restarts: int = 0,
    dense_limit: int = 3000,
    max_term: float = 100.0,
    seed: int = 0,
) -> CompressionResult:
    """Greedy search for smaller exact CP decompositions of ``T`` starting from exact factors.

    ``T`` (d3, d1, d2) indexed ``[k, i, j]``; ``A, B, C`` exact factors (their error must be
    ``<= tol``). ``tries_per_rank``: columns tried per rank; ``als_iter``: ALS iterations per attempt;
    ``lm_iter``: Levenberg–Marquardt iterations per attempt; ``attempt_budget``: seconds per
    attempt; ``time_budget``: seconds in total;
    ``refit_restarts``: ALS starts of a fresh :func:`fit_cp` when every column drop failed (0:
    never); ``dense_limit``: largest number of unknowns solved densely by Levenberg–Marquardt;
    ``max_term``: an attempt is accepted only if its largest rank-one term
    ``||A[:, r]|| ||B[:, r]|| ||C[:, r]||`` is at most ``max_term * ||T||_F`` (guards against
    border-rank sequences, whose tiny errors come from cancelling huge terms);
    ``seed``: seed of that fit. Deterministic unless a budget cuts an attempt short.
    """
    start = time.perf_counter()
    T = check_target(T, who="compress_exact")
    for name, value, low in (
        ("tries_per_rank", tries_per_rank, 1),
        ("als_iter", als_iter, 0),
        ("lm_iter", lm_iter, 1),
        ("refit_restarts", refit_restarts, 0),
        ("dense_limit", dense_limit, 0),
        ("seed", seed, 0),
    ):
        check_int(value, name, minimum=low, who="compress_exact")
    for name, value in (
        ("tol", tol),
        ("attempt_budget", attempt_budget),
        ("time_budget", time_budget),
        ("max_term", max_term),
    ):
        if not (np.isfinite(value) and value > 0):
            raise ValueError(f"compress_exact: {name} must be a positive number; got {value!r}")
    norm = float(np.linalg.norm(T))
    Tn = T / norm
    A = np.asarray(A, dtype=np.float64) / norm
    factors = list(balance_factors(A, np.asarray(B, dtype=np.float64), np.asarray(C, np.float64)))
    error0 = relative_error(Tn, cp_to_tensor(*factors))
    if error0 > tol:
        raise ValueError(
            f"compress_exact: the given factors have relative error {error0:.2e} > tol = {tol:.0e}; "
            "start from an exact decomposition"
        )
    start_rank = factors[0].shape[1]
    floor = unfolding_rank_floor(Tn)
    best_error = error0
    attempts: list[dict[str, Any]] = []
    stopped = "floor"

    def out_of_time() -> bool:
        return time.perf_counter() - start > time_budget

    while factors[0].shape[1] > max(floor, 1):
        if out_of_time():
            stopped = "time_budget"
            break
        rank = factors[0].shape[1] - 1
        sizes = np.prod([np.linalg.norm(F, axis=0) for F in factors], axis=0)
        accepted = None
        for column in np.argsort(sizes, kind="stable")[: int(tries_per_rank)]:
            if out_of_time():
                break
            keep = np.delete(np.arange(rank + 1), column)
            t0 = time.perf_counter()
            budget = min(attempt_budget, max(time_budget - (t0 - start), 1e-3))
            trial, err, method, reason = _drop_attempt(
                Tn,
                [F[:, keep] for F in factors],
                tol=tol,
                als_iter=int(als_iter),
                lm_iter=int(lm_iter),
                budget=budget,
                dense_limit=int(dense_limit),
                max_term=max_term,
            )
            attempts.append(
                {
                    "rank": rank,
                    "method": method,
                    "dropped": int(column),
                    "relative_error": err,
                    "max_term": _max_term(*trial),
                    "reason": reason,
                    "seconds": time.perf_counter() - t0,
                }
            )
            if err <= tol and attempts[-1]["max_term"] <= max_term:
                accepted = (trial, err)
                break
        if accepted is None and refit_restarts > 0 and not out_of_time():
            budget = max(time_budget - (time.perf_counter() - start), 1e-3)
            t0 = time.perf_counter()
            try:
                fit = fit_cp(
                    Tn, rank, restarts=int(refit_restarts), seed=int(seed), time_budget=budget
                )
                fit_error, reason = fit.relative_error, "done"
            except np.linalg.LinAlgError as exc:  # a singular ALS step inside tensorly
                fit, fit_error, reason = None, float("inf"), f"LinAlgError: {exc}"
            attempts.append(
                {
                    "rank": rank,
                    "method": "fit_cp",
                    "restarts": int(refit_restarts),
                    "relative_error": fit_error,
                    "reason": reason,
                    "seconds": time.perf_counter() - t0,
                }
            )
            if fit is not None and fit_error <= tol and _max_term(*fit.factors) <= max_term:
                accepted = ([fit.A, fit.B, fit.C], fit.relative_error)
        if accepted is None:
            stopped = "time_budget" if out_of_time() else "no_attempt_succeeded"
            break
        factors = list(balance_factors(*accepted[0]))
        best_error = accepted[1]
    A_out, B_out, C_out = (np.ascontiguousarray(F) for F in factors)
    A_out = A_out * norm
    final = relative_error(T, cp_to_tensor(A_out, B_out, C_out))
    seconds = time.perf_counter() - start
    fit = CPFit(
        A=A_out,
        B=B_out,
        C=C_out,
        relative_error=final,
        history=[{"stage": "compress", "start_rank": start_rank, "error_unit_norm": best_error}],
        seed=int(seed),
        seconds=seconds,
    )
    return CompressionResult(
        fit=fit,
        start_rank=start_rank,
        smallest_rank=fit.rank,
        floor=floor,
        max_term=_max_term(A_out, B_out, C_out) / norm,
        attempts=attempts,
        seconds=seconds,
        stopped=stopped,
    )
