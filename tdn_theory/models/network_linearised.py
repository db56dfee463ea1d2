r"""Measured inputs of the second-order network certificate (proofs/network_propagation.md, Thm 2).

The network of a :class:`TDNPotential` at a configuration x, written as a function of the
tensor-product tensor X (d, d, d) indexed [k, i, j] (:func:`tensor_forward`): every layer uses
``M_X(a, b) = X (a, b)``. With the model's own tensor ``T_hat`` this is the model (checked by
``test_tensor_forward_is_the_model``). For a rotation R, ``E(Rx; T_hat) = E(x; rho(R) T_hat)``
(rho(R) X = D^T X (D, D)), so the rotation defects are the change of the network at x when its
tensor moves from T_hat to ``rho(R) T_hat``; :func:`linearised_quantities` measures at x what
the bound of ``tdn_theory.theory.network_second_order`` needs: the gradients of E and of the
forces with respect to X, the adjoints dE/dm^t (messages) and dE/dh^t (features) and their
derivatives along each atom's displacement, and the network's values and tangents.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from tdn_theory import so3
from tdn_theory.models.potential import TDNPotential
from tdn_theory.theory.network_second_order import LinearisedQuantities

__all__ = ["linearised_quantities", "tensor_forward"]


def tensor_forward(
    model: TDNPotential,
    pos: torch.Tensor,
    cell: torch.Tensor,
    species: torch.Tensor,
    graph,
    X: torch.Tensor,
    dm: tuple[torch.Tensor, ...] | None = None,
    dh: tuple[torch.Tensor, ...] | None = None,
    keep: bool = False,
) -> dict[str, Any]:
    """The model's network with tensor product ``M_X`` (X dense, [k, i, j]); optional additive
    perturbations ``dm[t]`` of the messages m^t and ``dh[t]`` of the features h^t (t = 1..K,
    index t - 1), which make dE/dm^t and dE/dh^t gradients. A pure torch function of pos, X,
    dm, dh (usable with torch.func). Returns "energy" and with ``keep`` per-layer records."""
    _, Y, basis = model.edge_features(pos, cell, graph)
    N, C, L, d = graph.n_atoms, model.channels, model.L, model.d
    emb = model.embedding[species][:, :, None]
    h = torch.cat([emb, emb.new_zeros(N, C, d - 1)], dim=-1)
    deg = model._degree
    records = []
    for t, layer in enumerate(model.interactions):
        w = layer.radial(basis)
        msg = w[:, :, None] * torch.einsum("kij,eci,ej->eck", X, h[graph.src], Y)
        m = h.new_zeros(N, C, d).index_add(0, graph.dst, msg) / model.avg_neighbors
        if dm is not None:
            m = m + dm[t]
        u = torch.einsum("nck,kdc->ndk", m, layer.mix[deg])
        scal = torch.nn.functional.silu(u[:, :, :1])
        if L > 0:
            z = (m[:, :, 0] @ layer.gate).reshape(N, C, L)
            g = torch.cat([scal, torch.sigmoid(z)[:, :, deg[1:] - 1] * u[:, :, 1:]], dim=-1)
        else:
            z = h.new_zeros(N, C, 0)
            g = scal
        if keep:
            records.append({"input": h, "weight": w, "message": m, "mixed": u, "gate": z})
        h = h + g
        if dh is not None:
            h = h + dh[t]
    s = h[:, :, 0]
    energy = (torch.nn.functional.silu(s @ model.readout_1) @ model.readout_2).sum()
    energy = energy + model.reference_energy[species].sum()
    out = {"energy": energy}
    if keep:
        out.update(layers=records, scalars=s, features=h, Y=Y)
    return out


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().double().numpy()


def linearised_quantities(
    model: TDNPotential,
    positions: Any,
    numbers: Any,
    cell: Any = None,
    pbc: Any = None,
    *,
    tensor: np.ndarray | None = None,
) -> LinearisedQuantities:
    """Measure at x, in float64, everything Theorem 2 needs (see the module docstring).

    ``tensor``: the exactly equivariant reference T (default ``so3.cg_tensor`` of the model).
    Costs 3N forward-over-reverse passes (the force gradients) and 3N tangent passes; memory
    grows like 3N K N C d, meant for configurations of tens of atoms.
    """
    work = model if model.dtype == torch.float64 else _double_copy(model)
    with torch.no_grad():
        pos, cell_t, species, graph = work.prepare(positions, numbers, cell, pbc)
    pos = pos.detach()
    N, C, K, d = graph.n_atoms, work.channels, work.n_layers, work.d
    T_hat = work.tp.dense_tensor().detach().to(pos)
    T = so3.cg_tensor(work.L, work.normalization, work.parity) if tensor is None else tensor
    zeros_m = tuple(pos.new_zeros(N, C, d) for _ in range(K))
    zeros_h = tuple(pos.new_zeros(N, C, d) for _ in range(K))

    def energy(p, X, dm, dh):
        return tensor_forward(work, p, cell_t, species, graph, X, dm, dh)["energy"]

    grad = torch.func.grad(energy, argnums=(0, 1, 2, 3))

    def adjoints(p):
        gp, gX, gm, gh = grad(p, T_hat, zeros_m, zeros_h)
        return gp, gX, gm, gh

    with torch.no_grad():
        gp, gX, gm, gh = adjoints(pos)
        basis = torch.eye(3 * N, dtype=pos.dtype).reshape(3 * N, N, 3)
        # derivatives of the adjoints along each displacement v (atom k, axis a): (3N, ...)
        _, (dgp, dgX, dgm, dgh) = torch.func.vmap(
            lambda v: torch.func.jvp(adjoints, (pos,), (v,)), in_dims=0
        )(basis)

        def values(p):
            out = tensor_forward(work, p, cell_t, species, graph, T_hat, keep=True)
            r = graph.edge_vectors(p, cell_t)
            return (
                tuple(rec["input"] for rec in out["layers"]),
                tuple(rec["message"] for rec in out["layers"]),
                tuple(rec["mixed"] for rec in out["layers"]),
                tuple(rec["gate"] for rec in out["layers"]),
                tuple(rec["weight"] for rec in out["layers"]),
                out["Y"],
                out["scalars"],
                r,
                out["energy"],
            )

        vals = values(pos)
        _, tans = torch.func.vmap(lambda v: torch.func.jvp(values, (pos,), (v,)), in_dims=0)(basis)
    h_in, msgs, mixed, gates, weights, Y, scalars, _, E = vals
    th_in, _, tmixed, tgates, tweights, tY, tscalars, _, _ = tans
    forces = -_np(gp).reshape(3 * N)
    W1 = _np(work.readout_1)
    w2 = _np(work.readout_2)
    return LinearisedQuantities(
        src=graph.src.cpu().numpy(),
        dst=graph.dst.cpu().numpy(),
        n_atoms=N,
        avg_neighbors=work.avg_neighbors,
        T=np.asarray(T, dtype=np.float64),
        T_hat=_np(T_hat),
        T_abs=_abs_tensor(work, T_hat),
        energy=float(E),
        forces=forces,
        energy_grad_tensor=_np(gX),
        force_grad_tensor=-_np(dgX),  # d F_v / d X = - d/dv (dE/dX)
        message_adjoint=np.stack([_np(g) for g in gm]),
        feature_adjoint=np.stack([_np(g) for g in gh]),
        message_adjoint_tangent=np.stack([_np(g) for g in dgm]),
        feature_adjoint_tangent=np.stack([_np(g) for g in dgh]),
        inputs=np.stack([_np(x) for x in h_in]),
        input_tangents=np.stack(
            [_np(x) for x in th_in],
        ),
        mixed=np.stack([_np(x) for x in mixed]),
        mixed_tangents=np.stack(
            [_np(x) for x in tmixed],
        ),
        gates=np.stack([_np(x) for x in gates]),
        gate_tangents=np.stack(
            [_np(x) for x in tgates],
        ),
        weights=np.stack([_np(x) for x in weights]),
        weight_tangents=np.stack(
            [_np(x) for x in tweights],
        ),
        harmonics=_np(Y),
        harmonic_tangents=_np(tY),
        scalars=_np(scalars),
        scalar_tangents=_np(tscalars),
        mix=np.stack([_np(layer.mix) for layer in work.interactions]),
        gate_matrices=np.stack(
            [
                _np(layer.gate) if layer.gate is not None else np.zeros((C, 0))
                for layer in work.interactions
            ]
        ),
        readout_1=W1,
        readout_2=w2,
    )


def _double_copy(model: TDNPotential) -> TDNPotential:
    import copy

    return copy.deepcopy(model).double()


def _abs_tensor(model: TDNPotential, T_hat: torch.Tensor) -> np.ndarray:
    """The magnitudes the backend sums: sum_r |A_kr||B_ir||C_jr| for a CP, |T_hat| otherwise."""
    tp = model.tp
    if all(hasattr(tp, name) for name in ("A", "B", "C")):
        A, B, C = (_np(getattr(tp, name)).__abs__() for name in ("A", "B", "C"))
        return np.einsum("kr,ir,jr->kij", A, B, C)
    return np.abs(_np(T_hat))
