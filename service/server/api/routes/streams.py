"""Streams: ``/v1/sweeps/{id}/events`` (Server-Sent Events) and ``/v1/sweeps/{id}/logs``.

The event stream replays the sweep's log after ``Last-Event-ID`` (each event's ``id`` is its
``seq``, so the header is a whole number from 0 to 2**31 - 1, like ``?after=``; anything else
is 422), then follows it live; it ends once the sweep is in a final state and every event up to
that state change was sent. The log endpoint shows the driver's Ray job log (``?tail=N`` lines;
``?follow=true`` keeps streaming until the job ends).

Both authenticate and look the sweep up in the request's session, which closes before the
stream starts; the stream then reads the log in short transactions of its own, each through
the app's database gate.
"""

from __future__ import annotations

import asyncio
import functools
import json
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import PlainTextResponse, StreamingResponse
from sqlalchemy import select
from starlette.concurrency import run_in_threadpool

from search_spaces import FieldError
from service.server import crud
from service.server.api.deps import (
    MAX_INT32,
    ContextDep,
    CurrentUser,
    SessionDep,
    SweepIdPath,
    pause_session,
)
from service.server.api.errors import ApiError, error_responses
from service.server.dispatch.base import DispatcherUnavailable
from service.server.models import Sweep
from service.wire import FINAL_SWEEP_STATES, SweepState

__all__ = ["router"]

router = APIRouter(prefix="/v1/sweeps/{sweep_id}", tags=["streams"])

KEEPALIVE_S = 15.0
POLL_S = 2.0  # re-read the log even without a wake-up (another API process may write it)
LOG_POLL_S = 1.0
_SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


# One Server-Sent Event as a client reads it (the data is the event's JSON, as text).
_SSE_EVENT: dict[str, Any] = {
    "type": "object",
    "properties": {
        "id": {"type": "string", "pattern": "^[0-9]+$"},
        "event": {"type": "string"},
        "data": {"type": "string"},
        "retry": {"type": "integer"},
    },
}


def _sse(seq: int, type_: str, data: dict[str, Any]) -> str:
    return f"id: {seq}\nevent: {type_}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


def _last_event_id(header: str | None) -> int | None:
    if header is None or not header.strip():
        return None
    text = header.strip()
    if not text.isdigit() or not text.isascii() or int(text) > MAX_INT32:
        raise ApiError.invalid(
            [
                FieldError(
                    "Last-Event-ID",
                    f"{text[:40]!r} is not an event id: send the id of the last event "
                    f"received, a whole number from 0 to {MAX_INT32}",
                )
            ],
            code="invalid_request",
        )
    return int(text)


