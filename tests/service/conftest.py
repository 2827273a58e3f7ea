"""Fixtures of the service tests: real databases (SQLite and PostgreSQL), a real uvicorn
server on a free port, tokens, and a fake dispatcher for tests that need no Ray.

PostgreSQL must be running (``make postgres`` starts it): the PostgreSQL-parametrized tests
FAIL, never skip, when it is not.
"""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI

from service.server.api.context import AppContext
from service.server.api.main import create_app
from service.server.auth import create_token
from service.server.dispatch import LocalRayHead, RayJobDispatcher
from service.settings import Settings
from service.wire import SweepState
from tests.service.fakes import FakeDispatcher
from trainers.ddp_probe import free_port

POSTGRES_DSN = os.environ.get(
    "EXTRAP_TEST_POSTGRES_DSN", "host=127.0.0.1 port=5432 user=postgres dbname=test"
)
ADMIN_TOKEN = "ext_test-admin-token-0123456789abcdef0123456789"
BACKENDS = ["sqlite", "postgresql"]


# -- databases -----------------------------------------------------------------------------


def _postgres_admin() -> Any:
    import psycopg

    try:
        return psycopg.connect(POSTGRES_DSN, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        pytest.fail(
            f"PostgreSQL is not reachable ({POSTGRES_DSN}): {exc}\n"
            "Start it with `make postgres` (the service tests need it; they never skip).",
            pytrace=False,
        )


@contextmanager
def postgres_database(label: str) -> Iterator[str]:
    """A fresh PostgreSQL database for the duration of the block; its SQLAlchemy URL."""
    name = f"extrap_{label}_{uuid.uuid4().hex[:8]}".lower()[:63]
    admin = _postgres_admin()
    try:
        admin.execute(f'CREATE DATABASE "{name}"')
        params = dict(part.split("=", 1) for part in POSTGRES_DSN.split())
        user = params.get("user", "postgres")
        password = f":{params['password']}" if params.get("password") else ""
        host, port = params.get("host", "127.0.0.1"), params.get("port", "5432")
        yield f"postgresql+psycopg://{user}{password}@{host}:{port}/{name}"
    finally:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


@pytest.fixture(scope="module", params=BACKENDS)
def database_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """A fresh database per test module, on each backend."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path_factory.mktemp('sqlite') / 'extrap.db'}"
        return
    with postgres_database(request.module.__name__.rsplit(".", 1)[-1]) as url:
        yield url


# -- a real server -------------------------------------------------------------------------


@dataclass
class LiveServer:
    """A uvicorn server running ``app`` in a thread."""

    app: FastAPI
    port: int
    server: uvicorn.Server
    thread: threading.Thread

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ctx(self) -> AppContext:
        ctx: AppContext = self.app.state.ctx
        return ctx

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(30)


def start_server(app: FastAPI, port: int, timeout_s: float = 60.0) -> LiveServer:
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name=f"uvicorn-{port}", daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout_s
    while not server.started:
        if not thread.is_alive():
            raise RuntimeError("the server exited during start-up (see the log above)")
        if time.monotonic() > deadline:
            server.should_exit = True
            raise RuntimeError("the server did not start in time")
        time.sleep(0.05)
    return LiveServer(app=app, port=port, server=server, thread=thread)


def make_settings(home: Path, database_url: str, port: int, **overrides: Any) -> Settings:
    data_root = home / "data"
    data_root.mkdir(parents=True, exist_ok=True)
    values: dict[str, Any] = {
        "home": home,
        "port": port,
        "database_url": database_url,
        "admin_token": ADMIN_TOKEN,
        "data_roots": [data_root],
        "max_trials_per_sweep": 50,
        "max_concurrent_trials": 4,
        "max_body_bytes": 64 * 1024,
        "heartbeat_timeout_s": 30.0,
        "max_driver_restarts": 2,
    }
    values.update(overrides)
    return Settings(**values)


@dataclass
class Api:
    """A running service with a fake cluster, and helpers to call it."""

    live: LiveServer
    fake: FakeDispatcher
    settings: Settings
    client: httpx.Client
    admin: dict[str, str] = field(default_factory=lambda: bearer(ADMIN_TOKEN))

    @property
    def url(self) -> str:
        return self.live.url

    @property
    def ctx(self) -> AppContext:
        return self.live.ctx

    def user(self, name: str | None = None, *, admin: bool = False) -> dict[str, str]:
        """Headers of a new token for a new (unique) user."""
        name = name or f"user-{uuid.uuid4().hex[:8]}"
        with self.ctx.db.write() as session:
            issued = create_token(session, user_name=name, admin=admin)
        return bearer(issued.token)

    def submit(self, headers: dict[str, str], spec: dict[str, Any] | None = None) -> str:
        response = self.client.post("/v1/sweeps", json=spec or make_spec(), headers=headers)
        assert response.status_code == 201, response.text
        return str(response.json()["id"])

    def launch(self, sweep_id: str) -> dict[str, str]:
        """Launch the sweep's (fake) driver; return the driver's auth headers."""
        assert self.ctx.launcher is not None
        assert self.ctx.launcher.launch(sweep_id, expected=(SweepState.QUEUED,))
        return bearer(self.fake.last_for(sweep_id).env_vars["EXTRAP_DRIVER_TOKEN"])

    def push(self, sweep_id: str, driver: dict[str, str], *events: dict[str, Any]) -> Any:
        # json.dumps writes NaN as Python does (httpx's json= refuses it): drivers may send it.
        response = self.client.post(
            f"/internal/v1/sweeps/{sweep_id}/events",
            content=json.dumps({"events": list(events)}),
            headers={**driver, "Content-Type": "application/json"},
        )
        assert response.status_code == 200, response.text
        return response.json()

    def driven(self, headers: dict[str, str], *events: dict[str, Any]) -> str:
        """A sweep submitted, launched and sent ``events`` by its driver; its id."""
        sweep_id = self.submit(headers)
        self.push(sweep_id, self.launch(sweep_id), *events)
        return sweep_id

    def state(self, sweep_id: str) -> str:
        response = self.client.get(f"/v1/sweeps/{sweep_id}", headers=self.admin)
        return str(response.json()["state"])


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def make_spec(**overrides: Any) -> dict[str, Any]:
    """A small valid spec (mnist1d, 4 trials)."""
    spec: dict[str, Any] = {
        "name": "test-sweep",
        "job": {"workload": "mnist1d", "global_batch_size": 64, "epochs": 2},
        "space": {"lr": {"low": 0.01, "high": 1.0, "log": True}},
        "search": {"num_trials": 4},
    }
    spec.update(overrides)
    return spec


_SEQ = iter(range(1, 10**9))


def event(type_: str, **fields: Any) -> dict[str, Any]:
    """A driver event with a fresh seq and the current time."""
    return {"seq": next(_SEQ), "type": type_, "time": "2026-11-26T12:00:00+00:00", **fields}


@pytest.fixture(scope="session")
def dispatcher(ray_head: LocalRayHead) -> Iterator[RayJobDispatcher]:
    """A ``RayJobDispatcher`` on the session's head."""
    assert ray_head.info is not None
    client = RayJobDispatcher(ray_head.info.dashboard_url, token=ray_head.info.token)
    yield client
    client.close()


@pytest.fixture(scope="module")
def api(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    """A real uvicorn server on each database, with a fake cluster and no background loop."""
    port = free_port()
    settings = make_settings(tmp_path_factory.mktemp("home"), database_url, port)
    fake = FakeDispatcher()
    app = create_app(settings, dispatcher=fake, supervise=False)
    live = start_server(app, port)
    client = httpx.Client(base_url=live.url, timeout=30.0)
    try:
        yield Api(live=live, fake=fake, settings=settings, client=client)
    finally:
        client.close()
        live.stop()
