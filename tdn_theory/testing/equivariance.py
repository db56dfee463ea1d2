"""One equivariance checker for any callable: ``assert_equivariant`` (sampled and adversarial rotations).

Convention (proofs/conventions.md): a feature of degree <= L is a vector of length d = (L+1)^2 in the
last axis, rotated by the block Wigner matrix D(R) = ``tdn_theory.so3.block_wigner_D(L, R)`` as
x -> x D^T (i.e. D x per vector). A map f(x_1, ..., x_m) is equivariant when
f(x_1 D^T, ..., x_m D^T) = f(x_1, ..., x_m) D^T for every rotation R. The error of one sample is

    err(R, x) = || f(x D^T) - f(x) D^T ||_2 / max(|| f(x) ||_2, || f(x D^T) ||_2)    (per sample)

(0 when both outputs vanish). Arguments marked ``"vector"`` are 3-vectors rotated by R itself
(x -> x R^T); arguments marked ``"invariant"`` are passed unchanged.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.optimize import minimize
from scipy.spatial.transform import Rotation

from .._checks import check_int
from ..so3.layout import dim
from ..so3.rotations import check_rotation, random_rotations
from ..so3.wigner import block_wigner_D

__all__ = [
    "DEFAULT_RTOL",
    "EquivarianceResult",
    "apply_rotations",
    "assert_equivariant",
    "equivariance_defects",
    "unit_inputs",
]

#: Default relative tolerance of ``assert_equivariant`` by floating type name.
DEFAULT_RTOL = {"float64": 1e-10, "float32": 1e-4}

_KINDS = ("feature", "vector", "invariant")


@dataclass(frozen=True)
class EquivarianceResult:
    """What ``assert_equivariant`` found: the largest relative error, where, and the tolerance."""

    max_error: float
    rotation: np.ndarray
    tolerance: float
    n_evaluations: int
    adversarial_gain: float  # max_error / (largest error among the sampled rotations), >= 1


def unit_inputs(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Standard normal draws of ``shape`` normalised to unit length along the last axis."""
    x = rng.standard_normal(shape)
    x /= np.linalg.norm(x, axis=-1, keepdims=True)
    return x


def apply_rotations(M: np.ndarray, x: np.ndarray) -> np.ndarray:
    """x_n -> M_n x_n on the last axis: M (n, a, b), x (n, ..., b); returns (n, ..., a)."""
    return np.einsum("nab,n...b->n...a", M, x)


def _dtype_name(dtype: Any) -> str:
    if "torch" in str(dtype):
        return str(dtype).rsplit(".", 1)[-1]
    return np.dtype(dtype).name


def equivariance_defects(
    fn: Callable[..., Any],
    L: int,
    rotations: np.ndarray,
    inputs: Sequence[np.ndarray],
    *,
    kinds: Sequence[str] | None = None,
    dtype: Any = np.float64,
) -> tuple[np.ndarray, np.ndarray]:
    """Per-sample ``(|| f(x D^T) - f(x) D^T ||_2, || f(x) ||_2)`` for rotations (n, 3, 3).

    ``inputs[i]`` has shape (n, ..., d) (or (n, ..., 3) for a ``"vector"``); sample n is rotated
    by ``rotations[n]``. ``fn`` is called twice on the whole batch, with numpy arrays of ``dtype``
    or, for a torch dtype, torch tensors; it returns (n, ..., d). Norms are over all axes but the
    first, computed in float64.
    """
    kinds = tuple(kinds or ("feature",) * len(inputs))
    if len(kinds) != len(inputs) or any(k not in _KINDS for k in kinds):
        raise ValueError(f"kinds must give one of {_KINDS} per input; got {kinds!r}")
    if "torch" in str(dtype):
        return _torch_defects(fn, L, rotations, inputs, kinds, dtype)
    D = block_wigner_D(L, rotations)
    act = {"feature": D, "vector": np.asarray(rotations, dtype=np.float64)}
    pairs = zip(inputs, kinds, strict=True)
    moved = [x if k == "invariant" else apply_rotations(act[k], x) for x, k in pairs]

    def call(args):
        return np.asarray(fn(*(np.asarray(a, dtype=np.float64).astype(dtype) for a in args)))

    out = call(inputs).astype(np.float64)
    rotated = call(moved).astype(np.float64)
    n = len(rotations)
    defect = np.linalg.norm((rotated - apply_rotations(D, out)).reshape(n, -1), axis=1)
    return defect, np.linalg.norm(out.reshape(n, -1), axis=1)


def _torch_defects(fn, L, rotations, inputs, kinds, dtype):
    """equivariance_defects with torch tensors (rotations applied by batched torch matmul, float64)."""
    import torch

    def rotate(M: torch.Tensor, x: torch.Tensor) -> torch.Tensor:  # x_n -> x_n M_n^T, last axis
        n, k = x.shape[0], x.shape[-1]
        return (x.reshape(n, -1, k) @ M.transpose(1, 2)).reshape(x.shape[:-1] + (M.shape[1],))

    D = torch.from_numpy(block_wigner_D(L, rotations))
    act = {"feature": D, "vector": torch.from_numpy(np.asarray(rotations, dtype=np.float64))}
    xs = [torch.from_numpy(np.ascontiguousarray(x, dtype=np.float64)) for x in inputs]
    moved = [x if k == "invariant" else rotate(act[k], x) for x, k in zip(xs, kinds, strict=True)]
    with torch.no_grad():
        out = fn(*(x.to(dtype) for x in xs)).to(torch.float64)
        rotated = fn(*(x.to(dtype) for x in moved)).to(torch.float64)
        defect = (rotated - rotate(D, out)).flatten(1).norm(dim=1)
    return defect.numpy(), out.flatten(1).norm(dim=1).numpy()


