"""Hypothesis strategies for SO(3) property tests, importable by users too.

Randomness comes from Hypothesis only: never from numpy's global RNG, which Hypothesis reseeds for
every example (``scipy.spatial.transform.Rotation.random()`` would then return the same rotation
each time).
"""

from __future__ import annotations

import math

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy.spatial.transform import Rotation

from ..so3.layout import dim

_SPECIAL_ROTATIONS = (
    np.eye(3),
    np.diag([1.0, -1.0, -1.0]),  # pi about x
    np.diag([-1.0, 1.0, -1.0]),  # pi about y
    np.diag([-1.0, -1.0, 1.0]),  # pi about z
)


def _shoemake(u1: float, u2: float, u3: float) -> np.ndarray:
    """Shoemake's map from the unit cube to Haar-uniform unit quaternions, as a matrix."""
    a, b = math.sqrt(1.0 - u1), math.sqrt(u1)
    quaternion = [  # scalar-last, as scipy expects
        a * math.sin(2 * math.pi * u2),
        a * math.cos(2 * math.pi * u2),
        b * math.sin(2 * math.pi * u3),
        b * math.cos(2 * math.pi * u3),
    ]
    return Rotation.from_quat(quaternion).as_matrix()


def rotations() -> st.SearchStrategy[np.ndarray]:
    """3x3 float64 rotation matrices: the identity and pi about x, y, z first, then Haar-uniform."""
    unit = st.floats(0.0, 1.0, allow_nan=False)
    haar = st.builds(_shoemake, unit, unit, unit)
    special = st.sampled_from(range(len(_SPECIAL_ROTATIONS))).map(
        lambda i: _SPECIAL_ROTATIONS[i].copy()
    )
    return st.one_of(special, haar)


def degrees(max_L: int) -> st.SearchStrategy[int]:
    """Degrees ``0..max_L``."""
    return st.integers(0, max_L)


@st.composite
def paths(draw: st.DrawFn, max_L: int) -> tuple[int, int, int]:
    """Admissible ``(l1, l2, l3)`` with all degrees ``<= max_L``."""
    l1 = draw(st.integers(0, max_L))
    l2 = draw(st.integers(0, max_L))
    l3 = draw(st.integers(abs(l1 - l2), min(l1 + l2, max_L)))
    return l1, l2, l3


def features(L: int, *, bound: float = 1.0) -> st.SearchStrategy[np.ndarray]:
    """Float64 feature vectors of length ``d = (L+1)^2`` with entries in ``[-bound, bound]``."""
    elements = st.floats(-bound, bound, allow_nan=False, allow_infinity=False)
    return arrays(np.float64, (dim(L),), elements=elements)
