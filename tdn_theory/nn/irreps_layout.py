"""Bridge between this project's feature layout and e3nn's ``Irreps`` layout.

This project stores ``C`` channels of a degree-``L`` feature as a tensor of shape ``(..., C, d)``,
``d = (L+1)^2``, the last axis being the blocks ``[l=0 | l=1 | ... | l=L]`` (e3nn's real basis and
``m`` order). e3nn stores the same data for the irreps ``"C x 0e + C x 1e + ... + C x Le"`` as one
flat axis of length ``C * d``: block ``l`` is ``C * (2l+1)`` numbers laid out ``[channel u, m]``
(multiplicity-major). The functions here convert between the two, build the e3nn ``"uvu"``
TensorProduct that computes the same map as :class:`~tdn_theory.nn.CGTensorProduct`, and wrap any
layer of this package so that it takes and returns e3nn-layout tensors.

Parity labels. The project's CG tensor holds every path ``|l1-l2| <= l3 <= l1+l2`` whatever the
parity of ``l1+l2+l3``. e3nn admits a path when the parity labels multiply correctly, so all three
irreps carry the label ``e``: ``1e x 1e -> 1e`` is then allowed. With these labels e3nn's parity
transformation is the identity; the maps are SO(3)-equivariant, not O(3)-equivariant, and parity
checks on them are vacuous.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from tdn_theory import so3
from tdn_theory._checks import check_degree, check_int

if TYPE_CHECKING:
    from e3nn import o3


def _o3():
    """e3nn's ``o3``, imported on first use: ``import tdn_theory.nn`` does not load e3nn."""
    from e3nn import o3

    return o3


def irreps(L: int, channels: int = 1) -> o3.Irreps:
    """e3nn irreps ``"C x 0e + C x 1e + ... + C x Le"``: ``channels`` copies of degrees 0..L."""
    L = check_degree(L)
    channels = check_int(channels, "channels", minimum=1)
    return _o3().Irreps([(channels, (l, 1)) for l in range(L + 1)])


def to_e3nn_layout(x: torch.Tensor) -> torch.Tensor:
    """``(..., C, d)`` in this project's layout -> ``(..., C*d)`` in e3nn's layout.

    Output block ``l`` is ``x[..., :, l^2:(l+1)^2]`` flattened as ``[u, m]``.
    """
    if x.ndim < 2:
        raise ValueError(
            f"expected a tensor of shape (..., channels, d), got shape {tuple(x.shape)}"
        )
    L = so3.degree_from_dim(x.shape[-1])
    batch, channels = x.shape[:-2], x.shape[-2]
    blocks = [
        x[..., :, s].reshape(*batch, channels * (s.stop - s.start)) for s in so3.degree_slices(L)
    ]
    return torch.cat(blocks, dim=-1)


def from_e3nn_layout(z: torch.Tensor, L: int, channels: int) -> torch.Tensor:
    """``(..., C*d)`` in e3nn's layout of :func:`irreps` ``(L, C)`` -> ``(..., C, d)``."""
    expected = irreps(L, channels).dim
    if z.ndim < 1 or z.shape[-1] != expected:
        raise ValueError(
            f"expected last dimension {expected} = channels * (L+1)^2 for L = {L}, "
            f"channels = {channels}; got shape {tuple(z.shape)}"
        )
    batch = z.shape[:-1]
    blocks = []
    start = 0
    for l in range(L + 1):
        size = channels * (2 * l + 1)
        blocks.append(z[..., start : start + size].reshape(*batch, channels, 2 * l + 1))
        start += size
    return torch.cat(blocks, dim=-1)


