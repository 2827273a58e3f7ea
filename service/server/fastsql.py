"""The API's hottest reads, compiled once and run straight on the driver's cursor.

SQLAlchemy's execution path (execution context, result metadata, events) costs more here than
an indexed SELECT on SQLite itself, about 0.1 ms of CPU a statement. A :class:`FastSelect` is
an ordinary SQLAlchemy ``select()``, compiled once per dialect; each call binds its parameters,
runs the SQL on the DBAPI cursor of the session's own connection (so it sees the session's
transaction) and applies the columns' SQLAlchemy result processors (timestamps, JSON), giving
plain named tuples. Driver errors come back as SQLAlchemy's exceptions, and a connection the
server dropped is invalidated as SQLAlchemy would.

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

__all__ = ["FastSelect"]


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


class FastSelect:
    """A SELECT run on the driver's cursor (see the module's docstring).

    Args:
        statement: a ``select()`` whose parameters are ``bindparam(name)``s.
    """

    def __init__(self, statement: Select[*tuple[Any, ...]]) -> None:
        self.statement = statement
        self._plans: dict[str, _Plan] = {}
        # Result processors may depend on the driver's column types: made at the first run.
        self._processors: dict[str, tuple[Callable[[Any], Any] | None, ...]] = {}
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

    def _run(self, session: Session, params: Mapping[str, Any], many: bool) -> list[Any]:
        connection = _connection(session)
        dialect = connection.dialect
        plan = self._plan(dialect)
        values = {**plan.defaults, **params}
        for name, binder in plan.binders.items():
            values[name] = binder(values[name])
        bound: Any = (
            [values[name] for name in plan.positional] if plan.positional is not None else values
        )
        raw = connection.connection
        cursor = raw.cursor()
        try:
            cursor.execute(plan.sql, bound)
            rows = cursor.fetchall() if many else [cursor.fetchone()]
            processors = self._processors.get(dialect.name)
            if processors is None:
                processors = self._processors[dialect.name] = tuple(
                    kind.result_processor(dialect, described[1])
                    for kind, described in zip(plan.types, cursor.description, strict=True)
                )
        except dialect.loaded_dbapi.Error as error:
            if dialect.is_disconnect(error, raw.dbapi_connection, cursor):
                connection.invalidate(error)
            raise exc.DBAPIError.instance(
                plan.sql, bound, error, dialect.loaded_dbapi.Error
            ) from error
        finally:
            cursor.close()
        make = plan.row
        return [
            make(*(p(v) if p is not None else v for p, v in zip(processors, row, strict=True)))
            for row in rows
            if row is not None
        ]

    def first(self, session: Session, /, **params: Any) -> Any | None:
        """The first row (a named tuple), or ``None``."""
        rows = self._run(session, params, many=False)
        return rows[0] if rows else None

    def all(self, session: Session, /, **params: Any) -> list[Any]:
        """Every row (named tuples)."""
        return self._run(session, params, many=True)
