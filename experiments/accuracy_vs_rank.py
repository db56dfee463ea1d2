"""Accuracy versus CP rank on atomistic data: one potential, every tensor-product backend, paired seeds.

Usage: ``python -m experiments.accuracy_vs_rank [--quick] [--out DIR] [--data SET ...]
[--backends NAME ...] [--seeds 0 1 2 3 4] [--L 2] [--records FILE] [--workers N | --scheduler ADDR]``. Writes accuracy_vs_rank.json, .md and .png.

Data (:mod:`tdn_theory.models.data`): "cuau-fcc" (EMT Cu-Au alloy, periodic), "ethanol-gfn2" and
"malonaldehyde-gfn2" (GFN2-xTB molecules with dipoles; the extra ``qm``). Each set is split by
*trajectory* (:func:`~tdn_theory.models.data.split_trajectories`, 80/10/10 of the trajectories, split
seed = model seed): test configurations come from trajectories never seen in training, never
interleaved with training snapshots. The training and validation lists are then thinned to at most
``n_train`` / ``n_val`` evenly spaced configurations, the test list to ``n_test``.

Backends (``backends_for``): "dense" (exact CG, unit tensor, the reference of every comparison),
"cp<R>" at the paper's ranks 7L, ceil(16 ln^2(L+1)), 7L^2 and the smallest exact rank found (factors
from the fit store), "sphere" (the exact quadrature CP of the sphere tensor: other path weights), and
optionally "dense_even" (dense with parity "even": every l = 1 feature a polar vector).

One *unit* of the study is one (data set, backend, seed): :func:`units` lists them and :func:`run_unit`
computes one from its plain-dict description alone (data, split, model, training, evaluation), so the
units are independent: ``--workers N`` / ``--scheduler ADDRESS`` run them as Dask tasks
(experiments/_dask.py), each written to ``--records`` as it finishes. Every backend of a seed starts from
the same initial weights and the same split; training runs until early stopping (patience epochs
without a better validation loss, at most ``epochs``); the best-validation weights are evaluated.

Per unit: test energy MAE (meV/atom; meV and kcal/mol per molecule), force MAE (meV/Å), dipole MAE
(e·Å, molecules), force-equivariance error |F(Rx) - R F(x)| / |F(x)| (Haar mean and the worst value
found by Nelder-Mead: a lower bound on the maximum), the dipole's rotation error |mu(Rx) - R mu(x)|
(e·Å), for periodic sets the stress-equivariance error |sigma(Rx) - R sigma R^T| / |sigma| (Haar
mean), best epoch, whether early stopping ended the run. Per backend and data set: paired
differences to "dense" over the seeds (same split, same initialisation), their mean with a 95 %
Student-t interval, and a verdict: distinguishable from dense when the interval excludes 0.
Baselines per data set: predicting the mean training energy (per molecule / per atom) and the mean
training dipole. Speed (first data set): one training step and one inference step per backend on one
fixed batch, interleaved, medians, ratios to dense.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

from experiments import _common, _dask, _io
from experiments._rank_study import paper_and_exact_ranks

NAME = "accuracy_vs_rank"
DATASETS = ("cuau-fcc", "ethanol-gfn2", "malonaldehyde-gfn2")
#: the metrics compared with dense by paired differences (those present for a data set)
PAIRED = (
    "test_energy_mae_mev_per_atom",
    "test_force_mae_mev_per_A",
    "test_dipole_mae_eA",
)
EXACT = ("dense", "dense_even", "sphere")


def ranks_for(L: int) -> dict[str, int]:
    """The paper's schedules at L and the smallest exact rank found."""
    return paper_and_exact_ranks(L)


