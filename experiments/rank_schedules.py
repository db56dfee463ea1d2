"""The paper's four rank schedules versus L: approximation error, equivariance error, layer time.

Usage: ``python -m experiments.rank_schedules [--quick] [--out DIR] [--max-L L] [--seed S]``.
Writes rank_schedules.json and rank_schedules.png into experiments/results (or DIR;
experiments/results/quick with --quick). Reads error_vs_rank.json from the same folder when it
exists (run experiments.error_vs_rank first, as run_all does) and fits only the ranks it lacks;
reads rank_atlas.json and its factors/ from the same folder when they exist.

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
import time

import numpy as np
from tqdm import tqdm

from experiments._io import machine, write_json_atomic
from experiments._rank_study import (
    SCHEDULES,
    add_max_L_arg,
    add_output_args,
    output_dir,
    rank_record,
    resolve_max_L,
    save_figure,
    unit_cg,
)

EXACT_RTOL = 1e-10
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


def smallest_exact(L: int, rows: dict[tuple[int, int], dict], out_dir) -> dict:
    """The smallest rank known to give an exact CP of the unit CG tensor at degree L.

    Sources, in order: the rank atlas (out_dir/rank_atlas.json, row "unit/all/L", with its
    factor file under out_dir/factors), the smallest exact fit (< EXACT_RTOL) among `rows`
    (error_vs_rank), Thm 3.2's construction R = d^2. Returns {"rank", "how", "factors" (or
    None), "rank_lower_bound" (certified, from the atlas, or None)}.
    """
    found: dict = {"factors": None, "rank_lower_bound": None}
    atlas_path = out_dir / "rank_atlas.json"
    if atlas_path.exists():
        row = json.loads(atlas_path.read_text()).get("rows", {}).get(f"unit/all/{L}", {})
        lower = row.get("lower") or {}
        found["rank_lower_bound"] = lower.get("value")
        upper = row.get("upper") or {}
        factor_file = out_dir / "factors" / str(upper.get("file", ""))
        if upper.get("rank") and upper.get("file") and factor_file.is_file():
            from tdn_theory.cp import load_factors

            fit, _meta = load_factors(factor_file)
            found.update(
                rank=int(upper["rank"]),
                how=f"rank atlas ({upper.get('source', '?')}; {factor_file.name})",
                factors=fit.factors,
            )
            return found
    exact = sorted(R for (l, R), r in rows.items() if l == L and r["relative_error"] < EXACT_RTOL)
    if exact:
        found.update(rank=exact[0], how="smallest exact fit on the error_vs_rank grid")
    else:
        found.update(rank=(L + 1) ** 4, how="Thm 3.2 construction d^2 (no smaller exact CP known)")
    return found


def plot(result: dict, path) -> None:
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
    fig.suptitle("The paper's rank schedules (unit CG tensor, CP fits by tdn_theory.cp.fit_cp)")
    fig.tight_layout()
    save_figure(fig, path)
    plt.close(fig)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_output_args(parser)
    add_max_L_arg(parser)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    max_L = resolve_max_L(args, parser)
    from experiments.error_vs_rank import FULL_FIT, QUICK_FIT

    batch, channels, repeats = (64, 8, 5) if args.quick else (256, 32, 15)
    samples = 100 if args.quick else 500
    out = output_dir(args)
    rows = known_rows(out)
    t0 = time.perf_counter()
    per_L = []
    for L in tqdm(range(1, max_L + 1), desc="rank schedules"):
        T = unit_cg(L)
        ranks = {name: f(L) for name, f in SCHEDULES.items()}
        smallest = smallest_exact(L, rows, out)
        ranks[SMALLEST] = smallest["rank"]
        restarts, budget = QUICK_FIT if args.quick else FULL_FIT[L]
        block: dict = {"L": L, "d": (L + 1) ** 2, "schedules": {}}
        for name, R in ranks.items():
            if name == SMALLEST and smallest["factors"] is not None:
                row = rank_record(
                    T,
                    R,
                    seed=args.seed,
                    restarts=restarts,
                    time_budget=budget,
                    n_samples=samples,
                    factors=smallest["factors"],
                    info={"method": "exact factors from the rank atlas"},
                )
                row["source"] = "rank_atlas.json"
            elif (L, R) in rows:
                row = dict(rows[(L, R)], source="error_vs_rank.json")
            else:
                row = rank_record(
                    T, R, seed=args.seed, restarts=restarts, time_budget=budget, n_samples=samples
                )
                row["source"] = "fitted here"
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
        "experiment": "rank_schedules",
        "normalization": "unit",
        "parity": "all",
        "mode": "quick" if args.quick else "full",
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
        "seconds": time.perf_counter() - t0,
        "machine": machine(),
        "measured_at": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    write_json_atomic(out / "rank_schedules.json", result)
    plot(result, out / "rank_schedules.png")
    return result


if __name__ == "__main__":
    main()
