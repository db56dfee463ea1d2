r"""Data-parallel training under ``torchrun``: the process group, shards and reductions.

``python -m tdn_theory.train_potential ...`` started by ``torchrun --nproc_per_node N`` (or any
launcher that sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``/``MASTER_PORT``) runs
as N processes of one ``torch.distributed`` process group: gloo for CPU tensors, NCCL for CUDA
tensors (``init_process_group`` without a backend creates both where CUDA exists). Every process
holds the whole data set and draws the same batch order; of every global batch ``B`` of ``|B|``
configurations with ``N_B`` atoms in total, process ``p`` takes the contiguous block
``shard(B)[p]`` (``numpy.array_split`` order) and evaluates

    loss_p = w_E * sum_{s in B_p} ((E_s - E_s^ref) / n_s)^2 / |B|
           + w_F * sum_{s in B_p, i, a} (F_sia - F_sia^ref)^2 / (3 N_B),

so that ``sum_p loss_p`` is the one-process loss of ``B`` (``tdn_theory.models.train``) and the sum
of the processes' gradients is its gradient. DistributedDataParallel averages gradients over the
N processes, so each process back-propagates ``N * loss_p``. A process whose block is empty (a
global batch smaller than N) back-propagates zero times the loss of the batch's first
configuration, so that it still joins the gradient reduction. Validation and test errors are sums
over each process's block of configurations, added up across processes (``all_sum``).

Only the process of rank 0 (``Context.is_main``) writes checkpoints and reports.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch

__all__ = ["SINGLE", "Context", "from_environment", "shutdown"]


@dataclasses.dataclass(frozen=True)
class Context:
    """Where this process stands in a data-parallel run (rank 0 of 1 without torchrun)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world > 1

    def shard(self, items: Sequence) -> list:
        """This process's contiguous block of ``items`` (may be empty when len(items) < world)."""
        if self.world == 1:
            return list(items)
        blocks = np.array_split(np.arange(len(items)), self.world)
        return [items[i] for i in blocks[self.rank]]

    def all_sum(self, values: Sequence[float]) -> list[float]:
        """Element-wise sum of ``values`` over all processes (float64)."""
        if self.world == 1:
            return [float(v) for v in values]
        import torch.distributed as dist

        # a CPU tensor: the gloo part of the group (created beside NCCL on GPU machines)
        t = torch.tensor([float(v) for v in values], dtype=torch.float64)
        dist.all_reduce(t)
        return [float(v) for v in t]

    def barrier(self) -> None:
        if self.world > 1:
            import torch.distributed as dist

            dist.barrier()

    @contextlib.contextmanager
    def main_first(self) -> Iterator[None]:
        """Rank 0 runs the block first (e.g. fills a cache), then the others; an error on rank 0
        still releases them (they meet the same error on the same input)."""
        if self.is_main:
            try:
                yield
            finally:
                self.barrier()
        else:
            self.barrier()
            yield

    def parallel(self, model: torch.nn.Module) -> Any:
        """``evaluate(positions, cell, species, graph) -> dict`` of ``model``, through
        DistributedDataParallel when distributed (gradients averaged over processes)."""
        if self.world == 1:
            return model.evaluate
        from torch.nn.parallel import DistributedDataParallel

        device_ids = [model.device.index] if model.device.type == "cuda" else None
        return DistributedDataParallel(_Evaluate(model), device_ids=device_ids)


SINGLE = Context()


class _Evaluate(torch.nn.Module):
    """``model.evaluate`` as a module's forward, which DistributedDataParallel wraps."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, positions, cell, species, graph) -> dict:
        return self.model.evaluate(positions, cell, species, graph)


def from_environment() -> Context:
    """The Context of this process: joins the process group when launched with WORLD_SIZE > 1
    (torchrun), else SINGLE. CUDA processes use the GPU of their LOCAL_RANK."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return SINGLE
    import torch.distributed as dist

    rank = int(os.environ["RANK"])
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if torch.cuda.is_available():
        torch.cuda.set_device(local_rank)
    if not dist.is_initialized():
        # no backend given: gloo for CPU tensors, and NCCL for CUDA tensors where CUDA exists
        dist.init_process_group()
    return Context(rank=rank, world=world, local_rank=local_rank)


def shutdown(context: Context) -> None:
    """Leave the process group (a no-op for SINGLE)."""
    if context.world > 1:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()
