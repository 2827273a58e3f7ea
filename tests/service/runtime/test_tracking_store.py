"""Drivers that start together on a fresh SQLite MLflow store: a service's study runs its cells
two at a time, and MLflow's own migrations fail in the second process ("Online migration
expected to match one row") unless the store is prepared under a lock."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(240)

_DRIVER_START = """
import sys, time
from mlflow.tracking import MlflowClient
from service.runtime.tracking import prepare_tracking_store
uri, name, start = sys.argv[1], sys.argv[2], float(sys.argv[3])
time.sleep(max(0.0, start - time.time()))  # every process opens the store at the same moment
prepare_tracking_store(uri)
MlflowClient(tracking_uri=uri).create_experiment(name)
"""


def test_processes_opening_a_fresh_sqlite_store_at_once_all_succeed(tmp_path: Path) -> None:
    import time

    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}"  # its folder does not exist yet
    start = time.time() + 8  # past every process's imports
    drivers = [
        subprocess.Popen(
            [sys.executable, "-c", _DRIVER_START, uri, f"sweep-{k}", str(start)],
            stderr=subprocess.PIPE,
            text=True,
        )
        for k in range(3)
    ]
    errors = [driver.communicate(timeout=200)[1] for driver in drivers]
    assert [driver.returncode for driver in drivers] == [0, 0, 0], "\n".join(errors)[-3000:]
    names = {e.name for e in MlflowClient(tracking_uri=uri).search_experiments()}
    assert {"sweep-0", "sweep-1", "sweep-2"} <= names
