"""Network-level equivariance of a TDN potential: measured defects against the proven bound.

On real atomic geometries (a periodic fcc Cu-Au alloy and a Cu-Au icosahedral cluster, each
rattled and as a snapshot of Langevin MD with ASE's EMT calculator), for randomly initialised
``TDNPotential`` models (C = 8 channels, cutoff 4 Å, seed 0) with L = 1..3 (``--L``: up to 4) and
depth 1..6, and
CP tensor products of the unit CG tensor at the ranks 7L, ceil(16 ln^2(L+1)), 7L^2 and an exact
rank (the committed exact factor files), this measures

* the relative energy-invariance error |E(Rx) - E(x)| / |E(x)|,
* the force-equivariance error |F(Rx) - R F(x)|_F / |F(x)|_F,
* the per-layer feature defect |h^t(Rx) - D h^t(x)|_F,

over Haar-sampled rotations plus a Nelder-Mead search over rotations (started at the worst Haar
sample), and evaluates both bounds of proofs/network_propagation.md on the same configuration:
Theorem 1 (Lipschitz propagation, ``evaluate_bound(..., method="lipschitz")``) and Theorem 2
(first order on the orbit plus proven remainder, the default; evaluated for L <= BOUND2_MAX_L and
approximate tensor products, where it does not refuse), with Theorem 2's first-order estimate (not
a bound). Ratios: bound / worst found and estimate / worst found. It also measures the mirror
check: for parity "all" and "even" (exact dense backend), |E(-x) - E(x)| / |E| and |F(-x) + F(x)| / |F|.

The sweep is a list of independent units (:func:`grid`: one per L, rank schedule and depth), each
computed by :func:`measure_unit` on every geometry (in parallel with ``--workers``, experiments._dask).

Grid. Full mode: depth 1..6 for the ranks 7L^2 and exact (the README table), the other two ranks
at depth 3; 12 Haar rotations and a 30-evaluation search per point. ``--quick``: L = 1, 2, depth
1..3, the alloy only, 4 rotations, an 8-evaluation search (one to three minutes).

Every CP comes from the fit store (``tdn_theory.cp.best_fit`` through the model's ``rank=``): the
best-known fit at each rank, the exact rank being the store's smallest exact one.

Writes experiments/results/network_equivariance.{json,png,md} atomically. Run:

    OMP_NUM_THREADS=1 python -m experiments.network_equivariance           # ~35 min, loaded 2 cores
    python -m experiments.network_equivariance --quick                     # 1-3 min, results/quick/
    python -m experiments.network_equivariance --table                     # print the .md table
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

from experiments import _dask, _io
from experiments._rank_study import paper_and_exact_ranks
from tdn_theory import so3
from tdn_theory.cp import EXACT_RTOL
from tdn_theory.models import TDNPotential
from tdn_theory.models.network_bound import (
    BoundBelowRounding,
    adversarial_rotation,
    evaluate_bound,
    measure_defects,
    tensor_product_error,
)

CHANNELS = 8
CUTOFF = 4.0
SPECIES = ["Cu", "Au"]
EXACT_TOL = EXACT_RTOL  # a tensor product this close to exact is "exact": defects are rounding
#: Theorem 2 is evaluated up to this L (at L = 4 it costs minutes per point on 2 cores).
BOUND2_MAX_L = 3


def schedules(L: int) -> dict[str, int]:
    """The four rank schedules compared at degree L: 7L, 16 ln^2(L+1), 7L^2 and the exact rank."""
    return paper_and_exact_ranks(L)


# --------------------------------------------------------------------------------------------
# geometries
# --------------------------------------------------------------------------------------------


def structures(seed: int, quick: bool) -> dict:
    """EMT geometries: {name: ase.Atoms}. Rattled and Langevin-MD snapshots, seeded."""
    from ase import units
    from ase.build import bulk
    from ase.calculators.emt import EMT
    from ase.cluster import Icosahedron
    from ase.md.langevin import Langevin
    from ase.md.velocitydistribution import MaxwellBoltzmannDistribution

    rng = np.random.default_rng(seed)
    alloy = bulk("Cu", "fcc", a=3.75, cubic=True) * (2, 2, 1)  # 16 atoms
    alloy.symbols[rng.choice(len(alloy), 8, replace=False)] = "Au"
    cluster = Icosahedron("Cu", 2)  # 13 atoms
    cluster.symbols[rng.choice(len(cluster), 5, replace=False)] = "Au"
    cluster.center()
    out = {}
    bases = {"alloy": alloy} if quick else {"alloy": alloy, "cluster": cluster}
    for name, base in bases.items():
        rattled = base.copy()
        rattled.rattle(0.1, seed=seed)
        out[f"{name}_rattled"] = rattled
        md = base.copy()
        md.calc = EMT()
        MaxwellBoltzmannDistribution(md, temperature_K=800, rng=rng)
        Langevin(md, 2 * units.fs, temperature_K=800, friction=0.02, rng=rng).run(100)
        md.calc = None
        out[f"{name}_md"] = md
    if quick:
        out.pop("alloy_rattled")
    return out


def _args(atoms):
    return atoms.positions, atoms.numbers, np.asarray(atoms.cell), atoms.pbc


# --------------------------------------------------------------------------------------------
# measurement
# --------------------------------------------------------------------------------------------


def tensor_product(dense: TDNPotential, L: int, rank: int, schedule: str) -> TDNPotential:
    """The CP model of the same weights, its factors from the fit store (tdn_theory.cp.best_fit)."""
    return dense.with_backend("cp", rank=rank)


def measure_point(
    model, atoms, n_rotations: int, search: int, seed: int, bound2: bool = True
) -> dict:
    """Defects over Haar rotations and an adversarial search, and both bounds, for one model.

    Bounds: Theorem 2 (``evaluate_bound``'s default; None where it refuses because the model's
    defects are rounding) and Theorem 1 (``method="lipschitz"``), and Theorem 2's first-order
    estimate (not a bound)."""
    a = _args(atoms)
    rotations = so3.random_rotations(n_rotations, seed=seed)
    t0 = time.perf_counter()
    measured = measure_defects(model, *a, rotations=rotations)
    worst = int(np.argmax(measured["forces"]))
    adv_force = None
    if search > 0:
        R_adv, adv_force = adversarial_rotation(
            model, *a, start=rotations[worst], iterations=search
        )
        adv = measure_defects(model, *a, rotations=R_adv[None])
    t1 = time.perf_counter()
    bound = evaluate_bound(model, *a, method="lipschitz")
    t2 = time.perf_counter()
    cert = None
    if bound2:
        try:
            cert = evaluate_bound(model, *a)
        except BoundBelowRounding:
            cert = None
    t3 = time.perf_counter()
    F, E = measured["force_scale"], measured["energy_scale"]
    feats = measured["features"].max(axis=0)
    force_worst = float(measured["forces"].max())
    energy_worst = float(measured["energy"].max())
    if search > 0:
        force_worst = max(force_worst, float(adv["forces"][0]))
        energy_worst = max(energy_worst, float(adv["energy"][0]))
        feats = np.maximum(feats, adv["features"][0])
    return {
        "energy_scale": E,
        "force_scale": F,
        "energy_rel_haar_max": float(measured["energy"].max() / E),
        "energy_rel_worst": energy_worst / E,
        "energy_bound_rel": bound.energy / E,
        "force_rel_haar_mean": float(measured["forces"].mean() / F),
        "force_rel_haar_max": float(measured["forces"].max() / F),
        "force_rel_adversarial": None if adv_force is None else adv_force / F,
        "force_rel_worst": force_worst / F,
        "force_bound_rel": bound.force_total / F,
        "feature_defect": [float(v) for v in feats],
        "feature_bound": [float(v) for v in bound.feature_total],
        **second_order_fields(cert, E, F),
        "bound2_skipped": not bound2,
        "bound2_refused": bound2 and cert is None,
        "seconds_defects": t1 - t0,
        "seconds_bound": t2 - t1,
        "seconds_bound2": t3 - t2,
    }


def second_order_fields(cert, E: float, F: float) -> dict:
    """Theorem 2's numbers relative to |E| and |F| (None where evaluate_bound refused)."""
    if cert is None:
        keys = (
            "energy_bound2_rel",
            "force_bound2_rel",
            "energy_first_order_rel",
            "force_first_order_rel",
            "energy_estimate_rel",
            "force_estimate_rel",
            "feature_bound2",
            "first_order_method",
        )
        return dict.fromkeys(keys) | {"bound2_refused": True}

    return {
        "energy_bound2_rel": cert.energy / E,
        "force_bound2_rel": cert.force_total / F,
        "energy_first_order_rel": cert.energy_first_order / E,
        "force_first_order_rel": float(np.linalg.norm(cert.force_first_order)) / F,
        "energy_estimate_rel": cert.energy_estimate / E,
        "force_estimate_rel": cert.force_estimate / F,
        "feature_bound2": [float(v) for v in cert.feature_total],
        "first_order_method": cert.first_order_method,
        "bound2_refused": False,
    }


