"""Testing helpers for users' and our own tests.

``assert_equivariant`` (:mod:`.equivariance`): one equivariance checker for any callable;
:mod:`.strategies`: Hypothesis strategies; :mod:`.references`: slow definition-level reference
implementations that the tests compare the fast ones with.
"""

from . import references, strategies
from .equivariance import EquivarianceResult, assert_equivariant

__all__ = ["EquivarianceResult", "assert_equivariant", "references", "strategies"]
