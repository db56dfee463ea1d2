"""Rank atlas: certified lower and demonstrated upper bounds on the CP rank of the CG tensor.

Usage::

    python -m experiments.rank_atlas                 # unit/all L = 1..6, the others L = 1..4
    python -m experiments.rank_atlas --max-L 3       # smaller
    python -m experiments.rank_atlas --budget-scale 0.5 --only unit/all

For each tensor cg_tensor(L, normalization, parity) (rows "normalization/parity/L"):

* lower bound: the best of the flattening bound and the Koszul–Young bounds (p = 1..3, each
  mode, seeded integer restriction; tdn_theory.theory.rank_lower), all certified;
* upper bound: the smallest rank at which an exact fit (relative error < 1e-10, confirmed by a
  final Levenberg–Marquardt polish) was found, by bisection with a time budget per rank
  (tdn_theory.theory.rank_upper), followed by compress_exact (drop a column, re-polish) from the
  smallest hit; exact constructions where they exist: sphere quadrature for the Gaunt tensor,
  the Levi-Civita rank-5 form for 1 x 1 -> 1, Thm 3.2's d^2; "cg" rows are the "unit" factors
  with the output rows scaled by sqrt(2 l3 + 1) (same rank);
* the relative error of the best fit found at the paper's rank R = 7 L^2.

Resumable: results go to experiments/results/rank_atlas.json after every attempt, and a rerun
skips the attempts and bounds already recorded (delete a row, or pass --fresh, to redo it).
Exact factors go to experiments/results/factors/exact_<norm>_<parity>_L<L>.npz (save_factors,
meta: L, normalization, parity, method). Timings are wall-clock budgets: on a loaded machine
fewer iterations fit into them, so the upper bounds depend on the machine's load.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from experiments import _common, _dask, _io
from tdn_theory import so3
from tdn_theory.cp import CPFit, cp_to_tensor, load_factors, relative_error, save_factors
from tdn_theory.cp.compress import compress_exact
from tdn_theory.cp.levi_civita import path_111_cp
from tdn_theory.cp.quadrature import sphere_cp
from tdn_theory.theory.rank_lower import lower_bounds
from tdn_theory.theory.rank_upper import (
    EXACT_RTOL,
    RankAttempt,
    confirm_exact,
    scaled_sphere_cp,
    search_exact_rank,
    try_rank,
)

#: Seconds of wall clock per fitted rank, by L (times --budget-scale).
BUDGET = {1: 10.0, 2: 30.0, 3: 60.0, 4: 300.0, 5: 240.0, 6: 300.0}
#: Seconds of wall clock for all fits of one row, by L (times --budget-scale); the search
#: stops (keeping what it found) once a row has used it.
ROW_BUDGET = {1: 60.0, 2: 240.0, 3: 600.0, 4: 900.0, 5: 300.0, 6: 400.0}
#: First rank tried when no exact construction is known (from exploratory runs on this VM);
#: None: only the 7 L^2 fit (an exact fit at L >= 5 does not fit the budgets of a 2-core VM).
START = {1: 8, 2: 30, 3: 90, 4: 200, 5: None, 6: None}
#: Bisection stops when (smallest hit - largest miss) <= this fraction of the hit, by L.
RESOLUTION = {1: 0.0, 2: 0.0, 3: 0.04, 4: 0.08, 5: 0.1, 6: 0.1}
#: Largest L at which ranks are searched (above: only the 7 L^2 fit and one exact try).
SEARCH_MAX_L = 4


def row_key(normalization: str, parity: str, L: int) -> str:
    return f"{normalization}/{parity}/{L}"


def factor_path(folder: Path, normalization: str, parity: str, L: int, kind: str = "exact") -> Path:
    """exact_* for fits, quad_* / levi_civita_* / scaled_unit_* for constructions."""
    return folder / f"{kind}_{normalization}_{parity}_L{L}.npz"


class RowBudgetSpent(Exception):
    """Raised by the attempt function once a row has spent its wall-clock budget."""


def specs(max_L: int, others_max_L: int, only: set[str] | None) -> list[tuple[str, str, int]]:
    """(normalization, parity, L) rows in the order they are computed (cheap first)."""
    tensors = [
        ("unit", "all"),
        ("unit", "even"),
        ("unit", "odd"),
        ("cg", "all"),
        ("cg", "even"),
        ("cg", "odd"),
        ("gaunt", "even"),
        ("gaunt", "all"),
        ("gaunt", "odd"),
    ]
    out = []
    for L in range(1, max_L + 1):
        for norm, par in tensors:
            if (norm, par) != ("unit", "all") and L > others_max_L:
                continue
            if only and f"{norm}/{par}" not in only:
                continue
            out.append((norm, par, L))
    return out


def save_exact(
    folder: Path,
    fit: CPFit,
    T: np.ndarray,
    norm: str,
    par: str,
    L: int,
    method: str,
    kind: str = "exact",
    **extra: Any,
) -> str:
    """Save exact factors (checked against T first) and return the file name."""
    err = relative_error(T, cp_to_tensor(fit.A, fit.B, fit.C))
    if not err < EXACT_RTOL:
        raise RuntimeError(f"refusing to save non-exact factors ({err:.2e}) for {norm}/{par}/{L}")
    fit = CPFit(A=fit.A, B=fit.B, C=fit.C, relative_error=err, seed=fit.seed, seconds=fit.seconds)
    meta = {"L": L, "normalization": norm, "parity": par, "method": method, **extra}
    path = factor_path(folder, norm, par, L, kind)
    save_factors(path, fit, meta, target=T)
    return path.name


def compute_lower(row: dict, T: np.ndarray, max_p: int, max_size: int) -> None:
    bounds = lower_bounds(T, max_p=max_p, max_matrix_size=max_size)
    best = max(bounds, key=lambda b: b.value)
    row["lower"] = {
        "value": best.value,
        "best": best.to_dict(),
        "flattening": bounds[0].value,
        "all": [
            {
                "kind": b.kind,
                "mode": b.mode,
                "p": b.p,
                "n": b.n,
                "seed": b.seed,
                "value": b.value,
                "matrix_rank": b.matrix_rank.rank,
                "shape": list(b.matrix_rank.shape),
                "relative_gap": list(b.matrix_rank.relative_gap),
            }
            for b in bounds
        ],
        "parameters": {"max_p": max_p, "max_matrix_size": max_size},
    }


class _NoBar:
    def set_postfix_str(self, text: str) -> None:
        pass


def source_row(norm: str, par: str, L: int) -> str | None:
    """The row a row reads: gaunt/all is gaunt/even's tensor, cg scales the unit factors."""
    if (norm, par) == ("gaunt", "all"):
        return row_key("gaunt", "even", L)
    return row_key("unit", par, L) if norm == "cg" else None


