"""Factor files: a CP fit stored as .npz with arrays A, B, C and a JSON metadata entry.

Layout (numpy .npz, no pickles):

    A     float64 (d3, R)   output factor
    B     float64 (d1, R)   input-1 factor
    C     float64 (d2, R)   input-2 factor
    meta  0-d unicode array holding a JSON object, at least:
          format ("tdn_theory.cp/1"), rank, relative_error, seed, package_version,
          shape ([d3, d1, d2]), and what the writer supplied (the command line adds
          L, normalization, parity, target_sha256, lower_bound, ...).

Writes are atomic (temporary file in the same folder, then os.replace). Loading checks the
arrays against each other and against the metadata, and optionally against `expect`.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import zipfile
from importlib import metadata as _metadata
from pathlib import Path
from typing import Any

import numpy as np

from .fit import CPFit

__all__ = ["FactorFileError", "save_factors", "load_factors", "tensor_sha256", "package_version"]

FORMAT = "tdn_theory.cp/1"
_REQUIRED_META = ("format", "rank", "relative_error", "shape")


class FactorFileError(ValueError):
    """A factor file is missing, corrupt, inconsistent or does not match what was expected."""


def package_version() -> str:
    """The installed version of tdn_theory (else tdn_theory.__version__, else "unknown")."""
    try:
        return _metadata.version("tdn_theory")
    except _metadata.PackageNotFoundError:
        import tdn_theory

        return str(getattr(tdn_theory, "__version__", "unknown"))


def tensor_sha256(T: np.ndarray) -> str:
    """SHA-256 of a tensor: its shape and its float64 C-order bytes (hex digest)."""
    arr = np.ascontiguousarray(np.asarray(T, dtype=np.float64))
    h = hashlib.sha256()
    h.update(json.dumps(list(arr.shape)).encode())
    h.update(arr.tobytes())
    return h.hexdigest()


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def save_factors(
    path: str | os.PathLike,
    fit: CPFit,
    meta: dict[str, Any] | None = None,
    *,
    target: np.ndarray | None = None,
) -> Path:
    """Write `fit` to `path` (.npz with A, B, C, meta) atomically; return the path.

    `meta` entries are stored as given (JSON-serialisable values); rank, relative_error,
    seed, seconds, shape, format and package_version are filled in from `fit` (a conflicting
    value in `meta` raises FactorFileError). With `target`, its SHA-256 and shape are stored
    too (target_sha256) and its shape must match the factors.
    """
    path = Path(path)
    A, B, C = (np.ascontiguousarray(F, dtype=np.float64) for F in (fit.A, fit.B, fit.C))
    if not (A.ndim == B.ndim == C.ndim == 2 and A.shape[1] == B.shape[1] == C.shape[1]):
        raise FactorFileError("save_factors: A, B, C must be 2-D with the same number of columns")
    shape = [A.shape[0], B.shape[0], C.shape[0]]
    full: dict[str, Any] = dict(meta or {})
    auto = {
        "format": FORMAT,
        "rank": int(A.shape[1]),
        "relative_error": float(fit.relative_error),
        "seed": None if fit.seed is None else int(fit.seed),
        "seconds": float(fit.seconds),
        "shape": shape,
        "package_version": package_version(),
    }
    for key, value in auto.items():
        if key in full and key not in ("package_version", "seconds") and full[key] != value:
            raise FactorFileError(
                f"save_factors: meta[{key!r}] = {full[key]!r} contradicts the fit ({value!r})"
            )
        full.setdefault(key, value)
    if target is not None:
        target = np.asarray(target, dtype=np.float64)
        if list(target.shape) != shape:
            raise FactorFileError(
                f"save_factors: target shape {list(target.shape)} does not match factors {shape}"
            )
        full["target_sha256"] = tensor_sha256(target)
    try:
        text = json.dumps(full, default=_jsonable, sort_keys=True)
    except (TypeError, ValueError) as exc:
        raise FactorFileError(f"save_factors: meta is not JSON serialisable ({exc})") from exc

    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise FactorFileError(
            f"save_factors: folder {str(folder)!r} does not exist; create it first"
        )
    tmp_name = None
    try:
        with tempfile.NamedTemporaryFile(
            dir=folder, prefix=f".{path.name}.", suffix=".tmp", delete=False
        ) as handle:
            tmp_name = handle.name
            np.savez(handle, A=A, B=B, C=C, meta=np.array(text))
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, path)
        tmp_name = None
    except OSError as exc:
        reason = exc.strerror or exc
        raise FactorFileError(f"save_factors: cannot write {str(path)!r}: {reason}") from exc
    finally:
        if tmp_name is not None and os.path.exists(tmp_name):
            os.unlink(tmp_name)
    return path


def load_factors(
    path: str | os.PathLike, *, expect: dict[str, Any] | None = None
) -> tuple[CPFit, dict[str, Any]]:
    """Read a factor file written by save_factors; return (CPFit, meta).

    Checks: the file is a readable .npz holding exactly-named float arrays A, B, C (2-D, finite,
    same number of columns) and a JSON object `meta` whose rank and shape agree with the
    arrays, and whose L (if present) gives rows (L+1)^2. Every key of `expect` must be present
    in meta with an equal value (floats compared to 1e-12 relative). Any failure raises
    FactorFileError with a one-line reason.
    """
    path = Path(path)
    if not path.is_file():
        raise FactorFileError(f"load_factors: no such file {str(path)!r}")
    try:
        with np.load(path, allow_pickle=False) as data:
            names = set(data.files)
            missing = {"A", "B", "C", "meta"} - names
            if missing:
                raise FactorFileError(
                    f"load_factors: {str(path)!r} lacks the entries {sorted(missing)}; "
                    "not a factor file written by save_factors"
                )
            A, B, C = (np.array(data[k]) for k in ("A", "B", "C"))
            meta_raw = data["meta"]
            meta_text = str(meta_raw.item()) if meta_raw.shape == () else None
    except FactorFileError:
        raise
    except (OSError, ValueError, zipfile.BadZipFile, EOFError, KeyError) as exc:
        raise FactorFileError(
            f"load_factors: {str(path)!r} is not a readable .npz file ({exc})"
        ) from exc
    if meta_text is None:
        raise FactorFileError(f"load_factors: {str(path)!r}: entry meta must be a JSON string")
    try:
        meta = json.loads(meta_text)
    except json.JSONDecodeError as exc:
        raise FactorFileError(
            f"load_factors: {str(path)!r}: meta is not valid JSON ({exc})"
        ) from exc
    if not isinstance(meta, dict):
        raise FactorFileError(f"load_factors: {str(path)!r}: meta must be a JSON object")
    lacking = [k for k in _REQUIRED_META if k not in meta]
    if lacking:
        raise FactorFileError(f"load_factors: {str(path)!r}: meta lacks {lacking}")
    if meta["format"] != FORMAT:
        raise FactorFileError(
            f"load_factors: {str(path)!r}: unknown format {meta['format']!r} (expected {FORMAT!r})"
        )
    for name, F in (("A", A), ("B", B), ("C", C)):
        if F.ndim != 2 or F.dtype.kind != "f":
            raise FactorFileError(
                f"load_factors: {str(path)!r}: {name} must be a 2-D float array, "
                f"got {F.dtype} {F.shape}"
            )
        if not np.all(np.isfinite(F)):
            raise FactorFileError(f"load_factors: {str(path)!r}: {name} has NaN or inf entries")
    if not A.shape[1] == B.shape[1] == C.shape[1]:
        raise FactorFileError(
            f"load_factors: {str(path)!r}: A, B, C have different numbers of columns "
            f"({A.shape[1]}, {B.shape[1]}, {C.shape[1]})"
        )
    rank = A.shape[1]
    shape = [A.shape[0], B.shape[0], C.shape[0]]
    if meta["rank"] != rank:
        raise FactorFileError(
            f"load_factors: {str(path)!r}: meta says rank {meta['rank']}, "
            f"arrays have {rank} columns"
        )
    if list(meta["shape"]) != shape:
        raise FactorFileError(
            f"load_factors: {str(path)!r}: meta says shape {meta['shape']}, arrays give {shape}"
        )
    if "L" in meta:
        d = (int(meta["L"]) + 1) ** 2
        if shape != [d, d, d]:
            raise FactorFileError(
                f"load_factors: {str(path)!r}: L = {meta['L']} needs {d} rows per factor, "
                f"arrays give {shape}"
            )
    for key, want in (expect or {}).items():
        if key not in meta:
            raise FactorFileError(
                f"load_factors: {str(path)!r}: meta lacks {key!r} (expected {want!r})"
            )
        have = meta[key]
        same = (
            np.isclose(have, want, rtol=1e-12, atol=0.0)
            if isinstance(want, float) and isinstance(have, (int, float))
            else have == want
        )
        if not same:
            raise FactorFileError(
                f"load_factors: {str(path)!r}: meta[{key!r}] is {have!r}, expected {want!r}"
            )
    fit = CPFit(
        A=A.astype(np.float64),
        B=B.astype(np.float64),
        C=C.astype(np.float64),
        relative_error=float(meta["relative_error"]),
        history=[],
        seed=meta.get("seed"),
        seconds=float(meta.get("seconds", 0.0)),
    )
    return fit, meta
