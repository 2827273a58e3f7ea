"""ResNet-20 on CIFAR-10/100: the pickle format, the held-out validation split, the model,
augmentation, missing data."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch

from trainers.workloads import (
    InvalidWorkloadOptionsError,
    MissingDataError,
    Splits,
    TensorSplit,
    load_workload,
)
from trainers.workloads.resnet_cifar import (
    CIFAR10Workload,
    CIFAR100Workload,
    ResNetCIFAR,
    default_validation_size,
    load_cifar_batch,
    random_crop_flip,
)

from ._checks import assert_held_out, assert_stratified, rows
from ._fixtures import write_cifar10

# name: (class, classes, training images in the fixture, its default validation size)
WORKLOADS = {
    "resnet20-cifar10": (CIFAR10Workload, 10, 40, 4),
    "resnet20-cifar100": (CIFAR100Workload, 100, 12, 1),
}


def _load(
    name: str, data_dir: Path, **options: object
) -> tuple[CIFAR10Workload | CIFAR100Workload, Splits]:
    workload = load_workload(name, options)
    assert isinstance(workload, CIFAR10Workload | CIFAR100Workload)
    return workload, workload.load_splits(data_dir)


def _all_training_images(name: str, data_dir: Path) -> TensorSplit:
    workload_class = WORKLOADS[name][0]
    parts = [
        load_cifar_batch(data_dir / file, workload_class.label_key)
        for file in workload_class.train_files
    ]
    return TensorSplit(
        torch.cat([images for images, _ in parts]), torch.cat([labels for _, labels in parts])
    )


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
def test_splits_hold_validation_out_of_the_training_batches(
    name: str, cifar_data_dir: Path
) -> None:
    _, num_classes, train_size, validation_size = WORKLOADS[name]
    _, splits = _load(name, cifar_data_dir)
    assert [len(split) for split in splits] == [
        train_size - validation_size,
        validation_size,
        8 if name == "resnet20-cifar10" else 12,
    ]
    for split in splits:
        images, labels = split.tensors
        assert images.dtype == torch.uint8 and images.shape[1:] == (3, 32, 32)
        assert int(labels.max()) < num_classes
    assert_held_out(splits, _all_training_images(name, cifar_data_dir), validation_size, seed=0)


def test_the_validation_split_is_stratified(cifar_data_dir: Path) -> None:
    whole = _all_training_images("resnet20-cifar10", cifar_data_dir)
    _, splits = _load("resnet20-cifar10", cifar_data_dir, validation_size=0.5)
    assert len(splits.validation) == 20
    assert_stratified(whole.tensors[1], splits.validation.tensors[1])


def test_splits_depend_only_on_validation_seed(cifar_data_dir: Path) -> None:
    _, first = _load("resnet20-cifar10", cifar_data_dir, validation_size=10)
    torch.manual_seed(777)  # the trial's seed
    _, again = _load("resnet20-cifar10", cifar_data_dir, validation_size=10)
    assert torch.equal(first.validation.tensors[0], again.validation.tensors[0])
    _, other = _load("resnet20-cifar10", cifar_data_dir, validation_size=10, validation_seed=3)
    assert rows(other.validation.tensors[0]) != rows(first.validation.tensors[0])


@pytest.mark.parametrize(("validation_size", "expected"), [(7, 7), (0.25, 10), (39, 39)])
def test_validation_size_is_a_count_or_a_fraction(
    validation_size: int | float, expected: int, cifar_data_dir: Path
) -> None:
    _, splits = _load("resnet20-cifar10", cifar_data_dir, validation_size=validation_size)
    assert (len(splits.train), len(splits.validation)) == (40 - expected, expected)


def test_the_default_is_5000_images_at_most_a_tenth() -> None:
    assert default_validation_size(50_000) == 5000
    assert default_validation_size(200_000) == 5000
    assert default_validation_size(45_000) == 4500
    assert default_validation_size(40) == 4
    assert default_validation_size(3) == 1


@pytest.mark.parametrize("validation_size", [0, -5, 0.0, 1.0, 2.5, True])
def test_refused_validation_sizes_name_the_option(validation_size: int | float) -> None:
    with pytest.raises(InvalidWorkloadOptionsError) as caught:
        load_workload("resnet20-cifar10", {"validation_size": validation_size})
    assert "validation_size" in str(caught.value)


@pytest.mark.parametrize("validation_size", [40, 1000, 0.999])
def test_a_size_that_leaves_no_training_data_is_refused_at_load_time(
    validation_size: int | float, cifar_data_dir: Path
) -> None:
    with pytest.raises(
        ValueError, match=r"'resnet20-cifar10': validation_size=.* leaves no training"
    ):
        _load("resnet20-cifar10", cifar_data_dir, validation_size=validation_size)


@pytest.mark.parametrize("name", WORKLOADS)
def test_model_loss_and_evaluation(name: str, cifar_data_dir: Path) -> None:
    workload_class, _, train_size, validation_size = WORKLOADS[name]
    workload, splits = _load(name, cifar_data_dir, width_multiplier=0.25)
    assert type(workload) is workload_class

    model = workload.build_model()
    batch = workload.train_transform(workload.to_device(splits.train.tensors, "cpu"))
    loss, count = workload.loss(model, batch)
    assert count == train_size - validation_size
    torch.autograd.backward(loss)
    assert all(parameter.grad is not None for parameter in model.parameters())

    metrics = workload.evaluate(model, splits.test, device="cpu", batch_size=5)
    assert set(metrics) == {"loss", "accuracy"}
    assert 0.0 <= metrics["accuracy"] <= 1.0
    assert 0.0 < metrics["loss"] < float("inf")


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
    workload, splits = _load("resnet20-cifar10", cifar_data_dir)
    images, labels = splits.train.tensors
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
        workload.load_splits(tmp_path)
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
        load_workload("resnet20-cifar100", {}).load_splits(tmp_path / "nowhere")
    assert caught.value.missing == ["cifar-100-python/train", "cifar-100-python/test"]
