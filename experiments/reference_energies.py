"""Per-species reference energies fitted to the raw energies versus to the network's residual.

Usage: ``python -m experiments.reference_energies [--quick] [--out DIR]``. Writes
reference_energies.json and .md.

The same dense TDN potential (same seed, split, settings) is trained twice, once with the references
fitted by least squares to the raw training energies (the former protocol, ``reference_fit="raw"``)
and once to the residual ``E^ref - E^net`` of the untrained network (``"residual"``, the default;
:func:`tdn_theory.models.train.fit_reference_energies`), and the test energy and force MAEs are
compared. Cases: "cuau-fcc" with the settings of the committed Cu-Au accuracy study before the
molecular study (160 configurations, random 80/10/10 split seed 0, 16 channels, 2 layers, at most
25 epochs, patience 8, lr 1e-2; seeds 0 and 1), and "ethanol-gfn2" with the settings of the molecular
accuracy study (experiments.accuracy_vs_rank: held-out trajectories, 100 training configurations,
8 channels; seed 0). Also the untrained network's mean energy per atom (what the raw fit leaves as
an offset). ``--quick``: 20 Cu-Au configurations, 4 channels, 2 epochs, seed 0, no ethanol.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

from experiments import _common

NAME = "reference_energies"


def cases(quick: bool) -> list[dict]:
    cuau = {
        "data": "cuau-fcc",
        "n_configs": 20 if quick else 160,
        "split": "random",
        "channels": 4 if quick else 16,
        "layers": 1 if quick else 2,
        "epochs": 2 if quick else 25,
        "patience": 8,
        "lr": 1e-2,
        "batch_size": 8,
        "seeds": [0] if quick else [0, 1],
    }
    if quick:
        return [cuau]
    ethanol = {
        "data": "ethanol-gfn2",
        "n_configs": 500,
        "split": "trajectory",
        "n_train": 100,
        "n_val": 40,
        "n_test": 50,
        "channels": 8,
        "layers": 2,
        "epochs": 100,
        "patience": 10,
        "lr": 1e-2,
        "batch_size": 8,
        "seeds": [0],
    }
    return [cuau, ethanol]


def run_case(case: dict, seed: int, reference_fit: str) -> dict:
    import torch

    from experiments.accuracy_vs_rank import _thin
    from tdn_theory.models import TDNPotential, data
    from tdn_theory.models.train import (
        TrainSettings,
        _prepared,
        collate,
        errors,
        predict_all,
        train,
    )

    configs = data.load_dataset(case["data"], n_configs=case["n_configs"], seed=0)
    if case["split"] == "random":
        train_set, val_set, test_set = data.split(configs, seed=0)
    else:
        train_set, val_set, test_set = data.split_trajectories(configs, seed=seed)
        train_set = _thin(train_set, case["n_train"])
        val_set = _thin(val_set, case["n_val"])
        test_set = _thin(test_set, case["n_test"])
    model = TDNPotential(
        data.species_of(configs), 2, case["channels"], case["layers"], 4.5, seed=seed
    )
    items = [_prepared(model, a) for a in train_set]
    with torch.no_grad():
        initial = predict_all(model, collate(model, (), items), forces=False)["energy"]
    n_atoms = np.array([len(a) for a in train_set])
    settings = TrainSettings(
        epochs=case["epochs"],
        batch_size=case["batch_size"],
        lr=case["lr"],
        patience=case["patience"],
        seed=seed,
        reference_fit=reference_fit,
    )
    result = train(model, train_set, val_set, settings)
    test = errors(model, test_set)
    return {
        "data": case["data"],
        "seed": seed,
        "reference_fit": reference_fit,
        "initial_network_mev_per_atom": 1e3 * float((initial.numpy() / n_atoms).mean()),
        "test_energy_mae_mev_per_atom": test["energy_mae_mev_per_atom"],
        "test_energy_mae_mev_per_structure": test["energy_mae_mev_per_structure"],
        "test_force_mae_mev_per_A": test["force_mae_mev_per_A"],
        "best_epoch": result.best_epoch,
        "epochs_run": len(result.history),
    }


def markdown(result: dict) -> str:
    lines = [
        "| data | seed | energy MAE raw fit (meV/atom) | energy MAE residual fit (meV/atom) "
        "| force MAE raw / residual (meV/Å) | untrained network (meV/atom) |",
        "|---|---|---|---|---|---|",
    ]
    runs = result["runs"]
    for raw in [r for r in runs if r["reference_fit"] == "raw"]:
        res = next(
            r
            for r in runs
            if r["reference_fit"] == "residual"
            and r["data"] == raw["data"]
            and r["seed"] == raw["seed"]
        )
        lines.append(
            f"| {raw['data']} | {raw['seed']} | {raw['test_energy_mae_mev_per_atom']:.2f} | "
            f"{res['test_energy_mae_mev_per_atom']:.2f} | {raw['test_force_mae_mev_per_A']:.1f} / "
            f"{res['test_force_mae_mev_per_A']:.1f} | {raw['initial_network_mev_per_atom']:.0f} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog=f"python -m experiments.{NAME}", description=__doc__.splitlines()[0]
    )
    _common.add_common_args(parser)
    args = parser.parse_args(argv)
    out = _common.output_dir(args)
    run = _common.Run(NAME, args, argv)
    runs = []
    for case in cases(args.quick):
        for seed in case["seeds"]:
            for fit in ("raw", "residual"):
                record = run_case(case, seed, fit)
                runs.append(record)
                print(
                    f"{case['data']} seed {seed} {fit}: energy MAE "
                    f"{record['test_energy_mae_mev_per_atom']:.2f} meV/atom",
                    file=sys.stderr,
                    flush=True,
                )
    result = {"cases": cases(args.quick), "runs": runs}
    run.write(out, result, markdown=markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
