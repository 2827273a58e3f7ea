"""Processes of a running sweep SIGKILLed from outside, through the service: ``extrap serve``
in a process of its own, with the Ray head it starts (tests/faults/conftest.py).

- The API process alone: the driver goes on training and retries its pushes; the API is
  started again on the same home and port (it adopts its head); every (trial, epoch) the
  driver pushed is stored exactly once, and the sweep succeeds with its first driver.
- The sweep's driver process: the service relaunches it with ``--resume``; finished trials
  are not rerun, and the sweep succeeds.

Related tests elsewhere, not repeated here: the driver SIGKILLed and resumed without the
service (tests/service/runtime/test_driver.py::
test_resume_after_killing_the_driver_does_not_rerun_finished_trials), the driver's Ray job
stopped through Ray's job API and the API stopped cleanly mid-sweep, with the server in the
test's process (tests/service/server/test_lifecycle.py::
test_a_killed_driver_is_resumed_without_rerunning_finished_trials and
::test_restarting_the_api_mid_sweep_loses_nothing).
"""

from __future__ import annotations

import os
import signal
import sqlite3
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest

from service.server.dispatch import RayJobDispatcher
from tests.conftest import tiny_spec
from tests.faults._processes import wait_for
from tests.faults.conftest import ExtrapService

pytestmark = [pytest.mark.slow, pytest.mark.faults, pytest.mark.timeout(600)]

FINAL = ("succeeded", "failed", "cancelled")


def _submit(service: ExtrapService, spec: dict[str, Any]) -> str:
    response = httpx.post(f"{service.url}/v1/sweeps", json=spec, headers=service.admin, timeout=60)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def _sweep(service: ExtrapService, sweep_id: str) -> dict[str, Any] | None:
    try:
        return service.get(f"/v1/sweeps/{sweep_id}")  # type: ignore[no-any-return]
    except httpx.HTTPError:
        return None


def _trials(service: ExtrapService, sweep_id: str) -> list[dict[str, Any]]:
    try:
        return list(service.get(f"/v1/sweeps/{sweep_id}/trials")["data"])
    except httpx.HTTPError:
        return []


def _final(service: ExtrapService, sweep_id: str) -> dict[str, Any]:
    def ended() -> dict[str, Any] | None:
        sweep = _sweep(service, sweep_id)
        return sweep if sweep is not None and sweep["state"] in FINAL else None

    return wait_for(
        ended,
        timeout_s=420,
        interval_s=1.0,
        what=f"sweep {sweep_id} to end",
    )


def _driver_logs(service: ExtrapService, job_id: str) -> str:
    head = service.head()
    token = Path(head["token_file"]).read_text().strip() if head["token_file"] else None
    dispatcher = RayJobDispatcher(head["dashboard_url"], token=token)
    try:
        return dispatcher.logs(job_id)
    finally:
        dispatcher.close()


def _stored_epochs(home: Path, sweep_id: str) -> tuple[Counter[tuple[str, int]], Counter[Any]]:
    """(trial id, epoch) of the sweep's stored metrics, and of its event log's entries."""
    with sqlite3.connect(home / "extrap.db") as db:
        rows = db.execute(
            "SELECT t.trial_id, m.epoch FROM trial_metrics m JOIN trials t ON m.trial_pk = t.id"
            " WHERE t.sweep_id = ?",
            (sweep_id,),
        ).fetchall()
        logged = db.execute(
            "SELECT json_extract(payload, '$.trial_id'), json_extract(payload, '$.epoch')"
            " FROM sweep_events WHERE sweep_id = ? AND type = 'trial_metrics'",
            (sweep_id,),
        ).fetchall()
    return Counter(map(tuple, rows)), Counter(map(tuple, logged))


