"""A service on a fixed port and database that a test can stop and start again, with the
real driver as a Ray job on the session's head (the ``service`` fixture of this folder)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import httpx

from service.server.api.main import create_app
from service.server.dispatch import RayJobDispatcher
from tests.service.conftest import (
    ADMIN_TOKEN,
    LiveServer,
    bearer,
    free_port,
    make_settings,
    start_server,
)

__all__ = ["ADMIN", "Service"]

ADMIN = bearer(ADMIN_TOKEN)


class Service:
    """A service on a fixed port and database that a test can stop and start again."""

    def __init__(
        self, home: Path, dispatcher: RayJobDispatcher, data_dir: Path, **settings: Any
    ) -> None:
        self.port = free_port()
        self.settings = make_settings(
            home,
            f"sqlite:///{home / 'extrap.db'}",
            self.port,
            **{
                "data_roots": [data_dir],
                "reconcile_interval_s": 2.0,
                "heartbeat_timeout_s": 90.0,
                "max_driver_restarts": 2,
                **settings,
            },
        )
        self.dispatcher = dispatcher
        self.live: LiveServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.live = start_server(create_app(self.settings, dispatcher=self.dispatcher), self.port)

    def stop(self) -> None:
        if self.live is not None:
            self.live.stop()
            self.live = None

    def get(self, path: str, **params: Any) -> Any:
        response = httpx.get(f"{self.url}{path}", headers=ADMIN, params=params, timeout=30)
        response.raise_for_status()
        return response.json()

    def submit(self, spec: dict[str, Any]) -> str:
        response = httpx.post(f"{self.url}/v1/sweeps", json=spec, headers=ADMIN, timeout=60)
        assert response.status_code == 201, response.text
        return str(response.json()["id"])

    def wait(self, sweep_id: str, done: Any, timeout_s: float = 400.0) -> dict[str, Any]:
        """Poll the sweep until ``done(sweep)`` holds."""
        deadline = time.monotonic() + timeout_s
        sweep: dict[str, Any] = {}
        while time.monotonic() < deadline:
            try:
                sweep = self.get(f"/v1/sweeps/{sweep_id}")
            except httpx.HTTPError:
                sweep = {}
            if sweep and done(sweep):
                return sweep
            time.sleep(1.0)
        raise AssertionError(f"timed out; last seen: {json.dumps(sweep)[:2000]}")
