"""MNIST-1D: offline generation, the on-disk cache, RNG hygiene, both models."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch.utils.data import TensorDataset

from trainers.workloads import load_workload
from trainers.workloads import mnist1d as mnist1d_module
from trainers.workloads.mnist1d import MNIST1DWorkload, generate_mnist1d, mnist1d_cache_path

NUM_SAMPLES = 1000
SEED = 42


def _workload(**options: Any) -> MNIST1DWorkload:
    workload = load_workload("mnist1d", {"num_samples": NUM_SAMPLES, "seed": SEED, **options})
    assert isinstance(workload, MNIST1DWorkload)
    return workload


@pytest.fixture(scope="session")
def datasets(mnist1d_data_dir: Path) -> tuple[TensorDataset, TensorDataset]:
    train, test = _workload().load_datasets(mnist1d_data_dir)
    assert isinstance(train, TensorDataset) and isinstance(test, TensorDataset)
    return train, test


def test_split_shapes_and_dtypes(datasets: tuple[TensorDataset, TensorDataset]) -> None:
    train, test = datasets
    assert len(train) == 800 and len(test) == 200
    inputs, labels = train.tensors
    assert inputs.shape == (800, 40) and inputs.dtype == torch.float32
    assert labels.dtype == torch.int64 and set(labels.tolist()) == set(range(10))


def test_cache_file_is_written_without_leftovers(
    datasets: tuple[TensorDataset, TensorDataset], mnist1d_data_dir: Path
) -> None:
    path = mnist1d_cache_path(mnist1d_data_dir, NUM_SAMPLES, SEED)
    assert path == mnist1d_data_dir / "mnist1d" / "mnist1d-1000-42.npz"
    assert [entry.name for entry in path.parent.iterdir()] == [path.name]


def test_cache_is_reused(
    datasets: tuple[TensorDataset, TensorDataset],
    mnist1d_data_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def fail(num_samples: int, seed: int) -> None:
        raise AssertionError("regenerated although the cache exists")

    monkeypatch.setattr(mnist1d_module, "generate_mnist1d", fail)
    train, _ = _workload().load_datasets(mnist1d_data_dir)
    assert torch.equal(train.tensors[0], datasets[0].tensors[0])  # type: ignore[attr-defined]


def test_generation_is_deterministic_and_matches_the_cache(
    datasets: tuple[TensorDataset, TensorDataset],
) -> None:
    fresh = generate_mnist1d(NUM_SAMPLES, SEED)
    assert np.array_equal(fresh["x"], datasets[0].tensors[0].numpy())
    assert np.array_equal(fresh["y_test"], datasets[1].tensors[1].numpy())


def test_generation_restores_the_global_rngs() -> None:
    random.seed(123)
    np.random.seed(7)
    python_state, numpy_state = random.getstate(), np.random.get_state(legacy=False)
    generate_mnist1d(NUM_SAMPLES, seed=1)
    assert random.getstate() == python_state
    restored = np.random.get_state(legacy=False)
    assert np.array_equal(restored["state"]["key"], numpy_state["state"]["key"])
    assert restored["state"]["pos"] == numpy_state["state"]["pos"]


def test_missing_data_dir_is_created(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    inputs, labels = np.zeros((10, 40), dtype=np.float32), np.zeros(10, dtype=np.int64)
    arrays = {"x": inputs, "y": labels, "x_test": inputs, "y_test": labels}
    monkeypatch.setattr(mnist1d_module, "generate_mnist1d", lambda num_samples, seed: arrays)
    data_dir = tmp_path / "does" / "not" / "exist"
    train, _ = _workload().load_datasets(data_dir)
    assert len(train) == 10  # type: ignore[arg-type]
    assert mnist1d_cache_path(data_dir, NUM_SAMPLES, SEED).is_file()


@pytest.mark.parametrize("model", ["mlp", "cnn"])
def test_model_trains_and_evaluates(
    model: str, datasets: tuple[TensorDataset, TensorDataset]
) -> None:
    workload = _workload(model=model)
    network = workload.build_model()
    inputs, labels = datasets[0].tensors
    batch = workload.train_transform(workload.to_device((inputs[:32], labels[:32]), "cpu"))
    loss, count = workload.loss(network, batch)
    assert count == 32 and loss.ndim == 0
    torch.autograd.backward(loss)
    assert all(parameter.grad is not None for parameter in network.parameters())

    metrics = workload.evaluate(network, datasets[1], device="cpu", batch_size=64)
    assert set(metrics) >= {"test_loss", "accuracy"}
    assert 0.0 <= metrics["accuracy"] <= 1.0
    assert 1.0 < metrics["test_loss"] < 5.0  # about ln(10) before training
    assert network.training  # evaluate restores the mode
