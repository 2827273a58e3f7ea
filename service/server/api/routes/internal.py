"""``/internal/v1``: the sweep driver's side (authenticated by the sweep's driver token).

- ``GET /internal/v1/sweeps/{id}/spec``: what the driver runs and where it stores things;
- ``POST /internal/v1/sweeps/{id}/events``: ``{"events": [...]}``, applied idempotently.
"""

from __future__ import annotations

from fastapi import APIRouter

from search_spaces import FieldError
from service.server import crud
from service.server.api.deps import ContextDep, DriverSweep
from service.server.api.errors import ApiError
from service.server.events import InvalidEvent, apply_events, parse_events
from service.server.launcher import heartbeat_interval_s
from service.wire import (
    FINAL_SWEEP_STATES,
    DriverEventsIn,
    DriverEventsResult,
    DriverSpecPublic,
    SweepState,
)

__all__ = ["router"]

router = APIRouter(prefix="/internal/v1/sweeps/{sweep_id}", tags=["internal"])

# Events for a sweep in these states come from a driver that should no longer exist.
_CLOSED = frozenset({*FINAL_SWEEP_STATES, SweepState.QUEUED})


@router.get("/spec", response_model=DriverSpecPublic, summary="The driver's instructions")
def driver_spec(sweep: DriverSweep, ctx: ContextDep) -> DriverSpecPublic:
    settings = ctx.settings
    cap = settings.max_concurrent_trials
    concurrent = (sweep.spec.get("search") or {}).get("max_concurrent_trials")
    return DriverSpecPublic(
        sweep_id=sweep.id,
        spec=sweep.spec,
        spec_hash=sweep.spec_hash,
        attempt=sweep.driver_attempts,
        num_trials=sweep.num_trials,
        add_trials=sweep.add_trials,
        max_concurrent_trials=cap if concurrent is None else min(int(concurrent), cap),
        mlflow_tracking_uri=settings.resolved_mlflow_tracking_uri,
        mlflow_experiment_id=sweep.mlflow_experiment_id,
        mlflow_run_id=sweep.mlflow_run_id,
        storage_path=settings.resolved_storage_path,
        data_roots=[str(root) for root in settings.resolved_data_roots],
        heartbeat_interval_s=heartbeat_interval_s(settings),
    )


@router.post("/events", response_model=DriverEventsResult, summary="Push driver events")
def push_events(body: DriverEventsIn, sweep: DriverSweep, ctx: ContextDep) -> DriverEventsResult:
    try:
        events, unknown = parse_events(body.events)
    except InvalidEvent as exc:
        raise ApiError.invalid(
            [FieldError(path, message) for path, message in exc.errors], code="invalid_request"
        ) from None
    with ctx.db.write() as session:
        locked = crud.lock_sweep(session, sweep_id=sweep.id)
        if locked.driver_token_hash != sweep.driver_token_hash:
            raise ApiError(401, "unauthorized", "the driver was replaced by a newer launch")
        if SweepState(locked.state) in _CLOSED:
            applied, ignored = 0, len(events)
        else:
            applied, ignored = apply_events(session, sweep=locked, events=events)
        state = SweepState(locked.state)
    if applied:
        ctx.changed(sweep.id)
        if state in FINAL_SWEEP_STATES:
            ctx.wake()  # a slot is free
    return DriverEventsResult(applied=applied, ignored=ignored + unknown, state=state)
