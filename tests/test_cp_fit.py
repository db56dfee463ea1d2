"""tdn_theory.cp.fit_cp / CPFit / levenberg_marquardt: recovery, determinism, bad input."""

import numpy as np
import pytest
import tensorly as tl

from tdn_theory.cp import CPFit, cp_to_tensor, fit_cp, levenberg_marquardt, relative_error
from tdn_theory.cp import polish as lm
from tdn_theory.so3 import cg_tensor

FAST = {"restarts": 2, "max_iter": 60, "refine_iter": 100, "polish_iter": 40}


def random_cp(shape, rank, seed):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal((n, rank)) for n in shape]


@pytest.mark.parametrize(("shape", "rank", "seed"), [((4, 5, 6), 3, 0), ((6, 6, 6), 5, 1)])
def test_exact_low_rank_tensor_is_recovered(shape, rank, seed):
    A, B, C = random_cp(shape, rank, seed)
    T = cp_to_tensor(A, B, C)
    fit = fit_cp(T, rank, seed=seed, **FAST)
    assert fit.relative_error <= 1e-10
    assert relative_error(T, fit.to_tensor()) <= 1e-10
    assert (fit.A.shape, fit.B.shape, fit.C.shape) == tuple((n, rank) for n in shape)


def test_cpfit_fields_and_reconstruction():
    T = cg_tensor(1)
    fit = fit_cp(T, 4, seed=3, **FAST)
    assert isinstance(fit, CPFit)
    assert fit.rank == 4 and fit.seed == 3 and fit.seconds > 0
    expected = np.einsum("kr,ir,jr->kij", fit.A, fit.B, fit.C)
    np.testing.assert_allclose(fit.to_tensor(), expected, rtol=0, atol=1e-13)
    assert fit.relative_error == pytest.approx(relative_error(T, fit.to_tensor()), rel=1e-12)
    stages = [h["stage"] for h in fit.history]
    assert stages.count("als") == FAST["restarts"] and "polish" in stages
    # the reported error is the best of all stages
    assert fit.relative_error <= min(h["relative_error"] for h in fit.history) * (1 + 1e-9)


def test_weights_live_in_the_factors_and_scale_is_restored():
    T = 7.5 * cg_tensor(1)
    fit = fit_cp(
        T, 8, seed=0, **FAST
    )  # rank 8 is exact at L = 1 (the rank atlas, proofs/rank_bounds.md)
    assert fit.relative_error <= 1e-10
    np.testing.assert_allclose(fit.to_tensor(), T, atol=1e-9)


def test_deterministic_for_a_given_seed():
    T = cg_tensor(2)
    a = fit_cp(T, 10, seed=5, **FAST)
    b = fit_cp(T, 10, seed=5, **FAST)
    for x, y in zip(a.factors, b.factors, strict=True):
        np.testing.assert_array_equal(x, y)
    c = fit_cp(T, 10, seed=6, **FAST)
    assert not np.array_equal(a.A, c.A)


@pytest.mark.filterwarnings("ignore:Trying to compute SVD")
def test_beats_default_parafac_on_cg_tensor():
    """Our fit at L=2, R=20 is at least as good as tensorly's default parafac."""
    T = cg_tensor(2)
    ours = fit_cp(T, 20, seed=0, restarts=2, max_iter=200, refine_iter=500, polish_iter=50)
    cp = tl.decomposition.parafac(tl.tensor(T), 20, random_state=0)
    theirs = relative_error(T, tl.cp_to_tensor(cp))
    assert ours.relative_error <= theirs


def test_time_budget_is_respected_roughly():
    T = cg_tensor(3)
    fit = fit_cp(T, 40, seed=0, restarts=50, time_budget=2.0)
    assert fit.seconds < 6.0  # budget 2 s; slack for one ALS start and a shared machine
    assert sum(h["stage"] == "als" for h in fit.history) < 50


def test_progress_callback_sees_every_stage():
    seen = []
    fit_cp(cg_tensor(1), 3, seed=0, progress=lambda *a: seen.append(a), **FAST)
    stages = {s[0] for s in seen}
    assert {"restart", "polish"} <= stages
    assert all(isinstance(s[3], float) for s in seen)


