"""ResNet-20 for 32x32 images and its augmentation: torch only (no pydantic, no numpy).

He, Zhang, Ren & Sun, "Deep Residual Learning for Image Recognition", CVPR 2016
(arXiv:1512.03385), section 4.2: a 3x3 conv, then 3 stages of 3 basic blocks with 16/32/64
channels (times ``width_multiplier``), global average pooling and a linear classifier;
BatchNorm after every convolution; shortcut option A (identity, zero-padded channels) by
default, option B (1x1 projection) on request. The first layer takes uint8 pixels (or floats
in [0, 1]) and normalises per channel. Augmentation: a random 32x32 crop of the 4-pixel
zero-padded image and a random horizontal flip, as in the paper.

The CIFAR workloads (:mod:`trainers.workloads.resnet_cifar`) build this model; it lives apart
so that code needing only the model (``benchmarks/gpu_check.py``, on machines with torch
alone) imports neither the workloads' options (pydantic) nor their data loading (numpy).

Example:
    >>> model = ResNetCIFAR(10, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
    >>> images = torch.zeros(2, 3, IMAGE_SIZE, IMAGE_SIZE, dtype=torch.uint8)
    >>> model(random_crop_flip(images)).shape
    torch.Size([2, 10])
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["CROP_PADDING", "IMAGE_SIZE", "ResNetCIFAR", "random_crop_flip"]

IMAGE_SIZE = 32
CROP_PADDING = 4


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
