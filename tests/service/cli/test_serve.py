"""``extrap serve``: the service on the embedded defaults, started and stopped as a process.

``EXTRAP_RAY_ADDRESS`` points at a port nobody listens on, so no Ray head is started here (the
service connects to Ray lazily); the API, the database and the admin token are real.
"""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import IO

from tests.service.cli.conftest import EXTRAP
from tests.service.conftest import free_port


def _env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EXTRAP_")}
    (home / "data").mkdir(parents=True, exist_ok=True)
    env.update(
        EXTRAP_RAY_ADDRESS=f"http://127.0.0.1:{free_port()}",
        EXTRAP_DATA_ROOTS=str(home / "data"),
        EXTRAP_CONFIG=str(home / "cli-config.toml"),
        PYTHONUNBUFFERED="1",
    )
    return env


class _Served:
    """``extrap serve`` in a subprocess, its stdout read line by line."""

    def __init__(self, home: Path, port: int) -> None:
        self.env = _env(home)
        self.process = subprocess.Popen(
            [EXTRAP, "serve", "--port", str(port), "--home", str(home)],
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        assert self.process.stdout is not None
        threading.Thread(target=self._read, args=(self.process.stdout,), daemon=True).start()

    def _read(self, stdout: IO[str]) -> None:
        for line in stdout:
            self.lines.put(line)

    def read_until(self, marker: str, timeout_s: float = 90.0) -> list[str]:
        seen: list[str] = []
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.5)
            except queue.Empty:
                assert self.process.poll() is None, self.process.stderr.read()  # type: ignore[union-attr]
                continue
            seen.append(line.rstrip("\n"))
            if marker in line:
                return seen
        raise AssertionError(f"no {marker!r} in {seen}")

    def stop(self, how: signal.Signals = signal.SIGTERM) -> int:
        self.process.send_signal(how)
        return self.process.wait(timeout=60)


def test_serve_shows_the_first_admin_token_once_and_stops_on_a_signal(tmp_path: Path) -> None:
    home, port = tmp_path / "home", free_port()
    served = _Served(home, port)
    try:
        banner = served.read_until("Ctrl-C stops the service")
        text = "\n".join(banner)
        url = f"http://127.0.0.1:{port}"
        assert f"extrap service: {url}" in text
        assert f"home: {home}" in text
        assert f"more tokens: EXTRAP_HOME={home} extrap admin create-token --user NAME" in text
        token = (home / "admin-token").read_text().strip()
        assert f"admin token (first start; kept in {home / 'admin-token'}): {token}" in text
        listed = subprocess.run(
            [EXTRAP, "list", "--json", "--api-url", url],
            env={**served.env, "EXTRAP_TOKEN": token},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert listed.returncode == 0, listed.stderr
        assert '"count": 0' in listed.stdout
        assert served.stop() == 0
        served.read_until("extrap service stopped", timeout_s=10)
    finally:
        served.process.kill()

    again = _Served(home, port)  # a second start: the token is not shown again
    try:
        text = "\n".join(again.read_until("Ctrl-C stops the service"))
        assert token not in text and f"first admin token is in {home / 'admin-token'}" in text
        assert again.stop(signal.SIGINT) == 0  # Ctrl-C
        again.read_until("extrap service stopped", timeout_s=10)
    finally:
        again.process.kill()


def test_serve_on_a_busy_port_fails_at_once(tmp_path: Path) -> None:
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = subprocess.run(
            [EXTRAP, "serve", "--port", str(port), "--home", str(tmp_path)],
            env=_env(tmp_path),
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode == 1
    assert result.stderr.startswith(f"error: cannot listen on 127.0.0.1:{port}")
