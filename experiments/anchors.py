"""The models users would pick instead: MACE and NequIP beside TDN on the same splits.

Usage: ``python -m experiments.anchors [--quick] [--out DIR] [--data SET ...] [--seeds 0 1 2]
[--models NAME ...] [--records FILE] [--env-root DIR] [--workers N]``.
Writes anchors.json, .md and .png.

Anchors. Each anchor runs in a virtual environment of its own (mace-torch pins e3nn 0.4.4, this
project needs e3nn >= 0.5), built or reused by :func:`ensure_env` under ``<cache>/anchors/<name>``
(``--env-root`` to move it) from its pinned requirements ``experiments/anchor_envs/<name>.txt``
(torch 2.13.0, the CPU wheel, installed first). A worker script per anchor
(``experiments/anchor_worker_<name>.py``, run with that environment's python, never importing
tdn_theory) trains with the anchor's *official* command line (``mace_run_train``; ``nequip-train``
with a generated config), evaluates the best-validation model on the test file and measures step
times. An anchor whose environment cannot be built is skipped and the reason is recorded in the
result (and printed).

Data. ``cuau-fcc`` (EMT Cu-Au, periodic, 32 atoms) and ``ethanol-gfn2`` (GFN2-xTB, 9 atoms), split
exactly as the accuracy study (:func:`experiments.accuracy_vs_rank.load_split`: held-out
trajectories, split seed = model seed, thinned to 100 / 40 / 50 configurations), exported per seed
as extxyz with MACE's keys (``REF_energy``, ``REF_forces``; ``REF_dipole`` is written but no model
here trains on it: dipoles are compared between TDN backends in the accuracy study, not here).

Budget. The same number of epochs for every model (``epochs``), the same batch size and initial
learning rate; each model otherwise trains with its own recipe (MACE: its weighted loss and
scheduler; NequIP: its defaults; TDN: :func:`tdn_theory.models.train.train` with early stopping
switched off, patience = epochs) and keeps its best-validation weights. Best epochs are reported:
a best epoch at the budget's end means that model was still improving.

TDN models (L = 2): dense and CP at rank 28 = 7L^2, each at 16 channels x 2 layers (the size of the
accuracy study's models, doubled) and at 32 channels x 3 layers (the candidate to match MACE's
accuracy). Per (data set, model, seed), one *unit*: test energy MAE (meV/atom, meV/structure),
force MAE (meV/Å), parameters, best epoch, training seconds. Paired differences over seeds (same
split per seed) of each TDN model minus each anchor with 95 % Student-t intervals
(:func:`experiments.accuracy_vs_rank.paired_difference`).

Speed. One process per environment (TDN: this one; each anchor: its worker), run in the same order
[TDN, MACE, NequIP] ``timing_repeats`` times, each process timing ``timing_rounds`` rounds after a
warm-up on the same 8 training configurations of seed 0: one training step (energies and forces
with create_graph, squared-error loss, backward) and one inference (energies and forces); plus one
inference of a ~2,000-atom cell (cuau-fcc: a 2,048-atom Cu3Au-composition fcc supercell at the
data's lattice constant; ethanol: 216 ethanol molecules on a 6x6x6 grid 8 Å apart, 1,944 atoms,
no cell) reported per atom. Medians; ratios to TDN dense 16x2. All processes: one thread.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from experiments import _common, _dask, _io
from experiments import accuracy_vs_rank as accuracy

NAME = "anchors"
DATASETS = ("cuau-fcc", "ethanol-gfn2")
HERE = Path(__file__).resolve().parent
#: The anchors: pinned requirements, worker script, label, and the worker's model options.
ANCHORS = {
    "mace": {
        "requirements": HERE / "anchor_envs" / "mace.txt",
        "worker": HERE / "anchor_worker_mace.py",
        "label": "MACE 0.3.16, 16x0e+16x1o+16x2e, 2 interactions, correlation 3",
        "options": ["--channels", "16", "--layers", "2", "--lmax", "2", "--correlation", "3"],
    },
    "nequip": {
        "requirements": HERE / "anchor_envs" / "nequip.txt",
        "worker": HERE / "anchor_worker_nequip.py",
        "label": "NequIP 0.19.1, 16 features, l_max 2, 2 layers",
        "options": ["--channels", "16", "--layers", "2", "--lmax", "2"],
    },
}
#: The TDN models (L = 2): name -> backend, rank, channels, layers, label.
TDN_MODELS = {
    "tdn_dense": {"backend": "dense", "rank": None, "channels": 16, "layers": 2},
    "tdn_cp28": {"backend": "cp", "rank": 28, "channels": 16, "layers": 2},
    "tdn_dense_32x3": {"backend": "dense", "rank": None, "channels": 32, "layers": 3},
    "tdn_cp28_32x3": {"backend": "cp", "rank": 28, "channels": 32, "layers": 3},
}
for _name, _spec in TDN_MODELS.items():
    _kind = "dense (exact CG)" if _spec["backend"] == "dense" else f"CP rank {_spec['rank']}"
    _spec["label"] = f"TDN {_kind}, L 2, {_spec['channels']} ch x {_spec['layers']} layers"
REFERENCE = "tdn_dense"
L = 2


def settings(quick: bool) -> dict:
    """Split sizes (those of the accuracy study), the epoch budget and the timing rounds."""
    s = dict(accuracy.settings(quick))
    s.update(
        {
            "epochs": 1 if quick else 25,
            "batch_size": 8 if not quick else 4,
            "lr": 1e-2,
            "cutoff": 4.5,
            "timing_rounds": 2 if quick else 5,
            "timing_repeats": 2 if quick else 3,
        }
    )
    return s


# --------------------------------------------------------------------------------------------
# anchor environments
# --------------------------------------------------------------------------------------------


def env_root(args: argparse.Namespace | None = None) -> Path:
    """Where the anchor environments live: --env-root, else <cache>/anchors."""
    if args is not None and getattr(args, "env_root", None) is not None:
        return Path(args.env_root)
    from tdn_theory.so3.cache import cache_dir

    return cache_dir().parent / "anchors"


def _requirements_digest(name: str) -> str:
    return hashlib.sha256(ANCHORS[name]["requirements"].read_bytes()).hexdigest()


def env_python(name: str, root: Path) -> Path | None:
    """The python of anchor ``name``'s environment when it is built from the current pins."""
    folder = root / name
    python = folder / "bin" / "python"
    marker = folder / "tdn_anchor_env.json"
    try:
        recorded = json.loads(marker.read_text()).get("requirements_sha256")
    except (OSError, ValueError, AttributeError):
        return None
    return python if python.is_file() and recorded == _requirements_digest(name) else None


