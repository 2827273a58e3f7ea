"""Persistence: keyword-only functions over a session (the caller commits).

Every state change goes through :func:`set_state`, which asks :mod:`service.server.states`
whether it is allowed, stamps the timestamps and appends a ``state`` entry to the sweep's event log.
The API reads sweeps as plain rows (:func:`sweep_row`, :func:`list_sweeps`): one query each,
no ORM objects to build, nothing loaded lazily.

Example:
    >>> sweep = create_sweep(session, owner=user, spec=spec)  # doctest: +SKIP
    >>> set_state(session, sweep=sweep, target=SweepState.STARTING)  # doctest: +SKIP
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Protocol, TypeAlias

from sqlalchemy import bindparam, func, select, true
from sqlalchemy.orm import Session, aliased, joinedload

from search_spaces import SweepSpec
from service.server.fastsql import Direct, FastSelect
from service.server.models import (
    ApiToken,
    Study,
    Sweep,
    SweepEvent,
    Trial,
    TrialMetric,
    User,
    utcnow,
)
from service.server.states import check_sweep_transition
from service.wire import FINAL_SWEEP_STATES, SweepState, TrialStatus
from service.wire.studies import DELETED_CELL

__all__ = [
    "Principal",
    "StudyNotFound",
    "SweepNotFound",
    "SweepRow",
    "append_event",
    "best_trial",
    "caller_and_sweep",
    "cancel",
    "check_visible",
    "close_open_trials",
    "create_study",
    "create_sweep",
    "events_after",
    "get_study",
    "get_sweep",
    "get_trial",
    "list_studies",
    "list_sweeps",
    "list_trials",
    "lock_sweep",
    "queued_sweeps",
    "requeue",
    "set_state",
    "study_sweeps",
    "sweep_by_idempotency_key",
    "sweep_row",
    "sweep_with_counts",
    "sweep_with_counts_of",
    "sweeps_in",
    "trial_counts",
    "trial_epochs",
    "update_best",
]

_STATUSES = tuple(status.value for status in TrialStatus)
# Trials whose latest value does not rank them: they ended without a meaningful objective.
_UNRANKED = (TrialStatus.FAILED.value, TrialStatus.DIVERGED.value)


SweepRow: TypeAlias = Any
"""A sweep read as a plain row (a SQLAlchemy ``Row`` or a named tuple): its columns by name,
and ``owner_name``."""


class Principal(Protocol):
    """Who acts: a :class:`~service.server.models.User` row or an authenticated caller."""

    @property
    def id(self) -> int: ...

    @property
    def is_admin(self) -> bool: ...


class SweepNotFound(LookupError):
    """No such sweep, or one the caller may not see (both read as 404)."""

    def __init__(self, sweep_id: str) -> None:
        self.sweep_id = sweep_id
        super().__init__(f"sweep {sweep_id!r} not found")


def new_sweep_id() -> str:
    """A short random id (12 hex digits): unique across databases, so storage never clashes."""
    return uuid.uuid4().hex[:12]


def create_sweep(
    session: Session, *, owner: Principal, spec: SweepSpec, idempotency_key: str | None = None
) -> Sweep:
    """Store a validated spec as a new ``queued`` sweep (``idempotency_key``: unique per owner)."""
    sweep = Sweep(
        id=new_sweep_id(),
        name=spec.name,
        owner_id=owner.id,
        spec=spec.stored_form(),
        spec_hash=spec.content_hash(),
        state=SweepState.QUEUED.value,
        objective_metric=spec.objective.metric,
        objective_mode=spec.objective.mode,
        num_trials=spec.search.num_trials,
        add_trials=0,
        driver_attempts=0,
        last_driver_seq=0,
        event_seq=0,
        idempotency_key=idempotency_key,
    )
    session.add(sweep)
    session.flush()
    append_event(session, sweep=sweep, type="state", payload={"state": sweep.state, "reason": None})
    return sweep


def _visible(user: Principal) -> Any:
    return True if user.is_admin else Sweep.owner_id == user.id


def _may_see(user: Principal | None, owner_id: int) -> bool:
    return user is None or user.is_admin or owner_id == user.id


# The API's reads: plain rows (no ORM objects, no lazy loads), the owner's name joined in.
_SWEEP_ROWS = select(*Sweep.__table__.c, User.name.label("owner_name")).join(
    User, User.id == Sweep.owner_id
)


_SWEEP_ROW = _SWEEP_ROWS.where(Sweep.id == bindparam("sweep_id"))


def _count_of(status: str) -> Any:
    return (
        select(func.count())
        .select_from(Trial)
        .where(Trial.sweep_id == Sweep.id, Trial.status == status)
        .correlate(Sweep)
        .scalar_subquery()
        .label(f"trials_{status}")
    )


# A sweep with its trial counts by status: one statement, compiled once, run on the driver's
# cursor (service.server.fastsql).
_SWEEP_WITH_COUNTS = FastSelect(
    select(*Sweep.__table__.c, User.name.label("owner_name"), *(_count_of(s) for s in _STATUSES))
    .join(User, User.id == Sweep.owner_id)
    .where(Sweep.id == bindparam("sweep_id"))
)


# The caller an unrevoked token belongs to, and the sweep with its trial counts: one statement
# (authentication costs no query of its own). No such sweep: its columns are NULL.
_CALLER = aliased(User, name="caller")
_CALLER_AND_SWEEP = FastSelect(
    select(
        _CALLER.id.label("caller_id"),
        _CALLER.name.label("caller_name"),
        _CALLER.is_admin.label("caller_is_admin"),
        *Sweep.__table__.c,
        User.name.label("owner_name"),
        *(_count_of(s) for s in _STATUSES),
    )
    .select_from(ApiToken)
    .join(_CALLER, _CALLER.id == ApiToken.user_id)
    .outerjoin(Sweep, Sweep.id == bindparam("sweep_id"))
    .outerjoin(User, User.id == Sweep.owner_id)
    .where(ApiToken.token_hash == bindparam("token_hash"), ApiToken.revoked_at.is_(None))
)


def sweep_row(session: Session, *, sweep_id: str, user: Principal | None = None) -> SweepRow:
    """The sweep as a row (its columns and ``owner_name``), if ``user`` may see it."""
    row = session.connection().execute(_SWEEP_ROW, {"sweep_id": sweep_id}).first()
    if row is None or not _may_see(user, row.owner_id):
        raise SweepNotFound(sweep_id)
    return row


def sweep_with_counts(
    session: Session, *, sweep_id: str, user: Principal | None = None
) -> tuple[SweepRow, dict[str, int]]:
    """:func:`sweep_row` and its :func:`trial_counts`, in one query."""
    row = _SWEEP_WITH_COUNTS.first(session, sweep_id=sweep_id)
    return sweep_with_counts_of(row, sweep_id=sweep_id, user=user)


def caller_and_sweep(on: Session | Direct, *, token_hash: str, sweep_id: str) -> Any | None:
    """In one statement: who holds the unrevoked token ``token_hash`` (``caller_id``,
    ``caller_name``, ``caller_is_admin``) and the sweep ``sweep_id`` with its trial counts (for
    :func:`sweep_with_counts_of`); ``None`` if the token is unknown or revoked."""
    return _CALLER_AND_SWEEP.first(on, token_hash=token_hash, sweep_id=sweep_id)


def sweep_with_counts_of(
    row: Any | None, *, sweep_id: str, user: Principal | None = None
) -> tuple[SweepRow, dict[str, int]]:
    """The sweep of a row read with its counts, and the counts, if ``user`` may see it."""
    if row is None or row.id is None or not _may_see(user, row.owner_id):
        raise SweepNotFound(sweep_id)
    return row, {status: getattr(row, f"trials_{status}") for status in _STATUSES}


def check_visible(session: Session, *, sweep_id: str, user: Principal) -> None:
    """Raise :class:`SweepNotFound` unless the sweep exists and ``user`` may see it."""
    owner_id = session.execute(select(Sweep.owner_id).where(Sweep.id == sweep_id)).scalar()
    if owner_id is None or not _may_see(user, owner_id):
        raise SweepNotFound(sweep_id)


def sweep_by_idempotency_key(session: Session, *, owner: Principal, key: str) -> Sweep | None:
    """The owner's sweep submitted with ``key``, if any."""
    return session.execute(
        select(Sweep).where(Sweep.owner_id == owner.id, Sweep.idempotency_key == key)
    ).scalar_one_or_none()


