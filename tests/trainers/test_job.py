"""A real Ray Train job: 2 CPU workers on mnist1d; a crashed worker resumes from its checkpoint."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from trainers.config import TrainJobConfig
from trainers.job import run_job

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("ray_session")]


def _job(data_dir: Path, epochs: int) -> TrainJobConfig:
    return TrainJobConfig(
        workload="mnist1d",
        workload_options={"num_samples": 2000, "hidden": 32},
        data_dir=str(data_dir),
        global_batch_size=200,
        workers=2,
        cpus_per_worker=1,
        epochs=epochs,
        optimizer={"lr": 0.3, "extrapolation": "gradient"},
    )


def _reported(metrics_file: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in metrics_file.read_text().splitlines()]


@pytest.mark.timeout(240)
def test_two_worker_job_reports_each_epoch_and_survives_a_worker_crash(
    test_data_dir: Path, tmp_path: Path
) -> None:
    metrics_file = tmp_path / "metrics.jsonl"
    result = run_job(
        _job(test_data_dir, epochs=3),
        storage_path=str(tmp_path / "runs"),
        name="crash-once",
        metrics_file=metrics_file,
        max_failures=1,
        extra_loop_config={"fail_after_epoch": 1},  # rank 0 exits abruptly after epoch 1
    )
    assert result.error is None
    reported = _reported(metrics_file)
    # epoch 1 was reported once, before the crash; the restarted group went on from epoch 2
    assert [m["epoch"] for m in reported] == [1, 2, 3]
    assert [m["resumed_from_epoch"] for m in reported] == [0, 1, 1]
    assert [m["epoch"] for m in result.history] == [1, 2, 3]
    assert result.history[-1]["status"] == "completed"
    for m in reported:
        assert 0.0 <= float(m["accuracy"]) <= 1.0  # type: ignore[arg-type]
        assert float(m["samples_per_second"]) > 0  # type: ignore[arg-type]
    assert result.checkpoint_path is not None
    checkpoint = Path(result.checkpoint_path)
    assert {p.name for p in checkpoint.iterdir()} >= {"state.pt", "rank-0.pt", "rank-1.pt"}