def backends_for(L: int) -> list[dict]:
    """Every backend specification: name, backend, rank (cp only), parity, label."""
    runs = [
        {
            "name": "dense",
            "backend": "dense",
            "rank": None,
            "parity": "all",
            "label": "dense (exact)",
        },
        {
            "name": "sphere",
            "backend": "sphere",
            "rank": None,
            "parity": "all",
            "label": "sphere CP (exact)",
        },
    ]
    for schedule, rank in ranks_for(L).items():
        name = f"cp{rank}"
        if any(r["name"] == name for r in runs):
            continue  # two schedules with one rank (L = 1: 7L = 7L^2)
        runs.append(
            {
                "name": name,
                "backend": "cp",
                "rank": rank,
                "parity": "all",
                "label": f"CP R={rank} ({schedule})",
            }
        )
    runs.append(
        {
            "name": "dense_even",
            "backend": "dense",
            "rank": None,
            "parity": "even",
            "label": "dense, parity even (exact)",
        }
    )
    return runs


def settings(quick: bool) -> dict:
    """Model, data and training sizes (quick: a smoke run of about a minute)."""
    if quick:
        return {
            "n_configs": {"cuau-fcc": 20, "ethanol-gfn2": 12, "malonaldehyde-gfn2": 12},
            "n_train": 8,
            "n_val": 4,
            "n_test": 4,
            "channels": 4,
            "layers": 1,
            "epochs": 2,
            "batch_size": 4,
            "lr": 1e-2,
            "patience": 10,
            "dipole_weight": 1.0,
            "rotations": 2,
            "sym_configs": 1,
            "iterations": 8,
            "speed_rounds": 2,
        }
    return {
        "n_configs": {"cuau-fcc": 400, "ethanol-gfn2": 500, "malonaldehyde-gfn2": 500},
        "n_train": 100,
        "n_val": 40,
        "n_test": 50,
        "channels": 8,
        "layers": 2,
        "epochs": 300,
        "batch_size": 8,
        "lr": 1e-2,
        "patience": 20,
        "dipole_weight": 1.0,
        "rotations": 4,
        "sym_configs": 3,
        "iterations": 30,
        "speed_rounds": 5,
    }


def _thin(items: list, n: int) -> list:
    """At most n evenly spaced items (all when there are no more than n)."""
    if len(items) <= n:
        return list(items)
    index = np.linspace(0, len(items) - 1, n).round().astype(int)
    return [items[i] for i in index]


def load_split(name: str, s: dict, seed: int) -> tuple[list, list, list]:
    """Train / validation / test of data set ``name`` for ``seed`` (held-out trajectories, thinned)."""
    from tdn_theory.models import data

    configs = data.load_dataset(name, n_configs=s["n_configs"][name], seed=0)
    train, val, test = data.split_trajectories(configs, seed=seed)
    return _thin(train, s["n_train"]), _thin(val, s["n_val"]), _thin(test, s["n_test"])


def has_dipoles(configs) -> bool:
    return all(a.calc is not None and "dipole" in a.calc.results for a in configs)


def make_model(spec: dict, species: list[str], L: int, s: dict, seed: int, cutoff: float, dipole):
    from tdn_theory.models import TDNPotential

    return TDNPotential(
        species,
        L,
        s["channels"],
        s["layers"],
        cutoff,
        backend=spec["backend"],
        rank=spec["rank"],
        parity=spec["parity"],
        seed=seed,
        dipole=dipole,
    )


def units(
    data_names: list[str], specs: list[dict], seeds: list[int], L: int, s: dict, cutoff: float
) -> list[dict]:
    """The independent units of the study: one plain dict per (data set, backend, seed)."""
    return [
        {"data": name, "spec": spec, "seed": seed, "L": L, "settings": s, "cutoff": cutoff}
        for name in data_names
        for seed in seeds
        for spec in specs
    ]


