"""Equivariance error of the paper's n-body ranks at L = 2, on the tensor product alone.

Usage: ``python -m experiments.nbody_ranks [--quick] [--out DIR] [--samples N] [--seed S]``.
Writes nbody_ranks.json and nbody_ranks.png into experiments/results (or DIR;
experiments/results/quick with --quick).

The paper (arXiv 2507.01131, n-body experiment) trains TDNs at L = 2 with CP ranks R = 10, 15, 20,
28, 81 and reports equivariance errors 0.60, 0.42, 0.21, 0.02, < 0.01. Here the "unit" CG tensor
(d = 9) is taken at each rank from the fit store (tdn_theory.cp.best_fit; R = 81 = d^2: Thm 3.2's exact construction)
and the error of the CP tensor product itself is measured, no network around it: the relative
Frobenius error of the fit, eps_rel and eps_abs (experiments/_rank_study.py) over seeded Haar
rotations and uniform unit inputs, the exact Haar RMS and the a-posteriori bound.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
from tqdm import tqdm

from experiments import _common
from experiments._rank_study import rank_record, unit_cg

NAME = "nbody_ranks"
L = 2
PAPER = {10: 0.60, 15: 0.42, 20: 0.21, 28: 0.02, 81: "<0.01"}


def figure(result: dict):
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
    return fig


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    _common.add_common_args(parser)
    _common.add_store_arg(parser)
    parser.add_argument("--samples", type=int, default=None, help="(R, x, y) samples per rank")
    parser.add_argument("--seed", type=int, default=0, help="seed of the sampled rotations/inputs")
    args = parser.parse_args(argv)
    if args.samples is not None and args.samples < 1:
        parser.error(f"--samples must be >= 1, got {args.samples}")
    samples = args.samples or (200 if args.quick else 2000)
    out = _common.output_dir(args)
    store = _common.fit_store(args, out)
    run = _common.Run(NAME, args, argv)
    T = unit_cg(L)
    rows = []
    for rank in tqdm(list(PAPER), desc="n-body ranks (L=2)", disable=None):
        row = rank_record(T, rank, seed=args.seed, n_samples=samples, store=store, quick=args.quick)
        row["paper"] = PAPER[rank]
        rows.append(row)
    result = {
        "experiment": NAME,
        "L": L,
        "normalization": "unit",
        "parity": "all",
        "store": str(store.folder),
        "definitions": {
            "relative_error": "||M - M_hat||_F / ||M||_F",
            "eps_abs": "||M_hat(Dx, Dy) - D M_hat(x, y)||, x, y uniform unit vectors, R Haar",
            "eps_rel": "eps_abs / ||M(x, y)||, M the exact CG product",
            "haar_rms": "exact RMS of eps_abs over Haar R and uniform unit x, y",
            "aposteriori_spectral": "2 ||E_(1)||_2 >= max eps_abs (E = M_hat - M)",
            "paper": "the paper's reported equivariance error (formula not stated)",
        },
        "rows": rows,
    }
    run.write(out, result, figure=figure(result))
    for r in rows:
        print(
            f"R={r['rank']:3d} paper={r['paper']!s:>6} rel.err={r['relative_error']:.3g} "
            f"eps_rel mean={r['eps_rel_mean']:.3g} haar_rms={r['haar_rms']:.3g}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
