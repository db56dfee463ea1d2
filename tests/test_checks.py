"""One rule for integer arguments (tdn_theory._checks): integral floats and bools are refused.

Before the checks were shared, ``thm31_bound(T, 8.0)`` returned a number while
``error_lower_bound(T, 8.0)`` raised, ``invariant_path_basis(2.0)`` worked while ``so3.dim(2.0)``
raised, and ``sample_equivariance_errors(F, True, 0)`` drew one sample.
"""

from __future__ import annotations

import re

import numpy as np
import pytest

from tdn_theory import so3
from tdn_theory._checks import check_degree, check_int
from tdn_theory.cp import FitKey, compress_exact, error_lower_bound, fit_cp, sphere_rule
from tdn_theory.cp.quadrature import required_degree
from tdn_theory.models.train import TrainSettings
from tdn_theory.nn import irreps
from tdn_theory.testing.references import equivariant_space_dimension, monte_carlo_mean_square
from tdn_theory.theory import sample_equivariance_errors, thm31_bound
from tdn_theory.theory.equivariance import (
    haar_mean_square,
    invariant_path_basis,
    mode_tail_energies,
    worst_case_equivariance_error,
)
from tdn_theory.theory.rank_lower import koszul_young_bound
from tdn_theory.theory.universality import equivariant_map

#: the one message style: "[who: ]name must be an integer >= minimum; got value ..."
STYLE = re.compile(r"^(\w+: )?\w[\w ]* must be an integer >= \d+; got .+$")

T1 = so3.cg_tensor(1)
F1 = (np.eye(4)[:, :2], np.eye(4)[:, :2], np.eye(4)[:, :2])

CALLS = {
    "thm31_bound rank": lambda v: thm31_bound(T1, v),
    "error_lower_bound rank": lambda v: error_lower_bound(T1, v),
    "fit_cp rank": lambda v: fit_cp(T1, v),
    "fit_cp restarts": lambda v: fit_cp(T1, 3, restarts=v),
    "so3.dim L": lambda v: so3.dim(v),
    "so3.cg_tensor L": lambda v: so3.cg_tensor(v),
    "invariant_path_basis L": lambda v: invariant_path_basis(v),
    "equivariant_map L": lambda v: equivariant_map(v, {}),
    "equivariant_space_dimension l1": lambda v: equivariant_space_dimension(v, 1, 1),
    "required_degree L": lambda v: required_degree(v),
    "sphere_rule degree": lambda v: sphere_rule(v),
    "sample_equivariance_errors n_rotations": lambda v: sample_equivariance_errors(F1, v, 0),
    "monte_carlo_mean_square n_rotations": lambda v: monte_carlo_mean_square(T1, v, 0),
    "mode_tail_energies r": lambda v: mode_tail_energies(T1, v),
    "worst_case starts": lambda v: worst_case_equivariance_error(F1, starts=v),
    "compress_exact seed": lambda v: compress_exact(T1, *F1, seed=v),
    "random_rotations n": lambda v: so3.random_rotations(v),
    "koszul_young_bound p": lambda v: koszul_young_bound(T1, v),
    "FitKey rank": lambda v: FitKey("unit", "all", 1, v),
    "TrainSettings epochs": lambda v: TrainSettings(epochs=v),
    "irreps L": lambda v: irreps(v),
    "irreps channels": lambda v: irreps(1, v),
}


@pytest.mark.parametrize("bad", [8.0, 2.0, True, "2"], ids=["8.0", "2.0", "True", "'2'"])
@pytest.mark.parametrize("call", sorted(CALLS))
def test_integral_floats_bools_and_strings_are_refused_in_one_style(call, bad):
    with pytest.raises(ValueError) as info:
        CALLS[call](bad)
    message = str(info.value)
    assert STYLE.match(message), message
    assert "\n" not in message and repr(bad) in message


def test_numpy_integers_are_accepted_like_ints():
    assert so3.dim(np.int64(2)) == so3.dim(2) == 9
    assert thm31_bound(T1, np.int32(8)) == thm31_bound(T1, 8)
    assert len(invariant_path_basis(np.int64(1))) == len(invariant_path_basis(1))
    assert sample_equivariance_errors(F1, np.int64(3), 0).shape == (3,)
    assert haar_mean_square(T1) == pytest.approx(0.0, abs=1e-20)
    assert irreps(np.int64(1), np.int64(2)).dim == 8


def test_the_checker_itself():
    assert check_int(np.int16(5), "n", minimum=1) == 5 and type(check_int(np.int16(5), "n")) is int
    assert check_degree(0) == 0
    with pytest.raises(ValueError, match=r"^fit_cp: seed must be an integer >= 0; got -1$"):
        check_int(-1, "seed", who="fit_cp")
    with pytest.raises(ValueError, match=r"^L must be an integer <= 3; got 4$"):
        check_degree(4, maximum=3)
    with pytest.raises(ValueError, match=r"got np\.False_|got False"):
        check_int(np.bool_(False), "flag")


def test_degree_from_dim_inverts_dim_and_refuses_the_rest():
    for L in range(7):
        assert so3.degree_from_dim(so3.dim(L)) == L
    assert so3.degree_from_dim(np.int64(16)) == 3
    for bad in (0, 8, 10, -4, 9.0, True):
        with pytest.raises(ValueError, match=r"is not \(L\+1\)\^2"):
            so3.degree_from_dim(bad)
