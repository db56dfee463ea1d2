"""Argument checks shared by every layer: one-line ValueErrors that name the argument.

This module imports nothing from the package, so every layer (``so3`` included) may use it.
One rule for integers everywhere: a value is accepted if it is a Python or NumPy integer
(``numbers.Integral``); ``bool`` and floats are refused even when integral (``8.0``, ``True``),
with the message ``"[who: ]name must be an integer >= minimum; got value (type)"``.
"""

from __future__ import annotations

import numbers
from collections.abc import Iterable

__all__ = ["MAX_SEED", "check_choice", "check_degree", "check_int", "check_seed"]

#: Largest seed accepted everywhere: what every generator in use takes (scipy's ``random_state``
#: and NumPy's legacy seeding stop at 2**32 - 1).
MAX_SEED = 2**32 - 1


def check_int(
    value: object,
    name: str,
    *,
    minimum: int = 0,
    maximum: int | None = None,
    who: str | None = None,
) -> int:
    """Return ``value`` as an ``int`` if it is an integer in ``[minimum, maximum]``, else raise.

    ``who`` (e.g. ``"fit_cp"``) prefixes the message with the function that was called.
    """
    prefix = f"{who}: " if who else ""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(
            f"{prefix}{name} must be an integer >= {minimum}; got {value!r} "
            f"({type(value).__name__}: pass an int)"
        )
    value = int(value)
    if value < minimum:
        raise ValueError(f"{prefix}{name} must be an integer >= {minimum}; got {value}")
    if maximum is not None and value > maximum:
        raise ValueError(f"{prefix}{name} must be an integer <= {maximum}; got {value}")
    return value


def check_degree(
    value: object, name: str = "L", *, maximum: int | None = None, who: str | None = None
) -> int:
    """A degree: :func:`check_int` with ``minimum=0``."""
    return check_int(value, name, minimum=0, maximum=maximum, who=who)


def check_seed(value: object, name: str = "seed", *, who: str | None = None) -> int:
    """A seed: :func:`check_int` in ``[0, MAX_SEED]``."""
    return check_int(value, name, minimum=0, maximum=MAX_SEED, who=who)


def check_choice(value: object, name: str, accepted: Iterable[str]) -> str:
    """Return ``value`` if it is one of ``accepted``, else raise a ValueError listing them."""
    accepted = tuple(accepted)
    if not isinstance(value, str) or value not in accepted:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, accepted))}; got {value!r}")
    return value
