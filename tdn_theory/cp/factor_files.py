"""Factor files: a CP fit stored as .npz with arrays A, B, C and a JSON metadata entry.

Layout (numpy .npz, no pickles):

    A     float64 (d3, R)   output factor
    B     float64 (d1, R)   input-1 factor
    C     float64 (d2, R)   input-2 factor
    meta  0-d unicode array holding a JSON object, at least:
          format ("tdn_theory.cp/2"), rank, relative_error, seed, seconds, package_version,
          shape ([d3, d1, d2]) and content_sha256, plus what the writer supplied (the command
          line adds L, normalization, parity, lower_bound, ...).

Integrity (what loading verifies):

* ``content_sha256``: SHA-256 of the canonical JSON of the metadata (without this key) and of the
  shapes and float64 bytes of A, B, C. Any change of an array or a metadata field after writing,
  by any means other than :func:`save_factors`, is refused. (It detects damage and edits made
  without this package; it is not a signature.)
* The named tensor: a file whose meta has ``L``, ``normalization`` and ``parity`` names
  ``M = tdn_theory.so3.cg_tensor(L, normalization, parity)``; ``target_sha256`` is then
  :func:`target_id` of those parameters (a hash of the definition, which cannot change with
  floating-point rounding), and loading recomputes ``||M - A∘B∘C||_F / ||M||_F`` and compares it
  with the stored ``relative_error`` (tolerance ERROR_ATOL + ERROR_RTOL * stored). The re-check
  is on by default when it is cheap (d^3 R <= RECHECK_LIMIT; L = 6, R = 1610: 0.43 s on a loaded
  2-core machine, experiments/results/integrity.json).
* Files of the previous format ("tdn_theory.cp/1", no content hash, ``target_sha256`` a byte
  hash of M) are accepted only when they name their tensor and pass the numeric re-check (always
  run for them, whatever its cost); others are refused with a one-line message that says how to
  re-save them (:func:`upgrade_factor_file`).

Writes are atomic (temporary file in the same folder, then os.replace), refuse a destination
that exists and is not a regular file (symbolic link, FIFO, device, socket, folder), keep an
overwritten file's mode and otherwise respect the umask. Every failure raises FactorFileError
(a ValueError) with a one-line reason naming the file.
"""

from __future__ import annotations

import hashlib
import json
import math
import numbers
import os
from importlib import metadata as _metadata
from pathlib import Path
from typing import Any

import numpy as np

from ..so3 import MAX_L, NORMALIZATIONS, PARITIES, cg_tensor
from ..so3._files import NotRegularFileError, atomic_write
from .fit import CPFit

__all__ = [
    "FactorFileError",
    "save_factors",
    "load_factors",
    "upgrade_factor_file",
    "named_target",
    "target_id",
    "tensor_sha256",
    "content_sha256",
    "package_version",
]

FORMAT = "tdn_theory.cp/2"
#: The previous format: no content hash; target_sha256 was a (rounding-fragile) byte hash.
LEGACY_FORMAT = "tdn_theory.cp/1"
_REQUIRED_META = ("format", "rank", "relative_error", "shape")
#: Keys the writer always sets itself (a value passed in meta is replaced, not compared).
_WRITER_KEYS = ("format", "package_version", "content_sha256", "target_sha256")
#: The re-check of a stored error: |recomputed - stored| <= ERROR_ATOL + ERROR_RTOL * stored.
#: Honest files agree to 2e-16 (all 34 committed files); rounding of the reconstruction is
#: far below ERROR_ATOL for every size this package handles.
ERROR_ATOL = 1e-13
ERROR_RTOL = 1e-6
#: The re-check runs by default when d3 * d1 * d2 * R (multiply-adds) is at most this.
RECHECK_LIMIT = 2_000_000_000
_CHUNK = 256  # rank columns per chunk of the reconstruction (bounds its memory)


class FactorFileError(ValueError):
    """A factor file is missing, corrupt, altered, inconsistent or does not match what was expected."""


