"""The API's hottest reads, compiled once and run straight on the driver's cursor.

SQLAlchemy's execution path (execution context, result metadata, events) costs more here than
an indexed SELECT on SQLite itself, about 0.1 ms of CPU a statement. A :class:`FastSelect` is
an ordinary SQLAlchemy ``select()``, compiled once per dialect; each call binds its parameters,
runs the SQL on the DBAPI cursor of the session's own connection (so it sees the session's
transaction) and applies the columns' SQLAlchemy result processors (timestamps, JSON), giving
plain named tuples. Driver errors come back as SQLAlchemy's exceptions, and a connection the
server dropped is invalidated as SQLAlchemy would.

It also runs on a :class:`Direct` connection, a pooled one used outside any session
(:meth:`service.server.db.Database.direct`): a read of one statement needs no transaction of
its own, and a session's BEGIN, ROLLBACK and bookkeeping cost more CPU than such a read.

Example:
    >>> by_id = FastSelect(select(Sweep.id, Sweep.state).where(Sweep.id == bindparam("id")))
    >>> by_id.first(session, id="3f2a9c1b7d04")  # doctest: +SKIP
    Row(id='3f2a9c1b7d04', state='queued')
"""

from __future__ import annotations

import threading
from collections import namedtuple
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, exc
from sqlalchemy.engine import Connection, Dialect
from sqlalchemy.orm import Session
from sqlalchemy.pool import PoolProxiedConnection

__all__ = ["Direct", "FastSelect"]


@dataclass(frozen=True)
class Direct:
    """A pooled DBAPI connection used outside any session, and its dialect."""

    connection: PoolProxiedConnection
    dialect: Dialect


@dataclass(frozen=True)
class _Plan:
    sql: str
    positional: tuple[str, ...] | None  # parameter names in order (qmark/format styles)
    defaults: dict[str, Any]  # the statement's own literal parameters
    binders: dict[str, Callable[[Any], Any]]
    types: tuple[Any, ...]  # the columns' types for the dialect
    row: type[tuple[Any, ...]]


_CONNECTION = "extrap_fast_connection"


def _connection(session: Session) -> Connection:
    """The session's connection, remembered while its transaction lasts (asking the session
    again each time costs as much as the statement)."""
    known: Connection | None = session.info.get(_CONNECTION)
    if known is not None and not known.closed and session.in_transaction():
        return known
    connection = session.connection()
    session.info[_CONNECTION] = connection
    return connection


_CURSOR = "extrap_fast_cursor"


def _cursor(raw: PoolProxiedConnection) -> Any:
    """The connection's cursor, made once for the DBAPI connection's life (psycopg spends as
    much CPU making a cursor as running an indexed SELECT). ``raw.info`` lives as long as
    the DBAPI connection and is cleared when the pool replaces it."""
    known = raw.info.get(_CURSOR)
    if known is not None and known[0] is raw.dbapi_connection:
        return known[1]
    cursor = raw.cursor()
    raw.info[_CURSOR] = (raw.dbapi_connection, cursor)
    return cursor


class FastSelect:
    """A SELECT run on the driver's cursor (see the module's docstring).

    Args:
        statement: a ``select()`` whose parameters are ``bindparam(name)``s.
    """

    def __init__(self, statement: Select[*tuple[Any, ...]]) -> None:
        self.statement = statement
        self._plans: dict[str, _Plan] = {}
        # Result processors may depend on the driver's column types: made at the first run,
        # kept as (column index, processor) for the columns that have one.
        self._processors: dict[str, tuple[tuple[int, Callable[[Any], Any]], ...]] = {}
        self._lock = threading.Lock()

    def _plan(self, dialect: Dialect) -> _Plan:
        plan = self._plans.get(dialect.name)
        if plan is not None:
            return plan
        with self._lock:
            compiled = self.statement.compile(dialect=dialect)
            binders: dict[str, Callable[[Any], Any]] = {}
            for name, bind in compiled.binds.items():
                processor = bind.type.dialect_impl(dialect).bind_processor(dialect)
                if processor is not None:
                    binders[name] = processor
            columns = list(self.statement.selected_columns)
            keys = [column.key or f"column_{i}" for i, column in enumerate(columns)]
            positional = tuple(compiled.positiontup or ()) if compiled.positional else None
            plan = _Plan(
                sql=compiled.string,
                positional=positional,
                defaults=dict(
                    compiled.construct_params(
                        {name: None for name, bind in compiled.binds.items() if bind.required}
                    )
                ),
                binders=binders,
                types=tuple(column.type.dialect_impl(dialect) for column in columns),
                row=namedtuple("Row", keys, rename=True),
            )
            self._plans[dialect.name] = plan
        return plan

    def _run(self, on: Session | Direct, params: Mapping[str, Any]) -> list[Any]:
        if isinstance(on, Direct):
            dialect, raw = on.dialect, on.connection
            invalidate: Callable[[BaseException], None] = raw.invalidate
        else:
            connection = _connection(on)
            dialect, raw = connection.dialect, connection.connection
            invalidate = connection.invalidate
        plan = self._plan(dialect)
        values = {**plan.defaults, **params}
        for name, binder in plan.binders.items():
            values[name] = binder(values[name])
        bound: Any = (
            [values[name] for name in plan.positional] if plan.positional is not None else values
        )
        cursor = _cursor(raw)
        try:
            cursor.execute(plan.sql, bound)
            rows = cursor.fetchall()  # to the end: on SQLite that ends the statement
            processors = self._processors.get(dialect.name)
            if processors is None:
                made = (
                    kind.result_processor(dialect, described[1])
                    for kind, described in zip(plan.types, cursor.description, strict=True)
                )
                processors = self._processors[dialect.name] = tuple(
                    (index, processor)
                    for index, processor in enumerate(made)
                    if processor is not None
                )
        except dialect.loaded_dbapi.Error as error:
            if dialect.is_disconnect(error, raw.dbapi_connection, cursor):
                invalidate(error)
            raise exc.DBAPIError.instance(
                plan.sql, bound, error, dialect.loaded_dbapi.Error
            ) from error
        out = []
        for row in rows:
            fields = list(row)
            for index, processor in processors:
                fields[index] = processor(fields[index])
            out.append(plan.row(*fields))
        return out

    def first(self, on: Session | Direct, /, **params: Any) -> Any | None:
        """The first row (a named tuple), or ``None``; in the session's transaction, or on a
        direct connection. Meant for reads by a unique key: every row is fetched."""
        rows = self._run(on, params)
        return rows[0] if rows else None

    def all(self, on: Session | Direct, /, **params: Any) -> list[Any]:
        """Every row (named tuples)."""
        return self._run(on, params)
