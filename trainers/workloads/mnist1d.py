"""MNIST-1D: ten 1-D digit templates, randomly transformed into 40-point sequences.

Greydanus & Kobak, "Scaling down deep learning with MNIST-1D", ICML 2024 (arXiv:2011.14439).
The data is generated offline by the ``mnist1d`` package (never its downloading
``get_dataset``) and cached in ``<data_dir>/mnist1d/mnist1d-<num_samples>-<seed>.npz``.
Models follow the paper's baselines: a 2-hidden-layer ReLU MLP and a 3-layer 1-D CNN.

Splits: the generator's 80% training part less a class-stratified validation split
(``validation_size``, drawn with ``validation_seed``), the validation split, and the
generator's 20% test part. With ``standardize`` all three are shifted and scaled by the
training split's mean and standard deviation (one scalar each), so the held-out data never
informs the preprocessing.
"""

from __future__ import annotations

import os
import random
import tempfile
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

from trainers.workloads._base import ClassificationWorkload, Splits, TensorSplit
from trainers.workloads._options import MNIST1D_TRAIN_SPLIT, MNIST1DOptions
from trainers.workloads._registry import BUILTIN_WORKLOADS

__all__ = ["MNIST1DWorkload", "generate_mnist1d", "mnist1d_cache_path", "standardize"]

SEQUENCE_LENGTH = 40
NUM_CLASSES = 10


def mnist1d_cache_path(data_dir: Path, num_samples: int, seed: int) -> Path:
    """Where the generated arrays of ``(num_samples, seed)`` are cached."""
    return data_dir / "mnist1d" / f"mnist1d-{num_samples}-{seed}.npz"


def generate_mnist1d(num_samples: int, seed: int) -> dict[str, npt.NDArray[Any]]:
    """Arrays ``x, y, x_test, y_test`` (float32 [N, 40], int64 [N]) with an 80/20 split.

    ``x`` is the first ``int(num_samples * 0.8)`` generated samples (:data:`MNIST1D_TRAIN_SPLIT`).
    The generator reseeds the global ``random`` and ``numpy`` RNGs; their states are restored.
    """
    from mnist1d.data import get_dataset_args, make_dataset

    python_state, numpy_state = random.getstate(), np.random.get_state()
    try:
        args = get_dataset_args()
        args.num_samples = num_samples
        args.seed = seed
        args.train_split = MNIST1D_TRAIN_SPLIT  # the package default, pinned
        data = make_dataset(args)
    finally:
        random.setstate(python_state)
        np.random.set_state(numpy_state)
    return {
        "x": data["x"].astype(np.float32),
        "y": data["y"].astype(np.int64),
        "x_test": data["x_test"].astype(np.float32),
        "y_test": data["y_test"].astype(np.int64),
    }


def _load_or_generate(path: Path, num_samples: int, seed: int) -> dict[str, npt.NDArray[Any]]:
    if path.is_file():
        with np.load(path) as cached:
            return {key: cached[key] for key in cached.files}
    arrays = generate_mnist1d(num_samples, seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Several workers may generate at once: each writes its own file, then renames atomically.
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as stream:
            np.savez(
                stream,
                x=arrays["x"],
                y=arrays["y"],
                x_test=arrays["x_test"],
                y_test=arrays["y_test"],
            )
        os.chmod(temporary, 0o644)  # mkstemp makes it private; the cache is shared
        os.replace(temporary, path)
    except BaseException:
        with suppress(FileNotFoundError):
            os.unlink(temporary)
        raise
    return arrays


class _MLP(nn.Sequential):
    def __init__(self, hidden: int) -> None:
        super().__init__(
            nn.Linear(SEQUENCE_LENGTH, hidden),
            nn.ReLU(),
            nn.Linear(hidden, hidden),
            nn.ReLU(),
            nn.Linear(hidden, NUM_CLASSES),
        )


class _CNN(nn.Module):
    """The paper's ConvBase: three stride-2 convolutions and a linear classifier."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv1d(1, channels, kernel_size=5, stride=2, padding=1),
            nn.ReLU(),
            nn.Conv1d(channels, channels, kernel_size=3, stride=2, padding=1),
            nn.ReLU(),
            nn.Conv1d(channels, channels, kernel_size=3, stride=2, padding=1),
            nn.ReLU(),
        )
        length = SEQUENCE_LENGTH
        for kernel_size in (5, 3, 3):
            length = (length + 2 - kernel_size) // 2 + 1
        self.classifier = nn.Linear(channels * length, NUM_CLASSES)

    def forward(self, sequences: torch.Tensor) -> torch.Tensor:
        features: torch.Tensor = self.features(sequences.unsqueeze(1))
        logits: torch.Tensor = self.classifier(features.flatten(1))
        return logits


_MODELS: dict[str, Callable[[MNIST1DOptions], nn.Module]] = {
    "mlp": lambda options: _MLP(options.hidden),
    "cnn": lambda options: _CNN(options.channels),
}


class MNIST1DWorkload(ClassificationWorkload[MNIST1DOptions]):
    """MNIST-1D classification; batches are ``(float32 [B, 40], int64 [B])``."""

    info = BUILTIN_WORKLOADS["mnist1d"]

    def build_model(self) -> nn.Module:
        return _MODELS[self.options.model](self.options)

    def load_splits(self, data_dir: Path) -> Splits:
        options = self.options
        path = mnist1d_cache_path(data_dir, options.num_samples, options.seed)
        arrays = _load_or_generate(path, options.num_samples, options.seed)
        train, validation = self.hold_out_validation(
            TensorSplit(torch.from_numpy(arrays["x"]), torch.from_numpy(arrays["y"])),
            options.validation_size,
            options.validation_seed,
        )
        test = TensorSplit(torch.from_numpy(arrays["x_test"]), torch.from_numpy(arrays["y_test"]))
        splits = Splits(train, validation, test)
        return standardize(splits) if options.standardize else splits


def standardize(splits: Splits) -> Splits:
    """``splits`` with inputs ``(x - mean) / std``, both scalars of the training inputs.

    The statistics are float64 over every value of the training split (population std).
    """
    inputs = splits.train.tensors[0].double()
    mean, std = inputs.mean(), inputs.std(correction=0)
    if not std > 0:
        raise ValueError("cannot standardize: the training inputs are constant")

    def scaled(split: TensorSplit) -> TensorSplit:
        inputs, *rest = split.tensors
        return TensorSplit(((inputs.double() - mean) / std).to(inputs.dtype), *rest)

    return Splits(*(scaled(split) for split in splits))
