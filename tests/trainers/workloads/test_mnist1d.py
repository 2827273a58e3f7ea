"""MNIST-1D: offline generation, the cache, the held-out validation split, standardization."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
import torch

from trainers.workloads import InvalidWorkloadOptionsError, Splits, TensorSplit, load_workload
from trainers.workloads import mnist1d as mnist1d_module
from trainers.workloads.mnist1d import MNIST1DWorkload, generate_mnist1d, mnist1d_cache_path

from ._checks import assert_held_out, assert_stratified, rows

NUM_SAMPLES = 1000
SEED = 42


def _workload(**options: Any) -> MNIST1DWorkload:
    workload = load_workload("mnist1d", {"num_samples": NUM_SAMPLES, "seed": SEED, **options})
    assert isinstance(workload, MNIST1DWorkload)
    return workload


@pytest.fixture(scope="session")
def splits(mnist1d_data_dir: Path) -> Splits:
    """The default splits (validation_size 0.1, standardized); generates the cache."""
    return _workload().load_splits(mnist1d_data_dir)


@pytest.fixture(scope="session")
def generated(splits: Splits, mnist1d_data_dir: Path) -> dict[str, torch.Tensor]:
    """The cached generator output: x, y (the 80% training part), x_test, y_test."""
    with np.load(mnist1d_cache_path(mnist1d_data_dir, NUM_SAMPLES, SEED)) as cached:
        return {key: torch.from_numpy(cached[key]) for key in cached.files}


def _fake_generator(
    monkeypatch: pytest.MonkeyPatch, train_size: int, test_size: int = 20
) -> dict[str, npt.NDArray[Any]]:
    """Replace the generator with one whose train and test inputs differ in mean and scale."""
    rng = np.random.default_rng(0)
    arrays: dict[str, npt.NDArray[Any]] = {
        "x": (5 + 3 * rng.standard_normal((train_size, 40))).astype(np.float32),
        "y": np.arange(train_size, dtype=np.int64) % 10,
        "x_test": (-2 + 0.5 * rng.standard_normal((test_size, 40))).astype(np.float32),
        "y_test": np.arange(test_size, dtype=np.int64) % 10,
    }
    monkeypatch.setattr(mnist1d_module, "generate_mnist1d", lambda num_samples, seed: arrays)
    return arrays


# --- the three splits -------------------------------------------------------------------------


def test_split_sizes_and_dtypes(splits: Splits) -> None:
    assert [len(split) for split in splits] == [720, 80, 200]
    for split in splits:
        inputs, labels = split.tensors
        assert inputs.shape[1:] == (40,) and inputs.dtype == torch.float32
        assert labels.dtype == torch.int64
    assert set(splits.train.tensors[1].tolist()) == set(range(10))


def test_validation_is_held_out_of_the_training_part(
    generated: dict[str, torch.Tensor], mnist1d_data_dir: Path
) -> None:
    raw = _workload(standardize=False).load_splits(mnist1d_data_dir)
    assert_held_out(raw, TensorSplit(generated["x"], generated["y"]), 0.1, seed=0)
    assert torch.equal(raw.test.tensors[1], generated["y_test"])


def test_validation_is_stratified(splits: Splits, generated: dict[str, torch.Tensor]) -> None:
    assert_stratified(generated["y"], splits.validation.tensors[1])


def test_splits_ignore_the_trial_seed(splits: Splits, mnist1d_data_dir: Path) -> None:
    torch.manual_seed(12345)  # the trial's seed: it only seeds the model and the batch order
    again = _workload().load_splits(mnist1d_data_dir)
    for first, second in zip(splits, again, strict=True):
        assert all(torch.equal(a, b) for a, b in zip(first.tensors, second.tensors, strict=True))


def test_no_validation_sample_is_in_any_rank_s_training_batch(
    splits: Splits, mnist1d_data_dir: Path
) -> None:
    """Two ranks load their splits independently (the same on each), then train on their
    shares of three epochs: no batch row is a validation row (or a test row)."""
    from trainers.batches import EpochPlan

    held_out = rows(splits.validation.tensors[0]) + rows(splits.test.tensors[0])
    seen: set[bytes] = set()
    for rank in (0, 1):
        mine = _workload().load_splits(mnist1d_data_dir)  # what this rank loads
        assert rows(mine.validation.tensors[0]) == rows(splits.validation.tensors[0])
        plan = EpochPlan(
            num_samples=len(mine.train), world_size=2, rank=rank, micro_batch=16, accumulation=2
        )
        for epoch in range(3):
            for step in plan.steps(seed=SEED, epoch=epoch):
                for index in step:
                    batch = rows(mine.train.take(index)[0])
                    assert not batch.keys() & held_out.keys()
                    seen |= batch.keys()
    assert len(seen) > 0.9 * len(splits.train)  # the batches covered the training split


def test_validation_seed_changes_the_split(mnist1d_data_dir: Path) -> None:
    first = _workload(standardize=False).load_splits(mnist1d_data_dir)
    other = _workload(standardize=False, validation_seed=1).load_splits(mnist1d_data_dir)
    assert len(other.validation) == len(first.validation)
    assert rows(other.validation.tensors[0]) != rows(first.validation.tensors[0])
    assert torch.equal(other.test.tensors[0], first.test.tensors[0])


@pytest.mark.parametrize(("validation_size", "expected"), [(50, 50), (0.25, 200), (799, 799)])
def test_validation_size_is_a_count_or_a_fraction(
    validation_size: int | float, expected: int, mnist1d_data_dir: Path
) -> None:
    splits = _workload(validation_size=validation_size).load_splits(mnist1d_data_dir)
    assert (len(splits.train), len(splits.validation)) == (800 - expected, expected)


@pytest.mark.parametrize("validation_size", [0, -1, 0.0, 1.0, 800, 5000, 0.0001, True])
def test_refused_validation_sizes_name_the_option(validation_size: int | float) -> None:
    with pytest.raises(InvalidWorkloadOptionsError) as caught:
        _workload(validation_size=validation_size)
    assert "validation_size" in str(caught.value)


def test_a_size_the_generated_data_cannot_hold_is_refused_at_load_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _fake_generator(monkeypatch, train_size=10)  # fewer than the 800 the options expect
    with pytest.raises(ValueError, match=r"'mnist1d': validation_size=10 leaves no training"):
        _workload(validation_size=10).load_splits(tmp_path)


# --- standardization --------------------------------------------------------------------------


def test_the_training_split_is_standardized(splits: Splits) -> None:
    inputs = splits.train.tensors[0].double()
    assert abs(float(inputs.mean())) < 1e-6
    assert float(inputs.std(correction=0)) == pytest.approx(1.0, abs=1e-6)


def test_every_split_uses_the_training_statistics(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _fake_generator(monkeypatch, train_size=800, test_size=200)
    raw = _workload(standardize=False).load_splits(tmp_path)
    standardized = _workload().load_splits(tmp_path)
    train_inputs = raw.train.tensors[0].double()
    mean, std = train_inputs.mean(), train_inputs.std(correction=0)
    assert float(mean) == pytest.approx(5, abs=0.1)  # the validation rows are not in it
    for name in ("train", "validation", "test"):
        expected = ((getattr(raw, name).tensors[0].double() - mean) / std).float()
        torch.testing.assert_close(getattr(standardized, name).tensors[0], expected)
    # The test inputs (mean -2, std 0.5) keep their offset: not standardized by their own stats.
    assert float(standardized.test.tensors[0].mean()) == pytest.approx((-2 - 5) / 3, abs=0.1)


def test_standardize_false_leaves_the_generated_values(
    generated: dict[str, torch.Tensor], mnist1d_data_dir: Path
) -> None:
    raw = _workload(standardize=False).load_splits(mnist1d_data_dir)
    assert rows(raw.train.tensors[0]) + rows(raw.validation.tensors[0]) == rows(generated["x"])
    assert torch.equal(raw.test.tensors[0], generated["x_test"])


# --- generation and the cache -----------------------------------------------------------------


def test_cache_file_is_written_without_leftovers(splits: Splits, mnist1d_data_dir: Path) -> None:
    path = mnist1d_cache_path(mnist1d_data_dir, NUM_SAMPLES, SEED)
    assert path == mnist1d_data_dir / "mnist1d" / "mnist1d-1000-42.npz"
    assert [entry.name for entry in path.parent.iterdir()] == [path.name]
    with np.load(path) as cached:  # the generator's arrays, not the splits
        assert sorted(cached.files) == ["x", "x_test", "y", "y_test"]
        assert cached["x"].shape == (800, 40)


def test_cache_is_reused(
    generated: dict[str, torch.Tensor], mnist1d_data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def fail(num_samples: int, seed: int) -> None:
        raise AssertionError("regenerated although the cache exists")

    monkeypatch.setattr(mnist1d_module, "generate_mnist1d", fail)
    raw = _workload(standardize=False).load_splits(mnist1d_data_dir)
    assert torch.equal(raw.test.tensors[0], generated["x_test"])


def test_generation_is_deterministic_and_matches_the_cache(
    generated: dict[str, torch.Tensor],
) -> None:
    fresh = generate_mnist1d(NUM_SAMPLES, SEED)
    assert np.array_equal(fresh["x"], generated["x"].numpy())
    assert np.array_equal(fresh["y_test"], generated["y_test"].numpy())
    assert len(fresh["x"]) == 800 and len(fresh["x_test"]) == 200  # the package's 80/20


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
    _fake_generator(monkeypatch, train_size=20)
    data_dir = tmp_path / "does" / "not" / "exist"
    splits = _workload(validation_size=2).load_splits(data_dir)
    assert (len(splits.train), len(splits.validation)) == (18, 2)
    assert mnist1d_cache_path(data_dir, NUM_SAMPLES, SEED).is_file()


# --- models -----------------------------------------------------------------------------------


@pytest.mark.parametrize("model", ["mlp", "cnn"])
def test_model_trains_and_evaluates(model: str, splits: Splits) -> None:
    workload = _workload(model=model)
    network = workload.build_model()
    batch = workload.train_transform(splits.train.take(torch.arange(32)))
    loss, count = workload.loss(network, batch)
    assert count == 32 and loss.ndim == 0
    torch.autograd.backward(loss)
    assert all(parameter.grad is not None for parameter in network.parameters())

    metrics = workload.evaluate(network, splits.validation, device="cpu", batch_size=64)
    assert set(metrics) == {"loss", "accuracy"}
    assert 0.0 <= metrics["accuracy"] <= 1.0
    assert 1.0 < metrics["loss"] < 5.0  # about ln(10) before training
    assert network.training  # evaluate restores the mode
