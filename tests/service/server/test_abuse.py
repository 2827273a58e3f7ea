"""The service as a hostile user tries it (issue 14): every case is a real request to a real
server, on SQLite and PostgreSQL, and each answer is a clear 4xx naming the field, never a 5xx.

The cases: the body is not read before authentication; JSON and YAML nested 10,000 deep;
``data_dir`` values the filesystem cannot resolve; integers beyond the columns; event ids beyond
any event; NUL characters and numbers the database cannot store; a body at the limit.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from tests.service.conftest import Api, event, make_spec

DEEP = 10_000
HUGE = "9223372036854775808"  # 2**63: beyond SQLite's integers
HUGER = "1180591620717411303424"  # 2**70


def _error(response: object, status: int) -> dict[str, object]:
    assert getattr(response, "status_code", None) == status, getattr(response, "text", response)
    body = response.json()  # type: ignore[attr-defined]
    assert set(body) == {"error"}, body
    return dict(body["error"])


# -- authentication comes first --------------------------------------------------------------


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("application/json", b"{}"),
        ("application/json", b"[" * DEEP + b"]" * DEEP),
        ("application/yaml", b"name: [unclosed"),
        ("text/csv", b"a,b"),
        ("application/json", b"\xff\xfe not utf-8"),
    ],
)
def test_a_spec_without_a_token_is_401_whatever_the_body(
    api: Api, content_type: str, body: bytes
) -> None:
    response = api.client.post("/v1/sweeps", content=body, headers={"Content-Type": content_type})
    error = _error(response, 401)
    assert error["code"] == "unauthorized" and response.headers["www-authenticate"] == "Bearer"


def test_bodies_and_parameters_of_every_route_wait_for_the_token(api: Api) -> None:
    sweep_id = api.submit(api.user())
    for method, path, body in [
        ("POST", f"/v1/sweeps/{sweep_id}/resume", b"[" * DEEP),
        ("GET", f"/v1/sweeps?offset={HUGE}", None),
        ("GET", "/v1/sweeps/not%20an%20id", None),
        ("GET", f"/v1/sweeps/{sweep_id}/events?after=-1", None),
        ("POST", f"/internal/v1/sweeps/{sweep_id}/events", b"{" * DEEP),
    ]:
        response = api.client.request(
            method, path, content=body, headers={"Content-Type": "application/json"}
        )
        assert _error(response, 401)["code"] == "unauthorized", path


def test_a_revoked_token_fails_on_the_next_request(api: Api) -> None:
    from service.server.auth import revoke_token

    headers = api.user()
    assert api.client.get("/v1/sweeps", headers=headers).status_code == 200
    with api.ctx.db.write() as session:  # another process's revocation, as far as the API knows
        revoke_token(session, token_or_id=headers["Authorization"].split()[1])
    assert api.client.get("/v1/sweeps", headers=headers).status_code == 401


# -- bodies the parser cannot digest ------------------------------------------------------------


@pytest.mark.parametrize("kind", ["array", "object"])
def test_json_nested_10000_deep_is_422(api: Api, kind: str) -> None:
    opening, closing = (b"[", b"]") if kind == "array" else (b'{"a":', b"}")
    body = b'{"name": ' + opening * DEEP + b"1" + closing * DEEP + b"}"
    headers = {**api.user(), "Content-Type": "application/json"}
    error = _error(api.client.post("/v1/sweeps", content=body, headers=headers), 422)
    assert "deeper than" in str(error["message"])


def test_yaml_nested_10000_deep_is_422(api: Api) -> None:
    body = ("name: " + "[" * DEEP + "]" * DEEP).encode()
    headers = {**api.user(), "Content-Type": "application/yaml"}
    error = _error(api.client.post("/v1/sweeps", content=body, headers=headers), 422)
    assert error["code"] == "invalid_spec"


def test_a_resume_body_nested_deep_is_422(api: Api) -> None:
    headers = api.user()
    sweep_id = api.submit(headers)
    api.client.post(f"/v1/sweeps/{sweep_id}/cancel", headers=headers)
    body = b'{"add_trials": ' + b"[" * DEEP + b"]" * DEEP + b"}"
    response = api.client.post(
        f"/v1/sweeps/{sweep_id}/resume",
        content=body,
        headers={**headers, "Content-Type": "application/json"},
    )
    _error(response, 422)


def test_nan_in_a_spec_is_422_naming_it(api: Api) -> None:
    body = json.dumps(make_spec(space={"lr": {"low": float("nan"), "high": 1.0}})).encode()
    headers = {**api.user(), "Content-Type": "application/json"}
    error = _error(api.client.post("/v1/sweeps", content=body, headers=headers), 422)
    assert "NaN" in str(error["message"])


# -- values the filesystem or the database cannot take -------------------------------------------


@pytest.mark.parametrize(
    "data_dir", ["~nosuchuser/x", "/data/a\x00b", "~nosuchuser", "relative/path"]
)
@pytest.mark.parametrize("dry_run", [True, False])
def test_unresolvable_data_dirs_are_422_on_the_field(
    api: Api, data_dir: str, dry_run: bool
) -> None:
    spec = make_spec()
    spec["job"]["data_dir"] = data_dir
    path = "/v1/sweeps?dry_run=true" if dry_run else "/v1/sweeps"
    error = _error(api.client.post(path, json=spec, headers=api.user()), 422)
    assert error["field"] == "job.data_dir", error


@pytest.mark.parametrize("field", ["description", "mlflow_experiment"])
def test_a_nul_character_in_a_spec_is_422_never_a_database_error(api: Api, field: str) -> None:
    spec = make_spec(**{field: "before\x00after"})
    headers = api.user()
    response = api.client.post("/v1/sweeps", json=spec, headers=headers)
    assert 400 <= response.status_code < 500, response.text
    assert api.client.get("/v1/sweeps", headers=headers).json()["count"] == 0


@pytest.mark.parametrize("path", ["/v1/sweeps", "/v1/sweeps/{id}/trials"])
@pytest.mark.parametrize("value", [HUGE, HUGER, "-1"])
def test_offsets_beyond_the_columns_are_422(api: Api, path: str, value: str) -> None:
    headers = api.user()
    sweep_id = api.submit(headers)
    url = path.replace("{id}", sweep_id) + f"?offset={value}"
    assert _error(api.client.get(url, headers=headers), 422)["field"] == "offset"


@pytest.mark.parametrize("value", [HUGER, HUGE, "-1", "1e3", "abc", "\u0663".encode()])
def test_a_last_event_id_that_is_no_event_id_is_422(api: Api, value: str | bytes) -> None:
    headers = api.user()
    sweep_id = api.submit(headers)
    response = api.client.get(
        f"/v1/sweeps/{sweep_id}/events", headers={**headers, "Last-Event-ID": value}
    )
    assert _error(response, 422)["field"] == "Last-Event-ID"


@pytest.mark.parametrize("value", [HUGER, "-1"])
def test_after_beyond_or_below_the_event_ids_is_422(api: Api, value: str) -> None:
    headers = api.user()
    sweep_id = api.submit(headers)
    response = api.client.get(f"/v1/sweeps/{sweep_id}/events?after={value}", headers=headers)
    assert _error(response, 422)["field"] == "after"


@pytest.mark.parametrize("sweep_id", ["a" * 65, "a%00b", "%2e%2e", "a%20b"])
def test_malformed_ids_are_4xx(api: Api, sweep_id: str) -> None:
    response = api.client.get(f"/v1/sweeps/{sweep_id}", headers=api.user())
    assert response.status_code in (404, 422), response.text
    assert "error" in response.json()


@pytest.mark.parametrize(
    ("bad", "field"),
    [
        ({"seq": 2**40}, "events.0.seq"),
        ({"epoch": 2**31}, "events.0.epoch"),
        ({"metrics": {"val_accuracy": 10**400}}, "events.0.metrics.val_accuracy"),
        ({"trial_id": "t\x00"}, "events.0.trial_id"),
        ({"metrics": {"note\x00": 1.0}}, None),
    ],
)
def test_driver_values_the_database_cannot_store_are_422(
    api: Api, bad: dict[str, object], field: str | None
) -> None:
    sweep_id = api.submit(api.user())
    driver = api.launch(sweep_id)
    pushed = {**event("trial_metrics", trial_id="t", epoch=1, metrics={"val_accuracy": 0.5}), **bad}
    response = api.client.post(
        f"/internal/v1/sweeps/{sweep_id}/events",
        content=json.dumps({"events": [pushed]}),
        headers={**driver, "Content-Type": "application/json"},
    )
    error = _error(response, 422)
    if field is not None:
        assert field in {detail["field"] for detail in error["details"]}, error  # type: ignore[union-attr]


# -- the body limit -------------------------------------------------------------------------


def _padded_spec(size: int) -> bytes:
    """A valid JSON spec of exactly ``size`` bytes (padded in its description)."""
    empty = json.dumps(make_spec(description="")).encode()
    body = json.dumps(make_spec(description="x" * (size - len(empty)))).encode()
    assert len(body) == size
    return body


def test_a_body_at_the_limit_is_accepted_and_one_byte_more_is_413(api: Api) -> None:
    limit = api.settings.max_body_bytes
    headers = {**api.user(), "Content-Type": "application/json"}
    path = "/v1/sweeps?dry_run=true"
    at_limit = api.client.post(path, content=_padded_spec(limit), headers=headers)
    assert at_limit.status_code in (200, 422), at_limit.text  # read and judged, not refused
    assert at_limit.status_code != 413
    over = api.client.post(path, content=_padded_spec(limit + 1), headers=headers)
    assert _error(over, 413)["code"] == "body_too_large"


def test_a_chunked_body_at_the_limit_is_read(api: Api) -> None:
    body = _padded_spec(api.settings.max_body_bytes)

    def chunks() -> Iterator[bytes]:  # no Content-Length: the server counts what arrives
        for start in range(0, len(body), 4096):
            yield body[start : start + 4096]

    headers = {**api.user(), "Content-Type": "application/json"}
    response = api.client.post("/v1/sweeps?dry_run=true", content=chunks(), headers=headers)
    assert response.status_code in (200, 422), response.text