@router.get(
    "/events",
    summary="Follow a sweep's events (Server-Sent Events)",
    response_model=None,
    response_class=StreamingResponse,
    responses={
        200: {
            "content": {"text/event-stream": {"schema": _SSE_EVENT}},
            "description": "The sweep's log after the given id, then live, until its end: "
            "events `id: <seq>`, `event: <type>`, `data: <JSON>`",
        },
        **error_responses(401, 404, 422, 503),
    },
)
async def sweep_events(
    user: CurrentUser,
    session: SessionDep,
    ctx: ContextDep,
    request: Request,
    sweep_id: SweepIdPath,
    last_event_id: Annotated[
        str | None,
        Header(
            alias="Last-Event-ID",
            max_length=32,
            description=f"resume after this event id (0 to {MAX_INT32})",
        ),
    ] = None,
    after: Annotated[
        int | None, Query(ge=0, le=MAX_INT32, description="like Last-Event-ID")
    ] = None,
) -> StreamingResponse:
    resumed = _last_event_id(last_event_id)
    crud.check_visible(session, sweep_id=sweep_id, user=user)
    await pause_session(session)  # the stream holds no transaction (it reads on its own)
    start = resumed if resumed is not None else (after or 0)

    def read(seq: int) -> tuple[list[tuple[int, str, dict[str, Any]]], str, int] | None:
        with ctx.db.read() as own:
            sweep = own.execute(
                select(Sweep.state, Sweep.event_seq).where(Sweep.id == sweep_id)
            ).first()
            if sweep is None:
                return None  # deleted while followed
            rows = crud.events_after(own, sweep_id=sweep_id, seq=seq)
            out = [
                (
                    row.seq,
                    row.type,
                    {
                        "seq": row.seq,
                        "type": row.type,
                        "time": row.time.isoformat(),
                        "sweep_id": sweep_id,
                        **row.payload,
                    },
                )
                for row in rows
            ]
            return out, sweep.state, sweep.event_seq

    async def stream() -> AsyncIterator[str]:
        waiter = ctx.broker.subscribe(sweep_id)
        seq = start
        idle = 0.0
        try:
            yield "retry: 2000\n\n"
            while True:
                waiter.clear()
                result = await ctx.run_db(functools.partial(read, seq))
                if result is None:
                    return
                rows, state, last_seq = result
                for row_seq, type_, data in rows:
                    yield _sse(row_seq, type_, data)
                    seq = row_seq
                if SweepState(state) in FINAL_SWEEP_STATES and seq >= last_seq:
                    return
                if rows:
                    idle = 0.0
                    continue
                if await request.is_disconnected():
                    return
                try:
                    await asyncio.wait_for(waiter.wait(), POLL_S)
                except TimeoutError:
                    idle += POLL_S
                    if idle >= KEEPALIVE_S:
                        idle = 0.0
                        yield ": keepalive\n\n"
        finally:
            ctx.broker.unsubscribe(sweep_id, waiter)

    return StreamingResponse(stream(), media_type="text/event-stream", headers=_SSE_HEADERS)


def _tail(text: str, lines: int | None) -> str:
    if lines is None:
        return text
    kept = text.splitlines(keepends=True)[-lines:] if lines > 0 else []
    return "".join(kept)


@router.get(
    "/logs",
    summary="The driver's log (Ray job logs)",
    response_model=None,
    response_class=PlainTextResponse,
    responses={
        200: {
            "content": {"text/plain": {"schema": {"type": "string"}}},
            "description": "The log (followed: streamed until the driver's job ends)",
        },
        **error_responses(401, 404, 422, 503),
    },
)
async def sweep_logs(
    user: CurrentUser,
    session: SessionDep,
    ctx: ContextDep,
    request: Request,
    sweep_id: SweepIdPath,
    tail: Annotated[
        int | None, Query(ge=0, le=1_000_000, description="only the last N lines")
    ] = None,
    follow: Annotated[bool, Query(description="keep streaming until the driver ends")] = False,
) -> PlainTextResponse | StreamingResponse:
    job: str | None = crud.sweep_row(session, sweep_id=sweep_id, user=user).ray_job_id
    await pause_session(session)
    dispatcher = ctx.dispatcher
    if job is None or dispatcher is None:
        return PlainTextResponse("")

    def fetch() -> tuple[str, bool]:
        info = dispatcher.job(job)
        return dispatcher.logs(job), info is None or info.terminal

    try:
        text, done = await run_in_threadpool(fetch)
    except DispatcherUnavailable as exc:
        raise ApiError(503, "unavailable", str(exc)) from None
    first = _tail(text, tail)
    if not follow:
        return PlainTextResponse(first)

    async def stream() -> AsyncIterator[str]:
        sent, finished = len(text), done
        yield first
        while not finished and not await request.is_disconnected():
            await asyncio.sleep(LOG_POLL_S)
            try:
                latest, finished = await run_in_threadpool(fetch)
            except DispatcherUnavailable:
                continue
            if len(latest) > sent:
                yield latest[sent:]
                sent = len(latest)

    return StreamingResponse(stream(), media_type="text/plain; charset=utf-8")