def _tightness(measured: float, bound: float, exact: bool) -> float | None:
    if exact or bound <= 0:
        return None
    return measured / bound


def mirror_part(geoms: dict, Ls: list[int], depths: list[int], seed: int) -> list[dict]:
    """|E(-x) - E(x)| / |E| and |F(-x) + F(x)| / |F| for parity "all" and "even" (dense)."""
    rows = []
    for L in Ls:
        for depth in depths:
            for parity in ("all", "even"):
                model = TDNPotential(
                    SPECIES, L, CHANNELS, depth, CUTOFF, "dense", parity=parity, seed=seed
                )
                for name, atoms in geoms.items():
                    pos, num, cell, pbc = _args(atoms)
                    E, F = model.energy_and_forces(pos, num, cell, pbc)
                    Em, Fm = model.energy_and_forces(-pos, num, -cell, pbc)
                    E, Em = float(E.detach()), float(Em.detach())
                    F, Fm = F.detach().numpy(), Fm.detach().numpy()
                    rows.append(
                        {
                            "L": L,
                            "depth": depth,
                            "parity": parity,
                            "structure": name,
                            "energy_rel": abs(Em - E) / abs(E),
                            "force_rel": float(np.linalg.norm(Fm + F) / np.linalg.norm(F)),
                        }
                    )
    return rows


