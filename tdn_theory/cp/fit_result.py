"""The CP fit data type returned by every fitting routine (fit_cp, levenberg_marquardt, compress_exact)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .tensor_ops import cp_to_tensor

__all__ = ["CPFit"]


@dataclass
class CPFit:
    """A CP approximation T ≈ einsum("kr,ir,jr->kij", A, B, C) with the weights folded in.

    A : (d3, R) output factor; B : (d1, R) input-1 factor; C : (d2, R) input-2 factor.
    relative_error : ||T - T_hat||_F / ||T||_F of the returned factors.
    history : one dict per ALS restart (init, seed, iterations, relative error, seconds) and
        one per polish (stage "polish", start, iterations, error before/after, reason).
    seed : the seed the fit was made with (None when the factors came from elsewhere).
    seconds : wall time of the whole fit.
    """

    A: np.ndarray
    B: np.ndarray
    C: np.ndarray
    relative_error: float
    history: list[dict[str, Any]] = field(default_factory=list)
    seed: int | None = None
    seconds: float = 0.0

    @property
    def rank(self) -> int:
        """The number of rank-one terms R (columns of A, B, C)."""
        return int(self.A.shape[1])

    @property
    def factors(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(A, B, C)."""
        return self.A, self.B, self.C

    def to_tensor(self) -> np.ndarray:
        """The approximation T_hat[k, i, j] = sum_r A[k, r] B[i, r] C[j, r], shape (d3, d1, d2)."""
        return cp_to_tensor(self.A, self.B, self.C)
