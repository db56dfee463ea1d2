"""PyTorch layers: the TDN (CP) tensor product, the exact CG reference, and e3nn interop.

- :class:`CPTensorProduct`: ``out = w * A((Bᵀx) ⊙ (Cᵀy))`` per channel from fixed CP factors.
- :class:`CGTensorProduct`: the dense CG tensor product with the same interface (exact reference).
- Both take a second input shared by the channels, ``y`` (..., d), or one per channel, ``y``
  (..., C, d) (as many dimensions as ``x``: the paper's layer ``z_u = M(x_u, (W y)_u)``).
- :class:`EdgeFrameTensorProduct`: the exact product with ``y = Y(r̂)`` computed in the edge frame
  (rotate r̂ to the polar axis, sparse m = 0 contraction, rotate back): O(L^4 + C L^3) per edge
  (the Wigner blocks O(L^4), the channels O(L^3) each).
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
