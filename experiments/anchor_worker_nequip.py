"""NequIP anchor worker: train NequIP with its official ``nequip-train`` and time the result.

Runs with the Python of the NequIP virtual environment (NequIP 0.19, hydra/Lightning based);
it uses only nequip, ase, torch, pyyaml (a nequip dependency) and the standard library and does not import
tdn_theory. Data are extended XYZ files with MACE-style labels: per-frame ``REF_energy`` (eV)
and per-atom ``REF_forces`` (eV/Å); other labels (e.g. ``REF_dipole``) are ignored. Frames
may be periodic or molecules without a cell.

Interface::

    anchor_worker_nequip.py train --train F --val F --test F --seed S --epochs E
        --cutoff 4.5 --workdir D [--channels 16] [--layers 2] [--lmax 2]
        [--batch-size 8] [--lr 0.01]

        Writes D/config.yaml and runs ``nequip-train`` in D (float64, CPU): a NequIPGNNModel
        with per-atom-energy MSE + force MSE loss (weights 1 and 1), an EMA of the weights,
        Adam with ReduceLROnPlateau, and the checkpoint with the best validation
        ``per_atom_energy_mae + forces_mae`` kept as D/best.ckpt. The per-type energy shifts
        and scales and the average number of neighbours come from the training data statistics.
        The best checkpoint is then evaluated on the test file and D/result.json is written;
        one summary line goes to stdout. nequip-train's output is kept in D/train.log.

    anchor_worker_nequip.py time --model P --batch F --big F --rounds N

        Loads the checkpoint P and, for each of N rounds (after one warm-up round), times a
        training step (forces by autograd with create_graph, energy + force MSE loss,
        backward, zero grads) and an inference step (energies and forces) on all the frames of
        F as one batch, and an inference step on the single large cell in --big. Neighbour
        lists are built before timing. Prints one JSON line with seconds per round.

On failure the exit status is non-zero and one error line goes to stderr.
"""

import argparse
import csv
import json
import shlex
import subprocess
import sys
import time
from pathlib import Path

import anchor_worker_cli
import ase.data
import ase.io
import nequip
import torch
import yaml
from nequip.data import AtomicDataDict, from_ase
from nequip.data.transforms import ChemicalSpeciesToAtomTypeMapper, NeighborListTransform
from nequip.model.saved_models import load_saved_model
from nequip.utils.global_state import set_global_state

KEY_MAPPING = {
    "REF_energy": AtomicDataDict.TOTAL_ENERGY_KEY,
    "REF_forces": AtomicDataDict.FORCE_KEY,
}
MONITORED_METRIC = "val0_epoch/weighted_sum"
NEQUIP_TRAIN = Path(sys.executable).parent / "nequip-train"
EVAL_BATCH_SIZE = 8


def species_of(path: Path) -> list[str]:
    """Return the chemical symbols present in an extxyz file, ordered by atomic number."""
    numbers = set()
    for atoms in ase.io.iread(path):
        numbers.update(atoms.get_atomic_numbers().tolist())
    return [ase.data.chemical_symbols[z] for z in sorted(numbers)]


