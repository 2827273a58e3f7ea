"""Benchmark: latency of ``GET /v1/sweeps/{id}`` under 50 concurrent clients.

Run ``.venv/bin/python benchmarks/api_latency.py`` (about 15 s) or with ``--quick`` (a smoke
run of a couple of seconds whose figures are too noisy to quote). It prints one JSON document
to stdout and always exits 0: nothing is asserted about speed.

Setup: a real uvicorn server (one worker, in a subprocess so that the clients do not share its
GIL) on a fresh SQLite database, with a stand-in cluster (no Ray: the request under test never
talks to it). One sweep with ``--trials`` trials of 5 epochs each is stored through the
driver's events endpoint, so the sweep's trial counts are computed over real rows. Then
``--clients`` ``httpx.AsyncClient`` tasks each send requests back to back for ``--duration``
seconds, after a one-second warm-up. Reported: requests, errors, throughput, and the p50, p90,
p99 and max latency in milliseconds (client-side, including the local HTTP round trip).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
ADMIN_TOKEN = "ext_benchmark-admin-token-000000000000000000000"


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


def serve(home: Path, port: int) -> None:
    """The server side (run in a subprocess)."""
    import uvicorn

    from service.server.api.main import create_app
    from service.settings import Settings

    settings = Settings(home=home, port=port, admin_token=ADMIN_TOKEN, data_roots=[home])
    app = create_app(settings, dispatcher=_StaticCluster(), supervise=False)
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _seed(client: httpx.Client, trials: int) -> str:
    """One sweep with ``trials`` trials of 5 epochs, stored through the driver's API."""
    spec = {
        "name": "latency-benchmark",
        "job": {"workload": "mnist1d", "global_batch_size": 64, "epochs": 5},
        "space": {"lr": {"low": 0.01, "high": 1.0, "log": True}},
        "search": {"num_trials": max(trials, 1)},
    }
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    sweep_id = str(client.post("/v1/sweeps", json=spec, headers=admin).json()["id"])
    return sweep_id


def _launch_and_fill(home: Path, client: httpx.Client, sweep_id: str, trials: int) -> None:
    """Launch the stand-in driver through the service's own launcher and push events."""
    from service.server.db import Database
    from service.server.launcher import Launcher
    from service.settings import Settings
    from service.wire import SweepState

    settings = Settings(home=home, admin_token=ADMIN_TOKEN, data_roots=[home])
    recorder: dict[str, str] = {}

    class _Recorder(_StaticCluster):
        def submit(
            self, *, submission_id: str, entrypoint: str, env_vars: Mapping[str, str]
        ) -> str:
            recorder.update(env_vars)
            return submission_id

    db = Database(settings.resolved_database_url)
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


async def _load(
    url: str, path: str, clients: int, duration_s: float, warmup_s: float
) -> tuple[list[float], int]:
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    latencies: list[float] = []
    errors = 0
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, headers=headers, limits=limits, timeout=30) as http:
        start = time.perf_counter()
        measure_from = start + warmup_s
        stop_at = measure_from + duration_s

        async def worker() -> None:
            nonlocal errors
            while True:
                sent = time.perf_counter()
                if sent >= stop_at:
                    return
                try:
                    response = await http.get(path)
                    ok = response.status_code == 200
                except httpx.HTTPError:
                    ok = False
                done = time.perf_counter()
                if sent >= measure_from:
                    if ok:
                        latencies.append(done - sent)
                    else:
                        errors += 1

        await asyncio.gather(*(worker() for _ in range(clients)))
    return latencies, errors


def _percentile(sorted_values: list[float], fraction: float) -> float:
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, max(0, round(fraction * (len(sorted_values) - 1))))
    return sorted_values[index]


def run(clients: int, duration_s: float, warmup_s: float, trials: int) -> dict[str, Any]:
    home = Path(tempfile.mkdtemp(prefix="extrap-bench-"))
    port = _free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    server = subprocess.Popen(
        [sys.executable, str(Path(__file__).resolve()), "--serve", str(home), str(port)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        with httpx.Client(base_url=url, timeout=30) as client:
            deadline = time.monotonic() + 60
            while True:
                try:
                    if client.get("/healthz").status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"the server did not start (exit {server.returncode})")
                time.sleep(0.1)
            sweep_id = _seed(client, trials)
            _launch_and_fill(home, client, sweep_id, trials)
        latencies, errors = asyncio.run(
            _load(url, f"/v1/sweeps/{sweep_id}", clients, duration_s, warmup_s)
        )
    finally:
        server.terminate()
        server.wait(30)
    ordered = sorted(latencies)
    ms = 1000.0
    return {
        "benchmark": "api_latency",
        "endpoint": "GET /v1/sweeps/{id}",
        "database": "sqlite",
        "server": "uvicorn, 1 worker, subprocess",
        "clients": clients,
        "duration_s": duration_s,
        "trials_in_sweep": trials,
        "requests": len(latencies),
        "errors": errors,
        "throughput_rps": round(len(latencies) / duration_s, 1),
        "p50_ms": round(_percentile(ordered, 0.50) * ms, 2),
        "p90_ms": round(_percentile(ordered, 0.90) * ms, 2),
        "p99_ms": round(_percentile(ordered, 0.99) * ms, 2),
        "max_ms": round(ordered[-1] * ms, 2) if ordered else None,
        "mean_ms": round(statistics.fmean(ordered) * ms, 2) if ordered else None,
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds measured")
    parser.add_argument("--trials", type=int, default=40, help="trials stored in the sweep")
    parser.add_argument("--quick", action="store_true", help="a 2 s smoke run")
    parser.add_argument("--serve", nargs=2, metavar=("HOME", "PORT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(Path(args.serve[0]), int(args.serve[1]))
        return
    duration, warmup = (1.5, 0.5) if args.quick else (args.duration, 1.0)
    trials = min(args.trials, 10) if args.quick else args.trials
    print(json.dumps(run(args.clients, duration, warmup, trials), indent=2))


if __name__ == "__main__":
    main()
