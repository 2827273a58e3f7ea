"""Benchmark: server CPU and latency of an authenticated ``GET /v1/sweeps/{id}``.

Run ``.venv/bin/python benchmarks/api_latency.py`` (about a minute and a half) or with
``--quick`` (a smoke run of a few seconds whose figures are too noisy to quote). It prints one
JSON document to stdout and always exits 0: nothing is asserted about speed.

Setup, per database (SQLite, and PostgreSQL when ``EXTRAP_BENCH_POSTGRES_DSN`` or the test
default reaches one): a real uvicorn server (one process, one worker) pinned to CPU 0, on a
fresh database, with a stand-in cluster (no Ray: the request under test never talks to it).
One sweep with ``--trials`` trials of 5 epochs each is stored through the driver's events
endpoint, so its trial counts are computed over real rows. The load generator (this process,
a minimal keep-alive HTTP/1.1 client on asyncio, so that it costs the server's core nothing)
is pinned to CPU 1. For each number of clients (``--clients``, default 1, 10, 50, 200) the
clients send requests back to back for ``--duration`` seconds after a warm-up.

Reported per run: requests, errors, requests/s, client-side p50/p90/p99/max latency in ms,
and ``server_cpu_ms_per_request``: the server process's CPU time (user + system, all its
threads, from ``/proc/PID/stat``) over the measured window ÷ the requests answered in it.
The top-level figures repeat the headline run (the first database, the client count nearest
50) so that one number can be quoted.

``--stack``: ``auto`` (default) is what ``extrap serve`` runs, uvicorn's choice: httptools and
uvloop (dependencies of the package); ``h11`` forces the pure-Python h11 parser on asyncio's
own loop, uvicorn's fallback, to show what the two cost.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
ADMIN_TOKEN = "ext_benchmark-admin-token-000000000000000000000"
POSTGRES_DSN = os.environ.get(
    "EXTRAP_BENCH_POSTGRES_DSN",
    os.environ.get(
        "EXTRAP_TEST_POSTGRES_DSN", "host=127.0.0.1 port=5432 user=postgres dbname=test"
    ),
)
SERVER_CPU, CLIENT_CPU = 0, 1
_STACK_ENV = "EXTRAP_BENCH_STACK"
_ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
_BODIES: dict[str, bytes] = {}
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


class _StaticCluster:
    """A dispatcher that never leaves the process (the benchmark measures the API alone)."""

    address = "static://"

    def submit(self, *, submission_id: str, entrypoint: str, env_vars: Mapping[str, str]) -> str:
        return submission_id

    def job(self, job_id: str) -> Any:
        from service.server.dispatch.base import JobInfo, JobStatus

        return JobInfo(job_id, JobStatus.RUNNING)

    def stop(self, job_id: str) -> None:
        pass

    def logs(self, job_id: str) -> str:
        return ""

    def resources(self) -> Any:
        from service.server.dispatch.base import ClusterResources

        total = {"CPU": 64.0, "train_driver": 8.0}
        return ClusterResources(total=total, largest_node=total)

    def ping(self) -> None:
        pass

    def close(self) -> None:
        pass


def _settings(home: Path, port: int, database_url: str) -> Any:
    from service.settings import Settings

    return Settings(
        home=home,
        port=port,
        database_url=database_url,
        admin_token=ADMIN_TOKEN,
        data_roots=[home],
    )


def serve(home: Path, port: int, database_url: str) -> None:
    """The server side (run in a subprocess)."""
    import uvicorn

    from service.server.api.main import create_app

    settings = _settings(home, port, database_url)
    app = create_app(settings, dispatcher=_StaticCluster(), supervise=False)
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", **_uvicorn_stack())


def _uvicorn_stack() -> dict[str, Any]:
    if os.environ.get(_STACK_ENV) == "h11":
        return {"http": "h11", "loop": "asyncio", "access_log": False}
    return {"access_log": False}


def _stack_in_use() -> str:
    if os.environ.get(_STACK_ENV) == "h11":
        return "h11 on asyncio"
    try:
        import httptools  # noqa: F401
        import uvloop  # noqa: F401
    except ImportError:
        return "auto (h11 on asyncio: httptools or uvloop missing)"
    return "auto (httptools on uvloop)"


def serve_reference(port: int, body_file: Path) -> None:
    """The floor (run in a subprocess): FastAPI and uvicorn answering the same bytes, no
    database, no authentication: what any request costs here before the service's own work."""
    import uvicorn
    from fastapi import FastAPI, Response

    body = body_file.read_bytes()
    app = FastAPI()

    @app.get("/v1/sweeps/{sweep_id}")
    async def sweep(sweep_id: str) -> Response:
        return Response(body, media_type="application/json")

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", **_uvicorn_stack())


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def _postgres_database() -> Iterator[str]:
    """A fresh PostgreSQL database for one run; its SQLAlchemy URL."""
    import psycopg

    name = f"extrap_bench_{uuid.uuid4().hex[:8]}"
    admin = psycopg.connect(POSTGRES_DSN, autocommit=True, connect_timeout=5)
    try:
        admin.execute(f'CREATE DATABASE "{name}"')
        params = dict(part.split("=", 1) for part in POSTGRES_DSN.split())
        user = params.get("user", "postgres")
        password = f":{params['password']}" if params.get("password") else ""
        host, port = params.get("host", "127.0.0.1"), params.get("port", "5432")
        yield f"postgresql+psycopg://{user}{password}@{host}:{port}/{name}"
    finally:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


