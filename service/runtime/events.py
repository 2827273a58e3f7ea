"""What a running sweep tells the outside world: a stream of small JSON-able events.

The driver process forwards them to the service (``service.runtime.driver``); ``extrap run``
shows them as a live table. Event types and their fields (besides ``seq``, ``type`` and ``time``):

- ``sweep_running``: ``mlflow_experiment_id``, ``mlflow_run_id``
- ``trial_started``: ``trial_id``, ``number``, ``params``, ``mlflow_run_id``
- ``trial_metrics``: ``trial_id``, ``epoch``, ``metrics``
- ``trial_finished``: ``trial_id``, ``status`` (completed | pruned | failed | diverged),
  ``error``, ``metrics``
- ``heartbeat``
- ``sweep_finished``: ``state`` (succeeded | failed), ``reason``, ``best``
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Protocol

__all__ = ["TRIAL_STATUSES", "CallbackSink", "EventSink", "ListSink", "make_event"]

TRIAL_STATUSES = ("completed", "pruned", "failed", "diverged")


class EventSink(Protocol):
    """Where events go; ``emit`` must not block the Tune loop for long."""

    def emit(self, event: dict[str, Any]) -> None: ...


_counter = itertools.count(1)
_lock = threading.Lock()


def make_event(event_type: str, **fields: Any) -> dict[str, Any]:
    """An event with a process-wide increasing ``seq`` and a UTC timestamp."""
    with _lock:
        seq = next(_counter)
    return {"seq": seq, "type": event_type, "time": datetime.now(UTC).isoformat(), **fields}


class ListSink:
    """Keeps every event (tests, and the local run's summary)."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    def emit(self, event: dict[str, Any]) -> None:
        self.events.append(event)

    def of_type(self, event_type: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["type"] == event_type]


class CallbackSink:
    """Calls a function per event (the CLI's live display)."""

    def __init__(self, callback: Callable[[dict[str, Any]], None]) -> None:
        self.callback = callback

    def emit(self, event: dict[str, Any]) -> None:
        self.callback(event)
