"""The driver's event pushing: order, batching, retries, NaN, replacement (no server needed)."""

from __future__ import annotations

import json
import math
from typing import Any

import httpx

from service.runtime.driver import HttpEventSink
from service.wire import make_event


def _sink(handler: Any) -> HttpEventSink:
    client = httpx.Client(base_url="http://service", transport=httpx.MockTransport(handler))
    return HttpEventSink(client, "abc123", heartbeat_interval_s=3600)


def test_events_arrive_in_order_after_the_service_comes_back_and_nan_travels_as_null() -> None:
    received: list[dict[str, Any]] = []
    failures = iter([True, True, False] + [False] * 100)

    def handler(request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/internal/v1/sweeps/abc123/events"
        if next(failures):
            raise httpx.ConnectError("service restarting")
        received.extend(json.loads(request.content)["events"])
        return httpx.Response(200, json={"applied": 1, "ignored": 0, "state": "running"})

    sink = _sink(handler)
    sink.emit(make_event("trial_metrics", trial_id="t1", epoch=1, metrics={"train_loss": math.nan}))
    for epoch in range(2, 5):
        sink.emit(make_event("trial_metrics", trial_id="t1", epoch=epoch, metrics={"x": 1.0}))
    assert sink.close(timeout_s=60)
    assert [e["epoch"] for e in received] == [1, 2, 3, 4]
    assert received[0]["metrics"]["train_loss"] is None


def test_a_replaced_driver_stops_pushing() -> None:
    calls = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        return httpx.Response(401, json={"error": {"code": "unauthorized"}})

    sink = _sink(handler)
    sink.emit(make_event("heartbeat"))
    sink.close(timeout_s=30)
    assert sink.replaced.is_set()
    sink.emit(make_event("heartbeat"))  # ignored from now on
    assert calls == 1
