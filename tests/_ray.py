"""A private Ray head for the test session (one for every test that needs Ray).

Started with ``ray start`` on free ports and its own temp dir, and with ``RAY_ADDRESS`` set in
its environment: Ray Train's helper actors look the cluster up by address, and with several
Ray instances on one machine (a developer's, a service's) "auto" finds more than one and fails.
Stopped by killing exactly the processes of its temp dir, never other Rays on the machine.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from trainers.ddp_probe import free_port


@dataclass(frozen=True)
class RayHead:
    gcs_address: str
    dashboard_url: str
    temp_dir: Path

    def stop(self) -> None:
        marker = str(self.temp_dir)
        for signum in (signal.SIGTERM, signal.SIGKILL):
            pids = _pids_with(marker)
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signum)
            deadline = time.time() + 10
            while pids and time.time() < deadline:
                pids = _pids_with(marker)
                time.sleep(0.2)


def _pids_with(marker: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if marker in cmdline:
            found.append(int(entry.name))
    return found


def start_head(*, num_cpus: int = 2, train_driver_slots: int = 2) -> RayHead:
    port, dashboard = free_port(), free_port()
    temp_dir = Path(f"/tmp/ray-test-{port}")
    address = f"127.0.0.1:{port}"
    env = {**os.environ, "RAY_ADDRESS": address}
    subprocess.run(
        [
            str(Path(sys.executable).with_name("ray")),
            "start",
            "--head",
            f"--port={port}",
            f"--num-cpus={num_cpus}",
            f"--resources={json.dumps({'train_driver': train_driver_slots})}",
            "--dashboard-host=127.0.0.1",
            f"--dashboard-port={dashboard}",
            f"--temp-dir={temp_dir}",
            "--disable-usage-stats",
        ],
        env=env,
        check=True,
        capture_output=True,
    )
    return RayHead(address, f"http://127.0.0.1:{dashboard}", temp_dir)
