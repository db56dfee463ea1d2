"""Real-basis Clebsch–Gordan blocks from sympy's exact complex coefficients.

For a path ``(l1, l2, l3)`` the complex CG coefficients ``C[m1, m2, m3] = <l1 m1 l2 m2 | l3 m3>``
(Condon–Shortley phase; from sympy's exact 3j symbols ``sympy.physics.wigner.wigner_3j``) define the bilinear map
``z[m3] = sum_{m1, m2} C[m1, m2, m3] x[m1] y[m2]`` in the complex basis. In the real basis
(``x_real = Q_l1 x``, see :mod:`tdn_theory.so3.real_basis`) the same map has the block

    ``C_real[a, b, c] = sum_{m1, m2, m3} conj(Q_l1[a, m1]) conj(Q_l2[b, m2]) Q_l3[c, m3] C[m1, m2, m3]``

with index order ``[m1, m2, m3]`` (input 1, input 2, output). It is real: its imaginary part is
exactly zero (checked symbolically with ``exact=True``), and it equals
``sqrt(2 l3 + 1) * e3nn.o3.wigner_3j(l1, l2, l3)`` entry by entry, sign included.
Normalization is the standard one: ``sum_{a, b} C_real[a, b, c] C_real[a, b, c'] = delta_{c c'}``.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import sympy
from sympy.physics.wigner import wigner_3j

from tdn_theory._checks import check_degree

from . import cache
from .real_basis import change_of_basis

#: A float block is accepted as real when its imaginary part is below this (rounding level).
IMAGINARY_TOLERANCE = 1e-13

#: A cached block must satisfy its orthogonality relation to this (max abs deviation).
ORTHOGONALITY_TOLERANCE = 1e-12


def check_path(l1: object, l2: object, l3: object) -> tuple[int, int, int]:
    """Validate degrees and the triangle condition ``|l1 - l2| <= l3 <= l1 + l2``."""
    l1, l2, l3 = (check_degree(v, n) for v, n in ((l1, "l1"), (l2, "l2"), (l3, "l3")))
    if not abs(l1 - l2) <= l3 <= l1 + l2:
        raise ValueError(
            f"(l1, l2, l3) = ({l1}, {l2}, {l3}) violates the triangle condition "
            "|l1 - l2| <= l3 <= l1 + l2; choose an admissible path"
        )
    return l1, l2, l3


def _permutation_is_odd(order: tuple[int, ...]) -> bool:
    inversions = sum(1 for a in range(3) for b in range(a + 1, 3) if order[a] > order[b])
    return inversions % 2 == 1


@functools.cache
def _wigner_3j_sorted(l1: int, l2: int, l3: int) -> dict[tuple[int, int, int], sympy.Expr]:
    """Non-zero 3j symbols ``(l1 l2 l3; m1 m2 m3)`` for ``l1 <= l2 <= l3`` from sympy.

    The reflection symmetry ``(l1 l2 l3; -m1 -m2 -m3) = (-1)^J (l1 l2 l3; m1 m2 m3)``,
    ``J = l1 + l2 + l3``, halves the number of sympy evaluations.
    """
    sign = -1 if (l1 + l2 + l3) % 2 else 1
    out: dict[tuple[int, int, int], sympy.Expr] = {}
    for m1 in range(-l1, l1 + 1):
        for m2 in range(-l2, l2 + 1):
            m3 = -m1 - m2
            if abs(m3) > l3:
                continue
            mirror = (-m1, -m2, -m3)
            value = sign * out[mirror] if mirror in out else wigner_3j(l1, l2, l3, m1, m2, m3)
            if value != 0:
                out[(m1, m2, m3)] = value
    return out


def wigner_3j_symbols(l1: int, l2: int, l3: int) -> dict[tuple[int, int, int], sympy.Expr]:
    """Exact non-zero 3j symbols ``{(m1, m2, m3): (l1 l2 l3; m1 m2 m3)}`` (sympy).

    Computed once for the sorted degrees and mapped by the column-permutation symmetry: an odd
    permutation of the columns multiplies the symbol by ``(-1)^(l1 + l2 + l3)``.
    """
    l1, l2, l3 = check_path(l1, l2, l3)
    degrees = (l1, l2, l3)
    order = tuple(sorted(range(3), key=lambda t: degrees[t]))  # column order[t] is canonical t
    canonical = _wigner_3j_sorted(*(degrees[o] for o in order))
    sign = -1 if _permutation_is_odd(order) and (l1 + l2 + l3) % 2 else 1
    out = {}
    for mu, value in canonical.items():
        m = [0, 0, 0]
        for t, o in enumerate(order):
            m[o] = mu[t]
        out[tuple(m)] = sign * value
    return out


def complex_cg(l1: int, l2: int, l3: int) -> dict[tuple[int, int], sympy.Expr]:
    """Exact non-zero complex CG coefficients ``{(m1, m2): <l1 m1 l2 m2 | l3 m1+m2>}``.

    From the 3j symbols: ``<l1 m1 l2 m2 | l3 m3> = (-1)^(l1 - l2 + m3) sqrt(2 l3 + 1)
    (l1 l2 l3; m1 m2 -m3)`` (equal to ``sympy.physics.wigner.clebsch_gordan``; tested).
    """
    return {
        (m1, m2): (-1) ** ((l1 - l2 - m3) % 2) * sympy.sqrt(2 * l3 + 1) * value
        for (m1, m2, m3), value in wigner_3j_symbols(l1, l2, l3).items()
    }


def _complex_cg_float(l1: int, l2: int, l3: int) -> np.ndarray:
    """Float64 ``C[m1, m2, m3]`` from the exact 3j symbols (one rounding per entry, then one product)."""
    c = np.zeros((2 * l1 + 1, 2 * l2 + 1, 2 * l3 + 1))
    root = math.sqrt(2 * l3 + 1)
    for (m1, m2, m3), value in wigner_3j_symbols(l1, l2, l3).items():
        sign = -1.0 if (l1 - l2 - m3) % 2 else 1.0
        c[m1 + l1, m2 + l2, -m3 + l3] = sign * root * float(value)
    return c


def _real_cg_exact(l1: int, l2: int, l3: int) -> sympy.Array:
    q1, q2, q3 = (change_of_basis(l, exact=True) for l in (l1, l2, l3))
    entries = {}
    for (m1, m2), c in complex_cg(l1, l2, l3).items():
        m3 = m1 + m2
        # Each column of Q_l has its non-zeros in the rows a = +-m only.
        for a in {m1, -m1}:
            for b in {m2, -m2}:
                for cc in {m3, -m3}:
                    term = (
                        sympy.conjugate(q1[a + l1, m1 + l1])
                        * sympy.conjugate(q2[b + l2, m2 + l2])
                        * q3[cc + l3, m3 + l3]
                        * c
                    )
                    if term != 0:
                        key = (a + l1, b + l2, cc + l3)
                        entries[key] = entries.get(key, 0) + term
    block = sympy.MutableDenseNDimArray.zeros(2 * l1 + 1, 2 * l2 + 1, 2 * l3 + 1)
    for key, value in entries.items():
        re, im = sympy.expand(value, complex=True).as_real_imag()
        if sympy.simplify(im) != 0:
            raise ArithmeticError(f"real CG block ({l1}, {l2}, {l3}) has a non-zero imaginary part")
        block[key] = sympy.radsimp(sympy.simplify(re))
    return block


def _real_cg_float_uncached(l1: int, l2: int, l3: int) -> np.ndarray:
    c = _complex_cg_float(l1, l2, l3)
    q1, q2, q3 = (change_of_basis(l) for l in (l1, l2, l3))
    block = np.einsum("am,bn,cp,mnp->abc", q1.conj(), q2.conj(), q3, c, optimize=True)
    imaginary = float(np.abs(block.imag).max())
    if imaginary > IMAGINARY_TOLERANCE:
        raise ArithmeticError(
            f"real CG block ({l1}, {l2}, {l3}) has imaginary part {imaginary:.2e}; "
            "the change of basis is inconsistent"
        )
    return np.ascontiguousarray(block.real)


def is_orthonormal_block(block: np.ndarray) -> bool:
    """The orthogonality relation of a standard real CG block ``C[a, b, c]`` (index [m1, m2, m3]):
    ``sum_{a, b} C[a, b, c] C[a, b, c'] = delta_{c c'}``, to ORTHOGONALITY_TOLERANCE.

    Used to verify a block read from the disk cache (together with its checksum); it catches
    any rescaling and most value changes, though not every sign change, which the checksum does.
    """
    gram = np.einsum("abc,abe->ce", block, block)
    return bool(np.abs(gram - np.eye(block.shape[2])).max() <= ORTHOGONALITY_TOLERANCE)


@functools.cache
def _real_cg_float(l1: int, l2: int, l3: int) -> np.ndarray:
    """Float block, read-only, memoised in memory and on disk (disk entries are verified on
    load: checksum and orthogonality relation; a bad entry is recomputed and replaced).

    Blocks with ``l1 > l2`` come from the swap symmetry
    ``C_real(l2, l1, l3)[b, a, c] = (-1)^(l1 + l2 - l3) C_real(l1, l2, l3)[a, b, c]``.
    """
    if l1 > l2:
        sign = -1.0 if (l1 + l2 - l3) % 2 else 1.0
        block = sign * _real_cg_float(l2, l1, l3).transpose(1, 0, 2)
    else:
        name = f"real_cg_{l1}_{l2}_{l3}"
        shape = (2 * l1 + 1, 2 * l2 + 1, 2 * l3 + 1)
        block = cache.load(name, shape, validate=is_orthonormal_block)
        if block is None:  # missing, damaged or altered: recompute and replace the entry
            block = _real_cg_float_uncached(l1, l2, l3)
            cache.store(name, block)
    block = np.ascontiguousarray(block)
    block.setflags(write=False)
    return block


def real_cg(l1: int, l2: int, l3: int, exact: bool = False) -> np.ndarray | sympy.Array:
    """Real CG block of the path ``(l1, l2, l3)``, shape ``(2l1+1, 2l2+1, 2l3+1)``, index ``[m1, m2, m3]``.

    Standard CG normalization. ``exact=True`` returns a sympy Array whose entries are exact
    (rationals times square roots; slow beyond l ~ 4); otherwise a float64 numpy array
    (a fresh copy; the blocks are cached on disk, see :mod:`tdn_theory.so3.cache`).
    """
    l1, l2, l3 = check_path(l1, l2, l3)
    if exact:
        return _real_cg_exact(l1, l2, l3)
    return _real_cg_float(l1, l2, l3).copy()