def run_unit(unit: dict) -> dict:
    """Train and evaluate one (data set, backend, seed); see the module docstring."""
    from tdn_theory.models import data
    from tdn_theory.models.stress import stress_equivariance
    from tdn_theory.models.train import TrainSettings, errors, symmetry_errors, train

    s, spec, seed = unit["settings"], unit["spec"], unit["seed"]
    train_set, val_set, test_set = load_split(unit["data"], s, seed)
    dipole = has_dipoles(train_set)
    species = data.species_of(train_set + val_set + test_set)
    model = make_model(spec, species, unit["L"], s, seed, unit["cutoff"], dipole)
    settings_ = TrainSettings(
        epochs=s["epochs"],
        batch_size=s["batch_size"],
        lr=s["lr"],
        patience=s["patience"],
        dipole_weight=s["dipole_weight"] if dipole else 0.0,
        seed=seed,
    )
    result = train(model, train_set, val_set, settings_)
    test = errors(model, test_set, batch_size=s["batch_size"])
    sym = symmetry_errors(
        model,
        test_set[: s["sym_configs"]],
        rotations=s["rotations"],
        seed=seed,
        iterations=s["iterations"],
    )
    # periodic sets only: |sigma(Rx) - R sigma R^T| / |sigma|, mean over the same Haar rotations
    sym |= stress_equivariance(
        model, test_set[: s["sym_configs"]], rotations=s["rotations"], seed=seed
    )
    tp_error = getattr(model.tp, "meta", {}).get("relative_error")
    curve_keys = ("epoch", "train_loss", "val_energy_mae_mev_per_atom", "val_force_mae_mev_per_A")
    return {
        "data": unit["data"],
        "name": spec["name"],
        "backend": spec["backend"],
        "rank": spec["rank"],
        "parity": spec["parity"],
        "seed": seed,
        "tensor_relative_error": tp_error,
        **{f"test_{k}": v for k, v in test.items()},
        **sym,
        "epochs_run": len(result.history),
        "best_epoch": result.best_epoch,
        "stopped_early": result.stopped_early,
        "seconds_per_epoch": result.seconds_per_epoch,
        "curve": [{k: h[k] for k in curve_keys} for h in result.history],
    }


def data_summary(name: str, s: dict, seed: int) -> dict:
    """Sizes and baselines of one data set's split for ``seed``: force std, predicting the mean
    training energy (per structure / per atom) and the mean training dipole."""
    from tdn_theory.models import data

    train, val, test = load_split(name, s, seed)
    e_train = np.array([a.get_potential_energy() for a in train])
    n_train = np.array([len(a) for a in train])
    e_test = np.array([a.get_potential_energy() for a in test])
    n_test = np.array([len(a) for a in test])
    per_atom = (e_train / n_train).mean()
    out = {
        "name": name,
        "n_train": len(train),
        "n_val": len(val),
        "n_test": len(test),
        "trajectories": {
            part: sorted({int(a.info["trajectory"]) for a in configs})
            for part, configs in (("train", train), ("val", val), ("test", test))
        },
        "force_std_eV_per_A": data.force_std(test),
        "mean_energy_mae_mev_per_atom": 1e3 * float(np.abs(e_test / n_test - per_atom).mean()),
    }
    if len(set(n_train) | set(n_test)) == 1:  # one molecule: per-structure baseline
        out["mean_energy_mae_mev_per_structure"] = 1e3 * float(
            np.abs(e_test - e_train.mean()).mean()
        )
    if has_dipoles(train) and has_dipoles(test):
        mu_train = np.array([a.calc.results["dipole"] for a in train])
        mu_test = np.array([a.calc.results["dipole"] for a in test])
        out["mean_dipole_mae_eA"] = float(np.abs(mu_test - mu_train.mean(axis=0)).mean())
    return out


