"""ResNet-20 on CIFAR-10/100: the pickle format, the model, augmentation, missing data."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch
from torch.utils.data import TensorDataset

from trainers.workloads import MissingDataError, load_workload
from trainers.workloads.resnet_cifar import (
    CIFAR10Workload,
    CIFAR100Workload,
    ResNetCIFAR,
    load_cifar_batch,
    random_crop_flip,
)

from ._fixtures import write_cifar10

WORKLOADS = {
    "resnet20-cifar10": (CIFAR10Workload, 10, 40),
    "resnet20-cifar100": (CIFAR100Workload, 100, 12),
}


def _load(
    name: str, data_dir: Path, **options: object
) -> tuple[CIFAR10Workload | CIFAR100Workload, TensorDataset, TensorDataset]:
    workload = load_workload(name, options)
    assert isinstance(workload, CIFAR10Workload | CIFAR100Workload)
    train, test = workload.load_datasets(data_dir)
    assert isinstance(train, TensorDataset) and isinstance(test, TensorDataset)
    return workload, train, test


def test_pixels_are_read_channel_major(cifar_data_dir: Path) -> None:
    path = cifar_data_dir / "cifar-10-batches-py" / "data_batch_2"
    with path.open("rb") as stream:
        raw = pickle.load(stream, encoding="bytes")
    images, labels = load_cifar_batch(path, b"labels")
    first = raw[b"data"][0]
    assert images.dtype == torch.uint8 and images.shape == (8, 3, 32, 32)
    assert images[0, 0, 0, :].tolist() == first[:32].tolist()  # red, top row
    assert images[0, 1, 0, 0] == first[1024] and images[0, 2, 31, 31] == first[3071]
    assert labels.tolist() == raw[b"labels"]


@pytest.mark.parametrize("name", WORKLOADS)
def test_datasets_model_loss_and_evaluation(name: str, cifar_data_dir: Path) -> None:
    workload_class, num_classes, train_size = WORKLOADS[name]
    workload, train, test = _load(name, cifar_data_dir, width_multiplier=0.25)
    assert type(workload) is workload_class
    assert len(train) == train_size and len(test) in (8, 12)
    assert int(train.tensors[1].max()) < num_classes

    model = workload.build_model()
    batch = workload.train_transform(workload.to_device(train.tensors, "cpu"))
    loss, count = workload.loss(model, batch)
    assert count == train_size
    torch.autograd.backward(loss)
    assert all(parameter.grad is not None for parameter in model.parameters())

    metrics = workload.evaluate(model, test, device="cpu", batch_size=5)
    assert set(metrics) >= {"test_loss", "accuracy"}
    assert 0.0 <= metrics["accuracy"] <= 1.0
    assert 0.0 < metrics["test_loss"] < float("inf")


def test_resnet20_has_the_papers_size_and_option_a_shortcuts() -> None:
    model = ResNetCIFAR(10, (0.5,) * 3, (0.25,) * 3)
    convolutions = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convolutions) + 1 == 20  # 19 conv layers and the classifier
    assert sum(parameter.numel() for parameter in model.parameters()) == 269_722  # "0.27M"
    assert model(torch.zeros(2, 3, 32, 32, dtype=torch.uint8)).shape == (2, 10)


def test_projection_shortcut_and_width() -> None:
    identity = ResNetCIFAR(10, (0.5,) * 3, (0.25,) * 3, width_multiplier=2)
    projection = ResNetCIFAR(10, (0.5,) * 3, (0.25,) * 3, width_multiplier=2, shortcut="projection")

    def count(model: torch.nn.Module) -> int:
        return sum(parameter.numel() for parameter in model.parameters())

    assert identity.classifier.in_features == 128
    # Option B adds two (1x1 conv + BN) projections: 32->64 and 64->128 channels.
    assert count(projection) - count(identity) == (32 * 64 + 2 * 64) + (64 * 128 + 2 * 128)
    assert projection(torch.zeros(1, 3, 32, 32)).shape == (1, 10)


def test_zero_init_residual() -> None:
    model = ResNetCIFAR(10, (0.5,) * 3, (0.25,) * 3, zero_init_residual=True)
    last_norms = [
        module.weight
        for name, module in model.named_modules()
        if name.endswith(".bn2") and isinstance(module, torch.nn.BatchNorm2d)
    ]
    assert len(last_norms) == 9
    assert all(torch.count_nonzero(weight) == 0 for weight in last_norms)


def test_crop_flip_keeps_shapes_and_changes_images(cifar_data_dir: Path) -> None:
    workload, train, _ = _load("resnet20-cifar10", cifar_data_dir)
    images, labels = train.tensors
    augmented, augmented_labels = workload.train_transform((images, labels))
    assert augmented.shape == images.shape and augmented.dtype == torch.uint8
    assert torch.equal(augmented_labels, labels)
    changed = (augmented != images).flatten(1).any(dim=1)
    assert int(changed.sum()) > 0


def test_each_augmented_image_is_a_window_of_the_padded_image_maybe_flipped() -> None:
    images = torch.randint(0, 256, (16, 3, 32, 32), dtype=torch.uint8)
    augmented = random_crop_flip(images)
    padded = torch.nn.functional.pad(images, (4, 4, 4, 4))
    for image, padded_image in zip(augmented, padded, strict=True):
        windows = [
            window
            for top in range(9)
            for left in range(9)
            for window in (
                padded_image[:, top : top + 32, left : left + 32],
                padded_image[:, top : top + 32, left : left + 32].flip(-1),
            )
        ]
        assert any(torch.equal(image, window) for window in windows)


def test_flips_are_about_half() -> None:
    images = torch.arange(32, dtype=torch.uint8).expand(2000, 1, 1, 32).contiguous()
    flipped = random_crop_flip(images, padding=0)[:, 0, 0, 0] == 31
    assert 0.4 < flipped.float().mean() < 0.6


def test_refuses_pickled_objects_other_than_arrays(tmp_path: Path) -> None:
    path = tmp_path / "data_batch_1"
    path.write_bytes(pickle.dumps({b"data": Path("/")}, protocol=2))
    with pytest.raises(pickle.UnpicklingError, match="refusing"):
        load_cifar_batch(path, b"labels")


def test_missing_files_are_all_named(tmp_path: Path) -> None:
    write_cifar10(tmp_path, images_per_batch=2)
    for name in ("data_batch_3", "test_batch"):
        (tmp_path / "cifar-10-batches-py" / name).unlink()
    workload = load_workload("resnet20-cifar10", {})
    with pytest.raises(MissingDataError) as caught:
        workload.load_datasets(tmp_path)
    message = str(caught.value)
    assert isinstance(caught.value, FileNotFoundError)
    assert "resnet20-cifar10" in message and str(tmp_path) in message
    assert "data_batch_3" in message and "test_batch" in message
    assert "data_batch_1" not in message
    assert "cifar-10-python.tar.gz" in message
    assert caught.value.missing == [
        "cifar-10-batches-py/data_batch_3",
        "cifar-10-batches-py/test_batch",
    ]


def test_missing_directory_names_every_file(tmp_path: Path) -> None:
    with pytest.raises(MissingDataError) as caught:
        load_workload("resnet20-cifar100", {}).load_datasets(tmp_path / "nowhere")
    assert caught.value.missing == ["cifar-100-python/train", "cifar-100-python/test"]
