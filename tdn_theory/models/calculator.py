"""An ASE calculator around a :class:`~tdn_theory.models.TDNPotential`.

    atoms.calc = TDNCalculator(model)
    atoms.get_potential_energy(); atoms.get_forces(); atoms.get_stress()

Energies in the model's units (eV for EMT data), forces = -dE/dpositions (eV/Å) and, for a periodic
structure, the stress ``(1/V) dE/d strain`` (eV/Å^3, Voigt order xx, yy, zz, yz, xz, xy, ASE's sign;
:mod:`tdn_theory.models.stress`), computed in the model's dtype (float64 or float32) and returned as
float64 numpy arrays, as ASE expects. The stress of a non-periodic structure raises ASE's
PropertyNotImplementedError with the reason.
"""

from __future__ import annotations

import numpy as np
import torch
from ase.calculators.calculator import Calculator, PropertyNotImplementedError, all_changes

from tdn_theory.models.potential import TDNPotential
from tdn_theory.models.stress import energy_forces_stress, to_voigt

__all__ = ["TDNCalculator"]


class TDNCalculator(Calculator):
    """ASE calculator: "energy", "free_energy" (= energy), "forces" and (periodic structures)
    "stress" from a TDNPotential."""

    implemented_properties = ["energy", "free_energy", "forces", "stress"]

    def __init__(self, model: TDNPotential, **kwargs) -> None:
        if not isinstance(model, TDNPotential):
            raise ValueError(f"TDNCalculator needs a TDNPotential, got {type(model).__name__}")
        super().__init__(**kwargs)
        self.model = model

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        a = self.atoms
        pos = torch.as_tensor(a.get_positions(), dtype=self.model.dtype, device=self.model.device)
        args = (pos, a.get_atomic_numbers(), np.asarray(a.get_cell()), a.get_pbc())
        stress = None
        if a.get_pbc().any():  # the stress costs one more gradient: always given when defined
            energy, forces, stress = energy_forces_stress(self.model, *args)
        elif "stress" in properties:
            raise PropertyNotImplementedError(
                "stress needs a periodic structure (atoms.pbc has no True direction, so there is "
                "no volume); set pbc and a cell, or ask for energy and forces only"
            )
        else:
            energy, forces = self.model.energy_and_forces(*args)
        e = float(energy.detach().cpu())
        self.results = {
            "energy": e,
            "free_energy": e,
            "forces": forces.detach().cpu().numpy().astype(np.float64),
        }
        if stress is not None:
            self.results["stress"] = to_voigt(stress.cpu().double().numpy())
