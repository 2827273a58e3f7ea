"""The fuzz target: a real uvicorn server on each database, a user token for the fuzzer, and
sacrificial sweeps in every state for it to reach, beside protected ones it must not harm.

- **Sacrificial** (the fuzzer's user): queued, running (with trials), succeeded, failed and
  cancelled sweeps; the fuzzer may cancel, resume or delete them.
- **Streams**: finished sweeps of the same user whose event streams end at once (the hooks
  send every ``/events`` request to one of them: a live stream never ends).
- **Protected**: sweeps of another user in every state (the fuzzer's token must only ever get
  404 for them) and one running sweep of the fuzzer's own (it can never be deleted). After a
  run each is checked: still there, not changed by the fuzzer.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from service.server.api.main import create_app
from service.server.dispatch.base import JobStatus
from tests.service.conftest import Api, database_url, event, make_settings, make_spec, start_server
from tests.service.fakes import FakeDispatcher
from trainers.ddp_probe import free_port

__all__ = ["FuzzTarget", "database_url"]


@dataclass
class FuzzTarget:
    """The server, the fuzzer's token, and the sweeps it may and may not touch."""

    api: Api
    token: str
    sweeps: list[str] = field(default_factory=list)
    streams: list[str] = field(default_factory=list)
    trials: dict[str, list[str]] = field(default_factory=dict)
    protected: dict[str, dict[str, Any]] = field(default_factory=dict)
    own_running: str = ""

    def targets(self) -> dict[str, Any]:
        return {"sweeps": self.sweeps, "streams": self.streams, "trials": self.trials}

    def requests_served(self) -> int:
        """Requests the server answered so far (its latency histogram's count)."""
        total = 0.0
        for metric in self.api.ctx.metrics.request_latency.collect():
            for sample in metric.samples:
                if sample.name.endswith("_count"):
                    total += sample.value
        return int(total)


def _sweep(api: Api, headers: dict[str, str], state: str, trials: list[str]) -> str:
    """A sweep of ``headers``' user brought to ``state`` the way the service gets there."""
    sweep_id = api.submit(headers, make_spec(name=f"fuzz-{state}"))
    if state == "queued":
        return sweep_id
    if state == "cancelled":
        api.client.post(f"/v1/sweeps/{sweep_id}/cancel", headers=headers)
        return sweep_id
    driver = api.launch(sweep_id)
    batch = [event("sweep_running", mlflow_experiment_id="1", mlflow_run_id="r")]
    for number, trial_id in enumerate(trials, start=1):
        batch += [
            event("trial_started", trial_id=trial_id, number=number, params={"lr": 0.1}),
            event("trial_metrics", trial_id=trial_id, epoch=1, metrics={"val_accuracy": 0.5}),
        ]
    if state in ("succeeded", "failed"):
        batch += [event("trial_finished", trial_id=t, status="completed") for t in trials]
        batch.append(event("sweep_finished", state=state, reason=None, best=None))
    api.push(sweep_id, driver, *batch)
    if state in ("succeeded", "failed"):  # its driver's job ended too: followed logs end
        api.fake.statuses[api.fake.last_for(sweep_id).submission_id] = JobStatus.SUCCEEDED
    return sweep_id


def _snapshot(api: Api, sweep_id: str) -> dict[str, Any]:
    answer = api.client.get(f"/v1/sweeps/{sweep_id}", headers=api.admin)
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return {key: body[key] for key in ("state", "num_trials", "updated_at", "owner")}


@pytest.fixture(scope="module")
def fuzz_target(
    database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[FuzzTarget]:
    port = free_port()
    settings = make_settings(
        tmp_path_factory.mktemp("fuzz"),
        database_url,
        port,
        submission_burst=1_000_000,  # the fuzzer is one user sending thousands of requests
        submissions_per_minute=1_000_000,
    )
    fake = FakeDispatcher()
    live = start_server(create_app(settings, dispatcher=fake, supervise=False), port)
    client = httpx.Client(base_url=live.url, timeout=30.0)
    api = Api(live=live, fake=fake, settings=settings, client=client)
    try:
        fuzzer = api.user("fuzzer")
        target = FuzzTarget(api=api, token=fuzzer["Authorization"].split()[1])
        states = ("queued", "running", "succeeded", "failed", "cancelled")
        for copy in range(3):
            for state in states:
                trials = [f"{state}-{copy}-t{n}" for n in range(2)] if state != "queued" else []
                sweep_id = _sweep(api, fuzzer, state, trials)
                target.sweeps.append(sweep_id)
                target.trials[sweep_id] = trials
        target.streams = [_sweep(api, fuzzer, "succeeded", ["s-t"]) for _ in range(3)]
        target.own_running = _sweep(api, fuzzer, "running", ["own-t"])
        target.sweeps.append(target.own_running)
        other = api.user("not-the-fuzzer")
        for state in states:
            sweep_id = _sweep(api, other, state, [f"other-{state}"])
            target.protected[sweep_id] = _snapshot(api, sweep_id)
        yield target
    finally:
        client.close()
        live.stop()
