"""A study through the service, end to end: HTTP in, one real sweep per cell (the real driver
as a Ray job on the session's head), a table whose every cell equals the mean and sample std of
its confirmation runs' test figures as MLflow holds them, and the render job's plot and study
parent run.

Slow (six tiny cells, one trial each and two confirmations, and the render job; about four
minutes here): ``pytest -m slow``.
"""

from __future__ import annotations

import io
import statistics
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from service.server.dispatch import RayJobDispatcher
from tests.service.runtime.test_study import tiny_study
from tests.service.server._service import ADMIN, Service

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


def _wait(service: Service, study_id: str, timeout_s: float = 800.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    study: dict[str, Any] = {}
    while time.monotonic() < deadline:
        study = service.get(f"/v1/studies/{study_id}")
        if study["state"] in ("succeeded", "failed", "cancelled"):
            return study
        time.sleep(2.0)
    raise AssertionError(f"timed out; last seen: {study}")


@pytest.fixture
def service(dispatcher: RayJobDispatcher, tmp_path: Path, test_data_dir: Path) -> Iterator[Service]:
    """Two cells at once: the session's head has 2 CPUs and 2 trial slots, a cell's trial
    takes one worker of 1 CPU, and most of a tiny cell's time is its driver starting."""
    running = Service(tmp_path / "home", dispatcher, test_data_dir, max_concurrent_sweeps=2)
    running.start()
    yield running
    running.stop()


def test_a_study_through_the_service_tables_its_confirmation_runs(
    service: Service, test_data_dir: Path
) -> None:
    from mlflow.tracking import MlflowClient

    data = tiny_study(test_data_dir)  # 2 batch sizes x 2 arms, equal epochs and compute
    data["budget"] = {"num_trials": 1, "epochs": 1, "max_concurrent_trials": 1}
    response = httpx.post(f"{service.url}/v1/studies", json=data, headers=ADMIN, timeout=60)
    assert response.status_code == 201, response.text
    study = _wait(service, response.json()["id"])
    assert study["state"] == "succeeded", study["cells"]
    by_key = {row["key"]: row for row in study["cells"]}
    # the 4 equal-epoch cells, and the one-pass arm at twice the epochs per batch size
    assert sorted(by_key) == sorted(
        f"b{batch}-{arm}-e{epochs}"
        for batch in (100, 200)
        for arm, epochs in (("sgd-baseline", 1), ("extrap-gradient", 1), ("sgd-baseline", 2))
    )
    for batch in (100, 200):  # equal compute: as many backward passes as the two-pass arm
        doubled = by_key[f"b{batch}-sgd-baseline-e2"]["gradient_evaluations"]
        assert doubled == by_key[f"b{batch}-extrap-gradient-e1"]["gradient_evaluations"]
        assert doubled == 2 * by_key[f"b{batch}-sgd-baseline-e1"]["gradient_evaluations"]

    client = MlflowClient(tracking_uri=service.settings.resolved_mlflow_tracking_uri)
    experiment = client.get_experiment_by_name("tiny-study")
    assert experiment is not None  # every cell's sweep logs to the study's experiment
    for row in study["cells"]:
        best = service.get(f"/v1/sweeps/{row['sweep_id']}/best")
        confirmation = best["confirmation"]
        assert confirmation["n"] == 2 and row["n"] == 2
        tests = []
        for trial_id in confirmation["trial_ids"]:
            [run] = client.search_runs(
                [experiment.experiment_id],
                filter_string=f"tags.`extrap.sweep_id` = '{row['sweep_id']}' "
                f"and tags.`extrap.trial_id` = '{trial_id}'",
            )
            tests.append(run.data.metrics["test_accuracy"])
        assert row["test_mean"] == pytest.approx(statistics.fmean(tests))
        assert row["test_std"] == pytest.approx(statistics.stdev(tests))
        assert row["gradient_evaluations"] and row["gradient_evaluations"] > 0
    table = httpx.get(f"{service.url}/v1/studies/{study['id']}/table", headers=ADMIN, timeout=30)
    first = study["cells"][0]
    assert f"{first['test_mean']:.3f} ± {first['test_std']:.3f}" in table.text

    # the render job (a Ray job) draws the plot and logs the study's parent run
    deadline = time.monotonic() + 180
    while not (shown := service.get(f"/v1/studies/{study['id']}"))["plot_ready"]:
        assert time.monotonic() < deadline, "the study's render job did not report"
        time.sleep(2.0)
    plot = httpx.get(f"{service.url}/v1/studies/{study['id']}/plot.png", headers=ADMIN, timeout=30)
    with Image.open(io.BytesIO(plot.content)) as image:
        assert image.format == "PNG"
    parent = client.get_run(shown["mlflow_run_id"])
    assert parent.data.tags["extrap.kind"] == "study"
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {"table.md", "table.csv", "plot.png", "study.yaml"} <= artifacts
