"""The edge of the app: one pure ASGI middleware around everything (:class:`Edge`).

It does these in one layer (each request pays for one wrapper, not several):

- **The body limit.** It never reads a body itself: the app reads a body only after
  authenticating the request (:mod:`service.server.api.deps`), through a ``receive`` that
  counts the bytes actually received, so a chunked upload without ``Content-Length`` (or with
  a false one) cannot slip past it. A ``Content-Length`` over the limit is refused at once.
- **The latency histogram**, by method, route template and status. Streaming responses (SSE,
  followed logs) are observed when their headers are sent.
- **The end of the request's session** (:func:`~service.server.api.deps.get_session`): it
  is closed, and its database slot given back, whatever happened.
- **The last resort.** Any exception no handler turned into an answer becomes a 500
  ``{"error": {"code": "internal"}}`` and one log record: a line naming the request and the
  error, then the innermost frames of its traceback. The exception goes no further, so the
  server does not log it a second time.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from prometheus_client import Histogram

from service.server.api.deps import close_request_session
from service.server.api.errors import ApiError, short_traceback

__all__ = ["Edge", "body_too_large"]

log = logging.getLogger("service.server.api")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_STREAM_TYPES = (b"text/event-stream", b"text/plain")


def body_too_large(max_bytes: int) -> ApiError:
    """The 413 error (the connection closes: the rest of the body is not read)."""
    return ApiError(
        413,
        "body_too_large",
        f"the request body exceeds the limit of {max_bytes} bytes (EXTRAP_MAX_BODY_BYTES)",
        details=[{"max_bytes": max_bytes}],
        headers={"Connection": "close"},
    )


class Edge:
    """The body limit, the latency histogram and the 500 of last resort (see the module).

    Args:
        app: the wrapped ASGI app.
        max_bytes: the largest request body accepted.
        histogram: the request latency histogram (labels: method, route, status).
    """

    def __init__(self, app: ASGIApp, *, max_bytes: int, histogram: Histogram) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.histogram = histogram
        # The histogram's children by (method, route, status), looked up once each (asking
        # the histogram for them takes a lock and checks the labels on every request).
        self._children: dict[tuple[str, str, str], Any] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 0
        observed = False

        def observe() -> None:
            nonlocal observed
            if not observed:
                observed = True
                template = getattr(scope.get("route"), "path", None) or "unmatched"
                labels = (scope["method"], template, str(status or 500))
                child = self._children.get(labels)
                if child is None:
                    child = self._children[labels] = self.histogram.labels(*labels)
                child.observe(time.perf_counter() - started)

        async def edge_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                await send(message)
                if _is_stream(message):
                    observe()
                return
            await send(message)
            if not message.get("more_body"):
                observe()

        limit = self.max_bytes
        received = 0

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise body_too_large(limit)
            return message

        try:
            declared = _content_length(scope)
            if declared is not None and declared > limit:
                await _answer(edge_send, body_too_large(limit))
                return
            await self.app(scope, counted, edge_send)
        except ApiError as exc:  # raised where no handler runs (e.g. while a stream reads)
            if not status:
                await _answer(edge_send, exc)
        except Exception as exc:
            detail = str(exc).splitlines()[0][:300] if str(exc) else ""
            log.error(
                "500 on %s %s: %s: %s%s\n%s",
                scope.get("method", "?"),
                scope.get("path", "?"),
                type(exc).__name__,
                detail,
                " (after the response started)" if status else "",
                short_traceback(exc),
            )
            if not status:
                await _answer(edge_send, ApiError(500, "internal", "internal server error"))
        finally:
            observe()
            await close_request_session(scope)


async def _answer(send: Send, error: ApiError) -> None:
    body = json.dumps(error.public().model_dump(mode="json")).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
    ]
    headers += [(k.lower().encode(), v.encode()) for k, v in (error.headers or {}).items()]
    await send({"type": "http.response.start", "status": error.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


def _is_stream(message: Message) -> bool:
    for name, value in message.get("headers", []):
        if name == b"content-type" and value.startswith(_STREAM_TYPES):
            return True
    return False
