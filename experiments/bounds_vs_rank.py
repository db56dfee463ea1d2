"""Equivariance bounds versus CP rank for the unit CG tensor, L = 1..4.

For each L and each rank R on a grid from 1 to beyond the exact rank, take the best known CP of
the "unit" CG tensor from the fit store (``tdn_theory.cp.best_fit``) and record (``tdn_theory.theory.equivariance.check_fit``):

* tensor errors, relative to ||T||_F: the fitted error, the certified Eckart-Young lower bound
  for any rank-R CP, the paper's Thm 3.1 a-priori bound (HOSVD form; vacuous when >= 1);
* equivariance errors per unit inputs: Thm 3.1's 2 B_3.1, the a-posteriori bounds 2 ||E_(1)||_2
  and 2 ||E||_F, the worst case found by the adversarial search, the Monte-Carlo mean over
  Haar rotations and uniform unit inputs, and the exact Haar RMS sqrt(2 ||(I-P) T_hat||^2) / d.

Beyond the grid, Thm 3.2's constructive exact CP (pruned to the non-zero fibres) is added as
an exact point. A second part fits random equivariant maps (random path coefficients) at
increasing rank until the fit is exact (< 1e-10): the smallest rank found per L. A third part
measures the path-weight-sharing layer z_u = sum_v W_uv M(x_u, y_v) with the exact tensor and
with the CP fit at R = 7 L^2.

Writes bounds_vs_rank.json and .png into --out (default experiments/results; atomically). Run:

    OMP_NUM_THREADS=1 python -m experiments.bounds_vs_rank            # fits from the store
    python -m experiments.bounds_vs_rank --quick                      # L = 1, 2 only, ~1 min
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from experiments import _common, _dask, _io
from tdn_theory.cp import EXACT_RTOL
from tdn_theory.so3 import cg_tensor, paths, random_rotations
from tdn_theory.theory.equivariance import FitCheck, check_fit, thm31_bound
from tdn_theory.theory.universality import constructive_cp, random_equivariant_map, rank_scan
from tdn_theory.theory.weight_sharing import (
    shared_weight_product,
    weight_sharing_bound,
    weight_sharing_equivariance_error,
)

NAME = "bounds_vs_rank"

RANK_GRID = {
    1: [1, 2, 3, 4, 5, 6, 7, 8, 9],
    2: [1, 2, 4, 6, 8, 10, 12, 16, 20, 24, 28, 29, 30, 31, 32],
    3: [1, 4, 8, 12, 16, 24, 32, 40, 48, 56, 63, 70, 80, 90, 92, 100],
    4: [1, 8, 16, 32, 48, 64, 80, 96, 112, 128, 160, 192, 224],
}
QUICK_L = (1, 2)


def rank_grid(quick: bool) -> dict[int, list[int]]:
    """The unit/all ranks fitted per L (quick: L = 1, 2 only)."""
    return {L: RANK_GRID[L] for L in (QUICK_L if quick else RANK_GRID)}


# seconds per fit_cp call (the exact fits at L = 3, 4 need the longer budgets)
BUDGET = {1: 10.0, 2: 30.0, 3: 45.0, 4: 60.0}
# ranks tried for random equivariant maps (the scan stops at the first exact fit)
RANDOM_MAP_RANKS = {1: list(range(1, 13)), 2: list(range(20, 40)), 3: [84, 92, 100, 110, 120]}
EXACT_TOL = EXACT_RTOL
#: method of the grid rows: the fit store's best known fit (tdn_theory.cp.best_fit)
FITTED = "fit store"
PLOT_FLOOR = 1e-17


def _row(report: FitCheck, method: str, seconds: float) -> dict:
    norm = report.norm_T
    keep = {
        k: v
        for k, v in report.to_dict().items()
        if not k.startswith("worst_case_") or k == "worst_case_error"
    }
    keep.update(
        method=method,
        fit_seconds=seconds,
        thm31_relative=report.thm31_bound / norm,
        hosvd_relative=report.hosvd_error / norm,
        exact=bool(report.relative_error < EXACT_TOL),
    )
    return keep


def thm31_threshold(T: np.ndarray, L: int) -> dict:
    """Where Thm 3.1 stops being vacuous: the smallest R = R_T^3 with bound < ||T||_F."""
    norm = float(np.linalg.norm(T))
    first = next((r**3 for r in range(1, T.shape[0] + 1) if thm31_bound(T, r**3) < norm), None)
    return {
        "first_nonvacuous_rank": first,
        "relative_bound_at_first_nonvacuous": None
        if first is None
        else thm31_bound(T, first) / norm,
        "zero_at_rank": int(T.shape[0]) ** 3,
        "relative_bound_at_7L2": thm31_bound(T, 7 * L * L) / norm,
    }


def check_unit(
    unit: tuple[int, int | None], *, seed: int, n_rotations: int, starts: int, store, quick: bool
) -> tuple[dict, object]:
    """One unit (L, rank) of the grid, rank None for Thm 3.2's construction: (row, fit or None)."""
    L, rank = unit
    T = cg_tensor(L)
    kw = {"n_rotations": n_rotations, "seed": seed, "worst_case": True}
    if rank is None:
        A, B, C = constructive_cp(T, prune=True)
        rep = check_fit(T, (A, B, C), worst_case_starts=starts, **kw)
        print(f"L={L} constructive R={A.shape[1]} rel={rep.relative_error:.1e}", flush=True)
        return _row(rep, "constructive (Thm 3.2, pruned)", 0.0), None
    t0 = time.perf_counter()
    fit, _info = _common.stored_fit(L, rank, store, quick=quick)
    seconds = time.perf_counter() - t0
    rep = check_fit(T, fit, worst_case_starts=starts, **kw)
    print(
        f"L={L} R={rank:4d} rel={rep.relative_error:.3e} "
        f"lower={rep.relative_lower_bound:.3e} thm31={rep.thm31_bound / rep.norm_T:.3f} "
        f"post={rep.aposteriori_spectral:.3e} worst={rep.worst_case_error:.3e} "
        f"mc={rep.mc_mean_error:.3e} ({seconds:.1f}s)",
        flush=True,
    )
    return _row(rep, FITTED, seconds), (fit if rank == 7 * L * L else None)


