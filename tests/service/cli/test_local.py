"""`extrap ui` runs its MLflow server in a process group of its own and stops all of it on a
signal (service.cli.local.run_process_group): real processes, real signals."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

# The "server": a child that starts a grandchild (as MLflow starts its workers), both sleeping.
SERVER = """
import os, subprocess, sys, time
worker = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
open(sys.argv[1], "w").write(f"{os.getpid()} {worker.pid}")
time.sleep(600)
"""

UI = """
import os, sys
from service.cli.local import run_process_group
sys.exit(run_process_group([sys.executable, "-c", sys.argv[1], sys.argv[2]], env=dict(os.environ)))
"""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is gone for our purpose
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_stops_the_server_and_its_workers(tmp_path: Path, sig: signal.Signals) -> None:
    pids_file = tmp_path / "pids"
    ui = subprocess.Popen([sys.executable, "-c", UI, SERVER, str(pids_file)])
    deadline = time.monotonic() + 30
    while not (pids_file.exists() and pids_file.read_text().strip()):
        assert time.monotonic() < deadline, "the server never started"
        assert ui.poll() is None, "the ui process exited early"
        time.sleep(0.05)
    server, worker = (int(p) for p in pids_file.read_text().split())
    assert _alive(server) and _alive(worker)

    ui.send_signal(sig)
    assert ui.wait(timeout=40) == 0
    deadline = time.monotonic() + 10
    while (_alive(server) or _alive(worker)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(server), "the MLflow server outlived `extrap ui`"
    assert not _alive(worker), "a server worker outlived `extrap ui`"


def test_without_a_signal_the_server_s_exit_code_is_returned(tmp_path: Path) -> None:
    ui = subprocess.run(
        [sys.executable, "-c", UI, "import sys; sys.exit(3)", str(tmp_path / "unused")],
        timeout=30,
    )
    assert ui.returncode == 3
