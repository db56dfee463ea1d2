"""Accuracy versus CP rank on real atomistic data: one potential, every tensor-product backend.

Usage: ``python -m experiments.accuracy_vs_rank [--quick] [--out DIR] [--seeds 0 1 2] [--L 2]``.
Writes accuracy_vs_rank.json, .md and .png into experiments/results (or DIR).

Data: the named EMT set "cuau-fcc" (periodic 32-atom Cu-Au fcc alloy, Langevin MD 300-1200 K;
:mod:`tdn_theory.models.data`), one seeded 80/10/10 split shared by every run. For every backend
the same :class:`TDNPotential` (same L, channels, layers, cutoff, initial weights for a seed) is
trained with the same settings and epochs (:func:`tdn_theory.models.train.train`):

- "dense" (exact CG, unit tensor), "e3nn" (exact, e3nn's product; seed 0 only), "sphere" (exact
  quadrature CP of the sphere tensor: other fixed path weights);
- "cp" with the unit tensor at the paper's ranks 7L, ceil(16 ln^2(L+1)), 7L^2 and at the smallest
  exact rank found (factors from the fit store, tdn_theory.cp.best_fit: one source per fit).

Per run: test energy MAE (meV/atom) and force MAE (meV/Å), the trained model's force-equivariance
error |F(Rx) - R F(x)| / |F(x)| (mean over Haar rotations, adversarial max), stress-equivariance
error |sigma(Rx) - R sigma R^T| / |sigma| (mean over the same rotations) and energy-invariance
error, the learning curve, seconds per epoch. Speed is measured separately and side by side: one
training step (energy + forces with create_graph + backward) and one inference step (energy +
forces) per backend on one fixed batch, interleaved over rounds, medians; ratios to "dense".
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from experiments import _common, _dask
from experiments._rank_study import paper_and_exact_ranks

NAME = "accuracy_vs_rank"


def ranks_for(L: int) -> dict[str, int]:
    """The paper's schedules at L and the smallest exact rank found."""
    return paper_and_exact_ranks(L)


def backends_for(L: int) -> list[dict]:
    """Run specifications: name, backend, rank (cp only), label."""
    runs = [
        {"name": "dense", "backend": "dense", "rank": None, "label": "dense (exact)"},
        {"name": "e3nn", "backend": "e3nn", "rank": None, "label": "e3nn (exact)"},
        {"name": "sphere", "backend": "sphere", "rank": None, "label": "sphere CP (exact)"},
    ]
    for schedule, rank in ranks_for(L).items():
        runs.append(
            {
                "name": f"cp{rank}",
                "backend": "cp",
                "rank": rank,
                "label": f"CP R={rank} ({schedule})",
            }
        )
    return runs


def settings(quick: bool) -> dict:
    if quick:
        return {
            "n_configs": 20,
            "channels": 4,
            "layers": 1,
            "epochs": 2,
            "batch_size": 4,
            "lr": 1e-2,
            "patience": 10,
            "rotations": 2,
            "sym_configs": 1,
            "speed_rounds": 2,
        }
    return {
        "n_configs": 160,
        "channels": 16,
        "layers": 2,
        "epochs": 25,
        "batch_size": 8,
        "lr": 1e-2,
        "patience": 8,
        "rotations": 8,
        "sym_configs": 3,
        "speed_rounds": 7,
    }


def make_model(spec: dict, species: list[str], L: int, s: dict, seed: int, cutoff: float):
    from tdn_theory.models import TDNPotential

    return TDNPotential(
        species,
        L,
        s["channels"],
        s["layers"],
        cutoff,
        backend=spec["backend"],
        rank=spec["rank"],
        seed=seed,
    )


def train_one(spec, species, L, s, seed, cutoff, split):
    from tdn_theory.models.stress import stress_equivariance
    from tdn_theory.models.train import TrainSettings, errors, symmetry_errors, train

    train_set, val_set, test_set = split
    model = make_model(spec, species, L, s, seed, cutoff)
    settings_ = TrainSettings(
        epochs=s["epochs"],
        batch_size=s["batch_size"],
        lr=s["lr"],
        patience=s["patience"],
        seed=seed,
    )
    result = train(model, train_set, val_set, settings_)
    test = errors(model, test_set, batch_size=s["batch_size"])
    sym = symmetry_errors(model, test_set[: s["sym_configs"]], rotations=s["rotations"], seed=seed)
    sym |= stress_equivariance(
        model, test_set[: s["sym_configs"]], rotations=s["rotations"], seed=seed
    )
    tp_error = getattr(model.tp, "meta", {}).get("relative_error")
    return {
        "name": spec["name"],
        "backend": spec["backend"],
        "rank": spec["rank"],
        "seed": seed,
        "tensor_relative_error": tp_error,
        **{f"test_{k}": v for k, v in test.items()},
        **sym,
        "epochs_run": len(result.history),
        "best_epoch": result.best_epoch,
        "seconds_per_epoch": result.seconds_per_epoch,
        "curve": [
            {
                k: h[k]
                for k in (
                    "epoch",
                    "train_loss",
                    "val_energy_mae_mev_per_atom",
                    "val_force_mae_mev_per_A",
                )
            }
            for h in result.history
        ],
    }


