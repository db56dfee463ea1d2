r"""Training a :class:`~tdn_theory.models.TDNPotential` on energies, forces and stresses.

Loss of a mini-batch ``B`` of configurations (``n_s`` atoms in configuration ``s``)::

    loss = w_E * mean_s ((E_s - E_s^ref) / n_s)^2  +  w_F * mean_{s, i, a} (F_sia - F_sia^ref)^2
         + w_S * mean_{s in S, a, b} (sigma_sab - sigma_sab^ref)^2
         + w_mu * mean_{s, a} (mu_sa - mu_sa^ref)^2

(energies in eV per atom, forces in eV/Å, stresses in eV/Å^3 over the 3 x 3 components, dipoles in
e·Å; forces ``F = -dE/dx`` and stresses ``sigma = (1/V) dE/d eps`` (:mod:`tdn_theory.models.stress`)
by autograd with ``create_graph=True`` so that both are trained through the double backward). ``S``
holds the batch's periodic configurations with a stress label; the stress term is computed only when
``w_S > 0`` (default 0). The dipole term, for a model with the dipole head and ``dipole_weight > 0``,
needs no double backward. Test and validation errors include the stress whenever the data carry
stress labels, and the dipole whenever model and data have dipoles.

Protocol (:func:`train`): the per-species reference energies are initialised by least squares of the
*residual* of the training energies, ``E_s^ref - E_s^net`` (``E^net`` the untrained network's output
without references), on the composition (a linear model ``sum_Z n_Z e_Z``), and stay trainable; fitting
them to the raw energies would leave the network's initial output (about -0.13 eV/atom on ethanol) as a
constant offset that training removes only slowly. Then AdamW over shuffled
mini-batches (order from ``numpy.random.default_rng(seed)``), ``ReduceLROnPlateau`` on the validation
loss (factor 0.5, patience 3), early stopping after ``patience`` epochs without a better validation
loss; the best-validation weights are restored at the end. On CPU the run is deterministic for a
seed (model initialisation, batch order and every reduction are seeded or ordered).

Mini-batches are one disjoint graph: the neighbour list of every configuration is built once
(:meth:`TDNPotential.prepare`), and a batch concatenates atoms and edges, with each periodic image
shift turned into its Cartesian offset ``S @ cell`` so that a batch needs no per-structure cell.

Under ``torchrun`` (``context=``, :mod:`tdn_theory.models.distributed`) every process takes its block of
each global mini-batch and the loss is normalised by the global batch, so that N processes reach the
weights of one; validation errors are summed across processes.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from tdn_theory._checks import check_int, check_seed
from tdn_theory.models.dipole import structure_dipoles
from tdn_theory.models.distributed import SINGLE, Context
from tdn_theory.models.graph import Graph
from tdn_theory.models.molecules import DEBYE_PER_E_ANGSTROM
from tdn_theory.models.potential import TDNPotential
from tdn_theory.models.stress import apply_strain, has_volume, symmetric_strain, voigt_to_matrix

__all__ = [
    "Batch",
    "TrainResult",
    "TrainSettings",
    "collate",
    "errors",
    "fit_reference_energies",
    "predict",
    "predict_all",
    "prepare_all",
    "predict_stress",
    "symmetry_errors",
    "train",
]


@dataclasses.dataclass(frozen=True)
class Batch:
    """Several configurations as one disjoint graph (atoms concatenated in order)."""

    positions: torch.Tensor  # (N, 3)
    species: torch.Tensor  # (N,) row of each atom in the model's embedding
    graph: Graph  # shifts are Cartesian offsets (cell = identity)
    structure: torch.Tensor  # (N,) index of each atom's configuration
    n_atoms: torch.Tensor  # (B,)
    energy: torch.Tensor  # (B,) reference energies, eV
    forces: torch.Tensor  # (N, 3) reference forces, eV/Å
    stress: torch.Tensor | None = None  # (B, 3, 3) reference stresses, eV/Å^3 (NaN: no label)
    volume: torch.Tensor | None = None  # (B,) Å^3 (NaN: not periodic)

    @property
    def has_stress(self) -> torch.Tensor:
        """(B,) bool: configurations with a stress label and a volume."""
        if self.stress is None:
            return torch.zeros(self.size, dtype=torch.bool, device=self.energy.device)
        return torch.isfinite(self.stress).all(dim=(1, 2)) & torch.isfinite(self.volume)

    dipole: torch.Tensor | None = None  # (B, 3) reference dipoles, e·Å, when every config has one

    @property
    def size(self) -> int:
        return int(self.n_atoms.shape[0])


def _prepared(model: TDNPotential, atoms) -> dict[str, torch.Tensor]:
    """One configuration checked and turned into tensors (neighbour list included)."""
    pos, cell, species, graph = model.prepare(
        atoms.get_positions(),
        atoms.get_atomic_numbers(),
        np.asarray(atoms.get_cell()),
        atoms.pbc,
        require_neighbours=True,
    )
    as_float = {"dtype": model.dtype, "device": model.device}
    results = atoms.calc.results if atoms.calc is not None else {}
    dipole = results.get("dipole")
    return {
        "dipole": None if dipole is None else torch.as_tensor(np.asarray(dipole), **as_float),
        "positions": pos.detach(),
        "species": species,
        "dst": graph.dst,
        "src": graph.src,
        "offsets": (graph.shifts.double() @ cell.double()).detach(),  # float64, see graph.py
        "energy": torch.tensor(float(atoms.get_potential_energy()), **as_float),
        "forces": torch.as_tensor(np.asarray(atoms.get_forces()), **as_float),
        **_stress_items(atoms, as_float),
    }


def _stress_items(atoms, as_float: dict) -> dict[str, torch.Tensor]:
    """Reference stress (3, 3) and volume of a configuration; NaN where not labelled or periodic."""
    results = atoms.calc.results if atoms.calc is not None else {}
    periodic = has_volume(np.asarray(atoms.cell), atoms.pbc)
    volume = abs(float(np.linalg.det(np.asarray(atoms.cell)))) if periodic else math.nan
    if periodic and results.get("stress") is not None:
        stress = voigt_to_matrix(results["stress"])
    else:
        stress = np.full((3, 3), math.nan)
    return {
        "stress": torch.as_tensor(stress, **as_float),
        "volume": torch.tensor(volume, **as_float),
    }


def prepare_all(model: TDNPotential, configs: Sequence, where: str = "configuration") -> list:
    """Every configuration checked and prepared (:func:`_prepared`), in order.

    A bad one (an atom without neighbours, coincident atoms, an unknown element) raises a one-line
    ValueError that starts with ``f"{where} {index}: "``, so that the user can find it.
    """
    items = []
    for index, atoms in enumerate(configs):
        try:
            items.append(_prepared(model, atoms))
        except ValueError as exc:
            raise ValueError(f"{where} {index}: {exc}") from None
    return items


def collate(model: TDNPotential, configs: Sequence, prepared: list | None = None) -> Batch:
    """One :class:`Batch` of ``configs`` (or of already prepared configurations)."""
    items = prepared if prepared is not None else [_prepared(model, atoms) for atoms in configs]
    if not items:
        raise ValueError("a batch needs at least one configuration")
    sizes = [int(item["positions"].shape[0]) for item in items]
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    device = model.device
    graph = Graph(
        dst=torch.cat([item["dst"] + int(s) for item, s in zip(items, starts, strict=True)]),
        src=torch.cat([item["src"] + int(s) for item, s in zip(items, starts, strict=True)]),
        shifts=torch.cat([item["offsets"] for item in items]),
        n_atoms=int(sum(sizes)),
    )
    return Batch(
        positions=torch.cat([item["positions"] for item in items]),
        species=torch.cat([item["species"] for item in items]),
        graph=graph,
        structure=torch.repeat_interleave(
            torch.arange(len(items), device=device), torch.as_tensor(sizes, device=device)
        ),
        n_atoms=torch.as_tensor(sizes, dtype=model.dtype, device=device),
        energy=torch.stack([item["energy"] for item in items]),
        forces=torch.cat([item["forces"] for item in items]),
        stress=torch.stack([item["stress"] for item in items]),
        volume=torch.stack([item["volume"] for item in items]),
        dipole=(
            torch.stack([item["dipole"] for item in items])
            if all(item.get("dipole") is not None for item in items)
            else None
        ),
    )


def predict(
    model: TDNPotential, batch: Batch, *, create_graph: bool = False, evaluate: Any = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Energies (B,) and forces (N, 3) of every configuration of ``batch``.

    ``evaluate``: what runs ``model.evaluate`` (default), e.g. its DistributedDataParallel wrapper.
    """
    out = predict_all(model, batch, create_graph=create_graph, evaluate=evaluate)
    return out["energy"], out["forces"]


