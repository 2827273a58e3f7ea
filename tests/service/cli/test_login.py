"""``extrap login`` and where the CLI finds the service and its token."""

from __future__ import annotations

import json
import stat
import tomllib
from pathlib import Path

import pytest

from service.cli.config import (
    DEFAULT_API_URL,
    CliConfig,
    load_config,
    resolve_api_url,
    resolve_token,
    save_config,
)
from tests.service.cli.conftest import Cli
from tests.service.conftest import free_port

NOT_FROM_ENV = {"EXTRAP_API_URL": None, "EXTRAP_TOKEN": None}


def test_login_writes_the_config_and_later_commands_use_it(cli: Cli) -> None:
    sweep_id = cli.api.submit(cli.headers)
    result = cli.invoke("login", "--token", cli.token, "--api-url", cli.api.url, **NOT_FROM_ENV)
    assert result.exit_code == 0, result.output
    assert f"logged in to {cli.api.url}" in result.stdout
    assert stat.S_IMODE(cli.config.stat().st_mode) == 0o600
    saved = tomllib.loads(cli.config.read_text())
    assert saved == {"api_url": cli.api.url, "token": cli.token}
    listed = cli.run("list", "--json", **NOT_FROM_ENV)  # a fresh process reads the file
    assert listed.returncode == 0, listed.stderr
    assert [s["id"] for s in json.loads(listed.stdout)["data"]] == [sweep_id]


def test_login_asks_for_the_token_when_not_given(cli: Cli) -> None:
    result = cli.invoke("login", input=cli.token + "\n", EXTRAP_TOKEN=None)
    assert result.exit_code == 0, result.output
    assert cli.token not in result.output  # not echoed
    assert load_config(cli.config).token == cli.token


def test_login_with_a_rejected_token_saves_nothing(cli: Cli) -> None:
    result = cli.invoke("login", "--token", "ext_wrong", EXTRAP_TOKEN=None)
    assert result.exit_code == 1
    assert "rejected this token; nothing saved" in result.stderr
    assert not cli.config.exists()


def test_login_without_a_service_saves_with_a_warning(cli: Cli) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    result = cli.invoke("login", "--token", "ext_later", "--api-url", url)
    assert result.exit_code == 0, result.output
    assert "warning: token not checked" in result.stderr
    assert load_config(cli.config) == CliConfig(api_url=url, token="ext_later")


def test_the_option_beats_the_environment_beats_the_file(cli: Cli) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    save_config(CliConfig(api_url=dead, token="ext_wrong"), cli.config)
    # EXTRAP_API_URL and EXTRAP_TOKEN (the fixture's) beat the file: this works.
    assert cli.run("list").returncode == 0
    # --api-url beats EXTRAP_API_URL.
    refused = cli.run("list", "--api-url", dead)
    assert refused.returncode == 1 and dead in refused.stderr
    # Without the environment, the file's URL is used.
    from_file = cli.run("list", **NOT_FROM_ENV)
    assert from_file.returncode == 1 and dead in from_file.stderr
    # The file's token is used when EXTRAP_TOKEN is unset: here, a wrong one.
    rejected = cli.run("list", EXTRAP_TOKEN=None)
    assert rejected.returncode == 1 and "rejected the token" in rejected.stderr


def test_resolution_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EXTRAP_CONFIG", str(tmp_path / "none.toml"))
    monkeypatch.delenv("EXTRAP_API_URL", raising=False)
    monkeypatch.delenv("EXTRAP_TOKEN", raising=False)
    assert resolve_api_url() == DEFAULT_API_URL and resolve_token() is None
    monkeypatch.setenv("EXTRAP_API_URL", "http://env:1/")
    assert resolve_api_url() == "http://env:1"
    assert resolve_api_url("http://option:2") == "http://option:2"


def test_a_broken_config_file_is_one_line(cli: Cli) -> None:
    cli.config.parent.mkdir(parents=True)
    cli.config.write_text("api_url = \n")
    result = cli.run("list", **NOT_FROM_ENV)
    assert result.returncode == 1
    assert result.stderr.startswith(f"error: {cli.config} is not valid TOML")
