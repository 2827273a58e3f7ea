"""Driver events: applying them to the database, and waking the SSE streams that follow a sweep.

:func:`apply_events` is idempotent by content, not by sequence number: a trial that exists is
not created again, an epoch already stored is not stored again, a finished trial does not
finish twice, a final sweep does not change state. So a driver may resend a batch after a
timeout, and a resumed driver may resend what its predecessor sent, without changing anything.
Only changes are logged in ``sweep_events`` (the SSE replay log).

Example:
    >>> applied, ignored = apply_events(session, sweep=sweep, events=[  # doctest: +SKIP
    ...     {"seq": 1, "type": "heartbeat", "time": "2026-01-01T00:00:00Z"}])
"""

from __future__ import annotations

import asyncio
import math
import threading
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from service.server import crud
from service.server.models import Sweep, Trial, TrialMetric, utcnow
from service.server.states import IllegalTransition, check_trial_transition
from service.wire import (
    ACTIVE_SWEEP_STATES,
    DRIVER_EVENT_TYPES,
    EVENT_ADAPTER,
    FINAL_TRIAL_STATUSES,
    HeartbeatEvent,
    SweepFinishedEvent,
    SweepRunningEvent,
    SweepState,
    TrialFinishedEvent,
    TrialMetricsEvent,
    TrialStartedEvent,
    TrialStatus,
    json_safe,
)

__all__ = ["ERROR_LINES", "EventBroker", "InvalidEvent", "apply_events", "parse_events"]

ERROR_LINES = 30
"""A failed trial keeps the last lines of its error (the end of the traceback)."""


class InvalidEvent(ValueError):
    """An event of a known type with bad fields; ``errors`` are (path, message) pairs."""

    def __init__(self, errors: list[tuple[str, str]]) -> None:
        self.errors = errors
        super().__init__("; ".join(f"{path}: {message}" for path, message in errors))


def parse_events(raw: Sequence[Mapping[str, Any]]) -> tuple[list[Any], int]:
    """Validate raw events; unknown types are skipped (counted), bad fields raise InvalidEvent."""
    events: list[Any] = []
    errors: list[tuple[str, str]] = []
    skipped = 0
    for index, item in enumerate(raw):
        if item.get("type") not in DRIVER_EVENT_TYPES:
            skipped += 1
            continue
        try:
            events.append(EVENT_ADAPTER.validate_python(item))
        except ValidationError as exc:
            for error in exc.errors(include_url=False):
                loc = [str(part) for part in error["loc"][1:]]  # drop the union tag
                errors.append((".".join(["events", str(index), *loc]), error["msg"]))
    if errors:
        raise InvalidEvent(errors)
    return events, skipped


def apply_events(session: Session, *, sweep: Sweep, events: Sequence[Any]) -> tuple[int, int]:
    """Apply parsed events to a (locked) sweep; return (applied, ignored) counts."""
    applied = ignored = 0
    for event in events:
        handler = _HANDLERS[type(event)]
        if handler(session, sweep, event):
            applied += 1
        else:
            ignored += 1
        sweep.last_driver_seq = max(sweep.last_driver_seq, event.seq)
    if events:
        sweep.last_heartbeat = utcnow()  # any push is a sign of life
    return applied, ignored


# -- handlers: each returns True if it changed something -----------------------------------


def _sweep_running(session: Session, sweep: Sweep, event: SweepRunningEvent) -> bool:
    changed = False
    for name in ("mlflow_experiment_id", "mlflow_run_id"):
        value = getattr(event, name)
        if value and getattr(sweep, name) != value:
            setattr(sweep, name, value)
            changed = True
    if sweep.state == SweepState.STARTING.value:
        crud.set_state(session, sweep=sweep, target=SweepState.RUNNING)
        changed = True
    return changed


def _trial(session: Session, sweep: Sweep, trial_id: str, number: int = 0) -> tuple[Trial, bool]:
    trial = crud.get_trial(session, sweep_id=sweep.id, trial_id=trial_id)
    if trial is not None:
        return trial, False
    trial = Trial(
        sweep_id=sweep.id,
        trial_id=trial_id,
        number=number,
        params={},
        status=TrialStatus.RUNNING.value,
        started_at=utcnow(),
    )
    session.add(trial)
    session.flush()
    return trial, True


def _trial_started(session: Session, sweep: Sweep, event: TrialStartedEvent) -> bool:
    trial, created = _trial(session, sweep, event.trial_id, event.number)
    if not created:
        if trial.status == TrialStatus.RUNNING.value and trial.params:
            return False  # a resend, or a resumed driver restarting it from its checkpoint
        try:
            check_trial_transition(trial.status, TrialStatus.RUNNING)
        except IllegalTransition:
            return False  # already finished: a late resend
    trial.number = event.number
    trial.params = json_safe(event.params)
    trial.status = TrialStatus.RUNNING.value
    trial.error = None
    trial.finished_at = None
    trial.mlflow_run_id = event.mlflow_run_id or trial.mlflow_run_id
    trial.kind, trial.confirms = event.kind, event.confirms
    payload = {"trial_id": trial.trial_id, "number": trial.number, "params": trial.params}
    if event.kind != "search":
        payload |= {"kind": event.kind, "confirms": event.confirms}
    crud.append_event(session, sweep=sweep, type="trial_started", payload=payload)
    return True


