"""Equivariance error of the paper's n-body ranks at L = 2, on the tensor product alone.

Usage: ``python -m experiments.nbody_ranks [--quick] [--out DIR] [--samples N] [--seed S]``.
Writes nbody_ranks.json and nbody_ranks.png into experiments/results (or DIR;
experiments/results/quick with --quick).

The paper (arXiv 2507.01131, n-body experiment) trains TDNs at L = 2 with CP ranks R = 10, 15, 20,
28, 81 and reports equivariance errors 0.60, 0.42, 0.21, 0.02, < 0.01. Here the "unit" CG tensor
(d = 9) is fitted at each rank with tdn_theory.cp.fit_cp (R = 81 = d^2: Thm 3.2's exact construction)
and the error of the CP tensor product itself is measured, no network around it: the relative
Frobenius error of the fit, eps_rel and eps_abs (experiments/_rank_study.py) over seeded Haar
rotations and uniform unit inputs, the exact Haar RMS and the a-posteriori bound.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from tqdm import tqdm

from experiments._io import machine, write_json_atomic
from experiments._rank_study import (
    add_output_args,
    output_dir,
    rank_record,
    save_figure,
    unit_cg,
)

L = 2
PAPER = {10: 0.60, 15: 0.42, 20: 0.21, 28: 0.02, 81: "<0.01"}


def plot(result: dict, path) -> None:
    """Paper's numbers next to ours (log scale: the errors span decades)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = result["rows"]
    ranks = [r["rank"] for r in rows]
    floor = 1e-17
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    x = np.arange(len(ranks))  # categorical axis: the ranks are not evenly spaced
    for key, marker, label in (
        ("relative_error", "o", "fit: ||M - M_hat||_F / ||M||_F"),
        ("eps_rel_mean", "s", "mean eps_rel"),
        ("haar_rms", "^", "exact Haar RMS of eps_abs"),
    ):
        ax.plot(x, [max(r[key], floor) for r in rows], marker, ms=8, alpha=0.85, label=label)
    paper = [(i, PAPER[R]) for i, R in enumerate(ranks) if isinstance(PAPER[R], float)]
    ax.plot([p[0] for p in paper], [p[1] for p in paper], "kx", ms=11, mew=2, label="paper")
    limit = [i for i, R in enumerate(ranks) if not isinstance(PAPER[R], float)]
    ax.plot(limit, [0.01] * len(limit), "kv", ms=10, label="paper: < 0.01 (upper limit)")
    ax.set_xticks(x)
    ax.set_xticklabels([str(R) for R in ranks])
    ax.set_yscale("log")
    ax.set_xlabel("CP rank R")
    ax.set_ylabel("error (per unit inputs)")
    ax.set_title(f"L = {L}: equivariance error of the CP tensor product (values < 1e-17 clipped)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    save_figure(fig, path)
    plt.close(fig)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_output_args(parser)
    parser.add_argument("--samples", type=int, default=None, help="(R, x, y) samples per rank")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.samples is not None and args.samples < 1:
        parser.error(f"--samples must be >= 1, got {args.samples}")
    restarts, budget = (2, 4.0) if args.quick else (8, 60.0)
    samples = args.samples or (200 if args.quick else 2000)
    out = output_dir(args)
    T = unit_cg(L)
    t0 = time.perf_counter()
    rows = []
    for rank in tqdm(list(PAPER), desc="n-body ranks (L=2)"):
        row = rank_record(
            T, rank, seed=args.seed, restarts=restarts, time_budget=budget, n_samples=samples
        )
        row["paper"] = PAPER[rank]
        rows.append(row)
    result = {
        "experiment": "nbody_ranks",
        "L": L,
        "normalization": "unit",
        "parity": "all",
        "mode": "quick" if args.quick else "full",
        "fit": {"restarts": restarts, "time_budget_s": budget, "seed": args.seed},
        "definitions": {
            "relative_error": "||M - M_hat||_F / ||M||_F",
            "eps_abs": "||M_hat(Dx, Dy) - D M_hat(x, y)||, x, y uniform unit vectors, R Haar",
            "eps_rel": "eps_abs / ||M(x, y)||, M the exact CG product",
            "haar_rms": "exact RMS of eps_abs over Haar R and uniform unit x, y",
            "aposteriori_spectral": "2 ||E_(1)||_2 >= max eps_abs (E = M_hat - M)",
            "paper": "the paper's reported equivariance error (formula not stated)",
        },
        "rows": rows,
        "seconds": time.perf_counter() - t0,
        "machine": machine(),
        "measured_at": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    write_json_atomic(out / "nbody_ranks.json", result)
    plot(result, out / "nbody_ranks.png")
    for r in rows:
        print(
            f"R={r['rank']:3d} paper={r['paper']!s:>6} rel.err={r['relative_error']:.3g} "
            f"eps_rel mean={r['eps_rel_mean']:.3g} haar_rms={r['haar_rms']:.3g}"
        )
    return result


if __name__ == "__main__":
    main()