def paired_difference(values: list[float], scale: float = 0.0) -> dict:
    """Mean of the per-seed differences, its 95 % Student-t interval and a verdict.

    Differences all within ``1e-9 * scale`` (``scale``: the size of the compared metric) are
    rounding, not a difference: verdict "same to rounding" (exact backends that compute the same
    function, e.g. the exact CP and dense)."""
    from scipy import stats

    d = np.asarray(values, dtype=np.float64)
    out: dict = {"n": int(d.size), "mean": float(d.mean()), "differences": d.tolist()}
    if np.all(np.abs(d) <= 1e-9 * scale):
        out.update(low=float(d.min()), high=float(d.max()), verdict="same to rounding")
        return out
    if d.size < 2:
        out.update(low=None, high=None, verdict="one seed: no interval")
        return out
    half = float(stats.t.ppf(0.975, d.size - 1) * d.std(ddof=1) / math.sqrt(d.size))
    low, high = out["mean"] - half, out["mean"] + half
    distinguishable = low > 0 or high < 0
    out.update(
        low=low,
        high=high,
        verdict="distinguishable from dense" if distinguishable else "not distinguishable",
    )
    return out


def summarize(runs: list[dict], specs: list[dict], data_names: list[str]) -> list[dict]:
    """Per data set and backend: mean over seeds, best epochs, and paired differences to dense."""
    rows = []
    keys = (
        *PAIRED,
        "test_energy_mae_mev_per_structure",
        "test_energy_mae_kcal_per_mol",
        "force_equivariance_mean",
        "force_equivariance_worst_found",
        "stress_equivariance_mean",
        "energy_invariance_mev_per_atom",
        "dipole_rotation_error_eA",
        "seconds_per_epoch",
    )
    for name in data_names:
        dense = {r["seed"]: r for r in runs if r["data"] == name and r["name"] == "dense"}
        for spec in specs:
            mine = [r for r in runs if r["data"] == name and r["name"] == spec["name"]]
            if not mine:
                continue
            row = {
                "data": name,
                "name": spec["name"],
                "label": spec["label"],
                "backend": spec["backend"],
                "rank": spec["rank"],
                "parity": spec["parity"],
                "seeds": [r["seed"] for r in mine],
                "tensor_relative_error": mine[0]["tensor_relative_error"],
                "best_epochs": [r["best_epoch"] for r in mine],
                "epochs_run": [r["epochs_run"] for r in mine],
                "all_stopped_early": all(r["stopped_early"] for r in mine),
            }
            for k in keys:
                values = [r[k] for r in mine if k in r]
                if values:
                    row[k] = float(np.mean(values))
            if spec["name"] != "dense":
                row["paired"] = {}
                for k in PAIRED:
                    pairs = [
                        (r[k], dense[r["seed"]][k]) for r in mine if r["seed"] in dense and k in r
                    ]
                    if pairs:
                        scale = max(abs(b) for _, b in pairs)
                        row["paired"][k] = paired_difference([a - b for a, b in pairs], scale)
            rows.append(row)
    return rows


def speed(specs, species, L, s, cutoff, batch_configs, rounds: int, dipole: bool) -> dict:
    """Median seconds of one training step and one inference step per backend, interleaved."""
    import torch

    from tdn_theory.models.train import collate, predict

    base = make_model(specs[0], species, L, s, 0, cutoff, dipole)
    models = {}
    for sp in specs:
        if sp["parity"] != base.parity:
            continue
        models[sp["name"]] = base.with_backend(sp["backend"], rank=sp["rank"])
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


def _interval(p: dict | None, fmt: str) -> str:
    if p is None:
        return ""
    if p["low"] is None:
        return f"{p['mean']:+{fmt}} (1 seed)"
    return f"{p['mean']:+{fmt}} [{p['low']:+{fmt}}, {p['high']:+{fmt}}]"


def _verdict(row: dict) -> str:
    paired = row.get("paired")
    if not paired:
        return "reference"
    parts = []
    for key, short in zip(PAIRED, ("E", "F", "mu"), strict=True):
        if key in paired:
            v = paired[key]["verdict"]
            word = {
                "distinguishable from dense": "yes",
                "not distinguishable": "no",
                "same to rounding": "same (rounding)",
                "one seed: no interval": "1 seed",
            }.get(v, v)
            parts.append(f"{short}: {word}")
    return ", ".join(parts)


