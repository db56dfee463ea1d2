"""One store of CP fits of the CG tensors: the best fit known for each (normalization, parity, L, R).

A store is a folder of factor files (tdn_theory.cp.factor_files), one per key, named
``<normalization>_<parity>_L<L>_R<rank>.npz``. Each file holds A (d, R), B (d, R), C (d, R) with

    cg_tensor(L, normalization, parity)[k, i, j] ≈ sum_r A[k, r] B[i, r] C[j, r]     (d = (L+1)^2)

and a metadata block with its provenance: L, normalization, parity, rank, relative_error
(||M - M_hat||_F / ||M||_F), lower_bound (tdn_theory.cp.error_lower_bound, relative), method,
command, seed, budget, date and package version (filled in by save_factors).

The package ships one store (``SHIPPED``, package data ``tdn_theory/cp/best_known/``) with the best
fits found for the paper's rank schedule 7L^2 (L = 1..6), the smallest exact CPs found, and every
rank the experiments under experiments/ use. Read it with ``best_known(L, rank)``.

``best_fit(L, rank, store=FOLDER)`` reads a key from FOLDER and from the shipped store, and fits
(tdn_theory.cp.fit_cp with RECIPES[L]) only when neither holds it; a new fit is written into FOLDER
only when it beats what FOLDER holds (``FitStore.offer``). So each (tensor, L, R) number is computed
once and every caller quotes the same one.

Every read is verified: the factors are rebuilt into a tensor and compared with cg_tensor; a file
whose stored error disagrees with the recomputed one (or whose name disagrees with its metadata)
is refused with a one-line FitStoreError that names the file to delete. A damaged file of another
rank never blocks a lookup: while looking for an exact fit of a smaller rank, a damaged file is
skipped with one warning (once per file and process). A store that cannot be written (read-only,
a file in its place, a full disk) does not stop best_fit: the new fit is used unstored, with one
warning.

Several processes (Dask workers, parallel sweeps) may offer fits for the same key: the read, the
comparison and the write of ``FitStore.offer`` run under an exclusive ``fcntl.flock`` on the
store's ``.offer.lock`` file, so a worse fit never replaces a better one that another process
stored in between (where ``fcntl`` does not exist, the write is still atomic but not ordered).
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import os
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tdn_theory._checks import check_int

from ..so3 import NORMALIZATIONS, PARITIES, cg_tensor
from .factor_files import FactorFileError, load_factors, save_factors
from .fit import CPFit, fit_cp
from .lower_bound import error_lower_bound
from .tensor_ops import EXACT_RTOL, cp_to_tensor

__all__ = [
    "EXACT_TOL",
    "FitKey",
    "FitStore",
    "FitStoreError",
    "FitStoreWriteError",
    "RECIPES",
    "SHIPPED",
    "best_fit",
    "best_known",
    "available",
]

#: The store shipped with the package (package data).
SHIPPED = Path(__file__).resolve().parent / "best_known"

#: A fit with relative error at or below this is called exact (tensor_ops.EXACT_RTOL).
EXACT_TOL = EXACT_RTOL

#: How best_fit fits a missing key at degree L: fit_cp(restarts=..., time_budget=... seconds, seed=0).
#: Larger L gets fewer restarts and a longer budget (one fit is slower); budgets make the result
#: depend on the machine's speed, so the budget is recorded with each fit.
RECIPES: dict[int, dict[str, Any]] = {
    1: {"restarts": 8, "time_budget": 10.0},
    2: {"restarts": 8, "time_budget": 60.0},
    3: {"restarts": 4, "time_budget": 45.0},
    4: {"restarts": 4, "time_budget": 60.0},
    5: {"restarts": 3, "time_budget": 60.0},
    6: {"restarts": 2, "time_budget": 60.0},
}
_DEFAULT_RECIPE = {"restarts": 2, "time_budget": 120.0}

_NAME = re.compile(r"^(?P<n>[a-z]+)_(?P<p>[a-z]+)_L(?P<L>\d+)_R(?P<R>\d+)\.npz$")

# a stored error and the recomputed one may differ by rounding only
_ERR_ATOL = 1e-12
_ERR_RTOL = 1e-6


#: Files already verified in this process: (resolved path, mtime_ns, size) -> (fit, meta).
#: A rewritten file has a new stamp and is verified again.
_VERIFIED: dict[tuple[str, int, int], tuple[CPFit, dict[str, Any]]] = {}


class FitStoreError(ValueError):
    """A store folder or one of its files is unusable, or a key is not available."""


class FitStoreWriteError(FitStoreError):
    """A fit could not be written into the store (folder not writable, disk full, ...)."""


#: Damaged files already reported in this process (one warning each).
_REPORTED: set[str] = set()


@dataclass(frozen=True, order=True)
class FitKey:
    """What a stored fit approximates: cg_tensor(L, normalization, parity) at CP rank `rank`."""

    normalization: str
    parity: str
    L: int
    rank: int

    def __post_init__(self) -> None:
        if self.normalization not in NORMALIZATIONS:
            raise FitStoreError(
                f"normalization must be one of {NORMALIZATIONS}, got {self.normalization!r}"
            )
        if self.parity not in PARITIES:
            raise FitStoreError(f"parity must be one of {PARITIES}, got {self.parity!r}")
        for name in ("L", "rank"):
            try:
                value = check_int(getattr(self, name), name, minimum=1)
            except ValueError as exc:
                raise FitStoreError(str(exc)) from None
            object.__setattr__(self, name, value)

    @property
    def filename(self) -> str:
        """``<normalization>_<parity>_L<L>_R<rank>.npz``."""
        return f"{self.normalization}_{self.parity}_L{self.L}_R{self.rank}.npz"

    @classmethod
    def from_filename(cls, name: str) -> FitKey | None:
        """The key a file name encodes (None for names that are not store files)."""
        m = _NAME.match(name)
        if m is None:
            return None
        try:
            return cls(m["n"], m["p"], int(m["L"]), int(m["R"]))
        except FitStoreError:
            return None

    def __str__(self) -> str:
        return f"{self.normalization}/{self.parity}/L={self.L}/R={self.rank}"


def _target(key: FitKey) -> np.ndarray:
    return cg_tensor(key.L, key.normalization, key.parity)


def _recomputed_error(T: np.ndarray, fit: CPFit) -> float:
    norm = float(np.linalg.norm(T))
    return float(np.linalg.norm(cp_to_tensor(fit.A, fit.B, fit.C) - T)) / norm


class FitStore:
    """A folder of factor files, one per FitKey (module docstring). Reads verify every file."""

    def __init__(self, folder: str | os.PathLike) -> None:
        self.folder = Path(folder)
        if self.folder.exists() and not self.folder.is_dir():
            raise FitStoreError(f"fit store {str(self.folder)!r} exists and is not a folder")

    def __repr__(self) -> str:
        return f"FitStore({str(self.folder)!r})"

    def path(self, key: FitKey) -> Path:
        """Where the fit for `key` lives in this store."""
        return self.folder / key.filename

    def keys(self) -> list[FitKey]:
        """The keys this store holds, sorted (normalization, parity, L, rank)."""
        try:
            if not self.folder.is_dir():
                return []
            found = [FitKey.from_filename(p.name) for p in self.folder.iterdir() if p.is_file()]
        except OSError:  # an unreadable folder holds nothing usable
            return []
        return sorted(k for k in found if k is not None)

    def get(self, key: FitKey) -> tuple[CPFit, dict[str, Any]] | None:
        """The stored (fit, meta) for `key`, verified against cg_tensor; None when absent.

        Raises FitStoreError when the file is damaged, describes another key, or its stored
        relative error disagrees with the one recomputed from its factors.
        """
        path = self.path(key)
        if not path.exists():
            return None
        stat = path.stat()
        stamp = (str(path.resolve()), stat.st_mtime_ns, stat.st_size)
        if stamp in _VERIFIED:
            fit, meta = _VERIFIED[stamp]
            return CPFit(
                fit.A.copy(),
                fit.B.copy(),
                fit.C.copy(),
                fit.relative_error,
                [],
                fit.seed,
                fit.seconds,
            ), dict(meta)
        expect = {
            "L": key.L,
            "normalization": key.normalization,
            "parity": key.parity,
            "rank": key.rank,
        }
        advice = f"delete {str(path)!r} to use or refit another"
        try:
            fit, meta = load_factors(path, expect=expect)
        except FactorFileError as exc:
            raise FitStoreError(f"fit store: refusing {path.name}: {exc}; {advice}") from exc
        err = _recomputed_error(_target(key), fit)
        if abs(err - fit.relative_error) > _ERR_ATOL + _ERR_RTOL * fit.relative_error:
            raise FitStoreError(
                f"fit store: refusing {path.name}: it records relative error "
                f"{fit.relative_error:.6g} but its factors give {err:.6g} (altered file?); {advice}"
            )
        _VERIFIED[stamp] = (fit, dict(meta))
        return fit, meta

    def offer(self, key: FitKey, fit: CPFit, provenance: dict[str, Any] | None = None) -> bool:
        """Store `fit` under `key` if it beats the stored one (or none is stored); True if stored.

        The relative error is recomputed from the factors (the stored figure is never taken on
        trust); `provenance` (command, budget, method, source, ...) goes into the metadata
        together with L, normalization, parity, the certified lower bound and the date.
        """
        if fit.rank != key.rank:
            raise FitStoreError(f"fit store: a rank-{fit.rank} fit offered for key {key}")
        T = _target(key)
        if fit.A.shape[0] != T.shape[0] or fit.B.shape[0] != T.shape[1]:
            raise FitStoreError(
                f"fit store: factors with {fit.A.shape[0]} rows offered for {key} "
                f"(needs {T.shape[0]})"
            )
        err = _recomputed_error(T, fit)
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise FitStoreWriteError(
                f"fit store: cannot create {str(self.folder)!r} "
                f"({exc.strerror or exc.__class__.__name__})"
            ) from exc
        with self._offer_lock():
            return self._store_if_better(key, fit, err, T, provenance)

    @contextlib.contextmanager
    def _offer_lock(self):
        """Exclusive lock of this store's compare-and-write (a no-op without fcntl)."""
        try:
            import fcntl
        except ImportError:  # not POSIX: atomic writes, unordered
            yield
            return
        lock = self.folder / ".offer.lock"
        try:
            handle = open(lock, "a")  # held for the duration of the block
        except OSError as exc:
            raise FitStoreWriteError(
                f"fit store: cannot lock {str(lock)!r} ({exc.strerror or exc.__class__.__name__})"
            ) from exc
        with handle:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)

    def _store_if_better(
        self, key: FitKey, fit: CPFit, err: float, T: np.ndarray, provenance: dict | None
    ) -> bool:
        current = self.get(key)
        if current is not None and current[0].relative_error <= err:
            return False
        fit = CPFit(fit.A, fit.B, fit.C, err, [], fit.seed, fit.seconds)
        meta = dict(provenance or {})
        if (
            "seed" in meta and meta["seed"] != fit.seed
        ):  # e.g. a search whose best start had its own
            meta["search_seed"] = meta.pop("seed")
        meta.update(
            L=key.L,
            normalization=key.normalization,
            parity=key.parity,
            lower_bound=float(error_lower_bound(T, key.rank)),
            stored_at=_dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        )
        if current is not None:
            meta["replaces_relative_error"] = current[0].relative_error
        try:
            save_factors(self.path(key), fit, meta, target=T)
        except FactorFileError as exc:
            kind = FitStoreWriteError if isinstance(exc.__cause__, OSError) else FitStoreError
            raise kind(f"fit store: cannot store {key}: {exc}") from exc
        return True


