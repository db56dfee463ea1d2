r"""Molecular data sets with quantum-chemistry labels: GFN2-xTB molecular dynamics through ``tblite``.

Named sets in the style of rMD17 (one molecule, many thermal geometries):

``"ethanol-gfn2"``
    Ethanol, C2H5OH (9 atoms), from ASE's g2 geometry.
``"malonaldehyde-gfn2"``
    Malonaldehyde (enol form, 9 atoms): its hydroxyl proton hops between the two oxygens (intramolecular
    proton transfer); every configuration records which oxygen holds it (``info["proton_side"]``, 0 or
    1) and how many transfers the MD made since the previous snapshot (``info["proton_transfers"]``).

Protocol (every random draw from ``numpy.random.default_rng(seed)``): the start geometry is relaxed with
GFN2-xTB (BFGS, fmax 0.01 eV/Å); then ``ceil(n_configs / snapshots_per_trajectory)`` independent
trajectories, each from fresh Maxwell-Boltzmann velocities at 500 K: Langevin MD (0.5 fs steps,
friction 0.01/fs), ``equilibration_steps`` steps of equilibration, then one snapshot every
``snapshot_every`` steps (50 fs). Each snapshot is relabelled by a fresh, tightly converged GFN2-xTB
single point (``accuracy`` 0.01, a new calculator, so no SCF guess is carried over) and stores

- ``energy`` (eV), ``forces`` (eV/Å), ``dipole`` (e·Å) and Mulliken ``charges`` (e) as calculator results;
- ``info["trajectory"]`` (0-based trajectory id: test splits can hold out whole trajectories, see
  :func:`tdn_theory.models.data.split_trajectories`) and ``info["temperature_K"]``.

Units. tblite's ASE calculator documents its dipole in Debye, but its code returns
``dipole_in_bohr_times_e * Bohr``, i.e. e·Å. Checked here: translating a cation of charge +1 by
1 Å changes the returned dipole by exactly 1.0 (Debye would give 4.80); see
``tests/test_models_molecules.py::test_tblite_dipole_is_in_e_angstrom``. The sets store e·Å.

The run is deterministic for a seed on a given machine with ``OMP_NUM_THREADS=1`` (MD is chaotic, so a
different BLAS or thread count changes the trajectories after some picoseconds, not their statistics).
``tblite`` is the optional extra ``qm``: ``pip install "tdn_theory[qm]"``.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from tdn_theory._checks import check_int

__all__ = [
    "MOLECULE_DATASETS",
    "MissingExtraError",
    "MoleculeRecipe",
    "generate_molecules",
    "proton_side",
    "proton_transfer_summary",
    "start_geometry",
    "tblite_calculator",
]

#: 1 e·Å in Debye (ase.units: Debye = 1e-21 C m / (c e Å)); 4.803.
DEBYE_PER_E_ANGSTROM = 4.803204


class MissingExtraError(ImportError):
    """An optional dependency is missing; the message names the extra that installs it."""


@dataclasses.dataclass(frozen=True)
class MoleculeRecipe:
    """How one named molecular set is generated (times in MD steps of ``timestep_fs``)."""

    molecule: str  # key of start_geometry
    n_configs: int = 500
    temperature_K: float = 500.0
    timestep_fs: float = 0.5
    friction_per_fs: float = 0.01
    equilibration_steps: int = 1000  # 0.5 ps
    snapshot_every: int = 100  # 50 fs
    snapshots_per_trajectory: int = 50
    method: str = "GFN2-xTB"
    md_accuracy: float = 1.0
    label_accuracy: float = 0.01
    # (H, O_a, O_b) atom indices of a transferring proton, or None
    proton: tuple[int, int, int] | None = None
    proton_hysteresis_A: float = 0.3


MOLECULE_DATASETS: dict[str, MoleculeRecipe] = {
    "ethanol-gfn2": MoleculeRecipe(molecule="ethanol"),
    "malonaldehyde-gfn2": MoleculeRecipe(molecule="malonaldehyde", proton=(8, 3, 4)),
}


def tblite_calculator(**parameters):
    """A ``tblite.ase.TBLite`` calculator (quiet); MissingExtraError naming the extra without tblite."""
    try:
        from tblite.ase import TBLite
    except ImportError:
        raise MissingExtraError(
            "quantum-chemistry labels need tblite: pip install 'tdn_theory[qm]' (the optional extra qm)"
        ) from None
    return TBLite(verbosity=0, **parameters)


def start_geometry(molecule: str):
    """The unrelaxed start geometry of a named molecule (ase.Atoms, no cell, pbc False)."""
    from ase import Atoms
    from ase.build import molecule as g2

    if molecule == "ethanol":
        return g2("CH3CH2OH")
    if molecule == "malonaldehyde":
        # planar enol ring O=C1H-C2H=C3H-O-H...O (xy plane), a rough guess that GFN2 relaxes; index 8
        # is the hydroxyl proton, bonded to O 3 and hydrogen-bonded to O 4
        r = 1.40
        ring = {
            a: (r * math.cos(math.radians(a)), r * math.sin(math.radians(a)))
            for a in range(0, 360, 30)
        }
        c1, c2, c3 = ring[150], ring[90], ring[30]
        o_a, o_b = ring[210], ring[330]
        positions = [
            (*c1, 0.0),
            (*c2, 0.0),
            (*c3, 0.0),
            (*o_a, 0.0),
            (*o_b, 0.0),
            (1.55 * c1[0], 1.55 * c1[1], 0.0),
            (0.0, 2.48, 0.0),
            (1.55 * c3[0], 1.55 * c3[1], 0.0),
            (o_a[0] + 0.95, o_a[1] - 0.05, 0.0),
        ]
        return Atoms("C3O2H4", positions=positions)
    raise ValueError(f"unknown molecule {molecule!r}; known: ethanol, malonaldehyde")


def proton_side(
    positions: np.ndarray, proton: tuple[int, int, int], previous: int, hysteresis: float
) -> int:
    """Which oxygen holds the proton: 0 (``O_a``) or 1 (``O_b``), with hysteresis.

    With ``d_a, d_b`` the H-O distances, the side switches from ``previous`` only when the proton is
    closer to the other oxygen by more than ``hysteresis`` Å (so vibrations near the transition state
    do not count as transfers).
    """
    h, a, b = proton
    d_a = float(np.linalg.norm(positions[h] - positions[a]))
    d_b = float(np.linalg.norm(positions[h] - positions[b]))
    if d_b < d_a - hysteresis:
        return 1
    if d_a < d_b - hysteresis:
        return 0
    return previous


def _relaxed(recipe: MoleculeRecipe):
    from ase.optimize import BFGS

    atoms = start_geometry(recipe.molecule)
    atoms.calc = tblite_calculator(method=recipe.method, accuracy=recipe.label_accuracy)
    BFGS(atoms, logfile=None).run(fmax=0.01, steps=500)
    atoms.calc = None
    return atoms


def _label(atoms, recipe: MoleculeRecipe):
    """A copy of ``atoms`` labelled by a fresh, tightly converged single point."""
    from ase.calculators.singlepoint import SinglePointCalculator

    snapshot = atoms.copy()
    snapshot.set_constraint()
    snapshot.calc = tblite_calculator(method=recipe.method, accuracy=recipe.label_accuracy)
    results = {
        "energy": float(snapshot.get_potential_energy()),
        "forces": snapshot.get_forces().copy(),
        "dipole": np.asarray(snapshot.get_dipole_moment(), dtype=np.float64).copy(),  # e·Å
        "charges": np.asarray(snapshot.get_charges(), dtype=np.float64).copy(),
    }
    snapshot.calc = SinglePointCalculator(snapshot, **results)
    return snapshot


def generate_molecules(
    name: str,
    *,
    n_configs: int | None = None,
    seed: int = 0,
    recipe: MoleculeRecipe | None = None,
) -> list:
    """Generate the named molecular set (see the module docstring): labelled configurations.

    ``recipe`` replaces the named set's protocol (e.g. shorter MD for a test; such sets are not
    cached by :func:`tdn_theory.models.data.dataset_path`). Shows a tqdm progress bar on a terminal
    (none in logs or tests). Raises MissingExtraError without tblite, ValueError for an unknown name.
    """
    from ase import units
    from ase.constraints import FixCom
    from ase.md import velocitydistribution as velocities
    from ase.md.langevin import Langevin
    from tqdm.auto import tqdm

    if name not in MOLECULE_DATASETS:
        raise ValueError(
            f"unknown molecular set {name!r}; named sets are {', '.join(sorted(MOLECULE_DATASETS))}"
        )
    if recipe is None:
        recipe = MOLECULE_DATASETS[name]
    elif not isinstance(recipe, MoleculeRecipe):
        raise ValueError(f"recipe must be a MoleculeRecipe, got {type(recipe).__name__}")
    n_configs = (
        recipe.n_configs if n_configs is None else check_int(n_configs, "n_configs", minimum=1)
    )
    seed = check_int(seed, "seed")
    tblite_calculator()  # fail early, with the extra's name, before any work
    rng = np.random.default_rng(seed)
    start = _relaxed(recipe)
    per_trajectory = recipe.snapshots_per_trajectory
    n_trajectories = math.ceil(n_configs / per_trajectory)
    thermalize = getattr(velocities, "thermalize_momenta", None)
    thermalize = thermalize or velocities.MaxwellBoltzmannDistribution
    configs: list = []
    bar = tqdm(total=n_configs, desc=name, unit="config", leave=False, disable=None)
    try:
        for trajectory in range(n_trajectories):
            atoms = start.copy()
            atoms.calc = tblite_calculator(method=recipe.method, accuracy=recipe.md_accuracy)
            thermalize(atoms, temperature_K=recipe.temperature_K, rng=rng)
            velocities.Stationary(atoms)
            velocities.ZeroRotation(atoms)
            atoms.set_constraint(FixCom())
            md = Langevin(
                atoms,
                timestep=recipe.timestep_fs * units.fs,
                temperature_K=recipe.temperature_K,
                friction=recipe.friction_per_fs / units.fs,
                fixcm=False,
                rng=rng,
            )
            md.run(recipe.equilibration_steps)
            state = {"side": 0, "transfers": 0}
            if recipe.proton is not None:
                state["side"] = proton_side(atoms.positions, recipe.proton, 0, 0.0)

                def watch(atoms=atoms, state=state) -> None:
                    side = proton_side(
                        atoms.positions, recipe.proton, state["side"], recipe.proton_hysteresis_A
                    )
                    state["transfers"] += side != state["side"]
                    state["side"] = side

                md.attach(watch, interval=1)
            for _ in range(min(per_trajectory, n_configs - len(configs))):
                md.run(recipe.snapshot_every)
                snapshot = _label(atoms, recipe)
                snapshot.info["trajectory"] = trajectory
                snapshot.info["temperature_K"] = float(recipe.temperature_K)
                if recipe.proton is not None:
                    snapshot.info["proton_side"] = int(state["side"])
                    snapshot.info["proton_transfers"] = int(state["transfers"])
                    state["transfers"] = 0
                configs.append(snapshot)
                bar.update(1)
    finally:
        bar.close()
    return configs


def proton_transfer_summary(configs) -> dict:
    """Proton transfers in a malonaldehyde set: transfers during the sampled MD (every step watched),
    snapshots per side, and side changes between consecutive snapshots of a trajectory."""
    sides = [int(a.info["proton_side"]) for a in configs]
    transfers = sum(int(a.info["proton_transfers"]) for a in configs)
    changes = sum(
        1
        for prev, cur in zip(configs[:-1], configs[1:], strict=True)
        if prev.info["trajectory"] == cur.info["trajectory"]
        and prev.info["proton_side"] != cur.info["proton_side"]
    )
    return {
        "md_transfers": int(transfers),
        "snapshots_side_0": sides.count(0),
        "snapshots_side_1": sides.count(1),
        "snapshot_side_changes": int(changes),
        "n_configs": len(configs),
    }
