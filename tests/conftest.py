"""Session-wide fixtures: cached data, one local Ray for the whole run."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests._ray import RayHead, start_head

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
def ray_head() -> Iterator[RayHead]:
    """One private Ray head (2 CPUs) for the whole session, started on first use."""
    head = start_head()
    try:
        yield head
    finally:
        head.stop()


@pytest.fixture(scope="session")
def ray_session(ray_head: RayHead) -> Iterator[RayHead]:
    """This process connected to the session's Ray head (``RAY_ADDRESS`` points at it)."""
    import ray

    os.environ["RAY_ADDRESS"] = ray_head.gcs_address
    if not ray.is_initialized():
        ray.init(address=ray_head.gcs_address, log_to_driver=False)
    yield ray_head
    ray.shutdown()
