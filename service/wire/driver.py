"""What a sweep driver and the server say to each other (``/internal/v1``).

The driver fetches :class:`DriverSpecPublic` and pushes batches of events
(:class:`DriverEventsIn`); each event is one of the ``*Event`` models, told apart by ``type``.
The runtime builds its events with :func:`make_event`, so what it sends is exactly what the
server parses:

- ``sweep_running``: ``mlflow_experiment_id``, ``mlflow_run_id``
- ``trial_started``: ``trial_id``, ``number``, ``params``, ``mlflow_run_id``
- ``trial_metrics``: ``trial_id``, ``epoch``, ``metrics``
- ``trial_finished``: ``trial_id``, ``status`` (completed | pruned | failed | diverged),
  ``error``, ``metrics``
- ``heartbeat``
- ``sweep_finished``: ``state`` (succeeded | failed), ``reason``, ``best``

Example:
    >>> event = make_event("trial_metrics", trial_id="t1", epoch=1, metrics={"loss": float("nan")})
    >>> event["type"], event["metrics"]
    ('trial_metrics', {'loss': None})
"""

from __future__ import annotations

import itertools
import threading
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, field_validator

from service.wire.encoding import json_safe
from service.wire.states import FINAL_TRIAL_STATUSES, SweepState, TrialStatus

__all__ = [
    "DRIVER_EVENT_TYPES",
    "EVENT_ADAPTER",
    "DriverEvent",
    "DriverEventsIn",
    "DriverEventsResult",
    "DriverSpecPublic",
    "HeartbeatEvent",
    "SweepFinishedEvent",
    "SweepRunningEvent",
    "TrialFinishedEvent",
    "TrialMetricsEvent",
    "TrialStartedEvent",
    "make_event",
]


class _Event(BaseModel):
    model_config = ConfigDict(extra="ignore")

    seq: int = Field(0, ge=0, description="the driver's running number (informational)")
    time: datetime | None = None


class SweepRunningEvent(_Event):
    type: Literal["sweep_running"]
    mlflow_experiment_id: str | None = None
    mlflow_run_id: str | None = None


class TrialStartedEvent(_Event):
    type: Literal["trial_started"]
    trial_id: str = Field(min_length=1, max_length=64)
    number: int = Field(ge=0)
    params: dict[str, Any] = Field(default_factory=dict)
    mlflow_run_id: str | None = None
    kind: Literal["search", "confirmation"] = Field(
        "search", description="a search trial, or a confirmation run on a fresh seed"
    )
    confirms: str | None = Field(
        None, max_length=64, description="a confirmation run: the search trial it confirms"
    )


class TrialMetricsEvent(_Event):
    type: Literal["trial_metrics"]
    trial_id: str = Field(min_length=1, max_length=64)
    epoch: int = Field(ge=0)
    metrics: dict[str, Any]


class TrialFinishedEvent(_Event):
    type: Literal["trial_finished"]
    trial_id: str = Field(min_length=1, max_length=64)
    status: TrialStatus = Field(description="how it ended: one of FINAL_TRIAL_STATUSES")
    error: str | None = None
    metrics: dict[str, Any] | None = None

    @field_validator("status")
    @classmethod
    def _final(cls, status: TrialStatus) -> TrialStatus:
        if status not in FINAL_TRIAL_STATUSES:
            raise ValueError(f"a finished trial is {sorted(FINAL_TRIAL_STATUSES)}, not {status}")
        return status


class HeartbeatEvent(_Event):
    type: Literal["heartbeat"]


class SweepFinishedEvent(_Event):
    type: Literal["sweep_finished"]
    state: Literal["succeeded", "failed"]
    reason: str | None = None
    best: dict[str, Any] | None = None


DriverEvent = Annotated[
    SweepRunningEvent
    | TrialStartedEvent
    | TrialMetricsEvent
    | TrialFinishedEvent
    | HeartbeatEvent
    | SweepFinishedEvent,
    Field(discriminator="type"),
]
EVENT_ADAPTER: TypeAdapter[Any] = TypeAdapter(DriverEvent)
"""Validates one raw event into its model (the server's parse, the runtime's build)."""

DRIVER_EVENT_TYPES = frozenset(
    get_args(model.model_fields["type"].annotation)[0]
    for model in get_args(get_args(DriverEvent)[0])
)
"""The ``type`` values above; events of other types are skipped (sent by a newer driver)."""


class DriverEventsIn(BaseModel):
    """A batch of driver events (events of unknown types are skipped, for newer drivers)."""

    events: list[dict[str, Any]] = Field(max_length=10_000)


class DriverEventsResult(BaseModel):
    applied: int = Field(description="events that changed something")
    ignored: int = Field(description="duplicates, stale or unknown events")
    state: SweepState = Field(description="the sweep's state now: a driver stops on cancelling")


class DriverSpecPublic(BaseModel):
    """What a driver needs to run its sweep (``GET /internal/v1/sweeps/{id}/spec``)."""

    sweep_id: str
    spec: dict[str, Any] = Field(description="the validated spec exactly as stored at submission")
    spec_hash: str = Field(description="its content hash, recorded at submission")
    attempt: int
    num_trials: int = Field(description="trials in total, including those added on resume")
    add_trials: int = Field(description="trials added by the last resume")
    max_concurrent_trials: int = Field(description="the spec's limit, capped by the service's")
    mlflow_tracking_uri: str
    mlflow_experiment_id: str | None
    mlflow_run_id: str | None
    storage_path: str
    data_roots: list[str]
    heartbeat_interval_s: float


_counter = itertools.count(1)
_lock = threading.Lock()


def make_event(event_type: str, **fields: Any) -> dict[str, Any]:
    """An event as JSON-able data, validated against its model.

    It gets a process-wide increasing ``seq`` and a UTC ``time``; non-finite floats become
    ``null`` (:func:`~service.wire.encoding.json_safe`).

    Raises:
        pydantic.ValidationError: ``event_type`` is unknown or a field does not fit its model.
    """
    with _lock:
        seq = next(_counter)
    event = EVENT_ADAPTER.validate_python(
        {"seq": seq, "type": event_type, "time": datetime.now(UTC), **json_safe(fields)}
    )
    data: dict[str, Any] = event.model_dump(mode="json")
    return data
