"""An ASE calculator around a :class:`~tdn_theory.models.TDNPotential`.

    atoms.calc = TDNCalculator(model)
    atoms.get_potential_energy(); atoms.get_forces(); atoms.get_dipole_moment()

Energies in the model's units (eV for EMT data), forces = -dE/dpositions (eV/Å), and for a model
with the dipole head the dipole (e·Å, :mod:`tdn_theory.models.dipole`), computed in the model's dtype
(float64 or float32) and returned as float64 numpy arrays, as ASE expects. Edge
vectors are float64 differences of the positions cast to the model's dtype afterwards, so a float32
model far from the origin loses no accuracy. Atoms without a neighbour within the cutoff are allowed
(an isolated atom keeps its embedding: a constant energy per species and zero force).
"""

from __future__ import annotations

import numpy as np
from ase.calculators.calculator import Calculator, PropertyNotImplementedError, all_changes

from tdn_theory.models.potential import TDNPotential

__all__ = ["TDNCalculator"]


class TDNCalculator(Calculator):
    """ASE calculator: "energy", "free_energy" (= energy), "forces" and, for a model with the dipole
    head, "dipole" from a TDNPotential."""

    implemented_properties = ["energy", "free_energy", "forces", "dipole"]

    def __init__(self, model: TDNPotential, **kwargs) -> None:
        if not isinstance(model, TDNPotential):
            raise ValueError(f"TDNCalculator needs a TDNPotential, got {type(model).__name__}")
        super().__init__(**kwargs)
        self.model = model

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        if "dipole" in properties and not self.model.has_dipole:
            raise PropertyNotImplementedError(
                "this model has no dipole head; train it with --dipole-weight > 0 (dipole=True)"
            )
        super().calculate(atoms, properties, system_changes)
        a = self.atoms
        # float64 positions: edge vectors are float64 differences even for a float32 model
        out = self.model.run(
            a.get_positions(),
            a.get_atomic_numbers(),
            np.asarray(a.get_cell()),
            a.get_pbc(),
            forces=True,
        )
        e = float(out["energy"].detach().cpu())
        self.results = {
            "energy": e,
            "free_energy": e,
            "forces": out["forces"].detach().cpu().numpy().astype(np.float64),
        }
        if self.model.has_dipole:
            self.results["dipole"] = out["dipole"].detach().cpu().numpy().astype(np.float64)
