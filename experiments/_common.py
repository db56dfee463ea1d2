"""The command-line contract every experiment script shares.

Each script ``experiments/<name>.py`` has ``main(argv) -> int``, takes ``--quick`` (small
parameters, about a minute) and ``--out DIR`` (default experiments/results, or
experiments/results/quick with --quick), and writes ``<name>.json`` (plus ``<name>.png`` and/or
``<name>.md`` when it has a figure or a table) into DIR. Every JSON carries one ``provenance``
block (``provenance()``): command line, git commit, start/end date, machine, load average at start
and end, thread settings and the total seconds. ``Run.timer()`` is the one timing helper.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from experiments import _io

ROOT = Path(__file__).resolve().parent.parent


def add_common_args(parser: Any) -> None:
    """--quick and --out (the shared contract)."""
    parser.add_argument("--quick", action="store_true", help="small parameters (about a minute)")
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="results folder (default experiments/results, or experiments/results/quick with --quick)",
    )


def _usage_error(message: str) -> None:
    """One line on stderr and exit status 2 (bad command-line input)."""
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(2)


def output_dir(args: Any) -> Path:
    """--out, else experiments/results (experiments/results/quick with --quick)."""
    if getattr(args, "out", None) is not None:
        out = Path(args.out)
        if out.suffix == ".json":
            _usage_error(f"--out takes a folder, got the file name {out}; pass its folder")
        if out.exists() and not out.is_dir():
            _usage_error(f"--out {out} exists and is not a folder; pass a folder")
        return out
    return _io.RESULTS / "quick" if getattr(args, "quick", False) else _io.RESULTS


def git_commit(root: Path = ROOT) -> str | None:
    """The checked-out commit (with "+dirty" when the tree has changes), None outside git."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return head + ("+dirty" if dirty else "")


def load_average() -> list[float] | None:
    """os.getloadavg() rounded (None where the platform lacks it)."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except (AttributeError, OSError):
        return None


def threads() -> dict[str, Any]:
    """Thread settings that change timings: OMP/MKL variables and torch's thread count."""
    info: dict[str, Any] = {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    if "torch" in sys.modules:
        info["torch_threads"] = sys.modules["torch"].get_num_threads()
    return info


@dataclass
class Timer:
    """Wall seconds of a `with run.timer() as t:` block (t.seconds once it ends)."""

    start: float = field(default_factory=time.perf_counter)
    seconds: float = 0.0


@dataclass
class Run:
    """One run of an experiment: its name, arguments, start time and load, and how to write."""

    name: str
    args: Any = None
    argv: list[str] | None = None
    started: float = field(default_factory=time.time)
    load_start: list[float] | None = field(default_factory=load_average)

    @property
    def command(self) -> str:
        """The command line that reproduces this run."""
        argv = sys.argv[1:] if self.argv is None else self.argv
        return " ".join(["python -m experiments." + self.name, *map(str, argv)])

    @contextmanager
    def timer(self):
        t = Timer()
        try:
            yield t
        finally:
            t.seconds = time.perf_counter() - t.start

    def provenance(self) -> dict[str, Any]:
        """The provenance block of the results file (module docstring)."""
        now = time.time()
        fmt = "%Y-%m-%d %H:%M:%S UTC"
        return {
            "command": self.command,
            "mode": "quick" if getattr(self.args, "quick", False) else "full",
            "git_commit": git_commit(),
            "started": time.strftime(fmt, time.gmtime(self.started)),
            "finished": time.strftime(fmt, time.gmtime(now)),
            "seconds": round(now - self.started, 1),
            "machine": _io.machine(),
            "load_average_start": self.load_start,
            "load_average_end": load_average(),
            "threads": threads(),
        }

    def write(
        self, out: Path, result: dict, markdown: str | None = None, figure: Any = None
    ) -> None:
        """Write <name>.json (result + provenance), and <name>.md / <name>.png when given."""
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        data = dict(result)
        data["provenance"] = data.get("provenance") or self.provenance()
        _io.write_json_atomic(out / f"{self.name}.json", data)
        if markdown is not None:
            _io.write_text_atomic(out / f"{self.name}.md", markdown)
        if figure is not None:
            _io.save_figure_atomic(figure, out / f"{self.name}.png", dpi=120, bbox_inches="tight")
            import matplotlib.pyplot as plt

            plt.close(figure)


# --------------------------------------------------------------------------------------------
# the store of fits (tdn_theory.cp.store): every experiment takes its fits from there
# --------------------------------------------------------------------------------------------

#: fit_cp options for keys the store lacks in quick mode (full mode: tdn_theory.cp.store.RECIPES).
QUICK_FIT = {"restarts": 2, "time_budget": 3.0}


def add_store_arg(parser: Any) -> None:
    """--store DIR: the fit store to read and fill (default: shipped store; quick: OUT/fits)."""
    parser.add_argument(
        "--store",
        type=Path,
        default=None,
        help="fit store folder (default: the package's store tdn_theory/cp/best_known; "
        "with --quick: OUT/fits, reading the package's store too)",
    )


def fit_store(args: Any, out: Path):
    """The FitStore an experiment reads and fills (see add_store_arg)."""
    from tdn_theory.cp import FitStore
    from tdn_theory.cp.store import SHIPPED

    if getattr(args, "store", None) is not None:
        return FitStore(args.store)
    return FitStore(Path(out) / "fits" if getattr(args, "quick", False) else SHIPPED)


def stored_fit(
    L: int,
    rank: int,
    store: Any,
    *,
    quick: bool,
    normalization: str = "unit",
    parity: str = "all",
    command: str | None = None,
):
    """(CPFit, info) from the store, fitted and stored only when missing (tdn_theory.cp.best_fit).

    info: where the factors come from (method, seed, restarts, budget, source file, date, and
    padded_from_rank when an exact fit of a smaller rank was padded with zero columns).
    """
    from tdn_theory.cp import best_fit

    options = QUICK_FIT if quick else {}
    fit, meta = best_fit(L, rank, normalization, parity, store=store, command=command, **options)
    keep = (
        "method",
        "seed",
        "restarts",
        "time_budget_s",
        "source",
        "stored_at",
        "padded_from_rank",
        "package_version",
    )
    info = {"fit_" + k: meta[k] for k in keep if meta.get(k) is not None}
    return fit, info
