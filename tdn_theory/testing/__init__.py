"""Hypothesis strategies for users' and our own property tests (see :mod:`.strategies`)."""

from . import strategies

__all__ = ["strategies"]
