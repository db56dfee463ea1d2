"""Exact sphere CP (quadrature, rank 3N) against the approximate "unit" CP at 7 L^2 and e3nn.

Usage::

    python -m experiments.exact_vs_approximate [--quick] [--out DIR] [--max-L 8] [--fit-max-L 6]
        [--compress-max-L 3] [--compress-budget 150] [--batch 256] [--channels 16]
        [--repeats 5] [--threads 1] [--rotations 20] [--seed 0]

For L = 1..max-L it records (experiments/results/exact_vs_approximate.json, .png):

* ranks: N (points of the smallest Lebedev / Gauss–Legendre rule exact to degree 3L or 3L-1),
  3N (exact full-parity sphere CP), N (exact Gaunt CP), the construction time and relative
  error; for L <= compress-max-L the smallest exact rank found by ``cp.compress.compress_exact``
  from the construction, for the Gaunt part, the curl part and the full tensor (each within
  compress-budget seconds; for the full tensor the table reports the smaller of its own result
  and the sum of the two parts' results; an upper bound on the CP rank, not a proof);
* the approximate unit-normalized CP at R = 7 L^2 (the paper's rank), the fit store's best known
  (``tdn_theory.cp.best_fit``) for L <= fit-max-L (larger L: timing only, with
  random factors of the same shape, since the layer time does not depend on the values);
* forward time (float32, ``torch.no_grad``, median of ``repeats`` after one warm-up) of
  ``nn.CPTensorProduct`` with the exact sphere factors (rank 3N), with the 7 L^2 factors, of the
  dense ``nn.CGTensorProduct`` and of e3nn's "uvu" TensorProduct over all paths (unit weights),
  for x of shape (batch, channels, d) and y (batch, d);
* equivariance error (float64) of each layer: max over ``rotations`` Haar rotations with random
  unit x (one channel), y of ``|f(Dx, Dy) - D f(x, y)| / ||T||_F`` (T the layer's own tensor).

Timings come from a shared 2-core VM: they are noisy; ``--threads`` sets torch's thread count.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from experiments import _common
from tdn_theory import so3
from tdn_theory.cp.compress import compress_exact
from tdn_theory.cp.quadrature import sphere_cp, sphere_tensor
from tdn_theory.nn import CGTensorProduct, CPTensorProduct
from tdn_theory.nn.irreps_layout import (
    e3nn_path_weights,
    e3nn_tensor_product,
    from_e3nn_layout,
    to_e3nn_layout,
)
from tdn_theory.testing.equivariance import equivariance_defects, unit_inputs


def _median_ms(fn, repeats: int) -> float:
    with torch.no_grad():
        fn()  # warm-up
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
    return 1e3 * float(np.median(times))


def layer_equivariance(forward, L: int, norm: float, n: int, seed: int) -> float:
    """max_n |f(D x_n, D y_n) - D f(x_n, y_n)| / norm; unit x_n (one channel), y_n; float64.

    Rotations, then x, then y from np.random.default_rng(seed); the defects are
    tdn_theory.testing.equivariance.equivariance_defects (the sampling code of assert_equivariant),
    divided here by the fixed ``norm`` (||T||_F) rather than by each output's norm.
    """
    rng = np.random.default_rng(seed)
    Rs = so3.random_rotations(n, rng)
    d = so3.dim(L)
    x, y = unit_inputs(rng, (n, 1, d)), unit_inputs(rng, (n, d))
    defect, _ = equivariance_defects(forward, L, Rs, (x, y), dtype=torch.float64)
    return float(defect.max()) / norm


def _e3nn_forward(L: int, channels: int, dtype: torch.dtype):
    tp = e3nn_tensor_product(L, channels, dtype=dtype)

    def forward(x: torch.Tensor, y: torch.Tensor, weights: torch.Tensor | None = None):
        if weights is None:
            ones = torch.ones(*x.shape[:-2], channels, dtype=dtype)
            weights = e3nn_path_weights(ones, L, "unit")
        return from_e3nn_layout(tp(to_e3nn_layout(x), y, weights), L, channels)

    return tp, forward


def measure(L: int, args: argparse.Namespace) -> dict[str, Any]:
    row: dict[str, Any] = {"L": L, "d": so3.dim(L), "n_paths": len(so3.paths(L))}
    # --- exact sphere constructions ------------------------------------------------------
    rules = {}
    for rule in ("lebedev", "gauss-legendre"):
        t0 = time.perf_counter()
        fit = sphere_cp(L, "all", rule)
        seconds = time.perf_counter() - t0
        even = sphere_cp(L, "even", rule)
        rules[rule] = {
            "points": fit.history[0]["points"],
            "degree": fit.history[0]["degree"],
            "rank_all": fit.rank,
            "rank_even": even.rank,
            "relative_error_all": fit.relative_error,
            "relative_error_even": even.relative_error,
            "seconds_all": seconds,
        }
        if rule == "lebedev":
            sphere_fit, gaunt_fit = fit, even
    row["sphere"] = rules
    if L <= args.compress_max_L:
        row["compressed"] = {}
        odd_fit = sphere_cp(L, "odd", "lebedev")
        for parity, start in (("even", gaunt_fit), ("odd", odd_fit), ("all", sphere_fit)):
            res = compress_exact(
                sphere_tensor(L, parity),
                *start.factors,
                time_budget=args.compress_budget,
                seed=args.seed,
            )
            row["compressed"][parity] = {
                "start_rank": res.start_rank,
                "smallest_exact_rank": res.smallest_rank,
                "relative_error": res.fit.relative_error,
                "unfolding_floor": res.floor,
                "max_term": res.max_term,
                "stopped": res.stopped,
                "seconds": res.seconds,
                "attempts": len(res.attempts),
            }
            print(
                f"  L={L} {parity}: exact rank {res.start_rank} -> {res.smallest_rank} "
                f"({res.stopped}, {res.seconds:.0f} s)",
                flush=True,
            )
    # --- approximate unit CP at 7 L^2 ----------------------------------------------------
    rank = 7 * L * L
    T_unit = so3.cg_tensor(L, "unit")
    unit: dict[str, Any] = {"rank": rank, "fitted": L <= args.fit_max_L}
    if unit["fitted"]:
        fit, info = _common.stored_fit(L, rank, args.store_obj, quick=args.quick)
        unit.update(relative_error=fit.relative_error, **info)
        A, B, C = fit.A, fit.B, fit.C
    else:
        rng = np.random.default_rng(args.seed)
        A, B, C = (rng.standard_normal((so3.dim(L), rank)) / rank for _ in range(3))
    row["unit_cp"] = unit
    # --- equivariance (float64) ----------------------------------------------------------
    n, seed = args.rotations, args.seed
    norm_sphere = float(np.linalg.norm(sphere_tensor(L)))
    norm_unit = float(np.linalg.norm(T_unit))
    sphere64 = CPTensorProduct(*sphere_fit.factors)
    eq = {"sphere_cp": layer_equivariance(sphere64, L, norm_sphere, n, seed)}
    eq["unit_cp_7L2"] = (
        layer_equivariance(CPTensorProduct(A, B, C), L, norm_unit, n, seed)
        if unit["fitted"]
        else None
    )
    eq["dense_cg_unit"] = layer_equivariance(CGTensorProduct(L), L, norm_unit, n, seed)
    _, e3nn64 = _e3nn_forward(L, 1, torch.float64)
    eq["e3nn_uvu"] = layer_equivariance(e3nn64, L, norm_unit, n, seed)
    row["equivariance"] = eq
    # --- timing (float32) ----------------------------------------------------------------
    B_, C_, d = args.batch, args.channels, so3.dim(L)
    gen = torch.Generator().manual_seed(args.seed)
    x = torch.randn(B_, C_, d, generator=gen)
    y = torch.randn(B_, d, generator=gen)
    layers = {
        "sphere_cp": CPTensorProduct(*sphere_fit.factors, dtype=torch.float32),
        "unit_cp_7L2": CPTensorProduct(A, B, C, dtype=torch.float32),
        "dense_cg": CGTensorProduct(L, dtype=torch.float32),
    }
    timing = {name: _median_ms(lambda m=m: m(x, y), args.repeats) for name, m in layers.items()}
    t0 = time.perf_counter()
    tp, _ = _e3nn_forward(L, C_, torch.float32)
    build = time.perf_counter() - t0
    weights = e3nn_path_weights(torch.ones(B_, C_), L, "unit")
    x_e3nn = to_e3nn_layout(x)
    timing["e3nn_uvu"] = _median_ms(lambda: tp(x_e3nn, y, weights), args.repeats)
    timing["e3nn_build_seconds"] = build
    row["time_ms"] = timing
    row["ranks"] = {
        "sphere_3N_lebedev": rules["lebedev"]["rank_all"],
        "sphere_3N_gauss_legendre": rules["gauss-legendre"]["rank_all"],
        "gaunt_N_lebedev": rules["lebedev"]["rank_even"],
        "unit_7L2": rank,
        "smallest_exact_all": _smallest_all(row.get("compressed")),
        "smallest_exact_even": row.get("compressed", {}).get("even", {}).get("smallest_exact_rank"),
    }
    return row


def _smallest_all(compressed: dict[str, Any] | None) -> int | None:
    """min(rank found for the full tensor, rank found for the even part + for the odd part)."""
    if not compressed:
        return None
    found = {p: c["smallest_exact_rank"] for p, c in compressed.items()}
    return min(found["all"], found["even"] + found["odd"])


def figure(rows: list[dict[str, Any]]):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    Ls = [r["L"] for r in rows]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.3))
    ax = axes[0]
    for key, label, style in (
        ("sphere_3N_lebedev", "exact sphere CP, 3N (Lebedev)", "o-"),
        ("sphere_3N_gauss_legendre", "exact sphere CP, 3N (Gauss-Legendre)", "s--"),
        ("gaunt_N_lebedev", "exact Gaunt CP, N (Lebedev)", "^-"),
        ("unit_7L2", "approximate unit CP, 7 L^2", "k:"),
    ):
        ax.plot(Ls, [r["ranks"][key] for r in rows], style, label=label)
    for key, label in (
        ("smallest_exact_all", "smallest exact found (all)"),
        ("smallest_exact_even", "smallest exact found (Gaunt)"),
    ):
        pts = [(r["L"], r["ranks"][key]) for r in rows if r["ranks"][key] is not None]
        if pts:
            ax.plot(*zip(*pts, strict=True), "x", markersize=9, label=label)
    ax.set(xlabel="L", ylabel="CP rank", title="Ranks", yscale="log")
    ax.legend(fontsize=7)
    ax = axes[1]
    for key, label, style in (
        ("sphere_cp", "CP layer, exact sphere (3N)", "o-"),
        ("unit_cp_7L2", "CP layer, unit 7 L^2", "k:"),
        ("dense_cg", "dense CG layer", "d-."),
        ("e3nn_uvu", "e3nn uvu TensorProduct", "s--"),
    ):
        ax.plot(Ls, [r["time_ms"][key] for r in rows], style, label=label)
    ax.set(
        xlabel="L",
        ylabel="forward time [ms]",
        yscale="log",
        title="Layer time (float32, noisy shared CPU)",
    )
    ax.legend(fontsize=7)
    ax = axes[2]
    for key, label, style in (
        ("sphere_cp", "exact sphere CP", "o-"),
        ("unit_cp_7L2", "unit CP 7 L^2 (fitted)", "k:"),
        ("dense_cg_unit", "dense CG", "d-."),
        ("e3nn_uvu", "e3nn", "s--"),
    ):
        pts = [(r["L"], r["equivariance"][key]) for r in rows if r["equivariance"][key] is not None]
        ax.plot(*zip(*pts, strict=True), style, label=label)
    ax.set(
        xlabel="L",
        ylabel="max |f(Dx,Dy) - D f(x,y)| / ||T||_F",
        yscale="log",
        title="Equivariance error (float64, unit x, y)",
    )
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    _common.add_common_args(parser)
    _common.add_store_arg(parser)
    parser.add_argument("--max-L", type=int, default=None, help="largest L (8; quick 3)")
    parser.add_argument(
        "--fit-max-L",
        type=int,
        default=None,
        help="largest L of the 7L^2 unit CP from the fit store (6; quick 2)",
    )
    parser.add_argument("--compress-max-L", type=int, default=None, help="(3; quick 1)")
    parser.add_argument(
        "--compress-budget", type=float, default=None, help="seconds (150; quick 10)"
    )
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--channels", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=None, help="(5; quick 3)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rotations", type=int, default=None, help="(20; quick 5)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    defaults = {
        "max_L": (8, 3),
        "fit_max_L": (6, 2),
        "compress_max_L": (3, 1),
        "compress_budget": (150.0, 10.0),
        "repeats": (5, 3),
        "rotations": (20, 5),
    }
    for name, (full, quick) in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, quick if args.quick else full)
    if args.max_L < 1:
        parser.error(f"--max-L must be >= 1, got {args.max_L}")
    out = _common.output_dir(args)
    args.store_obj = _common.fit_store(args, out)
    run = _common.Run("exact_vs_approximate", args, argv)
    torch.set_num_threads(args.threads)
    rows = []
    for L in range(1, args.max_L + 1):
        print(f"L = {L}", flush=True)
        rows.append(measure(L, args))
        r = rows[-1]
        print(
            f"  ranks {r['ranks']}\n  time_ms {r['time_ms']}\n  equivariance {r['equivariance']}",
            flush=True,
        )
    settings = {
        k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if k != "store_obj"
    }
    result = {
        "settings": settings,
        "store": str(args.store_obj.folder),
        "rows": rows,
        "torch": torch.__version__,
        "note": "timings from a shared 2-core VM (noisy); ranks and errors are deterministic "
        "except where a time budget cut a compression short; the 7L^2 unit CP is the fit "
        "store's best known (tdn_theory.cp.best_known)",
    }
    run.write(out, result, figure=figure(rows))
    print(json.dumps({r["L"]: r["ranks"] for r in rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
