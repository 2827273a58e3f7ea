"""Database tables (SQLAlchemy 2 ORM). API shapes: :mod:`service.wire`.

- ``users`` and ``api_tokens``: who may call the API; tokens are stored as SHA-256 hashes.
- ``sweeps``: one row per submitted spec, with its state, its driver's Ray job and token hash
  (cleared when the sweep ends), its MLflow ids, the best trial so far and the submission's
  ``Idempotency-Key`` (unique per owner).
- ``trials`` and ``trial_metrics``: what the driver reported; ``(trial, epoch)`` is unique so a
  retried push of the same epoch changes nothing. A trial's ``kind`` is ``search`` or
  ``confirmation`` (``confirms``: the search trial it retrains on a fresh seed); trials stored
  before migration 0004 are ``search`` trials.
- ``sweep_events``: the per-sweep event log that the SSE endpoint replays (``seq`` is the SSE
  event id).
- ``studies``: a batch-size scaling study: its validated spec and its cells, each an ordinary
  sweep (``cells``: the cell's key, batch size, arm, epochs, passes, comparisons and sweep id);
  its state and table are computed from its sweeps when read; once every cell has ended, a
  render job draws its plot and logs its MLflow parent run.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

__all__ = [
    "ApiToken",
    "Base",
    "Study",
    "Sweep",
    "SweepEvent",
    "Trial",
    "TrialMetric",
    "User",
    "utcnow",
]


def utcnow() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp stored in UTC and always read back timezone-aware (SQLite drops the zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is not None:
            value = value.astimezone(UTC)
            if dialect.name == "sqlite":
                value = value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value


JSONType = JSON().with_variant(JSONB(), "postgresql")

# Named constraints, so that migrations can refer to them on every database.
NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    """Declarative base with named constraints."""

    metadata = MetaData(naming_convention=NAMING)


class User(Base):
    """A person (or robot) that owns sweeps; admins see and act on every sweep."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    is_admin: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    tokens: Mapped[list[ApiToken]] = relationship(
        back_populates="user", cascade="all, delete-orphan"
    )


class ApiToken(Base):
    """An API token: only its SHA-256 hash is kept (the token itself is shown once)."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16), doc="first characters, to recognise it")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)

    user: Mapped[User] = relationship(back_populates="tokens")


class Sweep(Base):
    """A submitted sweep spec and everything the service tracks about its run."""

    __tablename__ = "sweeps"
    __table_args__ = (
        Index("ix_sweeps_state_created", "state", "created_at"),
        UniqueConstraint("owner_id", "idempotency_key"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(64))
    owner_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    spec: Mapped[dict[str, Any]] = mapped_column(JSONType, doc="the validated spec, as stored")
    spec_hash: Mapped[str] = mapped_column(String(64), doc="its content hash at submission")
    state: Mapped[str] = mapped_column(String(16), index=True)
    reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    objective_metric: Mapped[str] = mapped_column(String(64))
    objective_mode: Mapped[str] = mapped_column(String(8))
    num_trials: Mapped[int] = mapped_column(Integer)
    add_trials: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    mlflow_experiment_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    mlflow_run_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    ray_job_id: Mapped[str | None] = mapped_column(String(128), nullable=True)
    driver_token_hash: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    driver_attempts: Mapped[int] = mapped_column(Integer, default=0)
    launched_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    last_heartbeat: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    last_driver_seq: Mapped[int] = mapped_column(Integer, default=0)
    event_seq: Mapped[int] = mapped_column(Integer, default=0)
    best_value: Mapped[float | None] = mapped_column(Float, nullable=True)
    best_trial_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    best: Mapped[dict[str, Any] | None] = mapped_column(JSONType, nullable=True)
    idempotency_key: Mapped[str | None] = mapped_column(
        String(128), nullable=True, doc="the submission's Idempotency-Key (unique per owner)"
    )

    owner: Mapped[User] = relationship()
    trials: Mapped[list[Trial]] = relationship(
        back_populates="sweep", cascade="all, delete-orphan", passive_deletes=True
    )


class Trial(Base):
    """One trial of a sweep, as its driver reported it."""

    __tablename__ = "trials"
    __table_args__ = (
        UniqueConstraint("sweep_id", "trial_id"),
        # A sweep's counts by status come from this index alone (migration 0006).
        Index("ix_trials_sweep_id_status", "sweep_id", "status"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    sweep_id: Mapped[str] = mapped_column(ForeignKey("sweeps.id", ondelete="CASCADE"))
    trial_id: Mapped[str] = mapped_column(String(64))
    number: Mapped[int] = mapped_column(Integer)
    params: Mapped[dict[str, Any]] = mapped_column(JSONType)
    status: Mapped[str] = mapped_column(String(16))
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    metrics: Mapped[dict[str, Any] | None] = mapped_column(JSONType, nullable=True)
    value: Mapped[float | None] = mapped_column(Float, nullable=True)
    last_epoch: Mapped[int | None] = mapped_column(Integer, nullable=True)
    mlflow_run_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    kind: Mapped[str] = mapped_column(
        String(16), default="search", server_default="search", doc="search | confirmation"
    )
    confirms: Mapped[str | None] = mapped_column(
        String(64), nullable=True, doc="a confirmation run: the search trial it confirms"
    )

    sweep: Mapped[Sweep] = relationship(back_populates="trials")
    epochs: Mapped[list[TrialMetric]] = relationship(
        order_by="TrialMetric.epoch", cascade="all, delete-orphan", passive_deletes=True
    )


class TrialMetric(Base):
    """The metrics one trial reported for one epoch."""

    __tablename__ = "trial_metrics"
    __table_args__ = (UniqueConstraint("trial_pk", "epoch"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    trial_pk: Mapped[int] = mapped_column(ForeignKey("trials.id", ondelete="CASCADE"))
    epoch: Mapped[int] = mapped_column(Integer)
    metrics: Mapped[dict[str, Any]] = mapped_column(JSONType)
    time: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class SweepEvent(Base):
    """One entry of a sweep's event log (state changes, trial starts/ends, metrics)."""

    __tablename__ = "sweep_events"
    __table_args__ = (UniqueConstraint("sweep_id", "seq"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    sweep_id: Mapped[str] = mapped_column(ForeignKey("sweeps.id", ondelete="CASCADE"))
    seq: Mapped[int] = mapped_column(Integer)
    type: Mapped[str] = mapped_column(String(32))
    payload: Mapped[dict[str, Any]] = mapped_column(JSONType)
    time: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Study(Base):
    """A submitted study: its cells are sweeps (``cells[i]["sweep_id"]``)."""

    __tablename__ = "studies"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(64))
    owner_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    spec: Mapped[dict[str, Any]] = mapped_column(JSONType, doc="the validated study spec")
    cells: Mapped[list[dict[str, Any]]] = mapped_column(
        JSONType, doc="one StudyCellResult template per cell, with its sweep id"
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    # The render job (service.runtime.study_render) that draws the plot and logs the study's
    # MLflow parent run once every cell has ended: its token's hash while it may report.
    render_job_id: Mapped[str | None] = mapped_column(String(128), nullable=True)
    render_token_hash: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    render_attempts: Mapped[int] = mapped_column(Integer, default=0)
    rendered_state: Mapped[str | None] = mapped_column(
        String(16), nullable=True, doc="the study state its outputs were rendered for"
    )
    mlflow_run_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
