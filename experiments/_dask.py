"""Independent units of a sweep as Dask tasks: ``--workers N`` and ``--scheduler ADDRESS``.

Every sweep experiment (and run_all) takes these two options through ``add_args``, and runs its
units through one ``Units`` object::

    with _dask.units(args) as pool:
        results = pool.map(measure_one, grid, geometries=geoms)   # in the order of `grid`

* default (``--workers 1``, no ``--scheduler``): the units run one after the other in this
  process, exactly as a plain loop; Dask is not imported, so the ``dask`` extra is not needed;
* ``--workers N`` (N >= 2): a ``dask.distributed.LocalCluster`` of N worker processes with one
  thread each (Dask's nanny sets OMP_NUM_THREADS=1 etc. in every worker);
* ``--scheduler ADDRESS`` (e.g. ``tcp://10.0.0.5:8786``): the units go to an existing Dask
  cluster (``dask scheduler`` / ``dask worker`` started on the machines of a cluster; the workers
  need this source tree importable and the results / cache folders on a shared file system).

Results are gathered in submission order, so a sweep's output does not depend on which worker ran
what. Units must be module-level functions whose arguments pickle. On a terminal Dask's own
progress bar (``dask.distributed.progress``) shows the units done (serial: a tqdm bar); in logs
there is none.
Without the extra, ``--workers 2`` or ``--scheduler`` stop with one line (exit 2) that names
``pip install 'tdn_theory[dask]'``.
"""

from __future__ import annotations

import concurrent.futures
import logging
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

INSTALL = "pip install 'tdn_theory[dask]'  (or: pip install 'dask[distributed]')"


def add_args(parser: Any) -> None:
    """--workers N and --scheduler ADDRESS (module docstring)."""
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        help="local Dask worker processes, one thread each (default 1: serial, in this process)",
    )
    parser.add_argument(
        "--scheduler",
        default=None,
        metavar="ADDRESS",
        help="address of a running Dask scheduler (e.g. tcp://host:8786) to send the units to",
    )


def _usage_error(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(2)


def check_args(args: Any) -> None:
    """One line and exit 2 for --workers < 1, both options, or a missing dask extra."""
    workers = getattr(args, "workers", 1)
    scheduler = getattr(args, "scheduler", None)
    if not isinstance(workers, int) or workers < 1:
        _usage_error(f"--workers must be an integer >= 1, got {workers!r}")
    if scheduler is not None and workers != 1:
        _usage_error("--workers starts a local cluster and --scheduler uses another: pass one")
    if (workers > 1 or scheduler is not None) and not dask_available():
        _usage_error(f"--workers {workers} / --scheduler need Dask: {INSTALL}")


def dask_available() -> bool:
    try:
        import dask.distributed  # noqa: F401
    except ImportError:
        return False
    return True


class Units:
    """Runs units serially in-process (client None) or on a dask.distributed Client."""

    def __init__(self, client: Any = None, *, progress: bool | None = None) -> None:
        self.client = client
        # Dask's bar only on a terminal (as tqdm's disable=None); never in logs or tests
        self.progress = sys.stderr.isatty() if progress is None else progress

    @property
    def parallel(self) -> bool:
        return self.client is not None

    def submit(self, fn: Callable, *args: Any, key: str | None = None, **kwargs: Any):
        """A future of fn(*args, **kwargs); futures among args are replaced by their results.

        Serial: runs now and returns a finished concurrent.futures.Future (an exception is kept
        in the future, as Dask does). Parallel: client.submit (pure=False: never deduplicated).
        """
        if self.client is not None:
            extra = {} if key is None else {"key": key}
            return self.client.submit(fn, *args, pure=False, **extra, **kwargs)
        future: concurrent.futures.Future = concurrent.futures.Future()
        args = tuple(a.result() if isinstance(a, concurrent.futures.Future) else a for a in args)
        try:
            future.set_result(fn(*args, **kwargs))
        except Exception as exc:  # noqa: BLE001 - handed to the caller through the future
            future.set_exception(exc)
        return future

    def as_completed(self, futures: Sequence) -> Iterator:
        """Futures in completion order (serial: submission order)."""
        if self.client is None:
            yield from futures
            return
        from dask.distributed import as_completed

        yield from as_completed(futures)

    def show_progress(self, futures: Sequence) -> None:
        """Dask's progress bar of `futures` on a terminal (parallel only), drawn by a background
        thread so that the caller can handle results as they arrive."""
        if self.client is None or not self.progress:
            return
        import threading

        from dask.distributed import progress

        threading.Thread(target=progress, args=(futures,), daemon=True).start()

    def map(self, fn: Callable, items: Iterable, desc: str | None = None, **kwargs: Any) -> list:
        """[fn(item, **kwargs) for item in items], in order; the first error is raised.

        Progress on a terminal: a tqdm bar named `desc` when serial, Dask's bar when parallel.

        Parallel: the keyword arguments (e.g. shared geometries) are scattered once to every
        worker rather than sent with each unit.
        """
        items = list(items)
        if self.client is None:
            from tqdm import tqdm

            bar = tqdm(items, desc=desc, disable=None if self.progress else True, file=sys.stderr)
            return [fn(item, **kwargs) for item in bar]
        shared = {k: self.client.scatter([v], broadcast=True)[0] for k, v in kwargs.items()}
        futures = [self.client.submit(fn, item, pure=False, **shared) for item in items]
        if self.progress:
            from dask.distributed import progress

            progress(futures)
        return self.client.gather(futures)


@contextmanager
def units(args: Any, *, progress: bool | None = None) -> Iterator[Units]:
    """The Units of an experiment's --workers / --scheduler (checked; closed on exit)."""
    check_args(args)
    workers = getattr(args, "workers", 1)
    scheduler = getattr(args, "scheduler", None)
    if workers == 1 and scheduler is None:
        yield Units(None, progress=progress)
        return
    from dask.distributed import Client, LocalCluster

    if scheduler is not None:
        with Client(scheduler) as client:
            yield Units(client, progress=progress)
        return
    with (
        LocalCluster(
            n_workers=workers,
            threads_per_worker=1,
            processes=True,
            dashboard_address=":0",  # a free port (not 8787, which another cluster may hold)
            silence_logs=logging.ERROR,
        ) as cluster,
        Client(cluster) as client,
    ):
        yield Units(client, progress=progress)


def describe(args: Any) -> dict[str, Any]:
    """How the units ran, for a results file's provenance."""
    return {
        "workers": getattr(args, "workers", 1),
        "scheduler": getattr(args, "scheduler", None),
    }