def _seed(client: httpx.Client, home: Path, database_url: str, trials: int) -> str:
    """One sweep with ``trials`` trials of 5 epochs, stored through the driver's API."""
    from service.server.db import Database
    from service.server.launcher import Launcher
    from service.wire import SweepState

    spec = {
        "name": "latency-benchmark",
        "job": {"workload": "mnist1d", "global_batch_size": 64, "epochs": 5},
        "space": {"lr": {"low": 0.01, "high": 1.0, "log": True}},
        "search": {"num_trials": max(trials, 1)},
    }
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    created = client.post("/v1/sweeps", json=spec, headers=admin)
    created.raise_for_status()
    sweep_id = str(created.json()["id"])
    recorder: dict[str, str] = {}

    class _Recorder(_StaticCluster):
        def submit(
            self, *, submission_id: str, entrypoint: str, env_vars: Mapping[str, str]
        ) -> str:
            recorder.update(env_vars)
            return submission_id

    db = Database(database_url)
    settings = _settings(home, 8000, database_url)
    Launcher(db=db, dispatcher=_Recorder(), settings=settings).launch(
        sweep_id, expected=(SweepState.QUEUED,)
    )
    db.dispose()
    driver = {"Authorization": f"Bearer {recorder['EXTRAP_DRIVER_TOKEN']}"}
    events: list[dict[str, Any]] = [{"seq": 1, "type": "sweep_running"}]
    for number in range(1, trials + 1):
        trial_id = f"trial-{number:04d}"
        events.append(
            {"type": "trial_started", "trial_id": trial_id, "number": number, "params": {}}
        )
        for epoch in range(1, 6):
            metrics = {"accuracy": 0.1 * epoch + number / 10_000, "test_loss": 1.0 / epoch}
            events.append(
                {"type": "trial_metrics", "trial_id": trial_id, "epoch": epoch, "metrics": metrics}
            )
        if number % 2:
            events.append({"type": "trial_finished", "trial_id": trial_id, "status": "completed"})
    for start in range(0, len(events), 200):
        batch = events[start : start + 200]
        response = client.post(
            f"/internal/v1/sweeps/{sweep_id}/events", json={"events": batch}, headers=driver
        )
        response.raise_for_status()
    return sweep_id


