"""Regenerate every results file and figure under experiments/results/, with fixed seeds.

Usage::

    python -m experiments.run_all            # full results into experiments/results/ (~1 h, 2 cores)
    python -m experiments.run_all --quick    # small L, short fits into experiments/results/quick/
    python -m experiments.run_all --list     # the tasks, their outputs and whether they are current
    python -m experiments.run_all --workers 4 # independent tasks on 4 local Dask worker processes
    python -m experiments.run_all --only error_vs_rank,rank_schedules --force
    python -m experiments.readme             # then: README tables from the results files

TASKS is a plain list. Every task is one experiment script under the shared command-line contract
(experiments/_common.py): it runs as ``python -m experiments.<name> [--quick] --out DIR`` in a fresh
process and writes ``<name>.json`` (and .png / .md) into DIR, experiments/results or, with --quick,
experiments/results/quick. ``after`` names the tasks whose outputs a task reads. Each task is one
Dask task (experiments/_dask.py) that starts when the tasks it reads from are done: serial and in
list order by default, ``--workers N`` runs independent tasks on N local worker processes,
``--scheduler ADDRESS`` on an existing Dask cluster (shared file system). The first task, ``fits``,
fills the store of best-known fits (tdn_theory.cp.store) that the other tasks read, so every
(tensor, L, R) is fitted once. Timings (bench_*, integrity, the speed columns of accuracy_vs_rank)
taken with --workers > 1 share the machine with other tasks; their provenance records the load.

Up to date. A task is skipped when its outputs exist and the inputs hash recorded for it in
``<results>/run_all_manifest.json`` equals the current one. The inputs hash is the SHA-256 of the
task's command line (mode included), the source of every ``.py`` file in the tdn_theory package
and in experiments/, and the outputs of the tasks it reads from. So any edit of the package or of
an experiment script makes every task stale (simple and safe). ``--force`` reruns regardless.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from experiments import _dask, _io

ROOT = Path(__file__).resolve().parent.parent
MANIFEST = "run_all_manifest.json"


@dataclass(frozen=True)
class Task:
    """One experiment script, run as ``python -m <module> [--quick] --out DIR <args...>``.

    outputs: file names it writes inside DIR. after: names of the tasks whose outputs it reads.
    args / quick_args: fixed extra options in full / quick mode. out_file: when set, the script
    takes ``--out DIR/<out_file>`` (a file) instead of the folder (scripts not yet on the shared
    contract).
    """

    name: str
    outputs: tuple[str, ...]
    after: tuple[str, ...] = ()
    note: str = ""
    args: tuple[str, ...] = ()
    quick_args: tuple[str, ...] = ()
    out_file: str | None = None
    module: str = ""

    def __post_init__(self) -> None:
        if not self.module:
            object.__setattr__(self, "module", f"experiments.{self.name}")

    def argv(self, quick: bool, out: Path) -> list[str]:
        """The options the task's script gets in a mode, writing into `out`."""
        target = out / self.out_file if self.out_file else out
        mode = ["--quick"] if quick and not self.out_file else []
        return [*mode, "--out", str(target), *(self.quick_args if quick else self.args)]


TASKS: tuple[Task, ...] = (
    Task("fits", ("fits.json", "fits.md"), note="fill the store of best-known CP fits"),
    Task(
        "bench_cg", ("bench_cg.json",), note="cold/warm cost of the CG blocks, deviation from e3nn"
    ),
    Task(
        "bounds_vs_rank",
        ("bounds_vs_rank.json", "bounds_vs_rank.png"),
        after=("fits",),
        note="Thm 3.1 / a-posteriori bounds vs rank",
    ),
    Task(
        "bench_fit",
        ("bench_fit.json", "bench_fit.md"),
        note="fit engine vs tensorly default and the published recipe",
    ),
    Task(
        "exact_vs_approximate",
        ("exact_vs_approximate.json", "exact_vs_approximate.png"),
        after=("fits",),
        note="exact sphere CP vs approximate unit CP",
    ),
    Task(
        "bench_layer",
        ("bench_layer_cpu.json", "bench_layer_cpu.png"),
        args=("--device", "cpu"),
        quick_args=(
            "--device",
            "cpu",
            "--L",
            "1",
            "2",
            "3",
            "--edges",
            "2000",
            "--channels",
            "16",
            "--rounds",
            "2",
            "--no-compile",
            "--matmul-size",
            "512",
        ),
        out_file="bench_layer_cpu.json",
        note="CP layer vs e3nn uvu and dense CG on CPU",
    ),
    Task(
        "rank_atlas",
        ("rank_atlas.json", "rank_atlas.md"),
        after=("fits",),
        note="certified lower / demonstrated upper bounds on the CP rank (resumable)",
    ),
    Task(
        "error_vs_rank",
        ("error_vs_rank.json", "error_vs_rank.png"),
        after=("fits",),
        note="paper Fig. 2: error vs rank, L = 1..6",
    ),
    Task(
        "rank_schedules",
        ("rank_schedules.json", "rank_schedules.png"),
        after=("error_vs_rank", "rank_atlas"),
        note="paper Fig. 3: the four rank schedules vs L",
    ),
    Task(
        "molecular_sets",
        ("molecular_sets.json", "molecular_sets.md"),
        note="GFN2-xTB molecular sets (needs the extra qm): statistics, dipole unit, proton transfers",
    ),
    Task(
        "reference_energies",
        ("reference_energies.json", "reference_energies.md"),
        after=("molecular_sets",),
        note="reference energies fitted to raw energies vs to the network's residual",
    ),
    Task(
        "accuracy_vs_rank",
        ("accuracy_vs_rank.json", "accuracy_vs_rank.md", "accuracy_vs_rank.png"),
        after=("fits", "molecular_sets"),
        note="TDN potential on EMT and GFN2-xTB molecules: paired accuracy vs dense, dipoles, equivariance",
    ),
    Task(
        "stress_training",
        ("stress_training.json", "stress_training.md"),
        after=("fits",),
        note="TDN potential on cuau-fcc: training on stresses, data-derived avg_neighbors (paired)",
    ),
    Task(
        "nbody_ranks",
        ("nbody_ranks.json", "nbody_ranks.png"),
        after=("fits",),
        note="n-body ranks at L = 2 vs the paper's equivariance errors",
    ),
    Task(
        "integrity",
        ("integrity.json",),
        note="cost of the factor-file re-check and cache checks; Haar test",
    ),
    Task(
        "network_equivariance",
        ("network_equivariance.json", "network_equivariance.png", "network_equivariance.md"),
        quick_args=("--quick",),
        out_file="network_equivariance.json",
        note="TDN potential: energy/force equivariance vs Theorems 1 and 2, L = 1..3, depth 1..6",
    ),
)


