"""Fixtures of the fault tests: real servers and clusters that each test starts, breaks from
outside, and stops again.

- :class:`MlflowServer`: ``mlflow server`` on a SQLite store and a port of its own, stopped
  (SIGTERM) and started again on the same port and store;
- :class:`PrivatePostgres`: a PostgreSQL cluster of the test's own (``initdb`` as the
  ``postgres`` user in a temporary directory, its own port and socket directory), stopped and
  started with ``pg_ctl``; the shared server on 5432 is never touched;
- :class:`RayCluster`: ``ray start --block`` nodes on this machine, a head and more nodes
  joined with ``--address``, each in a session of its own (so that losing a node is SIGKILL to
  its session);
- :class:`ExtrapService`: ``extrap serve`` on a home and a port, with the Ray head it starts.

Everything is stopped by the process ids this test started (tests/faults/_processes.py);
``ray stop`` would stop every Ray on the machine and is never run.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.faults._processes import Owned, child_env, session_pids, spawn, wait_for
from trainers.ddp_probe import free_port

BIN = Path(sys.executable).parent


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2.0).status_code == 200
    except httpx.HTTPError:
        return False


# -- MLflow --------------------------------------------------------------------------------


class MlflowServer:
    """``mlflow server`` on ``<home>/mlflow.db`` and a fixed free port, restartable."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.port = free_port()
        self.store = f"sqlite:///{home / 'mlflow.db'}"
        self.owned: Owned | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 120.0) -> None:
        command = [
            str(BIN / "mlflow"),
            "server",
            "--backend-store-uri",
            self.store,
            "--artifacts-destination",
            str(self.home / "artifacts"),
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--workers",
            "1",
        ]
        env = child_env(MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false")
        self.owned = spawn(command, log_path=self.home / "mlflow.log", env=env, cwd=self.home)
        wait_for(
            lambda: _answers(f"{self.url}/health"),
            timeout_s=timeout_s,
            what=f"mlflow server on port {self.port}",
            while_alive=self.owned,
        )

    def stop(self) -> None:
        """SIGTERM to every process of the server (it and its workers); SIGKILL after 30 s."""
        if self.owned is not None:
            self.owned.stop(grace_s=30.0, everyone=True)
            assert not self.owned.members(), "the mlflow server left processes behind"
            self.owned = None


@pytest.fixture
def mlflow_server(tmp_path: Path) -> Iterator[MlflowServer]:
    home = tmp_path / "mlflow"
    home.mkdir()
    server = MlflowServer(home)
    server.start()
    try:
        yield server
    finally:
        server.stop()


# -- PostgreSQL ----------------------------------------------------------------------------


def _postgres_bin() -> Path:
    versions = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"), key=lambda p: int(p.parts[-3])
    )
    if not versions:
        pytest.fail("PostgreSQL's server binaries are not installed (/usr/lib/postgresql)")
    return versions[-1].parent


