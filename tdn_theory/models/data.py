"""Atomistic data for training and testing potentials: EMT data sets and an extended-XYZ reader.

A *configuration* is an :class:`ase.Atoms` whose calculator is an
:class:`ase.calculators.singlepoint.SinglePointCalculator` holding the reference ``energy`` (eV) and
``forces`` (eV/Å, shape (atoms, 3)) and, where known, the ``stress`` (eV/Å^3, Voigt order xx, yy, zz,
yz, xz, xy, ASE's sign): the convention of every ASE-based MLIP tool, so that
``atoms.get_potential_energy()``, ``atoms.get_forces()`` and ``atoms.get_stress()`` return the labels.
The periodic EMT set stores EMT's stress (generator version 2; caches of version 1 have no stress and
are regenerated under a new key, never read as if they had one).

Named data sets (generated with ASE's EMT calculator, a real many-body potential for fcc metals):

``"cuau-fcc"``
    Periodic fcc Cu-Au alloy, 32 atoms (2 x 2 x 2 conventional cells). Each trajectory draws an Au
    fraction uniform in [0.2, 0.8] (random occupation), a lattice constant from Vegard's law
    (Cu 3.61 Å, Au 4.08 Å) times an isotropic strain uniform in [-2 %, +2 %], and a temperature uniform
    in [300, 1200] K; Langevin MD (4 fs steps, friction 0.01/fs) from Maxwell-Boltzmann velocities,
    200 fs of equilibration, then one snapshot every 100 fs.
``"agpd-cluster"``
    Non-periodic Ag-Pd clusters with surfaces, 13-55 atoms (icosahedra, cuboctahedra/octahedra and
    Ino decahedra of 13, 19, 38, 39 and 55 atoms), Pd fraction uniform in [0.2, 0.8], Vegard lattice
    constant (Ag 4.09 Å, Pd 3.89 Å), temperature uniform in [300, 900] K, the same MD protocol.

Molecular sets with GFN2-xTB labels (energy, forces, dipole in e·Å, charges; the optional extra ``qm``):
``"ethanol-gfn2"`` and ``"malonaldehyde-gfn2"``, see :mod:`tdn_theory.models.molecules`.

Every generated configuration stores ``info["trajectory"]``, the id of the MD trajectory it comes
from, so that :func:`split_trajectories` can hold out whole trajectories for testing (snapshots of one
trajectory are correlated; a test set interleaved with training snapshots flatters a model).

Generated sets are written as extended XYZ through :func:`ase.io.write` into the user cache folder
(``$TDN_THEORY_CACHE``, else ``~/.cache/tdn_theory``) under ``datasets/``, keyed by the generator
parameters and the seed, atomically, with a JSON sidecar that records the parameters and the SHA-256 of
the file. A cached set is verified against its sidecar when read; a damaged or altered file is
regenerated (with a warning), never used; an entry that is not a regular file (a FIFO, a link) is a
miss, never opened. When the cache cannot be written (the folder is a file, read-only, or the disk is
full) the set is generated in memory and used without the cache, with one warning. Every random draw
comes from ``numpy.random.default_rng(seed)``; seeds are integers in ``[0, 2**32 - 1]``.

Names and files: a ``source`` that names a set and is also an existing path is refused as ambiguous
(write ``./cuau-fcc`` for the file). Atomic numbers must be 1..118 (ASE's dummy element ``X``, Z = 0,
cannot be embedded by a potential and is refused when read).

Splits: :func:`split` is a seeded permutation of the configurations; :func:`split_trajectories` a seeded
permutation of whole trajectories.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from tdn_theory._checks import check_int, check_seed
from tdn_theory.models.molecules import MOLECULE_DATASETS, MoleculeRecipe, generate_molecules
from tdn_theory.so3._files import NotRegularFileError, atomic_write, check_regular_or_absent

#: Bumped whenever the generator changes what it produces for the same parameters.
#: 2 and 3: periodic sets store EMT's stress; every configuration stores info["trajectory"];
#: molecular sets (3 = both, after two branches had each used 2 for one of them).
GENERATOR_VERSION = 3


@dataclasses.dataclass(frozen=True)
class EMTRecipe:
    """How one named EMT data set is generated (all lengths Å, times fs, temperatures K)."""

    kind: str  # "bulk" or "cluster"
    elements: tuple[str, str]
    lattice_constants: tuple[float, float]
    fraction_range: tuple[float, float]  # fraction of the second element
    temperature_range: tuple[float, float]
    n_configs: int
    strain: float = 0.0  # bulk only: isotropic strain drawn from [-strain, +strain]
    repeat: int = 2  # bulk only: conventional cells per axis
    timestep_fs: float = 4.0
    friction_per_fs: float = 0.01
    equilibration_steps: int = 50
    snapshot_every: int = 25
    snapshots_per_trajectory: int = 5


EMT_DATASETS: dict[str, EMTRecipe] = {
    "cuau-fcc": EMTRecipe(
        kind="bulk",
        elements=("Cu", "Au"),
        lattice_constants=(3.61, 4.08),
        fraction_range=(0.2, 0.8),
        temperature_range=(300.0, 1200.0),
        n_configs=400,
        strain=0.02,
    ),
    "agpd-cluster": EMTRecipe(
        kind="cluster",
        elements=("Ag", "Pd"),
        lattice_constants=(4.09, 3.89),
        fraction_range=(0.2, 0.8),
        temperature_range=(300.0, 900.0),
        n_configs=400,
    ),
}

#: Every named set: the EMT metals and the GFN2-xTB molecules (tdn_theory.models.molecules).
DATASETS: dict[str, EMTRecipe | MoleculeRecipe] = {**EMT_DATASETS, **MOLECULE_DATASETS}


def _dataset_folder() -> Path:
    """``datasets/`` beside the versioned CG cache in the user cache folder."""
    from tdn_theory.so3.cache import cache_dir

    return cache_dir().parent / "datasets"


def _initial_structure(recipe: EMTRecipe, rng: np.random.Generator):
    """A new random-occupation structure for one trajectory (before MD)."""
    from ase.build import bulk
    from ase.cluster import Decahedron, Icosahedron, Octahedron

    first, second = recipe.elements
    fraction = rng.uniform(*recipe.fraction_range)
    a = (1 - fraction) * recipe.lattice_constants[0] + fraction * recipe.lattice_constants[1]
    if recipe.kind == "bulk":
        a *= 1 + rng.uniform(-recipe.strain, recipe.strain)
        atoms = bulk(first, "fcc", a=a, cubic=True).repeat(recipe.repeat)
    else:
        shapes = (
            lambda: Icosahedron(first, 2, latticeconstant=a),  # 13
            lambda: Icosahedron(first, 3, latticeconstant=a),  # 55
            lambda: Octahedron(first, 3, 0, latticeconstant=a),  # 19
            lambda: Octahedron(first, 4, 1, latticeconstant=a),  # 38
            lambda: Octahedron(first, 5, 2, latticeconstant=a),  # 55
            lambda: Decahedron(first, 2, 2, 0, latticeconstant=a),  # 13
            lambda: Decahedron(first, 3, 2, 0, latticeconstant=a),  # 39
            lambda: Decahedron(first, 3, 3, 0, latticeconstant=a),  # 55
        )
        atoms = shapes[int(rng.integers(len(shapes)))]()
        atoms.center(vacuum=6.0)
        atoms.pbc = False
    n = len(atoms)
    n_second = int(round(fraction * n))
    symbols = np.array([first] * n, dtype=object)
    symbols[rng.permutation(n)[:n_second]] = second
    atoms.set_chemical_symbols(list(symbols))
    return atoms


def generate_emt(
    name: str, *, n_configs: int | None = None, seed: int = 0, progress: bool = False
) -> list:
    """Generate the named EMT data set: a list of labelled configurations (see the module docstring).

    Deterministic for ``(name, n_configs, seed)`` on a given ASE version. ``progress`` shows a tqdm
    bar on a terminal (none when stderr is not one).
    """
    from ase import units
    from ase.calculators.emt import EMT
    from ase.calculators.singlepoint import SinglePointCalculator
    from ase.constraints import FixCom
    from ase.md import velocitydistribution as velocities
    from ase.md.langevin import Langevin

    recipe = _recipe(name)
    if not isinstance(recipe, EMTRecipe):
        raise ValueError(f"{name!r} is not an EMT set; use generate_molecules or dataset_path")
    n_configs = (
        recipe.n_configs if n_configs is None else check_int(n_configs, "n_configs", minimum=1)
    )
    seed = check_seed(seed)
    rng = np.random.default_rng(seed)
    configs: list = []
    trajectory = 0
    bar = _progress_bar(n_configs, f"generating {name}") if progress else None
    while len(configs) < n_configs:
        atoms = _initial_structure(recipe, rng)
        atoms.calc = EMT()
        temperature = rng.uniform(*recipe.temperature_range)
        # thermalize_momenta is ASE >= 3.29's name for MaxwellBoltzmannDistribution
        thermalize = getattr(velocities, "thermalize_momenta", None)
        thermalize = thermalize or velocities.MaxwellBoltzmannDistribution
        thermalize(atoms, temperature_K=temperature, rng=rng)
        velocities.Stationary(atoms)
        atoms.set_constraint(FixCom())
        md = Langevin(
            atoms,
            timestep=recipe.timestep_fs * units.fs,
            temperature_K=temperature,
            friction=recipe.friction_per_fs / units.fs,
            fixcm=False,
            rng=rng,
        )
        md.run(recipe.equilibration_steps)
        for _ in range(recipe.snapshots_per_trajectory):
            md.run(recipe.snapshot_every)
            snapshot = atoms.copy()
            snapshot.set_constraint()
            labels = {
                "energy": float(atoms.get_potential_energy()),
                "forces": atoms.get_forces(apply_constraint=False).copy(),
            }
            if atoms.pbc.all():
                labels["stress"] = atoms.get_stress(apply_constraint=False).copy()
            snapshot.calc = SinglePointCalculator(snapshot, **labels)
            snapshot.info["temperature_K"] = float(temperature)
            snapshot.info["trajectory"] = trajectory
            configs.append(snapshot)
            if bar is not None:
                bar.update(1)
            if len(configs) == n_configs:
                break
        trajectory += 1
    if bar is not None:
        bar.close()
    return configs


def _progress_bar(total: int, desc: str):
    from tqdm.auto import tqdm

    # disable=None: no bar when stderr is not a terminal (logs stay clean)
    return tqdm(total=total, desc=desc, unit="config", leave=False, disable=None)


def _recipe(name: str) -> EMTRecipe:
    if name not in DATASETS:
        raise ValueError(f"unknown data set {name!r}; named sets are {', '.join(sorted(DATASETS))}")
    return DATASETS[name]


def _key(name: str, n_configs: int, seed: int) -> dict:
    recipe = dataclasses.asdict(_recipe(name))
    return {
        "name": name,
        "n_configs": n_configs,
        "seed": seed,
        "recipe": recipe,
        "generator_version": GENERATOR_VERSION,
    }


class CacheUnavailableError(OSError):
    """The data-set cache cannot hold a set (unwritable folder, full disk, a non-regular entry)."""

    def __init__(self, message: str, text: bytes) -> None:
        super().__init__(message)
        self.text = text  # the generated extxyz, usable without the cache


def dataset_path(
    name: str, *, n_configs: int | None = None, seed: int = 0, progress: bool = False
) -> Path:
    """Path of the cached extxyz file of a named set, generating (and verifying) it as needed.

    Raises :class:`CacheUnavailableError` (holding the generated file's text) when the cache
    cannot be written; :func:`load_dataset` then works without the cache.
    """
    recipe = _recipe(name)
    n_configs = (
        recipe.n_configs if n_configs is None else check_int(n_configs, "n_configs", minimum=1)
    )
    seed = check_seed(seed)
    key = _key(name, n_configs, seed)
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]
    folder = _dataset_folder()
    path = folder / f"{name}-n{n_configs}-seed{seed}-{digest}.extxyz"
    sidecar = path.with_suffix(".json")
    problem = _cached_problem(path, sidecar, key)
    if problem is None:
        return path
    if problem != "missing":
        warnings.warn(f"regenerating {path.name}: {problem}", RuntimeWarning, stacklevel=2)
    if isinstance(recipe, MoleculeRecipe):
        configs = generate_molecules(name, n_configs=n_configs, seed=seed, recipe=recipe)
    else:
        configs = generate_emt(name, n_configs=n_configs, seed=seed, progress=progress)
    buffer = io.StringIO()
    from ase.io import write

    write(buffer, configs, format="extxyz")
    data = buffer.getvalue().encode()
    import ase

    meta = dict(key, sha256=hashlib.sha256(data).hexdigest(), ase_version=ase.__version__)
    if isinstance(recipe, MoleculeRecipe):
        from importlib.metadata import version

        meta["tblite_version"] = version("tblite")
    text = (json.dumps(meta, indent=2, sort_keys=True) + "\n").encode()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        atomic_write(path, lambda handle: handle.write(data))
        atomic_write(sidecar, lambda handle: handle.write(text))
    except NotRegularFileError as exc:
        raise CacheUnavailableError(str(exc), data) from None
    except OSError as exc:
        raise CacheUnavailableError(
            f"cannot write {str(folder)!r} ({exc.strerror or exc.__class__.__name__})", data
        ) from None
    return path


def _cached_problem(path: Path, sidecar: Path, key: dict) -> str | None:
    """None when the cached set matches its sidecar and key; else what is wrong ("missing" if absent)."""
    try:
        kinds = [check_regular_or_absent(path), check_regular_or_absent(sidecar)]
    except NotRegularFileError as exc:  # a FIFO, link or device is a miss, never opened
        return f"not a regular file ({exc})"
    except OSError:  # the cache folder is unusable (a file in its place, no permission)
        return "missing"
    if kinds == [None, None]:
        return "missing"
    try:
        meta = json.loads(sidecar.read_text())
        data = path.read_bytes()
    except (OSError, ValueError) as exc:
        return f"unreadable cache entry ({exc.__class__.__name__})"
    key = json.loads(json.dumps(key))  # tuples -> lists, as read back from the sidecar
    if not isinstance(meta, dict) or any(meta.get(k) != v for k, v in key.items()):
        return "sidecar does not match the generator parameters"
    if meta.get("sha256") != hashlib.sha256(data).hexdigest():
        return "file content does not match its recorded SHA-256"
    return None


def _label(atoms, results: dict, key: str, per_atom: bool):
    """The label named ``key``: a calculator result of that name, else ``atoms.info[key]`` (or
    ``atoms.arrays[key]`` for per-atom labels); None when absent. Only the named key is looked up."""
    if key in results:
        return results[key]
    return (atoms.arrays if per_atom else atoms.info).get(key)


def read_extxyz(
    path: str | os.PathLike,
    *,
    species: Sequence[str] | None = None,
    energy_key: str = "energy",
    forces_key: str = "forces",
    stress_key: str = "stress",
    virials_key: str | None = None,
    dipole_key: str = "dipole",
) -> list:
    """Read labelled configurations from any extended-XYZ file with energies and forces.

    Each label is looked up under its key only: a calculator result of that name (what
    :func:`ase.io.write` stores for ``energy``, ``forces``, ``stress``, ``dipole``), else
    ``atoms.info[key]`` (energy, stress, dipole) or ``atoms.arrays[key]`` (forces). So
    ``energy_key="REF_energy"`` reads MACE-style files (``REF_energy``, ``REF_forces``,
    ``REF_stress``, ``REF_dipole``) and never falls back to another key: a named key wins. The
    dipole (e·Å, shape (3,)) is optional and kept when present. The stress is optional: with
    ``virials_key`` it is ``-W / V`` from the virial ``atoms.info[virials_key]`` (e.g.
    ``REF_virials``, eV); else the label under ``stress_key`` (eV/Å^3); 6 (Voigt), 9 or 3 x 3
    values, kept as Voigt 6 (:func:`_stress_label`). Labels are returned as calculator results
    (``energy``, ``forces``, ``stress``, ``dipole``) of a SinglePointCalculator.

    Raises a one-line ``ValueError`` for a missing or unreadable file, a file without
    configurations, a configuration without a finite energy or without finite forces of shape
    (atoms, 3), a malformed stress or virial, a dipole that is not 3 finite numbers, and, when
    ``species`` is given, elements outside it.
    """
    from ase.io import read

    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{path} is a folder; give an extended-XYZ file or a named set")
    if not path.is_file():
        raise ValueError(
            f"{path}: no such data file; give an extended-XYZ file or a named set ({', '.join(sorted(DATASETS))})"
        )
    try:
        frames = read(path, index=":", format="extxyz")
    except Exception as exc:  # ase raises many types for malformed files
        raise ValueError(
            f"{path}: not a readable extended-XYZ file ({exc.__class__.__name__}: {exc})"
        ) from None
    return _checked_frames(
        frames,
        path,
        species,
        energy_key,
        forces_key,
        dipole_key,
        stress_key=stress_key,
        virials_key=virials_key,
    )


def _checked_frames(
    frames: list,
    path,
    species,
    energy_key: str,
    forces_key: str,
    dipole_key: str = "dipole",
    *,
    stress_key: str = "stress",
    virials_key: str | None = None,
) -> list:
    """The labelled configurations of ``frames`` read from ``path`` (see :func:`read_extxyz`)."""
    from ase.calculators.singlepoint import SinglePointCalculator

    if not frames:
        raise ValueError(f"{path}: holds no configurations")
    allowed = None if species is None else set(species)
    configs = []
    for index, atoms in enumerate(frames):
        where = f"{path}: configuration {index}"
        results = dict(atoms.calc.results) if atoms.calc is not None else {}
        energy = _label(atoms, results, energy_key, per_atom=False)
        forces = _label(atoms, results, forces_key, per_atom=True)
        dipole = _label(atoms, results, dipole_key, per_atom=False)
        if energy is None:
            raise ValueError(
                f"{where} has no energy under {energy_key!r} (calculator results or info); "
                "name the file's key with energy_key / --energy-key"
            )
        if forces is None:
            raise ValueError(
                f"{where} has no forces under {forces_key!r} (calculator results or arrays); "
                "name the file's key with forces_key / --forces-key"
            )
        try:
            energy = float(energy)
        except (TypeError, ValueError):
            raise ValueError(f"{where} has a non-numeric energy {energy!r}") from None
        forces = np.asarray(forces, dtype=np.float64)
        if forces.shape != (len(atoms), 3):
            raise ValueError(
                f"{where}: forces have shape {forces.shape}, expected ({len(atoms)}, 3)"
            )
        if not np.isfinite(energy) or not np.all(np.isfinite(forces)):
            raise ValueError(f"{where} has a non-finite energy or force")
        labels = {"energy": energy, "forces": forces}
        if dipole is not None:
            try:
                dipole = np.asarray(dipole, dtype=np.float64)
            except (TypeError, ValueError):
                raise ValueError(f"{where} has a non-numeric dipole under {dipole_key!r}") from None
            if dipole.shape != (3,) or not np.all(np.isfinite(dipole)):
                raise ValueError(
                    f"{where}: the dipole under {dipole_key!r} must be 3 finite numbers, got shape {dipole.shape}"
                )
            labels["dipole"] = dipole
        if not np.all(np.isfinite(atoms.positions)):
            raise ValueError(f"{where} has non-finite positions")
        _check_numbers(atoms.numbers, where)
        if allowed is not None:
            unknown = sorted(set(atoms.get_chemical_symbols()) - allowed)
            if unknown:
                raise ValueError(
                    f"{where} contains elements {unknown} outside the model's species {sorted(allowed)}"
                )
        stress = _stress_label(atoms, results, where, stress_key, virials_key)
        if stress is not None:
            labels["stress"] = stress
        atoms.calc = SinglePointCalculator(atoms, **labels)
        configs.append(atoms)
    return configs


def _stress_label(atoms, results: dict, where: str, stress_key: str, virials_key: str | None):
    """The stress label (Voigt 6, eV/Å^3) of one configuration, or None; ValueError when malformed."""
    from tdn_theory.models.stress import (
        StressUndefinedError,
        stress_from_virial,
        to_voigt,
        voigt_to_matrix,
    )

    if virials_key is not None:
        virial = atoms.info.get(virials_key)
        if virial is None:
            raise ValueError(f"{where} has no virial info[{virials_key!r}]")
        try:
            stress = stress_from_virial(virial, atoms.cell)
        except StressUndefinedError:
            raise ValueError(f"{where} has a virial but a cell without volume") from None
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{where}: virial {virials_key!r}: {exc}") from None
    else:
        value = _label(atoms, results, stress_key, per_atom=False)
        if value is None:
            return None
        try:
            stress = voigt_to_matrix(value)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{where}: stress: {exc}") from None
    if not np.all(np.isfinite(stress)):
        raise ValueError(f"{where} has a non-finite stress")
    return to_voigt(stress)


def write_extxyz(path: str | os.PathLike, configs: Sequence, *, prefix: str = "REF_") -> Path:
    """Write labelled configurations as extended XYZ with the labels under prefixed keys
    (``REF_energy`` in info, ``REF_forces`` in arrays, ``REF_dipole`` in info when present: MACE's
    conventions) and no calculator results, atomically. Returns the path.

    Other ``info`` entries (e.g. ``trajectory``) are kept. Read back with
    ``read_extxyz(path, energy_key=prefix + "energy", forces_key=prefix + "forces",
    dipole_key=prefix + "dipole")``.
    """
    from ase.io import write

    if not isinstance(prefix, str) or not prefix or prefix in ("energy", "forces", "dipole"):
        raise ValueError(f"prefix must be a non-empty string such as 'REF_', got {prefix!r}")
    frames = []
    for atoms in configs:
        frame = atoms.copy()  # copies info and arrays, not the calculator
        frame.calc = None
        frame.info[prefix + "energy"] = float(atoms.get_potential_energy())
        frame.arrays[prefix + "forces"] = np.asarray(atoms.get_forces(), dtype=np.float64).copy()
        results = atoms.calc.results if atoms.calc is not None else {}
        if "dipole" in results:
            frame.info[prefix + "dipole"] = np.asarray(results["dipole"], dtype=np.float64).copy()
        frames.append(frame)
    buffer = io.StringIO()
    write(buffer, frames, format="extxyz")
    data = buffer.getvalue().encode()
    try:
        return atomic_write(path, lambda handle: handle.write(data))
    except NotRegularFileError as exc:
        raise ValueError(f"cannot write {os.fspath(path)!r}: {exc}") from None


def _check_numbers(numbers: np.ndarray, where: str) -> None:
    """Atomic numbers 1..118: ASE's dummy element X (Z = 0) cannot be embedded by a potential."""
    bad = np.asarray(numbers)[(np.asarray(numbers) < 1) | (np.asarray(numbers) > 118)]
    if bad.size:
        z = int(bad[0])
        what = "the dummy element X (atomic number 0)" if z == 0 else f"atomic number {z}"
        raise ValueError(
            f"{where} contains {what}; a potential needs real elements (Z = 1..118): "
            "remove or relabel those atoms"
        )


def is_named_set(source: str | os.PathLike) -> bool:
    """True when ``source`` names a data set; ValueError when it also names an existing path."""
    if not (isinstance(source, str) and source in DATASETS):
        return False
    if os.path.lexists(source):
        raise ValueError(
            f"{source!r} is both a named data set and a file or folder here; write "
            f"./{source} for the file, or run from another folder for the named set"
        )
    return True


def load_dataset(
    source: str | os.PathLike,
    *,
    n_configs: int | None = None,
    seed: int = 0,
    species: Sequence[str] | None = None,
    progress: bool = False,
    stress_key: str = "stress",
    virials_key: str | None = None,
    energy_key: str = "energy",
    forces_key: str = "forces",
    dipole_key: str = "dipole",
) -> list:
    """Configurations of a named set (generated or read from the cache) or of an extxyz file;
    the keys are those of :func:`read_extxyz`.

    A ``source`` that is a set's name and an existing path is refused (see :func:`is_named_set`).
    """
    keys = {"energy_key": energy_key, "forces_key": forces_key, "dipole_key": dipole_key}
    if not is_named_set(source):
        return read_extxyz(
            source, species=species, stress_key=stress_key, virials_key=virials_key, **keys
        )
    try:
        path = dataset_path(source, n_configs=n_configs, seed=seed, progress=progress)
    except CacheUnavailableError as exc:
        warnings.warn(
            f"data-set cache unavailable, using {source} without it: {exc}", RuntimeWarning, 2
        )
        from ase.io import read

        frames = read(io.StringIO(exc.text.decode()), index=":", format="extxyz")
        return _checked_frames(frames, f"{source} (generated)", species, *keys.values())
    return read_extxyz(path, species=species, **keys)


def species_of(configs: Sequence) -> list[str]:
    """The chemical symbols present in ``configs``, sorted by atomic number."""
    from ase.data import atomic_numbers

    symbols = {s for atoms in configs for s in atoms.get_chemical_symbols()}
    return sorted(symbols, key=atomic_numbers.__getitem__)


def split(
    configs: Sequence, *, seed: int = 0, fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)
) -> tuple[list, list, list]:
    """Train / validation / test lists from a seeded permutation of ``configs``.

    ``fractions`` are normalised; the test split gets what rounding leaves. Raises a one-line
    ``ValueError`` when any split would be empty.
    """
    seed = check_int(seed, "seed")
    weights = np.asarray(fractions, dtype=np.float64)
    if weights.shape != (3,) or not np.all(np.isfinite(weights)) or np.any(weights <= 0):
        raise ValueError(f"fractions must be three positive numbers, got {fractions!r}")
    n = len(configs)
    counts = np.floor(weights / weights.sum() * n).astype(int)
    n_train, n_val = int(counts[0]), int(counts[1])
    n_test = n - n_train - n_val
    if min(n_train, n_val, n_test) < 1:
        raise ValueError(
            f"{n} configurations give an empty split (train {n_train}, validation {n_val}, test {n_test}); "
            "use more configurations or other fractions"
        )
    order = np.random.default_rng(seed).permutation(n)
    picked = [configs[i] for i in order]
    return picked[:n_train], picked[n_train : n_train + n_val], picked[n_train + n_val :]


