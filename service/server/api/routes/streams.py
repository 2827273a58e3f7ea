"""Streams: ``/v1/sweeps/{id}/events`` (Server-Sent Events) and ``/v1/sweeps/{id}/logs``.

The event stream replays the sweep's log after ``Last-Event-ID`` (each event's ``id`` is its
``seq``), then follows it live; it ends once the sweep is in a final state and every event up to
that state change was sent. The log endpoint shows the driver's Ray job log (``?tail=N`` lines;
``?follow=true`` keeps streaming until the job ends).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import PlainTextResponse, StreamingResponse
from starlette.concurrency import run_in_threadpool

from service.server import crud
from service.server.api.deps import ContextDep, CurrentUser
from service.server.api.errors import ApiError
from service.server.dispatch.base import DispatcherUnavailable
from service.wire import FINAL_SWEEP_STATES, SweepState

__all__ = ["router"]

router = APIRouter(prefix="/v1/sweeps/{sweep_id}", tags=["streams"])

KEEPALIVE_S = 15.0
POLL_S = 2.0  # re-read the log even without a wake-up (another API process may write it)
LOG_POLL_S = 1.0
_SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def _sse(seq: int, type_: str, data: dict[str, Any]) -> str:
    return f"id: {seq}\nevent: {type_}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


@router.get(
    "/events",
    summary="Follow a sweep's events (Server-Sent Events)",
    response_model=None,
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}}},
)
async def sweep_events(
    sweep_id: str,
    request: Request,
    user: CurrentUser,
    ctx: ContextDep,
    last_event_id: Annotated[int | None, Header(alias="Last-Event-ID")] = None,
    after: Annotated[int | None, Query(ge=0, description="like Last-Event-ID")] = None,
) -> StreamingResponse:
    def check() -> None:
        with ctx.db.read() as session:
            crud.get_sweep(session, sweep_id=sweep_id, user=user)

    await run_in_threadpool(check)
    start = last_event_id if last_event_id is not None else (after or 0)

    def read(seq: int) -> tuple[list[tuple[int, str, dict[str, Any]]], str, int] | None:
        with ctx.db.read() as session:
            try:
                sweep = crud.get_sweep(session, sweep_id=sweep_id)
            except crud.SweepNotFound:
                return None  # deleted while followed
            rows = crud.events_after(session, sweep_id=sweep_id, seq=seq)
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
                result = await run_in_threadpool(read, seq)
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
    responses={200: {"content": {"text/plain": {}}}},
)
async def sweep_logs(
    sweep_id: str,
    request: Request,
    user: CurrentUser,
    ctx: ContextDep,
    tail: Annotated[int | None, Query(ge=0, description="only the last N lines")] = None,
    follow: Annotated[bool, Query(description="keep streaming until the driver ends")] = False,
) -> PlainTextResponse | StreamingResponse:
    def job_id() -> str | None:
        with ctx.db.read() as session:
            return crud.get_sweep(session, sweep_id=sweep_id, user=user).ray_job_id

    job = await run_in_threadpool(job_id)
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