def nequip_config(args: argparse.Namespace, species: list[str], workdir: Path) -> dict:
    """Build the nequip-train (hydra) configuration for the command-line arguments."""
    return {
        "run": ["train"],
        "data": {
            "_target_": "nequip.data.datamodule.ASEDataModule",
            "seed": args.seed,
            "train_file_path": str(args.train.resolve()),
            "val_file_path": str(args.val.resolve()),
            "key_mapping": KEY_MAPPING,
            "transforms": [
                {
                    "_target_": "nequip.data.transforms.ChemicalSpeciesToAtomTypeMapper",
                    "model_type_names": species,
                },
                {
                    "_target_": "nequip.data.transforms.NeighborListTransform",
                    "r_max": args.cutoff,
                },
            ],
            "train_dataloader": {
                "_target_": "torch.utils.data.DataLoader",
                "batch_size": args.batch_size,
                "shuffle": True,
            },
            "val_dataloader": {
                "_target_": "torch.utils.data.DataLoader",
                "batch_size": args.batch_size,
            },
            "stats_manager": {
                "_target_": "nequip.data.CommonDataStatisticsManager",
                "type_names": species,
            },
        },
        "trainer": {
            "_target_": "lightning.Trainer",
            "accelerator": "cpu",
            "devices": 1,
            "max_epochs": args.epochs,
            "check_val_every_n_epoch": 1,
            "log_every_n_steps": 1,
            "enable_progress_bar": False,
            "logger": {
                "_target_": "lightning.pytorch.loggers.CSVLogger",
                "save_dir": str(workdir),
                "name": "",
                "version": "",
            },
            "callbacks": [
                {
                    "_target_": "lightning.pytorch.callbacks.ModelCheckpoint",
                    "monitor": MONITORED_METRIC,
                    "dirpath": str(workdir),
                    "filename": "best",
                }
            ],
        },
        "training_module": {
            "_target_": "nequip.train.EMALightningModule",
            "ema_decay": 0.999,
            "loss": {
                "_target_": "nequip.train.EnergyForceLoss",
                "per_atom_energy": True,
                "coeffs": {"total_energy": 1.0, "forces": 1.0},
            },
            "val_metrics": {
                "_target_": "nequip.train.EnergyForceMetrics",
                "coeffs": {"per_atom_energy_mae": 1.0, "forces_mae": 1.0},
            },
            "optimizer": {"_target_": "torch.optim.Adam", "lr": args.lr},
            "lr_scheduler": {
                "scheduler": {
                    "_target_": "torch.optim.lr_scheduler.ReduceLROnPlateau",
                    "factor": 0.6,
                    "patience": 5,
                    "threshold": 0.2,
                    "min_lr": 1e-6,
                },
                "monitor": MONITORED_METRIC,
                "interval": "epoch",
                "frequency": 1,
            },
            "model": {
                "_target_": "nequip.model.NequIPGNNModel",
                "seed": args.seed,
                "model_dtype": "float64",
                "type_names": species,
                "r_max": args.cutoff,
                "num_layers": args.layers,
                "l_max": args.lmax,
                "num_features": args.channels,
                "avg_num_neighbors": "${training_data_stats:num_neighbors_mean}",
                "per_type_energy_shifts": "${training_data_stats:per_atom_energy_mean}",
                "per_type_energy_scales": "${training_data_stats:per_type_forces_rms}",
            },
        },
        "global_options": {"allow_tf32": False},
    }


def load_model(path: Path) -> torch.nn.Module:
    """Load the (EMA-weight) NequIP GraphModel from a checkpoint, in float64 and eval mode."""
    set_global_state()
    model = load_saved_model(str(path))
    model.eval()
    return model


def load_frames(path: Path, model: torch.nn.Module) -> list[dict]:
    """Read an extxyz file into AtomicDataDicts with REF_ labels, atom types and neighbour lists."""
    transforms = [
        ChemicalSpeciesToAtomTypeMapper(model_type_names=model.type_names),
        NeighborListTransform(r_max=float(model.metadata["r_max"])),
    ]
    frames = []
    for atoms in ase.io.iread(path):
        data = from_ase(atoms, key_mapping=KEY_MAPPING)
        for transform in transforms:
            data = transform(data)
        frames.append(data)
    return frames


