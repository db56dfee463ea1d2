r"""Network-level equivariance bound: how tensor-product errors propagate through message passing.

Pure bound algebra on numbers and arrays (no model here; ``tdn_theory.models.network_bound``
collects the inputs from a ``TDNPotential`` on a configuration). Statement and proof:
proofs/network_propagation.md; checked by tests/test_network_bound.py.

The network (K layers, N atoms, C channels, degrees <= L; edges e = (j -> i)):

    m_i = (1/a) sum_{e -> i} w_e ⊙ M̂(h_j, Y_e),    u_i[:, l] = W_l m_i[:, l],   z_i = G m_i[:, 0],
    g_i = [SiLU(u_i[:, 0]) | sigmoid(z_i[:, l]) u_i[:, l] (l >= 1)],   h^t_i = h^{t-1}_i + g_i,
    E = sum_i phi(h^K_i[:, 0]) + const,   F = -dE/dx,

with M̂ = M + E_tp a bilinear map that approximates an exactly equivariant M. For a rotation R
(Wigner matrix D) the defects are Delta^t_i = h^t_i(Rx) - D h^t_i(x) (features),
E(Rx) - E(x) (energy) and F(Rx) - R F(x) (forces). With

    eps = ||(E_tp)_(1)||_2 (so the tensor-product equivariance defect is <= 2 eps |a| |b|),
    S   = ||M̂_(1)||_2    (so |M̂(a, b)| <= S |a| |b|),

:func:`network_bound` returns R-independent bounds computed from quantities of the network at x
(feature norms, radial weights and their gradients, weight-matrix norms, and the Jacobians of
the features with respect to each atom's position). Index order: tangent arrays are
[k (the atom moved), i (the atom whose feature)], edge arrays are [e].
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

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


def tensor_product_constants(T: np.ndarray, T_hat: np.ndarray) -> tuple[float, float]:
    """``(eps, S) = (||(T_hat - T)_(1)||_2, ||T_hat_(1)||_2)`` for (d, d, d) tensors [k, i, j].

    ``2 eps`` is the a-posteriori equivariance bound per unit inputs
    (``tdn_theory.theory.aposteriori_bound(T, T_hat)["spectral"]``); ``S`` bounds the bilinear
    map: ``|T_hat(a, b)| <= S |a| |b|``.
    """
    T = np.asarray(T, dtype=np.float64)
    T_hat = np.asarray(T_hat, dtype=np.float64)
    if T.ndim != 3 or T.shape != T_hat.shape:
        raise ValueError(
            f"T and T_hat must be 3-way tensors of one shape, got {T.shape}, {T_hat.shape}"
        )
    d = T.shape[0]
    eps = float(np.linalg.norm((T_hat - T).reshape(d, -1), 2))
    S = float(np.linalg.norm(T_hat.reshape(d, -1), 2))
    return eps, S


@dataclass(frozen=True)
class LayerQuantities:
    """What layer t contributes, measured on the network at the configuration x.

    Edge arrays (E,), for edge e = (j -> i) of this layer's input h = h^{t-1}:
        weight_max[e]          max_c |w_e[c]|
        weight_grad_max[e]     max_c |grad_r w_e[c]| (gradient w.r.t. the edge vector)
        weighted_input[e]      |w_e ⊙ h_j| = sqrt(sum_c w_e[c]^2 |h_j[c]|^2)
        weighted_input_grad[e] sqrt(sum_c |grad_r w_e[c]|^2 |h_j[c]|^2)
    Atom arrays (N,): gated_max[i] = max_{c, l>=1} |u_i[c, l]| (0 when L = 0).
    Tangent arrays (N_k, N) [k, i], operator norms over unit displacements of atom k:
        input_tangent   |d h_i / d x_k|_2 of the layer input
        mixed_tangent   max_{c, l>=0} |d u_i[c, l] / d x_k|_2
        gate_tangent    max_{c, l>=1} |d z_i[c, l] / d x_k|_2 (0 when L = 0)
    Matrix norms: mix_norm = max_l ||W_l||_2, gate_norm = ||G||_2 (0 when L = 0).
    """

    weight_max: np.ndarray
    weight_grad_max: np.ndarray
    weighted_input: np.ndarray
    weighted_input_grad: np.ndarray
    gated_max: np.ndarray
    input_tangent: np.ndarray
    mixed_tangent: np.ndarray
    gate_tangent: np.ndarray
    mix_norm: float
    gate_norm: float


@dataclass(frozen=True)
class NetworkQuantities:
    """Everything :func:`network_bound` needs for one configuration.

    src, dst (E,): edge e carries a message from atom src[e] = j to dst[e] = i (a periodic
    self-image has src = dst). harmonic_norm[e] = |Y_e|, harmonic_grad[e] = ||d Y_e / d r_e||_2.
    avg_neighbors: the constant a. eps, S: :func:`tensor_product_constants`. readout_lipschitz:
    a Lipschitz constant of phi; readout_curvature: of grad phi. scalar_tangent (N_k, N):
    |d h^K_i[:, 0] / d x_k|_2. layers: one :class:`LayerQuantities` per layer.
    readout_gradient (N,): |grad phi(s_i)| at x (optional; None uses readout_lipschitz).
    """

    src: np.ndarray
    dst: np.ndarray
    n_atoms: int
    avg_neighbors: float
    harmonic_norm: np.ndarray
    harmonic_grad: np.ndarray
    eps: float
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
    for name in ("eps", "S", "readout_lipschitz", "readout_curvature"):
        value = getattr(q, name)
        if not (np.isfinite(value) and value >= 0):
            raise ValueError(f"{name} must be a finite number >= 0, got {value}")
    if not q.layers:
        raise ValueError("layers is empty: the bound needs at least one layer")
    Nk = q.scalar_tangent.shape[0]
    for t, layer in enumerate(q.layers, start=1):
        for name in ("weight_max", "weight_grad_max", "weighted_input", "weighted_input_grad"):
            if np.shape(getattr(layer, name)) != (E,):
                raise ValueError(f"layer {t}: {name} must have shape ({E},)")
        if np.shape(layer.gated_max) != (N,):
            raise ValueError(f"layer {t}: gated_max must have shape ({N},)")
        for name in ("input_tangent", "mixed_tangent", "gate_tangent"):
            if np.shape(getattr(layer, name)) != (Nk, N):
                raise ValueError(f"layer {t}: {name} must have shape ({Nk}, {N})")
    if q.scalar_tangent.shape != (Nk, N):
        raise ValueError(f"scalar_tangent must have shape (N_k, {N})")
    if q.readout_gradient is not None and np.shape(q.readout_gradient) != (N,):
        raise ValueError(f"readout_gradient must have shape ({N},)")


def network_bound(q: NetworkQuantities) -> NetworkBound:
    """Evaluate the bound of proofs/network_propagation.md (Theorem 1) on one configuration.

    Recursion over layers t = 1..K with beta^0 = 0, betadot^0 = 0 (the embedding does not
    depend on positions or on R), for atoms i and moved atoms k, j = src(e), chi[k, e] = 1 when
    k is an endpoint of e and src(e) != dst(e), else 0:

        mu_i      = (1/a) sum_{e->i} y_e (S omega_e beta_j + 2 eps nu_e)
        mudot_ki  = (1/a) sum_{e->i} [ y_e chi_ke (S omegadot_e beta_j + 2 eps nudot_e)
                                       + y_e omega_e (S betadot_kj + 2 eps Hdot_kj)
                                       + ydot_e chi_ke (S omega_e beta_j + 2 eps nu_e) ]
        du = ||W|| mu,  dz = ||G|| mu,  dudot = ||W|| mudot,  dzdot = ||G|| mudot
        beta^t    = beta^{t-1} + kappa du + (1/4) U dz
        betadot^t = betadot^{t-1} + kappa dudot + kappa2 Udot du + (1/4) Udot dz
                    + (1/4) Zdot du + (1/4) dzdot du + (1/4) U dzdot + sigma2 Zdot U dz

    (kappa = sup|SiLU'|, kappa2 = sup|SiLU''|, sigma2 = sup|sigmoid''|; omega, nu, y, U, Hdot,
    Udot, Zdot the measured quantities of :class:`LayerQuantities` / :class:`NetworkQuantities`).
    Then, with g_i = |grad phi(s_i)| at x (lip_phi when not given), lip_phi the Lipschitz and
    curv_phi the gradient-Lipschitz constant of phi:
    energy <= sum_i min(lip_phi beta_i, g_i beta_i + curv_phi beta_i^2 / 2) and
    force_k <= sum_i (min(lip_phi, g_i + curv_phi beta_i) betadot_ki + curv_phi beta_i Sdot_ki),
    beta = beta^K, betadot = betadot^K.
    """
    _check(q)
    src = np.asarray(q.src, dtype=np.int64)
    dst = np.asarray(q.dst, dtype=np.int64)
    N = q.n_atoms
    Nk = q.scalar_tangent.shape[0]
    a = float(q.avg_neighbors)
    y = np.asarray(q.harmonic_norm, dtype=np.float64)
    ydot = np.asarray(q.harmonic_grad, dtype=np.float64)
    moving = src != dst
    chi = np.zeros((Nk, len(src)))
    ks = np.arange(Nk)
    chi[:, moving] = (ks[:, None] == src[None, moving]) | (ks[:, None] == dst[None, moving])
    eps, S = float(q.eps), float(q.S)

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
        omega = np.asarray(layer.weight_max, dtype=np.float64)
        omegadot = np.asarray(layer.weight_grad_max, dtype=np.float64)
        nu = np.asarray(layer.weighted_input, dtype=np.float64)
        nudot = np.asarray(layer.weighted_input_grad, dtype=np.float64)
        Hdot = np.asarray(layer.input_tangent, dtype=np.float64)
        U = np.asarray(layer.gated_max, dtype=np.float64)
        Udot = np.asarray(layer.mixed_tangent, dtype=np.float64)
        Zdot = np.asarray(layer.gate_tangent, dtype=np.float64)
        value_edge = S * omega * beta[src] + 2 * eps * nu  # (E,)
        mu = gather(y * value_edge) / a
        mudot_edge = (
            y[None] * chi * (S * omegadot * beta[src] + 2 * eps * nudot)[None]
            + (y * omega)[None] * (S * betadot[:, src] + 2 * eps * Hdot[:, src])
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
