"""experiments/_dask.py: units on Dask workers give the serial results; shared keys stay consistent.

One LocalCluster of two worker processes (one thread each) serves the whole module; run_all
attaches to it through --scheduler, the others use it directly.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pytest

from experiments import _dask

distributed = pytest.importorskip(
    "dask.distributed", reason="the dask extra is not installed (pip install 'tdn_theory[dask]')"
)


@pytest.fixture(scope="module")
def client():
    import logging

    import cloudpickle

    # the unit functions below live in this test module: ship them by value to the workers
    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    with (
        distributed.LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            dashboard_address=":0",  # a free port (not 8787, which another cluster may hold)
            silence_logs=logging.ERROR,
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        yield client


def _namespace(**kw):
    return argparse.Namespace(**{"workers": 1, "scheduler": None, **kw})


def test_network_equivariance_units_match_serial(client):
    """The units of network_equivariance give the same numbers on two workers as in-process."""
    from experiments import network_equivariance as ne

    geoms = ne.structures(0, quick=True)
    units = ne.grid([1], [1])
    assert [u[1] for u in units] == ["7L^2", "exact"]
    kw = {"geoms": geoms, "n_rot": 2, "search": 2, "seed": 0}
    serial = _dask.Units(None).map(ne.measure_unit, units, **kw)
    parallel = _dask.Units(client, progress=False).map(ne.measure_unit, units, **kw)

    def numbers(results):
        return [
            {k: v for k, v in row.items() if not k.startswith("seconds")}
            for result in results
            for row in result["rows"]
        ]

    assert numbers(parallel) == numbers(serial)
    assert [r["tensor_product"] for r in parallel] == [r["tensor_product"] for r in serial]


def _fit_into(folder: str, seed: int) -> float:
    from tdn_theory.cp import best_fit

    fit, _ = best_fit(1, 3, "unit", "even", store=folder, seed=seed, restarts=1, time_budget=0.5)
    return fit.relative_error


def test_two_workers_fill_one_fit_store_key(client, tmp_path):
    from tdn_theory.cp import FitKey, FitStore

    futures = [client.submit(_fit_into, str(tmp_path), seed, pure=False) for seed in (0, 1)]
    errors = client.gather(futures)
    store = FitStore(tmp_path)
    fit, meta = store.get(FitKey("unit", "even", 1, 3))  # verified against the CG tensor
    assert any(abs(fit.relative_error - e) <= 1e-12 for e in errors)
    # no temporary left; the store's lock file (FitStore.offer) stays
    assert sorted(p.name for p in tmp_path.iterdir()) == [".offer.lock", "unit_even_L1_R3.npz"]
    assert abs(fit.relative_error - min(errors)) <= 1e-12  # the better fit won, whatever the order


def _dataset_into(cache: str) -> str:
    import hashlib
    import os

    os.environ["TDN_THEORY_CACHE"] = cache
    from tdn_theory.models import data

    path = data.dataset_path("agpd-cluster", n_configs=2, seed=5)
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_two_workers_write_one_dataset_key(client, tmp_path):
    import os

    from tdn_theory.models import data

    futures = [client.submit(_dataset_into, str(tmp_path), pure=False) for _ in range(2)]
    digests = client.gather(futures)
    assert digests[0] == digests[1]
    os.environ["TDN_THEORY_CACHE"], before = str(tmp_path), os.environ.get("TDN_THEORY_CACHE")
    try:
        folder = data._dataset_folder()
        files = sorted(p.name for p in folder.iterdir())
        assert len(files) == 2 and not [f for f in files if f.startswith(".")]
        configs = data.load_dataset("agpd-cluster", n_configs=2, seed=5)  # verified read
        assert len(configs) == 2
    finally:
        if before is None:
            del os.environ["TDN_THEORY_CACHE"]
        else:
            os.environ["TDN_THEORY_CACHE"] = before


def test_run_all_on_a_scheduler(client, tmp_path, monkeypatch):
    """run_all --scheduler: same statuses and manifest as serially; b waits for a."""
    import test_run_all as fake

    from experiments import run_all

    root = tmp_path / "src"
    (root / "experiments").mkdir(parents=True)
    (root / "tdn_theory").mkdir()
    (root / "experiments" / "__init__.py").write_text("")
    (root / "experiments" / "_io.py").write_text(
        (Path(run_all.__file__).parent / "_io.py").read_text()
    )
    for name in ("a", "b", "c"):
        (root / "experiments" / f"{name}.py").write_text(fake.WRITER)
    (root / "tdn_theory" / "__init__.py").write_text("")
    log = tmp_path / "log.txt"
    log.write_text("")
    monkeypatch.setenv("FAKE_LOG", str(log))  # the serial run below; the workers get extra_env
    tasks = (
        run_all.Task("a", ("a.json",)),
        run_all.Task("b", ("b.json",), after=("a",)),
        run_all.Task("c", ("c.json",)),
    )
    options = _namespace(scheduler=client.scheduler.address)
    kw = {"base": root / "results", "root": root, "all_tasks": tasks, "progress": False}
    kw["extra_env"] = {"FAKE_LOG": str(log)}
    status = run_all.run(tasks, quick=True, options=options, **kw)
    assert status == {"a": "ran", "b": "ran", "c": "ran"}
    lines = [line.split()[0] for line in log.read_text().splitlines()]
    assert sorted(lines) == ["a", "b", "c"] and lines.index("a") < lines.index("b")
    assert run_all.run(tasks, quick=True, options=options, **kw) == dict.fromkeys(
        "abc", "up to date"
    )
    assert run_all.run(tasks, quick=True, **kw) == dict.fromkeys("abc", "up to date")


def test_missing_extra_and_bad_workers_give_one_line(monkeypatch, capsys):
    monkeypatch.setattr(_dask, "dask_available", lambda: False)
    with pytest.raises(SystemExit) as exc:
        _dask.check_args(_namespace(workers=2))
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "pip install" in err
    _dask.check_args(_namespace())  # serial needs no Dask
    for bad in (_namespace(workers=0), _namespace(workers=2, scheduler="tcp://x:1")):
        with pytest.raises(SystemExit):
            _dask.check_args(bad)


def test_serial_units_keep_errors_in_the_future():
    pool = _dask.Units(None)
    assert pool.map(abs, [-1, 2]) == [1, 2]
    future = pool.submit(int, "x")
    with pytest.raises(ValueError):
        future.result()
    assert pool.submit(lambda a, b: a + b, pool.submit(abs, -2), 3).result() == 5