def bounds_part(
    Ls: list[int], seed: int, n_rotations: int, starts: int, store, quick: bool, pool=None
) -> tuple[dict, dict]:
    """Returns (results per L, the fitted factors at the paper's rank 7 L^2 per L); the (L, rank)
    units run on `pool` (experiments/_dask.Units; serial when None)."""
    units = [(L, rank) for L in Ls for rank in [*RANK_GRID[L], None]]
    kw = {"seed": seed, "n_rotations": n_rotations, "starts": starts, "store": store}
    results = (pool or _dask.Units(None)).map(check_unit, units, quick=quick, **kw)
    out, paper_fits = {}, {}
    for L in Ls:
        T = cg_tensor(L)
        rows = [row for (L_, _), (row, _) in zip(units, results, strict=True) if L_ == L]
        for (L_, _), (_, fit) in zip(units, results, strict=True):
            if L_ == L and fit is not None:
                paper_fits[L] = fit
        threshold = thm31_threshold(T, L)
        inexact = [r for r in rows if not r["exact"]]
        ratios = [r["tightness_spectral"] for r in inexact]
        exact_ranks = [r["rank"] for r in rows if r["exact"] and r["method"] == FITTED]
        out[str(L)] = {
            "d": int(T.shape[0]),
            "paths": len(paths(L)),
            "norm_T": float(np.linalg.norm(T)),
            "rows": rows,
            "thm31": threshold,
            "smallest_exact_fitted_rank": min(exact_ranks) if exact_ranks else None,
            "tightness_spectral_range": [min(ratios), max(ratios)] if ratios else None,
            "tightness_projected_range": (
                [
                    min(r["tightness_projected"] for r in inexact),
                    max(r["tightness_projected"] for r in inexact),
                ]
                if inexact
                else None
            ),
            "tightness_frobenius_range": (
                [
                    min(r["tightness_frobenius"] for r in inexact),
                    max(r["tightness_frobenius"] for r in inexact),
                ]
                if inexact
                else None
            ),
        }
    return out, paper_fits


