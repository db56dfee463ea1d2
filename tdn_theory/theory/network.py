r"""Network-level equivariance bound: how tensor-product errors propagate through message passing.

Pure bound algebra on numbers and arrays (no model here; ``tdn_theory.models.network_bound``
collects the inputs from a ``TDNPotential`` on a configuration). Statement and proof:
proofs/network_propagation.md; checked by tests/test_models_network_bound.py.

The network (K layers, N atoms, C channels, degrees <= L; edges e = (j -> i)):

    m_i = (1/a) sum_{e -> i} w_e ⊙ M̂(h_j, Y_e),    u_i[:, l] = W_l m_i[:, l],   z_i = G m_i[:, 0],
    g_i = [SiLU(u_i[:, 0]) | sigmoid(z_i[:, l]) u_i[:, l] (l >= 1)],   h^t_i = h^{t-1}_i + g_i,
    E = sum_i phi(h^K_i[:, 0]) + const,   F = -dE/dx,

with M̂ (tensor T_hat) approximating an exactly equivariant M (tensor T). For a rotation R
(Wigner matrix D) the defects are Delta^t_i = h^t_i(Rx) - D h^t_i(x) (features),
E(Rx) - E(x) (energy) and F(Rx) - R F(x) (forces). Tensor-product constants
(:func:`tensor_product_constants`), X^(l) = X[:, block l, :] the slice of input-1 degree l:

    eps_l = min(||(T_hat - T)^(l)_(1)||_2, ||((I - P) T_hat)^(l)_(1)||_2),  P the projection onto
            the invariant path tensors, so that |M̂(Da, Db) - D M̂(a, b)| <= 2 sum_l eps_l |a_l| |b|;
    S     = ||T_hat_(1)||_2, so that |M̂(a, b)| <= S |a| |b|.

:func:`network_bound` returns R-independent bounds computed from quantities of the network at x
(feature norms per channel and degree, radial weights and their gradients, weight-matrix norms,
and the Jacobians of the features with respect to each atom's position). Index order: tangent
arrays are [k (the atom moved), i (the atom), ...], edge arrays [e, ...], atom arrays [i, c, l].
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from tdn_theory.so3 import degree_from_dim, degree_slices
from tdn_theory.theory.measurements import project_invariant

__all__ = [
    "SIGMOID_CURVATURE",
    "SIGMOID_LIPSCHITZ",
    "SILU_CURVATURE",
    "SILU_LIPSCHITZ",
    "LayerQuantities",
    "NetworkBound",
    "NetworkQuantities",
    "network_bound",
    "tensor_product_constants",
]

#: sup |SiLU'(x)| = 1.0998393201... (at x ~ 2.3994), rounded up.
SILU_LIPSCHITZ = 1.09984
#: sup |SiLU''(x)| = 1/2 (at x = 0).
SILU_CURVATURE = 0.5
#: sup |sigmoid'(x)| = 1/4 (at x = 0).
SIGMOID_LIPSCHITZ = 0.25
#: sup |sigmoid''(x)| = 1/(6 sqrt 3) = 0.0962250448..., rounded up.
SIGMOID_CURVATURE = 0.0962251


def tensor_product_constants(T: np.ndarray, T_hat: np.ndarray) -> tuple[np.ndarray, float]:
    """``(eps_by_degree, S)`` for (d, d, d) tensors indexed [k, i, j], T exactly equivariant.

    ``eps_by_degree[l] = min(||E^(l)_(1)||_2, ||Q^(l)_(1)||_2)`` with E = T_hat - T,
    Q = (I - P) T_hat (P: ``theory.measurements.project_invariant``) and X^(l) the slice of
    input-1 indices of degree l; ``S = ||T_hat_(1)||_2``. Then for all rotations and inputs
    ``|M̂(Da, Db) - D M̂(a, b)| <= 2 sum_l eps_l |a_l| |b|`` and ``|M̂(a, b)| <= S |a| |b|``;
    ``2 max_l eps_l`` is at most the a-posteriori bound ``2 ||E_(1)||_2``.
    """
    T = np.asarray(T, dtype=np.float64)
    T_hat = np.asarray(T_hat, dtype=np.float64)
    if T.ndim != 3 or T.shape != T_hat.shape or len(set(T.shape)) != 1:
        raise ValueError(
            f"T and T_hat must be (d, d, d) tensors of one shape, got {T.shape}, {T_hat.shape}"
        )
    d = T.shape[0]
    L = degree_from_dim(d)
    E = T_hat - T
    Q = T_hat - project_invariant(T_hat, L)
    eps = np.array(
        [
            min(
                np.linalg.norm(E[:, s, :].reshape(d, -1), 2),
                np.linalg.norm(Q[:, s, :].reshape(d, -1), 2),
            )
            for s in degree_slices(L)
        ]
    )
    S = float(np.linalg.norm(T_hat.reshape(d, -1), 2))
    return eps, S


@dataclass(frozen=True)
class LayerQuantities:
    """What layer t contributes, measured on the network at the configuration x.

    weight (E, C): w_e[c]; weight_grad (E, C): |grad_r w_e[c]| (gradient w.r.t. the edge vector).
    input_norms (N, C, L+1): |h_i[c, l]| of the layer input h = h^{t-1}.
    input_tangent (N_k, N, C, L+1): |d h_i[c, l] / d x_k|_2 (operator norm over the three
        directions of atom k).
    gated_max (N,): max_{c, l>=1} |u_i[c, l]| (0 when L = 0).
    mixed_tangent (N_k, N): max_{c, l>=0} |d u_i[c, l] / d x_k|_2.
    gate_tangent (N_k, N): max_{c, l>=1} |d z_i[c, l] / d x_k|_2 (0 when L = 0).
    mix_norm = max_l ||W_l||_2, gate_norm = ||G||_2 (0 when L = 0).
    """

    weight: np.ndarray
    weight_grad: np.ndarray
    input_norms: np.ndarray
    input_tangent: np.ndarray
    gated_max: np.ndarray
    mixed_tangent: np.ndarray
    gate_tangent: np.ndarray
    mix_norm: float
    gate_norm: float


@dataclass(frozen=True)
class NetworkQuantities:
    """Everything :func:`network_bound` needs for one configuration.

    src, dst (E,): edge e carries a message from atom src[e] = j to dst[e] = i (a periodic
    self-image has src = dst). harmonic_norm[e] = |Y_e|, harmonic_grad[e] = ||d Y_e / d r_e||_2.
    avg_neighbors: the constant a. eps (L+1,), S: :func:`tensor_product_constants`.
    readout_lipschitz: a Lipschitz constant of phi; readout_curvature: of grad phi.
    scalar_tangent (N_k, N): |d h^K_i[:, 0] / d x_k|_2. layers: one :class:`LayerQuantities`
    per layer. readout_gradient (N,): |grad phi(s_i)| at x (None: use readout_lipschitz).
    """

    src: np.ndarray
    dst: np.ndarray
    n_atoms: int
    avg_neighbors: float
    harmonic_norm: np.ndarray
    harmonic_grad: np.ndarray
    eps: np.ndarray
    S: float
    layers: Sequence[LayerQuantities]
    readout_lipschitz: float
    readout_curvature: float
    scalar_tangent: np.ndarray
    readout_gradient: np.ndarray | None = None


@dataclass(frozen=True)
class NetworkBound:
    """Bounds valid for every rotation R.

    features (K+1, N): |Delta^t_i| <= features[t, i]; feature_total[t] = sqrt(sum_i features^2).
    tangents (K+1, N_k, N): the same for the Jacobian defects d/dx_k.
    energy: |E(Rx) - E(x)| <= energy. forces (N_k,): |F_k(Rx) - R F_k(x)| <= forces[k];
    force_total = sqrt(sum_k forces^2) bounds |F(Rx) - R F(x)|_F.
    """

    features: np.ndarray
    feature_total: np.ndarray
    tangents: np.ndarray
    energy: float
    forces: np.ndarray
    force_total: float


def _check(q: NetworkQuantities) -> None:
    E = len(q.src)
    N = q.n_atoms
    if len(q.dst) != E or len(q.harmonic_norm) != E or len(q.harmonic_grad) != E:
        raise ValueError("src, dst, harmonic_norm, harmonic_grad must all have one entry per edge")
    if E and (min(q.src.min(), q.dst.min()) < 0 or max(q.src.max(), q.dst.max()) >= N):
        raise ValueError(f"edge endpoints must lie in 0..{N - 1}")
    if not q.avg_neighbors > 0:
        raise ValueError(f"avg_neighbors must be positive, got {q.avg_neighbors}")
    eps = np.asarray(q.eps, dtype=np.float64)
    if eps.ndim != 1 or not np.all(np.isfinite(eps)) or np.any(eps < 0):
        raise ValueError("eps must be a 1-D array (one entry per degree) of finite numbers >= 0")
    for name in ("S", "readout_lipschitz", "readout_curvature"):
        value = getattr(q, name)
        if not (np.isfinite(value) and value >= 0):
            raise ValueError(f"{name} must be a finite number >= 0, got {value}")
    if not q.layers:
        raise ValueError("layers is empty: the bound needs at least one layer")
    Nk = q.scalar_tangent.shape[0]
    n_deg = len(eps)
    for t, layer in enumerate(q.layers, start=1):
        C = np.shape(layer.weight)[-1] if np.ndim(layer.weight) == 2 else -1
        shapes = {
            "weight": (E, C),
            "weight_grad": (E, C),
            "input_norms": (N, C, n_deg),
            "input_tangent": (Nk, N, C, n_deg),
            "gated_max": (N,),
            "mixed_tangent": (Nk, N),
            "gate_tangent": (Nk, N),
        }
        for name, shape in shapes.items():
            if np.shape(getattr(layer, name)) != shape:
                raise ValueError(
                    f"layer {t}: {name} has shape {np.shape(getattr(layer, name))}, "
                    f"expected {shape}"
                )
    if q.scalar_tangent.shape != (Nk, N):
        raise ValueError(f"scalar_tangent must have shape (N_k, {N})")
    if q.readout_gradient is not None and np.shape(q.readout_gradient) != (N,):
        raise ValueError(f"readout_gradient must have shape ({N},)")


def network_bound(q: NetworkQuantities) -> NetworkBound:
    """Evaluate the bound of proofs/network_propagation.md (Theorem 1) on one configuration.

    Per edge e = (j -> i) of a layer: omega_e = max_c |w_e[c]|, omegadot_e = max_c |grad w_e[c]|,
    the eps-weighted input norms
        nu_e    = sqrt(sum_c w_e[c]^2 (sum_l eps_l |h_j[c, l]|)^2),
        nudot_e = sqrt(sum_c |grad w_e[c]|^2 (sum_l eps_l |h_j[c, l]|)^2),
        Hdot_kj = sqrt(sum_c (sum_l eps_l |d h_j[c, l] / d x_k|)^2),
    and chi[k, e] = 1 when k is an endpoint of e and src(e) != dst(e), else 0. Recursion over
    layers with beta^0 = 0, betadot^0 = 0 (the embedding depends on neither x nor R):

        mu_i      = (1/a) sum_{e->i} y_e (S omega_e beta_j + 2 nu_e)
        mudot_ki  = (1/a) sum_{e->i} [ y_e chi_ke (S omegadot_e beta_j + 2 nudot_e)
                                       + y_e omega_e (S betadot_kj + 2 Hdot_kj)
                                       + ydot_e chi_ke (S omega_e beta_j + 2 nu_e) ]
        du = ||W|| mu,  dz = ||G|| mu,  dudot = ||W|| mudot,  dzdot = ||G|| mudot
        beta^t    = beta^{t-1} + kappa du + (1/4) U dz
        betadot^t = betadot^{t-1} + kappa dudot + kappa2 Udot du + (1/4) Udot dz
                    + (1/4) Zdot du + (1/4) dzdot du + (1/4) U dzdot + sigma2 Zdot U dz

    (kappa = sup|SiLU'|, kappa2 = sup|SiLU''|, sigma2 = sup|sigmoid''|). With g_i the readout
    slope at x (lip_phi when not given), lip_phi and curv_phi the Lipschitz constants of phi and
    grad phi, beta = beta^K, betadot = betadot^K:
    energy <= sum_i min(lip_phi beta_i, g_i beta_i + curv_phi beta_i^2 / 2) and
    force_k <= sum_i (min(lip_phi, g_i + curv_phi beta_i) betadot_ki + curv_phi beta_i Sdot_ki).
    """
    _check(q)
    src = np.asarray(q.src, dtype=np.int64)
    dst = np.asarray(q.dst, dtype=np.int64)
    N = q.n_atoms
    Nk = q.scalar_tangent.shape[0]
    a = float(q.avg_neighbors)
    eps = np.asarray(q.eps, dtype=np.float64)
    S = float(q.S)
    y = np.asarray(q.harmonic_norm, dtype=np.float64)
    ydot = np.asarray(q.harmonic_grad, dtype=np.float64)
    moving = src != dst
    chi = np.zeros((Nk, len(src)))
    ks = np.arange(Nk)
    chi[:, moving] = (ks[:, None] == src[None, moving]) | (ks[:, None] == dst[None, moving])
    incidence = np.zeros((len(dst), N))
    incidence[np.arange(len(dst)), dst] = 1.0

    def gather(per_edge: np.ndarray) -> np.ndarray:
        """Sum over the edges into their destination atom: (..., E) -> (..., N)."""
        return per_edge @ incidence

    beta = np.zeros(N)
    betadot = np.zeros((Nk, N))
    features = [beta.copy()]
    tangents = [betadot.copy()]
    for layer in q.layers:
        w = np.abs(np.asarray(layer.weight, dtype=np.float64))  # (E, C)
        wdot = np.asarray(layer.weight_grad, dtype=np.float64)
        err_in = np.asarray(layer.input_norms, dtype=np.float64) @ eps  # (N, C)
        err_tan = np.sqrt(((np.asarray(layer.input_tangent, dtype=np.float64) @ eps) ** 2).sum(-1))
        omega, omegadot = w.max(axis=1), wdot.max(axis=1)
        nu = np.sqrt(((w * err_in[src]) ** 2).sum(axis=1))
        nudot = np.sqrt(((wdot * err_in[src]) ** 2).sum(axis=1))
        U = np.asarray(layer.gated_max, dtype=np.float64)
        Udot = np.asarray(layer.mixed_tangent, dtype=np.float64)
        Zdot = np.asarray(layer.gate_tangent, dtype=np.float64)
        value_edge = S * omega * beta[src] + 2 * nu  # (E,)
        mu = gather(y * value_edge) / a
        mudot_edge = (
            y[None] * chi * (S * omegadot * beta[src] + 2 * nudot)[None]
            + (y * omega)[None] * (S * betadot[:, src] + 2 * err_tan[:, src])
            + ydot[None] * chi * value_edge[None]
        )
        mudot = gather(mudot_edge) / a
        du, dz = layer.mix_norm * mu, layer.gate_norm * mu
        dudot, dzdot = layer.mix_norm * mudot, layer.gate_norm * mudot
        betadot = (
            betadot
            + SILU_LIPSCHITZ * dudot
            + SILU_CURVATURE * Udot * du[None]
            + SIGMOID_LIPSCHITZ * Udot * dz[None]
            + SIGMOID_LIPSCHITZ * Zdot * du[None]
            + SIGMOID_LIPSCHITZ * dzdot * du[None]
            + SIGMOID_LIPSCHITZ * U[None] * dzdot
            + SIGMOID_CURVATURE * Zdot * U[None] * dz[None]
        )
        beta = beta + SILU_LIPSCHITZ * du + SIGMOID_LIPSCHITZ * U * dz
        features.append(beta.copy())
        tangents.append(betadot.copy())
    feats = np.array(features)
    lip, curv = float(q.readout_lipschitz), float(q.readout_curvature)
    grad = np.full(N, lip) if q.readout_gradient is None else np.asarray(q.readout_gradient)
    energy = float(np.minimum(lip * beta, grad * beta + 0.5 * curv * beta**2).sum())
    slope = np.minimum(lip, grad + curv * beta)  # bounds |grad phi(s_i(Rx))|
    forces = (slope[None] * betadot + curv * beta[None] * q.scalar_tangent).sum(axis=1)
    return NetworkBound(
        features=feats,
        feature_total=np.sqrt((feats**2).sum(axis=1)),
        tangents=np.array(tangents),
        energy=energy,
        forces=forces,
        force_total=float(np.sqrt((forces**2).sum())),
    )
