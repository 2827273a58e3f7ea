"""Which samples each rank trains on, step by step: index tensors, not a DataLoader.

The training split lives in memory (on the GPU when there is one); an epoch is a permutation
of its rows, the same on every rank (seeded by the job's seed and the epoch), cut into one
share per rank and then into optimizer steps of ``accumulation`` micro-batches. A batch is
``split.take(index)``: one gather per tensor, no per-sample collation.

Example:
    >>> plan = EpochPlan(num_samples=10, world_size=2, rank=0, micro_batch=2, accumulation=1)
    >>> plan.steps_per_epoch
    2
    >>> [len(step[0]) for step in plan.steps(seed=0, epoch=0)]
    [2, 2]
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["FRESH_SEED_OFFSET", "EpochPlan"]

FRESH_SEED_OFFSET = 7919
"""The fresh second batch (``second_batch: fresh``) follows a permutation of its own seed."""

# Mixes (seed, epoch) into one generator seed; any fixed odd multiplier keeps epochs apart.
_EPOCH_STRIDE = 1_000_003


@dataclass(frozen=True)
class EpochPlan:
    """The batch layout of one rank.

    Attributes:
        num_samples: rows of the training split.
        world_size: data-parallel ranks.
        rank: this rank.
        micro_batch: rows one forward pass sees.
        accumulation: micro-batches per optimizer step (per rank).
    """

    num_samples: int
    world_size: int
    rank: int
    micro_batch: int
    accumulation: int

    @property
    def per_rank(self) -> int:
        """Rows each rank sees per epoch (the permutation is cut to a multiple of the ranks)."""
        return self.num_samples // self.world_size

    @property
    def steps_per_epoch(self) -> int:
        """Optimizer steps per epoch (an incomplete last step is dropped)."""
        return self.per_rank // (self.micro_batch * self.accumulation)

    def order(self, seed: int, epoch: int) -> Tensor:
        """This rank's rows for ``epoch``, in training order (CPU int64)."""
        generator = torch.Generator()
        generator.manual_seed(seed * _EPOCH_STRIDE + epoch)
        permutation = torch.randperm(self.num_samples, generator=generator)
        usable = self.per_rank * self.world_size
        return permutation[self.rank : usable : self.world_size]

    def steps(
        self, seed: int, epoch: int, device: torch.device | str = "cpu"
    ) -> Iterator[list[Tensor]]:
        """Per optimizer step, its micro-batches' row indices (on ``device``)."""
        order = self.order(seed, epoch).to(device)
        step_rows = self.micro_batch * self.accumulation
        for step in range(self.steps_per_epoch):
            rows = order[step * step_rows : (step + 1) * step_rows]
            yield [rows[i : i + self.micro_batch] for i in range(0, step_rows, self.micro_batch)]
