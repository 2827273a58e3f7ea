"""Removing what a deleted sweep left outside the database: checkpoints and MLflow runs.

Checkpoints live under ``<storage_path>/<sweep id>/`` (the driver's layout); only local paths
are removed (an object store's lifecycle rules are the place for remote ones). MLflow runs are
marked deleted through MLflow's REST API when the tracking URI is http(s), else by a short-lived
subprocess that imports mlflow, so that mlflow never enters the API process.

Deletions go through one :class:`Cleaner` per app: a single background thread that takes what
has piled up and removes it in one go (one MLflow subprocess for a whole batch). However fast
sweeps are deleted, the service runs at most one such subprocess at a time.
"""

from __future__ import annotations

import json
import logging
import queue
import shutil
import subprocess
import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx

from service.settings import Settings

__all__ = [
    "Cleaner",
    "SweepLeftovers",
    "delete_mlflow_runs",
    "remove_checkpoints",
    "remove_sweep_artifacts",
]

log = logging.getLogger(__name__)

SWEEP_TAG = "extrap.sweep_id"
_MLFLOW_TIMEOUT_S = 180

# Runs in a subprocess: for each sweep, find its runs by tag, add the known ids, delete them.
_LOCAL_DELETE = """
import json, sys
from mlflow.tracking import MlflowClient
uri, jobs = sys.argv[1], json.loads(sys.stdin.read())
client = MlflowClient(tracking_uri=uri)
deleted = 0
for experiment_id, sweep_id, known in jobs:
    ids = set(known)
    if experiment_id:
        try:
            tagged = f"tags.`extrap.sweep_id` = '{sweep_id}'"
            ids.update(run.info.run_id for run in client.search_runs([experiment_id], tagged))
        except Exception as exc:
            print(f"{sweep_id}: {exc}", file=sys.stderr)
    for run_id in ids:
        try:
            client.delete_run(run_id)
            deleted += 1
        except Exception as exc:
            print(f"{run_id}: {exc}", file=sys.stderr)
print(deleted)
"""


def remove_checkpoints(storage_path: str, sweep_id: str) -> bool:
    """Remove ``<storage_path>/<sweep_id>`` if it is a local directory; ``True`` if removed."""
    if "://" in storage_path and not storage_path.startswith("file://"):
        log.info("sweep %s: leaving remote storage %s to its own lifecycle", sweep_id, storage_path)
        return False
    root = Path(storage_path.removeprefix("file://")).resolve()
    target = (root / sweep_id).resolve()
    if target.parent != root or not target.is_dir():
        return False
    shutil.rmtree(target, ignore_errors=True)
    return True


@dataclass(frozen=True)
class SweepLeftovers:
    """What a deleted sweep left outside the database."""

    sweep_id: str
    mlflow_experiment_id: str | None
    mlflow_run_ids: tuple[str, ...]


def delete_mlflow_runs(
    tracking_uri: str, *, experiment_id: str | None, sweep_id: str, run_ids: Sequence[str]
) -> None:
    """Mark the sweep's MLflow runs deleted (those tagged with the sweep id, and ``run_ids``)."""
    _delete_mlflow_batch(tracking_uri, [SweepLeftovers(sweep_id, experiment_id, tuple(run_ids))])


def _delete_mlflow_batch(tracking_uri: str, batch: Sequence[SweepLeftovers]) -> None:
    wanted = [item for item in batch if item.mlflow_experiment_id or item.mlflow_run_ids]
    if not wanted:
        return
    if tracking_uri.startswith(("http://", "https://")):
        for item in wanted:
            _delete_over_http(
                tracking_uri, item.mlflow_experiment_id, item.sweep_id, item.mlflow_run_ids
            )
        return
    jobs = [
        [item.mlflow_experiment_id or "", item.sweep_id, list(item.mlflow_run_ids)]
        for item in wanted
    ]
    result = subprocess.run(
        [sys.executable, "-c", _LOCAL_DELETE, tracking_uri],
        input=json.dumps(jobs),
        capture_output=True,
        text=True,
        timeout=_MLFLOW_TIMEOUT_S,
        check=False,
    )
    if result.returncode != 0:
        names = ", ".join(item.sweep_id for item in wanted)
        log.warning("sweeps %s: deleting MLflow runs failed: %s", names, result.stderr[-2000:])


def _delete_over_http(
    tracking_uri: str, experiment_id: str | None, sweep_id: str, run_ids: Sequence[str]
) -> None:
    ids = set(run_ids)
    with httpx.Client(base_url=tracking_uri.rstrip("/"), timeout=30.0) as client:
        if experiment_id:
            response = client.post(
                "/api/2.0/mlflow/runs/search",
                json={
                    "experiment_ids": [experiment_id],
                    "filter": f"tags.`{SWEEP_TAG}` = '{sweep_id}'",
                    "max_results": 1000,
                },
            )
            if response.status_code == 200:
                ids.update(run["info"]["run_id"] for run in response.json().get("runs", []))
        for run_id in ids:
            response = client.post("/api/2.0/mlflow/runs/delete", json={"run_id": run_id})
            if response.status_code >= 400:
                log.warning("MLflow run %s: delete answered %s", run_id, response.status_code)


def remove_sweep_artifacts(
    *,
    settings: Settings,
    sweep_id: str,
    mlflow_experiment_id: str | None,
    mlflow_run_ids: Sequence[str],
) -> None:
    """Checkpoints and MLflow runs of a deleted sweep (errors are logged, never raised)."""
    leftovers = SweepLeftovers(sweep_id, mlflow_experiment_id, tuple(mlflow_run_ids))
    _remove_batch(settings, [leftovers])


def _remove_batch(settings: Settings, batch: Sequence[SweepLeftovers]) -> None:
    for item in batch:
        try:
            remove_checkpoints(settings.resolved_storage_path, item.sweep_id)
        except OSError:
            log.exception("sweep %s: removing checkpoints failed", item.sweep_id)
    try:
        _delete_mlflow_batch(settings.resolved_mlflow_tracking_uri, batch)
    except (OSError, subprocess.SubprocessError, httpx.HTTPError):
        log.exception("deleting the MLflow runs of %d sweeps failed", len(batch))


class Cleaner:
    """Removes deleted sweeps' leftovers in one background thread, batch by batch.

    Args:
        settings: where checkpoints and MLflow runs live.
        max_batch: at most this many sweeps per MLflow subprocess.
    """

    def __init__(self, settings: Settings, *, max_batch: int = 200) -> None:
        self.settings = settings
        self.max_batch = max_batch
        self._queue: queue.Queue[SweepLeftovers | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.idle = threading.Event()
        self.idle.set()

    def submit(self, leftovers: SweepLeftovers) -> None:
        """Queue a sweep's leftovers for removal (returns at once)."""
        self.idle.clear()
        self._queue.put(leftovers)
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._run, name="extrap-cleanup", daemon=True
                )
                self._thread.start()

    def _run(self) -> None:
        while True:
            try:
                first = self._queue.get(timeout=5.0)
            except queue.Empty:
                with self._lock:
                    if self._queue.empty():
                        self._thread = None
                        self.idle.set()
                        return
                continue
            if first is None:
                self.idle.set()
                return
            batch = [first]
            while len(batch) < self.max_batch:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    break
                batch.append(item)
            _remove_batch(self.settings, batch)
            if self._queue.empty():
                self.idle.set()

    def stop(self, timeout_s: float = 10.0) -> None:
        """Finish what is queued (within ``timeout_s``), then stop."""
        thread = self._thread
        if thread is not None and thread.is_alive():
            self._queue.put(None)
            thread.join(timeout_s)
