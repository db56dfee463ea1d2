"""The unitary change of basis between complex and real spherical harmonics, degree ``l``.

``Q_l`` maps complex-basis coefficients to real-basis ones; rows are the real index
``a = -l..l``, columns the complex index ``m = -l..l`` (both in e3nn's order). With
``s = 1/sqrt(2)`` it is ``i^l`` times the matrix of the usual real form (Wikipedia,
"Spherical harmonics, real form"):

* ``a < 0``:  ``Q[a, a] = i s``,          ``Q[a, -a] = -i (-1)^a s``
* ``a = 0``:  ``Q[0, 0] = 1``
* ``a > 0``:  ``Q[a, -a] = s``,           ``Q[a, a]  = (-1)^a s``

The inverse ``Q_l^dagger`` (complex from real, the matrix e3nn builds) therefore carries the
factor ``(-i)^l``. The phase is what makes every real CG block real: see
``proofs/conventions.md`` and ``tests/test_so3_cg.py::test_real_cg_exact_is_real``.
"""

from __future__ import annotations

import functools

import numpy as np
import sympy

from tdn_theory._checks import check_degree


@functools.cache
def _exact(l: int) -> sympy.Matrix:
    s = 1 / sympy.sqrt(2)
    q = sympy.zeros(2 * l + 1, 2 * l + 1)
    for a in range(-l, l + 1):
        if a < 0:
            q[a + l, a + l] = sympy.I * s
            q[a + l, -a + l] = -sympy.I * (-1) ** a * s
        elif a == 0:
            q[l, l] = 1
        else:
            q[a + l, -a + l] = s
            q[a + l, a + l] = (-1) ** a * s
    return (sympy.I**l * q).applyfunc(sympy.nsimplify)


@functools.cache
def _float(l: int) -> np.ndarray:
    q = np.array(_exact(l).evalf(20).tolist(), dtype=np.complex128)
    q.setflags(write=False)
    return q


def change_of_basis(l: int, exact: bool = False) -> sympy.Matrix | np.ndarray:
    """``Q_l`` (real from complex), a ``(2l+1, 2l+1)`` unitary matrix.

    With ``exact=True`` a sympy Matrix with exact entries, otherwise a complex128 numpy array.
    """
    l = check_degree(l, "l")
    if exact:
        return _exact(l).copy()
    return _float(l).copy()