# --------------------------------------------------------------------------------------------
# inputs hash and manifest
# --------------------------------------------------------------------------------------------


def source_files(root: Path = ROOT) -> list[Path]:
    """Every .py file of the tdn_theory package and of experiments/, sorted."""
    files = [*root.glob("tdn_theory/**/*.py"), *root.glob("experiments/**/*.py")]
    return sorted(p for p in files if "__pycache__" not in p.parts)


def inputs_hash(
    task: Task,
    quick: bool,
    out: Path,
    tasks: Sequence[Task],
    root: Path = ROOT,
    sources: Sequence[Path] | None = None,
) -> str:
    """SHA-256 of the task's command line, the sources and its upstream tasks' outputs."""
    h = hashlib.sha256()
    h.update(json.dumps([task.module, task.argv(quick, Path("<out>"))]).encode())
    _io.hash_files(h, sources if sources is not None else source_files(root), root)
    by_name = {t.name: t for t in tasks}
    for upstream in task.after:
        for name in by_name[upstream].outputs:
            path = out / name
            h.update(name.encode())
            h.update(path.read_bytes() if path.exists() else b"<missing>")
    return h.hexdigest()


def read_manifest(out: Path) -> dict:
    """The manifest of a results folder ({} when missing or unreadable)."""
    path = out / MANIFEST
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return {}


def is_current(task: Task, manifest: dict, digest: str, out: Path) -> bool:
    """Outputs all exist and the manifest records the same inputs hash for the task."""
    entry = manifest.get(task.name, {})
    return entry.get("inputs_hash") == digest and all((out / n).exists() for n in task.outputs)


# --------------------------------------------------------------------------------------------
# running
# --------------------------------------------------------------------------------------------


def command(task: Task, quick: bool, out: Path) -> list[str]:
    """The process run_all starts for a task."""
    return [sys.executable, "-m", task.module, *task.argv(quick, out)]


def module_exists(task: Task, root: Path = ROOT) -> bool:
    """Whether the task's script is present (experiments.X -> experiments/X.py under root)."""
    return (root / (task.module.replace(".", "/") + ".py")).exists()


def select(tasks: Sequence[Task], only: str | None) -> list[Task]:
    """The tasks named in the comma separated `only` (all when None); unknown names raise."""
    if not only:
        return list(tasks)
    names = [n.strip() for n in only.split(",") if n.strip()]
    known = {t.name for t in tasks}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ValueError(f"unknown task(s) {unknown}; choose from {sorted(known)} (see --list)")
    return [t for t in tasks if t.name in names]


def results_dir(quick: bool, base: Path | None = None) -> Path:
    """experiments/results (full) or experiments/results/quick (quick); base overrides the root."""
    base = _io.RESULTS if base is None else base
    return base / "quick" if quick else base


