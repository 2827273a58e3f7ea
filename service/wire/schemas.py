"""API schemas: what the REST API accepts and returns (ORM tables: :mod:`service.server.models`).

One family per resource, as in the FastAPI full-stack template: ``SweepPublic`` (output),
``SweepsPublic {data, count}`` (lists), ``TrialPublic``/``TrialDetailPublic``/``TrialsPublic``,
``BestPublic``. The input of ``POST /v1/sweeps`` is a :class:`search_spaces.SweepSpec`. The
driver's events are the ``*Event`` models, told apart by ``type``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from service.server.states import SweepState, TrialStatus

__all__ = [
    "DRIVER_EVENT_TYPES",
    "BestPublic",
    "DriverEvent",
    "DriverEventsIn",
    "DriverEventsResult",
    "DriverSpecPublic",
    "EpochMetricsPublic",
    "ErrorBody",
    "ErrorPublic",
    "HeartbeatEvent",
    "ObjectivePublic",
    "ResumeRequest",
    "SweepFinishedEvent",
    "SweepPublic",
    "SweepRunningEvent",
    "SweepsPublic",
    "TrialDetailPublic",
    "TrialFinishedEvent",
    "TrialMetricsEvent",
    "TrialPublic",
    "TrialStartedEvent",
    "TrialsPublic",
]


class _Out(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class ObjectivePublic(_Out):
    metric: str
    mode: Literal["max", "min"]


class BestSoFar(_Out):
    trial_id: str
    value: float


class SweepPublic(_Out):
    """A sweep as the API shows it."""

    id: str
    name: str
    owner: str
    state: SweepState
    reason: str | None = Field(None, description="why the sweep failed, or was stopped")
    objective: ObjectivePublic
    num_trials: int = Field(description="trials in total, including those added on resume")
    trial_counts: dict[str, int] = Field(description="trials by status")
    best: BestSoFar | None = Field(None, description="the best trial so far by the objective")
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    updated_at: datetime
    mlflow_experiment_id: str | None = None
    mlflow_run_id: str | None = None
    mlflow_url: str | None = Field(None, description="the sweep's parent run in the MLflow UI")
    ray_job_id: str | None = Field(None, description="the driver's current Ray job")
    driver_attempts: int = Field(description="driver launches since the last (re)submission")
    last_heartbeat: datetime | None = None
    spec: dict[str, Any] = Field(description="the validated spec (preset merged in)")


class SweepsPublic(_Out):
    data: list[SweepPublic]
    count: int = Field(description="sweeps matching the filter, over all pages")


class TrialPublic(_Out):
    """A trial as the API lists it."""

    trial_id: str
    number: int
    params: dict[str, Any]
    status: TrialStatus
    error: str | None = Field(None, description="the failure reason (traceback's last lines)")
    metrics: dict[str, Any] | None = Field(None, description="the latest reported metrics")
    value: float | None = Field(None, description="the objective metric's latest value")
    last_epoch: int | None = None
    mlflow_run_id: str | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None


class EpochMetricsPublic(_Out):
    epoch: int
    metrics: dict[str, Any]
    time: datetime


class TrialDetailPublic(TrialPublic):
    """A trial with its per-epoch metrics."""

    epochs: list[EpochMetricsPublic]


class TrialsPublic(_Out):
    data: list[TrialPublic]
    count: int


class BestPublic(_Out):
    """The best trial of a sweep: its params, metrics and the job fields they set."""

    sweep_id: str
    trial_id: str
    number: int | None = None
    value: float | None
    objective: ObjectivePublic
    params: dict[str, Any]
    metrics: dict[str, Any] | None = None
    job_overrides: dict[str, Any] = Field(
        description="the params as dotted job fields, e.g. optimizer.lr"
    )


class ResumeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    add_trials: int = Field(0, ge=0, description="run this many trials more than before")


class ErrorBody(BaseModel):
    code: str = Field(description="stable machine-readable code, e.g. not_found")
    message: str
    field: str | None = Field(None, description="dotted path of the offending field")
    details: list[dict[str, Any]] = Field(default_factory=list)


class ErrorPublic(BaseModel):
    """Every error the API returns has this shape."""

    error: ErrorBody


# -- the driver's side ---------------------------------------------------------------------


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


class TrialMetricsEvent(_Event):
    type: Literal["trial_metrics"]
    trial_id: str = Field(min_length=1, max_length=64)
    epoch: int = Field(ge=0)
    metrics: dict[str, Any]


class TrialFinishedEvent(_Event):
    type: Literal["trial_finished"]
    trial_id: str = Field(min_length=1, max_length=64)
    status: Literal["completed", "pruned", "failed", "diverged"]
    error: str | None = None
    metrics: dict[str, Any] | None = None


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
DRIVER_EVENT_TYPES = frozenset(
    {
        "sweep_running",
        "trial_started",
        "trial_metrics",
        "trial_finished",
        "heartbeat",
        "sweep_finished",
    }
)


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
    spec: dict[str, Any] = Field(description="the spec; search.num_trials is the total")
    attempt: int
    num_trials: int
    add_trials: int = Field(description="trials added by the last resume")
    mlflow_tracking_uri: str
    mlflow_experiment_id: str | None
    mlflow_run_id: str | None
    storage_path: str
    data_roots: list[str]
    heartbeat_interval_s: float