def _get_or_skip(store: FitStore, key: FitKey) -> tuple[CPFit, dict[str, Any]] | None:
    """``store.get(key)``, or None with one warning (per file and process) for a damaged file."""
    try:
        return store.get(key)
    except FitStoreError as exc:
        path = str(store.path(key))
        if path not in _REPORTED:
            _REPORTED.add(path)
            warnings.warn(f"skipping a damaged fit: {exc}", RuntimeWarning, stacklevel=3)
        return None


def _stores(store: str | os.PathLike | FitStore | None) -> list[FitStore]:
    shipped = FitStore(SHIPPED)
    if store is None:
        return [shipped]
    own = store if isinstance(store, FitStore) else FitStore(store)
    if own.folder.resolve() == shipped.folder.resolve():
        return [own]
    return [own, shipped]


def available(
    store: str | os.PathLike | FitStore | None = None,
    *,
    L: int | None = None,
    normalization: str | None = None,
    parity: str | None = None,
) -> list[FitKey]:
    """The keys held by `store` and the shipped store, optionally filtered, sorted."""
    keys = {k for s in _stores(store) for k in s.keys()}
    return sorted(
        k
        for k in keys
        if (L is None or k.L == L)
        and (normalization is None or k.normalization == normalization)
        and (parity is None or k.parity == parity)
    )


