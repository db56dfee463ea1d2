r"""Second-order network certificate (proofs/network_propagation.md, Theorem 2): bound algebra.

Pure numpy on quantities measured at the configuration x
(``tdn_theory.models.network_linearised.linearised_quantities``). Index order: ``[t, v, i, c, k]``
(layer, displacement v = 3 k + axis of atom k, atom, channel, component), edges ``[e, ...]``.

For a rotation R let X_R = rho(R) T_hat and Delta_R = X_R - T_hat = rho(R) Q - Q, Q = (I - P) T_hat.
The network at Rx is the network at x with tensor X_R (Lemma 5), so
``E(Rx) - E(x) = E(x; X_R) - E(x; T_hat)`` and ``|F(Rx) - R F(x)| = |F(x; X_R) - F(x; T_hat)|``.
Expanding every layer exactly (messages are bilinear in (features, tensor), the gate is smooth):

    E(x; X_R) - E(x; T_hat) = <Gamma, Delta_R> + sum_t <lambda^m_t, c_t> + <lambda^h_t, q_t> + q_phi,

Gamma = dE/dX, lambda^m_t = dE/dm^t, lambda^h_t = dE/dh^t (measured at x), c_t = m^t(Delta h^{t-1},
Delta_R) the cross term, q_t the gate's Taylor remainder, q_phi the readout's. The remainders are
second order; they are bounded with a-priori bounds on every block |Delta h^t_{icl}| propagated
with the network's own slopes at x (:func:`certificate`). Forces: the same for the tangent
network (h, dh/dx[v]) with the derivatives of the adjoints along v.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tdn_theory.so3 import degree_from_dim, degree_slices
from tdn_theory.theory.measurements import project_invariant
from tdn_theory.theory.network import (
    SIGMOID_CURVATURE,
    SIGMOID_LIPSCHITZ,
    SILU_CURVATURE,
)

__all__ = [
    "SIGMOID_THIRD",
    "SILU_THIRD",
    "Certificate",
    "LinearisedQuantities",
    "certificate",
    "first_order_orbit_bound",
    "orbit_grid_bound",
    "rounding_allowance",
]

#: sup |SiLU'''(x)| = 0.3081815... (at x ~ 1.032), rounded up.
SILU_THIRD = 0.308182
#: sup |sigmoid'''(x)| = 1/8 (at x = 0).
SIGMOID_THIRD = 0.125


@dataclass(frozen=True)
class LinearisedQuantities:
    """Everything :func:`certificate` needs for one configuration (K layers, V = 3N displacements).

    Graph: src, dst (E,); n_atoms N; avg_neighbors a. Tensors: T (exactly equivariant), T_hat
    (the model's), both (d, d, d) [k, i, j]; T_abs (d, d, d) the magnitudes the backend sums
    (sum_r |A_kr| |B_ir| |C_jr| for a CP, |T_hat| otherwise), for the rounding allowance. At x: energy, forces (V,) (F_v = -dE/dx_v),
    energy_grad_tensor dE/dX (d, d, d), force_grad_tensor dF_v/dX (V, d, d, d),
    message_adjoint dE/dm^t (K, N, C, d), feature_adjoint dE/dh^t (K, N, C, d) and their
    derivatives along v (K, V, N, C, d). Values: inputs h^{t-1} (K, N, C, d), mixed u (K, N, C, d),
    gates z (K, N, C, L), weights w (K, E, C), harmonics Y (E, d), scalars h^K[:, :, 0] (N, C);
    tangents along v with a V axis after K (weights (K, V, E, C), harmonics (V, E, d), scalars
    (V, N, C)). mix (K, L+1, C, C) [l, out, in], gate_matrices (K, C, C L), readout_1 (C, H),
    readout_2 (H,).
    """

    src: np.ndarray
    dst: np.ndarray
    n_atoms: int
    avg_neighbors: float
    T: np.ndarray
    T_hat: np.ndarray
    T_abs: np.ndarray
    energy: float
    forces: np.ndarray
    energy_grad_tensor: np.ndarray
    force_grad_tensor: np.ndarray
    message_adjoint: np.ndarray
    feature_adjoint: np.ndarray
    message_adjoint_tangent: np.ndarray
    feature_adjoint_tangent: np.ndarray
    inputs: np.ndarray
    input_tangents: np.ndarray
    mixed: np.ndarray
    mixed_tangents: np.ndarray
    gates: np.ndarray
    gate_tangents: np.ndarray
    weights: np.ndarray
    weight_tangents: np.ndarray
    harmonics: np.ndarray
    harmonic_tangents: np.ndarray
    scalars: np.ndarray
    scalar_tangents: np.ndarray
    mix: np.ndarray
    gate_matrices: np.ndarray
    readout_1: np.ndarray
    readout_2: np.ndarray


@dataclass(frozen=True)
class Certificate:
    """Theorem 2 on one configuration, valid for every rotation R (exact arithmetic).

    energy >= |E(Rx) - E(x)|; forces[k] >= |F_k(Rx) - R F_k(x)|; force_total >= |F(Rx) - RF(x)|_F.
    The parts: energy_first_order (the rigorous bound on sup_R |<Gamma, Delta_R>|) plus
    energy_remainder; likewise force_first_order (per atom) and force_remainder (per atom).
    energy_estimate, force_estimate: first-order estimates, NOT bounds: the largest linear term
    |<Gamma, Delta_R>| (|J Delta_R| for the forces) over the orbit grid, or over 64 seeded Haar
    rotations when the grid is not run. first_order_method: "orbit grid" (Bernstein on a grid of
    Euler angles, :func:`orbit_grid_bound`) or "cauchy-schwarz" (:func:`first_order_orbit_bound`).
    feature_apriori (K+1, N, C, L+1): the a-priori bounds on |Delta h^t_{icl}|.
    rounding_energy, rounding_forces: the floating-point allowance already added to energy,
    forces and force_total by ``models.network_bound.evaluate_bound`` (0 from :func:`certificate`).
    """

    energy: float
    forces: np.ndarray
    force_total: float
    energy_first_order: float
    energy_remainder: float
    force_first_order: np.ndarray
    force_remainder: np.ndarray
    energy_estimate: float
    force_estimate: float
    first_order_method: str
    feature_apriori: np.ndarray
    rounding_energy: float = 0.0
    rounding_forces: float = 0.0

    @property
    def feature_total(self) -> np.ndarray:
        """(K+1,): bounds on |h^t(Rx) - D h^t(x)|_F (the a-priori bounds of Lemma 6)."""
        return np.sqrt((self.feature_apriori**2).sum(axis=(1, 2, 3)))


# --------------------------------------------------------------------------------------------
# tensor constants
# --------------------------------------------------------------------------------------------


def _block_norms(x: np.ndarray, L: int) -> np.ndarray:
    """|x[..., block l]| for l = 0..L: (..., d) -> (..., L+1)."""
    return np.stack([np.linalg.norm(x[..., s], axis=-1) for s in degree_slices(L)], -1)


def _slice_norms(X: np.ndarray, L: int) -> np.ndarray:
    """(L+1, L+1): ||X[block lo, block li, :]||_2 as a (2lo+1) x ((2li+1) d) matrix."""
    sl = degree_slices(L)
    return np.array(
        [
            [np.linalg.norm(X[so, si, :].reshape(so.stop - so.start, -1), 2) for si in sl]
            for so in sl
        ]
    )


def _trilinear_norms(X: np.ndarray, L: int) -> np.ndarray:
    """(L+1,)^3: the smallest spectral norm of the three unfoldings of X[block lo, li, lj], an
    upper bound on max |<c, X(a, b)>| over unit c, a, b of those degrees."""
    sl = degree_slices(L)
    out = np.empty((L + 1,) * 3)
    for x, so in enumerate(sl):
        for y, si in enumerate(sl):
            for z, sj in enumerate(sl):
                B = X[so, si, sj]
                out[x, y, z] = min(
                    np.linalg.norm(B.reshape(B.shape[0], -1), 2),
                    np.linalg.norm(np.moveaxis(B, 1, 0).reshape(B.shape[1], -1), 2),
                    np.linalg.norm(np.moveaxis(B, 2, 0).reshape(B.shape[2], -1), 2),
                )
    return out


def _row_norms(X: np.ndarray, L: int) -> np.ndarray:
    """(L+1,): ||X[block lo, :, :]||_2 as a (2lo+1) x d^2 matrix."""
    return np.array(
        [np.linalg.norm(X[s].reshape(s.stop - s.start, -1), 2) for s in degree_slices(L)]
    )


def _edge_op_norms(X: np.ndarray, Y: np.ndarray, L: int) -> np.ndarray:
    """(E, L+1, L+1): operator norm of a_li -> X[block lo](a_li, Y_e)."""
    sl = degree_slices(L)
    M = np.einsum("kij,ej->eki", X, Y, optimize=True)  # (E, d, d): X(., Y_e)
    out = np.empty((len(Y), L + 1, L + 1))
    for a, so in enumerate(sl):
        for b, si in enumerate(sl):
            out[:, a, b] = np.linalg.norm(M[:, so, si], ord=2, axis=(1, 2))
    return out


def _project_rows(G: np.ndarray, L: int) -> np.ndarray:
    """(I - P) applied to each (d, d, d) tensor of G (..., d, d, d)."""
    flat = G.reshape(-1, *G.shape[-3:])
    return np.stack([g - project_invariant(g, L) for g in flat]).reshape(G.shape)


def first_order_orbit_bound(G: np.ndarray, Q: np.ndarray, L: int) -> tuple[np.ndarray, float]:
    """Lemma 8(a): sup_R |G (rho(R) Q - Q)| <= |G Q| + ||G (I - P)||_2 ||Q||_F.

    ``G`` (n, d, d, d): a linear map to R^n, one row per output; ``Q = (I - P) T_hat``. Returns
    (G (I - P) Q as a vector (n,), ||G (I - P)||_2); rho(R) Q stays in the range of I - P and has
    the Frobenius norm of Q.
    """
    Gp = _project_rows(G, L).reshape(len(G), -1)
    GQ = Gp @ Q.reshape(-1)
    return GQ, float(np.linalg.norm(Gp, 2))


def _rho(D: np.ndarray, X: np.ndarray) -> np.ndarray:
    """rho(R) X = D^T X (D ., D .), broadcasting D (..., d, d) against X (..., d, d, d)."""
    out = np.einsum("...ak,...abc->...kbc", D, X, optimize=True)
    out = np.einsum("...bi,...kbc->...kic", D, out, optimize=True)
    return np.einsum("...cj,...kic->...kij", D, out, optimize=True)


def _dirichlet(theta: np.ndarray, M: int) -> np.ndarray:
    """Interpolation kernel of trigonometric polynomials of degree <= (M - 1) / 2 sampled at
    M equispaced points: sin(M t / 2) / (M sin(t / 2)), 1 at t = 0 (mod 2 pi)."""
    theta = np.asarray(theta, dtype=np.float64)
    den = M * np.sin(theta / 2)
    small = np.abs(den) < 1e-12
    out = np.where(small, 1.0, np.sin(M * theta / 2) / np.where(small, 1.0, den))
    # at theta = 2 pi k the limit is (-1)^{k (M - 1)} = 1 for odd M
    return out


def orbit_grid_bound(
    G: np.ndarray, Q: np.ndarray, L: int, groups: np.ndarray, kappa: float = 1 / 3
) -> tuple[np.ndarray, np.ndarray]:
    """Rigorous sup over all rotations of |f_g(R)|, f(R) = G (rho(R) Q - Q), per row group g.

    ``G`` (n, d, d, d) rows, ``groups`` (n,) group index of each row (the norm of a group is the
    Euclidean norm of its rows). With Euler angles R = Rz(alpha) Ry(beta) Rz(gamma), every
    entry of rho(R) is a trigonometric polynomial of degree <= n_deg = 3L in each angle, so is
    f; sampling alpha and gamma at M = 2 n_deg + 1 points determines it exactly (Dirichlet
    interpolation), and f is evaluated on a grid of spacing h <= 2 kappa / (3 n_deg) in each
    angle. Bernstein's inequality (|p'| <= n_deg sup|p| for vector-valued trigonometric
    polynomials) along the three coordinate moves to the nearest grid point gives
    ``sup |f_g| <= max_grid |f_g| / (1 - kappa)``. Returns (that bound, max_grid |f_g|) per
    group and the same two numbers for the norm of all rows together.
    """
    n_deg = 3 * L
    M = 2 * n_deg + 1
    h_target = 2 * kappa / (3 * max(n_deg, 1))
    n_b = int(np.ceil(np.pi / h_target)) + 1
    n_f = int(np.ceil(2 * np.pi / h_target))
    h = max(np.pi / (n_b - 1), 2 * np.pi / n_f)
    factor = 1.0 - n_deg * 3 * h / 2
    if not factor > 0:
        raise ValueError(f"kappa must lie in (0, 1), got {kappa}")
    n_groups = int(groups.max()) + 1
    rows = G.reshape(len(G), -1)
    base = rows @ Q.reshape(-1)
    nodes = 2 * np.pi * np.arange(M) / M
    fine = 2 * np.pi * np.arange(n_f) / n_f
    K = _dirichlet(fine[:, None] - nodes[None, :], M)  # (n_f, M)

    def rz(t):
        c, s = np.cos(t), np.sin(t)
        R = np.zeros((len(t), 3, 3))
        R[:, 0, 0], R[:, 0, 1], R[:, 1, 0], R[:, 1, 1], R[:, 2, 2] = c, -s, s, c, 1
        return R

    def ry(t):
        c, s = np.cos(t), np.sin(t)
        R = np.zeros((len(t), 3, 3))
        R[:, 0, 0], R[:, 0, 2], R[:, 2, 0], R[:, 2, 2], R[:, 1, 1] = c, s, -s, c, 1
        return R

    from tdn_theory.so3 import block_wigner_D

    D_alpha = block_wigner_D(L, rz(nodes))  # (M, d, d)
    D_gamma = block_wigner_D(L, rz(nodes))
    # rho(R) = rho(gamma) rho(beta) rho(alpha) (rho reverses products), so
    # <g, rho(R) Q> = <rho(gamma)^T g, rho(beta) rho(alpha) Q> and rho(gamma)^T = rho(gamma^-1)
    Dg_inv = np.swapaxes(D_gamma, -1, -2)
    A = np.stack([_rho(Dg_inv, g.reshape(Q.shape)) for g in G], 1)  # (M, n, d, d, d)
    A = A.reshape(M * len(G), -1)
    Qa = _rho(D_alpha, Q)  # (M, d, d, d)
    best = np.zeros(n_groups)
    betas = np.linspace(0.0, np.pi, n_b)
    D_beta = block_wigner_D(L, ry(betas))
    onehot = np.zeros((len(G), n_groups))
    onehot[np.arange(len(G)), groups] = 1.0
    n = len(G)
    best_total = 0.0
    for b in range(n_b):
        B = _rho(D_beta[b][None], Qa).reshape(M, -1)  # rho(beta) rho(alpha_p) Q
        S = (A @ B.T).reshape(M, n * M) - np.repeat(base, M)[None, :]
        # S[q, (r, p)] = f_r(alpha_p, beta, gamma_q); interpolate both angles to the fine grid
        S = (K @ S).reshape(n_f, n, M)  # [gamma_f, r, alpha_p]
        vals = S @ K.T  # [gamma_f, r, alpha_f]
        sq = vals**2
        per_group = np.einsum("frg,rn->nfg", sq, onehot, optimize=True)
        best = np.maximum(best, np.sqrt(per_group.reshape(n_groups, -1).max(axis=1)))
        best_total = max(best_total, float(np.sqrt(sq.sum(axis=1).max())))
    return best / factor, best, best_total / factor, best_total


# --------------------------------------------------------------------------------------------
# the certificate
# --------------------------------------------------------------------------------------------


def _gather(x: np.ndarray, dst: np.ndarray, N: int, axis: int) -> np.ndarray:
    """Sum x over its edge axis ``axis`` into the destination atoms (length N on that axis)."""
    moved = np.moveaxis(x, axis, 0)
    incidence = np.zeros((N, len(dst)))
    incidence[dst, np.arange(len(dst))] = 1.0
    acc = (incidence @ moved.reshape(len(dst), -1)).reshape(N, *moved.shape[1:])
    return np.moveaxis(acc, 0, axis)


def _silu_prime(u):
    s = 1.0 / (1.0 + np.exp(-u))
    return s * (1 + u * (1 - s))


def _silu_second(u):
    s = 1.0 / (1.0 + np.exp(-u))
    ds = s * (1 - s)
    return ds * (2 + u * (1 - 2 * s))


def _sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def certificate(
    q: LinearisedQuantities, *, grid: bool = True, grid_budget: float = 1e9
) -> Certificate:
    """Theorem 2 of proofs/network_propagation.md on one configuration (see the module docstring).

    A-priori bounds (Lemma 6), per block (i, c, l), with eps2[lo, li] = 2 min(||E^{lo,li}||_2,
    ||Q^{lo,li}||_2) (the slices of Delta_R), n_e[lo, li] >= ||X_R^{lo,li}(., Y_e)||_2 for every R:

        dm_icl  <= (1/a) sum_e |w_ec| sum_li n_e[l, li] alpha_jcli + local_icl
        du_icl  <= sum_c' |W_l[c, c']| dm_ic'l,   dz_icl <= sum_c' |G[c', (c, l)]| dm_ic'0
        alpha^t = alpha^{t-1} + (gate defect bound at x's slopes, second order included)

    and the same for the tangents along each displacement v. The remainders c_t, q_t, q_phi (and
    their tangents) are bounded from these and paired with the adjoints' block norms.
    """
    T, T_hat = q.T, q.T_hat
    d = T.shape[0]
    L = degree_from_dim(d)
    nl = L + 1
    sl = degree_slices(L)
    N, a = q.n_atoms, float(q.avg_neighbors)
    src, dst = np.asarray(q.src), np.asarray(q.dst)
    K = q.inputs.shape[0]
    C = q.inputs.shape[2]
    V = q.forces.shape[0]
    E_err = T_hat - T
    PT = project_invariant(T_hat, L)
    Qt = T_hat - PT
    eps_slice = 2 * np.minimum(_slice_norms(E_err, L), _slice_norms(Qt, L))  # Delta_R slices
    S_slice = _slice_norms(T_hat, L)  # = slices of X_R (rotation invariant)
    eps3 = 2 * np.minimum(_trilinear_norms(E_err, L), _trilinear_norms(Qt, L))
    Y, Yt = q.harmonics, q.harmonic_tangents  # (E, d), (V, E, d)
    y = np.linalg.norm(Y, axis=1)
    yt = np.linalg.norm(Yt, axis=2)  # (V, E)
    n_edge = np.minimum(
        _edge_op_norms(T, Y, L) + _slice_norms(E_err, L)[None] * y[:, None, None],
        _edge_op_norms(PT, Y, L) + _slice_norms(Qt, L)[None] * y[:, None, None],
    )  # (E, nl, nl) >= ||X_R^{lo,li}(., Y_e)||
    rows_E, rows_Q = _row_norms(E_err, L), _row_norms(Qt, L)
    slices_E, slices_Q = _slice_norms(E_err, L), _slice_norms(Qt, L)

    def local(Gm: np.ndarray) -> np.ndarray:
        """Bound on |(rho(R) E - E)(G)|_lo per block for matrices G (..., d, d) [i, j]: the
        aggregated local term, min over anchoring at T (E) and at P T_hat (Q)."""
        best = None
        Gf = np.linalg.norm(Gm, axis=(-2, -1))
        Gli = np.stack([np.linalg.norm(Gm[..., s, :], axis=(-2, -1)) for s in sl], -1)
        for X, rows, slc in ((E_err, rows_E, slices_E), (Qt, rows_Q, slices_Q)):
            fixed = _block_norms(np.einsum("kij,...ij->...k", X, Gm, optimize=True), L)
            moving = np.minimum(Gf[..., None] * rows, Gli @ slc.T)
            b = fixed + moving
            best = b if best is None else np.minimum(best, b)
        return best

    silu2_sup, silu3_sup = SILU_CURVATURE, SILU_THIRD
    sig1, sig2, sig3 = SIGMOID_LIPSCHITZ, SIGMOID_CURVATURE, SIGMOID_THIRD

    alpha = np.zeros((N, C, nl))  # a-priori |Delta h_{icl}|
    alphat = np.zeros((V, N, C, nl))  # a-priori |Delta hdot_{v,icl}|
    apriori = [alpha.copy()]
    rem_E = 0.0
    rem_F = np.zeros(V)
    for t in range(K):
        h = q.inputs[t]  # (N, C, d)
        ht = q.input_tangents[t]  # (V, N, C, d)
        w = q.weights[t]  # (E, C)
        wt = q.weight_tangents[t]  # (V, E, C)
        aw, awt = np.abs(w), np.abs(wt)
        # ---- messages: defect bounds (full) and cross terms --------------------------------
        prop = np.einsum("elm,ecm->ecl", n_edge, alpha[src], optimize=True)  # (E, C, nl)
        G_val = np.einsum("ec,eci,ej->ecij", w, h[src], Y, optimize=True)
        G_val = _gather(G_val, dst, N, 0) / a
        loc = local(G_val)  # (N, C, nl)
        dm = _gather(aw[:, :, None] * prop, dst, N, 0) / a + loc
        cross_e = np.einsum("lm,ecm->ecl", eps_slice, alpha[src])  # |Delta_R(Dh, .)| per |Y|
        cross = _gather(aw[:, :, None] * y[:, None, None] * cross_e, dst, N, 0) / a
        # tangents
        propt = np.einsum("elm,vecm->vecl", n_edge, alphat[:, src], optimize=True)
        # node-level G for the tangents, summing edge by edge per channel (batched matmuls)
        inc = np.zeros((N, len(src)))
        inc[dst, np.arange(len(src))] = 1.0 / a
        iY = inc[:, :, None] * Y[None]  # (N, E, d)
        wh = w[:, :, None] * h[src]  # (E, C, d)
        Gt = np.einsum("veci,nej->vncij", w[None, :, :, None] * ht[:, src], iY, optimize=True)
        Gt += np.einsum("eci,vej,ne->vncij", wh, Yt, inc, optimize=True)
        edge_hY = h[src][..., None] * Y[:, None, None, :]  # (E, C, d, d)
        for c in range(C):  # sum_e inc[n, e] wt[v, e, c] (h_jc Y_e^T)
            weights_c = inc[None] * wt[:, None, :, c]  # (V, N, E)
            Gt[:, :, c] += (weights_c @ edge_hY[:, c].reshape(len(src), -1)).reshape(V, N, d, d)
        loct = local(Gt)
        S_prop = np.einsum("lm,ecm->ecl", S_slice, alpha[src])  # X_R(Dh, Ydot)/|Ydot|
        dmt = (
            _gather(aw[None, :, :, None] * propt, dst, N, 1)
            + _gather(aw[None, :, :, None] * yt[:, :, None, None] * S_prop[None], dst, N, 1)
            + _gather(awt[..., None] * prop[None], dst, N, 1)
        ) / a + loct
        cross_t_e = np.einsum("lm,vecm->vecl", eps_slice, alphat[:, src], optimize=True)
        crosst = (
            _gather(aw[None, :, :, None] * y[None, :, None, None] * cross_t_e, dst, N, 1)
            + _gather(aw[None, :, :, None] * yt[:, :, None, None] * cross_e[None], dst, N, 1)
            + _gather(awt[..., None] * y[None, :, None, None] * cross_e[None], dst, N, 1)
        ) / a
        # ---- mixing and gate scalars ---------------------------------------------------------
        Wabs = np.abs(q.mix[t])  # (nl, C, C) [l, out, in]
        du = np.einsum("loc,ncl->nol", Wabs, dm, optimize=True)
        dut = np.einsum("loc,vncl->vnol", Wabs, dmt, optimize=True)
        if L > 0:
            Gabs = np.abs(q.gate_matrices[t]).reshape(C, C, L)  # [in c', out c, l-1]
            dz = np.einsum("pcl,np->ncl", Gabs, dm[:, :, 0], optimize=True)
            dzt = np.einsum("pcl,vnp->vncl", Gabs, dmt[:, :, :, 0], optimize=True)
        else:
            dz = np.zeros((N, C, 0))
            dzt = np.zeros((V, N, C, 0))
        # ---- gate: defect bounds, remainders -------------------------------------------------
        u = q.mixed[t]
        ut = q.mixed_tangents[t]
        z = q.gates[t]
        zt = q.gate_tangents[t]
        un = _block_norms(u, L)  # (N, C, nl)
        utn = _block_norms(ut, L)  # (V, N, C, nl)
        u0, ut0 = u[:, :, 0], ut[:, :, :, 0]
        s1 = np.abs(_silu_prime(u0))
        s2 = np.abs(_silu_second(u0))
        du0, dut0 = du[:, :, 0], dut[:, :, :, 0]
        g_val = np.zeros((N, C, nl))
        g_tan = np.zeros((V, N, C, nl))
        r_val = np.zeros((N, C, nl))
        r_tan = np.zeros((V, N, C, nl))
        g_val[:, :, 0] = (s1 + 0.5 * silu2_sup * du0) * du0
        r_val[:, :, 0] = 0.5 * silu2_sup * du0**2
        slope_change = np.minimum(silu2_sup * du0, s2 * du0 + 0.5 * silu3_sup * du0**2)
        g_tan[:, :, :, 0] = (s1 + silu2_sup * du0)[None] * dut0 + slope_change[None] * np.abs(ut0)
        r_tan[:, :, :, 0] = 0.5 * silu3_sup * du0[None] ** 2 * np.abs(ut0) + silu2_sup * du0[
            None
        ] * np.abs(dut0)
        if L > 0:
            sg = _sigmoid(z)  # (N, C, L)
            sg1 = sg * (1 - sg)
            sg2 = np.abs(sg1 * (1 - 2 * sg))
            dzl, dztl = dz, dzt  # (N, C, L), (V, N, C, L)
            dul, dutl = du[:, :, 1:], dut[:, :, :, 1:]
            unl, utnl = un[:, :, 1:], utn[:, :, :, 1:]
            ztn = np.abs(zt)
            g_val[:, :, 1:] = (
                np.minimum(1.0, sg + sig1 * dzl) * dul + (sg1 * dzl + 0.5 * sig2 * dzl**2) * unl
            )
            r_val[:, :, 1:] = sig1 * dzl * dul + 0.5 * sig2 * dzl**2 * unl
            sig_new = np.minimum(1.0, sg + sig1 * dzl)
            sig1_new = np.minimum(sig1, sg1 + sig2 * dzl)
            g_tan[:, :, :, 1:] = (
                sig_new[None] * dutl
                + (sg1 * dzl + 0.5 * sig2 * dzl**2)[None] * utnl
                + sig1_new[None] * (dztl * unl[None] + ztn * dul[None] + dztl * dul[None])
                + (sg2 * dzl + 0.5 * sig3 * dzl**2)[None] * ztn * unl[None]
            )
            r_tan[:, :, :, 1:] = (
                0.5 * sig2 * dzl[None] ** 2 * utnl
                + sig1 * dzl[None] * dutl
                + sig1 * dztl * dul[None]
                + sig2 * dzl[None] * (ztn * dul[None] + dztl * unl[None] + dztl * dul[None])
                + 0.5 * sig3 * dzl[None] ** 2 * ztn * unl[None]
            )
        # ---- pair the remainders with the adjoints ------------------------------------------
        lm = _block_norms(q.message_adjoint[t], L)  # (N, C, nl)
        lh = _block_norms(q.feature_adjoint[t], L)
        lmt = _block_norms(q.message_adjoint_tangent[t], L)  # (V, N, C, nl)
        lht = _block_norms(q.feature_adjoint_tangent[t], L)
        # cross terms paired edge by edge: |<lam_{i c}, Delta_R(a_{j c}, b_e)>| <=
        # sum_{lo, li, lj} eps3[lo, li, lj] |lam_lo| |a_li| |b_lj| (min(., the per-degree bound))
        lm_e, lmt_e = lm[dst], lmt[:, dst]  # (E, C, nl), (V, E, C, nl)
        Yb, Ytb = _block_norms(Y, L), _block_norms(Yt, L)  # (E, nl), (V, E, nl)
        al, alt = alpha[src], alphat[:, src]

        def tri(lam, amp, yb):
            return np.einsum("...ecx,xyz,...ecy,...ez->...ec", lam, eps3, amp, yb, optimize=True)

        cross_E = (aw * tri(lm_e, al, Yb)).sum() / a
        cross_F = (
            (aw[None] * tri(lmt_e, al[None], Yb[None])).sum(axis=(1, 2))
            + (aw[None] * tri(lm_e[None], alt, Yb[None])).sum(axis=(1, 2))
            + (aw[None] * tri(lm_e[None], al[None], Ytb)).sum(axis=(1, 2))
            + (awt * tri(lm_e[None], al[None], Yb[None])).sum(axis=(1, 2))
        ) / a
        rem_E += float(min(cross_E, (lm * cross).sum()) + (lh * r_val).sum())
        rem_F += (
            np.minimum(
                cross_F,
                (lmt * cross[None]).sum(axis=(1, 2, 3)) + (lm[None] * crosst).sum(axis=(1, 2, 3)),
            )
            + (lht * r_val[None]).sum(axis=(1, 2, 3))
            + (lh[None] * r_tan).sum(axis=(1, 2, 3))
        )
        alpha = alpha + g_val
        alphat = alphat + g_tan
        apriori.append(alpha.copy())
    # ---- readout: per hidden unit k, p = W1^T s, r_ik = |W1[:, k]| |Delta s_i| ------------------
    W1, w2 = q.readout_1, q.readout_2
    col = np.linalg.norm(W1, axis=0)  # (H,)
    pre = q.scalars @ W1  # (N, H)
    ds = np.linalg.norm(alpha[:, :, 0], axis=1)  # (N,) >= |Delta s_i|
    dst_ = np.linalg.norm(alphat[:, :, :, 0], axis=2)  # (V, N) >= |Delta sdot_{v,i}|
    r = ds[:, None] * col[None]  # (N, H) >= |(W1^T Delta s_i)_k|
    aw2 = np.abs(w2)[None]
    silu2_at = np.abs(_silu_second(pre))

    def weighted_norm(c: np.ndarray) -> np.ndarray:
        """||W1 diag(c_i) W1^T||_2 per atom for c (N, H) >= 0."""
        return np.linalg.eigvalsh(np.einsum("ak,nk,bk->nab", W1, c, W1))[:, -1]

    curv_i = weighted_norm(aw2 * np.minimum(SILU_CURVATURE, silu2_at + SILU_THIRD * r))
    rem_E += float((0.5 * curv_i * ds**2).sum())
    proj = np.abs(np.einsum("vnc,ch->vnh", q.scalar_tangents, W1))  # |W1[:, k] . sdot_{v,i}|
    slope_i = weighted_norm(aw2 * np.minimum(SILU_CURVATURE, silu2_at + 0.5 * SILU_THIRD * r))
    rem_F += (
        (aw2[None] * 0.5 * SILU_THIRD * r[None] ** 2 * proj).sum(axis=2)
        + slope_i[None] * ds[None] * dst_
    ).sum(axis=1)
    # ---- first order: sup over R of the linear terms ------------------------------------------
    qn = float(np.linalg.norm(Qt))
    GQ, Gop = first_order_orbit_bound(q.energy_grad_tensor[None], Qt, L)
    fo_E = abs(float(GQ[0])) + Gop * qn  # Cauchy-Schwarz on the orbit
    Jp = _project_rows(q.force_grad_tensor, L).reshape(V, -1)
    JQ = Jp @ Qt.reshape(-1)
    fo_atoms = np.array(
        [
            np.linalg.norm(JQ[3 * k : 3 * k + 3]) + np.linalg.norm(Jp[3 * k : 3 * k + 3], 2) * qn
            for k in range(N)
        ]
    )
    fo_total = float(np.linalg.norm(JQ) + np.linalg.norm(Jp, 2) * qn)
    method = "cauchy-schwarz"
    est_E = est_F = None
    if grid and L > 0 and qn > 0 and (2 * 3 * L + 1) ** 2 * d**3 * V * (3 * L) <= grid_budget:
        method = "orbit grid"
        ub, gm, _, _ = orbit_grid_bound(q.energy_grad_tensor[None], Qt, L, np.zeros(1, int), 0.2)
        fo_E, est_E = min(fo_E, float(ub[0])), float(gm[0])
        ub, _, ub_tot, gm_tot = orbit_grid_bound(
            q.force_grad_tensor, Qt, L, np.arange(V) // 3, 1 / 3
        )
        fo_atoms, fo_total, est_F = np.minimum(fo_atoms, ub), min(fo_total, ub_tot), gm_tot
    if est_E is None:  # the linear terms at seeded Haar rotations
        from tdn_theory.so3 import block_wigner_D, random_rotations

        Dr = block_wigner_D(L, random_rotations(64, seed=0))
        delta = (_rho(Dr, Qt) - Qt).reshape(64, -1)
        est_E = float(np.abs(delta @ q.energy_grad_tensor.reshape(-1)).max())
        est_F = float(np.linalg.norm(delta @ q.force_grad_tensor.reshape(V, -1).T, axis=1).max())
    rem_atoms = np.sqrt((rem_F.reshape(N, 3) ** 2).sum(axis=1))
    return Certificate(
        energy=fo_E + rem_E,
        forces=fo_atoms + rem_atoms,
        force_total=fo_total + float(np.linalg.norm(rem_F)),
        energy_first_order=fo_E,
        energy_remainder=rem_E,
        force_first_order=fo_atoms,
        force_remainder=rem_atoms,
        energy_estimate=est_E,
        force_estimate=est_F,
        first_order_method=method,
        feature_apriori=np.array(apriori),
    )


def rounding_allowance(q: LinearisedQuantities, unit_roundoff: float) -> tuple[float, float]:
    """First-order forward rounding analysis of one evaluation of E and of F, (energy, forces).

    NOT part of the theorem (which is about exact arithmetic): an allowance for the floating-point
    evaluation of the network, used by ``models.network_bound.evaluate_bound`` to refuse bounds
    that rounding could reach. Every computed sum y = sum of n products carries an error
    <= gamma_n |y|_abs (gamma_n = n u / (1 - n u), |y|_abs the same sum over magnitudes); its
    effect on E is at most |dE/dy| gamma_n |y|_abs to first order in u. Summed over the messages
    m^t (|m|_abs = (1/a) sum_e |w_e| T_abs(|h_j|, |Y_e|)) and the features h^t (the mixing,
    gate and residual of layer t, with n the longest sum), times a safety factor 10 for the
    neglected O(u^2) terms, the backward pass and the transcendental functions; forces alike with
    the tangents along each displacement.
    """
    d = q.T.shape[0]
    K, N, C = q.inputs.shape[:3]
    src, dst = np.asarray(q.src), np.asarray(q.dst)
    a = float(q.avg_neighbors)
    indeg = np.bincount(dst, minlength=N).max() if len(dst) else 1
    n = d * d + int(indeg) + 2 * C + q.readout_1.shape[1] + 8
    u = float(unit_roundoff)
    gamma = n * u / (1 - n * u)
    absY = np.abs(q.harmonics)
    E_fl = 0.0
    F_fl = np.zeros(q.forces.shape[0])
    feats = list(q.inputs[1:]) + [None]
    for t in range(K):
        h = np.abs(q.inputs[t])
        m_abs = np.einsum("kij,eci,ej->eck", q.T_abs, h[src], absY, optimize=True)
        m_abs = _gather(np.abs(q.weights[t])[:, :, None] * m_abs, dst, N, 0) / a
        lm = np.abs(q.message_adjoint[t])
        lmt = np.abs(q.message_adjoint_tangent[t])
        h_next = np.abs(feats[t]) if feats[t] is not None else h
        lh = np.abs(q.feature_adjoint[t])
        lht = np.abs(q.feature_adjoint_tangent[t])
        E_fl += float((lm * m_abs).sum() + (lh * (h_next + h)).sum())
        ht = np.abs(q.input_tangents[t])
        mt_abs = np.einsum("kij,veci,ej->veck", q.T_abs, ht[:, src], absY, optimize=True)
        mt_abs = _gather(np.abs(q.weights[t])[None, :, :, None] * mt_abs, dst, N, 1) / a
        F_fl += (lmt * m_abs[None]).sum(axis=(1, 2, 3)) + (lm[None] * mt_abs).sum(axis=(1, 2, 3))
        F_fl += (lht * (h_next + h)[None]).sum(axis=(1, 2, 3))
    pre = np.abs(q.scalars) @ np.abs(q.readout_1)
    E_fl += float((np.abs(q.readout_2) * (pre + np.abs(pre))).sum()) + abs(q.energy)
    F_fl += np.abs(q.forces)
    return 10 * gamma * E_fl, 10 * gamma * float(np.linalg.norm(F_fl))