def _train_unit(unit: tuple, **kw) -> dict:
    """One (backend spec, seed) training run: a Dask unit (experiments/_dask.py)."""
    spec, seed = unit
    return train_one(spec, kw["species"], kw["L"], kw["s"], seed, kw["cutoff"], kw["split"])


def speed(specs, species, L, s, cutoff, batch_configs, rounds: int) -> dict[str, dict]:
    """Median seconds of one training step and one inference step per backend, interleaved."""
    import torch

    from tdn_theory.models.train import collate, predict

    base = make_model(specs[0], species, L, s, 0, cutoff)
    models = {sp["name"]: base.with_backend(sp["backend"], rank=sp["rank"]) for sp in specs}
    batch = collate(base, batch_configs)
    times = {name: {"train_step": [], "inference": []} for name in models}
    for _ in range(rounds):
        for name, model in models.items():
            t0 = time.perf_counter()
            energies, forces = predict(model, batch, create_graph=True)
            loss = (energies**2).mean() + (forces**2).mean()
            loss.backward()
            model.zero_grad(set_to_none=True)
            t1 = time.perf_counter()
            with torch.enable_grad():
                predict(model, batch)
            t2 = time.perf_counter()
            times[name]["train_step"].append(t1 - t0)
            times[name]["inference"].append(t2 - t1)
    out = {n: {k: float(np.median(v)) for k, v in t.items()} for n, t in times.items()}
    for t in out.values():
        t["train_step_vs_dense"] = t["train_step"] / out["dense"]["train_step"]
        t["inference_vs_dense"] = t["inference"] / out["dense"]["inference"]
    return out


def summarize(runs: list[dict], specs: list[dict]) -> list[dict]:
    """Mean and standard deviation over seeds per backend."""
    rows = []
    keys = (
        "test_energy_mae_mev_per_atom",
        "test_force_mae_mev_per_A",
        "force_equivariance_mean",
        "force_equivariance_max",
        "stress_equivariance_mean",
        "energy_invariance_mev_per_atom",
        "seconds_per_epoch",
    )
    for spec in specs:
        mine = [r for r in runs if r["name"] == spec["name"]]
        row = {
            "name": spec["name"],
            "label": spec["label"],
            "backend": spec["backend"],
            "rank": spec["rank"],
            "seeds": [r["seed"] for r in mine],
            "tensor_relative_error": mine[0]["tensor_relative_error"],
        }
        for k in keys:
            values = np.array([r[k] for r in mine])
            row[k] = float(values.mean())
            row[k + "_std"] = float(values.std(ddof=1)) if len(values) > 1 else None
        rows.append(row)
    return rows


def markdown(result: dict) -> str:
    speed_ = result["speed"]
    lines = [
        f"Data: {result['data']['name']}, {result['data']['n_train']} train / {result['data']['n_val']}"
        f" val / {result['data']['n_test']} test configurations; force std "
        f"{1e3 * result['data']['force_std_eV_per_A']:.0f} meV/Å. L = {result['L']}, "
        f"{result['settings']['channels']} channels, {result['settings']['layers']} layers, "
        f"{result['settings']['epochs']} epochs max. Mean ± std over seeds {result['seeds']}.",
        "",
        "| backend | tensor rel. error | energy MAE (meV/atom) | force MAE (meV/Å) | force equivariance (mean / adv. max) | train step vs dense | inference vs dense |",
        "|---|---|---|---|---|---|---|",
    ]

    def pm(row, key, fmt):
        std = row[key + "_std"]
        return format(row[key], fmt) + ("" if std is None else " ± " + format(std, fmt))

    for row in result["summary"]:
        err = row["tensor_relative_error"]
        err = "0 (exact)" if row["backend"] in ("dense", "e3nn", "sphere") else f"{err:.3g}"
        sp = speed_[row["name"]]
        lines.append(
            f"| {row['label']} | {err} | {pm(row, 'test_energy_mae_mev_per_atom', '.2f')} | "
            f"{pm(row, 'test_force_mae_mev_per_A', '.1f')} | {row['force_equivariance_mean']:.1e} / "
            f"{row['force_equivariance_max']:.1e} | {sp['train_step_vs_dense']:.2f} | "
            f"{sp['inference_vs_dense']:.2f} |"
        )
    return "\n".join(lines) + "\n"


