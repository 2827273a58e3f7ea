"""What the running app holds: settings, database, dispatcher, launcher, broker, metrics."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from starlette.concurrency import run_in_threadpool

from service.server.api.metrics import AppMetrics
from service.server.cleanup import Cleaner
from service.server.db import Database
from service.server.dispatch.base import Dispatcher
from service.server.dispatch.local_head import LocalRayHead
from service.server.events import EventBroker
from service.server.launcher import Launcher
from service.server.quotas import SubmissionLimiter
from service.server.reconciler import Supervisor
from service.settings import Settings

__all__ = ["AppContext"]

T = TypeVar("T")


@dataclass
class AppContext:
    """The app's long-lived objects (``app.state.ctx``), built by the lifespan."""

    settings: Settings
    db: Database
    metrics: AppMetrics
    broker: EventBroker = field(default_factory=EventBroker)
    dispatcher: Dispatcher | None = None
    owns_dispatcher: bool = False  # made by the lifespan (closed at shutdown), not handed in
    launcher: Launcher | None = None
    supervisor: Supervisor | None = None
    head: LocalRayHead | None = None
    gate: asyncio.Semaphore = field(init=False)
    limiter: SubmissionLimiter = field(init=False)
    cleaner: Cleaner = field(init=False)

    def __post_init__(self) -> None:
        # At most this many requests hold a database connection at once; the others wait
        # here, on the event loop, holding no thread (see service.server.db).
        self.gate = asyncio.Semaphore(self.db.request_slots)
        self.cleaner = Cleaner(self.settings)
        self.limiter = SubmissionLimiter(
            per_minute=self.settings.submissions_per_minute,
            burst=self.settings.submission_burst,
        )

    async def run_db(self, work: Callable[[], T]) -> T:
        """Run ``work`` (which opens its own short session) in a thread, through the gate."""
        async with self.gate:
            return await run_in_threadpool(work)

    def changed(self, sweep_id: str) -> None:
        """A sweep's log grew: wake its SSE streams."""
        self.broker.publish(sweep_id)

    def wake(self) -> None:
        """A sweep was queued or a slot freed: let the supervisor launch now."""
        if self.supervisor is not None:
            self.supervisor.wake()
