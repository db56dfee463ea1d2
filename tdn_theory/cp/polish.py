"""Second-order polish of a CP fit: Levenberg–Marquardt on all three factors at once.

Objective (T indexed [k, i, j], factors A (d3, R), B (d1, R), C (d2, R)):

    f(A, B, C) = 1/2 ||F||_F^2,   F = einsum("kr,ir,jr->kij", A, B, C) - T.

Gradient, with the Gram matrices G_A = AᵀA, G_B = BᵀB, G_C = CᵀC:

    dA f = F_(0) (B ⊙ C),   dB f = F_(1) (A ⊙ C),   dC f = F_(2) (A ⊙ B)

(F_(n) the mode-n unfolding, ⊙ the column-wise Khatri–Rao product in the matching order).
The Gauss–Newton matrix JᵀJ acts on a direction (dA, dB, dC) through Gram matrices only:

    (JᵀJ v)_A = dA (G_B * G_C) + A ((dBᵀB) * G_C) + A ((dCᵀC) * G_B)

and cyclically for B and C (* the Hadamard product). Each step solves the damped normal
equations (JᵀJ + mu I) p = -grad: densely (Cholesky) when the number of unknowns
(d1 + d2 + d3) R is small, otherwise by conjugate gradients preconditioned with the exact
block diagonal (G_B * G_C + mu I)^{-1} etc. (the ALS normal matrices). mu follows Nielsen's
trust-region rule. Before starting, column norms are balanced across the three factors
(a gauge change that leaves T_hat unchanged and improves the conditioning of JᵀJ).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import scipy.linalg

from .fit_result import CPFit

__all__ = ["levenberg_marquardt", "balance_factors"]

DENSE_LIMIT = 1000  # use a dense Cholesky solve when (d1 + d2 + d3) * R <= this


def balance_factors(A: np.ndarray, B: np.ndarray, C: np.ndarray):
    """Rescale columns so that ||A[:, r]|| = ||B[:, r]|| = ||C[:, r]|| (same CP tensor)."""
    norms = np.stack([np.linalg.norm(F, axis=0) for F in (A, B, C)])  # (3, R)
    prod = np.prod(norms, axis=0)
    ok = prod > 0
    target = np.where(ok, np.cbrt(np.where(ok, prod, 1.0)), 0.0)
    out = []
    for n, F in enumerate((A, B, C)):
        scale = np.where(ok, target / np.where(ok, norms[n], 1.0), 0.0)
        out.append(F * scale)
    return tuple(out)


def _khatri_rao(X: np.ndarray, Y: np.ndarray) -> np.ndarray:
    """Column-wise Kronecker product: row (a, b) -> X[a, r] * Y[b, r]; shape (rows_X*rows_Y, R)."""
    return (X[:, None, :] * Y[None, :, :]).reshape(-1, X.shape[1])


class _CPLeastSquares:
    """Residual, gradient and Gauss–Newton products for f = 1/2 ||cp(A,B,C) - T||^2."""

    def __init__(self, T: np.ndarray):
        d3, d1, d2 = T.shape
        self.shapes = (d3, d1, d2)
        # the mode-0 unfolding of T, matching the Khatri–Rao order of B ⊙ C
        self.T0 = T.reshape(d3, d1 * d2)  # (k, (i, j))
        self.normT2 = float(np.sum(T * T))

    def value_and_grad(self, U):
        A, B, C = U
        kr_bc = _khatri_rao(B, C)
        F0 = A @ kr_bc.T - self.T0  # residual, mode-0 unfolding
        f = 0.5 * float(np.sum(F0 * F0))
        d3, d1, d2 = self.shapes
        F = F0.reshape(d3, d1, d2)
        gA = F0 @ kr_bc
        gB = F.transpose(1, 0, 2).reshape(d1, -1) @ _khatri_rao(A, C)
        gC = F.transpose(2, 0, 1).reshape(d2, -1) @ _khatri_rao(A, B)
        return f, (gA, gB, gC)

    def value(self, U) -> float:
        A, B, C = U
        F0 = A @ _khatri_rao(B, C).T - self.T0
        return 0.5 * float(np.sum(F0 * F0))


def _gram_data(U):
    G = [F.T @ F for F in U]
    # H[n] = Hadamard product of the Grams of the two other modes; P[n][m] = Gram of the third
    H = [G[1] * G[2], G[0] * G[2], G[0] * G[1]]
    third = {(0, 1): 2, (0, 2): 1, (1, 0): 2, (1, 2): 0, (2, 0): 1, (2, 1): 0}
    return G, H, third


def _jtj_apply(U, G, H, third, V):
    """Return (JᵀJ) V for a direction V = (dA, dB, dC)."""
    cross = [V[m].T @ U[m] for m in range(3)]  # (dU_mᵀ U_m), R x R
    out = []
    for n in range(3):
        acc = V[n] @ H[n]
        inner = np.zeros_like(H[n])
        for m in range(3):
            if m != n:
                inner += cross[m] * G[third[(n, m)]]
        acc = acc + U[n] @ inner
        out.append(acc)
    return out


def _jtj_dense(U, G, H, third):
    """Dense JᵀJ for the unknown vector [vec(A), vec(B), vec(C)], each row-major (row, r)."""
    sizes = [F.shape[0] * F.shape[1] for F in U]
    offs = np.concatenate([[0], np.cumsum(sizes)])
    R = U[0].shape[1]
    M = np.zeros((offs[-1], offs[-1]))
    for n in range(3):
        dn = U[n].shape[0]
        # diagonal block: out[k, r] = sum_s dU[k, s] H[s, r]  ->  I_dn ⊗ H[n]ᵀ
        M[offs[n] : offs[n + 1], offs[n] : offs[n + 1]] = np.kron(np.eye(dn), H[n].T)
        for m in range(3):
            if m == n:
                continue
            dm = U[m].shape[0]
            Gp = G[third[(n, m)]]
            # out_n[k, r] += sum_{i,s} U_n[k, s] U_m[i, r] Gp[s, r] dU_m[i, s]
            block = np.einsum("ks,ir,sr->kris", U[n], U[m], Gp).reshape(dn * R, dm * R)
            M[offs[n] : offs[n + 1], offs[m] : offs[m + 1]] = block
    return M


def _dot(X, Y) -> float:
    return float(sum(np.vdot(x, y) for x, y in zip(X, Y, strict=True)))


def _pcg(U, G, H, third, g, mu, max_iter, rtol):
    """Solve (JᵀJ + mu I) p = -g by preconditioned CG; return p and the number of iterations."""
    chols = [scipy.linalg.cho_factor(H[n] + mu * np.eye(H[n].shape[0])) for n in range(3)]

    def precond(X):
        # block solve X_n (H_n + mu I)^{-1}: (H_n + mu I) is symmetric
        return [scipy.linalg.cho_solve(chols[n], X[n].T).T for n in range(3)]

    b = [-x for x in g]
    p = [np.zeros_like(x) for x in g]
    r = [x.copy() for x in b]
    z = precond(r)
    s = [x.copy() for x in z]
    rz = _dot(r, z)
    bnorm = np.sqrt(_dot(b, b))
    it = 0
    for it in range(1, max_iter + 1):  # noqa: B007 (it is returned)
        As = _jtj_apply(U, G, H, third, s)
        As = [a + mu * x for a, x in zip(As, s, strict=True)]
        sAs = _dot(s, As)
        if sAs <= 0:
            break
        alpha = rz / sAs
        p = [x + alpha * y for x, y in zip(p, s, strict=True)]
        r = [x - alpha * y for x, y in zip(r, As, strict=True)]
        if np.sqrt(_dot(r, r)) <= rtol * bnorm:
            break
        z = precond(r)
        rz_new = _dot(r, z)
        beta = rz_new / rz
        rz = rz_new
        s = [x + beta * y for x, y in zip(z, s, strict=True)]
    return p, it


def levenberg_marquardt(
    T: np.ndarray,
    A: np.ndarray,
    B: np.ndarray,
    C: np.ndarray,
    *,
    max_iter: int = 500,
    time_budget: float | None = None,
    target_error: float = 1e-15,
    stall_iters: int = 25,
    stall_rtol: float = 1e-6,
    dense: bool | None = None,
    cg_max_iter: int = 60,
    callback: Callable[[int, float], None] | None = None,
    normalize: bool = True,
) -> CPFit:
    """Levenberg–Marquardt on all factors of a CP approximation of the 3-way tensor T.

    Starts from (A, B, C), returns the best factors seen (the error never increases). Stops
    when the relative error reaches `target_error`, after `max_iter` iterations, when the time
    budget (seconds) is spent, or when the relative error improved by less than a factor
    (1 - stall_rtol) over the last `stall_iters` iterations. `dense=None` chooses the dense
    solver when (d1 + d2 + d3) R <= DENSE_LIMIT. `callback(iteration, relative_error)` is
    called after each iteration.

    With ``normalize`` (default) it works on T / ||T||_F from A / ||T||_F (the same CP scaled
    alike; relative errors are unchanged) and scales A back; ``normalize=False`` for callers
    that already work at unit norm. Returns a ``CPFit`` (seed None) whose ``relative_error`` is
    the objective's, ``seconds`` the polish time and ``history`` one entry {"stage": "polish",
    "iterations", "reason", "trace" (relative error per iteration, never increasing)}.
    """
    start = time.perf_counter()
    T = np.asarray(T, dtype=np.float64)
    norm = float(np.linalg.norm(T)) if normalize else 1.0
    if normalize and norm > 0:
        T = T / norm
        A = np.asarray(A, dtype=np.float64) / norm
    problem = _CPLeastSquares(T)
    U = [np.array(F, dtype=np.float64, copy=True) for F in balance_factors(A, B, C)]
    n_unknowns = sum(F.size for F in U)
    if dense is None:
        dense = n_unknowns <= DENSE_LIMIT
    normT = np.sqrt(problem.normT2)

    f, g = problem.value_and_grad(U)
    rel = np.sqrt(2.0 * f) / normT
    trace = [rel]
    G, H, third = _gram_data(U)
    mu = 1e-3 * max(float(np.max(np.diag(h))) for h in H)
    nu = 2.0
    reason = "max_iter"
    it = 0
    for it in range(1, max_iter + 1):  # noqa: B007
        if rel <= target_error:
            reason = "target_error"
            it -= 1
            break
        if time_budget is not None and time.perf_counter() - start > time_budget:
            reason = "time_budget"
            it -= 1
            break
        if dense:
            M = _jtj_dense(U, G, H, third)
            M[np.diag_indices_from(M)] += mu
            gvec = np.concatenate([x.ravel() for x in g])
            try:
                pvec = -scipy.linalg.cho_solve(scipy.linalg.cho_factor(M), gvec)
            except np.linalg.LinAlgError:
                mu *= nu
                nu *= 2.0
                continue
            p, pos = [], 0
            for F in U:
                p.append(pvec[pos : pos + F.size].reshape(F.shape))
                pos += F.size
        else:
            gnorm = np.sqrt(_dot(g, g))
            rtol = min(0.1, np.sqrt(gnorm / max(problem.normT2, 1e-300)))
            try:
                p, _ = _pcg(U, G, H, third, g, mu, cg_max_iter, max(rtol, 1e-12))
            except np.linalg.LinAlgError:
                mu *= nu
                nu *= 2.0
                continue
        Jp = _jtj_apply(U, G, H, third, p)
        pred = -(_dot(g, p) + 0.5 * _dot(p, Jp))  # predicted decrease of f (Gauss–Newton model)
        U_new = [x + y for x, y in zip(U, p, strict=True)]
        f_new = problem.value(U_new)
        rho = (f - f_new) / pred if pred > 0 else -1.0
        if rho > 0 and f_new < f:
            U = U_new
            f, g = problem.value_and_grad(U)
            rel = np.sqrt(2.0 * f) / normT
            G, H, third = _gram_data(U)
            mu *= max(1.0 / 3.0, 1.0 - (2.0 * rho - 1.0) ** 3)
            nu = 2.0
        else:
            mu *= nu
            nu *= 2.0
            if not np.isfinite(mu) or mu > 1e30:
                reason = "damping_overflow"
                break
        trace.append(rel)
        if callback is not None:
            callback(it, rel)
        if len(trace) > stall_iters and rel > (1.0 - stall_rtol) * trace[-1 - stall_iters]:
            reason = "stalled"
            break
    A_out, B_out, C_out = U
    if normalize and norm > 0:
        A_out = A_out * norm
    history = [{"stage": "polish", "iterations": it, "reason": reason, "trace": trace}]
    return CPFit(
        A=A_out,
        B=B_out,
        C=C_out,
        relative_error=float(rel),
        history=history,
        seconds=time.perf_counter() - start,
    )
