"""Data-parallel training (tdn_theory.models.distributed): torchrun with 2 CPU processes gives the
weights of one process for the same global batches; only rank 0 writes and prints."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tdn_theory.models import TDNPotential
from tdn_theory.models.checkpoint import load_potential
from tdn_theory.models.distributed import SINGLE, Context

ROOT = Path(__file__).resolve().parents[1]

# 12 configurations -> 9 train / 1 val / 2 test (80/10/10); batches of 4: 4, 4, 1, so the last
# global batch leaves rank 1 without a configuration (the zero-loss path)
ARGS = [
    *("--data", "agpd-cluster", "--n-configs", "12", "--data-seed", "3"),
    *("--backend", "cp", "--rank", "7", "--L", "1", "--channels", "4", "--layers", "2"),
    *("--epochs", "2", "--batch-size", "4", "--rotations", "1", "--json", "--quiet"),
]


def _run(command: list[str], out: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [*command, *ARGS, "--out", str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc


def test_two_processes_give_the_weights_of_one(tmp_path):
    one = _run([sys.executable, "-m", "tdn_theory.train_potential"], tmp_path / "one.pt")
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    two = _run(
        [*torchrun, "--nproc_per_node", "2", "-m", "tdn_theory.train_potential"],
        tmp_path / "two.pt",
    )
    model_1, info_1 = load_potential(tmp_path / "one.pt")
    model_2, info_2 = load_potential(tmp_path / "two.pt")
    state_1, state_2 = model_1.state_dict(), model_2.state_dict()
    assert state_1.keys() == state_2.keys()
    for key, value in state_1.items():
        assert value.dtype == state_2[key].dtype
        if value.is_floating_point():
            assert value.dtype == torch.float64
            torch.testing.assert_close(state_2[key], value, rtol=0, atol=1e-8, msg=key)
    # training moved the weights (the comparison is not of two initial models)
    init = TDNPotential(["Ag", "Pd"], 1, 4, 2, 4.5, backend="cp", rank=7, seed=0)
    assert not torch.allclose(init.readout_2, model_1.readout_2)
    report_1 = json.loads(one.stdout)
    (line,) = two.stdout.strip().splitlines()  # rank 0 prints, rank 1 does not
    report_2 = json.loads(line)
    assert report_1["epochs_run"] == report_2["epochs_run"] == 2
    assert report_1["processes"] == 1 and report_2["processes"] == 2
    for key in ("test_energy_mae_mev_per_atom", "test_force_mae_mev_per_A"):
        assert report_2[key] == pytest.approx(report_1[key], rel=1e-8)
    assert info_2["best_epoch"] == info_1["best_epoch"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["one.pt", "two.pt"]


def test_shards_cover_a_batch_in_order():
    items = list(range(5))
    blocks = [Context(rank=r, world=2).shard(items) for r in range(2)]
    assert blocks == [[0, 1, 2], [3, 4]]
    assert [Context(rank=r, world=3).shard([7]) for r in range(3)] == [[7], [], []]
    assert SINGLE.shard(items) == items and SINGLE.all_sum([1, 2.5]) == [1.0, 2.5]
    assert SINGLE.is_main and not SINGLE.distributed
