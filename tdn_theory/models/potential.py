r"""A TDN interatomic potential: message passing with a pluggable SO(3) tensor product.

Features: ``h`` of shape (atoms, C, d), ``d = (L+1)^2``, every channel carrying the degrees
``l = 0..L`` in the blocks ``[l=0 | ... | l=L]`` (the layout of :mod:`tdn_theory.nn`).

Architecture (one interaction layer ``t = 1..K``; ``j -> i`` over the edges of the neighbour list):

* embedding: ``h^0_i[c, 0] = e[species_i, c]``, all higher degrees 0;
* edge features: ``Y_ij = Y(r̂_ij)`` (e3nn ``o3.spherical_harmonics``, normalization "norm":
  each degree block has norm 1, so ``||Y|| = sqrt(L+1)``), and a radial weight per channel
  ``w^t_ij = MLP_t(bessel(|r_ij|) * u(|r_ij|))`` (8 Bessel functions, polynomial cutoff ``u``
  with p = 6: value and two derivatives vanish at the cutoff);
* message: ``m_i = (1/a) sum_j w^t_ij ⊙ TP(h_j, Y_ij)``, ``a`` the fixed ``avg_neighbors``, TP the
  backend's tensor product (one weight per channel shared by all paths). With
  ``edge_input="per_channel"`` (the TDN paper's layer ``z_u = M(x_u, (W y)_u)``) the radial MLP
  gives one weight per channel and degree, ``w^t_ij[c, l]``, and the second input carries the
  channels: ``m_i = (1/a) sum_j TP(h_j, Y^w_ij)``, ``Y^w_ij[c, l-block] = w^t_ij[c, l] Y_ij[l-block]``
  (no dense y-first contraction then exists; see :mod:`tdn_theory.nn`);
* mixing: ``u_i[:, l] = W^t_l m_i[:, l]`` (one C x C matrix per degree), gate scalars
  ``z_i = G^t m_i[:, 0]`` (C x (C L));
* gate: ``g_i[c, 0] = SiLU(u_i[c, 0])``, ``g_i[c, l] = sigmoid(z_i[c, l]) u_i[c, l]`` for l >= 1;
* residual: ``h^t = h^{t-1} + g``;
* energy: ``E = sum_i [phi(h^K_i[:, 0]) + E_ref[species_i]]``, ``phi`` = Linear-SiLU-Linear;
  forces ``F = -dE/dx`` by autograd;
* dipole (``dipole=True``, :mod:`tdn_theory.models.dipole`): charges from ``h^K_i[:, 0]`` made neutral
  per structure plus atomic dipoles from the l = 1 channels of ``h^K_i``,
  ``mu = sum_i q_i (r_i - r_center) + sum_i p_i``.

Parity. With ``parity="all"`` (every path, as in the TDN paper) the odd paths
(``l1 + l2 + l3`` odd, e.g. the cross product 1 x 1 -> 1) turn vectors into pseudo-vectors, so
from three layers on the energy is rotation-invariant but *not* mirror-invariant: E(-x) != E(x)
in general. ``parity="even"`` keeps only the even paths; every feature of degree l then has parity
(-1)^l and the energy is E(3)-invariant (rotations, mirrors, translations).
"""

from __future__ import annotations

import copy
import math
import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from ase.data import atomic_numbers, chemical_symbols
from e3nn import o3

from tdn_theory import so3
from tdn_theory._checks import check_int
from tdn_theory.models.backends import BACKENDS, make_tensor_product
from tdn_theory.models.dipole import DipoleHead, structure_dipoles
from tdn_theory.models.graph import Graph, build_graph, check_structure

__all__ = ["EDGE_INPUTS", "TDNPotential", "bessel_basis", "polynomial_cutoff"]

#: The two layer forms: Y shared by the channels, or Y weighted per channel and degree.
EDGE_INPUTS = ("shared", "per_channel")


def bessel_basis(r: torch.Tensor, cutoff: float, n: int) -> torch.Tensor:
    """``sqrt(2/rc) sin(k pi r / rc) / r`` for k = 1..n, shape (E, n)."""
    k = torch.arange(1, n + 1, dtype=r.dtype, device=r.device)
    return math.sqrt(2.0 / cutoff) * torch.sin(k * math.pi * r[:, None] / cutoff) / r[:, None]


def polynomial_cutoff(r: torch.Tensor, cutoff: float, p: int = 6) -> torch.Tensor:
    """``1 - (p+1)(p+2)/2 x^p + p(p+2) x^(p+1) - p(p+1)/2 x^(p+2)``, x = r/rc, 0 beyond rc."""
    x = r / cutoff
    out = (
        1.0
        - (p + 1) * (p + 2) / 2 * x**p
        + p * (p + 2) * x ** (p + 1)
        - p * (p + 1) / 2 * x ** (p + 2)
    )
    return out * (x < 1.0)


