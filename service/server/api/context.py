"""What the running app holds: settings, database, dispatcher, launcher, broker, metrics."""

from __future__ import annotations

from dataclasses import dataclass, field

from service.server.api.metrics import AppMetrics
from service.server.db import Database
from service.server.dispatch.base import Dispatcher
from service.server.dispatch.local_head import LocalRayHead
from service.server.events import EventBroker
from service.server.launcher import Launcher
from service.server.reconciler import Supervisor
from service.settings import Settings

__all__ = ["AppContext"]


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

    def changed(self, sweep_id: str) -> None:
        """A sweep's log grew: wake its SSE streams."""
        self.broker.publish(sweep_id)

    def wake(self) -> None:
        """A sweep was queued or a slot freed: let the supervisor launch now."""
        if self.supervisor is not None:
            self.supervisor.wake()
