"""Recovery: gone drivers are relaunched with --resume, then given up on; cancelling ends."""

from __future__ import annotations

from datetime import timedelta

from service.server import crud
from service.server.dispatch.base import JobStatus
from service.server.models import utcnow
from service.server.reconciler import Reconciler
from service.wire import ACTIVE_SWEEP_STATES, SweepState
from tests.service.conftest import Api, bearer, event


def _reconcile(api: Api) -> None:
    assert api.ctx.launcher is not None
    Reconciler(api.ctx.launcher, started_at=utcnow() - timedelta(hours=1)).reconcile_once()


def _running(api: Api) -> tuple[str, dict[str, str]]:
    sweep_id = api.submit(api.user())
    driver = api.launch(sweep_id)
    api.push(sweep_id, driver, event("sweep_running"))
    return sweep_id, driver


def test_a_live_driver_is_left_alone(api: Api) -> None:
    sweep_id, _ = _running(api)
    _reconcile(api)
    assert api.state(sweep_id) == "running"
    assert len([s for s in api.fake.submissions if sweep_id in s.entrypoint]) == 1


def test_a_failed_driver_is_relaunched_with_resume(api: Api) -> None:
    sweep_id, _ = _running(api)
    api.fake.statuses[api.fake.last_for(sweep_id).submission_id] = JobStatus.FAILED
    _reconcile(api)
    assert api.state(sweep_id) == "starting"
    relaunch = api.fake.last_for(sweep_id)
    assert relaunch.entrypoint.endswith("--resume")
    shown = api.client.get(f"/v1/sweeps/{sweep_id}", headers=api.admin).json()
    assert shown["driver_attempts"] == 2 and shown["ray_job_id"] == relaunch.submission_id
    driver = bearer(relaunch.env_vars["EXTRAP_DRIVER_TOKEN"])
    assert api.push(sweep_id, driver, event("sweep_running"))["state"] == "running"


def test_a_driver_that_succeeded_silently_counts_as_gone(api: Api) -> None:
    sweep_id, _ = _running(api)
    api.fake.statuses[api.fake.last_for(sweep_id).submission_id] = JobStatus.SUCCEEDED
    _reconcile(api)
    assert api.state(sweep_id) == "starting"


def test_an_unknown_job_counts_as_gone(api: Api) -> None:
    sweep_id, _ = _running(api)
    del api.fake.statuses[api.fake.last_for(sweep_id).submission_id]
    _reconcile(api)
    assert api.state(sweep_id) == "starting"


def test_a_silent_driver_is_stopped_and_relaunched(api: Api) -> None:
    sweep_id, _ = _running(api)
    job_id = api.fake.last_for(sweep_id).submission_id
    with api.ctx.db.write() as session:
        sweep = crud.lock_sweep(session, sweep_id=sweep_id)
        sweep.last_heartbeat = utcnow() - timedelta(seconds=api.settings.heartbeat_timeout_s + 5)
    _reconcile(api)
    assert job_id in api.fake.stopped
    assert api.state(sweep_id) == "starting"


def test_the_sweep_fails_after_max_driver_restarts(api: Api) -> None:
    sweep_id, _ = _running(api)
    for _ in range(api.settings.max_driver_restarts + 1):
        api.fake.statuses[api.fake.last_for(sweep_id).submission_id] = JobStatus.FAILED
        _reconcile(api)
    shown = api.client.get(f"/v1/sweeps/{sweep_id}", headers=api.admin).json()
    assert shown["state"] == "failed"
    assert "gave up after 2 driver restarts" in shown["reason"]
    assert "FAILED" in shown["reason"]


def test_nothing_is_judged_while_ray_is_unreachable(api: Api) -> None:
    sweep_id, _ = _running(api)
    api.fake.statuses[api.fake.last_for(sweep_id).submission_id] = JobStatus.FAILED
    api.fake.reachable = False
    try:
        _reconcile(api)
    finally:
        api.fake.reachable = True
    assert api.state(sweep_id) == "running"


def test_cancelling_becomes_cancelled_once_the_job_is_terminal(api: Api) -> None:
    sweep_id, driver = _running(api)
    api.push(sweep_id, driver, event("trial_started", trial_id="t", number=1, params={"lr": 1}))
    api.client.post(f"/v1/sweeps/{sweep_id}/cancel", headers=api.admin)
    job_id = api.fake.last_for(sweep_id).submission_id
    api.fake.statuses[job_id] = JobStatus.RUNNING  # the stop has not taken effect yet
    _reconcile(api)
    assert api.state(sweep_id) == "cancelling"
    api.fake.statuses[job_id] = JobStatus.STOPPED
    _reconcile(api)
    shown = api.client.get(f"/v1/sweeps/{sweep_id}", headers=api.admin).json()
    assert shown["state"] == "cancelled"
    assert shown["trial_counts"]["failed"] == 1 and shown["trial_counts"]["running"] == 0


def test_launcher_respects_max_concurrent_sweeps(api: Api) -> None:
    assert api.ctx.launcher is not None
    launcher = api.ctx.launcher
    headers = api.user()
    # free every slot first: end whatever earlier tests left running
    with api.ctx.db.read() as session:
        active = [s.id for s in crud.sweeps_in(session, states=ACTIVE_SWEEP_STATES)]
    for sweep_id in active:
        api.client.post(f"/v1/sweeps/{sweep_id}/cancel", headers=api.admin)
        api.fake.statuses[api.fake.last_for(sweep_id).submission_id] = JobStatus.STOPPED
    _reconcile(api)
    with api.ctx.db.read() as session:
        queued = [s.id for s in crud.queued_sweeps(session, limit=1000)]
    for sweep_id in queued:
        api.client.post(f"/v1/sweeps/{sweep_id}/cancel", headers=api.admin)
    first, second = api.submit(headers), api.submit(headers)
    assert launcher.launch_queued() == [first]  # max_concurrent_sweeps = 1
    assert api.state(second) == "queued"
    driver = bearer(api.fake.last_for(first).env_vars["EXTRAP_DRIVER_TOKEN"])
    api.push(first, driver, event("sweep_finished", state="succeeded", best=None))
    assert launcher.launch_queued() == [second]


def test_unreachable_ray_puts_the_sweep_back_in_the_queue(api: Api) -> None:
    assert api.ctx.launcher is not None
    sweep_id = api.submit(api.user())
    api.fake.reachable = False
    try:
        launched = api.ctx.launcher.launch(sweep_id, expected=(SweepState.QUEUED,))
    finally:
        api.fake.reachable = True
    assert launched is False
    shown = api.client.get(f"/v1/sweeps/{sweep_id}", headers=api.admin).json()
    assert shown["state"] == "queued" and "waiting for Ray" in shown["reason"]
    assert shown["driver_attempts"] == 0 and shown["ray_job_id"] is None
    api.client.post(f"/v1/sweeps/{sweep_id}/cancel", headers=api.admin)
