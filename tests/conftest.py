"""Session-wide fixtures: cached data, one local Ray for the whole run."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests._ray import RayHead, start_head

REPO = Path(__file__).resolve().parents[1]
# Generated data is cached across runs (ignored by git); CI's clean clone builds it once.
TEST_DATA_DIR = REPO / ".cache" / "test-data"

# Ray reads these when it starts: fast report polling, no token auth or usage stats locally.
os.environ.setdefault("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.5")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")


TINY_SPEC: dict[str, Any] = {
    "name": "tiny-mnist1d",
    "job": {
        "workload": "mnist1d",
        "workload_options": {"num_samples": 2000, "hidden": 32},
        "global_batch_size": 200,
        "workers": 2,
        "cpus_per_worker": 1,
        "epochs": 2,
        "optimizer": {"lr": 0.3, "momentum": 0.9},
    },
    "space": {
        "lr": {"type": "float", "low": 0.05, "high": 0.5, "log": True},
        "extrapolation": {"type": "categorical", "choices": ["none", "gradient"]},
        "gamma_ratio": {
            "type": "float",
            "low": 0.02,
            "high": 0.25,
            "log": True,
            "when": {"extrapolation": ["gradient"]},
        },
    },
    "objective": {"metric": "accuracy", "mode": "max"},
    "search": {
        "sampler": "tpe",
        "num_trials": 3,
        "max_concurrent_trials": 1,
        "scheduler": {"kind": "asha", "grace_period": 1, "reduction_factor": 2},
        "seed": 3,
    },
}


def tiny_spec(data_dir: Path, **search: Any) -> dict[str, Any]:
    """The tiny MNIST-1D sweep the tests run (about 20 s a trial here)."""
    spec = json.loads(json.dumps(TINY_SPEC))
    spec["job"]["data_dir"] = str(data_dir)
    spec["search"].update(search)
    return spec


@dataclass(frozen=True)
class FinishedSweep:
    """A tiny sweep run once per session; tests only read it."""

    spec: Any
    sweep_id: str
    outcome: Any
    events: list[dict[str, Any]]
    tracking_uri: str
    storage_path: Path


@pytest.fixture(scope="session")
def finished_sweep(
    ray_session: RayHead, test_data_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> FinishedSweep:
    from search_spaces import load_spec
    from service.sweeps.events import ListSink
    from service.sweeps.runner import run_sweep

    home = tmp_path_factory.mktemp("finished-sweep")
    spec = load_spec(tiny_spec(test_data_dir))
    sink = ListSink()
    tracking_uri = f"sqlite:///{home}/mlflow.db"
    outcome = run_sweep(
        spec,
        sweep_id="tiny",
        storage_path=str(home / "runs"),
        tracking_uri=tracking_uri,
        events=sink,
    )
    return FinishedSweep(spec, "tiny", outcome, sink.events, tracking_uri, home / "runs")


@pytest.fixture(scope="session")
def test_data_dir() -> Path:
    TEST_DATA_DIR.mkdir(parents=True, exist_ok=True)
    return TEST_DATA_DIR


@pytest.fixture(scope="session")
def session_ray_head() -> Iterator[RayHead]:
    """One private Ray head (2 CPUs) for the whole session, started on first use."""
    head = start_head()
    try:
        yield head
    finally:
        head.stop()


@pytest.fixture(scope="session")
def ray_session(session_ray_head: RayHead) -> Iterator[RayHead]:
    """This process connected to the session's Ray head (``RAY_ADDRESS`` points at it)."""
    import ray

    os.environ["RAY_ADDRESS"] = session_ray_head.gcs_address
    if not ray.is_initialized():
        ray.init(address=session_ray_head.gcs_address, log_to_driver=False)
    yield session_ray_head
    ray.shutdown()
