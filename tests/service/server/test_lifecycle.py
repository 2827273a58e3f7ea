"""Whole sweeps through the service: HTTP in, the real driver (``python -m service.runtime.driver``)
as a Ray job on the session's head, Tune trials, events back, SSE out — and the failures the
service must survive: a cancel, a killed driver, an API restart in the middle of a sweep.

Slow (a tiny MNIST-1D sweep is about a minute here): ``pytest -m slow``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from service.server.dispatch import RayJobDispatcher
from service.server.dispatch.base import JobStatus
from tests.conftest import tiny_spec
from tests.service.server._service import ADMIN, Service

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


def _final(sweep: dict[str, Any]) -> bool:
    return sweep["state"] in ("succeeded", "failed", "cancelled")


def _sse(service: Service, sweep_id: str, timeout_s: float = 400.0) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    url = f"{service.url}/v1/sweeps/{sweep_id}/events"
    timeout = httpx.Timeout(30.0, read=timeout_s)
    with httpx.stream("GET", url, headers=ADMIN, timeout=timeout) as response:
        assert response.status_code == 200
        for line in response.iter_lines():
            if line.startswith("data: "):
                events.append(json.loads(line.removeprefix("data: ")))
    return events


def test_a_sweep_end_to_end_over_http(service: Service, test_data_dir: Path) -> None:
    sweep_id = service.submit(tiny_spec(test_data_dir, num_trials=2))
    events = _sse(service, sweep_id)
    assert events[-1]["type"] == "state" and events[-1]["state"] == "succeeded", events[-1]
    states = [e["state"] for e in events if e["type"] == "state"]
    assert states[:3] == ["queued", "starting", "running"]
    assert {"trial_started", "trial_metrics", "trial_finished"} <= {e["type"] for e in events}
    sweep = service.get(f"/v1/sweeps/{sweep_id}")
    assert sum(sweep["trial_counts"].values()) == 2
    assert sweep["mlflow_run_id"] and sweep["best"] is not None
    for trial in service.get(f"/v1/sweeps/{sweep_id}/trials")["data"]:
        detail = service.get(f"/v1/sweeps/{sweep_id}/trials/{trial['trial_id']}")
        assert detail["epochs"] and "val_accuracy" in detail["epochs"][0]["metrics"]
    fragment = httpx.get(
        f"{service.url}/v1/sweeps/{sweep_id}/best?format=yaml", headers=ADMIN, timeout=30
    )
    assert "optimizer" in yaml.safe_load(fragment.text)["job"]
    logs = httpx.get(f"{service.url}/v1/sweeps/{sweep_id}/logs", headers=ADMIN, timeout=30)
    assert sweep_id in logs.text


def test_cancel_a_running_sweep(
    service: Service, dispatcher: RayJobDispatcher, test_data_dir: Path
) -> None:
    sweep_id = service.submit(tiny_spec(test_data_dir, num_trials=3))
    service.wait(sweep_id, lambda s: s["trial_counts"]["running"] >= 1)
    response = httpx.post(f"{service.url}/v1/sweeps/{sweep_id}/cancel", headers=ADMIN)
    assert response.status_code == 202 and response.json()["state"] == "cancelling"
    sweep = service.wait(sweep_id, _final, timeout_s=120)
    assert sweep["state"] == "cancelled"
    assert sweep["trial_counts"]["running"] == 0
    job = dispatcher.job(sweep["ray_job_id"])
    assert job is not None and job.status is JobStatus.STOPPED


def test_a_killed_driver_is_resumed_without_rerunning_finished_trials(
    service: Service, dispatcher: RayJobDispatcher, test_data_dir: Path
) -> None:
    sweep_id = service.submit(tiny_spec(test_data_dir, num_trials=3))
    sweep = service.wait(sweep_id, lambda s: s["trial_counts"]["completed"] >= 1)
    finished = {
        t["trial_id"]: t
        for t in service.get(f"/v1/sweeps/{sweep_id}/trials", status="completed")["data"]
    }
    dispatcher.stop(sweep["ray_job_id"])  # the driver dies mid-sweep
    sweep = service.wait(sweep_id, _final)
    assert sweep["state"] == "succeeded", sweep["reason"]
    assert sweep["driver_attempts"] >= 2
    trials = service.get(f"/v1/sweeps/{sweep_id}/trials")["data"]
    assert len([t for t in trials if t["status"] == "completed"]) == 3
    # A trial the stopped driver had started but Tune had not saved yet is closed as failed,
    # with why, under its own number; the one run in its place takes the next number.
    lost = [t for t in trials if t["status"] != "completed"]
    assert len(lost) <= 1 and all("driver that was lost" in (t["error"] or "") for t in lost)
    assert sorted(t["number"] for t in trials) == list(range(1, len(trials) + 1))
    for trial in trials:
        if trial["trial_id"] in finished:
            before = finished[trial["trial_id"]]
            assert trial["status"] == "completed" and trial["finished_at"] == before["finished_at"]


def test_restarting_the_api_mid_sweep_loses_nothing(service: Service, test_data_dir: Path) -> None:
    sweep_id = service.submit(tiny_spec(test_data_dir, num_trials=2))
    service.wait(sweep_id, lambda s: s["trial_counts"]["running"] >= 1)
    service.stop()
    time.sleep(5)  # the driver keeps training and retries its pushes meanwhile
    service.start()
    sweep = service.wait(sweep_id, _final)
    assert sweep["state"] == "succeeded", sweep["reason"]
    assert sweep["driver_attempts"] == 1  # the driver carried on; nothing was relaunched
    for trial in service.get(f"/v1/sweeps/{sweep_id}/trials")["data"]:
        detail = service.get(f"/v1/sweeps/{sweep_id}/trials/{trial['trial_id']}")
        epochs = [e["epoch"] for e in detail["epochs"]]
        assert epochs == sorted(set(epochs)) and epochs[0] == 1
        if trial["status"] == "completed":
            assert epochs == [1, 2]
