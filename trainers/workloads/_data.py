"""In-memory data splits: tensors the training loop indexes in batches (imports torch).

A workload returns its data as :class:`Splits` of :class:`TensorSplit`: every split is a few
tensors sharing their first dimension (samples, or language-model chunks). The loop moves each
split to its device once and draws a batch with one fancy index per tensor
(:meth:`TensorSplit.take`), so there is no per-sample collation and no DataLoader.

Example:
    >>> import torch
    >>> split = TensorSplit(torch.arange(10).view(5, 2), torch.tensor([0, 1, 0, 1, 1]))
    >>> len(split), [len(batch[0]) for batch in split.batches(2)]
    (5, [2, 2, 1])
    >>> split.take(torch.tensor([4, 0]))[1].tolist()
    [1, 0]
    >>> train, validation = stratified_split(split.tensors[1], validation_size=2, seed=0)
    >>> sorted(split.tensors[1][validation].tolist())
    [0, 1]
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import NamedTuple

import torch
from torch import Tensor

from trainers.workloads._options import validation_count

__all__ = ["Batch", "Splits", "TensorSplit", "stratified_split"]

Batch = tuple[Tensor, ...]
"""A batch: tensors whose first dimension is the sample (images, labels) or (inputs, targets)."""


class TensorSplit:
    """One split of a data set held as tensors that share their first dimension.

    Args:
        *tensors: at least one tensor; all of the same length along dimension 0.

    Raises:
        ValueError: no tensor, a 0-d tensor, or tensors of different lengths.
    """

    __slots__ = ("tensors",)

    def __init__(self, *tensors: Tensor) -> None:
        if not tensors:
            raise ValueError("a TensorSplit needs at least one tensor")
        if any(tensor.dim() == 0 for tensor in tensors):
            raise ValueError("a TensorSplit's tensors need a first (sample) dimension")
        lengths = [tensor.shape[0] for tensor in tensors]
        if len(set(lengths)) != 1:
            raise ValueError(f"a TensorSplit's tensors must share their length, got {lengths}")
        self.tensors: Batch = tuple(tensors)

    def __len__(self) -> int:
        return int(self.tensors[0].shape[0])

    def __repr__(self) -> str:
        shapes = ", ".join(
            f"{tuple(tensor.shape)} {str(tensor.dtype).removeprefix('torch.')}"
            for tensor in self.tensors
        )
        return f"TensorSplit({shapes}; {self.tensors[0].device})"

    def to(self, device: torch.device | str) -> TensorSplit:
        """The split on ``device`` (tensors already there are not copied)."""
        # Host-to-device copies may overlap; a device-to-host copy must finish before use.
        non_blocking = torch.device(device).type != "cpu"
        return TensorSplit(
            *(tensor.to(device, non_blocking=non_blocking) for tensor in self.tensors)
        )

    def take(self, index: Tensor) -> Batch:
        """The rows ``index`` (an int64 tensor, on any device) of every tensor: one batch."""
        return tuple(tensor[index.to(tensor.device)] for tensor in self.tensors)

    def batches(self, batch_size: int) -> Iterator[Batch]:
        """Contiguous batches of ``batch_size`` rows in order (the last may be shorter)."""
        if batch_size < 1:
            raise ValueError(f"batch_size={batch_size} must be at least 1")
        for start in range(0, len(self), batch_size):
            yield tuple(tensor[start : start + batch_size] for tensor in self.tensors)

    def subset(self, index: Tensor) -> TensorSplit:
        """The split of the rows ``index``, in that order."""
        return TensorSplit(*self.take(index))


class Splits(NamedTuple):
    """A workload's data: train on ``train``, tune on ``validation``, report ``test``."""

    train: TensorSplit
    validation: TensorSplit
    test: TensorSplit


def stratified_split(
    labels: Tensor, validation_size: int | float, seed: int
) -> tuple[Tensor, Tensor]:
    """Split ``range(len(labels))`` into (train indices, validation indices), per class.

    Each class gives the validation split its proportional share of ``validation_size``,
    rounded by largest remainder so the shares add up exactly (ties go to the smaller label);
    within a class the held-out samples are drawn uniformly. The result depends only on
    ``labels``, ``validation_size`` and ``seed`` (a private ``torch.Generator``; the global RNG
    is neither used nor advanced), so every process and rank computes the same split.

    Args:
        labels: integer class labels, 1-D.
        validation_size: a count (int) or a fraction of ``len(labels)`` in (0, 1) (float).
        seed: seeds the draw within each class.

    Returns:
        Two int64 tensors, each sorted ascending; disjoint, together ``range(len(labels))``.

    Raises:
        ValueError: ``validation_size`` is below one sample, leaves no training data, or is a
            fraction outside (0, 1); or ``labels`` is not a 1-D integer tensor.
    """
    if labels.dim() != 1 or labels.dtype.is_floating_point or labels.dtype.is_complex:
        raise ValueError(
            f"labels must be a 1-D integer tensor, got {labels.dtype} {tuple(labels.shape)}"
        )
    labels = labels.cpu()
    num_samples = len(labels)
    count = validation_count(validation_size, num_samples)
    _, class_sizes = torch.unique(labels, sorted=True, return_counts=True)
    quotas = _largest_remainder_shares(count, class_sizes)

    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(num_samples, generator=generator)
    # Group the shuffled positions by class (a stable sort keeps the shuffled order inside a
    # class) and keep the first `quota` of each group.
    _, grouped = torch.sort(labels[order], stable=True)
    starts = torch.cumsum(class_sizes, 0) - class_sizes
    rank_in_class = torch.arange(num_samples) - starts.repeat_interleave(class_sizes)
    held_out = rank_in_class < quotas.repeat_interleave(class_sizes)
    validation = order[grouped[held_out]].sort().values
    is_train = torch.ones(num_samples, dtype=torch.bool)
    is_train[validation] = False
    return torch.nonzero(is_train).flatten(), validation


def _largest_remainder_shares(total: int, sizes: Tensor) -> Tensor:
    """Integer shares of ``total`` proportional to ``sizes``, summing to ``total`` exactly."""
    exact = total * sizes  # int64: share_i = exact_i / sum(sizes)
    denominator = int(sizes.sum())
    shares = exact // denominator
    missing = total - int(shares.sum())
    remainders = exact % denominator
    # Largest remainder first; a stable sort of the negated remainders breaks ties by label.
    _, by_remainder = torch.sort(-remainders, stable=True)
    shares[by_remainder[:missing]] += 1
    return shares