def get_sweep(session: Session, *, sweep_id: str, user: Principal | None = None) -> Sweep:
    """The sweep, if ``user`` may see it (its owner or an admin; ``None``: no check)."""
    sweep = session.get(Sweep, sweep_id, options=[joinedload(Sweep.owner)])
    if sweep is None or not _may_see(user, sweep.owner_id):
        raise SweepNotFound(sweep_id)
    return sweep


def lock_sweep(session: Session, *, sweep_id: str, user: Principal | None = None) -> Sweep:
    """Like :func:`get_sweep`, but locks the row for this transaction (PostgreSQL)."""
    sweep = session.execute(
        select(Sweep)
        .where(Sweep.id == sweep_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).scalar_one_or_none()
    if sweep is None or not _may_see(user, sweep.owner_id):
        raise SweepNotFound(sweep_id)
    return sweep


def list_sweeps(
    session: Session,
    *,
    user: Principal,
    states: Sequence[SweepState] = (),
    offset: int = 0,
    limit: int = 100,
) -> tuple[list[SweepRow], int]:
    """A page of the sweeps ``user`` may see (rows, as :func:`sweep_row`), newest first, and
    how many there are in all."""
    where = [_visible(user)]
    if states:
        where.append(Sweep.state.in_([state.value for state in states]))
    count = session.execute(select(func.count()).select_from(Sweep).where(*where)).scalar_one()
    rows = session.execute(
        _SWEEP_ROWS.where(*where)
        .order_by(Sweep.created_at.desc(), Sweep.id.desc())
        .offset(offset)
        .limit(limit)
    ).all()
    return list(rows), count


def sweeps_in(session: Session, *, states: Iterable[SweepState]) -> list[Sweep]:
    """Every sweep in one of ``states``, oldest first."""
    values = [state.value for state in states]
    rows = session.execute(
        select(Sweep).where(Sweep.state.in_(values)).order_by(Sweep.created_at, Sweep.id)
    ).scalars()
    return list(rows)


def queued_sweeps(session: Session, *, limit: int) -> list[Sweep]:
    """The oldest ``limit`` queued sweeps (the launch order)."""
    rows = session.execute(
        select(Sweep)
        .where(Sweep.state == SweepState.QUEUED.value)
        .order_by(Sweep.created_at, Sweep.id)
        .limit(limit)
    ).scalars()
    return list(rows)


def trial_counts(session: Session, *, sweep_ids: Sequence[str]) -> dict[str, dict[str, int]]:
    """Trials by status for each sweep (every status present, zeros included)."""
    counts = {sweep_id: dict.fromkeys(_STATUSES, 0) for sweep_id in sweep_ids}
    if not sweep_ids:
        return counts
    rows = session.execute(
        select(Trial.sweep_id, Trial.status, func.count())
        .where(Trial.sweep_id.in_(sweep_ids))
        .group_by(Trial.sweep_id, Trial.status)
    )
    for sweep_id, status, number in rows:
        counts[sweep_id][status] = number
    return counts


def set_state(
    session: Session, *, sweep: Sweep, target: SweepState, reason: str | None = None
) -> None:
    """Move ``sweep`` to ``target`` (or raise ``IllegalTransition``) and log the change.

    A sweep that ends loses its driver token: a driver that is still around can no longer
    write (401), and a resume mints a new one.
    """
    check_sweep_transition(sweep.state, target)
    now = utcnow()
    sweep.state = target.value
    sweep.reason = reason
    if target is SweepState.QUEUED:
        sweep.finished_at = None
    elif target is SweepState.RUNNING and sweep.started_at is None:
        sweep.started_at = now
    elif target in FINAL_SWEEP_STATES:
        sweep.finished_at = now
        sweep.driver_token_hash = None
    payload: dict[str, Any] = {"state": target.value, "reason": reason}
    if target in FINAL_SWEEP_STATES:
        payload["best"] = sweep.best
    append_event(session, sweep=sweep, type="state", payload=payload)


def append_event(
    session: Session, *, sweep: Sweep, type: str, payload: Mapping[str, Any]
) -> SweepEvent:
    """Add an entry to the sweep's event log with the next ``seq`` (the SSE event id)."""
    sweep.event_seq += 1
    event = SweepEvent(sweep_id=sweep.id, seq=sweep.event_seq, type=type, payload=dict(payload))
    session.add(event)
    return event


def events_after(
    session: Session, *, sweep_id: str, seq: int, limit: int = 500
) -> list[SweepEvent]:
    """The sweep's log entries after ``seq``, in order."""
    rows = session.execute(
        select(SweepEvent)
        .where(SweepEvent.sweep_id == sweep_id, SweepEvent.seq > seq)
        .order_by(SweepEvent.seq)
        .limit(limit)
    ).scalars()
    return list(rows)


def list_trials(
    session: Session,
    *,
    sweep_id: str,
    statuses: Sequence[TrialStatus] = (),
    offset: int = 0,
    limit: int = 100,
) -> tuple[list[Trial], int]:
    """A page of a sweep's trials by number, and how many there are in all."""
    where = [Trial.sweep_id == sweep_id]
    if statuses:
        where.append(Trial.status.in_([status.value for status in statuses]))
    count = session.execute(select(func.count()).select_from(Trial).where(*where)).scalar_one()
    rows = session.execute(
        select(Trial).where(*where).order_by(Trial.number, Trial.id).offset(offset).limit(limit)
    ).scalars()
    return list(rows), count


def get_trial(session: Session, *, sweep_id: str, trial_id: str) -> Trial | None:
    """One trial of a sweep by the driver's trial id."""
    return session.execute(
        select(Trial).where(Trial.sweep_id == sweep_id, Trial.trial_id == trial_id)
    ).scalar_one_or_none()


def trial_epochs(session: Session, *, trial: Trial) -> list[TrialMetric]:
    """A trial's per-epoch metrics, in order (one query; never a lazy load)."""
    rows = session.execute(
        select(TrialMetric).where(TrialMetric.trial_pk == trial.id).order_by(TrialMetric.epoch)
    ).scalars()
    return list(rows)


def best_trial(session: Session, *, sweep: Sweep) -> Trial | None:
    """The search trial whose latest objective value is best (failed and diverged trials
    excluded; confirmation runs too: the driver's final best averages them)."""
    order = Trial.value.desc() if sweep.objective_mode == "max" else Trial.value.asc()
    return session.execute(
        select(Trial)
        .where(
            Trial.sweep_id == sweep.id,
            Trial.value.is_not(None),
            Trial.status.not_in(_UNRANKED),
            Trial.kind == "search",
        )
        .order_by(order, Trial.number)
        .limit(1)
    ).scalar_one_or_none()


def update_best(session: Session, *, sweep: Sweep) -> bool:
    """Recompute the sweep's best-so-far from its trials; ``True`` if it changed."""
    session.flush()
    best = best_trial(session, sweep=sweep)
    trial_id, value = (best.trial_id, best.value) if best is not None else (None, None)
    if (trial_id, value) == (sweep.best_trial_id, sweep.best_value):
        return False
    sweep.best_trial_id, sweep.best_value = trial_id, value
    return True


def close_open_trials(session: Session, *, sweep: Sweep, reason: str) -> int:
    """Mark the sweep's pending and running trials failed with ``reason`` (its driver is gone)."""
    open_trials = session.execute(
        select(Trial).where(
            Trial.sweep_id == sweep.id,
            Trial.status.in_([TrialStatus.PENDING.value, TrialStatus.RUNNING.value]),
        )
    ).scalars()
    closed = 0
    now = utcnow()
    for trial in open_trials:
        trial.status = TrialStatus.FAILED.value
        trial.error = reason
        trial.finished_at = now
        closed += 1
        append_event(
            session,
            sweep=sweep,
            type="trial_finished",
            payload={"trial_id": trial.trial_id, "status": trial.status, "error": reason},
        )
    return closed


# -- studies --------------------------------------------------------------------------------


def create_study(
    session: Session,
    *,
    owner: Principal,
    name: str,
    spec: Mapping[str, Any],
    cells: Sequence[tuple[dict[str, Any], SweepSpec]],
) -> Study:
    """Store a study and queue one ordinary sweep per cell (``cells``: each cell's row
    template and its validated sweep spec), in one transaction."""
    rows = []
    for template, cell_spec in cells:
        sweep = create_sweep(session, owner=owner, spec=cell_spec)
        rows.append({**template, "sweep_id": sweep.id})
    study = Study(id=new_sweep_id(), name=name, owner_id=owner.id, spec=dict(spec), cells=rows)
    session.add(study)
    session.flush()
    return study


def get_study(session: Session, *, study_id: str, user: Principal) -> Study:
    """The study, if ``user`` may see it (else :class:`StudyNotFound`)."""
    study = session.get(Study, study_id)
    if study is None or not _may_see(user, study.owner_id):
        raise StudyNotFound(study_id)
    return study


def list_studies(
    session: Session, *, user: Principal, offset: int = 0, limit: int = 100
) -> tuple[list[Study], int]:
    """A page of the studies ``user`` may see, newest first, and how many there are."""
    where = true() if user.is_admin else Study.owner_id == user.id
    count = session.execute(select(func.count()).select_from(Study).where(where)).scalar_one()
    rows = session.execute(
        select(Study)
        .where(where)
        .order_by(Study.created_at.desc(), Study.id.desc())
        .offset(offset)
        .limit(limit)
    ).scalars()
    return list(rows), count


def study_sweeps(
    session: Session, *, studies: Sequence[Study], with_trials: bool = False
) -> tuple[dict[str, Sweep], dict[str, dict[str, dict[str, Any]]]]:
    """The cells' sweeps by id, and (``with_trials``) each sweep's trials' latest metrics
    (sweep id → trial id → metrics): two queries for any number of studies."""
    ids = [cell["sweep_id"] for study in studies for cell in study.cells if cell.get("sweep_id")]
    if not ids:
        return {}, {}
    sweeps = {
        sweep.id: sweep
        for sweep in session.execute(select(Sweep).where(Sweep.id.in_(ids))).scalars()
    }
    metrics: dict[str, dict[str, dict[str, Any]]] = {}
    if with_trials:
        found = session.execute(
            select(Trial.sweep_id, Trial.trial_id, Trial.metrics).where(Trial.sweep_id.in_(ids))
        )
        for sweep_id, trial_id, values in found:
            metrics.setdefault(sweep_id, {})[trial_id] = dict(values or {})
    return sweeps, metrics


def cell_states(study: Study, sweeps: Mapping[str, Sweep]) -> list[str]:
    """Each cell's sweep state, in the study's order (``deleted`` where its sweep is gone)."""
    return [
        sweeps[cell["sweep_id"]].state if cell.get("sweep_id") in sweeps else DELETED_CELL
        for cell in study.cells
    ]


class StudyNotFound(LookupError):
    """No such study, or one the caller may not see (both read as 404)."""

    def __init__(self, study_id: str) -> None:
        self.study_id = study_id
        super().__init__(f"study {study_id!r} not found")


def cancel(session: Session, *, sweep: Sweep, by: str) -> str | None:
    """Cancel a locked sweep: a queued one at once, an active one through ``cancelling`` (its
    driver is stopped by the caller: the Ray job id returned)."""
    if sweep.state == SweepState.QUEUED.value:
        set_state(session, sweep=sweep, target=SweepState.CANCELLED, reason="cancelled")
        return None
    job_id = sweep.ray_job_id
    set_state(session, sweep=sweep, target=SweepState.CANCELLING, reason=f"cancelled by {by}")
    return job_id


def requeue(session: Session, *, sweep: Sweep, add_trials: int = 0) -> None:
    """Put a locked, finished sweep back in the queue (its driver resumes it), with
    ``add_trials`` more trials."""
    sweep.num_trials += add_trials
    sweep.add_trials = add_trials
    sweep.driver_attempts = 0
    set_state(session, sweep=sweep, target=SweepState.QUEUED)