def split_trajectories(
    configs: Sequence, *, seed: int = 0, fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)
) -> tuple[list, list, list]:
    """Train / validation / test lists that hold out whole trajectories (``info["trajectory"]``).

    The trajectories are permuted with ``numpy.random.default_rng(seed)``; the first
    ``floor(f_train T)`` of the ``T`` trajectories go to training, the next ``floor(f_val T)`` to
    validation (at least one each) and the rest to the test split; within a split the configurations
    keep their file order. No trajectory contributes to two splits. Raises a one-line ``ValueError``
    when a configuration has no trajectory id or there are fewer than 3 trajectories.
    """
    seed = check_int(seed, "seed")
    weights = np.asarray(fractions, dtype=np.float64)
    if weights.shape != (3,) or not np.all(np.isfinite(weights)) or np.any(weights <= 0):
        raise ValueError(f"fractions must be three positive numbers, got {fractions!r}")
    ids = []
    for index, atoms in enumerate(configs):
        if "trajectory" not in atoms.info:
            raise ValueError(
                f"configuration {index} has no info['trajectory']; use split() for such data"
            )
        ids.append(int(atoms.info["trajectory"]))
    trajectories = sorted(set(ids))
    T = len(trajectories)
    if T < 3:
        raise ValueError(
            f"{T} trajectories cannot give three held-out splits; use more configurations or split()"
        )
    counts = np.floor(weights / weights.sum() * T).astype(int)
    n_train = max(1, int(counts[0]))
    n_val = max(1, int(counts[1]))
    n_train = min(n_train, T - n_val - 1)
    order = np.random.default_rng(seed).permutation(T)
    group = {}
    for rank, t in enumerate(order):
        group[trajectories[t]] = 0 if rank < n_train else 1 if rank < n_train + n_val else 2
    out: tuple[list, list, list] = ([], [], [])
    for atoms, t in zip(configs, ids, strict=True):
        out[group[t]].append(atoms)
    return out


def force_std(configs: Sequence) -> float:
    """Standard deviation of all force components (eV/Å): the data's own scale for force errors."""
    forces = np.concatenate([np.asarray(atoms.get_forces()).ravel() for atoms in configs])
    return float(forces.std())
