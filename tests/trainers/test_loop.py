"""A whole job in plain PyTorch: resume equals an uninterrupted run; divergence stops; the test
split is evaluated once, at the end."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
import torch

from trainers.checkpoint import STATE_FILE
from trainers.config import TrainJobConfig
from trainers.loop import EpochReport, run_job
from trainers.worker import WorkerSession


def _job(data_dir: Path, **overrides: Any) -> TrainJobConfig:
    base: dict[str, Any] = {
        "workload": "mnist1d",
        "workload_options": {"num_samples": 2000, "hidden": 32},
        "data_dir": str(data_dir),
        "global_batch_size": 200,
        "workers": 1,
        "epochs": 3,
        "optimizer": {"lr": 0.3, "extrapolation": "gradient+noise", "noise_std": 1e-3},
        "schedule": {"warmup_epochs": 1, "decay": "cosine"},
    }
    base.update(overrides)
    return TrainJobConfig.model_validate(base)


class _Keeper:
    """A reporter that keeps every epoch's metrics and checkpoint files."""

    def __init__(self) -> None:
        self.metrics: list[dict[str, Any]] = []
        self.files: dict[int, dict[str, bytes]] = {}

    def __call__(self, report: EpochReport) -> None:
        self.metrics.append(report.metrics)
        if report.files is not None:
            self.files[report.metrics["epoch"]] = report.files

    def model(self, epoch: int) -> dict[str, torch.Tensor]:
        state = torch.load(io.BytesIO(self.files[epoch][STATE_FILE]), weights_only=False)
        return dict(state["model"])


def _run(job: TrainJobConfig, keeper: _Keeper, **options: Any) -> list[dict[str, Any]]:
    return run_job(job, rank=0, world_size=1, device=torch.device("cpu"), report=keeper, **options)


def test_resuming_from_a_checkpoint_equals_the_uninterrupted_run(test_data_dir: Path) -> None:
    job = _job(test_data_dir)
    whole = _Keeper()
    history = _run(job, whole)
    assert [m["epoch"] for m in history] == [1, 2, 3]
    assert history[-1]["status"] == "completed"
    for key in ("train_loss", "val_loss", "val_accuracy", "lr", "gamma", "epoch_seconds"):
        assert key in history[-1]

    resumed = _Keeper()
    rest = _run(job, resumed, resume=whole.files[1])
    assert [m["epoch"] for m in resumed.metrics] == [2, 3]  # epoch 1 is not trained again
    assert resumed.metrics[0]["resumed_from_epoch"] == 1
    assert [m["epoch"] for m in rest] == [1, 2, 3]  # the history travels in the checkpoint
    for name, value in whole.model(3).items():
        torch.testing.assert_close(resumed.model(3)[name], value, rtol=0, atol=0)
    assert resumed.metrics[-1]["val_loss"] == whole.metrics[-1]["val_loss"]
    assert resumed.metrics[-1]["test_loss"] == whole.metrics[-1]["test_loss"]


def test_validation_every_epoch_and_the_test_split_once_at_the_end(test_data_dir: Path) -> None:
    keeper = _Keeper()
    _run(_job(test_data_dir), keeper)
    for report in keeper.metrics:
        assert {"val_loss", "val_accuracy"} <= set(report)
        assert "accuracy" not in report and "loss" not in report  # every figure is named
    assert not any(k.startswith("test_") for m in keeper.metrics[:-1] for k in m)
    assert {"test_loss", "test_accuracy"} <= set(keeper.metrics[-1])


def test_a_diverging_run_stops_at_once_with_status_diverged(test_data_dir: Path) -> None:
    job = _job(test_data_dir, optimizer={"lr": 1e5, "momentum": 0.9}, schedule={}, epochs=4)
    keeper = _Keeper()
    history = _run(job, keeper)
    assert history[-1]["status"] == "diverged"
    assert len(history) < 4
    assert history[-1]["epoch"] not in keeper.files  # no checkpoint of it
    assert not any(k.startswith(("val_", "test_")) for k in history[-1])


def test_batch_larger_than_the_data_is_a_clear_error(test_data_dir: Path) -> None:
    job = _job(test_data_dir, global_batch_size=4000)
    with pytest.raises(ValueError, match="global_batch_size=4000 is larger than the training"):
        _run(job, _Keeper())


def test_resuming_a_finished_run_reports_its_final_figures_again(test_data_dir: Path) -> None:
    job = _job(test_data_dir, epochs=1)
    first = _Keeper()
    _run(job, first)
    again = _Keeper()
    history = _run(job, again, resume=first.files[1])
    assert [m["epoch"] for m in again.metrics] == [1]  # reported, not trained again
    assert again.metrics[0]["val_accuracy"] == first.metrics[0]["val_accuracy"]
    assert again.metrics[0]["test_accuracy"] == first.metrics[0]["test_accuracy"]
    assert len(history) == 1


def test_a_warm_session_loads_its_data_once_and_repeats_a_trial_exactly(
    test_data_dir: Path,
) -> None:
    session = WorkerSession(rank=0, world_size=1, device=torch.device("cpu"))
    job, other = _job(test_data_dir, epochs=2), _job(test_data_dir, epochs=2, seed=9)
    first, middle, last = _Keeper(), _Keeper(), _Keeper()
    _run(job, first, session=session)
    _run(other, middle, session=session)
    _run(job, last, session=session)
    assert session.loads == 1
    for name, value in first.model(2).items():
        torch.testing.assert_close(last.model(2)[name], value, rtol=0, atol=0)
    assert middle.metrics[-1]["train_loss"] != first.metrics[-1]["train_loss"]
