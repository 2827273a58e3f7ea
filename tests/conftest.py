"""Session-wide fixtures: cached data, one local Ray for the whole run."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# Generated data is cached across runs (ignored by git); CI's clean clone builds it once.
TEST_DATA_DIR = REPO / ".cache" / "test-data"

# Ray reads these when it starts: fast report polling, no token auth or usage stats locally.
os.environ.setdefault("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.5")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")


@pytest.fixture(scope="session")
def test_data_dir() -> Path:
    TEST_DATA_DIR.mkdir(parents=True, exist_ok=True)
    return TEST_DATA_DIR


@pytest.fixture(scope="session")
def ray_session() -> Iterator[None]:
    """One local Ray (2 CPUs) shared by every test that needs Ray; started on first use."""
    import ray

    if not ray.is_initialized():
        ray.init(num_cpus=2, resources={"train_driver": 1}, log_to_driver=False)
    yield
    ray.shutdown()
