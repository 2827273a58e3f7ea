"""Engine and sessions: SQLite (the embedded default) or PostgreSQL, chosen by URL.

SQLite runs in WAL mode with foreign keys on and a busy timeout, and :meth:`Database.write`
opens its transaction with ``BEGIN IMMEDIATE``: in WAL mode a deferred transaction that reads
and then writes fails at once ("database is locked") when another writer got in between, and
the busy timeout does not help it. On PostgreSQL writers lock the rows they change
(``SELECT ... FOR UPDATE`` in :mod:`service.server.crud`).

A request of the API has one session (:meth:`Database.session`): it authenticates and reads in
one transaction, and :meth:`Database.writing` turns it into a writing one when it must change
something. ``request_slots`` is how many requests may hold a connection at once: the pool's
size less a few connections kept for the background threads (the API admits requests to the
database through a gate of that size, so that requests waiting for a thread never hold the
connections that the threads wait for). :meth:`Database.direct` lends a pooled connection
outside any session, in autocommit, for the API's reads of one statement
(:mod:`service.server.fastsql`).

Example:
    >>> db = Database("sqlite://")
    >>> with db.read() as session:
    ...     session.execute(text("select 1")).scalar_one()
    1
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import QueuePool, StaticPool

from service.server.fastsql import Direct

__all__ = ["Database", "text"]

_loads: Callable[[str | bytes], Any] = json.loads

_IMMEDIATE = "extrap_immediate"
_READ = {"isolation_level": "AUTOCOMMIT"}
_WRITE = {"isolation_level": "READ COMMITTED"}
SQLITE_BUSY_TIMEOUT_MS = 30_000
POOL_SIZE, MAX_OVERFLOW = 20, 10
SQLITE_POOL_SIZE, SQLITE_MAX_OVERFLOW = 20, 10
RESERVED_CONNECTIONS = 4
"""Pooled connections the request gate leaves to the supervisor and other threads. The gate
admits ``pool size - RESERVED_CONNECTIONS`` requests, so requests reuse pooled connections
(an overflow connection is closed when it is given back: on PostgreSQL a new one costs a
process on the server) and the overflow is only ever headroom."""


class Database:
    """An engine plus read and write session scopes.

    Args:
        url: a SQLAlchemy URL (``sqlite:///path``, ``postgresql+psycopg://...``).
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = _make_engine(url)
        self.is_sqlite = self.engine.dialect.name == "sqlite"
        # PostgreSQL: reads run in autocommit (READ COMMITTED gives no snapshot across
        # statements anyway, and BEGIN/ROLLBACK would cost two round trips a request);
        # writes ask for a transaction (_WRITE).
        bind = self.engine if self.is_sqlite else self.engine.execution_options(**_READ)
        self._sessions = sessionmaker(bind, expire_on_commit=False)
        if isinstance(self.engine.pool, StaticPool):  # one shared connection: no waiting
            self.request_slots = 1_000
        else:
            size = SQLITE_POOL_SIZE if self.is_sqlite else POOL_SIZE
            self.request_slots = max(1, size - RESERVED_CONNECTIONS)

    @property
    def _write_options(self) -> dict[str, Any]:
        return {_IMMEDIATE: True} if self.is_sqlite else _WRITE

    def session(self) -> Session:
        """A new session; its connection is taken from the pool at its first query."""
        return self._sessions()

    @contextmanager
    def writing(self, session: Session) -> Iterator[Session]:
        """A write transaction in an existing session (a request's), committed at the end.

        A read transaction the session has open (its authentication) ends first: on SQLite a
        read snapshot cannot become a writer once another writer got in between.
        """
        if session.in_transaction():
            session.commit()
        session.connection(execution_options=self._write_options)
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise

    @contextmanager
    def direct(self) -> Iterator[Direct]:
        """A pooled connection outside any session, in autocommit, for reads of one statement.

        One statement reads one snapshot on its own; a session would add BEGIN and ROLLBACK
        round trips and SQLAlchemy's bookkeeping, as much CPU as an indexed read costs. On
        PostgreSQL autocommit is switched on for the loan and off again (a flag, no round
        trip), so the connection goes back to the pool as it came.
        """
        raw = self.engine.raw_connection()
        try:
            if not self.is_sqlite:
                raw.driver_connection.autocommit = True  # type: ignore[union-attr]
            yield Direct(raw, self.engine.dialect)
        finally:
            try:
                if not self.is_sqlite and raw.is_valid:
                    raw.driver_connection.autocommit = False  # type: ignore[union-attr]
            except Exception:  # a connection that broke: not back into the pool
                raw.invalidate()
            raw.close()

    @contextmanager
    def read(self) -> Iterator[Session]:
        """A session for reading (and small writes that may race harmlessly)."""
        with self._sessions() as session:
            yield session

    @contextmanager
    def write(self) -> Iterator[Session]:
        """A session whose transaction holds the write lock from its start; commits at the end."""
        with self._sessions() as session:
            session.connection(execution_options=self._write_options)
            try:
                yield session
                session.commit()
            except BaseException:
                session.rollback()
                raise

    def dispose(self) -> None:
        self.engine.dispose()


def _make_engine(url: str) -> Engine:
    if not url.startswith("sqlite"):
        # No pre-ping (a round trip per checkout): a connection the server dropped fails its
        # request once (503), SQLAlchemy then replaces the pool's connections.
        return create_engine(
            url,
            pool_recycle=1800,
            pool_size=POOL_SIZE,
            max_overflow=MAX_OVERFLOW,
            json_deserializer=_loads,
        )
    kwargs: dict[str, Any] = {
        "connect_args": {"check_same_thread": False, "timeout": 30},
        "json_deserializer": _loads,
    }
    if url in ("sqlite://", "sqlite:///:memory:"):
        kwargs["poolclass"] = StaticPool  # one shared in-memory database
    else:
        kwargs.update(
            poolclass=QueuePool, pool_size=SQLITE_POOL_SIZE, max_overflow=SQLITE_MAX_OVERFLOW
        )
    engine = create_engine(url, **kwargs)
    _configure_sqlite(engine)
    return engine


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy emit BEGIN itself (pysqlite's implicit BEGIN skips SELECTs).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        immediate = connection.get_execution_options().get(_IMMEDIATE, False)
        # Straight to the driver: this runs for every transaction, and SQLAlchemy's execution
        # path costs more than the statement.
        connection.connection.driver_connection.execute("BEGIN IMMEDIATE" if immediate else "BEGIN")