def package_version() -> str:
    """The installed version of tdn_theory (else tdn_theory.__version__, else "unknown")."""
    try:
        return _metadata.version("tdn_theory")
    except _metadata.PackageNotFoundError:
        import tdn_theory

        return str(getattr(tdn_theory, "__version__", "unknown"))


def tensor_sha256(T: np.ndarray) -> str:
    """SHA-256 of a tensor's shape and exact float64 C-order bytes (hex digest).

    Byte-exact: a 1-ulp difference changes it, and the CG tensor's last bits depend on the order
    of floating-point operations, so this does NOT identify a target across machines or versions
    (use :func:`target_id`); it is kept for comparing bit-identical arrays.
    """
    arr = np.ascontiguousarray(np.asarray(T, dtype=np.float64))
    h = hashlib.sha256()
    h.update(json.dumps(list(arr.shape)).encode())
    h.update(arr.tobytes())
    return h.hexdigest()


def target_id(L: int, normalization: str = "unit", parity: str = "all") -> str:
    """SHA-256 (hex) identifying ``cg_tensor(L, normalization, parity)`` by its definition.

    The hash of the canonical JSON ``{"L", "normalization", "parity", "shape": [d, d, d],
    "tensor": "tdn_theory.so3.cg_tensor"}``: it depends on the defining parameters only, never on
    rounding. Whether a file's factors really approximate that tensor is checked numerically
    (see :func:`load_factors`).
    """
    d = (int(L) + 1) ** 2
    spec = {
        "L": int(L),
        "normalization": str(normalization),
        "parity": str(parity),
        "shape": [d, d, d],
        "tensor": "tdn_theory.so3.cg_tensor",
    }
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()


def _canonical_meta(meta: dict[str, Any]) -> bytes:
    body = {k: v for k, v in meta.items() if k != "content_sha256"}
    return json.dumps(body, sort_keys=True, allow_nan=True).encode()


def content_sha256(meta: dict[str, Any], A: np.ndarray, B: np.ndarray, C: np.ndarray) -> str:
    """SHA-256 (hex) of the metadata (canonical JSON, without content_sha256) and of A, B, C
    (name, shape and little-endian float64 C-order bytes, in that order)."""
    h = hashlib.sha256()
    h.update(FORMAT.encode() + b"\n")
    h.update(_canonical_meta(meta) + b"\n")
    for name, F in (("A", A), ("B", B), ("C", C)):
        arr = np.ascontiguousarray(F, dtype="<f8")
        h.update(f"{name}{list(arr.shape)}\n".encode())
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


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def named_target(meta: dict[str, Any], where: str = "meta") -> tuple[int, str, str] | None:
    """``(L, normalization, parity)`` when ``meta`` names a CG tensor (all three keys present),
    else None. Present but invalid values raise FactorFileError (``where`` prefixes the message).
    """
    keys = ("L", "normalization", "parity")
    if not all(k in meta for k in keys):
        return None
    L, norm, parity = (meta[k] for k in keys)
    if not _is_int(L) or not 0 <= L <= MAX_L:
        raise FactorFileError(f"{where}: L must be an integer 0..{MAX_L}, got {L!r}")
    if norm not in NORMALIZATIONS:
        raise FactorFileError(
            f"{where}: normalization must be one of {list(NORMALIZATIONS)}, got {norm!r}"
        )
    if parity not in PARITIES:
        raise FactorFileError(f"{where}: parity must be one of {list(PARITIES)}, got {parity!r}")
    return int(L), str(norm), str(parity)


def _named_tensor(named: tuple[int, str, str], where: str) -> np.ndarray:
    T = cg_tensor(*named)
    if not np.any(T):
        raise FactorFileError(
            f"{where}: the named tensor cg_tensor{named} is zero; relative errors are undefined"
        )
    return T


def _relative_error(T: np.ndarray, A: np.ndarray, B: np.ndarray, C: np.ndarray) -> float:
    """||T - einsum("kr,ir,jr->kij", A, B, C)||_F / ||T||_F, built in rank chunks."""
    T_hat = np.zeros(T.shape)
    for start in range(0, A.shape[1], _CHUNK):
        cols = slice(start, start + _CHUNK)
        T_hat += np.einsum("kr,ir,jr->kij", A[:, cols], B[:, cols], C[:, cols], optimize=True)
    return float(np.linalg.norm(T - T_hat) / np.linalg.norm(T))