def figure(result: dict):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.5))
    cp = [r for r in result["summary"] if r["backend"] == "cp"]
    ranks = [r["rank"] for r in cp]
    ax1.errorbar(
        ranks,
        [r["test_force_mae_mev_per_A"] for r in cp],
        yerr=[r["test_force_mae_mev_per_A_std"] or 0 for r in cp],
        fmt="o-",
        label="CP (unit)",
    )
    for r, style in zip(
        [r for r in result["summary"] if r["backend"] != "cp"], ("--", ":", "-."), strict=False
    ):
        ax1.axhline(r["test_force_mae_mev_per_A"], ls=style, color="gray", label=r["label"])
    ax1.set_xlabel("CP rank R")
    ax1.set_ylabel("test force MAE (meV/Å)")
    ax1.set_title(f"L = {result['L']}: accuracy vs rank (exact backends as lines)")
    ax1.legend(fontsize=8)
    ax1.grid(alpha=0.3)
    for run in result["runs"]:
        if run["seed"] == result["seeds"][0]:
            curve = run["curve"]
            ax2.plot(
                [c["epoch"] for c in curve],
                [c["val_force_mae_mev_per_A"] for c in curve],
                label=run["name"],
            )
    ax2.set_yscale("log")
    ax2.set_xlabel("epoch")
    ax2.set_ylabel("validation force MAE (meV/Å)")
    ax2.set_title(f"learning curves (seed {result['seeds'][0]})")
    ax2.legend(fontsize=8)
    ax2.grid(alpha=0.3, which="both")
    fig.tight_layout()
    return fig


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog=f"python -m experiments.{NAME}", description=__doc__.splitlines()[0]
    )
    _common.add_common_args(parser)
    parser.add_argument("--L", type=int, default=2, choices=(1, 2, 3))
    parser.add_argument(
        "--seeds", type=int, nargs="+", default=None, help="model seeds (default 0 1 2; quick: 0)"
    )
    parser.add_argument("--cutoff", type=float, default=4.5)
    _dask.add_args(parser)
    args = parser.parse_args(argv)
    _dask.check_args(args)
    out = _common.output_dir(args)
    run = _common.Run(NAME, args, argv)
    from tdn_theory.models import data

    s = settings(args.quick)
    seeds = args.seeds if args.seeds is not None else ([0] if args.quick else [0, 1, 2])
    configs = data.load_dataset("cuau-fcc", n_configs=s["n_configs"], seed=0)
    split = data.split(configs, seed=0)
    species = data.species_of(configs)
    specs = backends_for(args.L)
    # the external reference e3nn: one run (first seed)
    units = [
        (spec, seed)
        for seed in seeds
        for spec in specs
        if not (spec["backend"] == "e3nn" and seed != seeds[0])
    ]
    with _dask.units(args) as pool:
        runs = pool.map(
            _train_unit, units, species=species, L=args.L, s=s, cutoff=args.cutoff, split=split
        )
    for (spec, seed), record in zip(units, runs, strict=True):
        print(
            f"{spec['name']:>8} seed {seed}: force MAE {record['test_force_mae_mev_per_A']:.1f} meV/Å, "
            f"energy MAE {record['test_energy_mae_mev_per_atom']:.2f} meV/atom, "
            f"{record['seconds_per_epoch']:.2f} s/epoch",
            file=sys.stderr,
            flush=True,
        )
    timing = speed(
        specs, species, args.L, s, args.cutoff, split[0][: s["batch_size"]], s["speed_rounds"]
    )
    result = {
        "L": args.L,
        "seeds": seeds,
        "settings": s,
        "cutoff": args.cutoff,
        "data": {
            "name": "cuau-fcc",
            "n_configs": len(configs),
            "n_train": len(split[0]),
            "n_val": len(split[1]),
            "n_test": len(split[2]),
            "force_std_eV_per_A": data.force_std(split[2]),
        },
        "ranks": ranks_for(args.L),
        "runs": runs,
        "summary": summarize(runs, specs),
        "speed": timing,
        "units": _dask.describe(args),
    }
    run.write(out, result, markdown=markdown(result), figure=figure(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
