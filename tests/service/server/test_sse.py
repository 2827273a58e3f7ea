"""``GET /v1/sweeps/{id}/events``: replay, live delivery, and the end at the final state."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

from tests.service.conftest import Api, event


def _read_stream(api: Api, sweep_id: str, headers: dict[str, str]) -> list[dict[str, Any]]:
    """Every SSE event until the server closes the stream."""
    events: list[dict[str, Any]] = []
    current: dict[str, Any] = {}
    with api.client.stream(
        "GET", f"/v1/sweeps/{sweep_id}/events", headers=headers, timeout=30.0
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        for line in response.iter_lines():
            if not line:
                if "data" in current:
                    events.append(current)
                current = {}
            elif not line.startswith(":"):
                key, _, value = line.partition(": ")
                current[key] = json.loads(value) if key == "data" else value
    return events


def test_stream_delivers_live_events_and_closes_at_the_final_state(api: Api) -> None:
    headers = api.user()
    sweep_id = api.submit(headers)
    driver = api.launch(sweep_id)
    api.push(sweep_id, driver, event("sweep_running"))

    def driver_work() -> None:
        time.sleep(0.5)
        api.push(
            sweep_id,
            driver,
            event("trial_started", trial_id="t", number=1, params={"lr": 0.1}),
            event("trial_metrics", trial_id="t", epoch=1, metrics={"val_accuracy": 0.9}),
        )
        time.sleep(0.3)
        api.push(
            sweep_id,
            driver,
            event("trial_finished", trial_id="t", status="completed"),
            event("sweep_finished", state="succeeded", best=None),
        )

    worker = threading.Thread(target=driver_work)
    started = time.monotonic()
    worker.start()
    events = _read_stream(api, sweep_id, headers)
    worker.join()
    assert time.monotonic() - started < 20
    types = [e["event"] for e in events]
    assert types[0] == "state" and events[0]["data"]["state"] == "queued"
    assert "trial_started" in types and "trial_metrics" in types and "best" in types
    assert types[-1] == "state" and events[-1]["data"]["state"] == "succeeded"
    ids = [int(e["id"]) for e in events]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    assert events[-1]["data"]["sweep_id"] == sweep_id


def test_replay_from_last_event_id(api: Api) -> None:
    headers = api.user()
    sweep_id = api.submit(headers)
    driver = api.launch(sweep_id)
    api.push(
        sweep_id,
        driver,
        event("sweep_running"),
        event("sweep_finished", state="failed", reason="boom", best=None),
    )
    everything = _read_stream(api, sweep_id, headers)
    middle = everything[1]["id"]
    rest = _read_stream(api, sweep_id, {**headers, "Last-Event-ID": middle})
    assert [e["id"] for e in rest] == [e["id"] for e in everything[2:]]
    assert rest[-1]["data"] == {**rest[-1]["data"], "state": "failed", "reason": "boom"}
    # a client that saw the final event gets an empty, closed stream
    assert _read_stream(api, sweep_id, {**headers, "Last-Event-ID": everything[-1]["id"]}) == []
