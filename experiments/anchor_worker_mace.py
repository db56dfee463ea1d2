"""The MACE anchor, run inside its own environment (experiments/anchor_envs/mace.txt).

This script never imports tdn_theory: mace-torch pins e3nn 0.4.4, which conflicts with the
project's e3nn, so experiments/anchors.py runs it with the anchor environment's python.

Subcommands (every result is one JSON object):

``train --train F --val F --test F --seed S --epochs E --cutoff R --workdir D [--channels 16]
[--layers 2] [--lmax 2] [--correlation 3] [--batch-size 8] [--lr 0.01]``
    Trains MACE with its official command line ``mace_run_train`` (float64, CPU, per-species
    reference energies E0s "average" from the training set, energies and forces under the keys
    REF_energy / REF_forces, MACE's weighted loss: energy weight 1, force weight 100, then "stage
    two" (--swa) for the last quarter of the epochs: energy weight 1000, lr 1e-3; EMA 0.99,
    AMSGrad, as in MACE's README example), keeps MACE's best-validation checkpoint of the last
    stage (the stage-two model MACE saves), evaluates it on the test file and
    writes D/result.json: test energy MAE (meV/atom and meV/structure), force MAE (meV/Å, per
    component), trainable parameters, best epoch (the epoch of the kept checkpoint), epochs run
    and training seconds.

``time --model P --batch F --big F --rounds N``
    Loads the model and measures, interleaved over N rounds after one warm-up round: one
    training step on the batch of F (energies and forces by autograd with create_graph, loss
    mean (dE)^2 + mean (dF)^2, backward), one inference (energies and forces) of that batch, and
    one inference of the single large cell in --big. Graphs are built once, before timing.
    Prints one JSON line: seconds per round of each, atom and configuration counts, parameters,
    threads.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import anchor_worker_cli
import numpy as np

ENERGY_KEY, FORCES_KEY = "REF_energy", "REF_forces"


def _fail(message: str) -> None:
    print(f"anchor_worker_mace: {message}", file=sys.stderr)
    raise SystemExit(1)


def train_command(args: argparse.Namespace) -> list[str]:
    """The mace_run_train command line of one run (MACE's own flags)."""
    c = args.channels
    hidden = "+".join(f"{c}x{l}{'e' if l % 2 == 0 else 'o'}" for l in range(args.lmax + 1))
    exe = Path(sys.executable).parent / "mace_run_train"
    return [
        str(exe),
        "--name=anchor",
        f"--seed={args.seed}",
        f"--work_dir={Path(args.workdir).resolve()}",
        "--device=cpu",
        "--default_dtype=float64",
        "--model=MACE",
        f"--hidden_irreps={hidden}",
        f"--max_ell={args.lmax}",
        f"--num_interactions={args.layers}",
        f"--correlation={args.correlation}",
        f"--r_max={args.cutoff}",
        f"--train_file={Path(args.train).resolve()}",
        f"--valid_file={Path(args.val).resolve()}",
        f"--test_file={Path(args.test).resolve()}",
        "--E0s=average",
        f"--energy_key={ENERGY_KEY}",
        f"--forces_key={FORCES_KEY}",
        f"--batch_size={args.batch_size}",
        f"--valid_batch_size={args.batch_size}",
        f"--lr={args.lr}",
        f"--max_num_epochs={args.epochs}",
        "--eval_interval=1",
        "--error_table=PerAtomMAE",
        # MACE's recommended recipe (its README's training example): EMA of the weights, AMSGrad,
        # and "stage two" for the last quarter of the epochs (energy weight 1000, lr 1e-3)
        "--ema",
        "--ema_decay=0.99",
        "--amsgrad",
        "--swa",
    ]


def _load_model(path: str):
    import torch

    torch.set_default_dtype(torch.float64)
    model = torch.load(path, map_location="cpu", weights_only=False)
    return model.double().eval()


def _params(model) -> int:
    return int(sum(p.numel() for p in model.parameters() if p.requires_grad))


def _graphs(model, frames: list, cutoff: float) -> list:
    """MACE's AtomicData of each frame (labels read from REF_energy / REF_forces)."""
    from mace import data as mace_data
    from mace.tools import utils

    z_table = utils.AtomicNumberTable([int(z) for z in model.atomic_numbers])
    spec = mace_data.KeySpecification(
        info_keys={"energy": ENERGY_KEY}, arrays_keys={"forces": FORCES_KEY}
    )
    out = []
    for atoms in frames:
        config = mace_data.config_from_atoms(atoms, key_specification=spec)
        out.append(mace_data.AtomicData.from_config(config, z_table=z_table, cutoff=cutoff))
    return out


def _batch(graphs: list):
    from mace.tools import torch_geometric

    loader = torch_geometric.dataloader.DataLoader(graphs, batch_size=len(graphs), shuffle=False)
    return next(iter(loader)).to_dict()


def evaluate(model, frames: list, cutoff: float) -> dict:
    """Test MAEs of energies (meV/atom, meV/structure) and forces (meV/Å, per component)."""
    e_atom, e_struct, f_abs = [], [], []
    for atoms in frames:
        batch = _batch(_graphs(model, [atoms], cutoff))
        out = model(batch, training=False, compute_force=True)
        energy = float(out["energy"].detach()[0])
        forces = out["forces"].detach().numpy()
        de = energy - float(atoms.info[ENERGY_KEY])
        e_struct.append(abs(de))
        e_atom.append(abs(de) / len(atoms))
        f_abs.append(np.abs(forces - atoms.arrays[FORCES_KEY]).ravel())
    return {
        "test_energy_mae_mev_per_atom": 1e3 * float(np.mean(e_atom)),
        "test_energy_mae_mev_per_structure": 1e3 * float(np.mean(e_struct)),
        "test_force_mae_mev_per_A": 1e3 * float(np.concatenate(f_abs).mean()),
    }


def _best_epoch(workdir: Path) -> int | None:
    """The epoch of the checkpoint MACE kept (it keeps only the best-validation one)."""
    names = glob.glob(str(workdir / "checkpoints" / "*_epoch-*.pt"))
    epochs = [int(m.group(1)) for n in names if (m := re.search(r"_epoch-(\d+)", n))]
    return max(epochs) + 1 if epochs else None  # MACE counts epochs from 0


def _epochs_run(workdir: Path) -> int | None:
    """Epochs MACE logged (its log lines 'Epoch N: ...' for the validation after each epoch)."""
    seen = set()
    for name in glob.glob(str(workdir / "logs" / "*.log")):
        seen |= {int(m) for m in re.findall(r"Epoch (\d+):", Path(name).read_text())}
    return max(seen) + 1 if seen else None


def cmd_train(args: argparse.Namespace) -> int:
    from ase.io import read

    workdir = Path(args.workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    command = train_command(args)
    log = workdir / "train.log"
    t0 = time.perf_counter()
    with open(log, "w") as handle:
        done = subprocess.run(
            command, cwd=workdir, stdout=handle, stderr=subprocess.STDOUT, check=False
        )
    seconds = time.perf_counter() - t0
    if done.returncode != 0:
        tail = log.read_text().strip().splitlines()[-1:] or ["(no output)"]
        _fail(f"mace_run_train failed (exit {done.returncode}): {tail[0]}; see {log}")
    # with stage two, MACE evaluates and saves the stage-two model as well: that is its final model
    model_path = workdir / "anchor_stagetwo.model"
    if not model_path.is_file():
        model_path = workdir / "anchor.model"
    if not model_path.is_file():
        _fail(f"mace_run_train wrote no model {model_path}; see {log}")
    model = _load_model(str(model_path))
    result = {
        "anchor": "mace",
        "version": _version(),
        "command": " ".join(command),
        "params": _params(model),
        **evaluate(model, read(args.test, index=":"), args.cutoff),
        "best_epoch": _best_epoch(workdir),
        "epochs_run": _epochs_run(workdir),
        "train_seconds": seconds,
        "model": str(model_path),
    }
    (workdir / "result.json").write_text(json.dumps(result, indent=1))
    print(json.dumps(result))
    return 0


def _version() -> str:
    from importlib.metadata import version

    return version("mace-torch")


def cmd_time(args: argparse.Namespace) -> int:
    import torch
    from ase.io import read

    model = _load_model(str(args.model))
    cutoff = float(model.r_max)
    frames = read(args.batch, index=":")
    big = read(args.big, index=0)
    batch = _batch(_graphs(model, frames, cutoff))
    big_batch = _batch(_graphs(model, [big], cutoff))
    times: dict[str, list[float]] = {"train_step": [], "inference": [], "big_inference": []}
    for round_ in range(args.rounds + 1):
        t0 = time.perf_counter()
        out = model(batch, training=True, compute_force=True)
        loss = ((out["energy"] - batch["energy"]) ** 2).mean() + (
            (out["forces"] - batch["forces"]) ** 2
        ).mean()
        loss.backward()
        model.zero_grad(set_to_none=True)
        t1 = time.perf_counter()
        model(batch, training=False, compute_force=True)
        t2 = time.perf_counter()
        model(big_batch, training=False, compute_force=True)
        t3 = time.perf_counter()
        if round_:  # round 0 warms up
            times["train_step"].append(t1 - t0)
            times["inference"].append(t2 - t1)
            times["big_inference"].append(t3 - t2)
    print(
        json.dumps(
            {
                **times,
                "n_big_atoms": len(big),
                "n_batch_configs": len(frames),
                "params": _params(model),
                "threads": torch.get_num_threads(),
            }
        )
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    args = anchor_worker_cli.parse_args(__doc__.splitlines()[0], argv, correlation=True)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    return cmd_train(args) if args.command == "train" else cmd_time(args)


if __name__ == "__main__":
    raise SystemExit(main())
