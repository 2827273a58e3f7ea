"""Fixtures of the server's tests that run the real driver."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from service.server.dispatch import RayJobDispatcher
from tests.service.server._service import Service


@pytest.fixture
def service(dispatcher: RayJobDispatcher, tmp_path: Path, test_data_dir: Path) -> Iterator[Service]:
    running = Service(tmp_path / "home", dispatcher, test_data_dir)
    running.start()
    yield running
    running.stop()