def _error_agrees(recomputed: float, stored: float) -> bool:
    return abs(recomputed - stored) <= ERROR_ATOL + ERROR_RTOL * abs(stored)


def _recheck_is_cheap(shape: list[int], rank: int) -> bool:
    return math.prod(shape) * rank <= RECHECK_LIMIT


def save_factors(
    path: str | os.PathLike,
    fit: CPFit,
    meta: dict[str, Any] | None = None,
    *,
    target: np.ndarray | None = None,
) -> Path:
    """Write `fit` to `path` (.npz with A, B, C, meta) atomically; return the path.

    `meta` entries are stored as given (JSON-serialisable values); rank, relative_error, seed,
    seconds and shape are filled in from `fit` (a conflicting value in `meta` raises
    FactorFileError); format, package_version, content_sha256 and target_sha256 are always set
    here (values passed in `meta`, e.g. from a loaded file, are replaced).

    Before writing, the stored error is checked so that the file will load: with `target`, the
    factors' error against it must equal fit.relative_error (ERROR_ATOL + ERROR_RTOL); when `meta`
    names a CG tensor (L, normalization, parity), target_sha256 = target_id(...) is stored and
    the error against cg_tensor(L, normalization, parity) must agree as well (skipped, like the
    load-time re-check, when d^3 R > RECHECK_LIMIT).
    """
    where = f"save_factors: {str(path)!r}"
    if isinstance(path, str) and path.endswith(("/", os.sep)):
        raise FactorFileError(f"{where} names a folder (trailing slash); give a file name")
    path = Path(path)
    A, B, C = (np.ascontiguousarray(F, dtype=np.float64) for F in (fit.A, fit.B, fit.C))
    if not (A.ndim == B.ndim == C.ndim == 2 and A.shape[1] == B.shape[1] == C.shape[1]):
        raise FactorFileError("save_factors: A, B, C must be 2-D with the same number of columns")
    if A.shape[1] < 1 or min(A.shape[0], B.shape[0], C.shape[0]) < 1:
        raise FactorFileError(
            f"save_factors: the factors are empty (rank {A.shape[1]}); nothing to save"
        )
    if not all(np.all(np.isfinite(F)) for F in (A, B, C)):
        raise FactorFileError("save_factors: A, B, C must be finite (no NaN or inf)")
    shape = [A.shape[0], B.shape[0], C.shape[0]]
    full: dict[str, Any] = {k: v for k, v in (meta or {}).items() if k not in _WRITER_KEYS}
    auto = {
        "rank": int(A.shape[1]),
        "relative_error": float(fit.relative_error),
        "seed": None if fit.seed is None else int(fit.seed),
        "seconds": float(fit.seconds),
        "shape": shape,
    }
    for key, value in auto.items():
        if key in full and key != "seconds" and full[key] != value:
            raise FactorFileError(
                f"save_factors: meta[{key!r}] = {full[key]!r} contradicts the fit ({value!r})"
            )
        full.setdefault(key, value)
    if not (math.isfinite(auto["relative_error"]) and auto["relative_error"] >= 0):
        raise FactorFileError(
            f"save_factors: fit.relative_error must be a finite number >= 0, "
            f"got {fit.relative_error!r}"
        )
    full["format"] = FORMAT
    full["package_version"] = package_version()
    named = named_target(full, "save_factors: meta")
    if named is not None:
        d = (named[0] + 1) ** 2
        if shape != [d, d, d]:
            raise FactorFileError(
                f"save_factors: meta names L = {named[0]} (d = {d}) but the factors give {shape}"
            )
        full["target_sha256"] = target_id(*named)
    references = []
    if target is not None:
        target = np.asarray(target, dtype=np.float64)
        if list(target.shape) != shape:
            raise FactorFileError(
                f"save_factors: target shape {list(target.shape)} does not match factors {shape}"
            )
        references.append(("the given target", target))
    if named is not None and _recheck_is_cheap(shape, A.shape[1]):
        references.append((f"cg_tensor{named}", _named_tensor(named, "save_factors")))
    for label, T in references:
        if not np.any(T):
            raise FactorFileError(f"save_factors: {label} is zero; relative errors are undefined")
        actual = _relative_error(T, A, B, C)
        if not _error_agrees(actual, auto["relative_error"]):
            raise FactorFileError(
                f"save_factors: fit.relative_error = {auto['relative_error']:.6e} but the factors "
                f"give {actual:.6e} against {label}; pass the fit of that tensor or fix its error"
            )
    try:
        text = json.dumps(full, default=_jsonable, sort_keys=True)
        stored_meta = json.loads(text)
    except (TypeError, ValueError) as exc:
        raise FactorFileError(f"save_factors: meta is not JSON serialisable ({exc})") from exc
    stored_meta["content_sha256"] = content_sha256(stored_meta, A, B, C)
    text = json.dumps(stored_meta, sort_keys=True)

    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise FactorFileError(
            f"save_factors: folder {str(folder)!r} does not exist; create it first"
        )

    def write(handle):
        np.savez(handle, A=A, B=B, C=C, meta=np.array(text))

    try:
        atomic_write(path, write)
    except NotRegularFileError as exc:
        raise FactorFileError(f"save_factors: {exc}") from exc
    except OSError as exc:
        reason = exc.strerror or exc
        raise FactorFileError(f"save_factors: cannot write {str(path)!r}: {reason}") from exc
    return path