def e3nn_tensor_product(
    L: int,
    channels: int,
    parity: str = "all",
    *,
    dtype: torch.dtype | None = None,
    per_channel_y: bool = False,
) -> o3.TensorProduct:
    """e3nn's ``"uvu"`` TensorProduct over every path of ``so3.paths(L, parity)``, unnormalized.

    ``irreps_in1 = irreps(L, channels)``, ``irreps_in2 = irreps(L, 1)``, ``irreps_out =
    irreps(L, channels)``. With ``per_channel_y`` input 2 carries the channels too:
    ``irreps_in2 = irreps(L, channels)`` and mode ``"uuu"`` (channel u of x with channel u of
    y). One instruction per path in ``so3.paths`` order, external per-sample
    weights (``shared_weights=False``) of shape ``(..., n_paths * channels)`` laid out
    ``[path, channel]``; ``irrep_normalization="none"`` and ``path_normalization="none"``, so
    path ``p = (l1, l2, l3)`` contributes
    ``w[p, u] * sum_ij wigner_3j(l1, l2, l3)[i, j, k] x[u, i] y[j]``
    (the "unit" block). Other normalizations are expressed through the weights, see
    :func:`e3nn_path_weights`. ``dtype`` (default: torch's default dtype) is the dtype the module
    is built in; its coefficients are computed in that dtype.
    """
    path_list = so3.paths(L, parity)
    ir1, ir2 = irreps(L, channels), irreps(L, channels if per_channel_y else 1)
    mode = "uuu" if per_channel_y else "uvu"
    instructions = [(l1, l2, l3, mode, True) for (l1, l2, l3) in path_list]
    # e3nn computes its wigner_3j buffers in the default dtype at construction; building a
    # float32 module and casting it would leave float32-rounded coefficients in a float64 module.
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype or previous)
    try:
        return _o3().TensorProduct(
            ir1,
            ir2,
            ir1,
            instructions,
            irrep_normalization="none",
            path_normalization="none",
            internal_weights=False,
            shared_weights=False,
        )
    finally:
        torch.set_default_dtype(previous)


def e3nn_path_weights(
    weight: torch.Tensor, L: int, normalization: str = "unit", parity: str = "all"
) -> torch.Tensor:
    """Per-channel weights ``(..., C)`` -> :func:`e3nn_tensor_product` weights ``(..., P*C)``.

    Path-weight sharing: every path ``p`` of channel ``u`` gets ``weight[..., u] *
    so3.path_weight(*p, normalization)``, so the e3nn product equals
    ``CGTensorProduct(L, normalization, parity)(x, y, weight)`` in e3nn's layout.
    """
    path_list = so3.paths(L, parity)
    factors = torch.tensor(
        [so3.path_weight(l1, l2, l3, normalization) for (l1, l2, l3) in path_list],
        dtype=weight.dtype,
        device=weight.device,
    )
    per_path = factors[:, None] * weight[..., None, :]  # (..., P, C)
    return per_path.reshape(*weight.shape[:-1], len(path_list) * weight.shape[-1])


class E3nnLayout(torch.nn.Module):
    """Wrap a layer of this package so that it reads and writes e3nn-layout tensors.

    ``forward(x, y, weight=None)``: ``x`` of shape ``(..., C*d)`` with irreps ``irreps(L, C)``,
    ``y`` of shape ``(..., d)`` (irreps ``irreps(L, 1)``, identical to this project's layout) or,
    per channel, ``(..., C*d)`` (irreps ``irreps(L, C)``, e3nn's layout), ``weight`` of shape
    ``(..., C)`` or None; returns ``(..., C*d)`` with irreps ``irreps(L, C)``. It computes
    ``to_e3nn_layout(layer(from_e3nn_layout(x), y', weight))`` with ``y' = y`` or
    ``from_e3nn_layout(y)``.
    """

    def __init__(self, layer: torch.nn.Module, L: int, channels: int) -> None:
        super().__init__()
        self.layer = layer
        self.L = int(L)
        self.channels = int(channels)
        self.irreps_in1 = irreps(L, channels)
        self.irreps_in2 = irreps(L, 1)
        self.irreps_out = irreps(L, channels)

    def forward(
        self, x: torch.Tensor, y: torch.Tensor, weight: torch.Tensor | None = None
    ) -> torch.Tensor:
        d = (self.L + 1) ** 2
        if self.channels > 1 and y.ndim >= 1 and y.shape[-1] == self.channels * d:
            y = from_e3nn_layout(y, self.L, self.channels)  # per channel
        out = self.layer(from_e3nn_layout(x, self.L, self.channels), y, weight)
        return to_e3nn_layout(out)