def ensure_env(name: str, root: Path, *, build: bool = True) -> tuple[Path | None, str | None]:
    """(python, None) of anchor ``name``'s environment, built if missing; (None, reason) when it
    is missing and ``build`` is False, or when building it failed (the reason names the step)."""
    python = env_python(name, root)
    if python is not None:
        return python, None
    if not build:
        return None, (
            f"the {name} environment is not built under {root}; build it with "
            f"python -m experiments.anchors --setup (needs network access to PyPI)"
        )
    folder = root / name
    if folder.is_symlink() or (folder.exists() and not folder.is_dir()):
        return None, f"{folder} exists and is not a folder; remove it or pass --env-root"
    root.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(folder, ignore_errors=True)  # a half-built or stale environment
    steps = [
        [sys.executable, "-m", "venv", str(folder)],
        [str(folder / "bin" / "python"), "-m", "pip", "install", "-q", "torch==2.13.0"],
        [
            str(folder / "bin" / "python"),
            "-m",
            "pip",
            "install",
            "-q",
            "-r",
            str(ANCHORS[name]["requirements"]),
        ],
    ]
    for step in steps:
        print(f"anchors: {' '.join(step)}", file=sys.stderr, flush=True)
        done = subprocess.run(step, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            last = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["(no output)"]
            return (
                None,
                f"building the {name} environment failed at `{' '.join(step[-3:])}`: {last[0]}",
            )
    marker = {"requirements_sha256": _requirements_digest(name), "built": time.time()}
    _io.write_json_atomic(folder / "tdn_anchor_env.json", marker)
    return env_python(name, root), None


# --------------------------------------------------------------------------------------------
# data
# --------------------------------------------------------------------------------------------


def export_split(data_name: str, s: dict, seed: int, folder: Path) -> dict[str, Path]:
    """train / val / test of ``data_name`` for ``seed`` as extxyz with REF_ keys, in ``folder``."""
    from tdn_theory.models import data

    parts = dict(
        zip(("train", "val", "test"), accuracy.load_split(data_name, s, seed), strict=True)
    )
    folder.mkdir(parents=True, exist_ok=True)
    return {
        part: data.write_extxyz(folder / f"{part}.xyz", configs) for part, configs in parts.items()
    }


def big_cell(data_name: str, train: list):
    """The ~2,000-atom configuration of the per-atom inference timing (module docstring), built
    from the training configurations ``train`` of seed 0 and labelled with zero energy and forces
    (the timing needs labels, not their values)."""
    from ase import Atoms
    from ase.build import bulk
    from ase.calculators.singlepoint import SinglePointCalculator

    if data_name == "ethanol-gfn2":
        molecule = train[0]
        centred = molecule.positions - molecule.positions.mean(axis=0)
        grid = np.stack(np.meshgrid(*[np.arange(6)] * 3, indexing="ij"), -1).reshape(-1, 3) * 8.0
        atoms = Atoms(
            symbols=list(molecule.get_chemical_symbols()) * len(grid),
            positions=np.concatenate([centred + shift for shift in grid]),
        )
    else:
        volume = np.mean([a.get_volume() / len(a) for a in train])  # Å^3 per atom
        atoms = bulk("Cu", "fcc", a=float((4 * volume) ** (1 / 3)), cubic=True).repeat((8, 8, 8))
        rng = np.random.default_rng(0)
        symbols = np.array(atoms.get_chemical_symbols(), dtype=object)
        symbols[rng.choice(len(atoms), len(atoms) // 4, replace=False)] = "Au"
        atoms.set_chemical_symbols(list(symbols))
    atoms.calc = SinglePointCalculator(
        atoms, energy=0.0, forces=np.zeros((len(atoms), 3)), dipole=np.zeros(3)
    )
    return atoms


# --------------------------------------------------------------------------------------------
# units: one (data set, model, seed)
# --------------------------------------------------------------------------------------------


def _tdn_model(name: str, species, s: dict, seed: int):
    from tdn_theory.models import TDNPotential

    spec = TDN_MODELS[name]
    return TDNPotential(
        species,
        L,
        spec["channels"],
        spec["layers"],
        s["cutoff"],
        backend=spec["backend"],
        rank=spec["rank"],
        seed=seed,
    )


def _params(model) -> int:
    return int(sum(p.numel() for p in model.parameters() if p.requires_grad))


def run_tdn(unit: dict) -> dict:
    """Train and evaluate one TDN model on one split (the same split the anchors get)."""
    from tdn_theory.models import data
    from tdn_theory.models.train import TrainSettings, errors, train

    s, seed = unit["settings"], unit["seed"]
    train_set, val_set, test_set = accuracy.load_split(unit["data"], s, seed)
    model = _tdn_model(unit["model"], data.species_of(train_set + val_set + test_set), s, seed)
    t0 = time.perf_counter()
    result = train(
        model,
        train_set,
        val_set,
        TrainSettings(
            epochs=s["epochs"],
            batch_size=s["batch_size"],
            lr=s["lr"],
            patience=s["epochs"],  # the same epoch budget as the anchors: no early stopping
            seed=seed,
        ),
    )
    seconds = time.perf_counter() - t0
    test = errors(model, test_set, batch_size=s["batch_size"])
    return {
        "params": _params(model),
        **{
            f"test_{k}": test[k]
            for k in (
                "energy_mae_mev_per_atom",
                "energy_mae_mev_per_structure",
                "force_mae_mev_per_A",
            )
        },
        "best_epoch": result.best_epoch,
        "epochs_run": len(result.history),
        "train_seconds": seconds,
    }


def run_anchor(unit: dict) -> dict:
    """Export the split, train the anchor with its own command line in its environment, read
    back its result (test errors, parameters, best epoch)."""
    s, seed, name = unit["settings"], unit["seed"], unit["model"]
    with tempfile.TemporaryDirectory(prefix=f"anchor-{name}-") as tmp:
        files = export_split(unit["data"], s, seed, Path(tmp) / "data")
        workdir = Path(tmp) / "run"
        command = [
            unit["python"],
            str(ANCHORS[name]["worker"]),
            "train",
            "--train", str(files["train"]),
            "--val", str(files["val"]),
            "--test", str(files["test"]),
            "--seed", str(seed),
            "--epochs", str(s["epochs"]),
            "--cutoff", str(s["cutoff"]),
            "--batch-size", str(s["batch_size"]),
            "--lr", str(s["lr"]),
            "--workdir", str(workdir),
            *ANCHORS[name]["options"],
        ]  # fmt: skip
        _run_worker(command, f"{name} on {unit['data']} seed {seed}")
        result = json.loads((workdir / "result.json").read_text())
        if unit.get("keep_model"):
            keep = Path(unit["keep_model"])
            keep.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(result["model"], keep)
            result["model"] = str(keep)
    result["model_file"] = result.pop("model")
    result["worker_sha256"] = worker_digest(name)
    return {k: v for k, v in result.items() if k != "anchor"}


def worker_digest(name: str) -> str:
    """sha256 of anchor ``name``'s worker script, the workers' shared command line and the pins:
    a record made by another recipe is rerun."""
    info = ANCHORS[name]
    files = (info["worker"], HERE / "anchor_worker_cli.py", info["requirements"])
    return hashlib.sha256(b"".join(path.read_bytes() for path in files)).hexdigest()


def _run_worker(command: list[str], what: str) -> str:
    """Run an anchor worker with one thread; its stdout, or RuntimeError with its last error line."""
    done = subprocess.run(
        command, capture_output=True, text=True, check=False, env=_one_thread_env()
    )
    if done.returncode != 0:
        last = done.stderr.strip().splitlines()[-1:] or ["(no output)"]
        raise RuntimeError(f"{what} failed: {last[0]}")
    return done.stdout


def _one_thread_env() -> dict:
    env = dict(os.environ)
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    return env


def run_unit(unit: dict) -> dict:
    """One (data set, model, seed): a TDN model here or an anchor in its environment."""
    torch_threads()
    body = run_tdn(unit) if unit["model"] in TDN_MODELS else run_anchor(unit)
    return {"data": unit["data"], "model": unit["model"], "seed": unit["seed"], **body}


def torch_threads() -> None:
    import torch

    torch.set_num_threads(1)


# --------------------------------------------------------------------------------------------
# speed
# --------------------------------------------------------------------------------------------


def tdn_times(data_name: str, s: dict, batch_configs: list, big) -> dict:
    """Seconds per round of each TDN model: training step, inference, big-cell inference."""

    from tdn_theory.models import data
    from tdn_theory.models.train import collate, predict

    torch_threads()
    species = data.species_of(batch_configs)
    models = {name: _tdn_model(name, species, s, 0) for name in TDN_MODELS}
    batches = {name: collate(m, batch_configs) for name, m in models.items()}
    bigs = {name: collate(m, [big]) for name, m in models.items()}
    times = {name: {"train_step": [], "inference": [], "big_inference": []} for name in models}
    for round_ in range(s["timing_rounds"] + 1):
        for name, model in models.items():
            batch = batches[name]
            t0 = time.perf_counter()
            energies, forces = predict(model, batch, create_graph=True)
            loss = ((energies - batch.energy) ** 2).mean() + ((forces - batch.forces) ** 2).mean()
            loss.backward()
            model.zero_grad(set_to_none=True)
            t1 = time.perf_counter()
            predict(model, batch)
            t2 = time.perf_counter()
            predict(model, bigs[name])
            t3 = time.perf_counter()
            if round_:  # round 0 warms up
                times[name]["train_step"].append(t1 - t0)
                times[name]["inference"].append(t2 - t1)
                times[name]["big_inference"].append(t3 - t2)
    return {name: {**t, "params": _params(models[name])} for name, t in times.items()}


def anchor_times(
    name: str, python: str, model: str, batch_file: Path, big_file: Path, s: dict
) -> dict:
    """Seconds per round of one anchor, measured by its worker in its own process."""
    command = [
        python,
        str(ANCHORS[name]["worker"]),
        "time",
        "--model", model,
        "--batch", str(batch_file),
        "--big", str(big_file),
        "--rounds", str(s["timing_rounds"]),
    ]  # fmt: skip
    return json.loads(_run_worker(command, f"timing {name}").strip().splitlines()[-1])


def speed(data_name: str, s: dict, anchors: dict[str, dict], folder: Path) -> dict:
    """Step times of every model on one data set (module docstring), medians over all rounds,
    ratios to TDN dense 16x2, big-cell inference per atom (µs)."""
    from tdn_theory.models import data

    train, _, _ = accuracy.load_split(data_name, s, 0)
    batch_configs = train[: s["batch_size"]]
    big = big_cell(data_name, train)
    folder.mkdir(parents=True, exist_ok=True)
    batch_file = data.write_extxyz(folder / f"{data_name}-batch.xyz", batch_configs)
    big_file = data.write_extxyz(folder / f"{data_name}-big.xyz", [big])
    rounds: dict[str, dict[str, list]] = {}
    for _ in range(s["timing_repeats"]):  # the same order every repeat: TDN, then each anchor
        measured = tdn_times(data_name, s, batch_configs, big)
        for name, info in anchors.items():
            measured[name] = anchor_times(
                name, info["python"], info["models"][data_name], batch_file, big_file, s
            )
        for name, t in measured.items():
            slot = rounds.setdefault(name, {"train_step": [], "inference": [], "big_inference": []})
            for key in ("train_step", "inference", "big_inference"):
                slot[key].extend(t[key])
            slot["params"] = t["params"]
    out = {}
    for name, t in rounds.items():
        out[name] = {
            k: float(np.median(t[k])) for k in ("train_step", "inference", "big_inference")
        }
        out[name]["big_inference_us_per_atom"] = 1e6 * out[name]["big_inference"] / len(big)
        out[name]["params"] = t["params"]
        out[name]["rounds"] = len(t["train_step"])
    ref = out[REFERENCE]
    for t in out.values():
        for key in ("train_step", "inference", "big_inference"):
            t[f"{key}_vs_{REFERENCE}"] = t[key] / ref[key]
    return {"n_big_atoms": len(big), "n_batch_configs": len(batch_configs), "models": out}


# --------------------------------------------------------------------------------------------
# summary, table, figure
# --------------------------------------------------------------------------------------------

METRICS = (
    "test_energy_mae_mev_per_atom",
    "test_energy_mae_mev_per_structure",
    "test_force_mae_mev_per_A",
)


def summarize(runs: list[dict], models: list[str], data_names: list[str]) -> list[dict]:
    """Per data set and model: means over seeds, best epochs, and paired differences of every TDN
    model minus every anchor (same split per seed)."""
    rows = []
    for data_name in data_names:
        by_model = {
            m: {r["seed"]: r for r in runs if r["data"] == data_name and r["model"] == m}
            for m in models
        }
        for m in models:
            mine = by_model[m]
            if not mine:
                continue
            row = {
                "data": data_name,
                "model": m,
                "label": label(m),
                "seeds": sorted(mine),
                "params": next(iter(mine.values()))["params"],
                "best_epochs": [mine[k]["best_epoch"] for k in sorted(mine)],
                "epochs_run": [mine[k]["epochs_run"] for k in sorted(mine)],
                "train_seconds": float(np.mean([r["train_seconds"] for r in mine.values()])),
            }
            for k in METRICS:
                values = [r[k] for r in mine.values()]
                row[k] = float(np.mean(values))
                row[k + "_std"] = float(np.std(values, ddof=1)) if len(values) > 1 else None
            if m in TDN_MODELS:
                row["minus"] = {}
                for anchor in ANCHORS:
                    theirs = by_model.get(anchor) or {}
                    seeds = sorted(set(mine) & set(theirs))
                    if seeds:
                        row["minus"][anchor] = {
                            k: _paired([mine[i][k] - theirs[i][k] for i in seeds]) for k in METRICS
                        }
            rows.append(row)
    return rows


def _paired(differences: list[float]) -> dict:
    """Mean difference, 95 % Student-t interval, verdict "distinguishable" / "not distinguishable"."""
    p = accuracy.paired_difference(differences)
    p["verdict"] = {"distinguishable from dense": "distinguishable"}.get(p["verdict"], p["verdict"])
    return p


def label(model: str) -> str:
    return TDN_MODELS[model]["label"] if model in TDN_MODELS else ANCHORS[model]["label"]


def _pm(row: dict, key: str, fmt: str) -> str:
    std = row.get(key + "_std")
    return f"{row[key]:{fmt}}" + ("" if std is None else f" ± {std:{fmt}}")


def _diff(p: dict | None, fmt: str) -> str:
    if p is None:
        return "-"
    if p["low"] is None:
        return f"{p['mean']:+{fmt}} (1 seed)"
    word = " (n.d.)" if p["verdict"] == "not distinguishable" else ""
    return f"{p['mean']:+{fmt}} [{p['low']:+{fmt}}, {p['high']:+{fmt}}]{word}"


def markdown(result: dict) -> str:
    """The tables of anchors.md (and of the README section)."""
    s = result["settings"]
    lines = [
        f"Same split per seed (seeds {', '.join(map(str, result['seeds']))}), {s['epochs']} epochs "
        f"for every model (best-validation weights kept), batch {s['batch_size']}, lr {s['lr']}, "
        "float64, one thread. Errors: mean ± std over seeds on the held-out test set.",
        "",
    ]
    for skipped, reason in result.get("skipped", {}).items():
        lines.append(f"- {skipped} not run: {reason}")
    if result.get("skipped"):
        lines.append("")
    for data_name in result["data"]:
        rows = [r for r in result["summary"] if r["data"] == data_name]
        speed_ = (result.get("speed") or {}).get(data_name, {}).get("models", {})
        lines += [
            f"**{data_name}**",
            "",
            "| model | params | energy MAE meV/atom | force MAE meV/Å | best epochs | "
            "train step | inference | big cell µs/atom |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for r in rows:
            t = speed_.get(r["model"])
            times = (
                [
                    f"{t['train_step_vs_' + REFERENCE]:.2f}x",
                    f"{t['inference_vs_' + REFERENCE]:.2f}x",
                    f"{t['big_inference_us_per_atom']:.0f}",
                ]
                if t
                else ["-", "-", "-"]
            )
            lines.append(
                f"| {r['label']} | {r['params']:,} | {_pm(r, 'test_energy_mae_mev_per_atom', '.2f')} | "
                f"{_pm(r, 'test_force_mae_mev_per_A', '.1f')} | "
                f"{', '.join(map(str, r['best_epochs']))} | " + " | ".join(times) + " |"
            )
        lines.append("")
        anchors_here = [a for a in ANCHORS if any(r["model"] == a for r in rows)]
        if anchors_here:
            lines += [
                "Paired differences, TDN minus anchor, mean over seeds [95 % interval] "
                "(n.d.: the interval contains 0):",
                "",
                "| TDN model | "
                + " | ".join(f"{a} energy meV/atom | {a} force meV/Å" for a in anchors_here)
                + " |",
                "|---|" + "---|---|" * len(anchors_here),
            ]
            for r in rows:
                if "minus" not in r:
                    continue
                cells = []
                for a in anchors_here:
                    p = r["minus"].get(a, {})
                    cells += [
                        _diff(p.get("test_energy_mae_mev_per_atom"), ".2f"),
                        _diff(p.get("test_force_mae_mev_per_A"), ".1f"),
                    ]
                lines.append(f"| {r['label']} | " + " | ".join(cells) + " |")
            lines.append("")
        if speed_:
            lines.append(
                f"Times: medians of {next(iter(speed_.values()))['rounds']} rounds, ratios to "
                f"{label(REFERENCE)}; training step and inference on "
                f"{result['speed'][data_name]['n_batch_configs']} configurations, big cell "
                f"{result['speed'][data_name]['n_big_atoms']} atoms. Absolute: "
                + ", ".join(
                    f"{m} {1e3 * t['train_step']:.0f} / {1e3 * t['inference']:.0f} ms"
                    for m, t in speed_.items()
                )
                + " (training step / inference)."
            )
            lines.append("")
    lines += [f"- {f}" for f in findings(result)]
    return "\n".join(lines).rstrip("\n") + "\n"


def _still_improving(row: dict, epochs: int) -> bool:
    return any(b >= epochs - 2 for b in row["best_epochs"])


def _said(p: dict | None, fmt: str, unit: str) -> str:
    """A paired difference in words: mean, interval, and whether 3 seeds resolve it."""
    if p is None:
        return "-"
    if p["low"] is None:
        return f"{p['mean']:+{fmt}} {unit} (one seed)"
    word = {"distinguishable": "resolved", "not distinguishable": "not resolved"}.get(
        p["verdict"], p["verdict"]
    )
    return f"{p['mean']:+{fmt}} {unit} [{p['low']:+{fmt}}, {p['high']:+{fmt}}], {word}"


def _pairs(result: dict, data_name: str, a: str, b: str, key: str) -> list[tuple[float, float]]:
    """(a, b) values of ``key`` for every seed both models ran on ``data_name``."""
    runs = [r for r in result["runs"] if r["data"] == data_name]
    theirs = {r["seed"]: r[key] for r in runs if r["model"] == b}
    return [(r[key], theirs[r["seed"]]) for r in runs if r["model"] == a and r["seed"] in theirs]


def _minus(rows: dict, model: str, anchor: str, key: str) -> dict | None:
    """The paired difference ``model`` minus ``anchor`` of ``key`` (None when not both ran)."""
    return rows[model].get("minus", {}).get(anchor, {}).get(key)


def _ratio(slow: dict, fast: dict, key: str) -> str:
    """How many times as fast ``fast`` is as ``slow`` at the timing ``key``."""
    return f"{slow[key] / fast[key]:.2f}x"


def findings(result: dict) -> list[str]:
    """Plain statements per data set and anchor, computed from the summary and the speed table.

    Equal accuracy: the cheapest TDN model whose mean test force MAE is at or below the anchor's
    (paired mean difference <= 0). A difference the seeds do not resolve is not called equal: with
    three seeds an interval that contains 0 can hide a large gap, so the mean is what decides and
    the interval is quoted beside it. Equal cost: the most accurate TDN model whose training step
    is no slower than the anchor's."""
    out = []
    epochs = result["settings"]["epochs"]
    force, energy = "test_force_mae_mev_per_A", "test_energy_mae_mev_per_atom"
    for data_name in result["data"]:
        rows = {r["model"]: r for r in result["summary"] if r["data"] == data_name}
        speed_ = (result.get("speed") or {}).get(data_name, {}).get("models", {})
        tdn = [m for m in TDN_MODELS if m in rows and m in speed_]
        for anchor in (a for a in ANCHORS if a in rows and a in speed_):
            a_row, a_t = rows[anchor], speed_[anchor]

            text = (
                f"{data_name}, {anchor} ({a_row['params']:,} parameters): force MAE "
                f"{a_row[force]:.1f} meV/Å, energy MAE {a_row[energy]:.2f} meV/atom."
            )
            reached = [
                m
                for m in tdn
                if (p := _minus(rows, m, anchor, force)) is not None and p["mean"] <= 0
            ]
            if reached:
                m = min(reached, key=lambda m: speed_[m]["train_step"])
                fewer = 100 * (1 - rows[m]["params"] / a_row["params"])
                text += (
                    f" At its force accuracy: {m} ({rows[m]['params']:,} parameters, {fewer:.0f} % "
                    f"fewer; forces {_said(_minus(rows, m, anchor, force), '.1f', 'meV/Å')}; energies "
                    f"{_said(_minus(rows, m, anchor, energy), '.2f', 'meV/atom')}) is {_ratio(a_t, speed_[m], 'train_step')} as "
                    f"fast per training step, {_ratio(a_t, speed_[m], 'inference')} per inference, "
                    f"{_ratio(a_t, speed_[m], 'big_inference')} on the big cell."
                )
            elif tdn:
                m = min(tdn, key=lambda m: rows[m][force])
                text += (
                    f" At its force accuracy: no TDN model tried gets there; the closest, {m}, "
                    f"differs by {_said(_minus(rows, m, anchor, force), '.1f', 'meV/Å')} "
                    f"({100 * _minus(rows, m, anchor, force)['mean'] / a_row[force]:+.0f} %)."
                )
            cheap = [m for m in tdn if speed_[m]["train_step"] <= a_t["train_step"]]
            if cheap:
                m = min(cheap, key=lambda m: rows[m][force])
                text += (
                    f" At no more cost per training step: the most accurate TDN model, {m} "
                    f"({_ratio(a_t, speed_[m], 'train_step')} as fast), differs by "
                    f"{_said(_minus(rows, m, anchor, force), '.1f', 'meV/Å')} on forces and "
                    f"{_said(_minus(rows, m, anchor, energy), '.2f', 'meV/atom')} on energies."
                )
            out.append(text)
        for cp, dense in (("tdn_cp28", "tdn_dense"), ("tdn_cp28_32x3", "tdn_dense_32x3")):
            if cp in rows and dense in rows and cp in speed_ and dense in speed_:
                d = {
                    k: [a - b for a, b in _pairs(result, data_name, cp, dense, k)]
                    for k in (force, energy)
                }
                out.append(
                    f"{data_name}, {cp} minus {dense} (same size, same seeds): forces "
                    f"{_said(_paired(d[force]), '.2f', 'meV/Å')}, energies "
                    f"{_said(_paired(d[energy]), '.3f', 'meV/atom')}; its training step takes "
                    f"{speed_[cp]['train_step'] / speed_[dense]['train_step']:.2f}x and its "
                    f"inference {speed_[cp]['inference'] / speed_[dense]['inference']:.2f}x the "
                    "dense model's time."
                )
        late = [m for m, r in rows.items() if _still_improving(r, epochs)]
        if late:
            out.append(
                f"{data_name}: a best epoch within 2 of the {epochs}-epoch budget for "
                f"{', '.join(late)}: still improving, so this compares equal budgets, not converged "
                "models."
            )
    return out


def figure(result: dict):
    """Force MAE (mean ± std over seeds) against training-step time, per data set."""
    import matplotlib
    import matplotlib.ticker

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = result["data"]
    fig, axes = plt.subplots(1, len(names), figsize=(5.5 * len(names), 4.2), squeeze=False)
    for ax, data_name in zip(axes[0], names, strict=True):
        speed_ = (result.get("speed") or {}).get(data_name, {}).get("models", {})
        for r in (r for r in result["summary"] if r["data"] == data_name):
            t = speed_.get(r["model"])
            if t is None:
                continue
            marker = "o" if r["model"] in TDN_MODELS else "s"
            ax.errorbar(
                1e3 * t["train_step"],
                r["test_force_mae_mev_per_A"],
                yerr=r.get("test_force_mae_mev_per_A_std") or 0.0,
                fmt=marker,
                capsize=3,
                label=f"{r['model']} ({r['params']:,} params)",
            )
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())  # labels overlap otherwise
        ax.set_xlabel("training step on 8 configurations (ms, 1 thread)")
        ax.set_ylabel("test force MAE (meV/Å)")
        ax.set_title(f"{data_name}: {result['settings']['epochs']} epochs each")
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------------------------
# command line
# --------------------------------------------------------------------------------------------


def _context(s: dict) -> str:
    """What a stored unit must match to be reused: the settings and the TDN code's digest."""
    return json.dumps({"settings": s, "tdn": tdn_code_digest()}, sort_keys=True)


@functools.cache
def tdn_code_digest() -> str:
    """sha256 of the package's Python sources (once per process): a TDN unit recorded with other
    code is rerun."""
    import tdn_theory

    root = Path(tdn_theory.__file__).parent
    h = hashlib.sha256()
    _io.hash_files(h, sorted(root.rglob("*.py")), root)
    return h.hexdigest()[:16]


def _read_records(path: Path | None, s: dict) -> dict:
    records = _io.read_records(path, _context(s))
    return {(r["data"], r["model"], r["seed"]): r for r in records}


def _reusable(record: dict, anchor: str) -> bool:
    """An anchor's record is reused when its model file is there and its recipe is the current one."""
    return Path(record.get("model_file", "")).is_file() and record.get(
        "worker_sha256"
    ) == worker_digest(anchor)


def _append_record(path: Path, record: dict, s: dict) -> None:
    _io.append_record(path, _context(s), record)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog=f"python -m experiments.{NAME}", description=__doc__.splitlines()[0]
    )
    _common.add_common_args(parser)
    parser.add_argument("--data", nargs="+", choices=DATASETS, default=None)
    parser.add_argument(
        "--seeds", type=int, nargs="+", default=None, help="seeds (default 0 1 2; quick: 0)"
    )
    parser.add_argument(
        "--models",
        nargs="+",
        choices=[*TDN_MODELS, *ANCHORS],
        default=None,
        help="models to run (default: all; the reference tdn_dense is always run)",
    )
    parser.add_argument("--env-root", type=Path, default=None, help="anchor environments folder")
    parser.add_argument(
        "--setup", action="store_true", help="only build (or check) the anchor environments"
    )
    parser.add_argument(
        "--no-build",
        action="store_true",
        help="do not build missing anchor environments: skip those anchors (with the reason)",
    )
    parser.add_argument("--no-speed", action="store_true", help="skip the speed measurement")
    parser.add_argument(
        "--records",
        type=Path,
        default=None,
        help="JSON-lines file of finished units (appended as they finish; reused on a rerun)",
    )
    _dask.add_args(parser)
    args = parser.parse_args(argv)
    _dask.check_args(args)
    if args.seeds is not None and any(x < 0 or x >= 2**32 for x in args.seeds):
        parser.error("--seeds must be integers in [0, 2**32)")
    root = env_root(args)
    models = list(args.models or [*TDN_MODELS, *ANCHORS])
    if REFERENCE not in models:
        models.insert(0, REFERENCE)
    anchors, skipped = {}, {}
    for name in (m for m in models if m in ANCHORS):
        python, reason = ensure_env(name, root, build=not args.no_build)
        if python is None:
            skipped[name] = reason
            print(f"anchors: {name} skipped: {reason}", file=sys.stderr)
        else:
            anchors[name] = {"python": str(python)}
    if args.setup:
        return 1 if skipped else 0
    out = _common.output_dir(args)
    run = _common.Run(NAME, args, argv)
    s = settings(args.quick)
    seeds = args.seeds if args.seeds is not None else ([0] if args.quick else [0, 1, 2])
    data_names = args.data or (["cuau-fcc"] if args.quick else list(DATASETS))
    models = [m for m in models if m not in skipped]
    done = _read_records(args.records, s)
    records, pending = [], []
    # the anchors' trained models, one folder per settings and TDN code (reused with --records)
    keep = root / "models" / hashlib.sha256(_context(s).encode()).hexdigest()[:16]
    for seed in seeds:  # seed-major: an interrupted run still covers every data set
        for data_name in data_names:
            for m in models:
                key = (data_name, m, seed)
                if key in done and (m not in anchors or _reusable(done[key], m)):
                    records.append(done[key])
                    continue
                unit = {"data": data_name, "model": m, "seed": seed, "settings": s}
                if m in anchors:
                    unit["python"] = anchors[m]["python"]
                    unit["keep_model"] = str(keep / f"{m}-{data_name}-{seed}.model")
                pending.append(unit)
    with _dask.units(args) as pool:
        if pool.parallel:
            futures = [pool.submit(run_unit, unit) for unit in pending]
            finished = (future.result() for future in pool.as_completed(futures))
        else:
            finished = (run_unit(unit) for unit in pending)
        for record in finished:
            records.append(record)
            if args.records:
                _append_record(args.records, record, s)
            print(
                f"{record['data']:>14} {record['model']:>15} seed {record['seed']}: energy "
                f"{record['test_energy_mae_mev_per_atom']:.2f} meV/atom, force "
                f"{record['test_force_mae_mev_per_A']:.1f} meV/Å, best epoch "
                f"{record['best_epoch']}/{record['epochs_run']}, {record['train_seconds']:.0f} s",
                file=sys.stderr,
                flush=True,
            )
    timing = None
    if not args.no_speed:
        timing = {}
        for data_name in data_names:
            for name in anchors:  # the seed-0 model of each anchor on this data set
                anchors[name].setdefault("models", {})[data_name] = next(
                    r["model_file"]
                    for r in records
                    if r["model"] == name and r["data"] == data_name and r["seed"] == seeds[0]
                )
            timing[data_name] = speed(data_name, s, anchors, keep)
    records.sort(key=lambda r: (data_names.index(r["data"]), r["seed"], models.index(r["model"])))
    result = {
        "settings": s,
        "seeds": seeds,
        "data": data_names,
        "models": {m: label(m) for m in models},
        "skipped": skipped,
        "anchor_commands": {
            name: next((r["command"] for r in records if r["model"] == name), None)
            for name in anchors
        },
        "tdn_code": tdn_code_digest(),
        "runs": records,
        "summary": summarize(records, models, data_names),
        "speed": timing,
        "units": _dask.describe(args),
    }
    run.write(out, result, markdown=markdown(result), figure=figure(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
