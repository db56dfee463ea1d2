"""Approximation and equivariance error of CP fits of the CG tensor versus rank, L = 1..6.

Usage: ``python -m experiments.error_vs_rank [--quick] [--out DIR] [--max-L L] [--seed S]``.
Writes error_vs_rank.json and error_vs_rank.png into experiments/results (or DIR;
experiments/results/quick with --quick).

The counterpart of the paper's Fig. 2 (approximation error versus rank for L = 1..6). For every L
and every rank of a fixed grid (which contains the paper's schedule ranks 7L, 7L^2 and
ceil(16 ln^2(L+1)), and d^2 where it is small) the "unit" CG tensor M (d, d, d), indexed [k, i, j],
is fitted with tdn_theory.cp.fit_cp (seeded, a time budget per fit so that the full run stays
around 15 minutes on 2 shared cores; R >= d^2 uses Thm 3.2's exact construction). Each row holds:

* relative_error = ||M - M_hat||_F / ||M||_F of the fit (an upper bound on the best rank-R error);
* certified_lower_bound: the Eckart–Young bound max_n tail_R(M_(n)) / ||M||_F (no rank-R CP does
  better);
* thm31_relative_bound: the paper's Thm 3.1 a-priori bound / ||M||_F (>= 1 means vacuous);
* equivariance error of the fit: exact Haar RMS of eps_abs, sampled mean / max of eps_abs and of
  eps_rel (definitions in experiments/_rank_study.py).
"""

from __future__ import annotations

import argparse
import sys

from experiments import _common, _dask
from experiments._rank_study import (
    SCHEDULES,
    add_max_L_arg,
    rank_record,
    resolve_max_L,
    unit_cg,
)

NAME = "error_vs_rank"

#: Full-mode rank grids (each also gets the schedule ranks below d^2 added).
FULL_GRID = {
    1: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 12, 16],
    2: [2, 4, 6, 8, 10, 12, 15, 18, 20, 24, 28, 30, 36, 81],
    3: [8, 16, 24, 32, 40, 48, 63, 80, 100],
    4: [16, 28, 42, 64, 112, 150],
    5: [25, 52, 100, 175, 250],
    6: [42, 61, 120, 252, 350],
}
QUICK_GRID = {1: [2, 4, 6, 8, 16], 2: [5, 10, 20, 28, 81], 3: [8, 21, 31, 63]}


def rank_grid(L: int, quick: bool) -> list[int]:
    """The ranks studied at degree L: the mode's grid plus the paper's schedule ranks < d^2."""
    d = (L + 1) ** 2
    grid = set(QUICK_GRID.get(L, []) if quick else FULL_GRID.get(L, []))
    if not quick:
        grid |= {f(L) for name, f in SCHEDULES.items() if name != "(L+1)^4" and f(L) < d * d}
    return sorted(grid)


def _record(job: tuple[int, int], *, seed: int, samples: int, store, quick: bool) -> dict:
    """One (L, R) of the grid: a Dask unit (experiments/_dask.py)."""
    L, R = job
    return rank_record(unit_cg(L), R, seed=seed, n_samples=samples, store=store, quick=quick)


def figure(result: dict):
    """One panel per L: fit error, certified lower bound, Thm 3.1 bound, equivariance errors."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullFormatter, ScalarFormatter

    floor = 1e-16
    per_L = result["per_L"]
    n = len(per_L)
    cols = min(3, n)
    rows_n = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows_n, cols, figsize=(5 * cols, 3.8 * rows_n), squeeze=False)
    for ax, block in zip(axes.flat, per_L, strict=False):
        L, rows = block["L"], block["rows"]
        R = [r["rank"] for r in rows]

        def clip(key, rows=rows):
            return [max(r[key], floor) for r in rows]

        ax.plot(R, clip("relative_error"), "o-", label="fit: rel. error")
        ax.plot(R, clip("certified_lower_bound"), "k--", label="certified lower bound")
        ax.plot(R, clip("thm31_relative_bound"), ":", color="gray", label="Thm 3.1 bound (rel.)")
        ax.plot(R, clip("haar_rms"), "^-", ms=4, label="equiv.: Haar RMS eps_abs")
        ax.plot(R, clip("eps_rel_median"), "s-", ms=3, alpha=0.7, label="equiv.: median eps_rel")
        for name, f in SCHEDULES.items():
            if f(L) <= max(R):
                ax.axvline(f(L), color="C3", alpha=0.25, lw=1)
                ax.text(f(L), 1e-13, name, rotation=90, fontsize=7, va="bottom", ha="right")
        ax.axhline(1.0, color="gray", lw=0.5)
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(ScalarFormatter())
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_yscale("log")
        ax.set_ylim(floor / 2, 30)
        ax.set_title(f"L = {L} (d = {block['d']})")
        ax.set_xlabel("CP rank R")
        ax.set_ylabel("error (values < 1e-16 clipped)")
        ax.grid(True, which="both", alpha=0.3)
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7, loc="lower left")
    fig.suptitle("CP approximation of the unit CG tensor: error and equivariance error vs rank")
    fig.tight_layout()
    return fig


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    _common.add_common_args(parser)
    _common.add_store_arg(parser)
    add_max_L_arg(parser)
    parser.add_argument("--samples", type=int, default=None, help="(R, x, y) samples per rank")
    parser.add_argument("--seed", type=int, default=0, help="seed of the sampled rotations/inputs")
    _dask.add_args(parser)
    args = parser.parse_args(argv)
    _dask.check_args(args)
    max_L = resolve_max_L(args, parser)
    if args.samples is not None and args.samples < 1:
        parser.error(f"--samples must be >= 1, got {args.samples}")
    samples = args.samples or (100 if args.quick else 500)
    out = _common.output_dir(args)
    store = _common.fit_store(args, out)
    run = _common.Run(NAME, args, argv)
    jobs = [(L, R) for L in range(1, max_L + 1) for R in rank_grid(L, args.quick)]
    with _dask.units(args) as pool:
        records = pool.map(
            _record,
            jobs,
            desc="error vs rank",
            seed=args.seed,
            samples=samples,
            store=store,
            quick=args.quick,
        )
    per_L = [
        {
            "L": L,
            "d": (L + 1) ** 2,
            "schedule_ranks": {name: f(L) for name, f in SCHEDULES.items()},
            "rows": [r for (L_, _), r in zip(jobs, records, strict=True) if L_ == L],
        }
        for L in sorted({L for L, _ in jobs})
    ]
    result = {
        "experiment": NAME,
        "normalization": "unit",
        "parity": "all",
        "store": str(store.folder),
        "note": (
            "fits are the store's best known (tdn_theory.cp.best_known; upper bounds on the best "
            "rank-R error); certified_lower_bound is the Eckart-Young bound (exact arithmetic)"
        ),
        "per_L": per_L,
    }
    run.write(out, result, figure=figure(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