def weight_sharing_part(paper_fits: dict, seed: int, channels: int = 16, n_rot: int = 50) -> dict:
    """Shared-W layer z_u = sum_v W_uv M(x_u, y_v): defect with the exact tensor and with the CP fit
    at R = 7 L^2, over seeded Haar rotations and Gaussian W (scaled 1/sqrt(V)), x, y."""
    out = {}
    for L, fit in paper_fits.items():
        T = cg_tensor(L)
        d = T.shape[0]
        rng = np.random.default_rng(seed)
        W = rng.standard_normal((channels, channels)) / np.sqrt(channels)
        x = rng.standard_normal((channels, d))
        y = rng.standard_normal((channels, d))
        # per unit inputs of the one product that z_u is: ||x_u|| ||(W y)_u||
        scale = np.linalg.norm(x, axis=1) * np.linalg.norm(W @ y, axis=1)
        z_norm = np.linalg.norm(shared_weight_product(T, W, x, y), axis=1)
        bound = weight_sharing_bound(T, fit, W, x, y)
        exact_rel, cp_rel, cp_unit, ratio = 0.0, 0.0, 0.0, 0.0
        for R in random_rotations(n_rot, rng):
            e_exact = weight_sharing_equivariance_error(T, W, x, y, R)
            e_cp = weight_sharing_equivariance_error(fit, W, x, y, R)
            exact_rel = max(exact_rel, float(np.max(e_exact / scale)))
            cp_unit = max(cp_unit, float(np.max(e_cp / scale)))
            cp_rel = max(cp_rel, float(np.max(e_cp / z_norm)))
            ratio = max(ratio, float(np.max(e_cp / bound)))
        out[str(L)] = {
            "rank": int(fit.A.shape[1]),
            "channels": channels,
            "rotations": n_rot,
            "exact_max_defect_per_unit_inputs": exact_rel,
            "cp_max_defect_per_unit_inputs": cp_unit,
            "cp_max_defect_over_output_norm": cp_rel,
            "cp_max_defect_over_bound": ratio,
        }
        print(f"weight sharing L={L}: {out[str(L)]}", flush=True)
    return out


def random_map_part(Ls: list[int], seed: int, budget: float | None) -> dict:
    out = {}
    for L in Ls:
        T = random_equivariant_map(L, seed)
        t0 = time.perf_counter()
        scan = rank_scan(
            T,
            RANDOM_MAP_RANKS[L],
            seed=seed,
            exact_tol=EXACT_TOL,
            fit_kwargs={"restarts": 4, "time_budget": budget or BUDGET[L]},
        )
        scan["seconds"] = time.perf_counter() - t0
        scan["constructive_rank"] = int(T.shape[1] * T.shape[2])
        scan["map_seed"] = seed
        out[str(L)] = scan
        print(f"random map L={L}: {scan}", flush=True)
    return out


