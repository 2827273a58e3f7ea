"""Quotas and idempotent submission: per-user caps on running sweeps and trial slots (the rest
waits in the queue), the submission rate limit (429), and ``Idempotency-Key`` retries."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import httpx
import pytest

from service.server import crud
from service.server.api.main import create_app
from service.server.quotas import SubmissionLimiter
from service.wire import ACTIVE_SWEEP_STATES
from tests.service.conftest import Api, event, make_settings, make_spec, start_server
from tests.service.fakes import FakeDispatcher
from trainers.ddp_probe import free_port

BURST = 3


@pytest.fixture(scope="module")
def api(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    """A service where a user may run 2 sweeps and 4 trial slots at once, 3 submissions at once."""
    port = free_port()
    settings = make_settings(
        tmp_path_factory.mktemp("quotas"),
        database_url,
        port,
        max_concurrent_sweeps=50,
        max_running_sweeps_per_user=2,
        max_running_trials_per_user=4,
        submission_burst=BURST,
        submissions_per_minute=6,
    )
    fake = FakeDispatcher()
    live = start_server(create_app(settings, dispatcher=fake, supervise=False), port)
    client = httpx.Client(base_url=live.url, timeout=30.0)
    try:
        yield Api(live=live, fake=fake, settings=settings, client=client)
    finally:
        client.close()
        live.stop()


def _spec(concurrent: int, trials: int = 8) -> dict[str, object]:
    return make_spec(search={"num_trials": trials, "max_concurrent_trials": concurrent})


def _launch_pass(api: Api) -> list[str]:
    assert api.ctx.launcher is not None
    return api.ctx.launcher.launch_queued()


def _finish(api: Api, sweep_id: str) -> None:
    driver = {
        "Authorization": f"Bearer {api.fake.last_for(sweep_id).env_vars['EXTRAP_DRIVER_TOKEN']}"
    }
    api.push(sweep_id, driver, event("sweep_running"))
    api.push(sweep_id, driver, event("sweep_finished", state="succeeded", best=None))


def _drain(api: Api) -> None:
    """Finish whatever runs, so that each test starts with free slots."""
    while launched := _launch_pass(api):
        for sweep_id in launched:
            _finish(api, sweep_id)
    with api.ctx.db.read() as session:
        active = [sweep.id for sweep in crud.sweeps_in(session, states=ACTIVE_SWEEP_STATES)]
    for sweep_id in active:
        _finish(api, sweep_id)


def test_sweeps_over_a_users_running_cap_wait_and_others_go_first(api: Api) -> None:
    _drain(api)
    alice, bob = api.user(), api.user()
    mine = [api.submit(alice, _spec(concurrent=1)) for _ in range(3)]
    theirs = api.submit(bob, _spec(concurrent=1))
    launched = _launch_pass(api)
    assert launched == [mine[0], mine[1], theirs]  # alice's third waits; bob overtakes it
    assert api.state(mine[2]) == "queued"
    _finish(api, mine[0])
    assert _launch_pass(api) == [mine[2]]


def test_sweeps_over_a_users_trial_slots_wait(api: Api) -> None:
    _drain(api)
    carol = api.user()
    three = api.submit(carol, _spec(concurrent=3))
    two = api.submit(carol, _spec(concurrent=2))
    one = api.submit(carol, _spec(concurrent=1))
    assert _launch_pass(api) == [three, one]  # 3 + 2 > 4 slots: `two` waits, `one` fits
    _finish(api, three)
    assert _launch_pass(api) == [two]


def test_the_driver_is_told_the_trial_slots_it_was_counted_for(api: Api) -> None:
    _drain(api)
    sweep_id = api.submit(api.user(), _spec(concurrent=4, trials=2))
    assert _launch_pass(api) == [sweep_id]
    driver = {
        "Authorization": f"Bearer {api.fake.last_for(sweep_id).env_vars['EXTRAP_DRIVER_TOKEN']}"
    }
    spec = api.client.get(f"/internal/v1/sweeps/{sweep_id}/spec", headers=driver).json()
    assert spec["max_concurrent_trials"] == 2  # no more slots than trials
    _finish(api, sweep_id)


def test_submissions_beyond_the_rate_are_429_with_retry_after(api: Api) -> None:
    dave = api.user()
    answers = [api.client.post("/v1/sweeps", json=make_spec(), headers=dave) for _ in range(BURST)]
    assert [a.status_code for a in answers] == [201] * BURST
    refused = api.client.post("/v1/sweeps?dry_run=true", json=make_spec(), headers=dave)
    assert refused.status_code == 429, refused.text
    error = refused.json()["error"]
    assert error["code"] == "rate_limited" and "per user" in error["message"]
    assert int(refused.headers["retry-after"]) >= 1
    # another user is not affected
    assert api.client.post("/v1/sweeps", json=make_spec(), headers=api.user()).status_code == 201


def test_the_rate_limit_refuses_before_reading_the_body(api: Api) -> None:
    erin = api.user()
    for _ in range(BURST):
        api.client.post("/v1/sweeps?dry_run=true", json=make_spec(), headers=erin)
    garbage = api.client.post(
        "/v1/sweeps", content=b"[" * 10_000, headers={**erin, "Content-Type": "application/json"}
    )
    assert garbage.status_code == 429


def test_a_retried_submission_returns_the_first_sweep(api: Api) -> None:
    frank = api.user()
    headers = {**frank, "Idempotency-Key": "submit-1"}
    first = api.client.post("/v1/sweeps", json=make_spec(), headers=headers)
    again = api.client.post("/v1/sweeps", json=make_spec(), headers=headers)
    assert first.status_code == again.status_code == 201
    assert again.json()["id"] == first.json()["id"]
    assert again.headers["idempotent-replayed"] == "true"
    assert api.client.get("/v1/sweeps", headers=frank).json()["count"] == 1
    # retries are not submissions: they pass even once the bucket is empty
    for index in range(BURST):
        api.client.post(
            "/v1/sweeps", json=make_spec(), headers={**frank, "Idempotency-Key": f"k{index}"}
        )
    assert api.client.post("/v1/sweeps", json=make_spec(), headers=headers).status_code == 201


def test_a_key_reused_for_another_spec_is_422(api: Api) -> None:
    headers = {**api.user(), "Idempotency-Key": "reused"}
    assert api.client.post("/v1/sweeps", json=make_spec(), headers=headers).status_code == 201
    other = api.client.post("/v1/sweeps", json=make_spec(name="another"), headers=headers)
    assert other.status_code == 422
    error = other.json()["error"]
    assert error["code"] == "idempotency_key_reused" and error["field"] == "Idempotency-Key"


@pytest.mark.parametrize("key", ["", "a b", "x" * 129, "\u00e9t\u00e9"])
def test_a_malformed_key_is_422(api: Api, key: str) -> None:
    headers = {**api.user(), "Idempotency-Key": key}
    response = api.client.post(
        "/v1/sweeps", json=make_spec(), headers={k: v.encode() for k, v in headers.items()}
    )
    if key == "":
        assert response.status_code == 201  # an empty header is no key
        return
    assert response.status_code == 422, response.text
    assert response.json()["error"]["field"] == "Idempotency-Key"


def test_the_same_key_sent_at_once_makes_one_sweep(api: Api) -> None:
    grace = api.user()
    api.ctx.limiter = SubmissionLimiter(per_minute=600, burst=100)  # the burst is the point
    headers = {**grace, "Idempotency-Key": "at-once"}
    answers: list[httpx.Response] = []

    def submit() -> None:
        with httpx.Client(base_url=api.url, timeout=30) as client:
            answers.append(client.post("/v1/sweeps", json=make_spec(), headers=headers))

    threads = [threading.Thread(target=submit) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert {a.status_code for a in answers} == {201}
    assert len({a.json()["id"] for a in answers}) == 1
    assert api.client.get("/v1/sweeps", headers=grace).json()["count"] == 1


def test_a_batch_takes_its_weight_once() -> None:
    now = [0.0]
    limiter = SubmissionLimiter(per_minute=60, burst=2, clock=lambda: now[0])
    assert limiter.acquire(1, weight=1) is None  # e.g. a study of 20 cells: one submission
    assert limiter.acquire(1, weight=1) is None
    assert limiter.acquire(1, weight=1) == pytest.approx(1.0)
    now[0] = 1.0
    assert limiter.acquire(1) is None
    assert limiter.acquire(1, weight=50) is not None  # capped at the burst, never refused forever
    now[0] = 3.0
    assert limiter.acquire(1, weight=50) is None
