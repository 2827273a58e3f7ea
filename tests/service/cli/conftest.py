"""Fixtures of the CLI tests: the ``extrap`` command against a real running service.

``cli`` runs commands in-process (``typer.testing.CliRunner``) or as the installed ``extrap``
executable in a subprocess, with ``EXTRAP_API_URL`` and ``EXTRAP_TOKEN`` pointing at the
module's ``api`` server and ``EXTRAP_CONFIG`` at a file of the test's own.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner, Result

from service.cli.main import app
from service.server.auth import create_token
from tests.service.conftest import Api, make_spec

EXTRAP = str(Path(sys.executable).with_name("extrap"))
_OUR_VARIABLES = ("EXTRAP_API_URL", "EXTRAP_TOKEN", "EXTRAP_CONFIG")


@dataclass
class Cli:
    """Runs ``extrap`` as one user of the ``api`` server."""

    api: Api
    token: str
    config: Path
    user: str
    extra_env: dict[str, str] = field(default_factory=dict)

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def env(self, **overrides: str | None) -> dict[str, str | None]:
        values: dict[str, str | None] = {
            "EXTRAP_API_URL": self.api.url,
            "EXTRAP_TOKEN": self.token,
            "EXTRAP_CONFIG": str(self.config),
            "COLUMNS": "200",
            "NO_COLOR": "1",
            **self.extra_env,
        }
        values.update(overrides)
        return values

    def invoke(self, *args: str, input: str | None = None, **env: str | None) -> Result:
        """``extrap ARGS`` in this process (``input``: what is typed at its prompts)."""
        return CliRunner().invoke(app, list(args), input=input, env=self.env(**env))

    def popen_env(self, **env: str | None) -> dict[str, str]:
        merged = {k: v for k, v in os.environ.items() if k not in _OUR_VARIABLES}
        for key, value in self.env(**env).items():
            if value is None:
                merged.pop(key, None)
            else:
                merged[key] = value
        return merged

    def run(self, *args: str, **env: str | None) -> subprocess.CompletedProcess[str]:
        """``extrap ARGS`` as a subprocess (the installed executable)."""
        return subprocess.run(
            [EXTRAP, *args],
            env=self.popen_env(**env),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    def popen(self, *args: str, **env: str | None) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [EXTRAP, *args],
            env=self.popen_env(**env),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def spec_file(self, directory: Path, **overrides: Any) -> Path:
        """A valid spec as a YAML file."""
        path = directory / f"spec-{uuid.uuid4().hex[:6]}.yaml"
        path.write_text(yaml.safe_dump(make_spec(**overrides), sort_keys=False))
        return path

    def wait_for_stream(self, sweep_id: str, timeout_s: float = 30.0) -> None:
        """Until an SSE stream follows the sweep (the watcher is connected)."""
        deadline = time.monotonic() + timeout_s
        while sweep_id not in self.api.ctx.broker._waiters:
            assert time.monotonic() < deadline, "nobody subscribed to the sweep's events"
            time.sleep(0.05)


@pytest.fixture
def cli(api: Api, tmp_path: Path) -> Iterator[Cli]:
    """A fresh user of the module's service, and an empty config file location."""
    name = f"cli-{uuid.uuid4().hex[:8]}"
    with api.ctx.db.write() as session:
        token = create_token(session, user_name=name).token
    yield Cli(api=api, token=token, config=tmp_path / "config" / "config.toml", user=name)
