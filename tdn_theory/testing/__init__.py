"""Hypothesis strategies for users' and our own property tests (see :mod:`.strategies`)."""

from . import strategies
from .equivariance import EquivarianceResult, assert_equivariant

__all__ = ["EquivarianceResult", "assert_equivariant", "strategies"]
