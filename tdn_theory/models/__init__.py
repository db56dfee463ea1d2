"""A TDN interatomic potential with pluggable tensor products, and its ASE calculator.

- :class:`TDNPotential`: message passing on a neighbour list (periodic cells included) with the
  tensor product chosen by name: "dense" (exact CG), "e3nn" (e3nn's own product), "cp" (a CP
  factor file or a fitted rank), "sphere" (the exact quadrature CP); ``with_backend`` swaps it on
  identical weights.
- :class:`TDNCalculator`: ``atoms.calc = TDNCalculator(model)``.
- :mod:`.network_bound`: the per-configuration evaluation of the network equivariance bound
  (``tdn_theory.theory.network``) and the measured defects it bounds.
- :mod:`.data`: EMT and GFN2-xTB molecular data sets (generated, cached as verified extxyz; the
  molecules in :mod:`.molecules`, extra ``qm``), an extxyz reader and writer with labels by key,
  random and held-out-trajectory splits; :mod:`.dipole`: the dipole head; :mod:`.train`: training on
  energies, forces, stresses and dipoles; :mod:`.checkpoint`: verified model files;
  :mod:`.stress`: virial and stress by autograd through a strain.
"""

from tdn_theory.models.backends import BACKENDS, fitted_factors, make_tensor_product
from tdn_theory.models.calculator import TDNCalculator
from tdn_theory.models.checkpoint import CheckpointError, load_potential, save_potential
from tdn_theory.models.data import (
    load_dataset,
    read_extxyz,
    split,
    split_trajectories,
    write_extxyz,
)
from tdn_theory.models.graph import Graph, average_neighbors, build_graph, check_structure
from tdn_theory.models.potential import TDNPotential
from tdn_theory.models.train import TrainSettings

__all__ = [
    "BACKENDS",
    "CheckpointError",
    "Graph",
    "TDNCalculator",
    "TDNPotential",
    "TrainSettings",
    "average_neighbors",
    "build_graph",
    "check_structure",
    "fitted_factors",
    "load_dataset",
    "load_potential",
    "make_tensor_product",
    "read_extxyz",
    "save_potential",
    "split",
    "split_trajectories",
    "write_extxyz",
]