def _read_npz_handle(handle, where: str) -> dict[str, np.ndarray]:
    try:
        data = np.load(handle, allow_pickle=False)
    except Exception as exc:
        raise FactorFileError(f"{where} is not a readable .npz file ({exc!s:.200})") from exc
    if not isinstance(data, np.lib.npyio.NpzFile):
        raise FactorFileError(
            f"{where} is a single {type(data).__name__} (.npy), not an .npz factor file "
            "written by save_factors"
        )
    try:
        with data:
            missing = {"A", "B", "C", "meta"} - set(data.files)
            if missing:
                raise FactorFileError(
                    f"{where} lacks the entries {sorted(missing)}; "
                    "not a factor file written by save_factors"
                )
            return {k: np.array(data[k]) for k in ("A", "B", "C", "meta")}
    except FactorFileError:
        raise
    except Exception as exc:  # damaged member (CRC), bad header, object array, ...
        raise FactorFileError(f"{where} is not a readable .npz file ({exc!s:.200})") from exc


def _read_npz(path: Path) -> tuple[dict[str, np.ndarray], str]:
    """The arrays A, B, C and the meta text of a factor file (FactorFileError otherwise).

    The file is opened here and closed on every path (np.load given a name leaks its handle when
    the zip directory is damaged).
    """
    where = f"load_factors: {str(path)!r}"
    try:
        with open(path, "rb") as handle:
            arrays = _read_npz_handle(handle, where)
    except FactorFileError:
        raise
    except Exception as exc:  # any failure to read is a corrupt file, never a traceback
        raise FactorFileError(f"{where} is not a readable .npz file ({exc!s:.200})") from exc
    meta_raw = arrays.pop("meta")
    if meta_raw.shape != () or meta_raw.dtype.kind != "U":
        raise FactorFileError(f"{where}: entry meta must be a JSON string")
    return arrays, str(meta_raw.item())


