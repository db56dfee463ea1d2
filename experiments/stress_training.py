"""Training on stresses and the data-derived message normalisation: paired comparisons on cuau-fcc.

Usage: ``python -m experiments.stress_training [--quick] [--out DIR] [--seeds 0 1 2]``.
Writes stress_training.json and .md into experiments/results (or DIR).

Data: the named EMT set "cuau-fcc" (periodic 32-atom Cu-Au, EMT energies, forces and stresses;
:mod:`tdn_theory.models.data`), one seeded 80/10/10 split. One small potential (L = 1, dense CG
unless stated) is trained per arm and seed with identical settings; a seed fixes the initial weights
and the batch order, so the arms of one seed differ only in what the arm changes:

- "base": energies and forces, ``avg_neighbors`` = 12 (the fixed value used before);
- "stress": as "base" plus the stress term (``stress_weight``, eV/Å^3 MSE);
- "avg_data": as "base" with ``avg_neighbors`` = the training set's mean neighbour count;
- "cp7": as "stress" with the CP product at the paper's rank 7 L^2 = 7 (L = 1, not exact; the exact
  rank is 8), to set its stress-equivariance error beside its force-equivariance error.

Per run: test energy / force / stress MAE, for "stress" and "cp7" the force-equivariance error
(:func:`tdn_theory.models.train.symmetry_errors`) and the stress-equivariance error
``|sigma(Rx) - R sigma R^T| / |sigma|`` (:func:`tdn_theory.models.stress.stress_equivariance`).
Comparisons: per seed the difference arm - base, their mean and a 95 % Student-t interval over
seeds (held-out test set).
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np

from experiments import _common

NAME = "stress_training"
ARMS = ("base", "stress", "avg_data", "cp7")
METRICS = (
    "test_energy_mae_mev_per_atom",
    "test_force_mae_mev_per_A",
    "test_stress_mae_mev_per_A3",
)


def settings(quick: bool) -> dict:
    if quick:
        return {
            "n_configs": 20,
            "L": 1,
            "channels": 4,
            "layers": 1,
            "cutoff": 4.5,
            "epochs": 2,
            "batch_size": 4,
            "lr": 1e-2,
            "patience": 10,
            "stress_weight": 100.0,
            "rotations": 2,
            "sym_configs": 1,
        }
    return {
        "n_configs": 400,
        "L": 1,
        "channels": 8,
        "layers": 2,
        "cutoff": 4.5,
        "epochs": 30,
        "batch_size": 8,
        "lr": 1e-2,
        "patience": 8,
        "stress_weight": 100.0,
        "rotations": 8,
        "sym_configs": 3,
    }


def train_arm(arm: str, s: dict, seed: int, split, species) -> dict:
    from tdn_theory.models import TDNPotential, average_neighbors
    from tdn_theory.models.stress import stress_equivariance
    from tdn_theory.models.train import TrainSettings, errors, symmetry_errors, train

    train_set, val_set, test_set = split
    cp = arm == "cp7"
    avg = average_neighbors(train_set, s["cutoff"]) if arm == "avg_data" else 12.0
    model = TDNPotential(
        species,
        s["L"],
        s["channels"],
        s["layers"],
        s["cutoff"],
        backend="cp" if cp else "dense",
        rank=7 * s["L"] ** 2 if cp else None,
        seed=seed,
        avg_neighbors=avg,
    )
    stress_weight = s["stress_weight"] if arm in ("stress", "cp7") else 0.0
    settings_ = TrainSettings(
        epochs=s["epochs"],
        batch_size=s["batch_size"],
        lr=s["lr"],
        patience=s["patience"],
        seed=seed,
        stress_weight=stress_weight,
    )
    result = train(model, train_set, val_set, settings_)
    record = {
        "arm": arm,
        "seed": seed,
        "backend": model.backend,
        "rank": 7 * s["L"] ** 2 if cp else None,
        "avg_neighbors": avg,
        "stress_weight": stress_weight,
        **{f"test_{k}": v for k, v in errors(model, test_set, batch_size=s["batch_size"]).items()},
        "epochs_run": len(result.history),
        "best_epoch": result.best_epoch,
        "stopped_early": result.stopped_early,
        "seconds_per_epoch": result.seconds_per_epoch,
    }
    if arm in ("stress", "cp7"):
        probe = test_set[: s["sym_configs"]]
        record.update(symmetry_errors(model, probe, rotations=s["rotations"], seed=seed))
        record.update(stress_equivariance(model, probe, rotations=s["rotations"], seed=seed))
    return record


def paired(runs: list[dict], arm: str, base: str = "base") -> dict:
    """Per metric: the per-seed differences arm - base, mean, 95 % t interval (None for 1 seed)."""
    from scipy import stats

    out = {}
    by_seed = {r["seed"]: r for r in runs if r["arm"] == base}
    mine = [r for r in runs if r["arm"] == arm and r["seed"] in by_seed]
    for key in METRICS:
        d = np.array([r[key] - by_seed[r["seed"]][key] for r in mine])
        base_mean = float(np.mean([by_seed[r["seed"]][key] for r in mine]))
        interval = None
        if len(d) > 1:
            half = stats.t.ppf(0.975, len(d) - 1) * d.std(ddof=1) / np.sqrt(len(d))
            interval = [float(d.mean() - half), float(d.mean() + half)]
        out[key] = {
            "differences": d.tolist(),
            "mean": float(d.mean()),
            "interval_95": interval,
            "base_mean": base_mean,
            "relative_mean": float(d.mean() / base_mean),
        }
    return out


def markdown(result: dict) -> str:
    units = {"energy": "meV/atom", "force": "meV/Å", "stress": "meV/Å^3"}
    lines = [
        "| arm | seeds | energy MAE (meV/atom) | force MAE (meV/Å) | stress MAE (meV/Å^3) |",
        "|---|---|---|---|---|",
    ]
    for arm in ARMS:
        mine = [r for r in result["runs"] if r["arm"] == arm]
        if not mine:
            continue
        cells = [f"{np.mean([r[k] for r in mine]):.2f}" for k in METRICS]
        lines.append(f"| {arm} | {len(mine)} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "| paired difference (arm - base) | quantity | mean | 95 % interval |",
        "|---|---|---|---|",
    ]
    for arm, block in result["paired"].items():
        for key, p in block.items():
            name = key.split("_")[1]
            iv = p["interval_95"]
            iv_text = "n/a" if iv is None else f"[{iv[0]:+.2f}, {iv[1]:+.2f}]"
            lines.append(
                f"| {arm} | {name} MAE ({units[name]}) | {p['mean']:+.2f} "
                f"({100 * p['relative_mean']:+.0f} %) | {iv_text} |"
            )
    lines += [
        "",
        "| arm | force equivariance (mean) | stress equivariance (mean) |",
        "|---|---|---|",
    ]
    for arm in ("stress", "cp7"):
        mine = [r for r in result["runs"] if r["arm"] == arm]
        if mine:
            f = np.mean([r["force_equivariance_mean"] for r in mine])
            st = np.mean([r["stress_equivariance_mean"] for r in mine])
            lines.append(f"| {arm} | {f:.2e} | {st:.2e} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog=f"python -m experiments.{NAME}", description=__doc__.splitlines()[0]
    )
    _common.add_common_args(parser)
    parser.add_argument(
        "--seeds", type=int, nargs="+", default=None, help="model seeds (default 0 1 2; quick: 0)"
    )
    args = parser.parse_args(argv)
    out = _common.output_dir(args)
    run = _common.Run(NAME, args, argv)
    from tdn_theory.models import average_neighbors, data

    s = settings(args.quick)
    seeds = args.seeds if args.seeds is not None else ([0] if args.quick else [0, 1, 2])
    configs = data.load_dataset("cuau-fcc", n_configs=s["n_configs"], seed=0)
    split = data.split(configs, seed=0)
    species = data.species_of(configs)
    runs = []
    for seed in seeds:
        for arm in ARMS:
            record = train_arm(arm, s, seed, split, species)
            record["load_average"] = list(os.getloadavg())
            runs.append(record)
            print(
                f"{arm:>8} seed {seed}: stress MAE {record['test_stress_mae_mev_per_A3']:.2f} meV/Å^3, "
                f"force MAE {record['test_force_mae_mev_per_A']:.1f} meV/Å, "
                f"{record['epochs_run']} epochs, {record['seconds_per_epoch']:.2f} s/epoch",
                file=sys.stderr,
                flush=True,
            )
    result = {
        "seeds": seeds,
        "settings": s,
        "data": {
            "name": "cuau-fcc",
            "n_configs": len(configs),
            "n_train": len(split[0]),
            "n_val": len(split[1]),
            "n_test": len(split[2]),
            "avg_neighbors_train": average_neighbors(split[0], s["cutoff"]),
            "stress_std_eV_per_A3": float(np.std([a.get_stress() for a in split[2]])),
            "force_std_eV_per_A": data.force_std(split[2]),
        },
        "runs": runs,
        "paired": {arm: paired(runs, arm) for arm in ("stress", "avg_data")},
    }
    run.write(out, result, markdown=markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