def _mlflow_epochs(home: Path, sweep_id: str) -> set[tuple[str, int]]:
    """(trial id, epoch) of what the driver reported, as its MLflow child runs hold it."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{home / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("tiny-mnist1d")
    assert experiment is not None
    runs = client.search_runs(
        [experiment.experiment_id],
        filter_string=f"tags.`extrap.sweep_id` = '{sweep_id}' and tags.`extrap.kind` = 'trial'",
    )
    return {
        (run.data.tags["extrap.trial_id"], metric.step)
        for run in runs
        for metric in client.get_metric_history(run.info.run_id, "val_accuracy")
    }


def test_sigkill_of_the_api_mid_sweep_stores_every_pushed_metric_exactly_once(
    extrap_service: ExtrapService, test_data_dir: Path
) -> None:
    service = extrap_service
    sweep_id = _submit(service, tiny_spec(test_data_dir, num_trials=2, scheduler="fifo"))
    wait_for(
        lambda: any(t["last_epoch"] for t in _trials(service, sweep_id)),
        timeout_s=300,
        what="the first trial's metrics",
    )
    sweep = service.get(f"/v1/sweeps/{sweep_id}")
    service.kill_api()
    wait_for(  # the driver goes on, and pushes into the void
        lambda: "service unreachable" in _driver_logs(service, sweep["ray_job_id"]),
        timeout_s=120,
        interval_s=1.0,
        what="the driver to find the service gone",
    )
    time.sleep(3)
    service.start()  # same home, same port: it adopts its Ray head
    sweep = _final(service, sweep_id)
    assert sweep["state"] == "succeeded", sweep["reason"]
    assert sweep["driver_attempts"] == 1  # the driver carried on; nothing was relaunched

    stored, logged = _stored_epochs(service.home, sweep_id)
    pushed = _mlflow_epochs(service.home, sweep_id)
    assert len(pushed) == 4  # 2 trials x 2 epochs
    assert set(stored) == pushed and set(stored.values()) == {1}
    assert set(logged) == pushed and set(logged.values()) == {1}


def _driver_pids(sweep_id: str) -> list[int]:
    """The sweep's driver: ``python -m service.runtime.driver --sweep-id ID``."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        words = [word.decode(errors="replace") for word in argv]
        if "service.runtime.driver" in words and sweep_id in words and "-m" in words:
            found.append(int(entry.name))
    return found


def test_sigkill_of_the_driver_mid_sweep_is_resumed_without_rerunning_finished_trials(
    extrap_service: ExtrapService, test_data_dir: Path
) -> None:
    service = extrap_service
    sweep_id = _submit(service, tiny_spec(test_data_dir, num_trials=3, scheduler="fifo"))
    wait_for(
        lambda: (s := _sweep(service, sweep_id)) and s["trial_counts"]["completed"] >= 1,
        timeout_s=300,
        what="a finished trial",
    )
    finished = {
        trial["trial_id"]: trial
        for trial in service.get(f"/v1/sweeps/{sweep_id}/trials", status="completed")["data"]
    }
    [driver] = _driver_pids(sweep_id)
    os.kill(driver, signal.SIGKILL)  # the driver dies like a lost process
    sweep = _final(service, sweep_id)
    assert sweep["state"] == "succeeded", sweep["reason"]
    assert sweep["driver_attempts"] == 2  # relaunched once, with --resume
    trials = service.get(f"/v1/sweeps/{sweep_id}/trials")["data"]
    completed = [t for t in trials if t["status"] == "completed"]
    assert len(completed) == 3
    # A trial the killed driver had started but Tune had not yet saved in its experiment
    # state is rerun as a new trial by the resumed driver: the lost one keeps its number and
    # is closed as failed (with why) when the sweep ends; numbers are never reused.
    lost = [t for t in trials if t["status"] != "completed"]
    assert all(t["status"] == "failed" and "driver that was lost" in t["error"] for t in lost)
    assert len(lost) <= 1, lost
    numbers = sorted(t["number"] for t in trials)
    assert numbers == list(range(1, len(trials) + 1))
    for trial_id, before in finished.items():
        [after] = [t for t in trials if t["trial_id"] == trial_id]
        assert after["status"] == "completed" and after["finished_at"] == before["finished_at"]
    stored, _ = _stored_epochs(service.home, sweep_id)
    assert set(stored.values()) == {1}  # every (trial, epoch) once
    for trial in completed:  # each completed trial has both its epochs
        assert {epoch for tid, epoch in stored if tid == trial["trial_id"]} == {1, 2}
