"""Fit a low-rank CP decomposition of the real CG tensor and report certified figures.

Usage::

    python -m tdn_theory.fit_cp --L 4 --rank 16 [--normalization unit] [--parity all]
        [--restarts 8] [--seed 0] [--time-budget 60] [--rotations 100] [--out PATH]
        [--json] [--quiet]

Builds M = tdn_theory.so3.cg_tensor(L, normalization, parity) (indexed [k, i, j]), fits
M ≈ einsum("kr,ir,jr->kij", A, B, C) with tdn_theory.cp.fit_cp, saves A, B, C to an .npz
factor file (default cp_L{L}_R{rank}.npz in the working folder; the file is re-read and its
relative error re-computed before the report) and prints:

* the tensor: size d x d x d, number of paths, ||M||_F;
* the achieved relative error ||M - M_hat||_F / ||M||_F;
* the certified Eckart–Young lower bound (relative) on ANY rank-R CP fit, and the ratio
  error / lower bound (1 = provably optimal; null when the bound is 0);
* the paper's a-priori Theorem 3.1 bound (HOSVD form, R_T = floor(R^(1/3))), absolute, and
  whether it is vacuous (>= ||M||_F);
* the a-posteriori equivariance bound 2 ||E_(1)||_2 (per unit inputs, E = M_hat - M);
* the empirical equivariance error over --rotations Haar rotations with random unit inputs
  (mean and max); the wall time; the output path.

--json prints one JSON object instead of the table (keys in JSON_KEYS); the progress bar goes
to stderr (off with --quiet). Exit status: 0 on success, 2 with a one-line message on bad
input (rank < 1 or not an integer, L < 0 or too large for memory, --rotations too many for
memory, unknown option, an output path that cannot be written or that exists and is not a regular
file: a symbolic link, FIFO, device or folder is never replaced); no partial file is left behind,
also when the run is ended by SIGTERM (exit 143) or Ctrl-C (exit 130).

--time-budget bounds the fit only. Building M comes before it: cached CG blocks load in well
under a second, but the first (cold) build of the exact sympy blocks for a new large L takes
minutes (L = 20: several minutes) and is not counted.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import sys
import time
from typing import Any

import numpy as np

from tdn_theory._cli import OneLineParser, UsageError, check_output_path, parse_int
from tdn_theory.cp import FactorFileError, fit_cp, load_factors, save_factors
from tdn_theory.cp.factor_files import target_id
from tdn_theory.cp.lower_bound import error_lower_bound
from tdn_theory.cp.tensor_ops import cp_to_tensor, relative_error
from tdn_theory.so3 import MAX_L, NORMALIZATIONS, PARITIES, cg_tensor, dim, paths

__all__ = ["main", "build_parser", "run", "JSON_KEYS", "UsageError"]

#: Keys of the --json object, in order (documented in the README).
JSON_KEYS = (
    "L",
    "rank",
    "normalization",
    "parity",
    "d",
    "n_paths",
    "norm",
    "relative_error",
    "lower_bound",
    "lower_bound_ratio",
    "thm31_rank",
    "thm31_bound",
    "thm31_vacuous",
    "aposteriori_bound",
    "aposteriori_frobenius",
    "equivariance_mean",
    "equivariance_max",
    "rotations",
    "restarts",
    "seed",
    "time_budget",
    "fit_seconds",
    "seconds",
    "out",
    "target_sha256",
)

DEFAULT_RESTARTS = 8
DEFAULT_TIME_BUDGET = 60.0
DEFAULT_ROTATIONS = 100
MEMORY_FRACTION = 0.5  # refuse a problem whose estimated working memory exceeds this share


class _Terminated(Exception):
    """Raised by the SIGTERM handler so that cleanups (temporary files) run before exit 143."""


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (kept separate so that options can be added by other modules)."""
    p = OneLineParser(
        prog="python -m tdn_theory.fit_cp",
        allow_abbrev=False,
        description="Fit a rank-R CP decomposition of the real Clebsch-Gordan tensor and report "
        "its error, certified lower bound and equivariance figures.",
    )
    p.add_argument("--L", required=True, type=str, help="maximal degree L >= 0 (d = (L+1)^2)")
    p.add_argument(
        "--rank",
        required=True,
        type=str,
        help="CP rank R, an integer >= 1; 'auto' with --normalization sphere writes the exact "
        "quadrature factors (rank 3N, no fitting)",
    )
    p.add_argument("--normalization", default="unit", choices=list(NORMALIZATIONS))
    p.add_argument("--parity", default="all", choices=list(PARITIES))
    p.add_argument(
        "--restarts",
        type=str,
        default=str(DEFAULT_RESTARTS),
        help=f"ALS starts (default {DEFAULT_RESTARTS})",
    )
    p.add_argument("--seed", type=str, default="0", help="random seed, integer >= 0 (default 0)")
    p.add_argument(
        "--time-budget",
        type=str,
        default=str(DEFAULT_TIME_BUDGET),
        help=f"seconds for the fit (default {DEFAULT_TIME_BUDGET:g}); building the CG tensor "
        "comes first and is not counted (cached blocks: under a second; the first cold sympy "
        "build for a new large L: minutes)",
    )
    p.add_argument(
        "--rotations",
        type=str,
        default=str(DEFAULT_ROTATIONS),
        help=f"Haar rotations for the empirical check (default {DEFAULT_ROTATIONS}; "
        "limited by memory)",
    )
    p.add_argument(
        "--out",
        type=str,
        default=None,
        help="factor file to write (default cp_L{L}_R{rank}.npz here); an existing regular "
        "file is replaced atomically, anything else (symbolic link, FIFO, device) is refused",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object, not the table")
    p.add_argument("--quiet", action="store_true", help="no progress bar on stderr")
    return p


def parse_rank(text: str, args: argparse.Namespace) -> int:
    """The --rank value as an int >= 1; "auto" (only with --normalization sphere) gives the rank
    of the exact quadrature construction (tdn_theory.cp.quadrature.sphere_cp, Lebedev rule)."""
    if text.strip().lower() != "auto":
        return parse_int(text, "rank", 1)
    if args.normalization != "sphere":
        raise UsageError(
            "--rank auto needs --normalization sphere (exact quadrature factors); "
            "give an integer rank for other normalizations"
        )
    from tdn_theory.cp.quadrature import required_degree, sphere_rule

    try:
        L = parse_int(args.L, "L", 0)
        points, _ = sphere_rule(required_degree(L, args.parity), "lebedev")
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    per_point = {"all": 3, "even": 1, "odd": 2}[args.parity]
    return per_point * len(points)


def _parse_budget(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise UsageError(
            f"--time-budget must be a positive number of seconds, got {text!r}"
        ) from None
    if not (math.isfinite(value) and value > 0):
        raise UsageError(f"--time-budget must be a positive number of seconds, got {text!r}")
    return value


def _available_memory() -> int:
    """Physical memory in bytes (a large default where the platform does not say)."""
    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return 1 << 40


def estimated_memory(L: int, rank: int, rotations: int = 0) -> int:
    """Rough peak working memory in bytes, float64: the fit (~16 copies of the d^3 tensor,
    Khatri–Rao products d^2 R, the factor matrices) or the empirical equivariance check over
    `rotations` Haar rotations (per rotation a d x d Wigner matrix, inputs and products: about
    2 d^2 + 8 d + 2 R + 32 numbers; measured 52 and 622 at L = 1, R = 8 and L = 3, R = 63, against
    the estimate's 112 and 798), whichever is larger (they run one after the other)."""
    d = dim(L)
    fit = 8 * (16 * d**3 + 6 * d * d * rank + 12 * d * rank)
    check = 8 * rotations * (2 * d * d + 8 * d + 2 * rank + 32)
    return max(fit, check)


def validate(args: argparse.Namespace) -> dict[str, Any]:
    """Turn parsed arguments into checked settings; raise UsageError on bad input."""
    L = parse_int(args.L, "L", 0)
    if L > MAX_L:
        raise UsageError(f"--L {L} is larger than the supported maximum {MAX_L}")
    rank = parse_rank(args.rank, args)
    rotations = parse_int(args.rotations, "rotations", 1)
    have = _available_memory()
    need = estimated_memory(L, rank)
    if need > MEMORY_FRACTION * have:
        raise UsageError(
            f"--L {L} --rank {rank} needs about {need / 2**30:.1f} GiB of memory, more than "
            f"{MEMORY_FRACTION:.0%} of this machine's {have / 2**30:.1f} GiB; use a smaller L or rank"
        )
    need = estimated_memory(L, rank, rotations)
    if need > MEMORY_FRACTION * have:
        raise UsageError(
            f"--rotations {rotations} needs about {need / 2**30:.1f} GiB of memory at L = {L}, "
            f"more than {MEMORY_FRACTION:.0%} of this machine's {have / 2**30:.1f} GiB; "
            "use fewer rotations"
        )
    settings = {
        "L": L,
        "rank": rank,
        "normalization": args.normalization,
        "parity": args.parity,
        "restarts": parse_int(args.restarts, "restarts", 1),
        "seed": parse_int(args.seed, "seed", 0),
        "time_budget": _parse_budget(args.time_budget),
        "rotations": rotations,
        "json": bool(args.json),
        "quiet": bool(args.quiet),
        "exact": args.rank.strip().lower() == "auto",
    }
    settings["out"] = check_output_path(
        args.out if args.out is not None else f"cp_L{L}_R{rank}.npz"
    )
    return settings


class _Progress:
    """tqdm bars on stderr: one over the ALS restarts, one over the polish iterations.

    Only when stderr is a terminal (tqdm's ``disable=None``): a log file gets no progress updates.
    """

    def __init__(self, enabled: bool):
        self.enabled = enabled
        self.bar = None
        self.stage = None

    def __call__(self, stage: str, done: int, total: int, err: float) -> None:
        if not self.enabled:
            return
        from tqdm import tqdm

        if stage != self.stage:
            self.close()
            self.stage = stage
            desc = {"restart": "ALS restarts", "refine": "ALS continuation", "polish": "LM polish"}
            self.bar = tqdm(
                total=total,
                desc=desc.get(stage, stage),
                file=sys.stderr,
                leave=False,
                dynamic_ncols=True,
                disable=None,
            )
        self.bar.n = min(done, total)
        self.bar.set_postfix_str(f"rel. error {err:.3e}", refresh=False)
        self.bar.refresh()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def run(settings: dict[str, Any]) -> dict[str, Any]:
    """Fit, save, re-read and check; return the report (the JSON object)."""
    from tdn_theory.theory.equivariance import check_fit

    start = time.perf_counter()
    L, rank = settings["L"], settings["rank"]
    T = cg_tensor(L, settings["normalization"], settings["parity"])
    norm = float(np.linalg.norm(T))
    if norm == 0.0:
        raise UsageError(
            f"the CG tensor for L={L}, normalization={settings['normalization']}, "
            f"parity={settings['parity']} is zero; nothing to fit"
        )
    extra_meta: dict[str, Any] = {}
    if settings.get("exact"):  # --rank auto: exact quadrature factors, no fitting
        from tdn_theory.cp.quadrature import sphere_cp

        fit = sphere_cp(L, settings["parity"], "lebedev")
        record = fit.history[0]
        extra_meta = {
            "method": "quadrature",
            "rule": "lebedev",
            "rule_degree": record["degree"],
            "rule_points": record["points"],
        }
    else:
        progress = _Progress(not settings["quiet"])
        try:
            fit = fit_cp(
                T,
                rank,
                restarts=settings["restarts"],
                seed=settings["seed"],
                time_budget=settings["time_budget"],
                progress=progress,
            )
        finally:
            progress.close()
    sha = target_id(L, settings["normalization"], settings["parity"])
    lower = error_lower_bound(T, rank)
    meta = {
        "L": L,
        "normalization": settings["normalization"],
        "parity": settings["parity"],
        "lower_bound": lower,
        "restarts": settings["restarts"],
        "time_budget": settings["time_budget"],
        **extra_meta,
    }
    out = settings["out"]
    try:
        save_factors(out, fit, meta, target=T)
    except FactorFileError as exc:
        raise UsageError(str(exc)) from exc
    finished = False
    try:  # a run that fails after the file was written leaves no file behind
        reread, _ = load_factors(
            out, expect={"L": L, "rank": rank, "target_sha256": sha}, recheck=True
        )
        rel = relative_error(T, cp_to_tensor(reread.A, reread.B, reread.C))
        figures = check_fit(
            T,
            (reread.A, reread.B, reread.C),
            n_rotations=settings["rotations"],
            seed=settings["seed"],
        )
        finished = True
    except FactorFileError as exc:
        raise UsageError(str(exc)) from exc
    except MemoryError:
        raise UsageError(
            f"out of memory in the equivariance check with --rotations {settings['rotations']}; "
            "use fewer rotations"
        ) from None
    finally:
        if not finished:
            try:
                os.unlink(out)
            except OSError:
                pass
    report = {
        "L": L,
        "rank": rank,
        "normalization": settings["normalization"],
        "parity": settings["parity"],
        "d": int(T.shape[0]),
        "n_paths": len(paths(L, settings["parity"])),
        "norm": norm,
        "relative_error": float(rel),
        "lower_bound": float(lower),
        "lower_bound_ratio": float(rel / lower) if lower > 0 else None,
        "thm31_rank": int(figures.thm31_rank),
        "thm31_bound": float(figures.thm31_bound),
        "thm31_vacuous": bool(figures.thm31_vacuous),
        "aposteriori_bound": float(figures.aposteriori_spectral),
        "aposteriori_frobenius": float(figures.aposteriori_frobenius),
        "equivariance_mean": float(figures.mc_mean_error),
        "equivariance_max": float(figures.mc_max_error),
        "rotations": settings["rotations"],
        "restarts": settings["restarts"],
        "seed": settings["seed"],
        "time_budget": settings["time_budget"],
        "fit_seconds": float(fit.seconds),
        "seconds": time.perf_counter() - start,
        "out": str(out),
        "target_sha256": sha,
    }
    return {key: report[key] for key in JSON_KEYS}


def format_table(r: dict[str, Any]) -> str:
    """The human-readable report."""
    d = r["d"]
    ratio = r["lower_bound_ratio"]
    ratio = "undefined (bound is 0)" if ratio is None else f"{ratio:.3f}"
    vacuous = "VACUOUS (>= ||M||)" if r["thm31_vacuous"] else "informative (< ||M||)"
    rows = [
        (
            "tensor",
            f"L={r['L']}  {d} x {d} x {d} = {d**3} entries, {r['n_paths']} paths, "
            f"normalization={r['normalization']}, parity={r['parity']}",
        ),
        ("||M||_F", f"{r['norm']:.6g}"),
        ("rank R", f"{r['rank']}"),
        ("relative error", f"{r['relative_error']:.6e}"),
        (
            "certified lower bound",
            f"{r['lower_bound']:.6e}  (any rank-{r['rank']} CP; error / bound = {ratio})",
        ),
        (
            "Thm 3.1 bound (a priori)",
            f"{r['thm31_bound']:.6g}  (HOSVD, R_T = {r['thm31_rank']}; {vacuous})",
        ),
        (
            "a-posteriori bound",
            f"{r['aposteriori_bound']:.6e}  (2 ||E_(1)||_2 per unit inputs; "
            f"2 ||E||_F = {r['aposteriori_frobenius']:.3e})",
        ),
        (
            "equivariance error",
            f"mean {r['equivariance_mean']:.3e}, max {r['equivariance_max']:.3e}"
            f"  ({r['rotations']} Haar rotations, random unit inputs)",
        ),
        (
            "time",
            f"{r['seconds']:.1f} s (fit {r['fit_seconds']:.1f} s, budget "
            f"{r['time_budget']:g} s, {r['restarts']} restarts, seed {r['seed']})",
        ),
        ("factors written to", r["out"]),
    ]
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


def _raise_terminated(signum, frame):
    raise _Terminated()


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit status.

    While it runs (in the main thread), SIGTERM raises an exception so that a factor file being
    written is cleaned up (no temporary file, no partial output) before exit status 143.
    """
    prog = "fit_cp"
    previous = None
    try:
        previous = signal.signal(signal.SIGTERM, _raise_terminated)
    except ValueError:  # not the main thread: leave signals alone
        pass
    try:
        args = build_parser().parse_args(argv)
        settings = validate(args)
        report = run(settings)
        print(json.dumps(report) if settings["json"] else format_table(report))
    except UsageError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except _Terminated:
        print(f"{prog}: terminated (SIGTERM)", file=sys.stderr)
        return 143
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    return 0


if __name__ == "__main__":
    sys.exit(main())