def _species_numbers(species: Sequence[Any]) -> list[int]:
    if isinstance(species, (str, int)) or not isinstance(species, Sequence) or not species:
        raise ValueError(
            f"species must be a non-empty list of symbols or atomic numbers, got {species!r}"
        )
    out = []
    for s in species:
        if isinstance(s, str):
            if s not in atomic_numbers or atomic_numbers[s] == 0:
                raise ValueError(f"unknown chemical symbol {s!r} in species (Z = 1..118)")
            out.append(atomic_numbers[s])
        elif isinstance(s, (int, np.integer)) and not isinstance(s, bool) and 1 <= s < 119:
            out.append(int(s))
        else:
            raise ValueError(f"species entries must be symbols or atomic numbers 1..118, got {s!r}")
    if len(set(out)) != len(out):
        raise ValueError(f"species has duplicates: {species!r}")
    return out


class _Interaction(torch.nn.Module):
    """Weights of one layer: radial MLP, per-degree mixing W_l, gate matrix G."""

    def __init__(
        self, L: int, channels: int, n_basis: int, hidden: int, gen, dtype, per_degree: bool
    ) -> None:
        super().__init__()
        C = channels
        radial_out = C * (L + 1) if per_degree else C  # [c] or [c, l]

        def normal(*shape: int, fan_in: int) -> torch.nn.Parameter:
            t = torch.randn(*shape, generator=gen, dtype=torch.float64) / math.sqrt(fan_in)
            return torch.nn.Parameter(t.to(dtype))

        self.radial_1 = normal(n_basis, hidden, fan_in=n_basis)
        self.radial_2 = normal(hidden, radial_out, fan_in=hidden)
        self.mix = normal(L + 1, C, C, fan_in=C)  # [l, out c', in c]
        self.gate = normal(C, C * L, fan_in=C) if L > 0 else None

    def radial(self, basis: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.silu(basis @ self.radial_1) @ self.radial_2


class TDNPotential(torch.nn.Module):
    """TDN/NequIP-style potential; see the module docstring for the exact architecture.

    Parameters
    ----------
    species : list of chemical symbols or atomic numbers the model knows.
    L : maximal degree of the features (>= 0). channels : C (>= 1). layers : K (>= 1).
    cutoff : neighbour-list cutoff in Å (> 0).
    backend : "dense" | "e3nn" | "cp" | "sphere" (see :mod:`tdn_theory.models.backends`).
    rank, factors : for "cp": a rank (fitted with ``tdn_theory.cp.fit_cp`` and cached) or a
        factor file written by ``python -m tdn_theory.fit_cp``.
    normalization : the CG path normalization the tensor product represents; None means
        "sphere" for backend "sphere" and "unit" otherwise.
    parity : "all" (rotation-invariant energy, not mirror-invariant) or "even" (E(3)-invariant).
    edge_input : "shared" (default: ``TP(h_j, Y_ij)`` scaled per channel) or "per_channel"
        (``TP(h_j, Y^w_ij)`` with per-channel, per-degree radial weights on Y).
    seed : seeds every initial weight (and the "cp" fit).
    avg_neighbors : the fixed constant ``a`` dividing the message sums (12 unless given;
        :func:`~tdn_theory.models.graph.average_neighbors` gives a data set's mean neighbour count).
    dipole : add the dipole head (:mod:`tdn_theory.models.dipole`; use ``parity="even"`` for a
        mirror-equivariant dipole). Its weights are drawn after all others, so the rest of the
        initialisation is the same with and without it.
    dtype : torch.float64 (default) or torch.float32; ``.float()`` / ``.double()`` work too.

    ``forward(positions, numbers, cell=None, pbc=None)`` returns the energy (0-d tensor);
    :meth:`energy_and_forces` returns energy and forces; :meth:`run` returns everything
    (dipole and charges with the dipole head, features of every layer, edges) for analysis.
    """

    def __init__(
        self,
        species: Sequence[Any],
        L: int,
        channels: int,
        layers: int,
        cutoff: float,
        backend: str = "dense",
        rank: int | None = None,
        factors: str | os.PathLike | None = None,
        normalization: str | None = None,
        parity: str = "all",
        seed: int = 0,
        *,
        edge_input: str = "shared",
        n_basis: int = 8,
        radial_hidden: int = 16,
        readout_hidden: int = 16,
        avg_neighbors: float = 12.0,
        dtype: torch.dtype = torch.float64,
        dipole: bool = False,
    ) -> None:
        super().__init__()
        self.species = _species_numbers(species)
        self.L = check_int(L, "L")
        self.channels = check_int(channels, "channels", minimum=1)
        self.n_layers = check_int(layers, "layers", minimum=1)
        self.seed = check_int(seed, "seed")
        if not isinstance(cutoff, (int, float)) or not math.isfinite(cutoff) or cutoff <= 0:
            raise ValueError(f"cutoff must be a positive number of Å, got {cutoff!r}")
        if (
            not isinstance(avg_neighbors, (int, float))
            or not math.isfinite(avg_neighbors)
            or not avg_neighbors > 0
        ):
            raise ValueError(f"avg_neighbors must be a positive number, got {avg_neighbors!r}")
        if parity not in ("all", "even"):
            raise ValueError(f"parity must be 'all' or 'even' for a potential, got {parity!r}")
        if edge_input not in EDGE_INPUTS:
            raise ValueError(f"edge_input must be one of {EDGE_INPUTS}, got {edge_input!r}")
        self.edge_input = edge_input
        if backend not in BACKENDS:
            raise ValueError(f"unknown backend {backend!r}; choose one of {BACKENDS}")
        if normalization is None:
            normalization = "sphere" if backend == "sphere" else "unit"
        if normalization not in so3.NORMALIZATIONS:
            raise ValueError(
                f"normalization must be one of {so3.NORMALIZATIONS}, got {normalization!r}"
            )
        if dtype not in (torch.float32, torch.float64):
            raise ValueError(f"dtype must be torch.float32 or torch.float64, got {dtype}")
        self.cutoff = float(cutoff)
        self.avg_neighbors = float(avg_neighbors)
        self.parity = parity
        self.normalization = normalization
        self.n_basis = check_int(n_basis, "n_basis", minimum=1)
        gen = torch.Generator().manual_seed(self.seed)
        C = self.channels
        self.embedding = torch.nn.Parameter(
            torch.randn(len(self.species), C, generator=gen, dtype=torch.float64).to(dtype)
        )
        self.interactions = torch.nn.ModuleList(
            _Interaction(
                self.L, C, self.n_basis, radial_hidden, gen, dtype, edge_input == "per_channel"
            )
            for _ in range(self.n_layers)
        )
        self.readout_1 = torch.nn.Parameter(
            (torch.randn(C, readout_hidden, generator=gen, dtype=torch.float64) / math.sqrt(C)).to(
                dtype
            )
        )
        self.readout_2 = torch.nn.Parameter(
            (
                torch.randn(readout_hidden, generator=gen, dtype=torch.float64)
                / math.sqrt(readout_hidden)
            ).to(dtype)
        )
        self.reference_energy = torch.nn.Parameter(torch.zeros(len(self.species), dtype=dtype))
        if not isinstance(dipole, bool):
            raise ValueError(f"dipole must be True or False, got {dipole!r}")
        self.dipole_head = DipoleHead(C, readout_hidden, self.L, gen, dtype) if dipole else None
        self.register_buffer(
            "_degree", torch.as_tensor(so3.degree_of_index(self.L)), persistent=False
        )
        self.backend = backend
        self.backend_options = {
            "rank": rank,
            "factors": None if factors is None else os.fspath(factors),
        }
        self.tp = make_tensor_product(
            backend,
            self.L,
            C,
            normalization=normalization,
            parity=parity,
            rank=rank,
            factors=factors,
            seed=self.seed,
            dtype=dtype,
            per_channel_y=edge_input == "per_channel",
        )

    # ----------------------------------------------------------------------------------------
    # configuration
    # ----------------------------------------------------------------------------------------

    @property
    def dtype(self) -> torch.dtype:
        return self.embedding.dtype

    @property
    def device(self) -> torch.device:
        return self.embedding.device

    @property
    def d(self) -> int:
        return (self.L + 1) ** 2

    @property
    def has_dipole(self) -> bool:
        """Whether the model has the dipole head."""
        return self.dipole_head is not None

    def with_backend(
        self,
        backend: str,
        *,
        rank: int | None = None,
        factors: str | os.PathLike | None = None,
        normalization: str | None = None,
    ) -> TDNPotential:
        """A copy with identical weights and another tensor-product backend.

        ``normalization`` None keeps the model's, except for backend "sphere" (always "sphere").
        """
        if backend not in BACKENDS:
            raise ValueError(f"unknown backend {backend!r}; choose one of {BACKENDS}")
        if normalization is None:
            normalization = "sphere" if backend == "sphere" else self.normalization
        tp = make_tensor_product(
            backend,
            self.L,
            self.channels,
            normalization=normalization,
            parity=self.parity,
            rank=rank,
            factors=factors,
            seed=self.seed,
            dtype=self.dtype,
            per_channel_y=self.edge_input == "per_channel",
        ).to(self.device)
        old_tp, self.tp = self.tp, None
        try:
            new = copy.deepcopy(self)
        finally:
            self.tp = old_tp
        new.tp = tp
        new.backend = backend
        new.normalization = normalization
        new.backend_options = {
            "rank": rank,
            "factors": None if factors is None else os.fspath(factors),
        }
        return new

    def species_index(self, numbers: np.ndarray) -> torch.Tensor:
        """Row of each atom's species in the embedding; ValueError for an unknown element."""
        lookup = {z: k for k, z in enumerate(self.species)}
        unknown = sorted({int(z) for z in numbers if int(z) not in lookup})
        if unknown:
            names = [
                chemical_symbols[z] if 0 < z < len(chemical_symbols) else str(z) for z in unknown
            ]
            known = [chemical_symbols[z] for z in self.species]
            raise ValueError(f"unknown species {names}: the model knows {known}")
        return torch.as_tensor([lookup[int(z)] for z in numbers], device=self.device)

    # ----------------------------------------------------------------------------------------
    # evaluation
    # ----------------------------------------------------------------------------------------

    def prepare(
        self,
        positions: Any,
        numbers: Any,
        cell: Any = None,
        pbc: Any = None,
        *,
        require_neighbours: bool = False,
    ):
        """Check a structure; return (positions tensor, cell tensor, species index, Graph).

        A torch ``positions`` (or ``cell``) tensor is used as given (so gradients flow into it);
        it must have the model's dtype or float64. Arrays become float64 tensors (edge vectors are
        differences taken in float64, see :mod:`.graph`). An atom without neighbours within the
        cutoff is allowed (it keeps its embedding: constant energy, zero force) unless
        ``require_neighbours`` (training sets it).
        """
        pos_np, num, cell_np, pbc_np = check_structure(positions, numbers, cell, pbc)
        species = self.species_index(num)
        graph = build_graph(
            pos_np,
            cell_np,
            pbc_np,
            self.cutoff,
            dtype=self.dtype,
            device=self.device,
            require_neighbours=require_neighbours,
        )
        pos_t = self._as_tensor(positions, "positions")
        cell_t = self._as_tensor(cell if cell is not None else cell_np, "cell")
        return pos_t, cell_t, species, graph

    def _as_tensor(self, value: Any, name: str) -> torch.Tensor:
        if isinstance(value, torch.Tensor):
            if value.dtype not in (self.dtype, torch.float64):
                raise ValueError(
                    f"{name} has dtype {value.dtype} but the model holds {self.dtype}; cast it"
                )
            return value.to(self.device)
        return torch.as_tensor(
            np.asarray(value, dtype=np.float64), dtype=torch.float64, device=self.device
        )

    def edge_features(self, positions: torch.Tensor, cell: torch.Tensor, graph: Graph):
        """``(r, Y(r̂), radial basis)`` of every edge: (E, 3), (E, d), (E, n_basis)."""
        r = graph.edge_vectors(positions, cell, dtype=self.dtype)
        return (r, *self.edge_terms(r))

    def edge_terms(self, r: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``Y(r̂)`` (E, d) and the cut-off Bessel basis (E, n_basis) of edge vectors r (E, 3)."""
        dist = torch.linalg.vector_norm(r, dim=-1)
        Y = o3.spherical_harmonics(list(range(self.L + 1)), r, normalize=True, normalization="norm")
        basis = bessel_basis(dist, self.cutoff, self.n_basis)
        return Y, basis * polynomial_cutoff(dist, self.cutoff)[:, None]

    def run(
        self,
        positions: Any,
        numbers: Any,
        cell: Any = None,
        pbc: Any = None,
        *,
        forces: bool = False,
        create_graph: bool = False,
        keep: bool = False,
    ) -> dict[str, Any]:
        """Evaluate the model. Returns a dict with "energy" (0-d tensor), "forces" (N, 3) when
        asked, "dipole" (3,) and neutral "charges" (N,) with the dipole head, and with ``keep``:
        "features" (list of K+1 tensors (N, C, d): h^0..h^K), and per layer "layers" (dicts with
        "input" h^{t-1}, "weight" (E, C) (per channel: (E, C, L+1)), "mixed" u (N, C, d),
        "gate_scalars" z (N, C, L)), "Y" (E, d), "graph".
        """
        pos, cell_t, species, graph = self.prepare(positions, numbers, cell, pbc)
        if forces and not pos.requires_grad:
            pos = pos.detach().requires_grad_(True)
        out = self.evaluate(pos, cell_t, species, graph, keep=keep)
        if self.has_dipole:
            zeros = torch.zeros(graph.n_atoms, dtype=torch.int64, device=self.device)
            dip, q = structure_dipoles(pos, out["raw_charges"], out["atomic_dipoles"], zeros, 1)
            out["dipole"], out["charges"] = dip[0], q
        if forces:
            (grad,) = torch.autograd.grad(out["energy"], pos, create_graph=create_graph)
            out["forces"] = -grad.to(self.dtype)
        if keep:
            out["graph"] = graph
        return out

    def evaluate(
        self,
        positions: torch.Tensor,
        cell: torch.Tensor,
        species: torch.Tensor,
        graph: Graph,
        *,
        keep: bool = False,
    ) -> dict[str, Any]:
        """The network on prepared inputs (see :meth:`prepare`).

        A pure torch function of ``positions`` and ``cell`` (usable with ``torch.func``). Returns
        "energy" and with ``keep`` "features" (h^0..h^K), "layers" (per layer "input",
        "weight", "mixed", "gate_scalars"), "scalars" (h^K[:, :, 0]) and "Y"; with the dipole head
        "raw_charges" (N,) and "atomic_dipoles" (N, 3) or None (see
        :func:`tdn_theory.models.dipole.structure_dipoles`).
        """
        _, Y, basis = self.edge_features(positions, cell, graph)
        N, C, L = graph.n_atoms, self.channels, self.L
        emb = self.embedding[species][:, :, None]
        h = torch.cat([emb, emb.new_zeros(N, C, self.d - 1)], dim=-1)
        features, records = [h], []
        mix_index = self._degree
        for layer in self.interactions:
            w = layer.radial(basis)  # (E, C), or (E, C*(L+1)) per channel and degree
            if self.edge_input == "per_channel":
                w = w.unflatten(-1, (C, L + 1))  # (E, C, L+1)
                msg = self.tp(h[graph.src], w[:, :, mix_index] * Y[:, None, :])  # (E, C, d)
            else:
                msg = self.tp(h[graph.src], Y, w)  # (E, C, d)
            zeros = msg.new_zeros(N, C, self.d)
            m = zeros.index_add(0, graph.dst, msg) / self.avg_neighbors
            W = layer.mix[mix_index]  # (d, C', C)
            u = torch.einsum("nck,kdc->ndk", m, W)
            scal = torch.nn.functional.silu(u[:, :, :1])
            if L > 0:
                z = (m[:, :, 0] @ layer.gate).reshape(N, C, L)
                gates = torch.sigmoid(z)[:, :, mix_index[1:] - 1]  # (N, C, d-1)
                g = torch.cat([scal, gates * u[:, :, 1:]], dim=-1)
            else:
                z = None
                g = scal
            if keep:
                records.append({"input": h, "weight": w, "mixed": u, "gate_scalars": z})
            h = h + g
            features.append(h)
        scalars = h[:, :, 0]
        atom_energy = torch.nn.functional.silu(scalars @ self.readout_1) @ self.readout_2
        atom_energies = atom_energy + self.reference_energy[species]
        out: dict[str, Any] = {"energy": atom_energies.sum(), "atom_energies": atom_energies}
        if self.dipole_head is not None:
            out["raw_charges"], out["atomic_dipoles"] = self.dipole_head(h)
        if keep:
            out.update(features=features, layers=records, Y=Y, scalars=scalars)
        return out

    def forward(
        self, positions: Any, numbers: Any, cell: Any = None, pbc: Any = None
    ) -> torch.Tensor:
        return self.run(positions, numbers, cell, pbc)["energy"]

    def energy_and_forces(
        self,
        positions: Any,
        numbers: Any,
        cell: Any = None,
        pbc: Any = None,
        *,
        create_graph: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Energy (0-d) and forces ``-dE/dpositions`` (N, 3); ``create_graph`` for training."""
        out = self.run(positions, numbers, cell, pbc, forces=True, create_graph=create_graph)
        return out["energy"], out["forces"]

    def extra_repr(self) -> str:
        return (
            f"species={[chemical_symbols[z] for z in self.species]}, L={self.L}, "
            f"channels={self.channels}, layers={self.n_layers}, cutoff={self.cutoff}, "
            f"backend={self.backend!r}, normalization={self.normalization!r}, parity={self.parity!r}"
            + (f", edge_input={self.edge_input!r}" if self.edge_input != "shared" else "")
            + (", dipole=True" if self.has_dipole else "")
        )
