"""Potential checkpoints: a trained :class:`TDNPotential` saved to and verified from one file.

A checkpoint is a ``torch.save`` archive readable with ``torch.load(weights_only=True)`` (no pickled
code is executed on load) holding a dictionary:

- ``"format"``: :data:`FORMAT`;
- ``"model"``: the constructor settings (species as atomic numbers, L, channels, layers, cutoff,
  backend, normalization, parity, seed, n_basis, radial_hidden, readout_hidden, avg_neighbors,
  dtype, dipole (the dipole head; absent in older files: no head), for backend "cp" the rank, and
  ``edge_input`` when it is not "shared");
- ``"state"``: the ``state_dict`` (every weight, and the tensor-product buffers: for "cp" the
  factors A, B, C themselves, so a checkpoint does not depend on a factor file or a fit cache);
- ``"info"``: JSON-compatible provenance (training settings, data, metrics), free-form;
- ``"tensor_relative_error"`` (backend "cp"): ``||M_hat - M||_F / ||M||_F`` of the stored factors
  against ``cg_tensor(L, normalization, parity)``, recomputed from the factors when saving;
- ``"sha256"``: SHA-256 over the settings, the info, the recorded error and every state tensor
  (name, dtype, shape, bytes).

:func:`load_potential` verifies the format, the hash and the state's names and shapes, and refuses a
file for another model (``expect={"L": 2, "backend": "cp", ...}``), each time with a one-line
:class:`CheckpointError` naming the file. The hash alone only detects damage, so the content is also
checked against what its label says: every weight and setting is finite; an exact backend ("dense",
"e3nn", "sphere") must hold the tensor the package builds for its settings (``cg_tensor`` or
``sphere_cp``, to rounding in its dtype); CP factors are re-checked against ``cg_tensor`` and must
give the recorded error (1e-13 + 1e-6 relative, as ``load_factors`` does; a file without the record,
written before it existed, gets the recomputed error). Writes are atomic and never replace a
non-regular file.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tdn_theory.models.potential import TDNPotential
from tdn_theory.nn import CPTensorProduct
from tdn_theory.so3._files import NotRegularFileError, atomic_write

__all__ = ["FORMAT", "CheckpointError", "load_potential", "model_settings", "save_potential"]

FORMAT = "tdn_theory.potential/1"
_DTYPES = {"float32": torch.float32, "float64": torch.float64}


class CheckpointError(ValueError):
    """A checkpoint that is missing, damaged, altered, or written for another model."""


def model_settings(model: TDNPotential) -> dict[str, Any]:
    """The constructor settings that rebuild ``model`` (JSON-compatible)."""
    settings = {
        "species": list(model.species),
        "L": model.L,
        "channels": model.channels,
        "layers": model.n_layers,
        "cutoff": model.cutoff,
        "backend": model.backend,
        "normalization": model.normalization,
        "parity": model.parity,
        "seed": model.seed,
        "n_basis": model.n_basis,
        "radial_hidden": int(model.interactions[0].radial_1.shape[1]),
        "readout_hidden": int(model.readout_1.shape[1]),
        "avg_neighbors": model.avg_neighbors,
        "dtype": str(model.dtype).removeprefix("torch."),
        "dipole": model.has_dipole,
    }
    if model.edge_input != "shared":  # absent from files of the shared form (and older ones)
        settings["edge_input"] = model.edge_input
    if model.backend == "cp":
        settings["rank"] = int(model.tp.A.shape[1])
    return settings


def _digest(
    settings: dict, info: dict, state: dict[str, torch.Tensor], error: float | None = None
) -> str:
    h = hashlib.sha256()
    head = {"model": settings, "info": info}
    if error is not None:
        head["tensor_relative_error"] = error
    h.update(json.dumps(head, sort_keys=True).encode())
    for name in sorted(state):
        tensor = state[name].detach().cpu().contiguous()
        h.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        h.update(tensor.numpy().tobytes() if tensor.numel() else b"")
    return h.hexdigest()


def save_potential(path: str | os.PathLike, model: TDNPotential, info: dict | None = None) -> Path:
    """Write ``model`` (and JSON-compatible ``info``) to ``path`` atomically; returns the path.

    Raises CheckpointError when ``path`` exists and is not a regular file or cannot be written.
    """
    info = json.loads(json.dumps(info or {}))  # JSON-compatible, and a copy
    settings = model_settings(model)
    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    payload = {"format": FORMAT, "model": settings, "info": info, "state": state}
    error = None
    if settings["backend"] == "cp":
        error = _cp_error(settings, state)
        payload["tensor_relative_error"] = error
    payload["sha256"] = _digest(settings, info, state, error)
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    try:
        return atomic_write(path, lambda handle: handle.write(buffer.getvalue()))
    except NotRegularFileError as exc:
        raise CheckpointError(str(exc)) from None
    except OSError as exc:
        raise CheckpointError(
            f"cannot write checkpoint {os.fspath(path)!r}: {exc.strerror or exc}"
        ) from None


def load_potential(
    path: str | os.PathLike, *, expect: dict[str, Any] | None = None
) -> tuple[TDNPotential, dict]:
    """The verified model stored in ``path`` and its ``info``; see the module docstring.

    ``expect`` maps setting names (those of :func:`model_settings`) to required values.
    """
    name = os.fspath(path)
    if os.path.isdir(name):
        raise CheckpointError(f"{name} is a folder; give the checkpoint file (e.g. model.pt)")
    if os.path.exists(name) and not os.path.isfile(name):
        raise CheckpointError(f"{name} is not a regular file (a FIFO or device?); give the file")
    if not os.path.isfile(name):
        raise CheckpointError(f"{name}: no such checkpoint file")
    try:
        payload = torch.load(name, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for damaged archives
        raise CheckpointError(
            f"{name}: not a readable tdn_theory potential checkpoint ({exc.__class__.__name__})"
        ) from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        found = payload.get("format") if isinstance(payload, dict) else type(payload).__name__
        raise CheckpointError(f"{name}: not a {FORMAT} checkpoint (format {found!r})")
    settings, info, state = payload.get("model"), payload.get("info"), payload.get("state")
    if not isinstance(settings, dict) or not isinstance(info, dict) or not isinstance(state, dict):
        raise CheckpointError(f"{name}: checkpoint lacks its model settings, info or state")
    if not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{name}: checkpoint state holds non-tensor entries")
    error = payload.get("tensor_relative_error")
    if error is not None and not _is_real(error):
        raise CheckpointError(f"{name}: its recorded tensor error {error!r} is not a number")
    if payload.get("sha256") != _digest(settings, info, state, error):
        raise CheckpointError(
            f"{name}: content does not match its SHA-256; the file was altered or damaged"
        )
    bad = [k for k, v in state.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise CheckpointError(f"{name}: non-finite values (NaN or inf) in {bad[0]}; not usable")
    bad = [k for k, v in settings.items() if isinstance(v, float) and not math.isfinite(v)]
    if bad:
        raise CheckpointError(f"{name}: setting {bad[0]} = {settings[bad[0]]!r} is not finite")
    for key, value in (expect or {}).items():
        if settings.get(key) != value:
            raise CheckpointError(
                f"{name}: checkpoint is for {key} = {settings.get(key)!r}, expected {value!r}"
            )
    try:
        model = _build(settings, state)
        built = {k: v.detach().clone() for k, v in model.state_dict().items()}
        model.load_state_dict(state, strict=True)
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
        text = " ".join(lines) if lines else exc.__class__.__name__
        raise CheckpointError(
            f"{name}: checkpoint does not fit its model settings ({text})"
        ) from None
    _check_tensor(name, model, settings, state, built, error)
    return model, info


def _is_real(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _cp_error(settings: dict, state: dict[str, torch.Tensor]) -> float:
    """Relative error of the stored factors against the CG tensor the settings name (float64)."""
    from tdn_theory.cp.tensor_ops import cp_to_tensor
    from tdn_theory.so3 import cg_tensor

    T = cg_tensor(settings["L"], settings["normalization"], settings["parity"])
    A, B, C = (state[f"tp.{k}"].detach().cpu().double().numpy() for k in "ABC")
    return float(np.linalg.norm(cp_to_tensor(A, B, C) - T) / np.linalg.norm(T))


def _check_tensor(name, model, settings, state, built, recorded) -> None:
    """The tensor product holds what the settings say (module docstring); CheckpointError if not."""
    if settings["backend"] == "cp":
        error = _cp_error(settings, state)
        if recorded is not None and abs(error - recorded) > 1e-13 + 1e-6 * recorded:
            raise CheckpointError(
                f"{name}: its CP factors give relative error {error:.6g} against the CG tensor, "
                f"but the file records {recorded:.6g}; the factors were altered"
            )
        model.tp.meta = dict(model.tp.meta, relative_error=error)
        return
    # exact backends: every buffer of the tensor product is rebuilt from the settings
    eps = torch.finfo(_DTYPES[settings["dtype"]]).eps
    for key, fresh in built.items():
        if not key.startswith("tp.") or not fresh.is_floating_point():
            continue
        stored = state[key].to(fresh.dtype)
        if not fresh.numel():
            continue
        tol = 64 * eps * max(1.0, float(fresh.abs().max()))
        if stored.shape != fresh.shape or float((stored - fresh).abs().max()) > tol:
            raise CheckpointError(
                f"{name}: its {key} is not the exact {settings['backend']!r} tensor for "
                f"L = {settings['L']}, {settings['normalization']}/{settings['parity']}; "
                "the file was altered"
            )


def _build(settings: dict, state: dict[str, torch.Tensor]) -> TDNPotential:
    kwargs = dict(settings)
    dtype = _DTYPES[kwargs.pop("dtype")]
    rank = kwargs.pop("rank", None)
    backend = kwargs.pop("backend")
    if backend != "cp":
        return TDNPotential(**kwargs, backend=backend, dtype=dtype)
    # the factors live in the state: build with the dense product, then put the CP layer in place
    model = TDNPotential(**kwargs, backend="dense", dtype=dtype)
    A, B, C = (np.asarray(state[f"tp.{k}"], dtype=np.float64) for k in "ABC")
    if A.shape[1] != rank:
        raise ValueError(f"factor A has rank {A.shape[1]}, settings say {rank}")
    model.tp = CPTensorProduct(A, B, C, dtype=dtype, meta={"L": model.L, "rank": rank})
    model.backend = "cp"
    model.backend_options = {"rank": rank, "factors": None}
    return model
