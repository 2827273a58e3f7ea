"""`extrap run --json`: standard output is the outcome as JSON and nothing else, so
`extrap run spec.yaml --json | jq` works (Ray's and Tune's output go to stderr)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.conftest import tiny_spec

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

_SHARED_RAY = {"RAY_ADDRESS", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH"}


def test_run_json_prints_only_json_on_stdout(test_data_dir: Path, tmp_path: Path) -> None:
    data = tiny_spec(test_data_dir, num_trials=1, scheduler="fifo")
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump(data))
    # A new local Ray of its own, as a user's first `extrap run` (not the tests' shared one).
    env = {k: v for k, v in os.environ.items() if k not in _SHARED_RAY}
    env.update(EXTRAP_HOME=str(tmp_path / "home"), RAY_USAGE_STATS_ENABLED="0")
    env["RAY_AUTH_MODE"] = "disabled"
    servers_before = _ray_gcs_servers()
    done = subprocess.run(
        [str(Path(sys.executable).with_name("extrap")), "run", str(spec), "--json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=280,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    outcome = json.loads(done.stdout)  # the whole of stdout is one JSON document
    assert outcome["state"] == "succeeded", outcome
    assert done.stderr.strip(), "Ray and Tune printed nothing at all: the test shows nothing"
    # The console script ends without the interpreter's teardown, but after Ray's shutdown:
    # the local Ray it started is gone with it.
    deadline = time.time() + 30
    while _ray_gcs_servers() - servers_before and time.time() < deadline:
        time.sleep(0.5)
    assert not _ray_gcs_servers() - servers_before, "the run's local Ray outlived it"


def _ray_gcs_servers() -> set[int]:
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                command = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if b"gcs_server" in command.split(b"\0", 1)[0]:
                found.add(int(entry.name))
    return found