def predict_all(
    model: TDNPotential,
    batch: Batch,
    *,
    create_graph: bool = False,
    forces: bool = True,
    stress: bool = False,
    evaluate: Any = None,
) -> dict[str, torch.Tensor]:
    """ "energy" (B,), "forces" (N, 3) (with ``forces``), "stress" (B, 3, 3) (with ``stress``;
    eV/Å^3, NaN without a volume) and, for a model with the dipole head, "dipole" (B, 3) of every
    configuration of ``batch`` (``evaluate`` as in :func:`predict`).

    For the stress one symmetric strain per configuration acts on its atoms and on its edges'
    Cartesian image offsets (:mod:`tdn_theory.models.stress`); the strain is zero, so the other
    outputs are those of the unstrained configurations.
    """
    positions = batch.positions.detach().requires_grad_(forces or stress)
    eye = torch.eye(3, dtype=model.dtype, device=model.device)
    graph, inputs = batch.graph, positions
    if stress:
        # the strain in the positions' dtype (float64: edge vectors are float64 differences)
        eps, sym = symmetric_strain(batch.size, dtype=positions.dtype, device=model.device)
        per_atom = sym[batch.structure]
        shifts = apply_strain(graph.shifts.to(positions.dtype), per_atom[graph.dst])
        graph = dataclasses.replace(graph, shifts=shifts)
        inputs = apply_strain(positions, per_atom)
    out = (evaluate or model.evaluate)(inputs, eye, batch.species, graph)
    energies = (
        out["atom_energies"]
        .new_zeros(batch.size)
        .index_add(0, batch.structure, out["atom_energies"])
    )
    result = {"energy": energies}
    if forces or stress:
        wrt = (positions, eps) if stress else (positions,)
        grads = torch.autograd.grad(energies.sum(), wrt, create_graph=create_graph)
        result["forces"] = -grads[0].to(model.dtype)
    if stress:
        grad_eps = grads[1].to(model.dtype)
        periodic = torch.isfinite(batch.volume)[:, None, None]
        safe = torch.where(periodic, batch.volume[:, None, None], 1.0)  # no NaN in the backward
        result["stress"] = torch.where(periodic, grad_eps / safe, math.nan)
    if model.has_dipole:
        dipole, _ = structure_dipoles(
            positions, out["raw_charges"], out["atomic_dipoles"], batch.structure, batch.size
        )
        result["dipole"] = dipole.to(model.dtype)
    return result


