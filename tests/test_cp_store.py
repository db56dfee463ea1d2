"""tdn_theory.cp.store: the store of best-known fits, and that the results quote it.

Checks: keys and file names, best_known on the shipped store (exact ranks, 7L^2, padding, the
error a user gets is the one recomputed from the factors), clear errors for missing keys and
altered files, offer() keeps only improvements, best_fit fits once and then reads back, the
package data is declared, and every fitted error in the committed results equals the store's.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from tdn_theory.cp import (
    CPFit,
    FitKey,
    FitStore,
    FitStoreError,
    available,
    best_fit,
    best_known,
    cp_to_tensor,
    fit_cp,
    relative_error,
    save_factors,
)
from tdn_theory.cp import store as store_mod
from tdn_theory.so3 import cg_tensor

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "experiments" / "results"


def _rel(L, fit, normalization="unit", parity="all"):
    T = cg_tensor(L, normalization, parity)
    return float(np.linalg.norm(cp_to_tensor(*fit.factors) - T) / np.linalg.norm(T))


def test_key_validation_and_file_names():
    key = FitKey("unit", "all", 2, 28)
    assert key.filename == "unit_all_L2_R28.npz"
    assert FitKey.from_filename(key.filename) == key
    assert FitKey.from_filename("notes.txt") is None
    with pytest.raises(FitStoreError, match="normalization"):
        FitKey("units", "all", 2, 28)
    with pytest.raises(FitStoreError, match="rank must be an integer"):
        FitKey("unit", "all", 2, 28.0)
    with pytest.raises(FitStoreError, match="parity"):
        FitKey("unit", "both", 2, 28)


@pytest.mark.parametrize("L", range(1, 7))
def test_shipped_store_has_the_paper_schedule(L):
    fit = best_known(L, 7 * L * L)
    assert fit.rank == 7 * L * L and fit.A.shape == ((L + 1) ** 2, 7 * L * L)
    err = _rel(L, fit)
    assert abs(err - fit.relative_error) < 1e-12
    assert 1e-4 < err < 0.1  # approximate: no exact CP is known at 7L^2


def test_best_known_2_28_is_the_best_in_the_store():
    fit = best_known(2, 28)
    stored = [FitStore(store_mod.SHIPPED).get(FitKey("unit", "all", 2, 28))[0].relative_error]
    assert fit.relative_error == min(stored)
    assert abs(_rel(2, fit) - fit.relative_error) < 1e-12


def test_smallest_exact_ranks_and_padding():
    exact = [
        k
        for k in available(L=2, normalization="unit", parity="all")
        if best_known(2, k.rank).relative_error < 1e-10
    ]
    smallest = min(k.rank for k in exact)
    fit = best_known(2, smallest)
    assert _rel(2, fit) < 1e-12
    padded = best_known(2, smallest + 3)  # no file of that rank: the exact one, zero-padded
    assert padded.rank == smallest + 3
    assert np.all(padded.A[:, smallest:] == 0)
    assert _rel(2, padded) < 1e-12


def test_missing_key_lists_what_is_available():
    with pytest.raises(
        FitStoreError, match=r"no stored fit for unit/all/L=2/R=3; available: ranks \["
    ):
        best_known(2, 3)
    with pytest.raises(FitStoreError, match="available: tensors"):
        best_known(2, 5, "sphere", "odd")


def _fit(L, rank, seed=0, scale=1.0):
    rng = np.random.default_rng(seed)
    d = (L + 1) ** 2
    A, B, C = (scale * rng.standard_normal((d, rank)) for _ in range(3))
    return CPFit(A, B, C, 1.0)


def test_offer_keeps_only_improvements(tmp_path):
    store = FitStore(tmp_path / "s")
    key = FitKey("unit", "all", 1, 2)
    worse, better = _fit(1, 2, scale=1.0), _fit(1, 2, scale=0.01)
    assert _rel(1, better) < _rel(1, worse)
    assert store.offer(key, worse, {"method": "test"})
    assert store.offer(key, better, {"method": "test"})
    assert not store.offer(key, worse, {"method": "test"})
    fit, meta = store.get(key)
    assert abs(fit.relative_error - _rel(1, better)) < 1e-12
    assert meta["method"] == "test" and "replaces_relative_error" in meta
    with pytest.raises(FitStoreError, match="rank-3 fit offered"):
        store.offer(key, _fit(1, 3), {})
    best = fit_cp(cg_tensor(1), 2, restarts=1, seed=0)  # far better than random factors
    best.seed = 7  # e.g. the start a search kept; the requested seed is recorded apart
    assert store.offer(key, best, {"seed": 0})
    _, meta = store.get(key)
    assert meta["seed"] == 7 and meta["search_seed"] == 0


@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="fcntl locks are POSIX")
def test_offer_waits_for_another_writer_of_the_same_store(tmp_path):
    """Compare-and-write is one locked step: an offer made while another process holds the store's
    lock stores nothing until the lock is released, then compares against what is there."""
    import fcntl
    import threading

    store = FitStore(tmp_path / "s")
    key = FitKey("unit", "all", 1, 2)
    worse, better = _fit(1, 2, scale=1.0), _fit(1, 2, scale=0.01)
    store.folder.mkdir()
    results = []
    with open(store.folder / ".offer.lock", "a") as held:  # another writer holds the lock
        fcntl.flock(held.fileno(), fcntl.LOCK_EX)
        waiting = threading.Thread(target=lambda: results.append(store.offer(key, worse, {})))
        waiting.start()
        waiting.join(timeout=1.0)
        assert waiting.is_alive() and not store.path(key).exists()
        # the other writer stores a better fit before it releases the lock
        other = FitStore(tmp_path / "other")
        assert other.offer(key, better, {})
        shutil.copy(other.path(key), store.path(key))
        fcntl.flock(held.fileno(), fcntl.LOCK_UN)
    waiting.join(timeout=60)
    assert results == [False]  # the worse fit saw the better one and kept out
    assert abs(store.get(key)[0].relative_error - _rel(1, better)) < 1e-12
    assert key in store.keys() and len(store.keys()) == 1  # the lock file is not a key


def test_altered_file_is_refused(tmp_path):
    folder = tmp_path / "s"
    folder.mkdir()
    key = FitKey("unit", "all", 1, 2)
    fit = _fit(1, 2)
    fit = CPFit(fit.A, fit.B, fit.C, relative_error(cg_tensor(1), cp_to_tensor(*fit.factors)))
    meta = {"L": 1, "normalization": "unit", "parity": "all"}
    path = save_factors(folder / key.filename, fit, meta) or folder / key.filename
    with np.load(path) as z:  # a hostile edit: factors changed after writing, metadata kept
        arrays = {k: z[k] for k in z.files}
    arrays["A"] = 2 * arrays["A"]
    np.savez(path, **arrays)
    with pytest.raises(FitStoreError, match="refusing unit_all_L1_R2.npz"):
        best_known(1, 2, store=folder)
    (folder / key.filename).write_bytes(b"not a zip")
    with pytest.raises(FitStoreError, match="refusing unit_all_L1_R2.npz"):
        FitStore(folder).get(key)
    other = folder / FitKey("unit", "all", 1, 3).filename  # a file named for another key
    shutil.copy(store_mod.SHIPPED / "unit_all_L1_R8.npz", other)
    with pytest.raises(FitStoreError, match="rank"):
        FitStore(folder).get(FitKey("unit", "all", 1, 3))


def test_best_fit_fits_once_then_reads(tmp_path, monkeypatch):
    folder = tmp_path / "s"
    key = ("cg", "odd")  # not shipped at rank 2
    assert not (store_mod.SHIPPED / "cg_odd_L1_R2.npz").exists()
    fit, meta = best_fit(1, 2, *key, store=folder, restarts=1, time_budget=2.0)
    assert (folder / "cg_odd_L1_R2.npz").is_file()
    assert meta["method"] == "fit_cp" and meta["restarts"] == 1
    assert abs(_rel(1, fit, *key) - fit.relative_error) < 1e-12

    def no_fit(*args, **kwargs):
        raise AssertionError("best_fit refitted a stored key")

    monkeypatch.setattr(store_mod, "fit_cp", no_fit)
    again, _ = best_fit(1, 2, *key, store=folder)
    assert np.array_equal(again.A, fit.A)
    with pytest.raises(FitStoreError, match="no stored fit"):
        best_fit(1, 3, *key, store=folder, fit_missing=False)


def test_store_path_must_be_a_folder(tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(FitStoreError, match="not a folder"):
        FitStore(f)


def test_package_data_declared_and_small():
    text = (REPO / "pyproject.toml").read_text()
    section = text[text.index("[tool.setuptools.package-data]") :]
    assert '"tdn_theory.cp" = ["best_known/*.npz"]' in section.split("\n[")[0]
    size = sum(p.stat().st_size for p in store_mod.SHIPPED.glob("*.npz"))
    assert 0 < size <= 10 * 2**20


# ------------------------------------------------------------------------------------------
# one number, one source: the committed results quote the store's fits
# ------------------------------------------------------------------------------------------


def _quoted_unit_errors() -> list[tuple[str, int, int, float]]:
    """(file, L, R, fitted error) of every unit/all fit the committed results quote."""
    out = []
    evr = json.loads((RESULTS / "error_vs_rank.json").read_text())
    for b in evr["per_L"]:
        out += [("error_vs_rank", b["L"], r["rank"], r["relative_error"]) for r in b["rows"]]
    nb = json.loads((RESULTS / "nbody_ranks.json").read_text())
    out += [("nbody_ranks", nb["L"], r["rank"], r["relative_error"]) for r in nb["rows"]]
    rs = json.loads((RESULTS / "rank_schedules.json").read_text())
    for b in rs["per_L"]:
        out += [
            ("rank_schedules", b["L"], r["rank"], r["relative_error"])
            for r in b["schedules"].values()
        ]
    atlas = json.loads((RESULTS / "rank_atlas.json").read_text())["rows"]
    for key, row in atlas.items():
        if key.startswith("unit/all/") and row.get("error_7L2") is not None:
            out.append(("rank_atlas", row["L"], row["rank_7L2"], row["error_7L2"]))
    bounds = json.loads((RESULTS / "bounds_vs_rank.json").read_text())["bounds"]
    for L, part in bounds.items():
        out += [
            ("bounds_vs_rank", int(L), r["rank"], r["relative_error"])
            for r in part["rows"]
            if r["method"] == "fit store"
        ]
    eva = json.loads((RESULTS / "exact_vs_approximate.json").read_text())["rows"]
    out += [
        ("exact_vs_approximate", r["L"], r["unit_cp"]["rank"], r["unit_cp"]["relative_error"])
        for r in eva
        if r["unit_cp"].get("fitted")
    ]
    return [(f, L, R, e) for f, L, R, e in out if R < (L + 1) ** 4]


def test_results_quote_the_store():
    quoted = _quoted_unit_errors()
    assert len(quoted) > 50
    for name, L, R, err in quoted:
        best = best_known(L, R).relative_error
        assert abs(err - best) <= 1e-9 + 1e-6 * best, (
            f"{name}: L={L} R={R} quotes {err}, store {best}"
        )


def test_layer_from_the_store_computes_the_best_known_tensor():
    import torch

    from tdn_theory.nn import CPTensorProduct

    layer = CPTensorProduct.best_known(2, 28, dtype=torch.float64)
    fit = best_known(2, 28)
    assert torch.equal(layer.A, torch.as_tensor(fit.A))
    assert layer.meta["relative_error"] == pytest.approx(fit.relative_error, rel=1e-12)
    with pytest.raises(FitStoreError, match="no stored fit"):
        CPTensorProduct.best_known(2, 3)


def test_smallest_exact_rank_is_the_smallest_exact_stored_fit(tmp_path):
    from tdn_theory.cp import smallest_exact_rank

    R = smallest_exact_rank(2)
    assert best_known(2, R).relative_error <= 1e-10
    assert best_known(2, R - 1).relative_error > 1e-3  # the store holds rank R - 1: not exact
    assert smallest_exact_rank(2, store=tmp_path / "empty") == R
    assert smallest_exact_rank(3, "sphere", "odd", store=tmp_path / "empty") is None