def predict(model: torch.nn.Module, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """Return the model's total energies (per frame) and forces for a batched AtomicDataDict."""
    out = model(batch)
    return out[AtomicDataDict.TOTAL_ENERGY_KEY].reshape(-1), out[AtomicDataDict.FORCE_KEY]


def evaluate(model: torch.nn.Module, path: Path) -> dict[str, float]:
    """Energy (per atom, per structure) and force MAEs of the model on a test file, in meV."""
    frames = load_frames(path, model)
    e_abs, n_atoms, f_abs = [], [], []
    for start in range(0, len(frames), EVAL_BATCH_SIZE):
        batch = AtomicDataDict.batched_from_list(frames[start : start + EVAL_BATCH_SIZE])
        energy, forces = predict(model, batch)
        e_ref = batch[AtomicDataDict.TOTAL_ENERGY_KEY].reshape(-1)
        e_abs.append((energy.detach() - e_ref).abs())
        n_atoms.append(batch[AtomicDataDict.NUM_NODES_KEY].reshape(-1))
        f_abs.append((forces.detach() - batch[AtomicDataDict.FORCE_KEY]).abs().reshape(-1))
    e_abs, n_atoms, f_abs = torch.cat(e_abs), torch.cat(n_atoms), torch.cat(f_abs)
    return {
        "test_energy_mae_mev_per_atom": float((e_abs / n_atoms).mean()) * 1000,
        "test_energy_mae_mev_per_structure": float(e_abs.mean()) * 1000,
        "test_force_mae_mev_per_A": float(f_abs.mean()) * 1000,
    }


def n_params(model: torch.nn.Module) -> int:
    """Number of trainable parameters of a model."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def checkpoint_epoch(path: Path) -> int:
    """One-based number of the epoch after which a Lightning checkpoint was saved."""
    return int(torch.load(path, map_location="cpu", weights_only=False)["epoch"]) + 1


def validated_epochs(metrics_csv: Path) -> int:
    """Number of epochs with a validation entry in Lightning's CSV log."""
    with metrics_csv.open(newline="") as stream:
        epochs = {row["epoch"] for row in csv.DictReader(stream) if row.get(MONITORED_METRIC)}
    return len(epochs)


def log_tail(path: Path) -> str:
    """Last non-empty line of a log file."""
    lines = [line for line in path.read_text(errors="replace").splitlines() if line.strip()]
    return lines[-1].strip() if lines else "(empty log)"


def cmd_train(args: argparse.Namespace) -> None:
    """Train with nequip-train, evaluate the best checkpoint on the test set, write result.json."""
    workdir = args.workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    for stale in ("best.ckpt", "metrics.csv", "result.json"):
        (workdir / stale).unlink(missing_ok=True)
    species = species_of(args.train)
    (workdir / "config.yaml").write_text(yaml.safe_dump(nequip_config(args, species, workdir)))
    command = [
        str(NEQUIP_TRAIN),
        "-cp",
        str(workdir),
        "-cn",
        "config",
        f"hydra.run.dir={workdir}",
        "hydra/job_logging=stdout",
    ]
    log = workdir / "train.log"
    start = time.perf_counter()
    with log.open("w") as stream:
        rc = subprocess.run(
            command, cwd=workdir, stdout=stream, stderr=subprocess.STDOUT
        ).returncode
    train_seconds = time.perf_counter() - start
    best = workdir / "best.ckpt"
    if rc != 0 or not best.exists():
        raise RuntimeError(f"nequip-train failed (rc={rc}): {log_tail(log)} [see {log}]")
    model = load_model(best)
    result = {
        "anchor": "nequip",
        "version": nequip.__version__,
        "command": shlex.join(command),
        "params": n_params(model),
        **evaluate(model, args.test),
        "best_epoch": checkpoint_epoch(best),
        "epochs_run": validated_epochs(workdir / "metrics.csv"),
        "train_seconds": train_seconds,
        "model": str(best),
    }
    (workdir / "result.json").write_text(json.dumps(result, indent=2) + "\n")
    print(
        f"nequip {result['version']}: {result['params']} params, "
        f"{result['epochs_run']} epochs (best {result['best_epoch']}) in {train_seconds:.1f} s, "
        f"test E MAE {result['test_energy_mae_mev_per_atom']:.3f} meV/atom, "
        f"F MAE {result['test_force_mae_mev_per_A']:.2f} meV/A"
    )


def train_step(model: torch.nn.Module, batch: dict) -> None:
    """One training step: forces with create_graph, energy + force MSE loss, backward, zero grads."""
    model.train()
    energy, forces = predict(model, batch)
    e_ref = batch[AtomicDataDict.TOTAL_ENERGY_KEY].reshape(-1)
    loss = torch.mean((energy - e_ref) ** 2) + torch.mean(
        (forces - batch[AtomicDataDict.FORCE_KEY]) ** 2
    )
    loss.backward()
    model.zero_grad(set_to_none=True)


def inference_step(model: torch.nn.Module, batch: dict) -> None:
    """One inference step: energies and forces without create_graph."""
    model.eval()
    predict(model, batch)


def timed(function, *args) -> float:
    """Wall-clock seconds of one call."""
    start = time.perf_counter()
    function(*args)
    return time.perf_counter() - start


def cmd_time(args: argparse.Namespace) -> None:
    """Time training and inference steps of a saved model; print one JSON line."""
    model = load_model(args.model)
    batch_frames = load_frames(args.batch, model)
    big_frames = load_frames(args.big, model)
    if len(big_frames) != 1:
        raise ValueError(f"--big must hold one configuration, found {len(big_frames)}")
    batch = AtomicDataDict.batched_from_list(batch_frames)
    big = AtomicDataDict.batched_from_list(big_frames)
    times = {"train_step": [], "inference": [], "big_inference": []}
    for round_index in range(args.rounds + 1):
        seconds = (
            timed(train_step, model, batch),
            timed(inference_step, model, batch),
            timed(inference_step, model, big),
        )
        if round_index > 0:
            for key, value in zip(times, seconds, strict=True):
                times[key].append(value)
    n_big_atoms = int(AtomicDataDict.num_nodes(big))
    record = {
        **times,
        "n_big_atoms": n_big_atoms,
        "n_batch_configs": len(batch_frames),
        "params": n_params(model),
        "threads": torch.get_num_threads(),
    }
    print(json.dumps(record))


def main(argv: list[str] | None = None) -> int:
    """Run the chosen subcommand; report failures as one line on stderr."""
    args = anchor_worker_cli.parse_args(__doc__.splitlines()[0], argv)
    try:
        {"train": cmd_train, "time": cmd_time}[args.command](args)
    except Exception as error:  # the interface asks for a one-line error
        message = " ".join(str(error).split())
        print(
            f"anchor_worker_nequip {args.command}: {type(error).__name__}: {message}",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
