"""Start-up and restart: the first admin token, and nothing lost across an API restart."""

from __future__ import annotations

import stat
from pathlib import Path

import httpx
import pytest

from service.server.api.main import create_app
from service.wire import SweepState
from tests.service.conftest import (
    ADMIN_TOKEN,
    LiveServer,
    bearer,
    event,
    free_port,
    make_settings,
    make_spec,
    start_server,
)
from tests.service.fakes import FakeDispatcher


def test_first_start_generates_an_admin_token_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    home = tmp_path / "home"
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    tokens = []
    for _ in range(2):
        port = free_port()
        settings = make_settings(home, url, port, admin_token=None)
        live = start_server(
            create_app(settings, dispatcher=FakeDispatcher(), supervise=False), port
        )
        try:
            path = home / "admin-token"
            token = path.read_text().strip()
            assert stat.S_IMODE(path.stat().st_mode) == 0o600
            assert httpx.get(f"{live.url}/v1/sweeps", headers=bearer(token)).status_code == 200
            tokens.append(token)
        finally:
            live.stop()
    assert tokens[0] == tokens[1]  # generated on the first start only
    assert capsys.readouterr().err.count("admin token") == 1


def test_restarting_the_api_loses_nothing(database_url: str, tmp_path: Path) -> None:
    home = tmp_path / "home"
    fake = FakeDispatcher()
    admin = bearer(ADMIN_TOKEN)

    def serve() -> LiveServer:
        port = free_port()
        settings = make_settings(home, database_url, port)
        return start_server(create_app(settings, dispatcher=fake, supervise=False), port)

    live = serve()
    try:
        sweep_id = httpx.post(f"{live.url}/v1/sweeps", json=make_spec(), headers=admin).json()["id"]
        assert live.ctx.launcher is not None
        live.ctx.launcher.launch(sweep_id, expected=(SweepState.QUEUED,))
        driver = bearer(fake.last_for(sweep_id).env_vars["EXTRAP_DRIVER_TOKEN"])
        events = [
            event("sweep_running"),
            event("trial_started", trial_id="t", number=1, params={"lr": 0.1}),
            event("trial_metrics", trial_id="t", epoch=1, metrics={"val_accuracy": 0.5}),
            event("trial_finished", trial_id="t", status="completed"),
        ]
        push = f"{live.url}/internal/v1/sweeps/{sweep_id}/events"
        assert httpx.post(push, json={"events": events}, headers=driver).status_code == 200
        before = httpx.get(f"{live.url}/v1/sweeps/{sweep_id}/trials/t", headers=admin).json()
    finally:
        live.stop()
    live = serve()  # a new process would see the same: everything is in the database
    try:
        shown = httpx.get(f"{live.url}/v1/sweeps/{sweep_id}", headers=admin).json()
        assert shown["state"] == "running" and shown["trial_counts"]["completed"] == 1
        after = httpx.get(f"{live.url}/v1/sweeps/{sweep_id}/trials/t", headers=admin).json()
        assert after == before
        # the driver's token survives the restart, and its resent events change nothing
        push = f"{live.url}/internal/v1/sweeps/{sweep_id}/events"
        again = httpx.post(push, json={"events": events}, headers=driver).json()
        assert again["applied"] == 0
    finally:
        live.stop()
