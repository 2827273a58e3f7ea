"""Every built-in workload on its tiny fixture: three splits, the figures, and it learns.

The loop's view of a workload: ``load_splits`` -> ``build_model`` -> ``take`` a batch ->
``train_transform`` -> ``loss``; ``evaluate`` on the validation and test splits.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch

from trainers.workloads import BUILTIN_WORKLOADS, Splits, TensorSplit, Workload, load_workload

LM = {"embedding_size": 16, "hidden_size": 16, "num_layers": 1, "dropout": 0.0, "bptt": 7}
# name: (its data-directory fixture, small options, learning rate for plain SGD)
CASES: dict[str, tuple[str, dict[str, Any], float]] = {
    "mnist1d": ("mnist1d_data_dir", {"num_samples": 1000, "seed": 42}, 0.1),
    "resnet20-cifar10": ("cifar_data_dir", {"width_multiplier": 0.25}, 0.05),
    "resnet20-cifar100": ("cifar_data_dir", {"width_multiplier": 0.25}, 0.05),
    "lstm-ptb": ("ptb_data_dir", LM, 1.0),
    "lstm-wikitext2": ("wikitext2_data_dir", LM, 1.0),
    "transformer-mt": (
        "multi30k_data_dir",
        {"d_model": 32, "num_heads": 4, "num_layers": 1, "ffn_size": 64, "dropout": 0.0},
        0.1,
    ),
}


def _load(name: str, request: pytest.FixtureRequest) -> tuple[Workload[Any], Splits]:
    fixture, options, _ = CASES[name]
    workload = load_workload(name, options)
    return workload, workload.load_splits(request.getfixturevalue(fixture))


def test_every_builtin_workload_is_covered() -> None:
    assert set(CASES) == set(BUILTIN_WORKLOADS)


@pytest.mark.parametrize("name", CASES)
def test_load_splits_gives_three_non_empty_cpu_splits(
    name: str, request: pytest.FixtureRequest
) -> None:
    _, splits = _load(name, request)
    assert isinstance(splits, Splits)
    for split in splits:
        assert isinstance(split, TensorSplit) and len(split) > 0
        assert all(tensor.device.type == "cpu" for tensor in split.tensors)


@pytest.mark.parametrize("name", CASES)
def test_evaluate_returns_the_loss_and_the_metric_unprefixed(
    name: str, request: pytest.FixtureRequest
) -> None:
    workload, splits = _load(name, request)
    model = workload.build_model()
    for split in (splits.validation, splits.test):
        metrics = workload.evaluate(model, split, device="cpu", batch_size=3)
        assert set(metrics) == {"loss", workload.info.metric}
        assert all(isinstance(value, float) for value in metrics.values())
    assert model.training


@pytest.mark.parametrize("name", CASES)
def test_evaluation_does_not_depend_on_the_batch_size(
    name: str, request: pytest.FixtureRequest
) -> None:
    workload, splits = _load(name, request)
    model = workload.build_model()
    small = workload.evaluate(model, splits.validation, device="cpu", batch_size=2)
    large = workload.evaluate(model, splits.validation, device="cpu", batch_size=10_000)
    assert small == pytest.approx(large, rel=1e-4)


@pytest.mark.parametrize("name", CASES)
def test_a_few_sgd_steps_on_taken_batches_lower_the_training_loss(
    name: str, request: pytest.FixtureRequest
) -> None:
    workload, splits = _load(name, request)
    lr = CASES[name][2]
    model = workload.build_model()
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    generator = torch.Generator().manual_seed(0)
    batch_size = min(32, len(splits.train))
    probe = splits.train.take(torch.arange(batch_size))

    def probe_loss() -> float:
        with torch.no_grad():
            return float(workload.loss(model, probe)[0])

    before = probe_loss()
    for _ in range(15):
        index = torch.randperm(len(splits.train), generator=generator)[:batch_size]
        batch = workload.train_transform(workload.to_device(splits.train.take(index), "cpu"))
        optimizer.zero_grad()
        loss, _ = workload.loss(model, batch)
        torch.autograd.backward(loss)
        optimizer.step()
    assert probe_loss() < before - 0.05  # in train mode: batch statistics, no dropout


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("name", CASES)
def test_splits_on_the_device_train_and_evaluate_there(
    name: str, request: pytest.FixtureRequest
) -> None:
    workload, splits = _load(name, request)
    device = torch.device("cuda")
    train, validation = splits.train.to(device), splits.validation.to(device)
    assert all(tensor.is_cuda for tensor in train.tensors)
    model = workload.build_model().to(device)
    index = torch.randperm(len(train), device=device)[:8]
    loss, units = workload.loss(model, workload.train_transform(train.take(index)))
    assert loss.is_cuda and units > 0
    on_device = workload.evaluate(model, validation, device=device, batch_size=4)
    from_host = workload.evaluate(model, splits.validation, device=device, batch_size=4)
    assert on_device == pytest.approx(from_host, rel=1e-4)
