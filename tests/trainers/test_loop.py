"""The per-worker loop without Ray: resume equals an uninterrupted run; divergence stops."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
import torch

from trainers.config import TrainJobConfig
from trainers.loop import STATE_FILE, EpochReport, run_worker


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
    """A reporter that keeps every epoch's metrics and a copy of its checkpoint."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.metrics: list[dict[str, Any]] = []

    def __call__(self, report: EpochReport) -> None:
        self.metrics.append(report.metrics)
        if report.checkpoint_dir is not None:
            shutil.copytree(report.checkpoint_dir, self.root / f"epoch-{report.metrics['epoch']}")


def _run(job: TrainJobConfig, keeper: _Keeper, checkpoint: Path | None = None) -> Any:
    return run_worker(
        job,
        rank=0,
        world_size=1,
        device=torch.device("cpu"),
        report=keeper,
        checkpoint_dir=checkpoint,
    )


def test_resuming_from_a_checkpoint_equals_the_uninterrupted_run(
    test_data_dir: Path, tmp_path: Path
) -> None:
    job = _job(test_data_dir)
    whole = _Keeper(tmp_path / "whole")
    history = _run(job, whole)
    assert [m["epoch"] for m in history] == [1, 2, 3]
    assert history[-1]["status"] == "completed"
    for key in ("train_loss", "test_loss", "accuracy", "lr", "gamma", "epoch_seconds"):
        assert key in history[-1]
    assert (tmp_path / "whole" / "epoch-1" / STATE_FILE).is_file()

    resumed = _Keeper(tmp_path / "resumed")
    rest = _run(job, resumed, checkpoint=tmp_path / "whole" / "epoch-1")
    assert [m["epoch"] for m in resumed.metrics] == [2, 3]  # epoch 1 is not trained again
    assert resumed.metrics[0]["resumed_from_epoch"] == 1
    assert [m["epoch"] for m in rest] == [1, 2, 3]  # the history travels in the checkpoint
    final_whole = torch.load(tmp_path / "whole" / "epoch-3" / STATE_FILE, weights_only=False)
    final_resumed = torch.load(tmp_path / "resumed" / "epoch-3" / STATE_FILE, weights_only=False)
    for name, value in final_whole["model"].items():
        torch.testing.assert_close(final_resumed["model"][name], value, rtol=0, atol=0)
    assert resumed.metrics[-1]["test_loss"] == whole.metrics[-1]["test_loss"]


def test_a_diverging_run_stops_at_once_with_status_diverged(
    test_data_dir: Path, tmp_path: Path
) -> None:
    job = _job(test_data_dir, optimizer={"lr": 1e5, "momentum": 0.9}, schedule={}, epochs=4)
    keeper = _Keeper(tmp_path)
    history = _run(job, keeper)
    assert history[-1]["status"] == "diverged"
    assert len(history) < 4
    assert not (tmp_path / f"epoch-{history[-1]['epoch']}").exists()  # no checkpoint of it


def test_batch_larger_than_the_data_is_a_clear_error(test_data_dir: Path, tmp_path: Path) -> None:
    job = _job(test_data_dir, global_batch_size=4000)
    with pytest.raises(ValueError, match="global_batch_size=4000 is larger than the training set"):
        _run(job, _Keeper(tmp_path))


def test_resuming_a_finished_run_reports_its_final_figures_again(
    test_data_dir: Path, tmp_path: Path
) -> None:
    job = _job(test_data_dir, epochs=1)
    first = _Keeper(tmp_path / "first")
    _run(job, first)
    again = _Keeper(tmp_path / "again")
    history = _run(job, again, checkpoint=tmp_path / "first" / "epoch-1")
    assert [m["epoch"] for m in again.metrics] == [1]  # reported, not trained again
    assert again.metrics[0]["accuracy"] == first.metrics[0]["accuracy"]
    assert len(history) == 1
