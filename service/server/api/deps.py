"""Request dependencies as ``Annotated`` aliases: context, settings, session, current user.

**Order.** FastAPI resolves a route's dependencies in declaration order, each one's own
dependencies first, and only then the route's path, query and header parameters. Every
protected route depends on :data:`CurrentUser` (or :data:`DriverSweep`), which depends on the
bearer token and the session; the dependencies that read a body
(:mod:`service.server.api.bodies`) depend on the caller. So a request without a valid token is
answered 401 before its body is read or parsed, and before its parameters are judged.

**One session per request.** :func:`get_session` gives each request one session: the caller is
authenticated in it (one query) and the route reads in the same transaction; a route that
changes something ends that transaction and writes in a new one
(:meth:`~service.server.db.Database.writing`). A token revoked by any process fails on the next
request. The edge middleware closes the session when the request is over; a route that
streams closes it before it returns the stream, so a stream holds no transaction open.

**No session at all** for the hottest read, ``GET /v1/sweeps/{id}``: :data:`CallerAndSweep`
reads the caller and the sweep in one statement on a pooled connection in autocommit
(:meth:`~service.server.db.Database.direct`), with no transaction around it.

**The gate.** A request takes a slot of ``ctx.gate`` before its session touches the database
and gives it back when the session closes, or while it waits for its body; at most
``Database.request_slots`` requests hold a connection at once, so no thread of the pool ever
waits for a connection that a request waiting for a thread holds.
"""

from __future__ import annotations

import asyncio
import hmac
import re
from collections.abc import MutableMapping
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Path, Request
from sqlalchemy.orm import Session

from service.server import crud
from service.server.api.context import AppContext
from service.server.api.errors import ApiError
from service.server.auth import Caller, authenticate_caller, hash_token
from service.server.dispatch.base import Dispatcher
from service.server.models import Sweep
from service.settings import Settings

__all__ = [
    "MAX_INT32",
    "SWEEP_ID_PATTERN",
    "TRIAL_ID_PATTERN",
    "BearerToken",
    "CallerAndSweep",
    "ContextDep",
    "CurrentUser",
    "DispatcherDep",
    "DriverSweep",
    "SessionDep",
    "SettingsDep",
    "StudyIdPath",
    "SweepForCaller",
    "SweepIdPath",
    "TrialIdPath",
    "close_request_session",
    "context_of",
    "pause_session",
    "resume_session",
]

MAX_INT32 = 2**31 - 1
"""The largest offset, event id or count the API accepts (the columns are 32-bit)."""
SWEEP_ID_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
TRIAL_ID_PATTERN = r"^[^\x00-\x1f/]{1,64}$"

_SWEEP_ID = re.compile(SWEEP_ID_PATTERN)

SweepIdPath = Annotated[
    str,
    Path(
        min_length=1,
        max_length=64,
        pattern=SWEEP_ID_PATTERN,
        description="the sweep's id (12 hex digits)",
    ),
]
TrialIdPath = Annotated[
    str,
    Path(min_length=1, max_length=64, pattern=TRIAL_ID_PATTERN, description="the trial's id"),
]
StudyIdPath = Annotated[
    str,
    Path(min_length=1, max_length=64, pattern=SWEEP_ID_PATTERN, description="the study's id"),
]

_SESSION = "extrap.session"
_GATE = "extrap_gate"
_HELD = "extrap_gate_held"


def context_of(request: Request) -> AppContext:
    """The app's context (``app.state.ctx``)."""
    ctx: AppContext = request.app.state.ctx
    return ctx


async def get_context(request: Request) -> AppContext:
    return context_of(request)


ContextDep = Annotated[AppContext, Depends(get_context)]


async def get_settings(request: Request) -> Settings:
    return context_of(request).settings


SettingsDep = Annotated[Settings, Depends(get_settings)]


async def get_session(request: Request) -> Session:
    """The request's one session, behind the gate (see the module's docstring).

    Closed by :func:`close_request_session`, which the edge middleware calls when the request
    is over; a route that streams closes it itself before it returns the stream.
    """
    session: Session | None = request.scope.get(_SESSION)
    if session is None:
        ctx = context_of(request)
        session = ctx.db.session()
        session.info[_GATE] = ctx.gate
        request.scope[_SESSION] = session
        await resume_session(session)
    return session


SessionDep = Annotated[Session, Depends(get_session)]


