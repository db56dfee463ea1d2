"""PyTorch layers: the TDN (CP) tensor product, the exact CG reference, and e3nn interop.

- :class:`CPTensorProduct`: ``out = w * A((Bᵀx) ⊙ (Cᵀy))`` per channel from fixed CP factors.
- :class:`CGTensorProduct`: the dense CG tensor product with the same interface (exact reference).
- :class:`EdgeFrameTensorProduct`: the exact product with ``y = Y(r̂)`` computed in the edge frame
  (rotate r̂ to the polar axis, sparse m = 0 contraction, rotate back): O(C L^3) per edge.
- :mod:`tdn_theory.nn.irreps_layout`: conversion to and from e3nn's ``Irreps`` layout, the matching
  e3nn ``"uvu"`` TensorProduct, and :class:`E3nnLayout` to use a layer where e3nn's sits.
"""

from tdn_theory.nn.cg_tensor_product import CGTensorProduct
from tdn_theory.nn.cp_tensor_product import (
    CPTensorProduct,
    check_layer_inputs,
    check_tensor_argument,
)
from tdn_theory.nn.edge_frame import EdgeFrameTensorProduct
from tdn_theory.nn.irreps_layout import (
    E3nnLayout,
    e3nn_path_weights,
    e3nn_tensor_product,
    from_e3nn_layout,
    irreps,
    to_e3nn_layout,
)

__all__ = [
    "CPTensorProduct",
    "CGTensorProduct",
    "check_layer_inputs",
    "check_tensor_argument",
    "EdgeFrameTensorProduct",
    "E3nnLayout",
    "e3nn_path_weights",
    "e3nn_tensor_product",
    "from_e3nn_layout",
    "irreps",
    "to_e3nn_layout",
]