def smallest_exact_rank(
    L: int,
    normalization: str = "unit",
    parity: str = "all",
    *,
    store: str | os.PathLike | FitStore | None = None,
) -> int | None:
    """The smallest rank whose stored fit of cg_tensor(L, normalization, parity) is exact
    (relative error <= EXACT_TOL, recomputed on read); None when no stored fit is exact.

    An upper bound on the CP rank found by search or construction, not the rank itself.
    """
    stores = _stores(store)
    for key in available(store, L=L, normalization=normalization, parity=parity):
        for s in stores:
            got = _get_or_skip(s, key)
            if got is not None and got[0].relative_error <= EXACT_TOL:
                return key.rank
    return None


def _padded(fit: CPFit, rank: int) -> CPFit:
    pad = rank - fit.rank
    A, B, C = (np.concatenate([F, np.zeros((F.shape[0], pad))], axis=1) for F in fit.factors)
    return CPFit(A, B, C, fit.relative_error, [], fit.seed, 0.0)


def _lookup(key: FitKey, stores: list[FitStore]) -> tuple[CPFit, dict[str, Any]] | None:
    """Best stored fit for `key`; an exact fit of a smaller rank counts, padded with zero columns."""
    best: tuple[CPFit, dict[str, Any]] | None = None
    for s in stores:
        got = s.get(key)
        if got is not None and (best is None or got[0].relative_error < best[0].relative_error):
            best = got
    if best is not None and best[0].relative_error <= EXACT_TOL:
        return best
    # the smallest exact fit of a smaller rank, padded with zero columns
    smaller = sorted(
        (k.rank, i, k)
        for i, s in enumerate(stores)
        for k in s.keys()
        if (k.normalization, k.parity, k.L) == (key.normalization, key.parity, key.L)
        and k.rank < key.rank
    )
    for _rank, i, k in smaller:
        got = _get_or_skip(stores[i], k)
        if got is not None and got[0].relative_error <= EXACT_TOL:
            if best is None or got[0].relative_error < max(best[0].relative_error, EXACT_TOL):
                meta = dict(got[1], padded_from_rank=k.rank, rank=key.rank)
                return _padded(got[0], key.rank), meta
            break
    return best


