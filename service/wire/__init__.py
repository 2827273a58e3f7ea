"""Wire types: what travels between the server, its clients and the sweep drivers.

Pydantic and the standard library only (no FastAPI, SQLAlchemy, Ray or torch), so the CLI,
the HTTP client, the server and the driver on the Ray cluster share one definition of each:

- :mod:`~service.wire.states`: sweep states and trial statuses, and their sets;
- :mod:`~service.wire.errors`: the error body and field errors;
- :mod:`~service.wire.sweeps`: sweeps, trials, the best configuration, a dry run's verdict;
- :mod:`~service.wire.driver`: the driver's instructions and events;
- :mod:`~service.wire.encoding`: :func:`json_safe`, for non-finite floats.
"""

from __future__ import annotations

from service.wire.driver import (
    DRIVER_EVENT_TYPES,
    EVENT_ADAPTER,
    DriverEvent,
    DriverEventsIn,
    DriverEventsResult,
    DriverSpecPublic,
    HeartbeatEvent,
    SweepFinishedEvent,
    SweepRunningEvent,
    TrialFinishedEvent,
    TrialMetricsEvent,
    TrialStartedEvent,
    make_event,
)
from service.wire.encoding import json_safe
from service.wire.errors import (
    ErrorBody,
    ErrorPublic,
    FieldError,
    field_error_details,
    field_errors,
    invalid_body,
)
from service.wire.states import (
    ACTIVE_SWEEP_STATES,
    FINAL_SWEEP_STATES,
    FINAL_TRIAL_STATUSES,
    SweepState,
    TrialStatus,
)
from service.wire.sweeps import (
    BEST_MODEL_DIR,
    BEST_MODEL_FILES,
    JOB_FILE,
    WEIGHTS_FILE,
    BestPublic,
    BestSoFar,
    ConfirmationPublic,
    DryRunPublic,
    EpochMetricsPublic,
    FigureStats,
    ObjectivePublic,
    ResumeRequest,
    SweepPublic,
    SweepsPublic,
    TrialDetailPublic,
    TrialPublic,
    TrialsPublic,
)

__all__ = [
    "ACTIVE_SWEEP_STATES",
    "BEST_MODEL_DIR",
    "BEST_MODEL_FILES",
    "DRIVER_EVENT_TYPES",
    "EVENT_ADAPTER",
    "FINAL_SWEEP_STATES",
    "FINAL_TRIAL_STATUSES",
    "JOB_FILE",
    "WEIGHTS_FILE",
    "BestPublic",
    "BestSoFar",
    "ConfirmationPublic",
    "DriverEvent",
    "DriverEventsIn",
    "DriverEventsResult",
    "DriverSpecPublic",
    "DryRunPublic",
    "EpochMetricsPublic",
    "ErrorBody",
    "ErrorPublic",
    "FieldError",
    "FigureStats",
    "HeartbeatEvent",
    "ObjectivePublic",
    "ResumeRequest",
    "SweepFinishedEvent",
    "SweepPublic",
    "SweepRunningEvent",
    "SweepState",
    "SweepsPublic",
    "TrialDetailPublic",
    "TrialFinishedEvent",
    "TrialMetricsEvent",
    "TrialPublic",
    "TrialStartedEvent",
    "TrialStatus",
    "TrialsPublic",
    "field_error_details",
    "field_errors",
    "invalid_body",
    "json_safe",
    "make_event",
]