def _relative(defect: np.ndarray, scale: np.ndarray) -> np.ndarray:
    return np.where(
        scale > 0, defect / np.where(scale > 0, scale, 1.0), np.where(defect > 0, np.inf, 0.0)
    )


def assert_equivariant(
    fn: Callable[..., Any],
    L: int,
    *,
    shapes: Sequence[tuple[int, ...]] = ((), ()),
    kinds: Sequence[str] | None = None,
    inputs: Sequence[np.ndarray] | None = None,
    rotations: np.ndarray | None = None,
    n_samples: int = 16,
    adversarial: bool = True,
    max_evaluations: int = 60,
    seed: int = 0,
    dtype: Any = np.float64,
    rtol: float | None = None,
) -> EquivarianceResult:
    """Check f(x_1 D^T, ...) = f(x_1, ...) D^T; raise ``AssertionError`` (one line) if it fails.

    ``fn`` takes one argument per entry of ``shapes``: argument i has shape ``shapes[i] + (d,)``
    (``(..., d)`` or ``(..., C, d)``; ``(..., 3)`` for a ``"vector"``; d = (L+1)^2) plus a leading
    sample axis, and ``fn`` must return (n, ..., d). ``inputs`` replaces the drawn ones (each of
    shape (n_samples, ...); an ``"invariant"`` argument such as per-sample weights needs it).
    Drawn inputs are unit-norm Gaussian vectors from ``np.random.default_rng(seed)``, after
    ``n_samples`` Haar rotations from the same generator (``tdn_theory.so3.random_rotations``);
    ``rotations`` (n, 3, 3) replaces them (e.g. a Hypothesis draw repeated over the samples).
    With ``adversarial`` a Nelder-Mead search over rotation vectors (at most ``max_evaluations``
    single-sample calls) starts from the worst sampled rotation on its inputs. ``rtol`` defaults
    to ``DEFAULT_RTOL`` for the dtype (1e-10 float64, 1e-4 float32). Returns an
    ``EquivarianceResult`` when the largest relative error (module docstring) is <= ``rtol``.
    """
    n_samples = check_int(n_samples, "n_samples", minimum=1)
    L = check_int(L, "L", minimum=0)
    name = _dtype_name(dtype)
    if rtol is None:
        if name not in DEFAULT_RTOL:
            raise ValueError(f"no default tolerance for dtype {dtype}; pass rtol")
        rtol = DEFAULT_RTOL[name]
    kinds = tuple(kinds or ("feature",) * (len(inputs) if inputs is not None else len(shapes)))
    if any(k not in _KINDS for k in kinds):
        raise ValueError(f"kinds must give one of {_KINDS} per argument; got {kinds!r}")
    rng = np.random.default_rng(seed)
    if rotations is None:
        Rs = random_rotations(n_samples, rng)
    else:
        Rs = check_rotation(np.asarray(rotations, dtype=np.float64), "rotations")
        if Rs.ndim != 3:
            raise ValueError(f"rotations must have shape (n, 3, 3); got {Rs.shape}")
        n_samples = len(Rs)
    if inputs is None:
        if len(kinds) != len(shapes):
            raise ValueError(f"kinds has {len(kinds)} entries for {len(shapes)} shapes")
        if "invariant" in kinds:
            raise ValueError("an 'invariant' argument needs explicit inputs=")
        last = {"feature": dim(L), "vector": 3}
        inputs = [
            unit_inputs(rng, (n_samples, *s, last[k])) for s, k in zip(shapes, kinds, strict=True)
        ]
    inputs = [np.asarray(x, dtype=np.float64) for x in inputs]
    defect, scale = equivariance_defects(fn, L, Rs, inputs, kinds=kinds, dtype=dtype)
    errors = _relative(defect, scale)
    worst = int(np.argmax(errors))
    best_error, best_R = float(errors[worst]), Rs[worst]
    sampled = best_error
    evaluations = 2
    if adversarial and np.isfinite(best_error):
        one = [x[worst : worst + 1] for x in inputs]

        def negative_error(rotvec: np.ndarray) -> float:
            nonlocal evaluations
            evaluations += 2
            R = Rotation.from_rotvec(rotvec).as_matrix()[None]
            d, s = equivariance_defects(fn, L, R, one, kinds=kinds, dtype=dtype)
            return -float(_relative(d, s)[0])

        start = Rotation.from_matrix(best_R).as_rotvec()
        res = minimize(
            negative_error, start, method="Nelder-Mead", options={"maxfev": int(max_evaluations)}
        )
        if -res.fun > best_error:
            best_error, best_R = float(-res.fun), Rotation.from_rotvec(res.x).as_matrix()
    gain = best_error / sampled if sampled > 0 else 1.0
    result = EquivarianceResult(best_error, np.asarray(best_R), float(rtol), evaluations, gain)
    if not best_error <= rtol:
        rotvec = np.round(Rotation.from_matrix(best_R).as_rotvec(), 4).tolist()
        raise AssertionError(
            f"not equivariant: relative error {best_error:.3e} > rtol {rtol:.1e} "
            f"at rotation vector {rotvec} (L={L}, {name})"
        )
    return result
