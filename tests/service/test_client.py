"""``service.client``: status codes mapped to errors, SSE parsing and reconnection.

Most of these use ``httpx.MockTransport`` to produce what a real service rarely does on cue
(a connection dropped mid-stream); the last ones run against the real service.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator

import httpx
import pytest

from service.client import (
    ApiError,
    BodyTooLarge,
    Conflict,
    ExtrapClient,
    InvalidSpec,
    NotFound,
    ServiceUnavailable,
    ServiceUnreachable,
    Unauthorized,
)
from tests.service.conftest import Api, event, free_port


def _client(handler: Callable[[httpx.Request], httpx.Response]) -> ExtrapClient:
    return ExtrapClient("http://svc", token="tok", transport=httpx.MockTransport(handler))


def _error(status: int, code: str, message: str, **extra: object) -> httpx.Response:
    body = {"error": {"code": code, "message": message, "field": None, "details": [], **extra}}
    return httpx.Response(status, json=body)


@pytest.mark.parametrize(
    ("status", "code", "kind"),
    [
        (404, "not_found", NotFound),
        (409, "illegal_transition", Conflict),
        (413, "body_too_large", BodyTooLarge),
        (422, "invalid_spec", InvalidSpec),
        (503, "unavailable", ServiceUnavailable),
        (415, "unsupported_media_type", ApiError),
    ],
)
def test_status_codes_become_errors(status: int, code: str, kind: type[ApiError]) -> None:
    client = _client(lambda request: _error(status, code, "nope"))
    with pytest.raises(kind) as caught:
        client.get_sweep("abc")
    assert caught.value.status == status and caught.value.code == code
    assert str(caught.value) == "nope"


def test_conflict_carries_the_current_state() -> None:
    details = [{"state": "succeeded", "requested": "cancelling"}]
    client = _client(lambda request: _error(409, "illegal_transition", "x", details=details))
    with pytest.raises(Conflict) as caught:
        client.cancel_sweep("abc")
    assert caught.value.state == "succeeded"


def test_invalid_spec_lists_every_field_error() -> None:
    details = [
        {"field": "space.lr.low", "message": "low above high"},
        {"field": "search.num_trials", "message": "must be >= 1"},
    ]
    client = _client(lambda request: _error(422, "invalid_spec", "2 problems", details=details))
    with pytest.raises(InvalidSpec) as caught:
        client.create_sweep("name: x\n")
    assert [str(e) for e in caught.value.errors] == [
        "space.lr.low: low above high",
        "search.num_trials: must be >= 1",
    ]


def test_unauthorized_says_how_to_get_a_token() -> None:
    client = ExtrapClient(
        "http://svc", transport=httpx.MockTransport(lambda r: _error(401, "unauthorized", "x"))
    )
    with pytest.raises(Unauthorized) as caught:
        client.list_sweeps()
    text = str(caught.value)
    assert "http://svc" in text and "none is configured" in text
    assert "extrap login --token" in text and "EXTRAP_TOKEN" in text
    assert "extrap admin create-token --user NAME" in text


def test_a_non_json_error_body_still_reads() -> None:
    client = _client(lambda request: httpx.Response(502, text="Bad Gateway"))
    with pytest.raises(ApiError, match="HTTP 502: Bad Gateway"):
        client.list_sweeps()


def test_connection_refused_is_service_unreachable() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(ServiceUnreachable) as caught, ExtrapClient(url) as client:
        client.list_sweeps()
    assert url in str(caught.value) and "extrap serve" in str(caught.value)
    assert "connection refused" in str(caught.value)


def test_specs_go_as_yaml_or_json() -> None:
    seen: list[tuple[str, bytes]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append((request.headers["content-type"], request.content))
        return httpx.Response(200, json={"valid": True, "spec": {}, "resources": None})

    client = _client(handler)
    client.dry_run("name: x\n")
    client.dry_run({"name": "x"})
    assert seen[0] == ("application/yaml", b"name: x\n")
    assert seen[1][0] == "application/json" and json.loads(seen[1][1]) == {"name": "x"}


# -- Server-Sent Events --------------------------------------------------------------------


def _sse(seq: int, kind: str, **data: object) -> bytes:
    payload = json.dumps({"seq": seq, "type": kind, **data})
    return f"id: {seq}\nevent: {kind}\ndata: {payload}\n\n".encode()


class _Dropping(httpx.SyncByteStream):
    """Yields some chunks, then fails like a connection that went away."""

    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks = chunks

    def __iter__(self) -> Iterator[bytes]:
        yield from self.chunks
        raise httpx.ReadError("connection reset by peer")


def test_events_reconnect_with_last_event_id() -> None:
    asked: list[str | None] = []

    def handler(request: httpx.Request) -> httpx.Response:
        asked.append(request.headers.get("last-event-id"))
        if len(asked) == 1:
            chunks = [b"retry: 10\n\n", _sse(1, "state", state="running"), b": keepalive\n\n"]
            chunks.append(_sse(2, "trial_started", trial_id="t", number=0, params={}))
            return httpx.Response(200, stream=_Dropping(chunks))
        if len(asked) == 2:
            return httpx.Response(503, json={"error": {"code": "unavailable", "message": "x"}})
        return httpx.Response(200, content=_sse(3, "state", state="succeeded"))

    events = list(_client(handler).events("abc"))
    assert [(e.id, e.event) for e in events] == [(1, "state"), (2, "trial_started"), (3, "state")]
    assert events[2].data["state"] == "succeeded"
    assert asked == [None, "2", "2"]


def test_events_give_up_after_repeated_failures() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, stream=_Dropping([b"retry: 1\n\n"]))

    with pytest.raises(ServiceUnreachable, match="connection reset"):
        list(_client(handler).events("abc", max_reconnects=2))


def test_events_do_not_retry_an_error_answer() -> None:
    calls: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        return _error(404, "not_found", "sweep 'abc' not found")

    with pytest.raises(NotFound):
        list(_client(handler).events("abc"))
    assert len(calls) == 1


# -- against the real service --------------------------------------------------------------


def _token(headers: dict[str, str]) -> str:
    return headers["Authorization"].removeprefix("Bearer ")


def test_events_replay_after_an_id_on_the_real_service(api: Api) -> None:
    headers = api.user()
    sweep_id = api.submit(headers)
    driver = api.launch(sweep_id)
    api.push(sweep_id, driver, event("sweep_running"), event("sweep_finished", state="succeeded"))
    with ExtrapClient(api.url, _token(headers)) as client:
        everything = list(client.events(sweep_id))
        states = [e.data["state"] for e in everything if e.event == "state"]
        assert states[-1] == "succeeded"
        later = list(client.events(sweep_id, last_event_id=everything[1].id))
    assert [e.id for e in later] == [e.id for e in everything[2:]]


def test_typed_answers_from_the_real_service(api: Api) -> None:
    with ExtrapClient(api.url, _token(api.user())) as client:
        created = client.create_sweep({"name": "typed", **_small_spec()})
        assert client.get_sweep(created.id).name == "typed"
        assert [s.id for s in client.list_sweeps(states=["queued"]).data] == [created.id]
        assert client.list_trials(created.id).count == 0
        assert client.cancel_sweep(created.id).state == "cancelled"
        assert client.resume_sweep(created.id, add_trials=1).num_trials == 5
        with pytest.raises(NotFound):
            client.get_trial(created.id, "nope")


def _small_spec() -> dict[str, object]:
    return {
        "job": {"workload": "mnist1d", "global_batch_size": 64, "epochs": 2},
        "space": {"lr": {"low": 0.01, "high": 1.0, "log": True}},
        "search": {"num_trials": 4},
    }
