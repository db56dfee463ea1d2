"""Fill the store of best-known CP fits (tdn_theory.cp.store) with every fit the experiments quote.

Usage::

    python -m experiments.fits                  # fit the keys the store lacks (full mode)
    python -m experiments.fits --quick          # quick mode: keys of the quick runs, into results/quick/fits
    python -m experiments.fits --list           # the keys and whether the store holds them
    python -m experiments.fits --import experiments/results/factors   # offer existing factor files
    python -m experiments.fits --L 3 5          # only these degrees
    python -m experiments.fits --workers 2      # the missing keys on 2 Dask worker processes

The store is one folder of factor files keyed by (normalization, parity, L, R); the full mode uses
the package's shipped store (tdn_theory/cp/best_known, package data), so what the experiments
quote is what ``tdn_theory.cp.best_known`` returns. A key is fitted once (``best_fit`` with the
recipe ``tdn_theory.cp.store.RECIPES[L]``); later runs read it back, and a new fit replaces a
stored one only when its error is lower. Ranks at or above the smallest exact rank found are
served by the exact fit padded with zero columns, so they are not fitted.

Keys (unit tensor, all paths; ``experiment_keys``): the union of the rank grids of
error_vs_rank, bounds_vs_rank and nbody_ranks, the paper's schedule ranks (7L, 7L^2,
ceil(16 ln^2(L+1))) for L = 1..6, and 7L^2 of every (normalization, parity) of the rank atlas
for L <= 4. Ranks >= d^2 are left out (Thm 3.2's construction is exact there).

Writes fits.json / fits.md (the store's contents: key, relative error, certified lower bound,
method, seconds) into --out.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from experiments import _common, _dask
from tdn_theory import so3
from tdn_theory.cp import CPFit, FitKey, FitStore, FitStoreError, best_fit, load_factors
from tdn_theory.cp.store import EXACT_TOL, SHIPPED

NAME = "fits"
#: Largest L of the cg fits derived from exact unit fits (the rank atlas's other tensors stop at
#: L = 4; the L = 5, 6 constructions would add 2.6 MB of package data for a row scaling).
CG_MAX_L = 4
#: Tensors of the rank atlas whose 7L^2 fit the atlas table quotes (L <= 4).
ATLAS_TENSORS = (
    ("unit", "even"),
    ("unit", "odd"),
    ("cg", "all"),
    ("cg", "even"),
    ("cg", "odd"),
    ("gaunt", "even"),
    ("gaunt", "all"),
)


def unit_ranks(quick: bool) -> dict[int, list[int]]:
    """The unit/all ranks the experiments use, by L (ranks >= d^2 dropped)."""
    from experiments import bounds_vs_rank, error_vs_rank, nbody_ranks
    from experiments._rank_study import SCHEDULES

    ranks: dict[int, set[int]] = {}
    max_L = 3 if quick else 6
    for L in range(1, max_L + 1):
        got = set(error_vs_rank.rank_grid(L, quick))
        got |= {f(L) for f in SCHEDULES.values()}
        ranks[L] = got
    for L, grid in bounds_vs_rank.rank_grid(quick).items():
        ranks.setdefault(L, set()).update(grid)
    ranks.setdefault(nbody_ranks.L, set()).update(nbody_ranks.PAPER)
    return {L: sorted(r for r in rs if r < (L + 1) ** 4) for L, rs in sorted(ranks.items())}


def experiment_keys(quick: bool) -> list[FitKey]:
    """Every key the experiments read from the store (module docstring)."""
    keys = [FitKey("unit", "all", L, R) for L, rs in unit_ranks(quick).items() for R in rs]
    if not quick:
        keys += [FitKey(n, p, L, 7 * L * L) for L in range(1, 5) for n, p in ATLAS_TENSORS]
    return sorted(set(keys))


def import_factor_files(store: FitStore, folder: Path) -> list[str]:
    """Offer every factor file in `folder` with L/normalization/parity metadata to the store.

    The "gaunt"/"even" files are offered as "gaunt"/"all" too (the same tensor: Gaunt
    coefficients vanish on odd paths). Returns what was stored.
    """
    stored = []
    for path in sorted(folder.glob("*.npz")):
        fit, meta = load_factors(path)
        if not {"L", "normalization", "parity"} <= set(meta):
            continue
        key = FitKey(meta["normalization"], meta["parity"], int(meta["L"]), fit.rank)
        prov = {
            "method": meta.get("method", "unknown"),
            "source": f"{folder.name}/{path.name}",
            "seconds_original": meta.get("seconds"),
        }
        if store.offer(key, fit, prov):
            stored.append(f"{key} <- {path.name}")
        if (key.normalization, key.parity) == ("gaunt", "even"):  # gaunt/all is the same tensor
            if store.offer(FitKey("gaunt", "all", key.L, key.rank), fit, prov):
                stored.append(f"gaunt/all/L={key.L}/R={key.rank} <- {path.name}")
    return stored


def refit(store: FitStore, key: FitKey, args: argparse.Namespace, run: _common.Run) -> bool:
    """Fit `key` again (fit_cp with --seed/--restarts/--budget) and offer it to the store."""
    from tdn_theory.cp import fit_cp
    from tdn_theory.cp.store import RECIPES

    recipe = dict(RECIPES.get(key.L, {"restarts": 2, "time_budget": 120.0}))
    if args.restarts is not None:
        recipe["restarts"] = args.restarts
    if args.budget is not None:
        recipe["time_budget"] = args.budget
    T = so3.cg_tensor(key.L, key.normalization, key.parity)
    if args.method == "try_rank":  # fit_cp on half the budget, then LM from Gaussian starts
        from tdn_theory.theory.rank_upper import try_rank

        fit, _attempt = try_rank(T, key.rank, seed=args.seed, **recipe)
    else:
        fit = fit_cp(T, key.rank, seed=args.seed, **recipe)
    prov = {
        "method": args.method,
        "seed": args.seed,
        "restarts": recipe["restarts"],
        "time_budget_s": recipe["time_budget"],
        "command": run.command,
        "load_average": _common.load_average(),
    }
    print(f"[fits] refit {key}: {fit.relative_error:.4g}, offering it to the store", flush=True)
    kept = store.offer(key, fit, prov)
    print(f"[fits] refit {key}: {fit.relative_error:.4g} ({'kept' if kept else 'not better'})")
    return kept


def derive_cg(store: FitStore) -> list[str]:
    """Offer the "cg" fit derived from every exact "unit" fit of the store (same rank).

    cg = unit with each output block l3 scaled by sqrt(2 l3 + 1) (tdn_theory.so3.normalization),
    so scaling the rows of A turns an exact unit CP into an exact cg CP of the same rank.
    """
    stored = []
    for key in store.keys():
        if key.normalization != "unit" or key.L > CG_MAX_L:
            continue
        fit, _meta = store.get(key)
        if fit.relative_error > EXACT_TOL:
            continue
        scale = np.concatenate([np.full(2 * l + 1, np.sqrt(2 * l + 1)) for l in range(key.L + 1)])
        cg = CPFit(fit.A * scale[:, None], fit.B, fit.C, fit.relative_error)
        cg_key = FitKey("cg", key.parity, key.L, key.rank)
        prov = {
            "method": "unit factors, output rows scaled by sqrt(2 l3 + 1)",
            "source": f"fit store {key.filename}",
        }
        if store.offer(cg_key, cg, prov):
            stored.append(f"{cg_key} <- {key.filename} (scaled)")
    return stored


def store_table(store: FitStore) -> list[dict]:
    """One row per key of the store: error, lower bound, method, provenance."""
    rows = []
    for key in store.keys():
        got = store.get(key)
        if got is None:
            continue
        fit, meta = got
        rows.append(
            {
                "normalization": key.normalization,
                "parity": key.parity,
                "L": key.L,
                "rank": key.rank,
                "relative_error": fit.relative_error,
                "lower_bound": meta.get("lower_bound"),
                "method": meta.get("method"),
                "source": meta.get("source"),
                "seed": meta.get("seed"),
                "restarts": meta.get("restarts"),
                "time_budget_s": meta.get("time_budget_s"),
                "seconds": meta.get("seconds"),
                "stored_at": meta.get("stored_at"),
                "package_version": meta.get("package_version"),
            }
        )
    return rows


def markdown(rows: list[dict]) -> str:
    lines = [
        "# Best-known CP fits (tdn_theory.cp.best_known)",
        "",
        "Relative error ||M - M_hat||_F / ||M||_F of the best fit stored for each key, and the",
        "certified Eckart-Young lower bound (exact arithmetic) for any CP of that rank.",
        "",
        "| tensor | L | R | rel. error | lower bound | method | source / budget |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        how = r["source"] or (
            f"seed {r['seed']}, {r['restarts']} restarts, {r['time_budget_s']} s"
            if r["restarts"] is not None
            else ""
        )
        lines.append(
            f"| {r['normalization']}/{r['parity']} | {r['L']} | {r['rank']} | "
            f"{r['relative_error']:.3g} | {r['lower_bound'] or 0:.3g} | {r['method']} | {how} |"
        )
    return "\n".join(lines) + "\n"


def fill_key(key: FitKey, *, store: FitStore, command: str) -> dict | None:
    """One key read from the store, or fitted and offered to it (a Dask unit, experiments/_dask.py);
    a row for the run's summary when it took longer than a second (i.e. was fitted)."""
    t0 = time.perf_counter()
    fit, _ = best_fit(key.L, key.rank, key.normalization, key.parity, store=store, command=command)
    seconds = time.perf_counter() - t0
    if seconds <= 1.0:
        return None
    print(f"[fits] {key}: {fit.relative_error:.4g} ({seconds:.0f} s)", flush=True)
    return {"key": str(key), "relative_error": fit.relative_error, "seconds": round(seconds, 1)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    _common.add_common_args(parser)
    parser.add_argument("--L", type=int, nargs="+", default=None, help="only these degrees")
    parser.add_argument("--list", action="store_true", help="list the keys and stop")
    parser.add_argument(
        "--import",
        dest="import_dir",
        type=Path,
        default=None,
        help="offer the factor files of this folder to the store first",
    )
    parser.add_argument(
        "--refit",
        nargs="+",
        default=None,
        metavar="NORM/PARITY/L/R",
        help="fit these keys again (e.g. unit/all/1/7) and keep the result if it "
        "is better than the stored fit",
    )
    parser.add_argument("--restarts", type=int, default=None, help="with --refit")
    parser.add_argument("--budget", type=float, default=None, help="seconds, with --refit")
    parser.add_argument("--seed", type=int, default=0, help="with --refit")
    parser.add_argument(
        "--method",
        choices=("fit_cp", "try_rank"),
        default="fit_cp",
        help="with --refit: tdn_theory.cp.fit_cp, or theory.rank_upper.try_rank "
        "(fit_cp, then Levenberg-Marquardt from random starts)",
    )
    parser.add_argument(
        "--store",
        type=Path,
        default=None,
        help="store folder (default: the shipped store; quick: OUT/fits)",
    )
    _dask.add_args(parser)
    args = parser.parse_args(argv)
    _dask.check_args(args)
    out = _common.output_dir(args)
    store = FitStore(args.store or (out / "fits" if args.quick else SHIPPED))
    run = _common.Run(NAME, args, argv)
    if args.import_dir is not None:
        if not args.import_dir.is_dir():
            parser.error(f"--import: {args.import_dir} is not a folder")
        for line in import_factor_files(store, args.import_dir):
            print(f"[fits] stored {line}")
        for line in derive_cg(store):
            print(f"[fits] stored {line}")
    if args.refit:
        for text in args.refit:
            try:
                n, p, L, R = text.split("/")
                key = FitKey(n, p, int(L), int(R))
            except (ValueError, FitStoreError) as exc:
                parser.error(f"--refit {text!r}: want NORM/PARITY/L/R, e.g. unit/all/1/7 ({exc})")
            refit(store, key, args, run)
        return 0
    keys = experiment_keys(args.quick)
    if args.L:
        keys = [k for k in keys if k.L in args.L]
    if args.list:
        for key in keys:
            try:
                fit, meta = best_fit(
                    key.L, key.rank, key.normalization, key.parity, store=store, fit_missing=False
                )
            except FitStoreError:
                print(f"{str(key):28s} missing")
                continue
            how = (
                f"exact rank {meta['padded_from_rank']} padded"
                if "padded_from_rank" in meta
                else "stored"
            )
            print(f"{str(key):28s} {fit.relative_error:.4g} ({how})")
        return 0
    if not args.L:
        for line in derive_cg(store):
            print(f"[fits] stored {line}")
    with _dask.units(args) as pool:
        done = pool.map(fill_key, keys, desc="fits", store=store, command=run.command)
    fitted = [row for row in done if row is not None]
    if args.L:  # a partial run (parallel workers): the summary is written by a full one
        return 0
    rows = store_table(store)
    run.write(
        out, {"store": str(store.folder), "keys": rows, "fitted_this_run": fitted}, markdown(rows)
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