def _cpu_seconds(pid: int) -> tuple[float, float]:
    """User and system CPU time of a process (all its threads), from ``/proc/PID/stat``."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) / CLOCK_TICKS, int(fields[12]) / CLOCK_TICKS


class _Connection:
    """One keep-alive HTTP/1.1 connection sending the same GET again and again."""

    def __init__(self, port: int, request: bytes) -> None:
        self.port = port
        self.request = request
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def get(self) -> int:
        """One request; its status (0: the connection failed and is reopened next time)."""
        try:
            if self.writer is None:
                self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
            assert self.reader is not None
            self.writer.write(self.request)
            head = await self.reader.readuntil(b"\r\n\r\n")
            status = int(head[9:12])
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            await self.reader.readexactly(length)
            return status
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
            self.close()
            return 0

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


async def _load(
    port: int, path: str, pid: int, clients: int, duration_s: float, warmup_s: float
) -> dict[str, Any]:
    request = (
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Authorization: Bearer {ADMIN_TOKEN}\r\nAccept: application/json\r\n\r\n"
    ).encode()
    latencies: list[float] = []
    errors = 0
    loop = asyncio.get_running_loop()
    start = loop.time()
    measure_from = start + warmup_s
    stop_at = measure_from + duration_s
    cpu: dict[str, Any] = {}

    async def meter() -> None:
        await asyncio.sleep(max(0.0, measure_from - loop.time()))
        cpu["start"] = _cpu_seconds(pid)
        cpu["t0"] = time.perf_counter()
        await asyncio.sleep(max(0.0, stop_at - loop.time()))
        cpu["end"] = _cpu_seconds(pid)
        cpu["t1"] = time.perf_counter()

    async def worker() -> None:
        nonlocal errors
        connection = _Connection(port, request)
        try:
            while True:
                sent = loop.time()
                if sent >= stop_at:
                    return
                status = await connection.get()
                done = loop.time()
                if measure_from <= sent and done <= stop_at:
                    if status == 200:
                        latencies.append(done - sent)
                    else:
                        errors += 1
        finally:
            connection.close()

    await asyncio.gather(meter(), *(worker() for _ in range(clients)))
    ordered = sorted(latencies)
    ms = 1000.0
    window = cpu["t1"] - cpu["t0"]
    user_s = cpu["end"][0] - cpu["start"][0]
    system_s = cpu["end"][1] - cpu["start"][1]
    cpu_s = user_s + system_s
    return {
        "clients": clients,
        "requests": len(ordered),
        "errors": errors,
        "throughput_rps": round(len(ordered) / window, 1),
        "server_cpu_ms_per_request": round(cpu_s * ms / len(ordered), 3) if ordered else None,
        "server_cpu_system_share": round(system_s / cpu_s, 3) if cpu_s else None,
        "server_cpu_utilisation": round(cpu_s / window, 3),
        "p50_ms": round(_percentile(ordered, 0.50) * ms, 2),
        "p90_ms": round(_percentile(ordered, 0.90) * ms, 2),
        "p99_ms": round(_percentile(ordered, 0.99) * ms, 2),
        "max_ms": round(ordered[-1] * ms, 2) if ordered else None,
        "mean_ms": round(statistics.fmean(ordered) * ms, 2) if ordered else None,
    }


def _percentile(sorted_values: list[float], fraction: float) -> float:
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, max(0, round(fraction * (len(sorted_values) - 1))))
    return sorted_values[index]


def _pin(cpu: int) -> None:
    with contextlib.suppress(OSError, AttributeError):  # fewer CPUs, or not Linux
        os.sched_setaffinity(0, {cpu % (os.cpu_count() or 1)})


def _start(argv: list[str], port: int) -> subprocess.Popen[bytes]:
    server = subprocess.Popen(
        [sys.executable, str(Path(__file__).resolve()), *argv],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        preexec_fn=lambda: _pin(SERVER_CPU),
    )
    deadline = time.monotonic() + 60
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
        while True:
            try:
                if client.get("/healthz").status_code in (200, 404):
                    return server
            except httpx.HTTPError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the server did not start (exit {server.returncode})")
            time.sleep(0.1)


def run_reference(
    body: bytes, clients: list[int], duration_s: float, warmup_s: float
) -> list[dict[str, Any]]:
    """The floor at every client count (see :func:`serve_reference`)."""
    body_file = Path(tempfile.mkdtemp(prefix="extrap-bench-ref-")) / "body.json"
    body_file.write_bytes(body)
    port = _free_port()
    server = _start(["--serve-reference", str(port), str(body_file)], port)
    try:
        return [
            {
                "database": "none (reference)",
                **asyncio.run(_load(port, "/v1/sweeps/x", server.pid, n, duration_s, warmup_s)),
            }
            for n in clients
        ]
    finally:
        server.terminate()
        server.wait(30)


def run_database(
    database: str,
    database_url: str,
    clients: list[int],
    duration_s: float,
    warmup_s: float,
    trials: int,
) -> list[dict[str, Any]]:
    """Every client count against one server on one database."""
    home = Path(tempfile.mkdtemp(prefix="extrap-bench-"))
    port = _free_port()
    server = _start(["--serve", str(home), str(port), database_url], port)
    url = f"http://127.0.0.1:{port}"
    runs: list[dict[str, Any]] = []
    try:
        with httpx.Client(base_url=url, timeout=30) as client:
            sweep_id = _seed(client, home, database_url, trials)
            answer = client.get(f"/v1/sweeps/{sweep_id}", headers=_ADMIN).content
            _BODIES.setdefault("sweep", answer)
        for count in clients:
            figures = asyncio.run(
                _load(port, f"/v1/sweeps/{sweep_id}", server.pid, count, duration_s, warmup_s)
            )
            runs.append({"database": database, **figures})
    finally:
        server.terminate()
        server.wait(30)
    return runs


def run(
    databases: list[str], clients: list[int], duration_s: float, warmup_s: float, trials: int
) -> dict[str, Any]:
    _pin(CLIENT_CPU)
    runs: list[dict[str, Any]] = []
    skipped: dict[str, str] = {}
    for database in databases:
        if database == "sqlite":
            url = f"sqlite:///{tempfile.mkdtemp(prefix='extrap-bench-db-')}/extrap.db"
            runs += run_database(database, url, clients, duration_s, warmup_s, trials)
            continue
        try:
            with _postgres_database() as url:
                runs += run_database(database, url, clients, duration_s, warmup_s, trials)
        except Exception as exc:  # a benchmark reports, it never fails
            skipped[database] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
    reference: list[dict[str, Any]] = []
    if "sweep" in _BODIES:
        reference = run_reference(_BODIES["sweep"], clients, duration_s, warmup_s)
        floor = {r["clients"]: r["server_cpu_ms_per_request"] for r in reference}
        for r in runs:
            base = floor.get(r["clients"])
            if base and r["server_cpu_ms_per_request"]:
                r["cpu_vs_reference"] = round(r["server_cpu_ms_per_request"] / base, 2)
    headline = min(
        (r for r in runs if r["database"] == runs[0]["database"]),
        key=lambda r: abs(r["clients"] - 50),
        default={},
    )
    return {
        "benchmark": "api_latency",
        "endpoint": "GET /v1/sweeps/{id}",
        "server": "uvicorn, 1 process, pinned to CPU 0; load generator pinned to CPU 1",
        "stack": _stack_in_use(),
        "duration_s": duration_s,
        "trials_in_sweep": trials,
        **headline,
        "runs": runs,
        "reference": reference,
        "skipped": skipped,
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
    }


def _ints(text: str) -> list[int]:
    return [int(part) for part in text.split(",") if part.strip()]


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--clients", type=_ints, default=[1, 10, 50, 200], help="e.g. 1,10,50")
    parser.add_argument(
        "--databases", default=None, help="sqlite,postgresql (default: both; --quick: sqlite)"
    )
    parser.add_argument("--duration", type=float, default=5.0, help="seconds measured per run")
    parser.add_argument("--trials", type=int, default=40, help="trials stored in the sweep")
    parser.add_argument("--quick", action="store_true", help="a short smoke run")
    parser.add_argument(
        "--stack", choices=("auto", "h11"), default="auto", help="uvicorn's HTTP parser and loop"
    )
    parser.add_argument("--serve", nargs=3, metavar=("HOME", "PORT", "URL"), help=argparse.SUPPRESS)
    parser.add_argument("--serve-reference", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(Path(args.serve[0]), int(args.serve[1]), args.serve[2])
        return
    if args.serve_reference:
        serve_reference(int(args.serve_reference[0]), Path(args.serve_reference[1]))
        return
    os.environ[_STACK_ENV] = args.stack  # read by the server subprocesses
    duration, warmup = (1.5, 0.5) if args.quick else (args.duration, 1.0)
    trials = min(args.trials, 10) if args.quick else args.trials
    default_databases = "sqlite" if args.quick else "sqlite,postgresql"
    databases = [d.strip() for d in (args.databases or default_databases).split(",") if d.strip()]
    print(json.dumps(run(databases, args.clients, duration, warmup, trials), indent=2))


if __name__ == "__main__":
    main()
