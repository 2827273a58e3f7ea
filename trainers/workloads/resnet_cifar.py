"""ResNet-20 on CIFAR-10 / CIFAR-100.

Model: He, Zhang, Ren & Sun, "Deep Residual Learning for Image Recognition", CVPR 2016
(arXiv:1512.03385), section 4.2: a 3x3 conv, then 3 stages of 3 basic blocks with 16/32/64
channels (times ``width_multiplier``), global average pooling and a linear classifier;
BatchNorm after every convolution; shortcut option A (identity, zero-padded channels) by
default, option B (1x1 projection) on request. Data: Krizhevsky, "Learning Multiple Layers of
Features from Tiny Images", 2009 (the "python version" pickles). Augmentation: random 32x32
crop of the 4-pixel zero-padded image and a random horizontal flip, as in the paper.

Splits: the training batches less a class-stratified validation split (``validation_size``,
by default 5,000 images as is usual for CIFAR, drawn with ``validation_seed``), that split, and
the test batch. Images stay uint8 tensors in memory (150 MB for CIFAR's 50,000 training
images, not 600 MB of floats); the model's first layer scales them to [0, 1] and normalises per
channel, so the crop pads with black exactly like torchvision's ``RandomCrop(32, padding=4)``
before ``Normalize``. The normalisation constants are the usual ones of all 50,000 training
images, not recomputed without the validation split.

The model and the augmentation live in :mod:`trainers.workloads._resnet` (torch only); this
module re-exports them.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any, BinaryIO, ClassVar, Final

import numpy as np
import torch
from torch import Tensor, nn

from trainers.workloads._base import Batch, ClassificationWorkload, Splits, TensorSplit
from trainers.workloads._options import ResNetCIFAROptions
from trainers.workloads._registry import BUILTIN_WORKLOADS
from trainers.workloads._resnet import IMAGE_SIZE, ResNetCIFAR, random_crop_flip

__all__ = [
    "CIFAR10Workload",
    "CIFAR100Workload",
    "ResNetCIFAR",
    "default_validation_size",
    "load_cifar_batch",
    "random_crop_flip",
]

DEFAULT_VALIDATION_IMAGES: Final = 5000


def default_validation_size(num_train: int) -> int:
    """5,000 images, at most a tenth of ``num_train`` (so the tiny test fixtures keep data)."""
    return min(DEFAULT_VALIDATION_IMAGES, max(1, num_train // 10))


class _CIFARUnpickler(pickle.Unpickler):
    """Loads the CIFAR pickles (numpy arrays, lists, bytes) and refuses any other object."""

    _ALLOWED: ClassVar[frozenset[tuple[str, str]]] = frozenset(
        {
            ("numpy.core.multiarray", "_reconstruct"),  # written by numpy 1.x / Python 2
            ("numpy._core.multiarray", "_reconstruct"),  # written by numpy 2.x
            ("numpy.core.multiarray", "scalar"),
            ("numpy._core.multiarray", "scalar"),
            ("numpy", "ndarray"),
            ("numpy", "dtype"),
            ("_codecs", "encode"),  # bytes in a protocol-2 pickle written by Python 3
        }
    )

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a CIFAR file")
        return super().find_class(module, name)


def _unpickle(stream: BinaryIO) -> Any:
    return _CIFARUnpickler(stream, encoding="bytes").load()


def load_cifar_batch(path: Path, label_key: bytes) -> tuple[Tensor, Tensor]:
    """Images uint8 [N, 3, 32, 32] and labels int64 [N] from one CIFAR python pickle."""
    with path.open("rb") as stream:
        batch = _unpickle(stream)
    try:
        data = np.asarray(batch[b"data"], dtype=np.uint8)
        labels = np.asarray(batch[label_key], dtype=np.int64)
    except (KeyError, TypeError) as error:
        raise ValueError(f"{path} is not a CIFAR python batch (no {error})") from None
    if data.ndim != 2 or data.shape[1] != 3 * IMAGE_SIZE * IMAGE_SIZE or len(labels) != len(data):
        raise ValueError(
            f"{path}: expected data [N, 3072] and N labels, got {data.shape} and {labels.shape}"
        )
    images = torch.from_numpy(data.reshape(-1, 3, IMAGE_SIZE, IMAGE_SIZE).copy())
    return images, torch.from_numpy(labels)


class _CIFARWorkload(ClassificationWorkload[ResNetCIFAROptions]):
    """ResNet-20 on a CIFAR variant; batches are ``(uint8 [B, 3, 32, 32], int64 [B])``."""

    num_classes: ClassVar[int]
    mean: ClassVar[tuple[float, float, float]]
    std: ClassVar[tuple[float, float, float]]
    label_key: ClassVar[bytes]
    train_files: ClassVar[tuple[str, ...]]
    test_files: ClassVar[tuple[str, ...]]

    def build_model(self) -> nn.Module:
        return ResNetCIFAR(
            self.num_classes,
            self.mean,
            self.std,
            width_multiplier=self.options.width_multiplier,
            shortcut=self.options.shortcut,
            zero_init_residual=self.options.zero_init_residual,
        )

    def load_splits(self, data_dir: Path) -> Splits:
        self.require_files(data_dir, self.info.expected_files)
        everything = self._load(data_dir, self.train_files)
        size = self.options.validation_size
        train, validation = self.hold_out_validation(
            everything,
            default_validation_size(len(everything)) if size is None else size,
            self.options.validation_seed,
        )
        return Splits(train, validation, self._load(data_dir, self.test_files))

    def _load(self, data_dir: Path, files: tuple[str, ...]) -> TensorSplit:
        parts = [load_cifar_batch(data_dir / name, self.label_key) for name in files]
        images = torch.cat([images for images, _ in parts])
        labels = torch.cat([labels for _, labels in parts])
        if labels.numel() and not 0 <= int(labels.min()) <= int(labels.max()) < self.num_classes:
            raise ValueError(f"{self.info.name}: labels outside [0, {self.num_classes})")
        return TensorSplit(images, labels)

    def train_transform(self, batch: Batch) -> Batch:
        return (random_crop_flip(batch[0]), *batch[1:])


class CIFAR10Workload(_CIFARWorkload):
    """ResNet-20 on CIFAR-10 (``cifar-10-batches-py/``)."""

    info = BUILTIN_WORKLOADS["resnet20-cifar10"]
    num_classes = 10
    # Per-channel statistics of the 50k training images.
    mean = (0.4914, 0.4822, 0.4465)
    std = (0.2470, 0.2435, 0.2616)
    label_key = b"labels"
    train_files = tuple(f"cifar-10-batches-py/data_batch_{i}" for i in range(1, 6))
    test_files = ("cifar-10-batches-py/test_batch",)


class CIFAR100Workload(_CIFARWorkload):
    """ResNet-20 on CIFAR-100 with the 100 fine labels (``cifar-100-python/``)."""

    info = BUILTIN_WORKLOADS["resnet20-cifar100"]
    num_classes = 100
    mean = (0.5071, 0.4865, 0.4409)
    std = (0.2673, 0.2564, 0.2762)
    label_key = b"fine_labels"
    train_files = ("cifar-100-python/train",)
    test_files = ("cifar-100-python/test",)
