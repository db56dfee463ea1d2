"""An ASE calculator around a :class:`~tdn_theory.models.TDNPotential`.

    atoms.calc = TDNCalculator(model)
    atoms.get_potential_energy(); atoms.get_forces()

Energies in the model's units (eV for EMT data), forces = -dE/dpositions (eV/Å), computed in the
model's dtype (float64 or float32) and returned as float64 numpy arrays, as ASE expects. Edge
vectors are float64 differences of the positions cast to the model's dtype afterwards, so a float32
model far from the origin loses no accuracy. Atoms without a neighbour within the cutoff are allowed
(an isolated atom keeps its embedding: a constant energy per species and zero force).
"""

from __future__ import annotations

import numpy as np
from ase.calculators.calculator import Calculator, all_changes

from tdn_theory.models.potential import TDNPotential

__all__ = ["TDNCalculator"]


class TDNCalculator(Calculator):
    """ASE calculator: "energy", "free_energy" (= energy) and "forces" from a TDNPotential."""

    implemented_properties = ["energy", "free_energy", "forces"]

    def __init__(self, model: TDNPotential, **kwargs) -> None:
        if not isinstance(model, TDNPotential):
            raise ValueError(f"TDNCalculator needs a TDNPotential, got {type(model).__name__}")
        super().__init__(**kwargs)
        self.model = model

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        a = self.atoms
        # float64 positions: edge vectors are float64 differences even for a float32 model
        energy, forces = self.model.energy_and_forces(
            a.get_positions(), a.get_atomic_numbers(), np.asarray(a.get_cell()), a.get_pbc()
        )
        e = float(energy.detach().cpu())
        self.results = {
            "energy": e,
            "free_energy": e,
            "forces": forces.detach().cpu().numpy().astype(np.float64),
        }