async def close_request_session(scope: MutableMapping[str, Any]) -> None:
    """End the request's session, if it had one, and give its gate slot back."""
    session: Session | None = scope.pop(_SESSION, None)
    if session is not None:
        await pause_session(session)


async def pause_session(session: Session) -> None:
    """End the session's transaction and give its gate slot back (before a slow wait)."""
    if session.in_transaction():
        session.close()  # a read transaction's end: no lock to wait for
    if session.info.get(_HELD):
        session.info[_HELD] = False
        gate: asyncio.Semaphore = session.info[_GATE]
        gate.release()


async def resume_session(session: Session) -> None:
    """Take a gate slot for the session again (after :func:`pause_session`)."""
    if not session.info.get(_HELD):
        gate: asyncio.Semaphore = session.info[_GATE]
        await gate.acquire()
        session.info[_HELD] = True


def get_dispatcher(ctx: ContextDep) -> Dispatcher:
    if ctx.dispatcher is None:
        raise ApiError(503, "unavailable", "the cluster connection is not set up yet")
    return ctx.dispatcher


DispatcherDep = Annotated[Dispatcher, Depends(get_dispatcher)]


def _unauthorized(message: str) -> ApiError:
    return ApiError(401, "unauthorized", message, headers={"WWW-Authenticate": "Bearer"})


_MAX_TOKEN_CHARS = 256


def _bearer(request: Request) -> str:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise _unauthorized("missing bearer token: send 'Authorization: Bearer <token>'")
    if len(token) > _MAX_TOKEN_CHARS:
        raise _unauthorized("invalid or revoked token")
    return token


async def get_bearer_token(request: Request) -> str:
    """The bearer token of the request (401 without one; nothing is looked up yet)."""
    return _bearer(request)


BearerToken = Annotated[str, Depends(get_bearer_token)]


async def get_current_user(request: Request, session: SessionDep) -> Caller:
    """The caller, authenticated in the request's session (one indexed query).

    It runs on the event loop: an indexed read takes far less than a thread hop costs here
    (see ``benchmarks/api_latency.py``), and the gate guarantees a free connection.
    """
    caller = authenticate_caller(session, token=_bearer(request))
    if caller is None:
        raise _unauthorized("invalid or revoked token")
    return caller


CurrentUser = Annotated[Caller, Depends(get_current_user)]


@dataclass(frozen=True)
class SweepForCaller:
    """The caller, and the path's sweep read with its trial counts in the same statement (a
    row for :func:`service.server.crud.sweep_with_counts_of`; its columns are ``None`` where
    there is no such sweep)."""

    caller: Caller
    row: Any


async def get_caller_and_sweep(request: Request) -> SweepForCaller:
    """The caller and the sweep ``{sweep_id}`` of the path, in one indexed statement on a
    direct connection (no session, no transaction; see the module's docstring).

    The token fails as with :data:`CurrentUser` (401); whether the caller may see the sweep is
    the route's to judge, after FastAPI has validated the path (422 comes before 404). An id
    the path will not pass is not looked up.
    """
    token = _bearer(request)
    sweep_id = request.path_params.get("sweep_id", "")
    if not _SWEEP_ID.match(sweep_id):
        sweep_id = ""  # never an id; 422 follows
    ctx = context_of(request)
    async with ctx.gate:
        with ctx.db.direct() as connection:
            row = crud.caller_and_sweep(connection, token_hash=hash_token(token), sweep_id=sweep_id)
    if row is None:
        raise _unauthorized("invalid or revoked token")
    caller = Caller(id=row.caller_id, name=row.caller_name, is_admin=bool(row.caller_is_admin))
    return SweepForCaller(caller=caller, row=row)


CallerAndSweep = Annotated[SweepForCaller, Depends(get_caller_and_sweep)]


def get_driver_sweep(token: BearerToken, session: SessionDep, sweep_id: SweepIdPath) -> Sweep:
    """The sweep whose current driver token was presented (anything else is 401).

    A sweep that ended has no driver token any more (:func:`service.server.crud.set_state`).
    """
    digest = hash_token(token)
    try:
        sweep: Sweep | None = crud.get_sweep(session, sweep_id=sweep_id)
    except crud.SweepNotFound:
        sweep = None
    if sweep is None or not hmac.compare_digest(sweep.driver_token_hash or "", digest):
        raise _unauthorized("this token is not the current driver token of the sweep")
    return sweep


DriverSweep = Annotated[Sweep, Depends(get_driver_sweep)]
