"""``extrap --help`` is instant: nothing heavy is imported on its path."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

from tests.service.cli.conftest import EXTRAP

HEAVY = ("torch", "ray", "mlflow", "optuna", "fastapi", "sqlalchemy", "httpx", "uvicorn")


def test_help_is_fast_and_lists_every_command() -> None:
    timings = []
    for _ in range(3):
        started = time.perf_counter()
        result = subprocess.run(
            [EXTRAP, "--help"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            env={**os.environ, "COLUMNS": "200"},
        )
        timings.append(time.perf_counter() - started)
        assert result.returncode == 0, result.stderr
    shown = ", ".join(f"{t:.3f}" for t in timings)
    print(f"\nextrap --help: best {min(timings):.3f} s ({shown})")
    assert min(timings) < 5.0  # a sanity bound only: the machine may be busy
    for command in (
        "submit",
        "list",
        "show",
        "watch",
        "trials",
        "best",
        "cancel",
        "resume",
        "delete",
        "logs",
        "login",
        "serve",
        "admin",
        "validate",
        "run",
    ):
        assert f" {command} " in result.stdout, command


def test_the_cli_imports_nothing_heavy() -> None:
    code = (
        "import sys, json; import service.cli.main; "
        f"print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert json.loads(result.stdout.strip().splitlines()[-1]) == []


def test_every_command_has_help() -> None:
    for command in (
        "submit",
        "list",
        "show",
        "watch",
        "trials",
        "trial",
        "best",
        "cancel",
        "resume",
        "delete",
        "logs",
        "login",
        "serve",
    ):
        result = subprocess.run(
            [EXTRAP, command, "--help"], capture_output=True, text=True, timeout=60, check=False
        )
        assert result.returncode == 0, (command, result.stderr)
        assert "Example" in result.stdout, command
