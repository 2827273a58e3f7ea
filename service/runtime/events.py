"""Where a running sweep's events go: the service, the CLI's live display, or a list.

Events are built with :func:`service.wire.make_event` (one model per type, JSON-safe); the
driver pushes them to the service (:class:`HttpEventSink` in :mod:`service.runtime.driver`),
``extrap run`` shows them as a live table (:class:`CallbackSink`), tests keep them
(:class:`ListSink`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

__all__ = ["CallbackSink", "EventSink", "ListSink"]


class EventSink(Protocol):
    """Where events go; ``emit`` must not block the Tune loop for long."""

    def emit(self, event: dict[str, Any]) -> None: ...


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