class PrivatePostgres:
    """A PostgreSQL cluster of this test's own: trust authentication, 127.0.0.1 and a free
    port, its socket and data in a temporary directory owned by ``postgres``."""

    def __init__(self) -> None:
        self.bin = _postgres_bin()
        self.root = Path(tempfile.mkdtemp(prefix="extrap-pg-"))
        user = pwd.getpwnam("postgres")
        os.chown(self.root, user.pw_uid, user.pw_gid)
        self.data = self.root / "data"
        self.port = free_port()

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def _as_postgres(self, *argv: str) -> None:
        command = ["runuser", "-u", "postgres", "--", *argv]
        done = subprocess.run(command, capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            raise AssertionError(f"{' '.join(argv)} failed:\n{done.stdout}\n{done.stderr}")

    def init(self) -> None:
        self._as_postgres(
            str(self.bin / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres",
            "--no-sync", "--no-instructions",
        )  # fmt: skip

    def start(self) -> None:
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._as_postgres(
            str(self.bin / "pg_ctl"), "-D", str(self.data), "-l", str(self.root / "server.log"),
            "-o", options, "-w", "-t", "60", "start",
        )  # fmt: skip

    def stop(self) -> None:
        self._as_postgres(
            str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop"
        )

    def running(self) -> bool:
        return (self.data / "postmaster.pid").exists()

    def count(self, table: str) -> int:
        import psycopg

        dsn = f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres"
        with psycopg.connect(dsn, connect_timeout=10) as connection:
            row = connection.execute(f"SELECT count(*) FROM {table}").fetchone()
        assert row is not None
        return int(row[0])

    def remove(self) -> None:
        if self.running():
            self.stop()
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture
def private_postgres() -> Iterator[PrivatePostgres]:
    cluster = PrivatePostgres()
    try:
        cluster.init()
        cluster.start()
        yield cluster
    finally:
        cluster.remove()


# -- Ray -----------------------------------------------------------------------------------


def _ray_ports() -> list[str]:
    """Every port a node opens, picked free, so that nodes share the machine."""
    flags = [
        "--node-manager-port",
        "--object-manager-port",
        "--dashboard-agent-listen-port",
        "--dashboard-agent-grpc-port",
        "--runtime-env-agent-port",
        "--metrics-export-port",
    ]
    ports = [item for flag in flags for item in (flag, str(free_port()))]
    return [*ports, "--min-worker-port", "0", "--max-worker-port", "0"]


class RayCluster:
    """Ray nodes on this machine, each a ``ray start --block`` in a session of its own.

    One temp dir for all (short: socket paths must stay under 108 bytes; Ray names each
    node's sockets apart), token authentication with a generated token, and quick node-death
    detection (health checks every second, dead after 5 misses) so that a lost node shows
    within seconds, not half a minute.
    """

    def __init__(self, home: Path) -> None:
        self.home = home
        self.temp_dir = Path(tempfile.mkdtemp(prefix="xf-ray-"))
        self.gcs_port = free_port()
        self.env = child_env(
            RAY_AUTH_MODE="token",
            RAY_AUTH_TOKEN=secrets.token_hex(32),
            RAY_ADDRESS=self.address,
            RAY_health_check_period_ms="1000",
            RAY_health_check_timeout_ms="2000",
            RAY_health_check_failure_threshold="5",
        )
        self.nodes: list[Owned] = []

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.gcs_port}"

    def _start(self, name: str, role: list[str], num_cpus: int, resources: dict[str, Any]) -> Owned:
        command = [
            str(BIN / "ray"), "start", *role, "--block", "--num-cpus", str(num_cpus),
            "--resources", json.dumps(resources), "--object-store-memory", str(200 * 2**20),
            "--temp-dir", str(self.temp_dir), "--disable-usage-stats", *_ray_ports(),
        ]  # fmt: skip
        node = spawn(command, log_path=self.home / f"ray-{name}.log", env=self.env)
        self.nodes.append(node)
        wait_for(
            lambda: "Ray runtime started" in node.log_path.read_text(errors="replace"),
            timeout_s=180,
            what=f"the Ray node {name}",
            while_alive=node,
        )
        return node

    def start_head(self, *, num_cpus: int, resources: dict[str, Any]) -> Owned:
        role = ["--head", "--port", str(self.gcs_port), "--include-dashboard", "false"]
        role += ["--ray-client-server-port", str(free_port())]
        return self._start("head", role, num_cpus, resources)

    def add_node(self, name: str, *, num_cpus: int, resources: dict[str, Any]) -> Owned:
        return self._start(name, ["--address", self.address], num_cpus, resources)

    def stop(self) -> None:
        """The nodes in reverse order; then no process of theirs may be left."""
        for node in reversed(self.nodes):
            node.stop(grace_s=30.0)
        left = {node.pid: node.members() for node in self.nodes if node.members()}
        shutil.rmtree(self.temp_dir, ignore_errors=True)
        assert not left, f"processes of the test's Ray nodes survived: {left}"


@pytest.fixture
def ray_cluster(tmp_path: Path) -> Iterator[RayCluster]:
    cluster = RayCluster(tmp_path)
    try:
        yield cluster
    finally:
        cluster.stop()


# -- the service ---------------------------------------------------------------------------


class ExtrapService:
    """``extrap serve`` on a home and a fixed port; the API can be killed and started again
    (the Ray head it started lives on in a session of its own and is adopted)."""

    def __init__(self, home: Path, data_dir: Path) -> None:
        self.home = home
        self.port = free_port()
        self.env = {k: v for k, v in child_env().items() if not k.startswith("EXTRAP_")}
        self.env.update(
            EXTRAP_DATA_ROOTS=str(data_dir),
            EXTRAP_RECONCILE_INTERVAL_S="2",
            EXTRAP_HEARTBEAT_TIMEOUT_S="90",
            EXTRAP_MAX_DRIVER_RESTARTS="2",
        )
        self.api: Owned | None = None
        self.head_sessions: set[int] = set()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def admin(self) -> dict[str, str]:
        token = (self.home / "admin-token").read_text(encoding="utf-8").strip()
        return {"Authorization": f"Bearer {token}"}

    def start(self, timeout_s: float = 240.0) -> None:
        command = [str(BIN / "extrap"), "serve", "--home", str(self.home), "--port", str(self.port)]
        self.api = spawn(command, log_path=self.home.parent / "serve.log", env=self.env)
        wait_for(
            lambda: _answers(f"{self.url}/readyz"),
            timeout_s=timeout_s,
            what="extrap serve to be ready",
            while_alive=self.api,
        )
        self.head_sessions.add(self.head()["pid"])

    def head(self) -> dict[str, Any]:
        """The Ray head's record (``<home>/ray-head.json``)."""
        record: dict[str, Any] = json.loads((self.home / "ray-head.json").read_text())
        return record

    def kill_api(self) -> None:
        """SIGKILL the API process alone: not its Ray head, not the sweep drivers."""
        assert self.api is not None
        self.api.process.kill()
        self.api.process.wait(10)
        self.api = None

    def get(self, path: str, **params: Any) -> Any:
        response = httpx.get(f"{self.url}{path}", headers=self.admin, params=params, timeout=30)
        response.raise_for_status()
        return response.json()

    def stop(self) -> None:
        """SIGTERM (the service stops its Ray head), then check that nothing of it is left."""
        was_running = self.api is not None
        if self.api is not None:
            self.api.stop(grace_s=90.0)
            self.api = None
        left = {sid: session_pids(sid) for sid in self.head_sessions if session_pids(sid)}
        for pids in left.values():  # never leave them running, whatever the outcome
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        if was_running:
            assert not left, f"processes of the service's Ray head survived its stop: {left}"


@pytest.fixture(scope="module")
def extrap_service(
    test_data_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ExtrapService]:
    """One ``extrap serve`` (and its Ray head) for the module's tests; a test that kills it
    starts it again."""
    service = ExtrapService(tmp_path_factory.mktemp("served") / "home", test_data_dir)
    service.start()
    try:
        yield service
    finally:
        service.stop()
