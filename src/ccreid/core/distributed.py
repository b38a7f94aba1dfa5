"""Several training processes through torchrun (DDP): its environment, the process group, and
the few collectives training needs.

`torchrun --nproc_per_node N -m ccreid train ...` starts N processes with RANK, WORLD_SIZE and
LOCAL_RANK set; without torchrun the world is one process and every collective returns its
input. Each P×K batch is cut into N equal consecutive shards, one per rank, so the global batch
is the single-process one.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from typing import Iterator

import numpy as np
import torch
import torch.distributed as dist
from torch.distributed import _functional_collectives as functional_collectives

from ccreid.core.errors import CCReIDError

TORCHRUN_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK")


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def distributed(self) -> bool:
        return self.size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0 writes the checkpoint, the model and the logs."""
        return self.rank == 0

    def check_divides(self, batch_size: int) -> None:
        if batch_size % self.size:
            raise CCReIDError(
                f"train.ids_per_batch × train.images_per_id = {batch_size} cannot be split evenly "
                f"over {self.size} processes; change them or torchrun's --nproc_per_node"
            )

    def shard(self, rows: np.ndarray) -> np.ndarray:
        """This rank's consecutive slice of a global batch."""
        per_rank = len(rows) // self.size
        return rows[self.rank * per_rank : (self.rank + 1) * per_rank]

    def mean(self, values: torch.Tensor) -> torch.Tensor:
        """Mean over ranks (every rank gets the same result)."""
        if not self.distributed:
            return values
        values = values.clone()
        dist.all_reduce(values)
        return values / self.size

    def average_gradients(self, parameters: list[torch.nn.Parameter]) -> None:
        """For parameters outside DDP's wrapper: the gradient of the global batch mean."""
        if not self.distributed:
            return
        for parameter in parameters:
            if parameter.grad is not None:
                dist.all_reduce(parameter.grad)
                parameter.grad /= self.size

    def gather_with_grad(self, tensor: torch.Tensor) -> torch.Tensor:
        """The rank shards concatenated in rank order (= the global batch), differentiable: each
        rank's gradient flows back to the rank that computed the shard."""
        if not self.distributed:
            return tensor
        # The functional collective is differentiable (backward: reduce-scatter of the gradients).
        world = dist.group.WORLD
        assert world is not None  # set once the process group is initialised, as it is when distributed
        return functional_collectives.all_gather_single(tensor.contiguous(), 0, world)

    def gather(self, tensor: torch.Tensor) -> torch.Tensor:
        if not self.distributed:
            return tensor
        parts = [torch.empty_like(tensor) for _ in range(self.size)]
        dist.all_gather(parts, tensor.contiguous())
        return torch.cat(parts)

    def gather_objects(self, value) -> list:
        """Every rank's `value` (picklable), in rank order."""
        if not self.distributed:
            return [value]
        values = [None] * self.size
        dist.all_gather_object(values, value)
        return values

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()


def world_from_environment() -> World:
    """The torchrun environment, or a world of one process when it is not set."""
    if "WORLD_SIZE" not in os.environ:
        return World()
    values = {}
    for name in TORCHRUN_VARIABLES:
        try:
            values[name] = int(os.environ.get(name, "0"))
        except ValueError:
            raise CCReIDError(
                f"environment variable {name}={os.environ[name]!r} is not an integer "
                "(it is set by torchrun; unset WORLD_SIZE to train in one process)"
            ) from None
    return World(rank=values["RANK"], size=values["WORLD_SIZE"], local_rank=values["LOCAL_RANK"])


@contextlib.contextmanager
def process_group(world: World, device: torch.device) -> Iterator[None]:
    """The process group for `world` (NCCL on CUDA, gloo on CPU) while the block runs."""
    if not world.distributed or dist.is_initialized():
        yield
        return
    if device.type == "cuda":
        torch.cuda.set_device(device)  # NCCL's object collectives use the current device
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo", rank=world.rank, world_size=world.size)
    try:
        yield
    finally:
        dist.destroy_process_group()