def _objective_value(sweep: Sweep, metrics: Mapping[str, Any] | None) -> float | None:
    value = (metrics or {}).get(sweep.objective_metric)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _note_best(session: Session, sweep: Sweep) -> None:
    if crud.update_best(session, sweep=sweep):
        crud.append_event(
            session,
            sweep=sweep,
            type="best",
            payload={"trial_id": sweep.best_trial_id, "value": sweep.best_value},
        )


def _trial_metrics(session: Session, sweep: Sweep, event: TrialMetricsEvent) -> bool:
    trial, _ = _trial(session, sweep, event.trial_id)
    exists = session.execute(
        select(TrialMetric.id).where(
            TrialMetric.trial_pk == trial.id, TrialMetric.epoch == event.epoch
        )
    ).first()
    if exists is not None:
        return False
    metrics = json_safe(event.metrics)
    session.add(TrialMetric(trial_pk=trial.id, epoch=event.epoch, metrics=metrics))
    if trial.last_epoch is None or event.epoch >= trial.last_epoch:
        trial.last_epoch = event.epoch
        trial.metrics = metrics
        trial.value = _objective_value(sweep, metrics)
    crud.append_event(
        session,
        sweep=sweep,
        type="trial_metrics",
        payload={"trial_id": trial.trial_id, "epoch": event.epoch, "metrics": metrics},
    )
    _note_best(session, sweep)
    return True


def _last_lines(text: str | None) -> str | None:
    if text is None:
        return None
    return "\n".join(text.rstrip().splitlines()[-ERROR_LINES:])


def _trial_finished(session: Session, sweep: Sweep, event: TrialFinishedEvent) -> bool:
    trial, _ = _trial(session, sweep, event.trial_id)
    if trial.status == event.status and trial.status in FINAL_TRIAL_STATUSES:
        return False
    try:
        check_trial_transition(trial.status, event.status)
    except IllegalTransition:
        return False
    trial.status = event.status
    trial.error = _last_lines(event.error)
    trial.finished_at = utcnow()
    if event.metrics:
        trial.metrics = json_safe(event.metrics)
        trial.value = _objective_value(sweep, trial.metrics)
    crud.append_event(
        session,
        sweep=sweep,
        type="trial_finished",
        payload={
            "trial_id": trial.trial_id,
            "status": trial.status,
            "error": trial.error,
            "metrics": trial.metrics,
        },
    )
    _note_best(session, sweep)
    return True


def _heartbeat(session: Session, sweep: Sweep, event: HeartbeatEvent) -> bool:
    return True  # apply_events stamps last_heartbeat for every batch


def _sweep_finished(session: Session, sweep: Sweep, event: SweepFinishedEvent) -> bool:
    if SweepState(sweep.state) not in ACTIVE_SWEEP_STATES:
        return False
    best = json_safe(event.best) if event.best else None
    if best is not None:
        sweep.best = best
        value = best.get("value")
        if isinstance(value, int | float) and best.get("trial_id"):
            sweep.best_trial_id, sweep.best_value = str(best["trial_id"]), float(value)
    reason = "the sweep finished with this trial still open"
    if sweep.driver_attempts > 1:  # a lost driver's trial that Tune had not saved yet
        reason += "; it was started by a driver that was lost, and the resumed one ran another"
    crud.close_open_trials(session, sweep=sweep, reason=reason)
    crud.set_state(session, sweep=sweep, target=SweepState(event.state), reason=event.reason)
    return True


_HANDLERS: Mapping[type[Any], Callable[[Session, Sweep, Any], bool]] = {
    SweepRunningEvent: _sweep_running,
    TrialStartedEvent: _trial_started,
    TrialMetricsEvent: _trial_metrics,
    TrialFinishedEvent: _trial_finished,
    HeartbeatEvent: _heartbeat,
    SweepFinishedEvent: _sweep_finished,
}


class EventBroker:
    """Wakes the SSE streams of a sweep when its event log grew (the log itself is the DB).

    ``publish`` may be called from any thread; streams wait on the event loop they run in.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._waiters: dict[str, set[tuple[asyncio.AbstractEventLoop, asyncio.Event]]] = (
            defaultdict(set)
        )

    def subscribe(self, sweep_id: str) -> asyncio.Event:
        """An event set whenever the sweep's log grows; pair with :meth:`unsubscribe`."""
        waiter = asyncio.Event()
        with self._lock:
            self._waiters[sweep_id].add((asyncio.get_running_loop(), waiter))
        return waiter

    def unsubscribe(self, sweep_id: str, waiter: asyncio.Event) -> None:
        with self._lock:
            entries = self._waiters.get(sweep_id, set())
            for entry in [e for e in entries if e[1] is waiter]:
                entries.discard(entry)
            if not entries:
                self._waiters.pop(sweep_id, None)

    def publish(self, sweep_id: str) -> None:
        """Wake every stream following ``sweep_id``."""
        with self._lock:
            entries = list(self._waiters.get(sweep_id, ()))
        for loop, waiter in entries:
            if not loop.is_closed():
                loop.call_soon_threadsafe(waiter.set)
