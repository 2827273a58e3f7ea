"""Warm worker groups on the session's Ray: trials in the same processes, nothing leaking."""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from tests.trainers.workloads._fixtures import write_cifar10
from trainers.checkpoint import STATE_FILE
from trainers.config import TrainJobConfig

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("ray_session")]


@pytest.fixture(scope="module")
def cifar_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("cifar")
    write_cifar10(directory, images_per_batch=40)
    return directory


def _job(data_dir: Path, **overrides: Any) -> TrainJobConfig:
    """ResNet-20 (BatchNorm) with every kind of state: momentum, noise, gamma and lr decay."""
    base: dict[str, Any] = {
        "workload": "resnet20-cifar10",
        "workload_options": {"validation_size": 20},
        "data_dir": str(data_dir),
        "global_batch_size": 40,
        "workers": 2,
        "epochs": 2,
        "seed": 5,
        "optimizer": {
            "lr": 0.05,
            "momentum": 0.9,
            "extrapolation": "gradient+noise",
            "gamma": 0.01,
            "noise_std": 1e-3,
        },
        "schedule": {"warmup_epochs": 0.5, "decay": "cosine"},
        "gamma_schedule": {"kind": "cosine", "final_fraction": 0.1},
    }
    optimizer = {**base["optimizer"], **overrides.pop("optimizer", {})}
    base.update(overrides, optimizer=optimizer)
    return TrainJobConfig.model_validate(base)


@pytest.fixture
def group_pg() -> Iterator[Any]:
    import ray
    from ray.util.placement_group import placement_group, remove_placement_group

    pg = placement_group([{"CPU": 1}, {"CPU": 1}], strategy="PACK")
    ray.get(pg.ready(), timeout=60)
    yield pg
    remove_placement_group(pg)


def _train(group: Any, job: TrainJobConfig) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """One trial to its end; its reports and rank 0's final state."""
    group.call("start", job, None)
    reports = []
    while True:
        report = group.call("run_epoch")[0]
        reports.append(report)
        if report["status"] != "running":
            break
    reports[-1].update(group.call("finish")[0])
    files: dict[str, bytes] = {}
    for worker_files in group.call("checkpoint"):
        files.update(worker_files)
    group.call("end")
    state = torch.load(io.BytesIO(files[STATE_FILE]), weights_only=False)
    return reports, state


def _same(left: Any, right: Any) -> None:
    if isinstance(left, torch.Tensor):
        torch.testing.assert_close(left, right, rtol=0, atol=0)
    elif isinstance(left, dict):
        assert left.keys() == right.keys()
        for key in left:
            _same(left[key], right[key])
    elif isinstance(left, list | tuple):
        assert len(left) == len(right)
        for a, b in zip(left, right, strict=True):
            _same(a, b)
    else:
        assert left == right


def _figures(reports: list[dict[str, Any]]) -> list[dict[str, Any]]:
    keep = ("epoch", "step", "train_loss", "val_loss", "val_accuracy", "lr", "gamma", "status")
    return [{k: r[k] for k in keep if k in r} for r in reports]


@pytest.mark.timeout(300)
def test_a_trial_on_a_warm_group_equals_the_same_trial_on_a_fresh_group(
    cifar_dir: Path, group_pg: Any
) -> None:
    from service.runtime.workers import WorkerGroup

    first, other = _job(cifar_dir), _job(cifar_dir, seed=11, optimizer={"lr": 0.2})
    warm = WorkerGroup.start(first, group_pg)
    try:
        pids = list(warm.pids)
        reports_a, state_a = _train(warm, first)
        _train(warm, other)  # another trial in between, with other values and seed
        reports_again, state_again = _train(warm, first)
        assert warm.pids == pids
        assert warm.call("loads") == [1, 1]  # the data was read once per worker
    finally:
        warm.shutdown()
    fresh = WorkerGroup.start(first, group_pg)
    try:
        assert set(fresh.pids).isdisjoint(pids)
        reports_fresh, state_fresh = _train(fresh, first)
    finally:
        fresh.shutdown()
    assert reports_a[-1]["status"] == "completed"
    for state in (state_again, state_fresh):
        # weights, BatchNorm statistics, momentum buffers, noise generators, schedules
        _same(state["model"], state_a["model"])
        _same(state["optimizer"], state_a["optimizer"])
        _same(state["lr_scheduler"], state_a["lr_scheduler"])
        _same(state["gamma_scheduler"], state_a["gamma_scheduler"])
    assert _figures(reports_again) == _figures(reports_a) == _figures(reports_fresh)
    assert reports_a[-1]["test_accuracy"] == reports_fresh[-1]["test_accuracy"]


@pytest.mark.timeout(120)
def test_no_worker_process_survives_its_group(cifar_dir: Path, group_pg: Any) -> None:
    import time

    from service.runtime.workers import WorkerGroup

    group = WorkerGroup.start(_job(cifar_dir), group_pg)
    pids = list(group.pids)
    group.shutdown()
    deadline = time.monotonic() + 30
    alive = pids
    while alive and time.monotonic() < deadline:
        alive = [pid for pid in pids if _alive(pid)]
        time.sleep(0.2)
    assert not alive


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as stat:  # a zombie is gone for our purposes
        return stat.read().split()[2] != "Z"
