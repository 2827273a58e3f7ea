"""``/internal/v1``: the sweep driver's side (authenticated by the sweep's driver token).

- ``GET /internal/v1/sweeps/{id}/spec``: what the driver runs and where it stores things;
- ``POST /internal/v1/sweeps/{id}/events``: ``{"events": [...]}``, applied idempotently.

The token is checked before the body is read; a sweep that ended has no valid token any more.
Values the database could not keep (a NUL character, a number beyond the 32-bit columns, an id
longer than its column) are refused with a 422 naming ``events.<i>.<field>``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request

from search_spaces import FieldError
from service.server import crud
from service.server.api.bodies import json_request_body, media_type, parse_model, read_body
from service.server.api.deps import MAX_INT32, ContextDep, DriverSweep, SessionDep
from service.server.api.errors import ApiError, error_responses
from service.server.events import InvalidEvent, apply_events, parse_events
from service.server.launcher import heartbeat_interval_s
from service.server.quotas import trial_slots
from service.wire import (
    FINAL_SWEEP_STATES,
    DriverEventsIn,
    DriverEventsResult,
    DriverSpecPublic,
    SweepState,
)

__all__ = ["router", "storage_errors"]

router = APIRouter(prefix="/internal/v1/sweeps/{sweep_id}", tags=["internal"])

# Events for a sweep in these states come from a driver that should no longer exist.
_CLOSED = frozenset({*FINAL_SWEEP_STATES, SweepState.QUEUED})
_INT_FIELDS = ("seq", "epoch", "number")  # stored in 32-bit columns
_ID_FIELDS = {"trial_id": 64, "mlflow_run_id": 64, "mlflow_experiment_id": 64}
_MAX_JSON_INT = 2**63 - 1


@router.get(
    "/spec",
    response_model=DriverSpecPublic,
    summary="The driver's instructions",
    responses=error_responses(401, 422, 503),
)
def driver_spec(sweep: DriverSweep, ctx: ContextDep) -> DriverSpecPublic:
    settings = ctx.settings
    return DriverSpecPublic(
        sweep_id=sweep.id,
        spec=sweep.spec,
        spec_hash=sweep.spec_hash,
        attempt=sweep.driver_attempts,
        num_trials=sweep.num_trials,
        add_trials=sweep.add_trials,
        max_concurrent_trials=trial_slots(sweep.spec, sweep.num_trials, settings),
        mlflow_tracking_uri=settings.resolved_mlflow_tracking_uri,
        mlflow_experiment_id=sweep.mlflow_experiment_id,
        mlflow_run_id=sweep.mlflow_run_id,
        storage_path=settings.resolved_storage_path,
        data_roots=[str(root) for root in settings.resolved_data_roots],
        heartbeat_interval_s=heartbeat_interval_s(settings),
    )


def _walk(path: str, value: Any) -> Iterator[tuple[str, Any]]:
    stack = [(path, value)]
    while stack:
        where, item = stack.pop()
        yield where, item
        if isinstance(item, Mapping):
            for key, child in item.items():
                if isinstance(key, str) and "\x00" in key:
                    yield f"{where}.{key.replace(chr(0), '?')}", key  # the key itself
                stack.append((f"{where}.{key}", child))
        elif isinstance(item, list):
            stack.extend((f"{where}.{i}", child) for i, child in enumerate(item))


def storage_errors(events: Sequence[Mapping[str, Any]]) -> list[FieldError]:
    """What in a batch of raw events the database could not store, by field path."""
    errors: list[FieldError] = []
    for index, raw in enumerate(events):
        base = f"events.{index}"
        for name in _INT_FIELDS:
            value = raw.get(name)
            if isinstance(value, int) and not 0 <= value <= MAX_INT32:
                errors.append(FieldError(f"{base}.{name}", f"{value} is not in 0..{MAX_INT32}"))
        for name, limit in _ID_FIELDS.items():
            value = raw.get(name)
            if isinstance(value, str) and len(value) > limit:
                errors.append(FieldError(f"{base}.{name}", f"at most {limit} characters"))
        for where, item in _walk(base, raw):
            if isinstance(item, str) and "\x00" in item:
                errors.append(
                    FieldError(where.replace("\x00", "?"), "contains a NUL character (\\x00)")
                )
            elif isinstance(item, int) and not isinstance(item, bool) and abs(item) > _MAX_JSON_INT:
                errors.append(FieldError(where, "an integer beyond 64 bits"))
    return errors


async def read_events_body(
    request: Request, sweep: DriverSweep, session: SessionDep
) -> DriverEventsIn:
    """The batch in the body, read once the driver's token was accepted."""
    raw = await read_body(request, session)
    body = parse_model(
        raw, media_type(request), DriverEventsIn, required=True, allow_non_finite=True
    )
    assert body is not None
    return body


@router.post(
    "/events",
    response_model=DriverEventsResult,
    summary="Push driver events",
    openapi_extra=json_request_body("DriverEventsIn"),
    responses=error_responses(400, 401, 413, 415, 422, 503),
)
def push_events(
    sweep: DriverSweep,
    body: Annotated[DriverEventsIn, Depends(read_events_body)],
    session: SessionDep,
    ctx: ContextDep,
) -> DriverEventsResult:
    problems = storage_errors(body.events)
    if problems:
        raise ApiError.invalid(problems, code="invalid_request")
    try:
        events, unknown = parse_events(body.events)
    except InvalidEvent as exc:
        raise ApiError.invalid(
            [FieldError(path, message) for path, message in exc.errors], code="invalid_request"
        ) from None
    token_hash = sweep.driver_token_hash
    with ctx.db.writing(session):
        locked = crud.lock_sweep(session, sweep_id=sweep.id)
        if locked.driver_token_hash != token_hash:
            raise ApiError(
                401,
                "unauthorized",
                "the driver was replaced by a newer launch, or the sweep ended",
                headers={"WWW-Authenticate": "Bearer"},
            )
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
