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
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any, BinaryIO, ClassVar, Final

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from trainers.workloads._base import Batch, ClassificationWorkload, Splits, TensorSplit
from trainers.workloads._options import ResNetCIFAROptions
from trainers.workloads._registry import BUILTIN_WORKLOADS

__all__ = [
    "CIFAR10Workload",
    "CIFAR100Workload",
    "ResNetCIFAR",
    "default_validation_size",
    "load_cifar_batch",
    "random_crop_flip",
]

IMAGE_SIZE = 32
CROP_PADDING = 4
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


def random_crop_flip(images: Tensor, padding: int = CROP_PADDING) -> Tensor:
    """Per image: a random crop of the zero-padded image and a horizontal flip with p = 1/2.

    Batched on the images' device with torch's global RNG; ``images`` is [B, C, H, W].
    """
    batch_size, _, height, width = images.shape
    device = images.device
    padded = F.pad(images, (padding, padding, padding, padding))
    top = torch.randint(0, 2 * padding + 1, (batch_size, 1), device=device)
    left = torch.randint(0, 2 * padding + 1, (batch_size, 1), device=device)
    rows = (top + torch.arange(height, device=device))[:, None, :, None]
    columns = (left + torch.arange(width, device=device))[:, None, None, :]
    flip = torch.rand(batch_size, device=device) < 0.5
    columns = torch.where(flip[:, None, None, None], columns.flip(-1), columns)
    samples = torch.arange(batch_size, device=device)[:, None, None, None]
    channels = torch.arange(images.shape[1], device=device)[None, :, None, None]
    return padded[samples, channels, rows, columns]


class _Normalize(nn.Module):
    """uint8 pixels -> [0, 1] -> per-channel standardisation (floats are taken as [0, 1])."""

    mean: Tensor
    std: Tensor

    def __init__(self, mean: tuple[float, ...], std: tuple[float, ...]) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1), persistent=False)

    def forward(self, images: Tensor) -> Tensor:
        if images.dtype == torch.uint8:
            images = images.float().div_(255)
        return (images - self.mean) / self.std


class _BasicBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, stride: int, shortcut: str) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = _SHORTCUTS[shortcut](in_channels, out_channels, stride)

    def forward(self, inputs: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(inputs)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(inputs))


class _PadShortcut(nn.Module):
    """Option A: subsample by ``stride`` and zero-pad the new channels (no parameters)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.stride = stride
        self.extra = out_channels - in_channels

    def forward(self, inputs: Tensor) -> Tensor:
        subsampled = inputs[:, :, :: self.stride, :: self.stride]
        before = self.extra // 2
        return F.pad(subsampled, (0, 0, 0, 0, before, self.extra - before))


def _projection_shortcut(in_channels: int, out_channels: int, stride: int) -> nn.Module:
    """Option B: a strided 1x1 convolution and BatchNorm."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 1, stride, bias=False), nn.BatchNorm2d(out_channels)
    )


_SHORTCUTS = {"identity": _PadShortcut, "projection": _projection_shortcut}


class ResNetCIFAR(nn.Module):
    """ResNet-(6n+2) for 32x32 images; ``blocks_per_stage=3`` is ResNet-20 (0.27 M params)."""

    def __init__(
        self,
        num_classes: int,
        mean: tuple[float, ...],
        std: tuple[float, ...],
        *,
        width_multiplier: float = 1.0,
        blocks_per_stage: int = 3,
        shortcut: str = "identity",
        zero_init_residual: bool = False,
    ) -> None:
        super().__init__()
        base = max(1, round(16 * width_multiplier))
        self.normalize = _Normalize(mean, std)
        self.stem = nn.Sequential(
            nn.Conv2d(3, base, 3, 1, padding=1, bias=False), nn.BatchNorm2d(base), nn.ReLU()
        )
        blocks: list[nn.Module] = []
        in_channels = base
        for stage, out_channels in enumerate((base, 2 * base, 4 * base)):
            for index in range(blocks_per_stage):
                stride = 2 if stage > 0 and index == 0 else 1
                blocks.append(_BasicBlock(in_channels, out_channels, stride, shortcut))
                in_channels = out_channels
        self.blocks = nn.Sequential(*blocks)
        self.classifier = nn.Linear(in_channels, num_classes)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, nonlinearity="relu")  # He et al. 2015
        if zero_init_residual:
            for module in self.modules():
                if isinstance(module, _BasicBlock):
                    nn.init.zeros_(module.bn2.weight)

    def forward(self, images: Tensor) -> Tensor:
        features = self.blocks(self.stem(self.normalize(images)))
        logits: Tensor = self.classifier(features.mean(dim=(2, 3)))
        return logits


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
