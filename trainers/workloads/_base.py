"""The :class:`Workload` interface every training workload implements (imports torch).

One instance lives in each data-parallel worker process. The training loop calls, in order:
``load_splits(data_dir)`` (CPU tensors; the loop moves each split to its device once),
``build_model()`` (language workloads size their vocabulary from the training data, so the
data comes first), then per micro-batch ``split.take(index)`` -> ``to_device`` ->
``train_transform`` -> ``loss``, and ``evaluate`` on the validation split (to tune on) and the
test split (to report). docs/workloads.md shows a complete plug-in.
"""

from __future__ import annotations

import abc
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, Generic, TypeVar

import torch
import torch.nn.functional as F
from pydantic import BaseModel
from torch import Tensor, nn

from trainers.workloads._data import Batch, Splits, TensorSplit, stratified_split
from trainers.workloads._errors import MissingDataError

if TYPE_CHECKING:
    from trainers.workloads._registry import WorkloadInfo

__all__ = [
    "Batch",
    "ClassificationWorkload",
    "Splits",
    "TensorSplit",
    "Workload",
    "evaluation_mode",
    "stratified_split",
    "to_device",
    "unwrap_model",
]

OptionsT = TypeVar("OptionsT", bound=BaseModel)


def to_device(batch: Sequence[Tensor], device: torch.device | str) -> Batch:
    """``batch`` with every tensor on ``device`` (a no-op for tensors already there)."""
    non_blocking = torch.device(device).type != "cpu"
    return tuple(tensor.to(device, non_blocking=non_blocking) for tensor in batch)


def unwrap_model(model: nn.Module) -> nn.Module:
    """The module inside a DistributedDataParallel / DataParallel wrapper, else ``model``."""
    if isinstance(model, nn.parallel.DistributedDataParallel | nn.DataParallel):
        inner: nn.Module = model.module
        return inner
    return model


@contextmanager
def evaluation_mode(model: nn.Module) -> Iterator[nn.Module]:
    """The unwrapped ``model`` in eval mode under ``torch.no_grad()``; its mode is restored.

    Unwrapped because a DDP forward broadcasts buffers (a collective): one rank may evaluate
    alone.
    """
    model = unwrap_model(model)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            yield model
    finally:
        model.train(was_training)


class Workload(abc.ABC, Generic[OptionsT]):
    """A model, its data in three splits, its loss and its metric.

    Subclasses set :attr:`info` (their registry entry: name, metric, expected files) and take
    the validated options model in ``__init__``.

    Attributes:
        options: the validated options.
    """

    info: ClassVar[WorkloadInfo]
    units_equal_across_ranks: ClassVar[bool] = False
    """Every rank's batch of a step holds the same number of loss units (true when units are
    rows): the step then needs no per-step all-reduce to learn the global count."""

    def __init__(self, options: OptionsT) -> None:
        self.options = options

    @abc.abstractmethod
    def build_model(self) -> nn.Module:
        """A freshly initialised model (on the CPU; seed torch first for reproducibility)."""

    @abc.abstractmethod
    def load_splits(self, data_dir: Path) -> Splits:
        """Train, validation and test data as CPU tensors.

        The same on every call, process and rank (whatever torch's global seed): a validation
        split held out of the training data depends only on the workload's options.

        Raises:
            MissingDataError: files are missing (use :meth:`require_files`).
        """

    def train_transform(self, batch: Batch) -> Batch:
        """Augment a training batch on its device (torch's global RNG); identity by default."""
        return batch

    @abc.abstractmethod
    def loss(self, model: nn.Module, batch: Batch) -> tuple[Tensor, int]:
        """The mean loss over the batch's units and how many units it averaged over.

        Units are samples for classification and non-pad target tokens for language tasks;
        the training loop weights micro-batches by the count so accumulated gradients equal
        the full batch's.
        """

    @abc.abstractmethod
    def evaluate(
        self,
        model: nn.Module,
        split: TensorSplit,
        *,
        device: torch.device | str,
        batch_size: int,
    ) -> dict[str, float]:
        """Figures on the whole ``split``, unprefixed: ``{"loss": ..., info.metric: ...}``.

        ``loss`` is the mean over the split's units (as :meth:`loss` counts them). The loop
        names them ``val_loss``, ``test_accuracy`` and so on. Runs in :func:`evaluation_mode`
        (eval mode, no_grad, the unwrapped model; no collectives) on batches of
        ``batch_size`` moved to ``device`` (a no-op when the split is already there).
        """

    to_device = staticmethod(to_device)

    def require_files(self, data_dir: Path, relative_paths: Sequence[str]) -> None:
        """Raise :class:`MissingDataError` naming every file of ``relative_paths`` missing."""
        missing = [path for path in relative_paths if not (data_dir / path).is_file()]
        if missing:
            raise MissingDataError(self.info.name, data_dir, missing, self.info.data_source)


class ClassificationWorkload(Workload[OptionsT]):
    """A workload whose batches are ``(inputs, labels)`` and whose metric is accuracy."""

    units_equal_across_ranks = True  # a unit is a row, and every rank gets as many rows

    def loss(self, model: nn.Module, batch: Batch) -> tuple[Tensor, int]:
        inputs, labels = batch[0], batch[1]
        return F.cross_entropy(model(inputs), labels), labels.shape[0]

    def evaluate(
        self,
        model: nn.Module,
        split: TensorSplit,
        *,
        device: torch.device | str,
        batch_size: int,
    ) -> dict[str, float]:
        total_loss = torch.zeros((), dtype=torch.float64, device=device)
        correct = torch.zeros((), dtype=torch.int64, device=device)
        with evaluation_mode(model) as inner:
            for batch in split.batches(batch_size):
                inputs, labels = to_device(batch[:2], device)
                logits = inner(inputs).float()
                total_loss += F.cross_entropy(logits, labels, reduction="sum")
                correct += (logits.argmax(dim=1) == labels).sum()
        count = len(split)
        if count == 0:
            raise ValueError(f"workload {self.info.name!r}: the evaluation split is empty")
        return {"loss": total_loss.item() / count, "accuracy": correct.item() / count}

    def hold_out_validation(
        self, train: TensorSplit, validation_size: int | float, validation_seed: int
    ) -> tuple[TensorSplit, TensorSplit]:
        """``train`` less a class-stratified validation split, and that split.

        The labels are ``train.tensors[1]``; see :func:`stratified_split`.

        Raises:
            ValueError: ``validation_size`` does not fit ``train`` (the message names it).
        """
        try:
            train_index, validation_index = stratified_split(
                train.tensors[1], validation_size, validation_seed
            )
        except ValueError as error:
            raise ValueError(f"workload {self.info.name!r}: {error}") from None
        return train.subset(train_index), train.subset(validation_index)