def grid(Ls: list[int], depths: list[int], side_depth: int = 3) -> list[tuple]:
    """The independent units (L, schedule, rank, depth): every depth for 7L^2 and the exact rank,
    the other two schedules at side_depth only."""
    units = []
    for L in Ls:
        for schedule, rank in schedules(L).items():
            deep = schedule in ("7L^2", "exact")
            for depth in depths if deep else [d for d in depths if d == side_depth]:
                units.append((L, schedule, rank, depth))
    return units


def measure_unit(unit: tuple, *, geoms: dict, n_rot: int, search: int, seed: int) -> dict:
    """One unit of the grid: the model's tensor-product error and a measured point per geometry."""
    L, schedule, rank, depth = unit
    t0 = time.perf_counter()
    dense = TDNPotential(SPECIES, L, CHANNELS, depth, CUTOFF, "dense", seed=seed)
    model = tensor_product(dense, L, rank, schedule)
    eps, S, rel = tensor_product_error(model)
    tp = {
        "L": L,
        "schedule": schedule,
        "rank": rank,
        "relative_error": rel,
        "eps_by_degree": [float(e) for e in eps],
        "S": S,
        "source": model.tp.meta.get("path") or "committed factor file",
    }
    exact = rel < EXACT_TOL
    rows = []
    for name, atoms in geoms.items():
        # Theorem 2 refuses on exact tensor products (their defects are rounding; the refusal is
        # tested in tests/test_models_network_certificate.py), so it is not evaluated there
        point = measure_point(
            model, atoms, n_rot, search, seed, bound2=L <= BOUND2_MAX_L and not exact
        )
        point.update(
            L=L,
            depth=depth,
            schedule=schedule,
            rank=rank,
            structure=name,
            tp_relative_error=rel,
            exact=exact,
            force_tightness=_tightness(point["force_rel_worst"], point["force_bound_rel"], exact),
            energy_tightness=_tightness(
                point["energy_rel_worst"], point["energy_bound_rel"], exact
            ),
            feature_tightness=[
                _tightness(m, b, exact)
                for m, b in zip(
                    point["feature_defect"][1:], point["feature_bound"][1:], strict=True
                )
            ],
            force_ratio2=_ratio(point["force_bound2_rel"], point["force_rel_worst"]),
            energy_ratio2=_ratio(point["energy_bound2_rel"], point["energy_rel_worst"]),
            force_estimate_ratio=_ratio(point["force_estimate_rel"], point["force_rel_worst"]),
            energy_estimate_ratio=_ratio(point["energy_estimate_rel"], point["energy_rel_worst"]),
        )
        rows.append(point)
    print(
        f"L={L} {schedule:12s} R={rank:3d} depth={depth}: force err "
        f"{max(r['force_rel_worst'] for r in rows):.2e}, bound "
        f"{max(r['force_bound_rel'] for r in rows):.2e}, Thm 2 "
        f"{max((r['force_bound2_rel'] or 0.0) for r in rows):.2e} ({time.perf_counter() - t0:.0f} s)",
        flush=True,
    )
    return {"tensor_product": tp, "rows": rows}


