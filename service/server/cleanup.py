"""Removing what a deleted sweep left outside the database: checkpoints and MLflow runs.

Checkpoints live under ``<storage_path>/<sweep id>/`` (the driver's layout); only local paths
are removed (an object store's lifecycle rules are the place for remote ones). MLflow runs are
marked deleted through MLflow's REST API when the tracking URI is http(s), else by a short-lived
subprocess that imports mlflow, so that mlflow never enters the API process.
"""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import httpx

from service.settings import Settings

__all__ = ["delete_mlflow_runs", "remove_checkpoints", "remove_sweep_artifacts"]

log = logging.getLogger(__name__)

SWEEP_TAG = "extrap.sweep_id"
_MLFLOW_TIMEOUT_S = 180

# Runs in a subprocess: find the sweep's runs by tag, add the known ids, delete them all.
_LOCAL_DELETE = """
import json, sys
from mlflow.tracking import MlflowClient
uri, experiment_id, sweep_id, known = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
client = MlflowClient(tracking_uri=uri)
ids = set(known)
if experiment_id:
    for run in client.search_runs([experiment_id], f"tags.`extrap.sweep_id` = '{sweep_id}'"):
        ids.add(run.info.run_id)
for run_id in ids:
    try:
        client.delete_run(run_id)
    except Exception as exc:
        print(f"{run_id}: {exc}", file=sys.stderr)
print(len(ids))
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


def delete_mlflow_runs(
    tracking_uri: str, *, experiment_id: str | None, sweep_id: str, run_ids: Sequence[str]
) -> None:
    """Mark the sweep's MLflow runs deleted (those tagged with the sweep id, and ``run_ids``)."""
    if not run_ids and not experiment_id:
        return
    if tracking_uri.startswith(("http://", "https://")):
        _delete_over_http(tracking_uri, experiment_id, sweep_id, run_ids)
        return
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            _LOCAL_DELETE,
            tracking_uri,
            experiment_id or "",
            sweep_id,
            json.dumps(list(run_ids)),
        ],
        capture_output=True,
        text=True,
        timeout=_MLFLOW_TIMEOUT_S,
        check=False,
    )
    if result.returncode != 0:
        log.warning("sweep %s: deleting MLflow runs failed: %s", sweep_id, result.stderr[-2000:])


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
    try:
        remove_checkpoints(settings.resolved_storage_path, sweep_id)
    except OSError:
        log.exception("sweep %s: removing checkpoints failed", sweep_id)
    try:
        delete_mlflow_runs(
            settings.resolved_mlflow_tracking_uri,
            experiment_id=mlflow_experiment_id,
            sweep_id=sweep_id,
            run_ids=mlflow_run_ids,
        )
    except (OSError, subprocess.SubprocessError, httpx.HTTPError):
        log.exception("sweep %s: deleting MLflow runs failed", sweep_id)
