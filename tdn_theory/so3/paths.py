"""Admissible coupling paths ``(l1, l2, l3)`` of the truncated CG tensor product.

A path is admissible when ``|l1 - l2| <= l3 <= l1 + l2`` and all three degrees are ``<= L``
(the output is truncated at ``L``, as in the TDN paper). Its parity is that of ``l1 + l2 + l3``:
"even" paths survive in the Gaunt tensor (products of spherical harmonics), "odd" paths are the
antisymmetric couplings such as the cross product ``1 x 1 -> 1``.
"""

from __future__ import annotations

from tdn_theory._checks import check_choice, check_degree

PARITIES = ("all", "even", "odd")


def path_parity_ok(l1: int, l2: int, l3: int, parity: str) -> bool:
    """Whether the path passes the parity filter ("all", "even" or "odd" ``l1 + l2 + l3``)."""
    if parity == "all":
        return True
    even = (l1 + l2 + l3) % 2 == 0
    return even if parity == "even" else not even


def paths(L: int, parity: str = "all") -> list[tuple[int, int, int]]:
    """All admissible ``(l1, l2, l3)`` with degrees ``<= L``, in lexicographic order.

    For L = 1..6 there are 5, 15, 34, 65, 111, 175 paths (parity "all").
    """
    L = check_degree(L)
    check_choice(parity, "parity", PARITIES)
    return [
        (l1, l2, l3)
        for l1 in range(L + 1)
        for l2 in range(L + 1)
        for l3 in range(abs(l1 - l2), min(l1 + l2, L) + 1)
        if path_parity_ok(l1, l2, l3, parity)
    ]