def run_task(
    task: Task,
    quick: bool,
    out: Path,
    root: Path,
    all_tasks: Sequence[Task],
    sources: Sequence[Path],
    recorded: dict,
    force: bool,
    extra_env: dict[str, str] | None,
    *upstream: dict,
) -> dict:
    """One task (a Dask task, or a plain call when serial): skip it when an upstream task did not
    finish or when it is current, else run its script in a fresh process.

    upstream: the results of the tasks named in task.after (a Dask task starts when they are done).
    Returns {"name", "status", and, when it ran, "digest" and "seconds"}.
    """
    failed = [u["name"] for u in upstream if u["status"] not in ("ran", "up to date")]
    if failed:
        return {"name": task.name, "status": f"skipped (upstream {failed} did not finish)"}
    digest = inputs_hash(task, quick, out, all_tasks, root, sources)
    if not force and is_current(task, recorded, digest, out):
        return {"name": task.name, "status": "up to date"}
    env = dict(os.environ, **(extra_env or {}))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(root), env.get("PYTHONPATH")]))
    print(f"[run_all] {task.name}: {' '.join(command(task, quick, out)[1:])}", flush=True)
    t0 = time.perf_counter()
    proc = subprocess.run(command(task, quick, out), cwd=root, env=env)
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        return {"name": task.name, "status": f"failed (exit {proc.returncode})"}
    missing = [n for n in task.outputs if not (out / n).exists()]
    if missing:
        return {"name": task.name, "status": f"failed (did not write {missing})"}
    return {"name": task.name, "status": "ran", "digest": digest, "seconds": seconds}


def run(
    tasks: Sequence[Task],
    *,
    quick: bool,
    force: bool = False,
    base: Path | None = None,
    root: Path = ROOT,
    all_tasks: Sequence[Task] = TASKS,
    progress: bool | None = None,
    extra_env: dict[str, str] | None = None,
    options: Any = None,
) -> dict[str, str]:
    """Run the tasks as Dask tasks (options: --workers / --scheduler, experiments._dask), each
    after the tasks it reads from; returns {task name: status} in task order, with status one of
    "ran", "up to date", "missing script", "skipped (...)", "failed (exit N)",
    "failed (did not write ...)". The manifest is written here, as each task finishes.
    """
    out = results_dir(quick, base)
    out.mkdir(parents=True, exist_ok=True)
    manifest = read_manifest(out)
    recorded = dict(manifest)
    sources = source_files(root)
    status: dict[str, str] = {}

    def record(result: dict) -> None:
        status[result["name"]] = result["status"]
        if result["status"] == "ran":
            manifest[result["name"]] = {
                "inputs_hash": result["digest"],
                "outputs": list(by_name[result["name"]].outputs),
                "seconds": round(result["seconds"], 1),
                "finished_at": time.strftime("%Y-%m-%d %H:%M:%S"),
                "mode": "quick" if quick else "full",
            }
            _io.write_json_atomic(out / MANIFEST, manifest)

    by_name = {t.name: t for t in tasks}
    futures: dict[str, Any] = {}
    with _dask.units(options, progress=progress) as pool:
        for task in tasks:
            if not module_exists(task, root):
                status[task.name] = "missing script"
                continue
            gone = [u for u in task.after if status.get(u) == "missing script"]
            if gone:
                status[task.name] = f"skipped (upstream {gone} did not finish)"
                continue
            upstream = [futures[u] for u in task.after if u in futures]
            futures[task.name] = pool.submit(
                run_task,
                task,
                quick,
                out,
                root,
                all_tasks,
                sources,
                recorded,
                force,
                extra_env,
                *upstream,
                key=f"run_all-{task.name}-{uuid.uuid4().hex[:8]}",
            )
            if not pool.parallel:  # serial: it ran just now
                record(futures[task.name].result())
        if pool.parallel:
            pool.show_progress(list(futures.values()))
            for future in pool.as_completed(list(futures.values())):
                record(future.result())
    return {t.name: status[t.name] for t in tasks}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small parameters, results/quick/")
    parser.add_argument("--force", action="store_true", help="rerun tasks that are up to date")
    parser.add_argument("--only", default=None, help="comma separated task names (see --list)")
    parser.add_argument("--list", action="store_true", help="list the tasks and their state")
    _dask.add_args(parser)
    args = parser.parse_args(argv)
    _dask.check_args(args)
    try:
        tasks = select(TASKS, args.only)
    except ValueError as exc:
        parser.error(str(exc))
    out = results_dir(args.quick)
    if args.list:
        manifest = read_manifest(out)
        sources = source_files()
        for task in tasks:
            if not module_exists(task):
                state = "missing script"
            elif is_current(
                task, manifest, inputs_hash(task, args.quick, out, TASKS, ROOT, sources), out
            ):
                state = "up to date"
            else:
                state = "stale"
            print(f"{task.name:22s} {state:14s} {', '.join(task.outputs)}  ({task.note})")
        return 0
    t0 = time.perf_counter()
    status = run(tasks, quick=args.quick, force=args.force, options=args)
    print(f"[run_all] results in {out} ({time.perf_counter() - t0:.0f} s):")
    for name, state in status.items():
        print(f"  {name:16s} {state}")
    bad = {n: s for n, s in status.items() if s not in ("ran", "up to date")}
    if bad:
        print(f"[run_all] {len(bad)} task(s) did not finish: {', '.join(bad)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
