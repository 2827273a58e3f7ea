"""The :class:`Workload` interface every training workload implements (imports torch).

One instance lives in each data-parallel worker process. The training loop calls, in order:
``load_datasets(data_dir)``, ``build_model()`` (language workloads size their vocabulary from
the training data, so the datasets come first), then per micro-batch ``to_device`` ->
``train_transform`` -> ``loss``, and ``evaluate`` on the test set.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar

import torch
import torch.nn.functional as F
from pydantic import BaseModel
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset, TensorDataset

from trainers.workloads._errors import MissingDataError

if TYPE_CHECKING:
    from trainers.workloads._registry import WorkloadInfo

__all__ = [
    "Batch",
    "ClassificationWorkload",
    "Workload",
    "iterate_batches",
    "to_device",
    "unwrap_model",
]

Batch = tuple[Tensor, ...]
"""A batch: tensors whose first dimension is the sample (images, labels) or (inputs, targets)."""

OptionsT = TypeVar("OptionsT", bound=BaseModel)


def to_device(batch: Sequence[Tensor], device: torch.device | str) -> Batch:
    """``batch`` with every tensor moved to ``device`` (non-blocking from pinned memory)."""
    return tuple(tensor.to(device, non_blocking=True) for tensor in batch)


def unwrap_model(model: nn.Module) -> nn.Module:
    """The module inside a DistributedDataParallel / DataParallel wrapper, else ``model``."""
    if isinstance(model, nn.parallel.DistributedDataParallel | nn.DataParallel):
        inner: nn.Module = model.module
        return inner
    return model


def iterate_batches(
    dataset: Dataset[Any],
    batch_size: int,
    collate_fn: Callable[[list[Any]], Batch] | None = None,
) -> Iterator[Batch]:
    """Batches of ``dataset`` in order; a TensorDataset is sliced rather than collated."""
    if isinstance(dataset, TensorDataset) and collate_fn is None:
        tensors = dataset.tensors
        for start in range(0, len(tensors[0]), batch_size):
            yield tuple(tensor[start : start + batch_size] for tensor in tensors)
        return
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=collate_fn)
    for batch in loader:
        yield tuple(batch)


class Workload(abc.ABC, Generic[OptionsT]):
    """A model, its data, its loss and its test metric.

    Subclasses set :attr:`info` (their registry entry: name, metric, expected files) and take
    the validated options model in ``__init__``.

    Attributes:
        options: the validated options.
        collate_fn: how the DataLoader batches samples; None for default collation.
    """

    info: ClassVar[WorkloadInfo]

    def __init__(self, options: OptionsT) -> None:
        self.options = options
        self.collate_fn: Callable[[list[Any]], Batch] | None = None

    @abc.abstractmethod
    def build_model(self) -> nn.Module:
        """A freshly initialised model (on the CPU; seed torch first for reproducibility)."""

    @abc.abstractmethod
    def load_datasets(self, data_dir: Path) -> tuple[Dataset[Any], Dataset[Any]]:
        """The (train, test) datasets; :class:`MissingDataError` if files are missing."""

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
        dataset: Dataset[Any],
        *,
        device: torch.device | str,
        batch_size: int,
    ) -> dict[str, float]:
        """Metrics on the whole ``dataset``: ``test_loss`` and ``info.metric`` at least.

        Runs in eval mode under ``torch.no_grad()`` on the unwrapped model (no collectives, so
        one rank may evaluate alone) and restores the model's train/eval mode.
        """

    to_device = staticmethod(to_device)

    def require_files(self, data_dir: Path, relative_paths: Sequence[str]) -> None:
        """Raise :class:`MissingDataError` naming every file of ``relative_paths`` missing."""
        missing = [path for path in relative_paths if not (data_dir / path).is_file()]
        if missing:
            raise MissingDataError(self.info.name, data_dir, missing, self.info.data_source)


class ClassificationWorkload(Workload[OptionsT]):
    """A workload whose batches are ``(inputs, labels)`` and whose metric is accuracy."""

    def loss(self, model: nn.Module, batch: Batch) -> tuple[Tensor, int]:
        inputs, labels = batch[0], batch[1]
        return F.cross_entropy(model(inputs), labels), labels.shape[0]

    def evaluate(
        self,
        model: nn.Module,
        dataset: Dataset[Any],
        *,
        device: torch.device | str,
        batch_size: int,
    ) -> dict[str, float]:
        model = unwrap_model(model)  # a DDP forward would broadcast buffers: a collective
        was_training = model.training
        model.eval()
        total_loss = torch.zeros((), dtype=torch.float64, device=device)
        correct = torch.zeros((), dtype=torch.int64, device=device)
        count = 0
        with torch.no_grad():
            for batch in iterate_batches(dataset, batch_size, self.collate_fn):
                inputs, labels = to_device(batch[:2], device)
                logits = model(inputs).float()
                total_loss += F.cross_entropy(logits, labels, reduction="sum")
                correct += (logits.argmax(dim=1) == labels).sum()
                count += labels.shape[0]
        model.train(was_training)
        if count == 0:
            raise ValueError(f"workload {self.info.name!r}: the evaluation dataset is empty")
        return {"test_loss": total_loss.item() / count, "accuracy": correct.item() / count}