def _ratio(bound: float | None, measured: float) -> float | None:
    """bound / worst found (None when there is no bound or nothing was measured)."""
    if bound is None or measured <= 0:
        return None
    return bound / measured


def run(args) -> dict:
    torch.set_num_threads(max(1, int(os.environ.get("OMP_NUM_THREADS", "1"))))
    geoms = structures(args.seed, args.quick)
    Ls = [1, 2] if args.quick else args.L
    depths = [1, 2, 3] if args.quick else list(range(1, 7))
    side_depth = 3
    n_rot, search = (4, 8) if args.quick else (args.rotations, args.search)
    units = grid(Ls, depths, side_depth)
    with _dask.units(args) as pool:
        results = pool.map(
            measure_unit, units, geoms=geoms, n_rot=n_rot, search=search, seed=args.seed
        )
    tps, rows = [], []
    for (_, schedule, _, depth), result in zip(units, results, strict=True):
        deep = schedule in ("7L^2", "exact")
        if depth == (depths[0] if deep else side_depth):
            tps.append(result["tensor_product"])
        rows.extend(result["rows"])
    mirror = mirror_part(
        geoms, Ls[:2] if args.quick else [2, 3], [1, 3] if args.quick else [1, 3, 6], args.seed
    )
    return {
        "tensor_products": tps,
        "rows": rows,
        "mirror": mirror,
        "structures": {
            name: {"n_atoms": len(a), "pbc": bool(a.pbc.any()), "formula": a.get_chemical_formula()}
            for name, a in geoms.items()
        },
    }


# --------------------------------------------------------------------------------------------
# summaries, table, figure
# --------------------------------------------------------------------------------------------


def summarise(rows: list[dict], key: str, **where) -> dict:
    """Max over structures of `key` for rows matching `where` (None when no row matches)."""
    sel = [r for r in rows if all(r[k] == v for k, v in where.items())]
    if not sel:
        return None
    return max(r[key] for r in sel)


def closing_note(data: dict) -> dict:
    rows = data["rows"]
    note = {}
    for L in sorted({r["L"] for r in rows}):
        at3 = [r for r in rows if r["L"] == L and r["schedule"] == "7L^2" and r["depth"] == 3]
        if at3:
            note[f"L{L}_7L2_depth3"] = {
                "tensor_relative_error": at3[0]["tp_relative_error"],
                "force_rel_worst": max(r["force_rel_worst"] for r in at3),
                "force_rel_haar_mean": max(r["force_rel_haar_mean"] for r in at3),
                "energy_rel_worst": max(r["energy_rel_worst"] for r in at3),
                "force_bound_rel": max(r["force_bound_rel"] for r in at3),
            }
    mirror = data["mirror"]
    if mirror:
        note["mirror_max"] = {
            p: {
                "energy_rel": max(m["energy_rel"] for m in mirror if m["parity"] == p),
                "force_rel": max(m["force_rel"] for m in mirror if m["parity"] == p),
            }
            for p in ("all", "even")
        }
    return note


def _max(sel: list[dict], key: str) -> float | None:
    values = [r[key] for r in sel if r.get(key) is not None]
    return max(values) if values else None


def _fmt(x: float | None, spec: str = ".1e") -> str:
    return "-" if x is None else format(x, spec)