def predict_stress(
    model: TDNPotential, batch: Batch, *, create_graph: bool = False
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Energies (B,), forces (N, 3) and stresses (B, 3, 3) (eV/Å^3; NaN without a volume):
    :func:`predict_all` with ``stress=True``."""
    out = predict_all(model, batch, create_graph=create_graph, stress=True)
    return out["energy"], out["forces"], out["stress"]


@dataclasses.dataclass(frozen=True)
class TrainSettings:
    """Hyperparameters of :func:`train` (see the module docstring)."""

    epochs: int = 50
    batch_size: int = 8
    lr: float = 5e-3
    weight_decay: float = 0.0
    energy_weight: float = 10.0
    force_weight: float = 1.0
    dipole_weight: float = 0.0
    patience: int = 10
    reference_fit: str = "residual"  # or "raw" (see fit_reference_energies)
    seed: int = 0
    stress_weight: float = 0.0

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "patience"):
            check_int(getattr(self, name), name, minimum=1)
        check_seed(self.seed)
        if self.reference_fit not in ("residual", "raw"):
            raise ValueError(
                f"reference_fit must be 'residual' or 'raw', got {self.reference_fit!r}"
            )
        weights = ("energy_weight", "force_weight", "stress_weight", "dipole_weight")
        for name in ("lr", "weight_decay", *weights):
            value = getattr(self, name)
            low_ok = value > 0 if name == "lr" else value >= 0
            if not isinstance(value, (int, float)) or not math.isfinite(value) or not low_ok:
                raise ValueError(
                    f"{name} must be a finite number {'> 0' if name == 'lr' else '>= 0'}, got {value!r}"
                )
        if not any(getattr(self, name) for name in weights):
            raise ValueError(
                "energy_weight, force_weight, stress_weight and dipole_weight are all 0: "
                "nothing to train"
            )
        if self.lr * self.weight_decay >= 1:
            raise ValueError(
                f"lr * weight_decay = {self.lr * self.weight_decay:.3g} must be below 1 (AdamW scales "
                "every weight by 1 - lr * weight_decay per step); lower the weight decay"
            )


@dataclasses.dataclass
class TrainResult:
    """History of a training run (one entry per epoch) and the epoch whose weights were kept."""

    history: list[dict[str, float]]
    best_epoch: int
    stopped_early: bool
    seconds: float

    @property
    def seconds_per_epoch(self) -> float:
        return float(np.median([h["seconds"] for h in self.history]))


def _loss(model, batch, settings: TrainSettings, create_graph: bool) -> torch.Tensor:
    labelled = batch.has_stress
    with_stress = settings.stress_weight > 0 and bool(labelled.any())
    out = predict_all(model, batch, create_graph=create_graph, stress=with_stress)
    e_term = (((out["energy"] - batch.energy) / batch.n_atoms) ** 2).mean()
    f_term = ((out["forces"] - batch.forces) ** 2).mean()
    loss = settings.energy_weight * e_term + settings.force_weight * f_term
    if with_stress:
        s_term = ((out["stress"][labelled] - batch.stress[labelled]) ** 2).mean()
        loss = loss + settings.stress_weight * s_term
    if settings.dipole_weight > 0:
        loss = loss + settings.dipole_weight * ((out["dipole"] - batch.dipole) ** 2).mean()
    return loss


def _shard_loss(
    model, evaluate, batch, settings: TrainSettings, n_configs: int, n_atoms: int
) -> torch.Tensor:
    """This process's part of the loss of a global batch of n_configs configurations and n_atoms
    atoms (tdn_theory.models.distributed): sums over the shard divided by the global counts."""
    out = predict_all(model, batch, create_graph=True, evaluate=evaluate)
    e_term = (((out["energy"] - batch.energy) / batch.n_atoms) ** 2).sum() / n_configs
    f_term = ((out["forces"] - batch.forces) ** 2).sum() / (3 * n_atoms)
    loss = settings.energy_weight * e_term + settings.force_weight * f_term
    if settings.dipole_weight > 0:
        mu_term = ((out["dipole"] - batch.dipole) ** 2).sum() / (3 * n_configs)
        loss = loss + settings.dipole_weight * mu_term
    return loss


def fit_reference_energies(
    model: TDNPotential,
    configs: Sequence,
    *,
    prepared: list | None = None,
    batch_size: int = 32,
    residual: bool = True,
) -> None:
    """Set ``model.reference_energy`` to the least-squares per-species energies of the residual
    ``E_s^ref - E_s^net`` of ``configs`` (``E^net``: the model's output without references; see the
    module docstring). With fixed composition (one molecule) the solution is the minimum-norm one.
    ``residual=False``: fit the raw energies ``E_s^ref`` instead (the former protocol, for
    comparison)."""
    items = prepared if prepared is not None else [_prepared(model, a) for a in configs]
    counts = np.zeros((len(items), len(model.species)))
    for s, item in enumerate(items):
        counts[s] = np.bincount(item["species"].cpu().numpy(), minlength=len(model.species))
    energies = np.array([float(item["energy"]) for item in items])
    with torch.no_grad():
        model.reference_energy.zero_()
        network = np.concatenate(
            [
                predict_all(model, collate(model, (), chunk), forces=False)["energy"].cpu().numpy()
                for chunk in _batches(items, batch_size)
            ]
        )
    target = energies - network if residual else energies
    solution, *_ = np.linalg.lstsq(counts, target, rcond=None)
    with torch.no_grad():
        model.reference_energy.copy_(torch.as_tensor(solution, dtype=model.dtype))


def _batches(items: list, size: int, order: np.ndarray | None = None):
    index = np.arange(len(items)) if order is None else order
    for start in range(0, len(items), size):
        yield [items[i] for i in index[start : start + size]]


def errors(
    model: TDNPotential,
    configs: Sequence,
    *,
    batch_size: int = 8,
    prepared: list | None = None,
    context: Context = SINGLE,
) -> dict[str, float]:
    """Mean absolute errors: energy in meV/atom and per structure (meV and kcal/mol, as molecular
    benchmarks report it), forces in meV/Å (per component), and the loss terms' RMS values
    (eV/atom, eV/Å). When some configurations carry a stress label (and a volume), also the stress
    MAE in meV/Å^3 and RMSE in eV/Å^3 over their 3 x 3 components. For a model with the dipole head
    and data with dipoles also the dipole MAE per component (e·Å and Debye), the mean norm of the
    dipole error (e·Å) and the dipole RMSE (e·Å).
    Distributed (``context``): each process evaluates its block of the configurations and the sums
    are added up across processes."""
    from ase import units

    items = prepared if prepared is not None else prepare_all(model, configs)
    n = len(items)
    items = context.shard(items)
    e_abs, e_abs_s, f_abs, e_sq, f_sq, n_f = 0.0, 0.0, 0.0, 0.0, 0.0, 0
    s_abs, s_sq, n_s = 0.0, 0.0, 0
    mu_abs, mu_norm, mu_sq, n_mu = 0.0, 0.0, 0.0, 0
    for chunk in _batches(items, batch_size):
        batch = collate(model, (), chunk)
        labelled = batch.has_stress
        out = predict_all(model, batch, stress=bool(labelled.any()))
        if "stress" in out:
            ds = (out["stress"].detach()[labelled] - batch.stress[labelled]).double()
            s_abs += float(ds.abs().sum())
            s_sq += float((ds**2).sum())
            n_s += ds.numel()
        de_s = (out["energy"].detach() - batch.energy).double()
        de = de_s / batch.n_atoms.double()
        df = (out["forces"].detach() - batch.forces).double()
        e_abs += float(de.abs().sum())
        e_abs_s += float(de_s.abs().sum())
        e_sq += float((de**2).sum())
        f_abs += float(df.abs().sum())
        f_sq += float((df**2).sum())
        n_f += df.numel()
        if "dipole" in out and batch.dipole is not None:
            dmu = (out["dipole"].detach() - batch.dipole).double()
            mu_abs += float(dmu.abs().sum())
            mu_norm += float(torch.linalg.vector_norm(dmu, dim=1).sum())
            mu_sq += float((dmu**2).sum())
            n_mu += batch.size
    if context.distributed:
        sums = [e_abs, e_abs_s, e_sq, f_abs, f_sq, n_f, s_abs, s_sq, n_s]
        sums = context.all_sum([*sums, mu_abs, mu_norm, mu_sq, n_mu])
        e_abs, e_abs_s, e_sq, f_abs, f_sq, n_f, s_abs, s_sq, n_s = sums[:9]
        mu_abs, mu_norm, mu_sq, n_mu = sums[9:]
    result = {
        "energy_mae_mev_per_atom": 1e3 * e_abs / n,
        "energy_mae_mev_per_structure": 1e3 * e_abs_s / n,
        "energy_mae_kcal_per_mol": e_abs_s / n / (units.kcal / units.mol),
        "force_mae_mev_per_A": 1e3 * f_abs / n_f,
        "energy_rmse_ev_per_atom": math.sqrt(e_sq / n),
        "force_rmse_ev_per_A": math.sqrt(f_sq / n_f),
    }
    if n_s:
        result["stress_mae_mev_per_A3"] = 1e3 * s_abs / n_s
        result["stress_rmse_ev_per_A3"] = math.sqrt(s_sq / n_s)
    if n_mu:
        result["dipole_mae_eA"] = mu_abs / (3 * n_mu)
        result["dipole_mae_debye"] = result["dipole_mae_eA"] * DEBYE_PER_E_ANGSTROM
        result["dipole_norm_error_eA"] = mu_norm / n_mu
        result["dipole_rmse_eA"] = math.sqrt(mu_sq / (3 * n_mu))
    return result


def train(
    model: TDNPotential,
    train_configs: Sequence,
    val_configs: Sequence,
    settings: TrainSettings = TrainSettings(),
    *,
    on_epoch: Callable[[dict[str, float], bool], None] | None = None,
    progress: bool = False,
    context: Context = SINGLE,
) -> TrainResult:
    """Train ``model`` in place (see the module docstring); the best-validation weights are kept.

    ``on_epoch(record, improved)`` is called after every epoch (e.g. to write a checkpoint).
    ``context``: data-parallel training under torchrun (tdn_theory.models.distributed): every
    process gets the same configurations and takes its shard of every global batch; the weights
    are those of one process on the same global batches (up to rounding). ``on_epoch`` and the
    progress bar run on rank 0 only.
    """
    if not train_configs or not val_configs:
        raise ValueError("training needs at least one training and one validation configuration")
    train_items = prepare_all(model, train_configs, "training configuration")
    val_items = prepare_all(model, val_configs, "validation configuration")
    if settings.stress_weight > 0 and not any(
        bool(torch.isfinite(item["stress"]).all() and torch.isfinite(item["volume"]))
        for item in train_items
    ):
        raise ValueError(
            "stress_weight > 0 but no training configuration is periodic with a stress label; "
            "give stresses (or virials) or set the stress weight to 0"
        )
    if settings.stress_weight > 0 and context.distributed:
        raise ValueError(
            "training on stresses (stress_weight > 0) runs in one process; under torchrun set "
            "the stress weight to 0"
        )
    if settings.dipole_weight > 0:
        if not model.has_dipole:
            raise ValueError("dipole_weight > 0 needs a model with the dipole head (dipole=True)")
        for name, items in (("training", train_items), ("validation", val_items)):
            missing = [k for k, item in enumerate(items) if item["dipole"] is None]
            if missing:
                raise ValueError(
                    f"{name} configuration {missing[0]} has no dipole ({len(missing)} such); "
                    "name the file's dipole key (--dipole-key) or set the dipole weight to 0"
                )
    fit_reference_energies(
        model, (), prepared=train_items, residual=settings.reference_fit == "residual"
    )
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=settings.lr, weight_decay=settings.weight_decay
    )
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, factor=0.5, patience=3)
    rng = np.random.default_rng(settings.seed)
    best_loss, best_state, best_epoch, since_best = math.inf, None, 0, 0
    history: list[dict[str, float]] = []
    start = time.perf_counter()
    bar = _progress_bar(settings.epochs, progress and context.is_main)
    evaluate = context.parallel(model)
    stopped_early = False
    for epoch in range(1, settings.epochs + 1):
        t0 = time.perf_counter()
        model.train()
        total, count = 0.0, 0
        for chunk in _batches(train_items, settings.batch_size, rng.permutation(len(train_items))):
            if context.distributed:
                shard = context.shard(chunk)
                batch = collate(model, (), shard or chunk[:1])
                n_atoms = sum(int(item["positions"].shape[0]) for item in chunk)
                loss = _shard_loss(model, evaluate, batch, settings, len(chunk), n_atoms)
                loss = loss * (context.world if shard else 0.0)  # DDP averages the gradients
                loss_value = float(loss.detach()) / context.world  # this shard's part
            else:
                batch = collate(model, (), chunk)
                loss = _loss(model, batch, settings, create_graph=True)
                loss_value = float(loss.detach())
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += loss_value * len(chunk)
            count += len(chunk)
        if context.distributed:
            (total,) = context.all_sum([total])
        model.eval()
        val = errors(model, (), batch_size=settings.batch_size, prepared=val_items, context=context)
        val_loss = (
            settings.energy_weight * val["energy_rmse_ev_per_atom"] ** 2
            + settings.force_weight * val["force_rmse_ev_per_A"] ** 2
            + settings.stress_weight * val.get("stress_rmse_ev_per_A3", 0.0) ** 2
        )
        if settings.dipole_weight > 0:
            val_loss += settings.dipole_weight * val["dipole_rmse_eA"] ** 2
        if not math.isfinite(val_loss):
            raise FloatingPointError(
                f"validation loss became {val_loss} at epoch {epoch}; lower the learning rate "
                f"({settings.lr:g}) or the loss weights (energy {settings.energy_weight:g}, "
                f"force {settings.force_weight:g})"
            )
        scheduler.step(val_loss)
        improved = val_loss < best_loss
        if improved:
            best_loss, best_epoch, since_best = val_loss, epoch, 0
            best_state = copy.deepcopy(model.state_dict())
        else:
            since_best += 1
        record = {
            "epoch": epoch,
            "train_loss": total / count,
            "val_loss": val_loss,
            "val_energy_mae_mev_per_atom": val["energy_mae_mev_per_atom"],
            "val_force_mae_mev_per_A": val["force_mae_mev_per_A"],
            **(
                {"val_stress_mae_mev_per_A3": val["stress_mae_mev_per_A3"]}
                if "stress_mae_mev_per_A3" in val
                else {}
            ),
            **({"val_dipole_mae_eA": val["dipole_mae_eA"]} if "dipole_mae_eA" in val else {}),
            "lr": optimizer.param_groups[0]["lr"],
            "seconds": time.perf_counter() - t0,
        }
        history.append(record)
        if on_epoch is not None and context.is_main:
            on_epoch(
                record, improved
            )  # the model holds this epoch's weights (the best if improved)
        if bar is not None:
            bar.set_postfix(
                val_E=f"{val['energy_mae_mev_per_atom']:.1f}",
                val_F=f"{val['force_mae_mev_per_A']:.0f}",
            )
            bar.update(1)
        if since_best >= settings.patience:
            stopped_early = True
            break
    if bar is not None:
        bar.close()
    model.load_state_dict(best_state)
    return TrainResult(history, best_epoch, stopped_early, time.perf_counter() - start)


def _progress_bar(total: int, enabled: bool) -> Any:
    if not enabled:
        return None
    from tqdm.auto import tqdm

    # disable=None: tqdm's convention, no bar when stderr is not a terminal (logs stay clean)
    return tqdm(total=total, desc="epochs", unit="epoch", leave=False, disable=None)


#: Below this force RMS (eV/Å) the data's forces count as zero (rounding of a symmetric structure).
FORCE_SCALE_FLOOR = 1e-6


def symmetry_errors(
    model: TDNPotential,
    configs: Sequence,
    *,
    rotations: int = 8,
    seed: int = 0,
    iterations: int = 40,
) -> dict[str, float | None]:
    """Rotational consistency of a (trained) model on ``configs``.

    The force defect of a configuration of ``N`` atoms under a rotation ``R`` is the RMS over its
    3N components of ``F(Rx) - R F(x)`` (eV/Å). It is reported absolute and relative to the
    data's force scale ``s``: the RMS of the reference forces of ``configs`` (of the model's
    forces F(x) when ``configs`` carry no forces), pooled over all of them. Both are defined at
    F = 0 (a perfect crystal, a one-atom cell): the relative figures are None when
    s < :data:`FORCE_SCALE_FLOOR` (the data's forces are zero up to rounding).

    ``force_equivariance_mean`` / ``force_equivariance_abs_mean_mev_per_A``: mean over
    ``rotations`` Haar rotations (``scipy`` ``Rotation.random`` with ``seed``) and over the
    configurations, relative to s / in meV/Å; ``force_equivariance_worst_found`` /
    ``force_equivariance_abs_worst_found_mev_per_A``: the largest defect found (a lower bound on the
    maximum, not the maximum), after a Nelder-Mead search
    (:func:`~tdn_theory.models.network_bound.adversarial_rotation`, ``iterations`` evaluations)
    started from the worst Haar rotation of each configuration; ``force_scale_eV_per_A``: s;
    ``energy_invariance_mev_per_atom``: mean ``|E(Rx) - E(x)| / N`` in meV/atom over the Haar
    rotations.
    For a model with the dipole head also ``dipole_rotation_error_eA``: mean over the Haar rotations
    and configurations of ``|mu(Rx) - R mu(x)|`` (e·Å), and ``dipole_rotation_error_max_eA``.
    """
    from scipy.spatial.transform import Rotation

    from tdn_theory.models.network_bound import adversarial_rotation, measure_defects

    if not configs:
        raise ValueError("symmetry_errors needs at least one configuration")
    rotations = check_int(rotations, "rotations", minimum=1)
    seed = check_seed(seed)
    haar = Rotation.random(rotations, random_state=seed).as_matrix()
    means, worst, energy, squares, count, dipole = [], [], [], 0.0, 0, []
    for atoms in configs:
        args = (
            atoms.get_positions(),
            atoms.get_atomic_numbers(),
            np.asarray(atoms.cell),
            atoms.pbc,
        )
        defects = measure_defects(model, *args, haar)
        rms = defects["forces"] / math.sqrt(3 * len(atoms))  # (rotations,), eV/Å
        means.append(float(rms.mean()))
        energy.append(1e3 * float(defects["energy"].mean()) / len(atoms))
        _, found = adversarial_rotation(
            model, *args, start=haar[int(np.argmax(rms))], iterations=iterations
        )
        worst.append(max(float(rms.max()), found / math.sqrt(3 * len(atoms))))
        squares += _force_squares(atoms, defects["force_scale"])
        count += 3 * len(atoms)
        if model.has_dipole:
            mu = model.run(*args)["dipole"].detach().cpu().numpy()
            for R in haar:
                rotated = args[0] @ R.T, args[1], args[2] @ R.T, args[3]
                mu_r = model.run(*rotated)["dipole"].detach().cpu().numpy()
                dipole.append(float(np.linalg.norm(mu_r - R @ mu)))
    scale = math.sqrt(squares / count)
    mean, high = float(np.mean(means)), float(np.max(worst))
    relative = scale >= FORCE_SCALE_FLOOR
    out = {
        "force_equivariance_mean": mean / scale if relative else None,
        "force_equivariance_worst_found": high / scale if relative else None,
        "force_equivariance_abs_mean_mev_per_A": 1e3 * mean,
        "force_equivariance_abs_worst_found_mev_per_A": 1e3 * high,
        "force_scale_eV_per_A": scale,
        "energy_invariance_mev_per_atom": float(np.mean(energy)),
    }
    if dipole:
        out["dipole_rotation_error_eA"] = float(np.mean(dipole))
        out["dipole_rotation_error_max_eA"] = float(np.max(dipole))
    return out


def _force_squares(atoms, model_force_norm: float) -> float:
    """Sum of squared reference force components of ``atoms`` (the model's when unlabelled)."""
    try:
        forces = atoms.get_forces()
    except Exception:  # no calculator or no forces: ase raises several types
        return model_force_norm**2
    return float(np.sum(np.asarray(forces, dtype=np.float64) ** 2))