@pytest.mark.parametrize(
    ("T", "rank", "kwargs", "match"),
    [
        (np.ones((3, 3, 3)), 2.5, {}, "rank must be an integer"),
        (np.ones((3, 3, 3)), 0, {}, "rank must be an integer >= 1; got 0"),
        (np.ones((3, 3, 3)), True, {}, "rank must be an integer"),
        (np.full((3, 3, 3), np.nan), 2, {}, "NaN"),
        (np.zeros((3, 3, 3)), 2, {}, "T is zero"),
        (np.ones((3, 3)), 2, {}, "3-way"),
        (np.ones((3, 3, 3)), 2, {"restarts": 0}, "restarts"),
        (np.ones((3, 3, 3)), 2, {"init": "hosvd"}, "init"),
        (np.ones((3, 3, 3)), 2, {"seed": -1}, "seed"),
        (np.ones((3, 3, 3)), 2, {"time_budget": 0}, "time_budget"),
    ],
)
def test_bad_input_is_one_line_value_error(T, rank, kwargs, match):
    with pytest.raises(ValueError, match=match) as info:
        fit_cp(T, rank, **kwargs)
    assert "\n" not in str(info.value)


def test_nan_entry_is_refused():
    T = cg_tensor(1).copy()
    T[0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        fit_cp(T, 3)


# ---- the Levenberg–Marquardt polish --------------------------------------------------------


def explicit_jacobian(A, B, C):
    """J[(k,i,j), unknown] of T_hat = cp(A, B, C), unknowns [vec A, vec B, vec C] row-major."""
    d3, R = A.shape
    d1, d2 = B.shape[0], C.shape[0]
    cols = []
    for which, F in enumerate((A, B, C)):
        for row in range(F.shape[0]):
            for r in range(R):
                E = [np.zeros_like(A), np.zeros_like(B), np.zeros_like(C)]
                E[which][row, r] = 1.0
                U = [A, B, C]
                U[which] = E[which]
                cols.append(cp_to_tensor(*U).ravel())
    J = np.stack(cols, axis=1)
    assert J.shape == (d3 * d1 * d2, (d1 + d2 + d3) * R)
    return J


def test_gauss_newton_products_match_explicit_jacobian():
    A, B, C = random_cp((3, 4, 5), 2, 7)
    J = explicit_jacobian(A, B, C)
    U = [A, B, C]
    G, H, third = lm._gram_data(U)
    dense = lm._jtj_dense(U, G, H, third)
    np.testing.assert_allclose(dense, J.T @ J, atol=1e-10)
    rng = np.random.default_rng(1)
    V = [rng.standard_normal(F.shape) for F in U]
    applied = np.concatenate([x.ravel() for x in lm._jtj_apply(U, G, H, third, V)])
    np.testing.assert_allclose(
        applied, J.T @ J @ np.concatenate([v.ravel() for v in V]), atol=1e-10
    )
    # gradient of 1/2 ||cp - T||^2 is Jᵀ F
    T = rng.standard_normal((3, 4, 5))
    f, g = lm._CPLeastSquares(T).value_and_grad(U)
    F = cp_to_tensor(A, B, C) - T
    assert f == pytest.approx(0.5 * np.sum(F**2))
    np.testing.assert_allclose(np.concatenate([x.ravel() for x in g]), J.T @ F.ravel(), atol=1e-10)


@pytest.mark.parametrize("dense", [True, False])
def test_levenberg_marquardt_converges_from_a_perturbed_start(dense):
    A, B, C = random_cp((5, 6, 7), 4, 11)
    T = cp_to_tensor(A, B, C)
    rng = np.random.default_rng(2)
    start = [F + 0.05 * rng.standard_normal(F.shape) for F in (A, B, C)]
    res = levenberg_marquardt(T, *start, max_iter=200, dense=dense)
    assert res.relative_error <= 1e-12
    assert relative_error(T, cp_to_tensor(res.A, res.B, res.C)) <= 1e-12
    # the error never increases along the trace
    trace = res.history[0]["trace"]
    assert all(b <= a * (1 + 1e-12) for a, b in zip(trace, trace[1:], strict=False))
    assert isinstance(res, CPFit) and res.history[0]["stage"] == "polish"


def test_balance_keeps_the_tensor():
    A, B, C = random_cp((3, 4, 5), 3, 4)
    A = A * 100.0
    bal = lm.balance_factors(A, B, C)
    np.testing.assert_allclose(cp_to_tensor(*bal), cp_to_tensor(A, B, C), rtol=1e-12, atol=1e-12)
    norms = np.stack([np.linalg.norm(F, axis=0) for F in bal])
    np.testing.assert_allclose(norms, norms[[0, 0, 0]], rtol=1e-12)
