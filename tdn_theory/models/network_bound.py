"""The network equivariance bound of a TDNPotential on a configuration, and the defects it bounds.

:func:`bound_quantities` measures, on the model at the configuration x, every quantity that
``tdn_theory.theory.network.network_bound`` needs (feature norms, radial weights and their
gradients, matrix norms, and the Jacobians of the features with respect to each atom's position,
by forward-mode differentiation); :func:`evaluate_bound` returns the bound.
:func:`measure_defects` measures, for given rotations, the defects the bound covers: the
per-layer feature defect ``|h^t(Rx) - D h^t(x)|_F``, the energy defect ``|E(Rx) - E(x)|`` and the
force defect ``|F(Rx) - R F(x)|_F``. :func:`adversarial_rotation` searches for the rotation that
maximises the force defect. Proof of the bounds: proofs/network_propagation.md (Theorem 1, the
Lipschitz propagation, ``method="lipschitz"``; Theorem 2, first order plus a proven second-order
remainder, the default, whose inputs ``models.network_linearised`` measures).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import torch
from scipy.optimize import minimize
from scipy.spatial.transform import Rotation

from tdn_theory import so3
from tdn_theory.models.network_linearised import linearised_quantities
from tdn_theory.models.potential import TDNPotential
from tdn_theory.theory.network import (
    SILU_CURVATURE,
    SILU_LIPSCHITZ,
    LayerQuantities,
    NetworkBound,
    NetworkQuantities,
    network_bound,
    tensor_product_constants,
)
from tdn_theory.theory.network_second_order import Certificate, certificate, rounding_allowance

__all__ = [
    "METHODS",
    "BoundBelowRounding",
    "adversarial_rotation",
    "bound_quantities",
    "evaluate_bound",
    "measure_defects",
    "tensor_product_error",
]


def tensor_product_error(model: TDNPotential) -> tuple[np.ndarray, float, float]:
    """``(eps_by_degree, S, relative Frobenius error)`` of the model's tensor product against the
    exact ``so3.cg_tensor(L, normalization, parity)`` (``theory.network.tensor_product_constants``)."""
    T = so3.cg_tensor(model.L, model.normalization, model.parity)
    T_hat = model.tp.dense_tensor().detach().cpu().double().numpy()
    eps, S = tensor_product_constants(T, T_hat)
    return eps, S, float(np.linalg.norm(T_hat - T) / np.linalg.norm(T))


def _op_norm(J: np.ndarray) -> np.ndarray:
    """Spectral norm of (..., n, 3) matrices (largest singular value)."""
    gram = np.einsum("...na,...nb->...ab", J, J)
    return np.sqrt(np.maximum(np.linalg.eigvalsh(gram)[..., -1], 0.0))


def _block_norms(x: np.ndarray, L: int) -> np.ndarray:
    """|x[..., l-block]| for l = 0..L: (..., d) -> (..., L+1)."""
    return np.stack([np.linalg.norm(x[..., s], axis=-1) for s in so3.degree_slices(L)], -1)


def _block_op_norms(J: np.ndarray, L: int) -> np.ndarray:
    """Operator norms of the Jacobian blocks: (..., d, 3) -> (..., L+1)."""
    return np.stack([_op_norm(J[..., s, :]) for s in so3.degree_slices(L)], -1)


def bound_quantities(
    model: TDNPotential, positions: Any, numbers: Any, cell: Any = None, pbc: Any = None
) -> NetworkQuantities:
    """Measure on the model at x what :func:`~tdn_theory.theory.network.network_bound` needs.

    Runs in the model's dtype; the Jacobians come from ``torch.func.jvp`` with one tangent per
    atom and axis (3N forward-mode passes, batched with ``torch.func.vmap``). Memory grows like
    N^2 K C d (all Jacobians at once): meant for configurations of tens of atoms.
    """
    saved = getattr(model.tp, "blocked_bytes", None)
    if saved is not None:
        model.tp.blocked_bytes = 0
    try:
        return _bound_quantities(model, positions, numbers, cell, pbc)
    finally:
        if saved is not None:
            model.tp.blocked_bytes = saved


def _bound_quantities(model, positions, numbers, cell, pbc) -> NetworkQuantities:
    L, C = model.L, model.channels
    with torch.no_grad():
        pos, cell_t, species, graph = model.prepare(positions, numbers, cell, pbc)
        pos = pos.detach()
        out = model.evaluate(pos, cell_t, species, graph, keep=True)
    N = graph.n_atoms
    src, dst = graph.src.cpu().numpy(), graph.dst.cpu().numpy()
    r = graph.edge_vectors(pos, cell_t, dtype=model.dtype).detach()

    # edge functions of r and their Jacobians (3 forward-mode passes, one per axis)
    def edge_functions(rr: torch.Tensor):
        Y, basis = model.edge_terms(rr)
        return (Y, *[layer.radial(basis) for layer in model.interactions])

    jac_cols = []
    with torch.no_grad():
        for axis in range(3):
            tangent = torch.zeros_like(r)
            tangent[:, axis] = 1.0
            jac_cols.append(torch.func.jvp(edge_functions, (r,), (tangent,))[1])
    Y = out["Y"].cpu().double().numpy()
    JY = np.stack([c[0].cpu().double().numpy() for c in jac_cols], -1)  # (E, d, 3)

    # Jacobians of the per-layer quantities with respect to each atom's position
    def network(p: torch.Tensor):
        o = model.evaluate(p, cell_t, species, graph, keep=True)
        zs = [
            rec["gate_scalars"] if rec["gate_scalars"] is not None else p.new_zeros(N, C, 0)
            for rec in o["layers"]
        ]
        return (
            tuple(o["features"]),
            tuple(rec["mixed"] for rec in o["layers"]),
            tuple(zs),
            o["scalars"],
        )

    basis_t = torch.eye(3 * N, dtype=pos.dtype, device=pos.device).reshape(3 * N, N, 3)
    with torch.no_grad():
        _, tangents = torch.func.vmap(lambda v: torch.func.jvp(network, (pos,), (v,)), in_dims=0)(
            basis_t
        )
    feats_t, mixed_t, z_t, scal_t = tangents

    def as_kai(t: torch.Tensor) -> np.ndarray:
        """(3N, N, ...) tangents -> (k, N, ..., 3) with the axis of atom k last."""
        a = t.detach().cpu().double().numpy().reshape(N, 3, *t.shape[1:])
        return np.moveaxis(a, 1, -1)

    layers = []
    for t, layer in enumerate(model.interactions):
        rec = out["layers"][t]
        h_in = rec["input"].cpu().double().numpy()  # (N, C, d)
        w = rec["weight"].cpu().double().numpy()  # (E, C)
        Jw = np.stack([c[1 + t].cpu().double().numpy() for c in jac_cols], -1)  # (E, C, 3)
        u = rec["mixed"].cpu().double().numpy()
        gated = _block_norms(u, L)[..., 1:]
        U_t = _block_op_norms(as_kai(mixed_t[t]), L)  # (k, N, C, L+1)
        if L > 0:
            Z_t = np.linalg.norm(as_kai(z_t[t]), axis=-1).max(axis=(-1, -2))
            gate_norm = float(np.linalg.norm(layer.gate.detach().cpu().double().numpy(), 2))
        else:
            Z_t = np.zeros((N, N))
            gate_norm = 0.0
        mix = layer.mix.detach().cpu().double().numpy()
        layers.append(
            LayerQuantities(
                weight=w,
                weight_grad=np.linalg.norm(Jw, axis=-1),
                input_norms=_block_norms(h_in, L),
                input_tangent=_block_op_norms(as_kai(feats_t[t]), L),
                gated_max=gated.max(axis=(1, 2)) if L > 0 else np.zeros(N),
                mixed_tangent=U_t.max(axis=(-1, -2)),
                gate_tangent=Z_t,
                mix_norm=max(float(np.linalg.norm(m, 2)) for m in mix),
                gate_norm=gate_norm,
            )
        )
    W1 = model.readout_1.detach().cpu().double().numpy()
    w2 = model.readout_2.detach().cpu().double().numpy()
    n1 = float(np.linalg.norm(W1, 2))
    eps, S, _ = tensor_product_error(model)
    return NetworkQuantities(
        src=src,
        dst=dst,
        n_atoms=N,
        avg_neighbors=model.avg_neighbors,
        harmonic_norm=np.linalg.norm(Y, axis=1),
        harmonic_grad=_op_norm(JY),
        eps=eps,
        S=S,
        layers=layers,
        readout_lipschitz=SILU_LIPSCHITZ * n1 * float(np.linalg.norm(w2)),
        readout_curvature=SILU_CURVATURE * n1**2 * float(np.abs(w2).max()),
        scalar_tangent=_op_norm(as_kai(scal_t)),
        readout_gradient=_readout_gradient(model, out["scalars"]),
    )


def _readout_gradient(model: TDNPotential, scalars: torch.Tensor) -> np.ndarray:
    """|grad phi(s_i)| per atom at x (phi the readout MLP)."""
    s = scalars.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        phi = torch.nn.functional.silu(s @ model.readout_1) @ model.readout_2
        (grad,) = torch.autograd.grad(phi.sum(), s)
    return torch.linalg.vector_norm(grad, dim=1).detach().cpu().double().numpy()


class BoundBelowRounding(ValueError):
    """The certificate is not larger than the floating-point rounding of the network."""


METHODS = ("second-order", "lipschitz")


def evaluate_bound(
    model: TDNPotential,
    positions: Any,
    numbers: Any,
    cell: Any = None,
    pbc: Any = None,
    *,
    method: str = "second-order",
) -> Certificate | NetworkBound:
    """The network equivariance bound of the model at x (proofs/network_propagation.md).

    ``method="second-order"`` (default): Theorem 2, the tightest proven bound, as a
    :class:`~tdn_theory.theory.network_second_order.Certificate` (fields ``energy``, ``forces``,
    ``force_total``, ``feature_total``, and beside them ``energy_estimate`` /
    ``force_estimate``, first-order estimates that are NOT bounds). The theorem is about exact
    arithmetic; a floating-point allowance (:func:`rounding_allowance` for the model's dtype) is
    added, and when it exceeds a tenth of the certificate (exact or near-exact tensor products,
    where the defects are rounding) this raises :class:`BoundBelowRounding` instead of printing a
    number that is not a certificate. ``method="lipschitz"``: Theorem 1 (a
    :class:`~tdn_theory.theory.network.NetworkBound`, exact arithmetic, no allowance).
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if method == "lipschitz":
        return network_bound(bound_quantities(model, positions, numbers, cell, pbc))
    q = linearised_quantities(model, positions, numbers, cell, pbc)
    cert = certificate(q)
    unit = float(torch.finfo(model.dtype).eps) / 2
    r_energy, r_forces = rounding_allowance(q, unit)
    if r_energy > 0.1 * cert.energy or r_forces > 0.1 * cert.force_total:
        raise BoundBelowRounding(
            f"no bound: the certificate (energy {cert.energy:.2e}, forces {cert.force_total:.2e}) "
            f"is within 10x of the {model.dtype} rounding allowance ({r_energy:.2e}, "
            f"{r_forces:.2e}); the defects of this model are rounding, which the theorem does "
            "not bound"
        )
    return dataclasses.replace(
        cert,
        energy=cert.energy + r_energy,
        forces=cert.forces + r_forces,
        force_total=cert.force_total + r_forces,
        rounding_energy=r_energy,
        rounding_forces=r_forces,
    )


def _run(model, positions, numbers, cell, pbc):
    out = model.run(positions, numbers, cell, pbc, forces=True, keep=True)
    feats = [f.detach().cpu().double().numpy() for f in out["features"]]
    return float(out["energy"].detach()), out["forces"].detach().cpu().double().numpy(), feats


def measure_defects(
    model: TDNPotential,
    positions: Any,
    numbers: Any,
    cell: Any = None,
    pbc: Any = None,
    rotations: np.ndarray | None = None,
    *,
    reference: tuple | None = None,
) -> dict[str, np.ndarray]:
    """Defects under each rotation (n, 3, 3) of positions and cell.

    Returns arrays over rotations: "features" (n, K+1) = |h^t(Rx) - D h^t(x)|_F, "energy"
    |E(Rx) - E(x)|, "forces" |F(Rx) - R F(x)|_F, plus "energy_scale" |E(x)| and "force_scale"
    |F(x)|_F (floats).
    """
    pos = np.asarray(positions, dtype=np.float64)
    c = np.zeros((3, 3)) if cell is None else np.asarray(cell, dtype=np.float64)
    rotations = np.asarray(rotations, dtype=np.float64).reshape(-1, 3, 3)
    E0, F0, H0 = reference if reference is not None else _run(model, pos, numbers, c, pbc)
    feats, energy, forces = [], [], []
    for R in rotations:
        E, F, H = _run(model, pos @ R.T, numbers, c @ R.T, pbc)
        D = so3.block_wigner_D(model.L, R)
        feats.append([float(np.linalg.norm(h - h0 @ D.T)) for h, h0 in zip(H, H0, strict=True)])
        energy.append(abs(E - E0))
        forces.append(float(np.linalg.norm(F - F0 @ R.T)))
    return {
        "features": np.array(feats),
        "energy": np.array(energy),
        "forces": np.array(forces),
        "energy_scale": abs(E0),
        "force_scale": float(np.linalg.norm(F0)),
    }


def adversarial_rotation(
    model: TDNPotential,
    positions: Any,
    numbers: Any,
    cell: Any = None,
    pbc: Any = None,
    *,
    start: np.ndarray | None = None,
    iterations: int = 60,
) -> tuple[np.ndarray, float]:
    """Nelder–Mead over rotation vectors maximising the force defect |F(Rx) - R F(x)|_F.

    Starts from ``start`` (a rotation matrix, e.g. the worst Haar sample); returns the best
    rotation found and its force defect.
    """
    pos = np.asarray(positions, dtype=np.float64)
    c = np.zeros((3, 3)) if cell is None else np.asarray(cell, dtype=np.float64)
    ref = _run(model, pos, numbers, c, pbc)
    x0 = Rotation.from_matrix(np.eye(3) if start is None else start).as_rotvec()

    def negative(v: np.ndarray) -> float:
        R = Rotation.from_rotvec(v).as_matrix()
        return -float(
            measure_defects(model, pos, numbers, c, pbc, R[None], reference=ref)["forces"][0]
        )

    res = minimize(
        negative, x0, method="Nelder-Mead", options={"maxfev": iterations, "xatol": 1e-4}
    )
    best = Rotation.from_rotvec(res.x).as_matrix()
    return best, -float(res.fun)