def _unavailable(key: FitKey, stores: list[FitStore]) -> FitStoreError:
    same = available(stores[0]) if stores else []
    if len(stores) > 1:
        same = sorted(set(same) | set(stores[1].keys()))
    near = [
        k
        for k in same
        if (k.normalization, k.parity, k.L) == (key.normalization, key.parity, key.L)
    ]
    if near:
        listing = f"ranks {[k.rank for k in near]} for {key.normalization}/{key.parity}/L={key.L}"
    else:
        combos = sorted({f"{k.normalization}/{k.parity}/L={k.L}" for k in same})
        listing = "tensors " + ", ".join(combos) if combos else "nothing"
    return FitStoreError(
        f"no stored fit for {key}; available: {listing} "
        "(or call tdn_theory.cp.best_fit(..., store=FOLDER) to fit and store it)"
    )


def best_known(
    L: int,
    rank: int,
    normalization: str = "unit",
    parity: str = "all",
    *,
    store: str | os.PathLike | FitStore | None = None,
) -> CPFit:
    """The best stored rank-`rank` CP of cg_tensor(L, normalization, parity); never fits.

    Looks in `store` (a folder, optional) and in the shipped store (SHIPPED); an exact fit of a
    smaller rank is returned padded with zero columns. The returned CPFit's relative_error has
    been recomputed from its factors. Raises FitStoreError listing what is available otherwise.

    Examples
    --------
    >>> fit = best_known(2, 30)          # the smallest exact CP found for L = 2
    >>> fit.rank, fit.relative_error < 1e-12
    (30, True)
    """
    key = FitKey(normalization, parity, L, rank)
    stores = _stores(store)
    got = _lookup(key, stores)
    if got is None:
        raise _unavailable(key, stores)
    return got[0]


def best_fit(
    L: int,
    rank: int,
    normalization: str = "unit",
    parity: str = "all",
    *,
    store: str | os.PathLike | FitStore | None = None,
    fit_missing: bool = True,
    seed: int = 0,
    restarts: int | None = None,
    time_budget: float | None = None,
    command: str | None = None,
) -> tuple[CPFit, dict[str, Any]]:
    """The best known rank-`rank` CP of cg_tensor(L, normalization, parity) and its provenance.

    Reads `store` and the shipped store (as best_known). When neither holds the key and
    `fit_missing` is true, fits it with fit_cp(seed, restarts, time_budget; defaults from
    RECIPES[L]) and, when `store` is given, offers the fit to it (kept if better than what it
    holds). Returns (fit, meta): meta is the provenance of the stored file, or of the new fit.
    """
    key = FitKey(normalization, parity, L, rank)
    stores = _stores(store)
    got = _lookup(key, stores)
    if got is not None:
        return got
    if not fit_missing:
        raise _unavailable(key, stores)
    recipe = dict(RECIPES.get(key.L, _DEFAULT_RECIPE))
    if restarts is not None:
        recipe["restarts"] = restarts
    if time_budget is not None:
        recipe["time_budget"] = time_budget
    T = _target(key)
    fit = fit_cp(T, key.rank, seed=seed, **recipe)
    meta = {
        "method": "fit_cp",
        "seed": seed,
        "restarts": recipe["restarts"],
        "time_budget_s": recipe["time_budget"],
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "command": command or "tdn_theory.cp.best_fit",
    }
    if store is not None:
        own = stores[0]
        try:
            own.offer(key, fit, meta)
        except FitStoreWriteError as exc:
            warnings.warn(f"{exc}; using the new fit without storing it", RuntimeWarning, 2)
        else:
            stored = own.get(key)
            if stored is not None:
                return stored
    meta.update(
        L=key.L,
        normalization=key.normalization,
        parity=key.parity,
        relative_error=fit.relative_error,
        rank=key.rank,
    )
    return fit, meta
