"""The embedded default's Ray head: started, adopted and stopped by the service.

``extrap serve`` without ``EXTRAP_RAY_ADDRESS`` runs ``ray start --head --block`` (the ``ray``
next to this Python) in its own session and records it in ``<home>/ray-head.json``. A later
start finds the record, and if that head still answers it is adopted instead of starting a
second one (its running sweeps carry on). Stopping sends SIGTERM to that ``ray start --block``
process, which shuts down the processes it started; it was started as a session leader, so its
process group is exactly the head's processes, and whatever of it is left after a grace period
is SIGKILLed. Other Ray instances on the machine (``ray stop`` would kill every one of the
user's) are untouched.

Choices, and why:

- **Token authentication on.** The GCS and the workers listen on the machine's address, not
  only on loopback, so on a shared machine anyone could submit code to an unauthenticated head.
  The head gets a generated token (``<home>/ray-auth-token``, mode 0600) through
  ``RAY_AUTH_MODE=token`` and ``RAY_AUTH_TOKEN``; its jobs inherit them, so the sweep driver's
  ``ray.init()`` authenticates without configuration.
- **Ports are all picked free** (GCS, dashboard — 8265 when free —, agents, client server,
  metrics; workers get random ports) so that several heads can share a machine.
- **Its own temp dir** (``/tmp/extrap-ray-<hash of home>``): Ray's ``ray_current_cluster``
  file lands there, not in ``/tmp/ray``, so a plain ``ray.init()`` elsewhere does not attach to
  the service's head; it is short because Ray's socket paths must stay under 108 bytes.
- **The venv's ``bin`` first on the head's PATH**, so a job's ``python`` is this Python, and
  ``RAY_ADDRESS`` set to the head itself, so processes on it never guess which Ray to join.

Example:
    >>> head = LocalRayHead(Path("/tmp/extrap-home"))  # doctest: +SKIP
    >>> info = head.start()                             # doctest: +SKIP
    >>> info.dashboard_url                              # doctest: +SKIP
    'http://127.0.0.1:8265'
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import httpx

from service.server.dispatch.ray_auth import ray_auth_headers

__all__ = ["HeadInfo", "LocalRayHead", "RayHeadError"]

log = logging.getLogger(__name__)

STATE_FILE = "ray-head.json"
TOKEN_FILE = "ray-auth-token"
LOG_FILE = "ray-head.log"
DEFAULT_DASHBOARD_PORT = 8265
TRAIN_DRIVER_RESOURCE = "train_driver"


class RayHeadError(RuntimeError):
    """The local head could not be started."""


@dataclass(frozen=True)
class HeadInfo:
    """What ``<home>/ray-head.json`` records about a running head."""

    pid: int
    gcs_address: str
    dashboard_url: str
    temp_dir: str
    token_file: str | None
    started_at: float

    @property
    def token(self) -> str | None:
        if self.token_file is None:
            return None
        try:
            return Path(self.token_file).read_text(encoding="utf-8").strip() or None
        except OSError:
            return None


def _free_port(preferred: int | None = None) -> int:
    for port in ([preferred] if preferred else []) + [0]:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return int(sock.getsockname()[1])
    raise RayHeadError("no free port")  # pragma: no cover - bind(0) always succeeds


def _pid_cmdline(pid: int) -> str | None:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        try:
            os.kill(pid, 0)
        except OSError:
            return None
        return ""  # alive, but no /proc (not Linux): cannot check further
    return raw.replace(b"\0", b" ").decode(errors="replace")


class LocalRayHead:
    """A Ray head owned by the service, for the embedded default.

    Args:
        home: the service's state directory (record, token and log go there).
        num_cpus: CPUs the head offers (default: ``os.cpu_count()``).
        train_driver_slots: units of the ``train_driver`` resource that trials hold (default:
            the CPU count: at most one trial per CPU).
        token_auth: run the head with token authentication (see the module docstring).
        start_timeout_s: how long to wait for the dashboard to answer.
    """

    def __init__(
        self,
        home: Path,
        *,
        num_cpus: int | None = None,
        train_driver_slots: int | None = None,
        token_auth: bool = True,
        start_timeout_s: float = 120.0,
    ) -> None:
        self.home = Path(home)
        self.num_cpus = num_cpus or os.cpu_count() or 1
        self.train_driver_slots = train_driver_slots or self.num_cpus
        self.token_auth = token_auth
        self.start_timeout_s = start_timeout_s
        digest = hashlib.sha256(str(self.home.resolve()).encode()).hexdigest()[:10]
        self.temp_dir = Path(tempfile.gettempdir()) / f"extrap-ray-{digest}"
        self.info: HeadInfo | None = None
        self.adopted = False
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def state_file(self) -> Path:
        return self.home / STATE_FILE

    # -- start / adopt ----------------------------------------------------------------------

    def start(self) -> HeadInfo:
        """Adopt the recorded head if it answers, else start a new one; return its record."""
        recorded = self.recorded()
        if recorded is not None and self._answers(recorded):
            log.info("adopting the Ray head at %s (pid %d)", recorded.dashboard_url, recorded.pid)
            self.info, self.adopted = recorded, True
            return recorded
        if recorded is not None:
            self._terminate(recorded)  # a half-dead head of ours: clear it before a new one
        self.info, self.adopted = self._launch(), False
        return self.info

    def recorded(self) -> HeadInfo | None:
        """The head ``<home>/ray-head.json`` describes, if the file is readable."""
        try:
            return HeadInfo(**json.loads(self.state_file.read_text(encoding="utf-8")))
        except (OSError, ValueError, TypeError):
            return None

    def _is_ours(self, info: HeadInfo) -> bool:
        cmdline = _pid_cmdline(info.pid)
        return cmdline is not None and (cmdline == "" or info.temp_dir in cmdline)

    def _answers(self, info: HeadInfo) -> bool:
        if not self._is_ours(info):
            return False
        try:
            response = httpx.get(
                f"{info.dashboard_url}/api/version",
                headers=ray_auth_headers(info.token),
                timeout=5.0,
            )
        except httpx.HTTPError:
            return False
        return response.status_code == 200

    def _token(self) -> str | None:
        if not self.token_auth:
            return None
        path = self.home / TOKEN_FILE
        with contextlib.suppress(OSError):
            existing = path.read_text(encoding="utf-8").strip()
            if existing:
                return existing
        token = secrets.token_hex(32)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(token)
        return token

    def _launch(self) -> HeadInfo:
        self.home.mkdir(parents=True, exist_ok=True)
        token = self._token()
        ports = {
            "--port": _free_port(),
            "--dashboard-port": _free_port(DEFAULT_DASHBOARD_PORT),
            "--ray-client-server-port": _free_port(),
            "--node-manager-port": _free_port(),
            "--object-manager-port": _free_port(),
            "--dashboard-agent-listen-port": _free_port(),
            "--dashboard-agent-grpc-port": _free_port(),
            "--runtime-env-agent-port": _free_port(),
            "--metrics-export-port": _free_port(),
        }
        ray = Path(sys.executable).parent / "ray"
        command = [
            str(ray) if ray.exists() else "ray",
            "start",
            "--head",
            "--block",
            "--num-cpus",
            str(self.num_cpus),
            "--resources",
            json.dumps({TRAIN_DRIVER_RESOURCE: self.train_driver_slots}),
            "--dashboard-host",
            "127.0.0.1",
            "--include-dashboard",
            "true",
            "--min-worker-port",
            "0",
            "--max-worker-port",
            "0",
            "--temp-dir",
            str(self.temp_dir),
            "--disable-usage-stats",
        ]
        for flag, port in ports.items():
            command += [flag, str(port)]
        env = dict(os.environ)
        env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
        env["RAY_USAGE_STATS_ENABLED"] = "0"
        # Ray Train's helper actors find their cluster through RAY_ADDRESS; without it they
        # look for "auto" and fail when several Ray instances share the machine.
        env["RAY_ADDRESS"] = f"127.0.0.1:{ports['--port']}"
        if token:
            env["RAY_AUTH_MODE"] = "token"
            env["RAY_AUTH_TOKEN"] = token
        else:
            env["RAY_AUTH_MODE"] = "disabled"
            env.pop("RAY_AUTH_TOKEN", None)
        log_path = self.home / LOG_FILE
        with open(log_path, "ab") as log_file:
            process = subprocess.Popen(
                command,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                cwd=self.home,
                start_new_session=True,  # Ctrl-C on `extrap serve` must not reach the head
            )
        self._process = process
        info = HeadInfo(
            pid=process.pid,
            gcs_address=f"127.0.0.1:{ports['--port']}",
            dashboard_url=f"http://127.0.0.1:{ports['--dashboard-port']}",
            temp_dir=str(self.temp_dir),
            token_file=str(self.home / TOKEN_FILE) if token else None,
            started_at=time.time(),
        )
        self._wait_ready(info, process, log_path)
        self.state_file.write_text(json.dumps(asdict(info), indent=2), encoding="utf-8")
        log.info("started a Ray head at %s (pid %d)", info.dashboard_url, info.pid)
        return info

    def _wait_ready(self, info: HeadInfo, process: subprocess.Popen[bytes], log_path: Path) -> None:
        deadline = time.monotonic() + self.start_timeout_s
        headers = ray_auth_headers(info.token)
        while time.monotonic() < deadline:
            if process.poll() is not None:
                tail = log_path.read_text(errors="replace")[-3000:]
                raise RayHeadError(f"`ray start --head` exited with {process.returncode}:\n{tail}")
            try:
                nodes = httpx.get(
                    f"{info.dashboard_url}/api/v0/nodes", headers=headers, timeout=5.0
                )
                if nodes.status_code == 200 and nodes.json()["data"]["result"]["result"]:
                    return
            except (httpx.HTTPError, KeyError, ValueError):
                pass
            time.sleep(0.5)
        self._terminate(info)
        raise RayHeadError(f"the Ray head did not answer within {self.start_timeout_s:.0f} s")

    # -- stop -------------------------------------------------------------------------------

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop the head this object started or adopted, and forget its record."""
        if self.info is None:
            return
        self._terminate(self.info, timeout_s)
        with contextlib.suppress(OSError):
            self.state_file.unlink()
        self.info = None

    def _terminate(self, info: HeadInfo, timeout_s: float = 10.0) -> None:
        if not self._is_ours(info):
            return  # gone already, or the pid now belongs to someone else
        # `ray start --block` shuts its processes down on SIGTERM. It was started as a session
        # leader, so its process group holds exactly the head's processes: whatever is left
        # after the grace period (after Train runs the raylet can take a minute) is SIGKILLed.
        leader = _group_leader(info.pid)
        with contextlib.suppress(ProcessLookupError):
            os.kill(info.pid, signal.SIGTERM)
        if not self._wait_gone(info, timeout_s):
            log.info("the Ray head (pid %d) is still stopping; killing its processes", info.pid)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            if leader:
                os.killpg(info.pid, signal.SIGKILL)  # stragglers (none after a clean stop)
            else:
                os.kill(info.pid, signal.SIGKILL)
        self._wait_gone(info, 5.0)

    def _wait_gone(self, info: HeadInfo, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._process is not None and self._process.pid == info.pid:
                if self._process.poll() is not None:
                    return True
            elif not self._is_ours(info) or _is_zombie(info.pid):
                return True
            time.sleep(0.2)
        return False


def _group_leader(pid: int) -> bool:
    """``pid`` leads its own process group (as the head does: it is started in a new session)."""
    try:
        return os.getpgid(pid) == pid
    except ProcessLookupError:
        return False


def _is_zombie(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return True
    return "\nState:\tZ" in status
