"""Exit codes and one-line error messages of the installed ``extrap`` executable."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.service.cli.conftest import Cli
from tests.service.conftest import event, free_port


def _one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    return lines[0]


def test_connection_refused_names_the_url_and_extrap_serve(cli: Cli) -> None:
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    result = cli.run("list", "--api-url", url)
    assert result.returncode == 1
    line = _one_error_line(result)
    assert url in line and "connection refused" in line and "`extrap serve`" in line
    assert result.stdout == ""


def test_an_unknown_token_says_how_to_get_one(cli: Cli) -> None:
    result = cli.run("list", EXTRAP_TOKEN="ext_not-a-real-token")
    assert result.returncode == 1
    line = _one_error_line(result)
    assert "rejected the token" in line and cli.api.url in line
    assert "extrap login --token" in line and "EXTRAP_TOKEN" in line
    assert "extrap admin create-token --user NAME" in line


def test_no_token_at_all_says_none_is_configured(cli: Cli) -> None:
    result = cli.run("show", "whatever", EXTRAP_TOKEN=None)
    assert result.returncode == 1
    line = _one_error_line(result)
    assert "none is configured" in line and "extrap login --token" in line


def test_an_invalid_spec_prints_each_field_error(cli: Cli, tmp_path: Path) -> None:
    spec = tmp_path / "bad.yaml"
    spec.write_text(
        "name: bad\n"
        "job: {workload: mnist1d, global_batch_size: 64, epochs: 2}\n"
        "space: {lr: {low: 1.0, high: 0.1}}\n"
        "search: {num_trials: 0}\n"
    )
    result = cli.run("submit", str(spec))
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 3, result.stderr
    assert lines[0].startswith(f"{spec}: space.lr.low: low=1.0 is above high=0.1")
    assert lines[1].startswith(f"{spec}: search.num_trials: ")
    assert lines[2] == f"error: {spec} is not a valid sweep spec (2 problem(s))"
    assert cli.api.client.get("/v1/sweeps", headers=cli.headers).json()["count"] == 0


def test_an_unknown_sweep_is_not_found(cli: Cli) -> None:
    result = cli.run("show", "doesnotexist")
    assert result.returncode == 1
    assert _one_error_line(result) == "error: sweep 'doesnotexist' not found"


def test_cancelling_a_finished_sweep_names_its_state(cli: Cli) -> None:
    sweep_id = cli.api.submit(cli.headers)
    driver = cli.api.launch(sweep_id)
    cli.api.push(
        sweep_id, driver, event("sweep_running"), event("sweep_finished", state="succeeded")
    )
    result = cli.run("cancel", sweep_id)
    assert result.returncode == 1
    line = _one_error_line(result)
    assert line == f"error: sweep {sweep_id}: cannot cancel a sweep that is succeeded"


def test_an_oversized_spec_is_refused(cli: Cli, tmp_path: Path) -> None:
    spec = cli.spec_file(tmp_path, description="x" * (cli.api.settings.max_body_bytes + 1))
    result = cli.run("submit", str(spec))
    assert result.returncode == 1
    line = _one_error_line(result)
    assert line.startswith(f"error: {spec}: ") and "exceeds the limit of 65536 bytes" in line


def test_a_missing_spec_file_is_a_usage_error(cli: Cli, tmp_path: Path) -> None:
    result = cli.run("submit", str(tmp_path / "nope.yaml"))
    assert result.returncode == 2
    assert "does not exist" in result.stderr
