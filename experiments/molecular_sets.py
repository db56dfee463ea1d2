"""The molecular GFN2-xTB data sets: what they hold, how long a label takes, malonaldehyde's proton.

Usage: ``python -m experiments.molecular_sets [--quick] [--out DIR]``. Writes molecular_sets.json.

For "ethanol-gfn2" and "malonaldehyde-gfn2" (:mod:`tdn_theory.models.molecules`; generated on first
use and cached, seed 0): configurations, trajectories, energy standard deviation (meV per molecule),
force standard deviation (meV/Å), mean dipole norm and the mean absolute deviation of the dipole
components from their mean (e·Å, what a predict-the-mean dipole model scores), and for malonaldehyde
the proton transfers (:func:`~tdn_theory.models.molecules.proton_transfer_summary`: transfers during the
sampled MD with every step watched, snapshots per oxygen, side changes between consecutive snapshots).
Also the time of one tight GFN2-xTB single point (energy, forces, dipole, charges) per molecule
(median of repeated fresh calculations). The tblite dipole unit check: translating a cation of charge
+1 by 1 Å changes the returned dipole by 1 (e·Å; Debye would give 4.80). ``--quick``: 12
configurations per set (one trajectory).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from importlib.metadata import version

import numpy as np

from experiments import _common

NAME = "molecular_sets"
SETS = ("ethanol-gfn2", "malonaldehyde-gfn2")


def dipole_unit_check() -> float:
    """Change of tblite's dipole (x component) when an NH4+ cation moves by 1 Å along x."""
    from ase import Atoms

    from tdn_theory.models.molecules import tblite_calculator

    d = 0.63
    ion = Atoms("NH4", positions=[[0, 0, 0], [d, d, d], [-d, -d, d], [-d, d, -d], [d, -d, -d]])
    ion.calc = tblite_calculator(method="GFN2-xTB", charge=1)
    before = ion.get_dipole_moment().copy()
    ion.translate([1.0, 0.0, 0.0])
    return float(ion.get_dipole_moment()[0] - before[0])


def single_point_seconds(atoms, rounds: int) -> float:
    """Median seconds of one fresh, tight GFN2-xTB single point on ``atoms``."""
    from tdn_theory.models.molecules import MOLECULE_DATASETS, _label

    recipe = MOLECULE_DATASETS["ethanol-gfn2"]
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        _label(atoms, recipe)
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def describe(name: str, n_configs: int | None, rounds: int) -> dict:
    from tdn_theory.models import data, molecules

    t0 = time.perf_counter()
    path = data.dataset_path(name, n_configs=n_configs, seed=0)
    seconds = time.perf_counter() - t0
    configs = data.read_extxyz(path)
    energies = np.array([a.get_potential_energy() for a in configs])
    dipoles = np.array([a.calc.results["dipole"] for a in configs])
    out = {
        "name": name,
        "file": path.name,
        "n_configs": len(configs),
        "n_atoms": len(configs[0]),
        "formula": configs[0].get_chemical_formula(),
        "trajectories": len({a.info["trajectory"] for a in configs}),
        "recipe": dataclasses.asdict(data.DATASETS[name]),
        "seconds_to_load_or_generate": seconds,
        "energy_std_mev": 1e3 * float(energies.std()),
        "force_std_mev_per_A": 1e3 * data.force_std(configs),
        "dipole_norm_mean_eA": float(np.linalg.norm(dipoles, axis=1).mean()),
        "dipole_mean_abs_deviation_eA": float(np.abs(dipoles - dipoles.mean(axis=0)).mean()),
        "single_point_seconds": single_point_seconds(configs[0], rounds),
    }
    if data.DATASETS[name].proton is not None:
        out["proton_transfers"] = molecules.proton_transfer_summary(configs)
    return out


def markdown(result: dict) -> str:
    lines = [
        "| set | configurations (trajectories) | energy std (meV) | force std (meV/Å) "
        "| mean abs. dipole deviation (e·Å) | single point (ms) |",
        "|---|---|---|---|---|---|",
    ]
    for r in result["sets"]:
        lines.append(
            f"| {r['name']} ({r['formula']}) | {r['n_configs']} ({r['trajectories']}) | "
            f"{r['energy_std_mev']:.0f} | {r['force_std_mev_per_A']:.0f} | "
            f"{r['dipole_mean_abs_deviation_eA']:.3f} | {1e3 * r['single_point_seconds']:.1f} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog=f"python -m experiments.{NAME}", description=__doc__.splitlines()[0]
    )
    _common.add_common_args(parser)
    args = parser.parse_args(argv)
    out = _common.output_dir(args)
    run = _common.Run(NAME, args, argv)
    n_configs = 12 if args.quick else None
    rounds = 3 if args.quick else 20
    result = {
        "tblite_version": version("tblite"),
        "dipole_change_per_A_of_a_unit_cation": dipole_unit_check(),
        "sets": [describe(name, n_configs, rounds) for name in SETS],
    }
    run.write(out, result, markdown=markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
