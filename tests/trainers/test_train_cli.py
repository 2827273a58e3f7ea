"""``extrap train job.yaml``: one job on a worker group, each epoch printed as it arrives."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
EXTRAP = str(Path(sys.executable).with_name("extrap"))


def test_example_job_file_is_a_valid_job() -> None:
    from trainers.config import TrainJobConfig

    job = TrainJobConfig.model_validate(
        yaml.safe_load((REPO / "examples/jobs/mnist1d.yaml").read_text())
    )
    assert job.workers == 2 and job.per_worker_batch_size == 256


def test_an_invalid_job_file_names_the_field(tmp_path: Path) -> None:
    bad = tmp_path / "job.yaml"
    bad.write_text("workload: mnist1d\nglobal_batch_size: 101\nworkers: 2\nepochs: 1\n")
    result = subprocess.run([EXTRAP, "train", str(bad)], capture_output=True, text=True)
    assert result.returncode == 1
    assert "global_batch_size=101 does not divide evenly over workers=2" in result.stderr


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_train_prints_every_epoch(ray_session: Any, test_data_dir: Path, tmp_path: Path) -> None:
    job = yaml.safe_load((REPO / "examples/jobs/mnist1d.yaml").read_text())
    job.update(
        workload_options={"num_samples": 2000, "hidden": 32},
        global_batch_size=200,
        epochs=2,
        data_dir=str(test_data_dir),
    )
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(job))
    env = {**os.environ, "EXTRAP_HOME": str(tmp_path / "home")}  # RAY_ADDRESS: the session's
    result = subprocess.run(
        [EXTRAP, "train", str(path), "--json"], capture_output=True, text=True, env=env, timeout=280
    )
    assert result.returncode == 0, result.stderr[-3000:]
    epochs = [json.loads(line) for line in result.stdout.splitlines()]  # JSON lines only
    assert [m["epoch"] for m in epochs] == [1, 2]
    assert epochs[-1]["status"] == "completed"
    assert all(0.0 <= m["val_accuracy"] <= 1.0 for m in epochs)
    assert "test_accuracy" in epochs[-1] and "test_accuracy" not in epochs[0]
