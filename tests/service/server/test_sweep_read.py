"""``GET /v1/sweeps/{id}``, the hottest read: the caller and the sweep in one statement, outside
any transaction, on a connection that goes back to the pool as it came; the same answer as a
read in a session, and a revoked token fails on the next request."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import event as sa_event

from service.server import crud
from service.server.api.views import sweep_public
from tests.service.conftest import Api, bearer, event


def _running_sweep_with_trials(api: Api, headers: dict[str, str]) -> str:
    return api.driven(
        headers,
        event("sweep_running"),
        event("trial_started", trial_id="t1", number=1, params={"lr": 0.1}),
        event("trial_started", trial_id="t2", number=2, params={"lr": 0.2}),
        event("trial_metrics", trial_id="t1", epoch=1, metrics={"accuracy": 0.5}),
        event("trial_finished", trial_id="t1", status="completed"),
    )


def test_the_answer_is_the_one_a_session_read_gives(api: Api) -> None:
    headers = api.user()
    sweep_id = _running_sweep_with_trials(api, headers)
    response = api.client.get(f"/v1/sweeps/{sweep_id}", headers=headers)
    assert response.status_code == 200, response.text
    with api.ctx.db.read() as session:
        row, counts = crud.sweep_with_counts(session, sweep_id=sweep_id)
        expected = sweep_public(row, counts, api.settings)
    assert response.json() == json.loads(expected.model_dump_json())
    assert (counts["completed"], counts["running"]) == (1, 1)


def test_a_revoked_token_fails_on_the_next_get(api: Api) -> None:
    from service.server.auth import revoke_token

    headers = api.user()
    sweep_id = api.submit(headers)
    assert api.client.get(f"/v1/sweeps/{sweep_id}", headers=headers).status_code == 200
    with api.ctx.db.write() as session:  # another process's revocation, as far as the API knows
        revoke_token(session, token_or_id=headers["Authorization"].split()[1])
    response = api.client.get(f"/v1/sweeps/{sweep_id}", headers=headers)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"


def test_a_bad_token_is_401_before_the_id_is_judged(api: Api) -> None:
    for path in ("/v1/sweeps/not%20an%20id", "/v1/sweeps/ffffffffffff"):
        response = api.client.get(path, headers=bearer("ext_not-a-real-token"))
        assert response.status_code == 401, path


def _wait_until_the_pool_is_idle(api: Api) -> None:
    deadline = time.monotonic() + 10
    while api.ctx.db.engine.pool.checkedout():  # type: ignore[attr-defined]
        assert time.monotonic() < deadline, "a connection stayed checked out"
        time.sleep(0.01)


@pytest.fixture
def sqlite_statements(api: Api) -> Iterator[list[str]]:
    """Every statement the server's SQLite connections run from now on."""
    if not api.ctx.db.is_sqlite:
        pytest.skip("statements are traced on SQLite")
    engine = api.ctx.db.engine
    statements: list[str] = []

    def trace(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.set_trace_callback(statements.append)

    sa_event.listen(engine, "connect", trace)
    engine.dispose()  # the pool's next connections are traced
    try:
        yield statements
    finally:
        sa_event.remove(engine, "connect", trace)
        engine.dispose()


def test_the_read_is_one_statement_in_no_transaction(
    api: Api, sqlite_statements: list[str]
) -> None:
    headers = api.user()
    sweep_id = api.submit(headers)
    _wait_until_the_pool_is_idle(api)  # the submission's session ends after its answer
    sqlite_statements.clear()
    assert api.client.get(f"/v1/sweeps/{sweep_id}", headers=headers).status_code == 200
    ran = [sql for sql in sqlite_statements if not sql.startswith("PRAGMA")]
    assert len(ran) == 1 and ran[0].startswith("SELECT"), ran


def test_the_connection_goes_back_to_the_pool_as_it_came(api: Api) -> None:
    headers = api.user()
    sweep_id = api.submit(headers)
    _wait_until_the_pool_is_idle(api)
    for path, token, status in [
        (f"/v1/sweeps/{sweep_id}", headers, 200),
        ("/v1/sweeps/ffffffffffff", headers, 404),
        (f"/v1/sweeps/{sweep_id}", bearer("ext_not-a-real-token"), 401),
    ]:
        assert api.client.get(path, headers=token).status_code == status, path
    pool = api.ctx.db.engine.pool
    assert pool.checkedout() == 0  # type: ignore[attr-defined]  # each given back before the answer
    if not api.ctx.db.is_sqlite:  # reads switch autocommit on for the loan, and off again
        idle = [api.ctx.db.engine.raw_connection() for _ in range(pool.checkedin())]  # type: ignore[attr-defined]
        try:
            assert all(raw.driver_connection.autocommit is False for raw in idle)  # type: ignore[union-attr]
        finally:
            for raw in idle:
                raw.close()
