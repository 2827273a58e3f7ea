"""``extrap admin``: tokens created and revoked directly in the database (no service)."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from service.cli.admin import app
from service.server.auth import authenticate
from service.server.db import Database


def _run(database_url: str, home: str, *args: str) -> tuple[int, str]:
    env = {"EXTRAP_DATABASE_URL": database_url, "EXTRAP_HOME": home}
    result = CliRunner().invoke(app, list(args), env=env)
    return result.exit_code, result.output


def test_create_and_revoke_token(database_url: str, tmp_path: Path) -> None:
    home = str(tmp_path)
    code, out = _run(database_url, home, "create-token", "--user", "carol", "--admin", "--json")
    assert code == 0, out
    issued = json.loads(out)
    assert issued["user"] == "carol" and issued["admin"] is True
    database = Database(database_url)
    try:
        with database.read() as session:
            user = authenticate(session, token=issued["token"])
            assert user is not None and user.name == "carol" and user.is_admin
        code, out = _run(database_url, home, "list-tokens", "--json")
        listed = {row["id"]: row for row in json.loads(out)}
        assert listed[issued["token_id"]]["revoked_at"] is None
        assert issued["token"] not in out  # secrets are never listed
        code, out = _run(database_url, home, "revoke-token", str(issued["token_id"]))
        assert code == 0 and "revoked" in out
        with database.read() as session:
            assert authenticate(session, token=issued["token"]) is None
        code, out = _run(database_url, home, "create-token", "--user", "dave")
        token = out.strip().splitlines()[-1]
        assert _run(database_url, home, "revoke-token", token)[0] == 0
        with database.read() as session:
            assert authenticate(session, token=token) is None
    finally:
        database.dispose()


def test_revoking_an_unknown_token_fails(database_url: str, tmp_path: Path) -> None:
    code, out = _run(database_url, str(tmp_path), "revoke-token", "999999")
    assert code == 1 and "no such token" in out
