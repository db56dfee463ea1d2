"""Sweeps on Dask workers and training under torchrun: wall times, same results, a study's estimate.

Usage: ``python -m experiments.bench_parallel [--quick] [--out DIR] [--workers 1 2]``.
Writes bench_parallel.json and .md into experiments/results (or DIR).

1. The accuracy sweep (``experiments.accuracy_vs_rank --quick --seeds 0 1``: 13 independent
   training runs) with ``--workers 1`` (serial, in-process) and ``--workers N`` (a Dask
   LocalCluster of N processes, one thread each): wall seconds of each command, and whether the
   runs' numbers are identical (every key except seconds and the learning curves' seconds). Order
   1, N, N, 1 (and 1, 2, 2, 1 below), so that a drift of the machine's load hits both counts.
2. ``python -m tdn_theory.train_potential`` with 1 process and under ``torchrun --standalone
   --nproc_per_node 2`` (gloo, CPU, float64) on the same data and global batches: the median
   seconds per epoch of each, and the largest weight difference of the two checkpoints.
3. The molecular study (3 data sets x 6 backends x 5 seeds = 90 training runs, ``e3nn`` left out)
   on N workers, calculated from the committed full accuracy run (experiments/results/
   accuracy_vs_rank.json): each run's training seconds (epochs x seconds per epoch, on one thread)
   per backend, averaged over its seeds, assumed equal on every data set; the wall time on N
   workers is the longest-processing-time-first schedule of the 90 runs (one core per worker, no
   contention), beside the serial sum.

Timings come from a shared machine: the provenance records its load average at start and end.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from experiments import _common, _io

NAME = "bench_parallel"
STUDY = {"data_sets": 3, "seeds": 5}
TRAIN_ARGS = [
    *("--data", "cuau-fcc", "--backend", "cp", "--rank", "28", "--L", "2"),
    *("--channels", "8", "--layers", "2", "--batch-size", "8", "--rotations", "1"),
    *("--json", "--quiet"),
]


def _python(args: list[str]) -> tuple[float, subprocess.CompletedProcess]:
    env = {**os.environ, "PYTHONPATH": str(_common.ROOT), "OMP_NUM_THREADS": "1"}
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, *args], cwd=_common.ROOT, env=env, capture_output=True, text=True
    )
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(args[:4])} failed:\n{proc.stderr[-2000:]}")
    return time.perf_counter() - t0, proc


def _numbers(runs: list[dict]) -> list[dict]:
    drop = ("seconds_per_epoch", "curve")
    return [{k: v for k, v in r.items() if k not in drop} for r in runs]


def sweep(workers: list[int], tmp: Path) -> dict:
    """Part 1: the quick accuracy sweep with each worker count."""
    rows, first = [], None
    for i, n in enumerate(workers + workers[::-1]):  # A B B A: both see the load's drift
        out = tmp / f"sweep{i}"
        argv = ["-m", "experiments.accuracy_vs_rank", "--quick", "--seeds", "0", "1"]
        seconds, _ = _python([*argv, "--out", str(out), "--workers", str(n)])
        runs = _numbers(json.loads((out / "accuracy_vs_rank.json").read_text())["runs"])
        first = runs if first is None else first
        rows.append(
            {
                "workers": n,
                "units": len(runs),
                "wall_seconds": round(seconds, 1),
                "same_results_as_workers_1": runs == first,
                "load_average": _common.load_average(),
            }
        )
    return {"command": "python -m experiments.accuracy_vs_rank --quick --seeds 0 1", "rows": rows}


def ddp(quick: bool, tmp: Path) -> dict:
    """Part 2: seconds per epoch with 1 and 2 processes, and the weight difference."""
    import torch

    extra = ["--n-configs", "40" if quick else "80", "--epochs", "2" if quick else "3"]
    rows, states = [], []
    for i, n in enumerate((1, 2, 2, 1)):  # A B B A
        out = tmp / f"ddp{i}.pt"
        launch = ["-m", "tdn_theory.train_potential"]
        if n > 1:
            launch = ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(n)]
            launch += ["-m", "tdn_theory.train_potential"]
        seconds, proc = _python([*launch, *TRAIN_ARGS, *extra, "--out", str(out)])
        report = json.loads(proc.stdout.strip().splitlines()[-1])
        rows.append(
            {
                "processes": n,
                "seconds_per_epoch": round(report["seconds_per_epoch"], 3),
                "wall_seconds": round(seconds, 1),
                "n_train": report["n_train"],
                "epochs": report["epochs_run"],
                "load_average": _common.load_average(),
            }
        )
        states.append(torch.load(out, weights_only=True)["state"])
    diff = max(float((states[0][k] - s[k]).abs().max()) for s in states[1:] for k in states[0])
    return {
        "command": "train_potential " + " ".join(TRAIN_ARGS + extra),
        "rows": rows,
        "max_weight_difference": diff,
    }


def lpt_makespan(durations: list[float], workers: int) -> float:
    """Longest processing time first: each run, longest first, to the least loaded worker."""
    loads = np.zeros(workers)
    for d in sorted(durations, reverse=True):
        loads[np.argmin(loads)] += d
    return float(loads.max())


def study_estimate(results: Path) -> dict:
    """Part 3: the molecular study's wall time on N workers from the committed accuracy run."""
    data = json.loads((results / "accuracy_vs_rank.json").read_text())
    per_backend: dict[str, list[float]] = {}
    for run in data["runs"]:
        if run["backend"] != "e3nn":
            per_backend.setdefault(run["name"], []).append(
                run["epochs_run"] * run["seconds_per_epoch"]
            )
    mean = {name: float(np.mean(v)) for name, v in per_backend.items()}
    copies = STUDY["data_sets"] * STUDY["seeds"]
    durations = [d for d in mean.values() for _ in range(copies)]
    rows = [
        {"workers": n, "wall_hours": round(lpt_makespan(durations, n) / 3600, 2)}
        for n in (1, 2, 4, 8, 16, 32, len(durations))
    ]
    return {
        "source": "experiments/results/accuracy_vs_rank.json "
        f"({data['provenance']['command']}, {data['provenance']['started']})",
        "runs": len(durations),
        "seconds_per_run_by_backend": {k: round(v, 1) for k, v in mean.items()},
        "serial_hours": round(sum(durations) / 3600, 2),
        "rows": rows,
    }


