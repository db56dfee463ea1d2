"""PyTorch layers: the TDN (CP) tensor product, the exact CG reference, and e3nn interop.

- :class:`CPTensorProduct`: ``out = w * A((Bᵀx) ⊙ (Cᵀy))`` per channel from fixed CP factors.
- :class:`CGTensorProduct`: the dense CG tensor product with the same interface (exact reference).
- :mod:`tdn_theory.nn.irreps_layout`: conversion to and from e3nn's ``Irreps`` layout, the matching
  e3nn ``"uvu"`` TensorProduct, and :class:`E3nnLayout` to use a layer where e3nn's sits.
"""

from tdn_theory.nn.cg_tensor_product import CGTensorProduct
from tdn_theory.nn.cp_tensor_product import CPTensorProduct, check_layer_inputs
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
    "E3nnLayout",
    "e3nn_path_weights",
    "e3nn_tensor_product",
    "from_e3nn_layout",
    "irreps",
    "to_e3nn_layout",
]
