"""The schema: migrations build exactly the ORM's tables, on SQLite and PostgreSQL; the
database enforces idempotency keys; SQLite runs in WAL mode with foreign keys."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import delete, func, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from search_spaces import load_spec
from service.server import crud
from service.server.auth import create_token
from service.server.db import Database
from service.server.migrations import upgrade
from service.server.models import Base, Sweep, SweepEvent, Trial, TrialMetric, User
from tests.service.conftest import make_spec


@pytest.fixture(scope="module")
def db(database_url: str) -> Database:
    database = Database(database_url)
    upgrade(database)
    upgrade(database)  # idempotent
    return database


def test_migrations_match_the_models(db: Database) -> None:
    with db.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        assert compare_metadata(context, Base.metadata) == []


def _sweep(session: Session, owner_name: str) -> Sweep:
    create_token(session, user_name=owner_name)
    owner = session.execute(select(User).where(User.name == owner_name)).scalar_one()
    sweep = crud.create_sweep(session, owner=owner, spec=load_spec(make_spec()))
    session.add(Trial(sweep_id=sweep.id, trial_id="t", number=1, params={}, status="running"))
    session.flush()
    return sweep


def test_trial_epoch_is_unique(db: Database) -> None:
    with db.write() as session:
        sweep = _sweep(session, "unique-epoch")
        trial = crud.get_trial(session, sweep_id=sweep.id, trial_id="t")
        assert trial is not None
        session.add(TrialMetric(trial_pk=trial.id, epoch=1, metrics={}))
        trial_pk = trial.id
    with pytest.raises(IntegrityError), db.write() as session:
        session.add(TrialMetric(trial_pk=trial_pk, epoch=1, metrics={}))


def test_deleting_a_sweep_cascades_in_the_database(db: Database) -> None:
    with db.write() as session:
        sweep_id = _sweep(session, "cascade").id
    with db.write() as session:
        session.execute(delete(Sweep).where(Sweep.id == sweep_id))
    with db.read() as session:
        for table in (Trial, SweepEvent):
            count = session.execute(
                select(func.count()).select_from(table).where(table.sweep_id == sweep_id)
            ).scalar_one()
            assert count == 0, table.__tablename__


def test_sqlite_pragmas(tmp_path: Path) -> None:
    database = Database(f"sqlite:///{tmp_path / 'p.db'}")
    with database.read() as session:
        assert session.execute(text("pragma journal_mode")).scalar_one() == "wal"
        assert session.execute(text("pragma foreign_keys")).scalar_one() == 1
        assert session.execute(text("pragma busy_timeout")).scalar_one() == 30000
