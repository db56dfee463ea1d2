"""Network-level equivariance of a TDN potential: measured defects against the proven bound.

On real atomic geometries (a periodic fcc Cu-Au alloy and a Cu-Au icosahedral cluster, each
rattled and as a snapshot of Langevin MD with ASE's EMT calculator), for randomly initialised
``TDNPotential`` models (C = 8 channels, cutoff 4 Å, seed 0) with L = 1..4 and depth 1..6, and
CP tensor products of the unit CG tensor at the ranks 7L, ceil(16 ln^2(L+1)), 7L^2 and an exact
rank (the committed exact factor files), this measures

* the relative energy-invariance error |E(Rx) - E(x)| / |E(x)|,
* the force-equivariance error |F(Rx) - R F(x)|_F / |F(x)|_F,
* the per-layer feature defect |h^t(Rx) - D h^t(x)|_F,

over Haar-sampled rotations plus a Nelder-Mead search over rotations (started at the worst Haar
sample), and evaluates the bound of proofs/network_propagation.md on the same configuration
(tightness = worst defect found / bound). It also measures the mirror check: for parity "all"
and "even" (exact dense backend), |E(-x) - E(x)| / |E| and |F(-x) + F(x)| / |F|.

Grid. Full mode: depth 1..6 for the ranks 7L^2 and exact (the README table), the other two ranks
at depth 3; 12 Haar rotations and a 30-evaluation search per point. ``--quick``: L = 1, 2, depth
1..3, the alloy only, 4 rotations, an 8-evaluation search (about a minute).

Every CP comes from the fit store (``tdn_theory.cp.best_fit`` through the model's ``rank=``): the
best-known fit at each rank, the exact rank being the store's smallest exact one.

Writes experiments/results/network_equivariance.{json,png,md} atomically. Run:

    OMP_NUM_THREADS=1 python -m experiments.network_equivariance           # ~15 min, 2 cores
    python -m experiments.network_equivariance --quick                     # ~1 min, results/quick/
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
    adversarial_rotation,
    evaluate_bound,
    measure_defects,
    tensor_product_error,
)

CHANNELS = 8
CUTOFF = 4.0
SPECIES = ["Cu", "Au"]
EXACT_TOL = EXACT_RTOL  # a tensor product this close to exact is "exact": defects are rounding


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


def measure_point(model, atoms, n_rotations: int, search: int, seed: int) -> dict:
    """Defects over Haar rotations and an adversarial search, and the bound, for one model."""
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
    bound = evaluate_bound(model, *a)
    t2 = time.perf_counter()
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
        "seconds_defects": t1 - t0,
        "seconds_bound": t2 - t1,
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
        point = measure_point(model, atoms, n_rot, search, seed)
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
        )
        rows.append(point)
    print(
        f"L={L} {schedule:12s} R={rank:3d} depth={depth}: force err "
        f"{max(r['force_rel_worst'] for r in rows):.2e}, bound "
        f"{max(r['force_bound_rel'] for r in rows):.2e} ({time.perf_counter() - t0:.0f} s)",
        flush=True,
    )
    return {"tensor_product": tp, "rows": rows}


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


def markdown_table(data: dict, Ls: tuple[int, ...] = (2, 3)) -> str:
    """README table: L, depth, rank; worst force error, bound, tightness; energy error, bound."""
    lines = [
        "| L | depth | rank | tensor error | force error (worst) | force bound | tightness | energy error (worst) | energy bound |",
        "|---|---|---|---|---|---|---|---|---|",
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
                fb = max(r["force_bound_rel"] for r in sel)
                eb = max(r["energy_bound_rel"] for r in sel)
                ew = max(r["energy_rel_worst"] for r in sel)
                tight = max((r["force_tightness"] or 0.0) for r in sel)
                tight_s = f"{tight:.1e}" if not worst["exact"] else "(rounding)"
                lines.append(
                    f"| {L} | {depth} | {worst['rank']} ({schedule}) | {worst['tp_relative_error']:.1e} "
                    f"| {worst['force_rel_worst']:.1e} | {fb:.1e} | {tight_s} | {ew:.1e} | {eb:.1e} |"
                )
    return "\n".join(lines) + "\n"


def plot(data: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = data["rows"]
    Ls = sorted({r["L"] for r in rows})
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    colors = plt.cm.viridis(np.linspace(0, 0.85, len(Ls)))
    for L, color in zip(Ls, colors, strict=True):
        sel = sorted(
            (r for r in rows if r["L"] == L and r["schedule"] == "7L^2"), key=lambda r: r["depth"]
        )
        depths = sorted({r["depth"] for r in sel})
        worst = [max(r["force_rel_worst"] for r in sel if r["depth"] == d) for d in depths]
        bound = [max(r["force_bound_rel"] for r in sel if r["depth"] == d) for d in depths]
        exact = sorted(
            (r for r in rows if r["L"] == L and r["schedule"] == "exact"), key=lambda r: r["depth"]
        )
        ex = [max(r["force_rel_worst"] for r in exact if r["depth"] == d) for d in depths]
        axes[0].semilogy(depths, worst, "o-", color=color, label=f"L={L} CP 7L² measured")
        axes[0].semilogy(depths, bound, "--", color=color, label=f"L={L} bound")
        axes[0].semilogy(depths, ex, ":", color=color, marker="x", label=f"L={L} exact rank")
    axes[0].set_xlabel("depth (interaction layers)")
    axes[0].set_ylabel("|F(Rx) - R F(x)| / |F(x)|")
    axes[0].set_title("force equivariance: worst found vs bound")
    axes[0].legend(fontsize=6, ncol=2)
    for L, color in zip(Ls, colors, strict=True):
        sel = [r for r in rows if r["L"] == L and r["depth"] == 3 and not r["exact"]]
        by_rank = sorted({(r["tp_relative_error"], r["rank"]) for r in sel})
        xs = [e for e, _ in by_rank]
        ys = [max(r["force_rel_worst"] for r in sel if r["rank"] == k) for _, k in by_rank]
        axes[1].loglog(xs, ys, "o-", color=color, label=f"L={L}")
        for (e, k), y in zip(by_rank, ys, strict=True):
            axes[1].annotate(f"R={k}", (e, y), fontsize=6)
    axes[1].set_xlabel("tensor-product relative error ||T̂ - T|| / ||T||")
    axes[1].set_ylabel("force equivariance error (depth 3)")
    axes[1].set_title("tensor error -> force error after 3 layers")
    axes[1].legend(fontsize=7)
    fig.tight_layout()
    _io.save_figure_atomic(fig, path)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="L = 1, 2, depth 1..3, ~1 min")
    parser.add_argument("--L", type=int, nargs="+", default=[1, 2, 3, 4])
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
