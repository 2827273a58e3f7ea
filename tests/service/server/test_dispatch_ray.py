"""Dispatch for real: the session's local Ray head (``LocalRayHead``, token auth),
``RayJobDispatcher`` over its REST API, and a stand-in driver that speaks the driver contract.

These start real Ray jobs (a few seconds each).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from service.server.api.main import create_app
from service.server.dispatch import DispatcherUnavailable, LocalRayHead, RayJobDispatcher
from service.server.dispatch.base import JobStatus
from tests.service.conftest import (
    ADMIN_TOKEN,
    LiveServer,
    bearer,
    free_port,
    make_settings,
    make_spec,
    start_server,
)

STAND_IN = Path(__file__).parent.parent / "stand_in_driver.py"
ADMIN = bearer(ADMIN_TOKEN)


@pytest.fixture(scope="module")
def server(
    dispatcher: RayJobDispatcher, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    port = free_port()
    settings = make_settings(
        tmp_path_factory.mktemp("home"),
        f"sqlite:///{tmp_path_factory.mktemp('db') / 'extrap.db'}",
        port,
        reconcile_interval_s=1.0,
        max_concurrent_sweeps=2,
    )
    app = create_app(settings, dispatcher=dispatcher, driver_command=("python", str(STAND_IN)))
    live = start_server(app, port)
    yield live
    live.stop()


def _wait_state(
    url: str, sweep_id: str, states: set[str], timeout_s: float = 90.0
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    body: dict[str, Any] = {}
    while time.monotonic() < deadline:
        body = httpx.get(f"{url}/v1/sweeps/{sweep_id}", headers=ADMIN, timeout=10).json()
        if body["state"] in states:
            return body
        time.sleep(0.5)
    raise AssertionError(f"sweep {sweep_id} stayed {body.get('state')}: {body.get('reason')}")


def _submit(url: str, mode: str) -> str:
    response = httpx.post(
        f"{url}/v1/sweeps", json=make_spec(description=mode), headers=ADMIN, timeout=30
    )
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def test_the_head_wants_its_token_and_is_adopted_not_duplicated(ray_head: LocalRayHead) -> None:
    info = ray_head.info
    assert info is not None and info.token
    assert httpx.get(f"{info.dashboard_url}/api/version").status_code == 401
    with pytest.raises(DispatcherUnavailable):
        RayJobDispatcher(info.dashboard_url, token="wrong").ping()
    again = LocalRayHead(ray_head.home)
    assert again.start() == info and again.adopted


def test_cluster_resources(dispatcher: RayJobDispatcher) -> None:
    resources = dispatcher.resources()
    assert resources.total["CPU"] == 2.0
    assert resources.total["train_driver"] == 2.0
    assert resources.largest_node["CPU"] == 2.0


def test_dry_run_checks_the_real_cluster(server: LiveServer) -> None:
    spec = make_spec()
    spec["job"].update(workers=4, global_batch_size=64)
    response = httpx.post(f"{server.url}/v1/sweeps?dry_run=true", json=spec, headers=ADMIN)
    assert response.status_code == 422
    assert response.json()["error"]["details"][0]["cluster"]["CPU"] == 2.0


def test_a_sweep_runs_through_a_real_ray_job(
    server: LiveServer, dispatcher: RayJobDispatcher
) -> None:
    sweep_id = _submit(server.url, "succeed")
    body = _wait_state(server.url, sweep_id, {"succeeded", "failed"})
    assert body["state"] == "succeeded", body["reason"]
    assert body["trial_counts"]["completed"] == 1
    assert body["best"] == {"trial_id": "t1", "value": 0.75}
    assert body["mlflow_run_id"] == f"run-{sweep_id}"
    logs = httpx.get(f"{server.url}/v1/sweeps/{sweep_id}/logs", headers=ADMIN, timeout=30).text
    assert f"stand-in driver: sweep {sweep_id}" in logs
    info = dispatcher.job(body["ray_job_id"])
    assert info is not None  # (it may still be exiting)
    followed = httpx.get(
        f"{server.url}/v1/sweeps/{sweep_id}/logs?follow=true&tail=1", headers=ADMIN, timeout=30
    )
    assert followed.text.strip() == "stand-in driver: done"  # the job ended: the stream too


def test_a_crashed_driver_is_relaunched_with_resume(server: LiveServer) -> None:
    sweep_id = _submit(server.url, "crash-first")
    body = _wait_state(server.url, sweep_id, {"succeeded", "failed"})
    assert body["state"] == "succeeded", body["reason"]
    assert body["driver_attempts"] == 2
    logs = httpx.get(f"{server.url}/v1/sweeps/{sweep_id}/logs", headers=ADMIN, timeout=30).text
    assert "resume=True" in logs


def test_cancel_stops_the_driver_job(server: LiveServer, dispatcher: RayJobDispatcher) -> None:
    sweep_id = _submit(server.url, "hang")
    body = _wait_state(server.url, sweep_id, {"running"})
    response = httpx.post(f"{server.url}/v1/sweeps/{sweep_id}/cancel", headers=ADMIN, timeout=30)
    assert response.json()["state"] in ("cancelling", "cancelled")
    body = _wait_state(server.url, sweep_id, {"cancelled"})
    info = dispatcher.job(body["ray_job_id"])
    assert info is not None and info.status is JobStatus.STOPPED