def closing_note(bounds: dict, maps: dict, sharing: dict) -> str:
    lines = []
    for L, part in bounds.items():
        th = part["thm31"]
        fitted = [r for r in part["rows"] if r["method"] == FITTED]
        if part["smallest_exact_fitted_rank"] is not None:
            exact = f"the fitted CP is exact (< {EXACT_TOL:g}) from R = {part['smallest_exact_fitted_rank']}"
        else:
            last = fitted[-1]
            exact = (
                f"no fitted rank up to {last['rank']} was exact within the time budget (error "
                f"{last['relative_error']:.1e} there); exact only via Thm 3.2's construction"
            )
        cons = [r["rank"] for r in part["rows"] if r["method"] != FITTED]
        lines.append(
            f"L={L}: Thm 3.1 is vacuous (bound >= ||T||_F) for every R < {th['first_nonvacuous_rank']} "
            f"(relative bound {th['relative_bound_at_7L2']:.2f} at the paper's R = 7L^2), i.e. beyond "
            f"Thm 3.2's exact rank {cons[0] if cons else 'd^2'}; {exact}. Worst case found / "
            f"a-posteriori bound over the inexact fits: spectral "
            f"{part['tightness_spectral_range'][0]:.2f}-{part['tightness_spectral_range'][1]:.2f}, "
            f"projected {part['tightness_projected_range'][0]:.2f}-"
            f"{part['tightness_projected_range'][1]:.2f}, Frobenius "
            f"{part['tightness_frobenius_range'][0]:.2f}-{part['tightness_frobenius_range'][1]:.2f}."
        )
    for L, scan in maps.items():
        lines.append(
            f"Random equivariant map L={L}: smallest exact rank found {scan['smallest_exact_rank']} "
            f"(ranks tried {scan['ranks']}; constructive {scan['constructive_rank']})."
        )
    for L, ws in sharing.items():
        lines.append(
            f"Shared weights L={L}: max ||defect_u|| / (||x_u|| ||(Wy)_u||) = "
            f"{ws['exact_max_defect_per_unit_inputs']:.1e} with the exact tensor, "
            f"{ws['cp_max_defect_per_unit_inputs']:.1e} with the CP fit at R = {ws['rank']} "
            f"(<= {ws['cp_max_defect_over_bound']:.2f} x the per-channel bound; "
            f"{ws['cp_max_defect_over_output_norm']:.1e} of ||z_u||)."
        )
    return "\n".join(lines)


