"""An ASE calculator around a :class:`~tdn_theory.models.TDNPotential`.

    atoms.calc = TDNCalculator(model)
    atoms.get_potential_energy(); atoms.get_forces(); atoms.get_stress(); atoms.get_dipole_moment()

Energies in the model's units (eV for EMT data), forces = -dE/dpositions (eV/Å), for a periodic
structure the stress ``(1/V) dE/d strain`` (eV/Å^3, Voigt order xx, yy, zz, yz, xz, xy, ASE's sign;
:mod:`tdn_theory.models.stress`) and, for a model with the dipole head, the dipole (e·Å,
:mod:`tdn_theory.models.dipole`), computed in the model's dtype (float64 or float32) and returned as
float64 numpy arrays, as ASE expects. Edge vectors are float64 differences of the positions cast to
the model's dtype afterwards, so a float32 model far from the origin loses no accuracy. Atoms without
a neighbour within the cutoff are allowed (an isolated atom keeps its embedding: a constant energy per
species and zero force). The stress of a structure without a volume (no periodic direction, or a
cell without volume) raises ASE's PropertyNotImplementedError with the reason.
"""

from __future__ import annotations

import numpy as np
import torch
from ase.calculators.calculator import Calculator, PropertyNotImplementedError, all_changes

from tdn_theory.models.potential import TDNPotential
from tdn_theory.models.stress import energy_forces_stress, has_volume, to_voigt

__all__ = ["TDNCalculator"]


class TDNCalculator(Calculator):
    """ASE calculator: "energy", "free_energy" (= energy), "forces", (periodic structures)
    "stress" and, for a model with the dipole head, "dipole" from a TDNPotential."""

    implemented_properties = ["energy", "free_energy", "forces", "stress", "dipole"]

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
        args = (a.get_positions(), a.get_atomic_numbers(), np.asarray(a.get_cell()), a.get_pbc())
        stress = dipole = None
        if has_volume(args[2], args[3]):  # one more gradient: always given when defined
            energy, forces, stress = energy_forces_stress(self.model, *args)
            if self.model.has_dipole:  # a forward pass without gradients
                with torch.no_grad():
                    dipole = self.model.run(*args)["dipole"]
        elif "stress" in properties:
            raise PropertyNotImplementedError(
                "stress needs a periodic structure with a cell of nonzero volume (atoms.pbc has "
                "no True direction or the cell is flat); ask for energy and forces only"
            )
        else:
            out = self.model.run(*args, forces=True)
            energy, forces, dipole = out["energy"], out["forces"], out.get("dipole")
        e = float(energy.detach().cpu())
        self.results = {
            "energy": e,
            "free_energy": e,
            "forces": forces.detach().cpu().numpy().astype(np.float64),
        }
        if stress is not None:
            self.results["stress"] = to_voigt(stress.cpu().double().numpy())
        if dipole is not None:
            self.results["dipole"] = dipole.detach().cpu().numpy().astype(np.float64)
