"""The service's PostgreSQL stops (``pg_ctl stop -m fast``, from outside) and a sweep is
submitted: 503 ``unavailable`` with the error body, nothing stored; PostgreSQL starts again:
the next submission is stored, and only it.

The database is a private cluster of this test (tests/faults/conftest.py), never the shared
one on 5432. The API is a real uvicorn server in this process with the supervisor running
and a cluster in memory (no Ray: the fault is the database's).
"""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from service.server.api.main import create_app
from tests.faults._processes import wait_for
from tests.faults.conftest import PrivatePostgres
from tests.service.conftest import ADMIN_TOKEN, bearer, make_settings, make_spec, start_server
from tests.service.fakes import FakeDispatcher
from trainers.ddp_probe import free_port

pytestmark = [pytest.mark.slow, pytest.mark.faults, pytest.mark.timeout(300)]


def test_a_submission_while_postgres_is_down_gets_503_stores_nothing_and_the_next_one_works(
    private_postgres: PrivatePostgres, tmp_path: Path
) -> None:
    port = free_port()
    settings = make_settings(
        tmp_path / "home", private_postgres.url, port, reconcile_interval_s=1.0
    )
    fake = FakeDispatcher()
    live = start_server(create_app(settings, dispatcher=fake), port)
    client = httpx.Client(base_url=live.url, headers=bearer(ADMIN_TOKEN), timeout=60)
    try:
        assert client.get("/v1/sweeps").status_code == 200  # pooled connections, soon broken
        private_postgres.stop()

        refused = client.post("/v1/sweeps", json=make_spec(name="while-down"))
        assert refused.status_code == 503, refused.text
        assert refused.json()["error"]["code"] == "unavailable"
        assert refused.headers["Retry-After"]
        ready = client.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["checks"]["database"].startswith("unreachable")
        time.sleep(2.5)  # the supervisor's loop (every second) meets the outage too

        private_postgres.start()
        assert private_postgres.count("sweeps") == 0  # the refused one left no row
        assert private_postgres.count("sweep_events") == 0
        stored = client.post("/v1/sweeps", json=make_spec(name="after"))
        assert stored.status_code == 201, stored.text
        assert private_postgres.count("sweeps") == 1
        assert [s["name"] for s in client.get("/v1/sweeps").json()["data"]] == ["after"]
        assert client.get("/readyz").status_code == 200
        # the supervisor lived through the outage: it launches the new sweep
        sweep_id = stored.json()["id"]
        wait_for(
            lambda: client.get(f"/v1/sweeps/{sweep_id}").json()["state"] == "starting",
            timeout_s=60,
            what="the supervisor to launch the sweep",
        )
        assert [s.submission_id for s in fake.submissions] == [
            fake.last_for(sweep_id).submission_id
        ]
    finally:
        client.close()
        live.stop()