def atlas_row(spec: tuple, row: dict, args, src: dict | None, save=None) -> dict:
    """One row (normalization, parity, L) of the atlas: a Dask unit (experiments/_dask.py).
    src: the row of source_row (when known); save: called after each resumable step (serial
    runs; None on workers). Returns the updated row."""
    norm, par, L = spec
    source = source_row(norm, par, L)
    state = {"rows": {source: src} if src else {}}
    run_row(row, norm, par, L, args, state, save or (lambda: None), _NoBar())
    return row


def run_row(
    row: dict,
    norm: str,
    par: str,
    L: int,
    args: argparse.Namespace,
    state: dict,
    save: Any,
    bar: Any,
) -> None:
    folder = args.factors
    T = so3.cg_tensor(L, norm, par)
    d = so3.dim(L)
    row.update(
        {
            "L": L,
            "d": d,
            "normalization": norm,
            "parity": par,
            "paths": len(so3.paths(L, par)),
            "rank_7L2": 7 * L * L,
            "thm32": d * d,
        }
    )
    row.setdefault("constructions", {})
    row.setdefault("attempts", {})
    if not np.any(T):
        row.update(
            {
                "zero_tensor": True,
                "lower": {"value": 0},
                "upper": {
                    "rank": 0,
                    "source": "zero tensor (no admissible path of this parity is non-zero)",
                },
                "error_7L2": 0.0,
            }
        )
        return
    if norm == "gaunt" and par == "all":
        # Gaunt coefficients vanish on odd paths: the tensor is gaunt/even's, reuse that row.
        if not np.array_equal(T, so3.cg_tensor(L, "gaunt", "even")):
            raise RuntimeError("gaunt/all differs from gaunt/even")
        src = state["rows"].get(row_key("gaunt", "even", L))
        if src and "interval" in src:
            keep = {k: v for k, v in src.items() if k not in ("parity", "paths")}
            row.update(keep)
            row["same_tensor_as"] = row_key("gaunt", "even", L)
            return
    if "lower" not in row:
        bar.set_postfix_str(f"{row_key(norm, par, L)} lower bounds")
        compute_lower(row, T, args.max_p, args.max_matrix_size)
        save()
    lower = row["lower"]["value"]
    cons = row["constructions"]
    cons["thm32"] = {"rank": d * d, "source": "Thm 3.2 (indicator factors, rank d^2)"}

    # Exact constructions.
    if norm == "gaunt" and par in ("all", "even") and "quadrature" not in cons:
        fit = sphere_cp(L, "even")
        name = save_exact(
            folder,
            fit,
            T,
            norm,
            par,
            L,
            "quadrature",
            kind="quad",
            rule=fit.history[0]["rule"],
            rule_degree=fit.history[0]["degree"],
        )
        cons["quadrature"] = {
            "rank": fit.rank,
            "file": name,
            "source": f"Lebedev rule of degree {fit.history[0]['degree']}",
        }
        save()
    if L == 1 and par == "odd" and norm in ("unit", "cg") and "levi_civita" not in cons:
        A, B, C = path_111_cp(1, norm)
        fit = CPFit(A=A, B=B, C=C, relative_error=0.0)
        name = save_exact(folder, fit, T, norm, par, L, "levi-civita", kind="levi_civita")
        cons["levi_civita"] = {"rank": 5, "file": name, "source": "cp.levi_civita (rank 5)"}
        save()
    if (
        norm == "unit"
        and not args.no_constructions
        and ("scaled_sphere" not in cons or args.redo_sphere)
    ):
        bar.set_postfix_str(f"{row_key(norm, par, L)} scaled sphere construction")
        res = scaled_sphere_cp(
            L,
            norm,
            par,
            seed=args.seed,
            min_rank=max(1, (L + 1) // 2 - 1),
            restarts=args.sphere_restarts,
        )
        old = cons.get("scaled_sphere")
        if old is None or res.fit.rank < old["rank"]:
            entry = {
                "rank": res.fit.rank,
                "ranks": res.ranks,
                "points": res.points,
                "completion_error": res.completion_error,
                "file": None,
                "restarts": args.sphere_restarts,
                "source": "sum of degree-scaled Lebedev sphere CPs (theory.rank_upper."
                "scaled_sphere_cp)",
            }
            others = [c["rank"] for k, c in cons.items() if c.get("file") and k != "scaled_sphere"]
            best_other = min(others + [row.get("best_exact_fit", {}).get("rank", d * d + 1)])
            if res.fit.rank < min(best_other, d * d):
                entry["file"] = save_exact(
                    folder,
                    res.fit,
                    T,
                    norm,
                    par,
                    L,
                    "scaled_sphere",
                    kind="scaled_sphere",
                    ranks=res.ranks,
                    points=res.points,
                )
            elif old is not None and old.get("file"):
                (folder / old["file"]).unlink(missing_ok=True)
            cons["scaled_sphere"] = entry
            save()
    if norm == "cg" and "from_unit" not in cons:
        unit_row = state["rows"].get(row_key("unit", par, L))
        if unit_row and unit_row.get("upper", {}).get("file"):
            fit_u, _ = load_factors(folder / unit_row["upper"]["file"])
            scale = np.ones(d)
            for l1, l2, l3 in so3.paths(L, par):
                ratio = so3.path_weight(l1, l2, l3, "cg") / so3.path_weight(l1, l2, l3, "unit")
                if not math.isclose(ratio, math.sqrt(2 * l3 + 1), rel_tol=1e-12):
                    raise RuntimeError("cg/unit path weight ratio is not sqrt(2 l3 + 1)")
                scale[so3.degree_slices(L)[l3]] = ratio
            fit = CPFit(A=scale[:, None] * fit_u.A, B=fit_u.B, C=fit_u.C, relative_error=0.0)
            name = save_exact(
                folder, fit, T, norm, par, L, "unit factors, output rows scaled", kind="scaled_unit"
            )
            cons["from_unit"] = {
                "rank": fit.rank,
                "file": name,
                "source": "unit factors with A rows scaled by sqrt(2 l3 + 1)",
            }
            save()

    # Fits: 7 L^2 first (its error is a column), then the search for the smallest exact rank.
    budget = BUDGET[L] * args.budget_scale
    row_budget = ROW_BUDGET[L] * args.budget_scale
    attempts = {int(r): RankAttempt(**a) for r, a in row["attempts"].items()}

    def attempt(R: int) -> tuple[CPFit, RankAttempt]:
        spent = sum(a.seconds for a in attempts.values())
        if spent >= row_budget:
            raise RowBudgetSpent
        bar.set_postfix_str(f"{row_key(norm, par, L)} fit R={R} ({budget:.0f}s)")
        return try_rank(T, R, seed=args.seed, time_budget=min(budget, row_budget - spent))

    def record(fit: CPFit | None, att: RankAttempt) -> None:
        attempts[att.rank] = att
        row["attempts"][str(att.rank)] = att.to_dict()
        if att.exact and fit is not None:
            best = row.get("best_exact_fit")
            known = [c["rank"] for c in cons.values() if c.get("file")]
            better_than_constructions = not known or att.rank < min(known)
            if better_than_constructions and (best is None or att.rank < best["rank"]):
                name = save_exact(folder, fit, T, norm, par, L, "fit", search_seed=args.seed)
                row["best_exact_fit"] = {
                    "rank": att.rank,
                    "file": name,
                    "relative_error": att.relative_error,
                }
        save()

    R7 = 7 * L * L
    if R7 not in attempts and not args.no_fits:
        record(*attempt(R7))
    known_hits = [c["rank"] for c in cons.values() if c.get("file")]
    start = min(known_hits) if known_hits else START[L]
    searchable = (
        norm != "cg" and not args.no_fits and "search_done" not in row and start is not None
    )
    try:
        if searchable:
            search_row(
                row,
                T,
                L,
                args,
                attempts,
                attempt,
                record,
                cons,
                start,
                lower,
                d,
                budget,
                bar,
                norm,
                par,
                save,
            )
    except RowBudgetSpent:
        row["search_done"] = "stopped: row budget spent"
        save()
    finish_row(row, attempts, args.store_obj)


def search_row(
    row, T, L, args, attempts, attempt, record, cons, start, lower, d, budget, bar, norm, par, save
) -> None:
    """Bisection for the smallest exact rank, then compress_exact from the smallest hit."""
    folder = args.factors
    construction_files = {c["rank"]: c["file"] for c in cons.values() if c.get("file")}
    if start in construction_files and start not in attempts:
        # A construction is exact at `start`: register it as a hit without fitting.
        attempts[start] = RankAttempt(
            start, 0.0, True, 0.0, args.seed, 0, None, "exact construction"
        )
        row["attempts"][str(start)] = attempts[start].to_dict()
    if L <= SEARCH_MAX_L:
        search_exact_rank(
            attempt,
            lower=lower,
            start=start,
            ceiling=d * d,
            known=attempts,
            on_result=record,
            resolution=RESOLUTION[L],
        )
    elif start not in attempts:
        record(*attempt(start))
    # Compress from the smallest exact factors (drop a column, re-polish).
    best = row.get("best_exact_fit")
    files = dict(construction_files)
    if best is not None:
        files[best["rank"]] = best["file"]
    if files and L <= SEARCH_MAX_L and "compress" not in row:
        top = min(files)
        misses = [r for r, a in attempts.items() if not a.exact and r < top]
        floor = max(misses) + 1 if misses else lower
        if top > floor:
            fit_b, _ = load_factors(folder / files[top])
            bar.set_postfix_str(f"{row_key(norm, par, L)} compress from {top}")
            comp = compress_exact(
                T,
                fit_b.A,
                fit_b.B,
                fit_b.C,
                tol=EXACT_RTOL,
                attempt_budget=budget / 2,
                time_budget=2 * budget,
                seed=args.seed,
            )
            row["compress"] = {
                "start": top,
                "smallest": comp.smallest_rank,
                "stopped": comp.stopped,
                "seconds": comp.seconds,
            }
            if comp.smallest_rank < top:
                comp.fit = confirm_exact(T, comp.fit, max_iter=300)  # final high-precision polish
                name = save_exact(
                    folder, comp.fit, T, norm, par, L, "compress_exact", search_seed=args.seed
                )
                row["best_exact_fit"] = {
                    "rank": comp.smallest_rank,
                    "file": name,
                    "relative_error": comp.fit.relative_error,
                }
        else:
            row["compress"] = {"skipped": "the smallest hit sits just above a miss"}
        save()
    row["search_done"] = True
    save()


def store_exact_rank(store: Any, norm: str, par: str, L: int) -> tuple[int, str] | None:
    """(rank, file name) of the smallest exact CP of the tensor in the fit store, or None."""
    from tdn_theory.cp import available, best_known

    for key in available(store, L=L, normalization=norm, parity=par):
        if best_known(L, key.rank, norm, par, store=store).relative_error < EXACT_RTOL:
            return key.rank, key.filename
    return None


def finish_row(row: dict, attempts: dict[int, RankAttempt], store: Any = None) -> None:
    """Upper bound (smallest exact rank over fits, constructions and the fit store), interval,
    7L^2 verdict; the error at 7L^2 is the fit store's best known when it holds that key."""
    from tdn_theory.cp import best_known

    cands = [(c["rank"], c.get("file"), name) for name, c in row["constructions"].items()]
    best = row.get("best_exact_fit")
    if best:
        cands.append((best["rank"], best["file"], "fit"))
    norm, par, L = row["normalization"], row["parity"], row["L"]
    if store is not None:
        found = store_exact_rank(store, norm, par, L)
        if found is not None:
            cands.append((found[0], None, f"fit store ({found[1]})"))
    rank, file, source = min(cands, key=lambda c: (c[0], c[1] is None and "store" not in c[2]))
    row["upper"] = {"rank": rank, "file": file, "source": source}
    if source.startswith("fit store"):
        row["upper"]["store_file"] = source[len("fit store (") : -1]
        if best is None or rank < best["rank"]:
            row["best_exact_fit"] = {
                "rank": rank,
                "file": None,
                "store_file": row["upper"]["store_file"],
                "relative_error": best_known(L, rank, norm, par, store=store).relative_error,
            }
    misses = sorted(r for r, a in attempts.items() if not a.exact)
    row["largest_failed_fit"] = max((r for r in misses if r < rank), default=None)
    R7 = row["rank_7L2"]
    if R7 in attempts:
        row["error_7L2"] = attempts[R7].relative_error
        row["error_7L2_source"] = "this search's fit"
    if store is not None:
        from tdn_theory.cp import FitStoreError, best_known

        try:
            row["error_7L2"] = best_known(L, R7, norm, par, store=store).relative_error
            row["error_7L2_source"] = "fit store (tdn_theory.cp.best_known)"
        except FitStoreError:
            pass
    lo = row["lower"]["value"]
    if R7 < lo:
        verdict = "below"
    elif R7 >= rank:
        verdict = "above"
    else:
        verdict = "inside"
    row["interval"] = [lo, rank]
    row["position_7L2"] = verdict


def markdown(state: dict) -> str:
    rows = state["rows"]

    def fmt_err(r):
        e = r.get("error_7L2")
        return "—" if e is None else ("< 1e-10" if e < EXACT_RTOL else f"{e:.2g}")

    def line(r, with_tensor):
        cons = r.get("constructions", {})
        q = cons.get("quadrature", {}).get("rank", "—")
        if "scaled_sphere" in cons:
            q = f"{cons['scaled_sphere']['rank']} (scaled)"
        lc = r.get("constructions", {}).get("levi_civita", {}).get("rank")
        up = r["upper"]
        found = r.get("best_exact_fit", {}).get("rank")
        miss = r.get("largest_failed_fit")
        cells = ([f"{r['normalization']}/{r['parity']}"] if with_tensor else []) + [
            str(r["L"]),
            str(r["d"]),
            str(r["paths"]),
            f"{r['lower']['value']}"
            + (
                f" ({r['lower']['best']['kind'].replace('_', '-')})"
                if r["lower"].get("best")
                else ""
            ),
            (str(found) if found else "—") + (f" (miss at {miss})" if miss and found else ""),
            str(q) if lc is None else f"{lc} (Levi-Civita)",
            str(r["rank_7L2"]),
            str(r["thm32"]),
            fmt_err(r),
            f"[{r['interval'][0]}, {up['rank']}]" if "interval" in r else "—",
            r.get("position_7L2", "—"),
        ]
        return "| " + " | ".join(cells) + " |"

    head = [
        "L",
        "d",
        "paths",
        "lower bound",
        "best exact rank found",
        "quadrature rank",
        "7 L^2",
        "(L+1)^4",
        "rel. error at 7 L^2",
        "rank interval",
        "7 L^2 vs interval",
    ]
    out = [
        "# Rank atlas of the real CG tensor",
        "",
        "Lower bounds are certified (proofs/rank_bounds.md); 'best exact rank found' is the "
        "smallest rank at which a fit reached relative error < 1e-10 (factors in "
        "experiments/results/factors/); the interval's upper end also uses exact "
        "constructions (quadrature, Levi-Civita, Thm 3.2's (L+1)^4). 'miss at R': the "
        "largest smaller rank whose search failed (not a proof that it is impossible). "
        "'quadrature rank': Lebedev points N for the Gaunt tensor; '(scaled)': the exact "
        "sum of degree-scaled sphere CPs (S_e N_e + 2 S_o N_o columns, "
        "theory.rank_upper.scaled_sphere_cp); cg rows reuse the unit factors (output rows "
        "scaled by sqrt(2 l3 + 1), same rank). 'rel. error at 7 L^2': the best known fit at that "
        "rank (tdn_theory.cp.best_known, the fit store; where an exact CP exists at a smaller "
        "rank, that exact CP padded with zero columns).",
        "",
        "## unit normalization, all paths (the default tensor)",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
    ]
    keyed = sorted(rows.values(), key=lambda r: (r["normalization"], r["parity"], r["L"]))
    out += [
        line(r, False)
        for r in keyed
        if (r["normalization"], r["parity"]) == ("unit", "all") and "interval" in r
    ]
    out += [
        "",
        "## other normalizations and parities",
        "",
        "| tensor | " + " | ".join(head) + " |",
        "|" + "---|" * (len(head) + 1),
    ]
    for r in keyed:
        if (r["normalization"], r["parity"]) == ("unit", "all"):
            continue
        if r.get("zero_tensor"):
            out.append(
                f"| {r['normalization']}/{r['parity']} | {r['L']} | {r['d']} | "
                f"{r['paths']} | zero tensor (rank 0) |" + " |" * 7
            )
        elif "interval" in r:
            out.append(line(r, True))
    out += [
        "",
        f"Generated by `python -m experiments.rank_atlas` ({state['meta']['date']}, "
        f"{state['meta']['machine']['cpu_count']} CPUs, shared: timings and hence the "
        "fitted upper bounds depend on load).",
        "",
    ]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--max-L", type=int, default=6, help="largest L of the unit/all rows (1..6)")
    ap.add_argument("--others-max-L", type=int, default=4, help="largest L of the other rows")
    ap.add_argument("--only", default="", help="comma list of normalization/parity, e.g. unit/all")
    ap.add_argument("--budget-scale", type=float, default=1.0, help="multiplies the fit budgets")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--max-p", type=int, default=3, help="largest Koszul-Young exterior power")
    ap.add_argument(
        "--max-matrix-size", type=int, default=2000, help="largest side of a Koszul-Young matrix"
    )
    ap.add_argument("--no-fits", action="store_true", help="bounds and constructions only")
    ap.add_argument(
        "--no-constructions",
        action="store_true",
        help="skip the (slow, fit-free) scaled-sphere construction",
    )
    ap.add_argument(
        "--sphere-restarts",
        type=int,
        default=3,
        help="random starts per rank of the scaled-sphere weight completion",
    )
    ap.add_argument(
        "--redo-sphere",
        action="store_true",
        help="recompute the scaled-sphere constructions of the selected rows",
    )
    ap.add_argument("--fresh", action="store_true", help="ignore the recorded results")
    _common.add_common_args(ap)
    _common.add_store_arg(ap)
    ap.add_argument(
        "--refresh",
        action="store_true",
        help="no fitting: recompute the upper ends and 7L^2 errors from the fit store "
        "and rewrite rank_atlas.json/.md",
    )
    ap.add_argument(
        "--merge",
        type=Path,
        default=None,
        help="results folder of another run: copy its rows and factor files in",
    )
    _dask.add_args(ap)
    args = ap.parse_args(argv)
    _dask.check_args(args)
    if args.quick:  # small rows and budgets (CI / a first look)
        args.max_L, args.others_max_L = min(args.max_L, 2), min(args.others_max_L, 1)
        args.budget_scale = min(args.budget_scale, 0.1)
    if not 1 <= args.max_L <= 6 or not 1 <= args.others_max_L <= 6:
        ap.error("--max-L and --others-max-L must lie in 1..6")
    if not args.budget_scale > 0:
        ap.error("--budget-scale must be positive")
    out = _common.output_dir(args)
    args.store_obj = _common.fit_store(args, out)
    run = _common.Run("rank_atlas", args, argv)
    args.factors = out / "factors"
    args.factors.mkdir(parents=True, exist_ok=True)
    json_path = out / "rank_atlas.json"
    state: dict = {"rows": {}}
    if json_path.exists() and not args.fresh:
        state = json.loads(json_path.read_text())
    runs = state.get("meta", {}).get("runs", [])
    command = run.command
    now = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    runs.append({"date": now, "command": command})
    state["meta"] = {
        "date": now,
        "machine": _io.machine(),
        "exact_rtol": EXACT_RTOL,
        "runs": runs,
        "budget_seconds_per_rank": {str(k): v for k, v in BUDGET.items()},
        "row_budget_seconds": {str(k): v for k, v in ROW_BUDGET.items()},
        "note": "budgets are wall-clock seconds times each run's --budget-scale; "
        "rows computed in another folder come in with --merge",
    }

    def save() -> None:
        state["provenance"] = run.provenance()
        _io.write_json_atomic(json_path, state)

    if args.refresh:
        for row in state["rows"].values():
            if "interval" in row and not row.get("same_tensor_as"):
                attempts = {int(r): RankAttempt(**a) for r, a in row["attempts"].items()}
                finish_row(row, attempts, args.store_obj)
        for row in state["rows"].values():  # gaunt/all copies gaunt/even
            if row.get("same_tensor_as") in state["rows"]:
                src = state["rows"][row["same_tensor_as"]]
                row.update({k: v for k, v in src.items() if k not in ("parity", "paths")})
        save()
        _io.write_text_atomic(out / "rank_atlas.md", markdown(state))
        print(f"refreshed {json_path} and {out / 'rank_atlas.md'} from {args.store_obj}")
        return 0

    if args.merge is not None:
        other = json.loads((args.merge / "rank_atlas.json").read_text())
        for key, row in other["rows"].items():
            for entry in [row.get("best_exact_fit") or {}, *row.get("constructions", {}).values()]:
                if entry.get("file"):
                    shutil.copyfile(
                        args.merge / "factors" / entry["file"], args.factors / entry["file"]
                    )
            state["rows"][key] = row
        save()

    only = {s.strip() for s in args.only.split(",") if s.strip()} or None
    todo = specs(args.max_L, min(args.others_max_L, args.max_L), only)
    with _dask.units(args) as pool:
        futures = {}
        for norm, par, L in todo:
            key = row_key(norm, par, L)
            row = state["rows"].setdefault(key, {})
            source = source_row(norm, par, L)
            src = futures.get(source, state["rows"].get(source)) if source else None
            # serial: the row is updated in place and saved along the way (resumable);
            # parallel: a worker returns the row and it is saved here when it arrives
            save_now = None if pool.parallel else save
            futures[key] = pool.submit(atlas_row, (norm, par, L), row, args, src, save_now)
            if not pool.parallel:
                futures[key].result()  # raises what the row raised
                save()
        keys = {future: key for key, future in futures.items()}
        for future in pool.as_completed(list(futures.values())) if pool.parallel else ():
            state["rows"][keys[future]] = future.result()
            save()
    _io.write_text_atomic(out / "rank_atlas.md", markdown(state))
    print(f"wrote {json_path} and {out / 'rank_atlas.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