def markdown(result: dict) -> str:
    s, d, e = result["sweep"], result["ddp"], result["study"]
    lines = [f"Accuracy sweep `{s['command']}`:", ""]
    lines += ["| workers | units | wall s | same results | load after |", "|---|---|---|---|---|"]
    lines += [
        f"| {r['workers']} | {r['units']} | {r['wall_seconds']} | {r['same_results_as_workers_1']} "
        f"| {r['load_average'][0]} |"
        for r in s["rows"]
    ]
    lines += ["", f"Training under torchrun (`{d['command']}`):", ""]
    lines += ["| processes | s / epoch | wall s | load after |", "|---|---|---|---|"]
    lines += [
        f"| {r['processes']} | {r['seconds_per_epoch']} | {r['wall_seconds']} "
        f"| {r['load_average'][0]} |"
        for r in d["rows"]
    ]
    lines += ["", f"Largest weight difference, 2 processes vs 1: {d['max_weight_difference']:.1e}."]
    lines += ["", f"Molecular study, {e['runs']} runs (calculated from {e['source']}):", ""]
    lines += ["| workers | wall hours |", "|---|---|"]
    lines += [f"| {r['workers']} | {r['wall_hours']} |" for r in e["rows"]]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog=f"python -m experiments.{NAME}", description=__doc__.splitlines()[0]
    )
    _common.add_common_args(parser)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args(argv)
    if args.workers[0] != 1 or any(n < 1 for n in args.workers):
        parser.error("--workers: the first count must be 1 (the serial reference), all >= 1")
    out = _common.output_dir(args)
    run = _common.Run(NAME, args, argv)
    with tempfile.TemporaryDirectory() as tmp:
        result = {
            "sweep": sweep(args.workers, Path(tmp)),
            "ddp": ddp(args.quick, Path(tmp)),
            "study": study_estimate(_io.RESULTS),
        }
    run.write(out, result, markdown=markdown(result))
    print(markdown(result), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
