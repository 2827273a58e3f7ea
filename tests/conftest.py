"""Session-wide fixtures: cached data, one local Ray for the whole run."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from service.server.dispatch import LocalRayHead


REPO = Path(__file__).resolve().parents[1]
# Generated data is cached across runs (ignored by git); CI's clean clone builds it once.
TEST_DATA_DIR = REPO / ".cache" / "test-data"

# Ray reads these when it is imported or started: no usage stats, and
# token auth with the session head's token (Ray fixes the auth mode at import, and test modules
# import Ray at collection time, before the head exists: so the token's path is fixed now).
RAY_HOME = Path(tempfile.mkdtemp(prefix="extrap-test-ray-"))
os.environ["RAY_AUTH_MODE"] = "token"
os.environ["RAY_AUTH_TOKEN_PATH"] = str(RAY_HOME / "ray-auth-token")
os.environ.pop("RAY_AUTH_TOKEN", None)
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
    "objective": {"metric": "val_accuracy", "mode": "max"},
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
    ray_session: Any, test_data_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> FinishedSweep:
    from search_spaces import load_spec
    from service.runtime.driver import run_sweep
    from service.runtime.events import ListSink

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
def ray_head() -> Iterator[LocalRayHead]:
    """The one Ray head of the whole session (2 CPUs, 2 train_driver slots, token auth).

    It is the service's own embedded head (``LocalRayHead``): free ports, a private temp dir,
    ``RAY_ADDRESS`` in its environment, stopped without touching other Rays on the machine.
    Its home is fixed at import time (``RAY_HOME``) so that the token path is known before
    anything imports Ray.
    """
    from service.server.dispatch import LocalRayHead

    head = LocalRayHead(RAY_HOME, num_cpus=2, train_driver_slots=2)
    head.start()
    try:
        yield head
    finally:
        head.stop()
        shutil.rmtree(head.temp_dir, ignore_errors=True)  # Ray's session logs
        shutil.rmtree(RAY_HOME, ignore_errors=True)


@pytest.fixture(scope="session")
def ray_session(ray_head: LocalRayHead) -> Iterator[LocalRayHead]:
    """This process (and the subprocesses it starts) connected to the session's head."""
    import ray

    info = ray_head.info
    assert info is not None
    os.environ["RAY_ADDRESS"] = info.gcs_address
    if not ray.is_initialized():
        ray.init(address=info.gcs_address, log_to_driver=False)
    yield ray_head
    ray.shutdown()
