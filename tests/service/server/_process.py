"""The API as a process of its own (``_serve.py``), for tests that measure or stress it.

:func:`server_process` starts it on a free port with the given settings and waits until it
answers; the test process shares its database (to issue tokens and launch sweeps the way the
service does) and reads its log file and its memory.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from service.server.auth import create_token
from service.server.db import Database
from service.server.launcher import Launcher
from service.server.migrations import upgrade
from service.settings import Settings
from service.wire import SweepState
from tests.service.conftest import ADMIN_TOKEN, bearer, make_settings
from tests.service.fakes import FakeDispatcher
from trainers.ddp_probe import free_port

REPO = Path(__file__).resolve().parents[3]


@dataclass
class ServerProcess:
    """A running ``_serve.py`` and what the test needs to drive it."""

    process: subprocess.Popen[bytes]
    settings: Settings
    log_path: Path
    db: Database

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.settings.port}"

    @property
    def admin(self) -> dict[str, str]:
        return bearer(ADMIN_TOKEN)

    def rss_mb(self) -> float:
        """The server process's resident memory."""
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        raise AssertionError("no VmRSS")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def user(self, name: str) -> dict[str, str]:
        """Headers of a new token of ``name`` (created in the shared database)."""
        with self.db.write() as session:
            return bearer(create_token(session, user_name=name).token)

    def launch(self, sweep_id: str) -> dict[str, str]:
        """Launch the sweep as the service does (state ``starting``); the driver's headers."""
        fake = FakeDispatcher()
        launcher = Launcher(db=self.db, dispatcher=fake, settings=self.settings)
        assert launcher.launch(sweep_id, expected=(SweepState.QUEUED,))
        return bearer(fake.last_for(sweep_id).env_vars["EXTRAP_DRIVER_TOKEN"])

    def push(
        self, client: httpx.Client, sweep_id: str, driver: dict[str, str], *events: Any
    ) -> Any:
        response = client.post(
            f"/internal/v1/sweeps/{sweep_id}/events",
            content=json.dumps({"events": list(events)}),
            headers={**driver, "Content-Type": "application/json"},
        )
        assert response.status_code == 200, response.text
        return response.json()


@contextmanager
def server_process(
    home: Path,
    database_url: str,
    *,
    fake_cluster: bool = True,
    supervise: bool = False,
    fault_route: bool = False,
    **overrides: Any,
) -> Iterator[ServerProcess]:
    """A server process on a free port; ``overrides`` are settings."""
    port = free_port()
    settings = make_settings(home, database_url, port, **overrides)
    env = {**os.environ, "PYTHONPATH": str(REPO), **_environment(settings)}
    log_path = home / "server.log"
    argv = [sys.executable, "-m", "tests.service.server._serve"]
    argv += ["--fake-cluster"] if fake_cluster else []
    argv += ["--supervise"] if supervise else []
    argv += ["--fault-route"] if fault_route else []
    db = Database(settings.resolved_database_url)
    upgrade(db)
    with log_path.open("wb") as log:
        process = subprocess.Popen(argv, cwd=REPO, env=env, stdout=log, stderr=log)
    server = ServerProcess(process=process, settings=settings, log_path=log_path, db=db)
    try:
        _wait_until_up(server)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
        db.dispose()


def _environment(settings: Settings) -> dict[str, str]:
    env: dict[str, str] = {}
    for name, value in settings.model_dump().items():
        if value is None:
            continue
        if name == "admin_token":
            value = settings.admin_token.get_secret_value() if settings.admin_token else None
        elif name == "data_roots":
            value = ":".join(str(root) for root in value)
        env[f"EXTRAP_{name.upper()}"] = str(value)
    return env


def _wait_until_up(server: ServerProcess, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"the server exited ({server.process.returncode}):\n{server.log()}")
        try:
            if httpx.get(f"{server.url}/healthz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"the server did not start:\n{server.log()}")