def markdown_table(data: dict, Ls: tuple[int, ...] = (2, 3)) -> str:
    """README table per (L, depth, rank), worst over the geometries: measured defects, the two
    bounds (Theorem 1: Lipschitz propagation; Theorem 2: first order plus proven remainder) and
    Theorem 2 / worst found; estimate / worst found for the first-order estimate (not a bound)."""
    lines = [
        "| L | depth | rank | tensor error | force error (worst) | Thm 1 bound | Thm 2 bound "
        "| Thm 2 / worst | estimate / worst | energy error (worst) | Thm 1 bound | Thm 2 bound "
        "| Thm 2 / worst | estimate / worst |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    rows = data["rows"]
    for L in Ls:
        for schedule in ("7L^2", "exact"):
            for depth in range(1, 7):
                sel = [
                    r
                    for r in rows
                    if r["L"] == L and r["schedule"] == schedule and r["depth"] == depth
                ]
                if not sel:
                    continue
                worst = max(sel, key=lambda r: r["force_rel_worst"])
                exact = all(r["exact"] for r in sel)
                thm2_f = "(rounding)" if exact else _fmt(_max(sel, "force_bound2_rel"))
                thm2_e = "(rounding)" if exact else _fmt(_max(sel, "energy_bound2_rel"))
                lines.append(
                    f"| {L} | {depth} | {worst['rank']} ({schedule}) "
                    f"| {worst['tp_relative_error']:.1e} | {_max(sel, 'force_rel_worst'):.1e} "
                    f"| {_max(sel, 'force_bound_rel'):.1e} | {thm2_f} "
                    f"| {_fmt(_max(sel, 'force_ratio2'), '.1f')} "
                    f"| {_fmt(_max(sel, 'force_estimate_ratio'), '.2f')} "
                    f"| {_max(sel, 'energy_rel_worst'):.1e} | {_max(sel, 'energy_bound_rel'):.1e} "
                    f"| {thm2_e} | {_fmt(_max(sel, 'energy_ratio2'), '.1f')} "
                    f"| {_fmt(_max(sel, 'energy_estimate_ratio'), '.2f')} |"
                )
    return "\n".join(lines) + "\n"


def tightness_summary(data: dict, Ls: tuple[int, ...] = (2, 3)) -> dict:
    """Worst (largest) Theorem 2 bound / worst found over depth and geometries at 7L^2, per L, for
    energy and forces, and the range of estimate / worst found (the issue's targets: <= 30, 1/3..3)."""
    out = {}
    for L in Ls:
        sel = [r for r in data["rows"] if r["L"] == L and r["schedule"] == "7L^2"]
        if not sel:
            continue
        est = [r[k] for r in sel for k in ("energy_estimate_ratio", "force_estimate_ratio")]
        est = [e for e in est if e is not None]
        out[f"L{L}"] = {
            "energy_ratio2_max": _max(sel, "energy_ratio2"),
            "force_ratio2_max": _max(sel, "force_ratio2"),
            "energy_ratio1_max": max(r["energy_bound_rel"] / r["energy_rel_worst"] for r in sel),
            "force_ratio1_max": max(r["force_bound_rel"] / r["force_rel_worst"] for r in sel),
            "estimate_ratio_range": [min(est), max(est)] if est else None,
        }
    return out


def plot(data: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = data["rows"]
    Ls = sorted({r["L"] for r in rows})
    fig, axes = plt.subplots(1, 3, figsize=(17, 4.8))
    colors = plt.cm.viridis(np.linspace(0, 0.85, len(Ls)))
    for L, color in zip(Ls, colors, strict=True):
        sel = [r for r in rows if r["L"] == L and r["schedule"] == "7L^2"]
        depths = sorted({r["depth"] for r in sel})

        def worst(key, d, sel=sel):
            v = [r[key] for r in sel if r["depth"] == d and r.get(key) is not None]
            return max(v) if v else np.nan

        axes[0].semilogy(
            depths,
            [worst("force_rel_worst", d) for d in depths],
            "o-",
            color=color,
            label=f"L={L} measured (worst found)",
        )
        axes[0].semilogy(
            depths,
            [worst("force_bound_rel", d) for d in depths],
            ":",
            color=color,
            label=f"L={L} Thm 1 bound",
        )
        axes[0].semilogy(
            depths,
            [worst("force_bound2_rel", d) for d in depths],
            "--",
            color=color,
            label=f"L={L} Thm 2 bound",
        )
        axes[1].semilogy(
            depths,
            [worst("force_ratio2", d) for d in depths],
            "o-",
            color=color,
            label=f"L={L} forces",
        )
        axes[1].semilogy(
            depths,
            [worst("energy_ratio2", d) for d in depths],
            "s--",
            color=color,
            label=f"L={L} energy",
        )
        axes[2].semilogy(
            depths,
            [worst("force_bound_rel", d) / worst("force_rel_worst", d) for d in depths],
            "o-",
            color=color,
            label=f"L={L} forces",
        )
        axes[2].semilogy(
            depths,
            [worst("energy_bound_rel", d) / worst("energy_rel_worst", d) for d in depths],
            "s--",
            color=color,
            label=f"L={L} energy",
        )
    axes[0].set_xlabel("depth (interaction layers)")
    axes[0].set_ylabel("|F(Rx) - R F(x)| / |F(x)|")
    axes[0].set_title("force equivariance at 7L²: worst found vs bounds")
    axes[0].legend(fontsize=6, ncol=2)
    for ax, title in ((axes[1], "Theorem 2"), (axes[2], "Theorem 1 (Lipschitz)")):
        ax.axhline(30, color="grey", lw=0.8, ls=":")
        ax.axhline(1, color="black", lw=0.8)
        ax.set_xlabel("depth (interaction layers)")
        ax.set_ylabel("bound / worst found")
        ax.set_title(f"tightness of {title} at 7L²")
        ax.legend(fontsize=6, ncol=2)
    fig.tight_layout()
    _io.save_figure_atomic(fig, path)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="L = 1, 2, depth 1..3, ~1 min")
    parser.add_argument(
        "--L", type=int, nargs="+", default=[1, 2, 3], help="degrees (4 allowed: Theorem 1 only)"
    )
    parser.add_argument("--rotations", type=int, default=12, help="Haar rotations per point")
    parser.add_argument("--search", type=int, default=30, help="adversarial evaluations (0: none)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None, help="JSON path (PNG, MD beside it)")
    parser.add_argument("--table", action="store_true", help="print the table of an existing JSON")
    _dask.add_args(parser)
    args = parser.parse_args(argv)
    default = _io.RESULTS / "quick" if args.quick else _io.RESULTS
    out = args.out or default / "network_equivariance.json"
    if args.table:
        if not out.is_file():
            parser.exit(2, f"error: --table needs an existing JSON; {out} not found\n")
        print(markdown_table(json.loads(out.read_text())), end="")
        return 0
    if any(L not in (1, 2, 3, 4) for L in args.L):
        parser.exit(2, f"error: --L must be among [1, 2, 3, 4]; got {args.L}\n")
    if args.rotations < 1 or args.search < 0 or args.seed < 0:
        parser.exit(2, "error: --rotations must be >= 1, --search and --seed >= 0\n")
    if out.exists() and not out.is_file():
        parser.exit(2, f"error: {out} exists and is not a regular file\n")
    _dask.check_args(args)
    load_start = list(os.getloadavg())
    t0 = time.perf_counter()
    data = run(args)
    data = {
        "description": __doc__.splitlines()[0],
        "command": " ".join(
            ["python -m experiments.network_equivariance", *(argv or sys.argv[1:])]
        ),
        "mode": "quick" if args.quick else "full",
        "settings": {
            "seed": args.seed,
            "channels": CHANNELS,
            "cutoff": CUTOFF,
            "species": SPECIES,
            "haar_rotations": 4 if args.quick else args.rotations,
            "adversarial_evaluations": 8 if args.quick else args.search,
            "normalization": "unit",
            "parity": "all",
            "dtype": "float64",
            "exact_tol": EXACT_TOL,
        },
        **data,
    }
    data["closing_note"] = closing_note(data)
    data["tightness"] = tightness_summary(data, tuple(sorted({r["L"] for r in data["rows"]})))
    data["provenance"] = {
        "machine": _io.machine(),
        "torch": torch.__version__,
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
        "loadavg_start": load_start,
        "loadavg_end": list(os.getloadavg()),
        **_dask.describe(args),
        "seconds": round(time.perf_counter() - t0, 1),
        "finished_at": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    _io.write_json_atomic(out, data, indent=1)
    plot(data, out.with_suffix(".png"))
    _io.write_text_atomic(
        out.with_suffix(".md"),
        markdown_table(data, tuple(sorted({r["L"] for r in data["rows"]} & {2, 3})) or (1, 2)),
    )
    print(json.dumps(data["closing_note"], indent=1))
    print(
        f"wrote {out}, {out.with_suffix('.png')}, {out.with_suffix('.md')} ({data['provenance']['seconds']} s)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