def plot(bounds: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    Ls = sorted(bounds, key=int)
    fig, axes = plt.subplots(2, len(Ls), figsize=(4.0 * len(Ls) + 3.2, 8.5), squeeze=False)
    for col, L in enumerate(Ls):
        rows = bounds[L]["rows"]
        fitted = [r for r in rows if r["method"] == FITTED]
        cons = [r for r in rows if r["method"] != FITTED]
        R = np.array([r["rank"] for r in fitted])

        def series(key, rs=fitted):
            return np.maximum(np.array([r[key] for r in rs], dtype=float), PLOT_FLOOR)

        ax = axes[0, col]
        ax.plot(R, series("relative_error"), "o-", label="fitted CP error")
        ax.plot(
            R, series("relative_lower_bound"), "s--", label="certified lower bound (any rank-R CP)"
        )
        ax.plot(R, series("thm31_relative"), "^-", label="Thm 3.1 a-priori bound (HOSVD)")
        ax.plot(R, series("hosvd_relative"), "v:", label="HOSVD truncation, actual error")
        ax.axhline(1.0, color="grey", lw=1, ls="--", label="vacuous above (= ||T||_F)")
        if cons:
            ax.text(
                0.97,
                0.5,
                f"Thm 3.2 constructive CP:\nexact at R = {cons[0]['rank']}",
                transform=ax.transAxes,
                ha="right",
                va="center",
                fontsize=8,
                bbox={"facecolor": "white", "edgecolor": "grey", "alpha": 0.9},
            )
        ax.axvline(7 * int(L) ** 2, color="C3", lw=0.8, ls=":", label="paper's R = 7L^2")
        ax.set_yscale("log")
        ax.set_title(f"L = {L}: tensor error / ||T||_F")
        ax.set_xlabel("CP rank R")
        ax.set_ylabel("relative Frobenius error")
        ax = axes[1, col]
        ax.plot(R, series("thm31_equivariance_bound"), "^-", label="Thm 3.1: 2 B_3.1")
        ax.plot(R, series("aposteriori_frobenius"), "d--", label="a-posteriori 2||E||_F")
        ax.plot(R, series("aposteriori_spectral"), "s-", label="a-posteriori 2||E_(1)||_2")
        ax.plot(R, series("aposteriori_projected"), "p-", label="a-posteriori 2||((I-P)E)_(1)||_2")
        ax.plot(R, series("worst_case_error"), "o-", label="worst case found")
        ax.plot(R, series("mc_mean_error"), "x-", label="Monte-Carlo mean")
        ax.plot(R, series("haar_rms_error"), "+:", label="exact Haar RMS")
        ax.axvline(7 * int(L) ** 2, color="C3", lw=0.8, ls=":")
        ax.set_yscale("log")
        ax.set_title(f"L = {L}: equivariance error, unit inputs")
        ax.set_xlabel("CP rank R")
        ax.set_ylabel("||M(Dx,Dy) - D M(x,y)||, ||x|| = ||y|| = 1")
    for row in range(2):
        axes[row, -1].legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.03, 1.0))
    fig.suptitle(
        "Unit CG tensor: CP fits, certified bounds and equivariance errors vs rank\n"
        "(exact zeros drawn at 1e-17; all fits seeded, time-budgeted)"
    )
    fig.tight_layout()
    _io.save_figure_atomic(fig, path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    _common.add_common_args(parser)
    _common.add_store_arg(parser)
    parser.add_argument("--L", type=int, nargs="+", default=None, help="degrees (1..4; quick 1 2)")
    parser.add_argument(
        "--random-map-L",
        type=int,
        nargs="*",
        default=None,
        help="degrees of the random-map part (1 2 3; quick 1)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--budget",
        type=float,
        default=None,
        help="seconds per random-map fit (default: per L, see BUDGET; quick 5)",
    )
    parser.add_argument("--n-rotations", type=int, default=None, help="(200; quick 50)")
    parser.add_argument("--starts", type=int, default=4, help="adversarial search starts")
    parser.add_argument(
        "--replot",
        action="store_true",
        help="no fitting: redraw the PNG and rewrite the closing note from an existing JSON in --out",
    )
    _dask.add_args(parser)
    args = parser.parse_args(argv)
    _dask.check_args(args)
    out = _common.output_dir(args)
    path = out / f"{NAME}.json"
    if args.replot:
        if not path.is_file():
            parser.exit(2, f"error: --replot needs an existing JSON; {path} not found\n")
        result = json.loads(path.read_text())
        result["closing_note"] = closing_note(
            result["bounds"], result["random_maps"], result["weight_sharing"]
        )
        _io.write_json_atomic(path, result, indent=1)
        plot(result["bounds"], path.with_suffix(".png"))
        print(result["closing_note"])
        print(f"rewrote the closing note of {path}; wrote {path.with_suffix('.png')}")
        return 0
    if args.L is None:
        args.L = list(QUICK_L) if args.quick else [1, 2, 3, 4]
    if args.random_map_L is None:
        args.random_map_L = [1] if args.quick else [1, 2, 3]
    if args.n_rotations is None:
        args.n_rotations = 50 if args.quick else 200
    if args.quick and args.budget is None:
        args.budget = 5.0
    bad = [L for L in args.L + args.random_map_L if L not in RANK_GRID]
    if bad:
        parser.exit(2, f"error: L must be among {sorted(RANK_GRID)}; got {bad}\n")
    if args.budget is not None and args.budget <= 0:
        parser.exit(2, "error: --budget must be a positive number of seconds\n")
    store = _common.fit_store(args, out)
    run = _common.Run(NAME, args, argv)
    with _dask.units(args) as pool:
        bounds, paper_fits = bounds_part(
            args.L, args.seed, args.n_rotations, args.starts, store, args.quick, pool
        )
    sharing = weight_sharing_part(paper_fits, args.seed)
    maps = random_map_part(args.random_map_L, args.seed, args.budget)
    note = closing_note(bounds, maps, sharing)
    result = {
        "description": __doc__.splitlines()[0],
        "settings": {
            "seed": args.seed,
            "fits": "the fit store's best known (tdn_theory.cp.best_fit)",
            "store": str(store.folder),
            "random_map_fit_cp": {"restarts": 4, "time_budget_s": args.budget or BUDGET},
            "n_rotations": args.n_rotations,
            "worst_case_starts": args.starts,
            "exact_tol": EXACT_TOL,
            "normalization": "unit",
        },
        "bounds": bounds,
        "random_maps": maps,
        "weight_sharing": sharing,
        "closing_note": note,
    }
    out.mkdir(parents=True, exist_ok=True)
    run.write(out, result)
    plot(bounds, path.with_suffix(".png"))
    print(note)
    print(f"wrote {path} and {path.with_suffix('.png')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
