"""The paper's four rank schedules versus L: approximation error, equivariance error, layer time.

Usage: ``python -m experiments.rank_schedules [--quick] [--out DIR] [--max-L L] [--seed S]``.
Writes rank_schedules.json and rank_schedules.png into experiments/results (or DIR;
experiments/results/quick with --quick). Reads error_vs_rank.json from the same folder when it
exists (run experiments.error_vs_rank first, as run_all does); other ranks come from the fit store
(tdn_theory.cp.store), whose smallest exact unit fit gives the "smallest exact rank" row; the
certified rank lower bound is read from rank_atlas.json.

The counterpart of the paper's Fig. 3: for L = 1..6 and the schedules R = 7L, 7L^2,
ceil(16 ln^2(L+1)) and (L+1)^4 = d^2 (Thm 3.2's exact construction), plus "smallest exact rank"
(the smallest rank with a CP exact to 1e-10 known here: the rank atlas's when its results exist,
else this study's grid, else d^2; an upper bound on the CP rank, recorded next to the atlas's
certified lower bound on the rank):

* relative_error ||M - M_hat||_F / ||M||_F and the certified lower bound (experiments.error_vs_rank);
* equivariance error: exact Haar RMS of eps_abs and median eps_rel (experiments/_rank_study.py);
* layer time: median wall time of one forward of tdn_theory.nn.CPTensorProduct (float32, CPU,
  one torch thread, `batch` samples x `channels` channels; the time does not depend on the
  factor values) next to the dense tdn_theory.nn.CGTensorProduct. The machine is shared, so
  timings are noisy; the JSON records the machine.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np
from tqdm import tqdm

from experiments import _common, _io
from experiments._rank_study import (
    SCHEDULES,
    add_max_L_arg,
    rank_record,
    resolve_max_L,
    unit_cg,
)
from tdn_theory.cp import EXACT_RTOL

NAME = "rank_schedules"
SMALLEST = "smallest exact rank found"


def time_forward(layer, x, y, repeats: int) -> float:
    """Median seconds of layer(x, y) over `repeats` runs after two warm-up calls."""
    import torch

    times = []
    with torch.no_grad():
        for i in range(repeats + 2):
            t0 = time.perf_counter()
            layer(x, y)
            if i >= 2:
                times.append(time.perf_counter() - t0)
    return float(np.median(times))


def layer_times(L: int, ranks: dict[str, int], batch: int, channels: int, repeats: int, seed: int):
    """Seconds per forward of CPTensorProduct at each schedule rank and of CGTensorProduct."""
    import torch

    from tdn_theory.nn import CGTensorProduct, CPTensorProduct

    torch.set_num_threads(1)
    d = (L + 1) ** 2
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, channels, d, generator=gen)
    y = torch.randn(batch, d, generator=gen)
    out = {}
    for name, R in ranks.items():
        A, B, C = (torch.randn(d, R, generator=gen) for _ in range(3))
        out[name] = time_forward(CPTensorProduct(A, B, C), x, y, repeats)
    out["dense CG"] = time_forward(CGTensorProduct(L, dtype=torch.float32), x, y, repeats)
    return out


def known_rows(out_dir) -> dict[tuple[int, int], dict]:
    """(L, R) -> row of error_vs_rank.json in out_dir (empty when the file is missing)."""
    path = out_dir / "error_vs_rank.json"
    if not path.exists():
        return {}
    data = json.loads(path.read_text())
    return {(b["L"], r["rank"]): r for b in data["per_L"] for r in b["rows"]}


def smallest_exact(L: int, store, out_dir) -> dict:
    """The smallest rank of an exact CP (error < EXACT_RTOL) of the unit CG tensor in the store.

    The store (tdn_theory.cp.store) holds the rank atlas's exact fits and constructions; the
    certified lower bound on the rank comes from out_dir/rank_atlas.json (None when missing).
    Falls back to Thm 3.2's construction R = d^2. Returns {"rank", "how", "factors" (or None),
    "rank_lower_bound"}.
    """
    from tdn_theory.cp import available, best_known

    found: dict = {"factors": None, "rank_lower_bound": None}
    atlas_path = out_dir / "rank_atlas.json"
    if not atlas_path.exists():
        atlas_path = _io.RESULTS / "rank_atlas.json"
    if atlas_path.exists():
        row = json.loads(atlas_path.read_text()).get("rows", {}).get(f"unit/all/{L}", {})
        found["rank_lower_bound"] = (row.get("lower") or {}).get("value")
    for key in available(store, L=L, normalization="unit", parity="all"):
        fit = best_known(L, key.rank, store=store)
        if fit.relative_error < EXACT_RTOL:
            found.update(rank=key.rank, how=f"fit store ({key.filename})", factors=fit.factors)
            return found
    found.update(rank=(L + 1) ** 4, how="Thm 3.2 construction d^2 (no smaller exact CP known)")
    return found


def figure(result: dict):
    """Three panels versus L: relative error, equivariance error (Haar RMS), layer time."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    floor = 1e-16
    Ls = [b["L"] for b in result["per_L"]]
    names = list(SCHEDULES) + [SMALLEST]
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.2))
    for i, name in enumerate(names):
        rows = [b["schedules"][name] for b in result["per_L"]]
        style = dict(marker="os^vD"[i], label=name, ms=9 - 1.5 * i, alpha=0.85)
        axes[0].plot(Ls, [max(r["relative_error"], floor) for r in rows], **style)
        axes[1].plot(Ls, [max(r["haar_rms"], floor) for r in rows], **style)
        axes[2].plot(Ls, [r["layer_seconds"] * 1e3 for r in rows], **style)
    axes[0].plot(
        Ls,
        [max(b["schedules"]["7L"]["certified_lower_bound"], floor) for b in result["per_L"]],
        "k--",
        label="certified lower bound at 7L (0 for R >= d)",
    )
    axes[2].plot(
        Ls, [b["dense_cg_seconds"] * 1e3 for b in result["per_L"]], "k--", label="dense CG product"
    )
    titles = [
        "approximation error ||M - M_hat|| / ||M||",
        "equivariance error (exact Haar RMS, unit inputs)",
        f"forward time ({result['timing']['batch']} x {result['timing']['channels']} channels, "
        "1 thread)",
    ]
    ylabels = ["relative error (< 1e-16 clipped)", "RMS eps_abs (< 1e-16 clipped)", "ms"]
    for ax, title, ylabel in zip(axes, titles, ylabels, strict=True):
        ax.set_yscale("log")
        ax.set_xlabel("maximal degree L")
        ax.set_ylabel(ylabel)
        ax.set_title(title, fontsize=10)
        ax.set_xticks(Ls)
        ax.grid(True, which="both", alpha=0.3)
    axes[0].legend(fontsize=7)
    axes[2].legend(fontsize=7)
    fig.suptitle(
        "The paper's rank schedules (unit CG tensor, best known CP fits, tdn_theory.cp.best_known)"
    )
    fig.tight_layout()
    return fig


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    _common.add_common_args(parser)
    _common.add_store_arg(parser)
    add_max_L_arg(parser)
    parser.add_argument("--seed", type=int, default=0, help="seed of the samples and timing data")
    args = parser.parse_args(argv)
    max_L = resolve_max_L(args, parser)
    batch, channels, repeats = (64, 8, 5) if args.quick else (256, 32, 15)
    samples = 100 if args.quick else 500
    out = _common.output_dir(args)
    store = _common.fit_store(args, out)
    run = _common.Run(NAME, args, argv)
    rows = known_rows(out)
    per_L = []
    for L in tqdm(range(1, max_L + 1), desc="rank schedules", disable=None):
        T = unit_cg(L)
        ranks = {name: f(L) for name, f in SCHEDULES.items()}
        smallest = smallest_exact(L, store, out)
        ranks[SMALLEST] = smallest["rank"]
        block: dict = {"L": L, "d": (L + 1) ** 2, "schedules": {}}
        for name, R in ranks.items():
            if (L, R) in rows:
                row = dict(rows[(L, R)], source="error_vs_rank.json")
            else:
                row = rank_record(
                    T,
                    R,
                    seed=args.seed,
                    n_samples=samples,
                    store=store,
                    quick=args.quick,
                    factors=smallest["factors"] if name == SMALLEST else None,
                    info={"method": smallest["how"]} if name == SMALLEST else None,
                )
                row["source"] = "computed here"
                rows[(L, R)] = row
            block["schedules"][name] = row
        block["schedules"][SMALLEST]["how"] = smallest["how"]
        block["rank_lower_bound"] = smallest["rank_lower_bound"]
        times = layer_times(L, ranks, batch, channels, repeats, args.seed)
        for name in ranks:
            block["schedules"][name]["layer_seconds"] = times[name]
        block["dense_cg_seconds"] = times["dense CG"]
        per_L.append(block)
    result = {
        "experiment": NAME,
        "normalization": "unit",
        "parity": "all",
        "schedules": {
            "7L": "7 L",
            "7L^2": "7 L^2",
            "16log^2(L+1)": "ceil(16 ln(L+1)^2)",
            "(L+1)^4": "(L+1)^4 = d^2, Thm 3.2's exact construction",
            SMALLEST: f"smallest rank with a fit exact to {EXACT_RTOL} (upper bound on CP rank)",
        },
        "timing": {
            "layer": "tdn_theory.nn.CPTensorProduct (random factors), float32, torch 1 thread",
            "batch": batch,
            "channels": channels,
            "repeats": repeats,
            "statistic": "median seconds per forward",
            "note": "shared 2-core VM: timings are noisy",
        },
        "per_L": per_L,
    }
    run.write(out, result, figure=figure(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
