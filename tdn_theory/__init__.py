"""tdn_theory: Tensor Decomposition Networks put to the test with certified numbers.

Layers (each imports only from those before it): ``so3`` (exact group theory) -> ``cp`` (CP fits)
-> ``theory`` (the paper's statements as checks) -> ``nn`` (PyTorch layers) -> ``models`` (a TDN
interatomic potential with pluggable tensor products, ASE calculator) -> ``testing`` (Hypothesis
strategies) -> ``fit_cp``, ``train_potential`` (command lines).
"""

from .so3 import block_wigner_D, cg_tensor, paths, real_cg, wigner_D

__version__ = "0.1.0"

__all__ = ["__version__", "block_wigner_D", "cg_tensor", "paths", "real_cg", "wigner_D"]
