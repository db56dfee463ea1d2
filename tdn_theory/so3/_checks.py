"""Argument checks shared by the so3 layer: one-line ValueErrors that name the argument."""

from __future__ import annotations

import numbers
from collections.abc import Iterable


def check_degree(value: object, name: str = "L", *, maximum: int | None = None) -> int:
    """Return ``value`` as an int if it is a non-negative integer (bool excluded), else raise."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(
            f"{name} must be a non-negative integer (0, 1, 2, ...); got {value!r} "
            f"of type {type(value).__name__}"
        )
    value = int(value)
    if value < 0:
        raise ValueError(f"{name} must be a non-negative integer (0, 1, 2, ...); got {value}")
    if maximum is not None and value > maximum:
        raise ValueError(f"{name} must be at most {maximum}; got {value}")
    return value


def check_choice(value: object, name: str, accepted: Iterable[str]) -> str:
    """Return ``value`` if it is one of ``accepted``, else raise a ValueError listing them."""
    accepted = tuple(accepted)
    if not isinstance(value, str) or value not in accepted:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, accepted))}; got {value!r}")
    return value