def _check_meta_types(meta: dict[str, Any], where: str) -> None:
    if not _is_int(meta["rank"]):
        raise FactorFileError(f"{where}: meta rank must be an integer, got {meta['rank']!r}")
    shape = meta["shape"]
    if not (isinstance(shape, list) and len(shape) == 3 and all(_is_int(n) for n in shape)):
        raise FactorFileError(f"{where}: meta shape must be a list of 3 integers, got {shape!r}")
    err = meta["relative_error"]
    if not (_is_number(err) and math.isfinite(err) and err >= 0):
        raise FactorFileError(
            f"{where}: meta relative_error must be a finite number >= 0, got {err!r}"
        )
    if "L" in meta and not (_is_int(meta["L"]) and meta["L"] >= 0):
        raise FactorFileError(f"{where}: meta L must be an integer >= 0, got {meta['L']!r}")
    if meta.get("seed") is not None and not _is_int(meta["seed"]):
        raise FactorFileError(
            f"{where}: meta seed must be an integer or null, got {meta['seed']!r}"
        )
    if "seconds" in meta and not _is_number(meta["seconds"]):
        raise FactorFileError(f"{where}: meta seconds must be a number, got {meta['seconds']!r}")


def _parse(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
    """Read and structurally check a factor file (either format); no hash or error check."""
    where = f"load_factors: {str(path)!r}"
    if not path.is_file():
        raise FactorFileError(f"load_factors: no such file {str(path)!r}")
    arrays, meta_text = _read_npz(path)
    try:
        meta = json.loads(meta_text)
    except json.JSONDecodeError as exc:
        raise FactorFileError(f"{where}: meta is not valid JSON ({exc})") from exc
    if not isinstance(meta, dict):
        raise FactorFileError(f"{where}: meta must be a JSON object")
    lacking = [k for k in _REQUIRED_META if k not in meta]
    if lacking:
        raise FactorFileError(f"{where}: meta lacks {lacking}")
    if meta["format"] not in (FORMAT, LEGACY_FORMAT):
        raise FactorFileError(f"{where}: unknown format {meta['format']!r} (expected {FORMAT!r})")
    _check_meta_types(meta, where)
    for name in ("A", "B", "C"):
        F = arrays[name]
        if F.ndim != 2 or F.dtype.kind != "f":
            raise FactorFileError(
                f"{where}: {name} must be a 2-D float array, got {F.dtype} {F.shape}"
            )
        if not np.all(np.isfinite(F)):
            raise FactorFileError(f"{where}: {name} has NaN or inf entries")
    A, B, C = (arrays[k] for k in ("A", "B", "C"))
    if not A.shape[1] == B.shape[1] == C.shape[1]:
        raise FactorFileError(
            f"{where}: A, B, C have different numbers of columns "
            f"({A.shape[1]}, {B.shape[1]}, {C.shape[1]})"
        )
    rank = A.shape[1]
    shape = [A.shape[0], B.shape[0], C.shape[0]]
    if rank < 1 or min(shape) < 1:
        raise FactorFileError(f"{where}: the factors are empty (shape {shape}, rank {rank})")
    if meta["rank"] != rank:
        raise FactorFileError(f"{where}: meta says rank {meta['rank']}, arrays have {rank} columns")
    if meta["shape"] != shape:
        raise FactorFileError(f"{where}: meta says shape {meta['shape']}, arrays give {shape}")
    if "L" in meta:
        d = (meta["L"] + 1) ** 2
        if shape != [d, d, d]:
            raise FactorFileError(
                f"{where}: L = {meta['L']} needs {d} rows per factor, arrays give {shape}"
            )
    return A.astype(np.float64), B.astype(np.float64), C.astype(np.float64), meta


def load_factors(
    path: str | os.PathLike,
    *,
    expect: dict[str, Any] | None = None,
    recheck: bool | None = None,
) -> tuple[CPFit, dict[str, Any]]:
    """Read and verify a factor file written by save_factors; return (CPFit, meta).

    Checks: the file is a readable .npz holding float arrays A, B, C (2-D, finite, same number
    >= 1 of columns) and a JSON object `meta` with well-typed fields whose rank and shape agree
    with the arrays and whose L (if present) gives rows (L+1)^2; content_sha256 matches the
    arrays and metadata; when meta names its tensor (L, normalization, parity), target_sha256
    equals target_id(...) and, if `recheck` (None: when d^3 R <= RECHECK_LIMIT; True: always,
    an error if no tensor is named; False: never), the stored relative_error is recomputed
    against cg_tensor(L, normalization, parity). Legacy files (format tdn_theory.cp/1) must name
    their tensor and are always re-checked; their meta is returned with target_sha256 replaced
    by target_id(...). Every key of `expect` must be present in meta with an equal value (floats
    compared to 1e-12 relative). Any failure raises FactorFileError with a one-line reason.
    """
    path = Path(path)
    where = f"load_factors: {str(path)!r}"
    A, B, C, meta = _parse(path)
    named = named_target(meta, where)
    legacy = meta["format"] == LEGACY_FORMAT
    if legacy:
        if named is None:
            raise FactorFileError(
                f"{where} was written by an older tdn_theory without a content hash and names no "
                "tensor (L, normalization, parity) to check it against; if you trust it, re-save "
                "it with tdn_theory.cp.factor_files.upgrade_factor_file(path, target=T)"
            )
        meta["target_sha256"] = target_id(*named)
    else:
        stored_hash = meta.get("content_sha256")
        if not isinstance(stored_hash, str):
            raise FactorFileError(f"{where}: meta lacks content_sha256 (a hex string)")
        if content_sha256(meta, A, B, C) != stored_hash:
            raise FactorFileError(
                f"{where}: content hash mismatch: the arrays or metadata were changed after "
                "writing (or the file is damaged); re-create it"
            )
        if named is not None and meta.get("target_sha256") != target_id(*named):
            raise FactorFileError(
                f"{where}: target_sha256 does not identify cg_tensor{named}; re-create the file"
            )
    if recheck and named is None:
        raise FactorFileError(
            f"{where}: cannot re-check the error: meta names no tensor (L, normalization, parity)"
        )
    rank = A.shape[1]
    if named is not None and (
        legacy or recheck or (recheck is None and _recheck_is_cheap(meta["shape"], rank))
    ):
        actual = _relative_error(_named_tensor(named, where), A, B, C)
        if not _error_agrees(actual, meta["relative_error"]):
            raise FactorFileError(
                f"{where}: stored relative_error {meta['relative_error']:.6e} but the factors give "
                f"{actual:.6e} against cg_tensor{named}; the file is wrong, do not use it"
            )
    for key, want in (expect or {}).items():
        if key not in meta:
            raise FactorFileError(f"{where}: meta lacks {key!r} (expected {want!r})")
        have = meta[key]
        same = (
            _is_number(have) and math.isclose(have, want, rel_tol=1e-12, abs_tol=0.0)
            if isinstance(want, float)
            else have == want
        )
        if not same:
            raise FactorFileError(f"{where}: meta[{key!r}] is {have!r}, expected {want!r}")
    fit = CPFit(
        A=A,
        B=B,
        C=C,
        relative_error=float(meta["relative_error"]),
        history=[],
        seed=meta.get("seed"),
        seconds=float(meta.get("seconds", 0.0)),
    )
    return fit, meta


def upgrade_factor_file(
    path: str | os.PathLike,
    *,
    target: np.ndarray | None = None,
    out: str | os.PathLike | None = None,
) -> Path:
    """Re-save a legacy (tdn_theory.cp/1) factor file in the current format; return the path.

    The arrays are kept bit-identical. The stored error is checked before anything is written:
    against cg_tensor(L, normalization, parity) when the file names it, and against `target`
    when given (required when the file names no tensor). Writes `out` (default: `path` itself,
    atomically replaced). A file already in the current format is verified and re-saved too.
    """
    path = Path(path)
    A, B, C, meta = _parse(path)
    where = f"upgrade_factor_file: {str(path)!r}"
    if named_target(meta, where) is None and target is None:
        raise FactorFileError(
            f"{where} names no tensor (L, normalization, parity); pass target=T to check it against"
        )
    if meta["format"] == FORMAT:
        load_factors(path)  # verify the hash before trusting the metadata
    fit = CPFit(
        A=A,
        B=B,
        C=C,
        relative_error=float(meta["relative_error"]),
        seed=meta.get("seed"),
        seconds=float(meta.get("seconds", 0.0)),
    )
    return save_factors(path if out is None else out, fit, meta, target=target)