def markdown(result: dict) -> str:
    """The tables of the study (one per data set), generated from the JSON."""
    s = result["settings"]
    lines = [
        f"L = {result['L']}, {s['channels']} channels, {s['layers']} layers, cutoff {result['cutoff']} Å; "
        f"at most {s['epochs']} epochs, early stopping after {s['patience']} without a better "
        f"validation loss. Seeds {result['seeds']} (split seed = model seed; every backend of a "
        "seed: same split, same initial weights). Test configurations from held-out trajectories. "
        "Paired differences to dense: mean over seeds [95 % t-interval]; 'distinguishable' when the "
        "interval excludes 0. The absolute MAE columns are means over the seeds of their row (listed in "
        "the last column; rows with other seeds than dense differ by the split as well: compare the "
        "paired columns). Equivariance (tdn_theory.models.train.symmetry_errors): force defect = RMS "
        "of F(Rx) - R F(x) over a configuration's components, relative to the RMS of the test "
        "configurations' reference forces, Haar mean / worst found (Nelder-Mead); dipole "
        "|mu(Rx) - R mu(x)| (e·Å), Haar mean.",
        "",
    ]
    for d in result["data"]:
        name = d["name"]
        base = f"predict-the-mean energy MAE {d['mean_energy_mae_mev_per_atom']:.2f} meV/atom"
        if "mean_energy_mae_mev_per_structure" in d:
            base += f" ({d['mean_energy_mae_mev_per_structure']:.0f} meV per structure)"
        if "mean_dipole_mae_eA" in d:
            base += f", predict-the-mean dipole MAE {d['mean_dipole_mae_eA']:.4f} e·Å"
        lines += [
            f"**{name}** (seed {result['seeds'][0]} split: {d['n_train']} train / {d['n_val']} val / "
            f"{d['n_test']} test; force std {1e3 * d['force_std_eV_per_A']:.0f} meV/Å; {base})",
            "",
            "| backend | tensor rel. error | energy MAE (meV/atom) | force MAE (meV/Å) | dipole MAE (e·Å) "
            "| Δ force vs dense (meV/Å) | Δ dipole vs dense (e·Å) | distinguishable (E, F, mu) "
            "| force equivariance (mean / worst found) | dipole rotation (e·Å) | seed: best epoch |",
            "|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for row in [r for r in result["summary"] if r["data"] == name]:
            err = row["tensor_relative_error"]
            err = "0 (exact)" if row["name"] in EXACT or err is None else f"{err:.3g}"
            paired = row.get("paired", {})
            dip = row.get("test_dipole_mae_eA")
            rot = row.get("dipole_rotation_error_eA")
            lines.append(
                f"| {row['label']} | {err} | {row['test_energy_mae_mev_per_atom']:.2f} | "
                f"{row['test_force_mae_mev_per_A']:.1f} | {'' if dip is None else f'{dip:.4f}'} | "
                f"{_interval(paired.get('test_force_mae_mev_per_A'), '.1f')} | "
                f"{_interval(paired.get('test_dipole_mae_eA'), '.4f')} | {_verdict(row)} | "
                f"{row['force_equivariance_mean']:.1e} / {row['force_equivariance_worst_found']:.1e} | "
                f"{'' if rot is None else f'{rot:.1e}'} | "
                f"{', '.join(f'{k}: {b}' for k, b in zip(row['seeds'], row['best_epochs'], strict=True))}"
                f" of {max(row['epochs_run'])}"
                f"{'' if row['all_stopped_early'] else ' (cap reached)'} |"
            )
        lines.append("")
    speed_ = result.get("speed")
    if speed_:
        lines += [
            f"Speed on {result['speed_data']} (one batch of {s['batch_size']}, medians): "
            + ", ".join(
                f"{n} {t['train_step_vs_dense']:.2f}x / {t['inference_vs_dense']:.2f}x"
                for n, t in speed_.items()
            )
            + " (training step / inference, relative to dense).",
            "",
        ]
    return "\n".join(lines)


def figure(result: dict):
    """Paired force and dipole differences to dense per backend and data set."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [d["name"] for d in result["data"]]
    metrics = [("test_force_mae_mev_per_A", "Δ force MAE vs dense (meV/Å)")]
    if any("test_dipole_mae_eA" in r.get("paired", {}) for r in result["summary"]):
        metrics.append(("test_dipole_mae_eA", "Δ dipole MAE vs dense (e·Å)"))
    fig, axes = plt.subplots(1, len(metrics), figsize=(6.5 * len(metrics), 4.5), squeeze=False)
    for ax, (key, label) in zip(axes[0], metrics, strict=True):
        offset = {n: k for k, n in enumerate(names)}
        for row in result["summary"]:
            p = row.get("paired", {}).get(key)
            if p is None:
                continue
            y_label = row["label"]
            y = [r["label"] for r in result["summary"] if r["name"] != "dense"]
            pos = sorted(set(y), key=y.index).index(y_label)
            shift = 0.8 * (offset[row["data"]] - (len(names) - 1) / 2) / max(len(names), 1)
            low = p["low"] if p["low"] is not None else p["mean"]
            high = p["high"] if p["high"] is not None else p["mean"]
            ax.errorbar(
                p["mean"],
                pos + shift,
                xerr=[[p["mean"] - low], [high - p["mean"]]],
                fmt="o",
                color=f"C{offset[row['data']]}",
                label=row["data"],
                capsize=3,
            )
            ax.plot(
                p["differences"], [pos + shift] * len(p["differences"]), "x", color="gray", ms=4
            )
        labels = [r["label"] for r in result["summary"] if r["name"] != "dense"]
        labels = sorted(set(labels), key=labels.index)
        ax.set_yticks(range(len(labels)), labels, fontsize=8)
        ax.axvline(0.0, color="black", lw=0.8)
        ax.set_xlabel(label)
        handles, texts = ax.get_legend_handles_labels()
        unique = dict(zip(texts, handles, strict=True))
        ax.legend(unique.values(), unique.keys(), fontsize=8)
        ax.grid(alpha=0.3)
    fig.suptitle(
        f"L = {result['L']}: paired differences to dense, mean and 95 % interval over seeds "
        f"{result['seeds']} (x: single seeds)",
        fontsize=10,
    )
    fig.tight_layout()
    return fig


def assemble(
    records: list[dict], data_names, specs, seeds, L, s, cutoff, timing, speed_data
) -> dict:
    """The result document from the unit records (in any order)."""
    records = sorted(records, key=lambda r: (data_names.index(r["data"]), r["seed"], r["name"]))
    return {
        "L": L,
        "seeds": list(seeds),
        "settings": s,
        "cutoff": cutoff,
        "backends": specs,
        "data": [data_summary(name, s, seeds[0]) for name in data_names],
        "ranks": ranks_for(L),
        "runs": records,
        "summary": summarize(records, specs, data_names),
        "speed": timing,
        "speed_data": speed_data,
    }


def _record_context(s: dict, L: int, cutoff: float) -> str:
    """What a stored unit must match to be reused: the settings, L and cutoff."""
    return json.dumps({"settings": s, "L": L, "cutoff": cutoff}, sort_keys=True)


def _read_records(path: Path, s: dict, L: int, cutoff: float) -> dict:
    """Finished units of a records file made with the same settings, by (data, name, seed)."""
    records = _io.read_records(path, _record_context(s, L, cutoff))
    return {(r["data"], r["name"], r["seed"]): r for r in records}


def _append_record(path: Path, record: dict, s: dict, L: int, cutoff: float) -> None:
    _io.append_record(path, _record_context(s, L, cutoff), record)


def _report(record: dict) -> None:
    dip = record.get("test_dipole_mae_eA")
    print(
        f"{record['data']:>18} {record['name']:>10} seed {record['seed']}: force MAE "
        f"{record['test_force_mae_mev_per_A']:.1f} meV/Å, energy MAE "
        f"{record['test_energy_mae_mev_per_atom']:.2f} meV/atom"
        + ("" if dip is None else f", dipole MAE {dip:.4f} e·Å")
        + f", best epoch {record['best_epoch']}/{record['epochs_run']}, "
        f"{record['seconds_per_epoch']:.2f} s/epoch",
        file=sys.stderr,
        flush=True,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog=f"python -m experiments.{NAME}", description=__doc__.splitlines()[0]
    )
    _common.add_common_args(parser)
    parser.add_argument("--L", type=int, default=2, choices=(1, 2, 3))
    parser.add_argument(
        "--data",
        nargs="+",
        choices=DATASETS,
        default=None,
        help="data sets (default: all three; quick: cuau-fcc)",
    )
    parser.add_argument(
        "--backends",
        nargs="+",
        default=None,
        help="backend names (dense, sphere, cp<R>, dense_even; default all; dense is always run)",
    )
    parser.add_argument(
        "--seeds", type=int, nargs="+", default=None, help="model seeds (default 0..4; quick: 0 1)"
    )
    parser.add_argument("--cutoff", type=float, default=4.5)
    parser.add_argument("--no-speed", action="store_true", help="skip the speed measurement")
    _dask.add_args(parser)
    parser.add_argument(
        "--recorded-only",
        action="store_true",
        help="with --records: assemble the result from the finished units only, run nothing new "
        "(an interrupted or partial study; the tables list the seeds each backend has)",
    )
    parser.add_argument(
        "--records",
        type=Path,
        default=None,
        help="JSON-lines file of finished units: each unit is appended when done, and units already "
        "there are not run again (resume an interrupted study; the result holds every unit of the "
        "file that matches the chosen data sets, backends and seeds)",
    )
    args = parser.parse_args(argv)
    _dask.check_args(args)
    out = _common.output_dir(args)
    if args.recorded_only and args.records is None:
        parser.error("--recorded-only needs --records FILE")
    run = _common.Run(NAME, args, argv)
    s = settings(args.quick)
    seeds = args.seeds if args.seeds is not None else ([0, 1] if args.quick else [0, 1, 2, 3, 4])
    data_names = args.data or (["cuau-fcc"] if args.quick else list(DATASETS))
    specs = backends_for(args.L)
    if args.backends is not None:
        known = [sp["name"] for sp in specs]
        unknown = sorted(set(args.backends) - set(known))
        if unknown:
            parser.error(f"unknown backends {unknown}; choose from {known}")
        specs = [sp for sp in specs if sp["name"] == "dense" or sp["name"] in args.backends]
    records = []
    done = _read_records(args.records, s, args.L, args.cutoff) if args.records else {}
    pending = []
    for unit in units(data_names, specs, seeds, args.L, s, args.cutoff):
        key = (unit["data"], unit["spec"]["name"], unit["seed"])
        if key in done:
            records.append(done[key])
        elif not args.recorded_only:
            pending.append(unit)
    with _dask.units(args) as pool:
        if pool.parallel:  # every unit a Dask task; each recorded as it finishes
            futures = [pool.submit(run_unit, unit) for unit in pending]
            finished = (future.result() for future in pool.as_completed(futures))
        else:  # one after the other in this process, each recorded when done
            finished = (run_unit(unit) for unit in pending)
        for record in finished:
            records.append(record)
            if args.records:
                _append_record(args.records, record, s, args.L, args.cutoff)
            _report(record)
    timing = None
    if not args.no_speed:
        train_set, _, _ = load_split(data_names[0], s, seeds[0])
        from tdn_theory.models import data

        timing = speed(
            specs,
            data.species_of(train_set),
            args.L,
            s,
            args.cutoff,
            train_set[: s["batch_size"]],
            s["speed_rounds"],
            has_dipoles(train_set),
        )
    result = assemble(
        records, data_names, specs, seeds, args.L, s, args.cutoff, timing, data_names[0]
    )
    result["units"] = _dask.describe(args)
    run.write(out, result, markdown=markdown(result), figure=figure(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
