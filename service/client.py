"""A typed, synchronous HTTP client for the extrap-tune REST API (``docs/api.md``).

One method per endpoint; answers are parsed into the API's own schemas
(:mod:`service.wire`). Errors become exceptions a command line can print in one line:
a refused connection is :class:`ServiceUnreachable` (it names the URL and ``extrap serve``),
401 :class:`Unauthorized` (it says how to get a token), 404 :class:`NotFound`, 409
:class:`Conflict` (with the sweep's current state), 413 :class:`BodyTooLarge`, 422
:class:`InvalidSpec` (with every field error), 429 :class:`RateLimited` (with how long to wait),
anything else :class:`ApiError`.

A submission carries an ``Idempotency-Key``; :meth:`ExtrapClient.create_sweep` retries one
that timed out or met a 502/503/504 with the same key, so a retry never makes a second sweep.

The ``extrap`` CLI talks to the service only through this module.

Example:
    >>> with ExtrapClient("http://127.0.0.1:8000", token="ext_...") as client:  # doctest: +SKIP
    ...     sweep = client.create_sweep(open("examples/mnist1d-cpu.yaml").read())
    ...     for event in client.events(sweep.id):
    ...         print(event.event, event.data)
    ...     print(client.best(sweep.id, format="yaml"))
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, overload

import httpx
from pydantic import ValidationError

from service.wire import (
    BEST_MODEL_FILES,
    BestPublic,
    DryRunPublic,
    ErrorPublic,
    FieldError,
    SweepPublic,
    SweepsPublic,
    TrialDetailPublic,
    TrialsPublic,
    field_errors,
)
from service.wire.studies import StudiesPublic, StudyDryRunPublic, StudyPublic

__all__ = [
    "ApiError",
    "BodyTooLarge",
    "ClientError",
    "Conflict",
    "DryRunPublic",
    "ExtrapClient",
    "FieldError",
    "InvalidSpec",
    "NotFound",
    "RateLimited",
    "ServiceUnavailable",
    "ServiceUnreachable",
    "SseEvent",
    "Unauthorized",
]

DEFAULT_TIMEOUT_S = 30.0
STREAM_READ_TIMEOUT_S = 60.0
"""The event stream sends a keepalive every 15 s: a minute of silence is a dead connection."""
_RETRY_STATUSES = frozenset({502, 503, 504})


# -- errors --------------------------------------------------------------------------------


class ClientError(Exception):
    """Anything that kept a request from succeeding; ``str()`` is one line for people."""


class ServiceUnreachable(ClientError):
    """No connection to the service (refused, DNS, timeout, dropped)."""

    def __init__(self, url: str, reason: str) -> None:
        self.url = url
        self.reason = reason
        super().__init__(
            f"cannot reach the extrap service at {url} ({reason}): start it with `extrap serve`, "
            "or point the CLI at a running one with --api-url or EXTRAP_API_URL"
        )


class ApiError(ClientError):
    """The service answered with an error (its standard ``{"error": {...}}`` shape).

    Attributes:
        status: the HTTP status.
        code: the API's machine-readable code (``not_found``, ``invalid_spec``, ...).
        message: the API's sentence.
        field: the first offending field's path, if any.
        details: the API's structured details.
    """

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        field: str | None = None,
        details: list[dict[str, Any]] | None = None,
        summary: str | None = None,
    ) -> None:
        self.status = status
        self.code = code
        self.message = message
        self.field = field
        self.details = details or []
        super().__init__(summary or message)


class Unauthorized(ApiError):
    """401: no token, or one the service does not accept."""

    def __init__(self, status: int, code: str, message: str, *, url: str, had_token: bool) -> None:
        problem = "rejected the token" if had_token else "needs a token and none is configured"
        summary = (
            f"the service at {url} {problem}: log in with `extrap login --token TOKEN` or set "
            "EXTRAP_TOKEN; an admin creates tokens with `extrap admin create-token --user NAME` "
            "on the service's machine (the first admin token is in <EXTRAP_HOME>/admin-token)"
        )
        super().__init__(status, code, message, summary=summary)


class NotFound(ApiError):
    """404: no such sweep or trial (or another user's), or no best trial yet."""


class Conflict(ApiError):
    """409: the sweep's state forbids the action; ``state`` is its current state."""

    @property
    def state(self) -> str | None:
        first = self.details[0] if self.details else {}
        state = first.get("state")
        return str(state) if state is not None else None


class BodyTooLarge(ApiError):
    """413: the request body exceeds the service's limit."""


class InvalidSpec(ApiError):
    """422: the spec (or a request field) is invalid; ``errors`` lists every field error."""

    @property
    def errors(self) -> list[FieldError]:
        return field_errors(self.details) or [FieldError(self.field or "", self.message)]


class ServiceUnavailable(ApiError):
    """503: a dependency of the service (Ray) is down."""


class RateLimited(ApiError):
    """429: too many submissions; ``retry_after_s`` says when the next one is accepted."""

    retry_after_s: float = 1.0


_BY_STATUS: Mapping[int, type[ApiError]] = {
    404: NotFound,
    409: Conflict,
    413: BodyTooLarge,
    422: InvalidSpec,
    429: RateLimited,
    503: ServiceUnavailable,
}


# -- results that are not API schemas ---------------------------------------------------


@dataclass(frozen=True)
class SseEvent:
    """One Server-Sent Event of ``GET /v1/sweeps/{id}/events``.

    Attributes:
        id: the event's sequence number in the sweep's log (``None`` if it had none).
        event: its type: ``state``, ``trial_started``, ``trial_metrics``, ``trial_finished``,
            ``best``.
        data: the decoded JSON payload (``seq``, ``type``, ``time``, ``sweep_id``, ...).
    """

    id: int | None
    event: str
    data: dict[str, Any] = field(default_factory=dict)


# -- the client ----------------------------------------------------------------------------


class ExtrapClient:
    """The REST API of one extrap service.

    Args:
        api_url: the service's base URL, e.g. ``http://127.0.0.1:8000``.
        token: the bearer token (``None``: send none; the service answers 401).
        timeout_s: per-request timeout (streams use a longer read timeout).
        transport: an httpx transport (tests use ``httpx.MockTransport``).

    Example:
        >>> client = ExtrapClient("http://127.0.0.1:8000", token="ext_...")  # doctest: +SKIP
        >>> [s.id for s in client.list_sweeps(states=["running"]).data]  # doctest: +SKIP
        ['3f2a9c1b7d04']
    """

    def __init__(
        self,
        api_url: str,
        token: str | None = None,
        *,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.api_url = api_url.rstrip("/")
        self.has_token = bool(token)
        headers = {"Accept": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self._http = httpx.Client(
            base_url=self.api_url, headers=headers, timeout=timeout_s, transport=transport
        )

    def __enter__(self) -> ExtrapClient:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    # -- sweeps ----------------------------------------------------------------------------

    def create_sweep(
        self,
        spec: str | bytes | Mapping[str, Any],
        *,
        idempotency_key: str | None = None,
        retries: int = 2,
    ) -> SweepPublic:
        """Submit a spec: YAML text (sent as ``application/yaml``) or a JSON-able mapping.

        Args:
            spec: the spec.
            idempotency_key: the submission's key (default: a fresh one); the service answers
                a second submission with the same key with the sweep the first one made.
            retries: how many times to send it again after a timeout, a dropped connection
                or a 502/503/504 (same key: safe).
        """
        body = _spec_body(spec)
        key = idempotency_key or uuid.uuid4().hex
        body["headers"] = {**body.get("headers", {}), "Idempotency-Key": key}
        delay_s = 0.5
        for attempt in range(retries + 1):
            try:
                response = self._request("POST", "/v1/sweeps", **body)
            except ClientError as error:
                if attempt == retries or not _worth_retrying(error):
                    raise
                time.sleep(delay_s)
                delay_s *= 2
                continue
            return SweepPublic.model_validate(response.json())
        raise AssertionError("unreachable")  # pragma: no cover

    def dry_run(self, spec: str | bytes | Mapping[str, Any]) -> DryRunPublic:
        """Validate a spec against the schema, the service's limits and the cluster."""
        response = self._request(
            "POST", "/v1/sweeps", params={"dry_run": "true"}, **_spec_body(spec)
        )
        return DryRunPublic.model_validate(response.json())

    def list_sweeps(
        self, *, states: Iterable[str] = (), offset: int = 0, limit: int = 100
    ) -> SweepsPublic:
        """Your sweeps (an admin's: everyone's), newest first; ``count`` is over all pages."""
        params: list[tuple[str, str | int]] = [("offset", offset), ("limit", limit)]
        params += [("state", str(state)) for state in states]
        response = self._request("GET", "/v1/sweeps", params=params)
        return SweepsPublic.model_validate(response.json())

    def get_sweep(self, sweep_id: str) -> SweepPublic:
        """One sweep: state, trial counts, best so far, timestamps, MLflow link, its spec."""
        response = self._request("GET", f"/v1/sweeps/{_quote(sweep_id)}")
        return SweepPublic.model_validate(response.json())

    def cancel_sweep(self, sweep_id: str) -> SweepPublic:
        """Cancel: ``queued`` → ``cancelled`` at once, otherwise ``cancelling`` first."""
        response = self._request("POST", f"/v1/sweeps/{_quote(sweep_id)}/cancel")
        return SweepPublic.model_validate(response.json())

    def resume_sweep(self, sweep_id: str, *, add_trials: int = 0) -> SweepPublic:
        """Put a finished sweep back in the queue, optionally with more trials."""
        response = self._request(
            "POST", f"/v1/sweeps/{_quote(sweep_id)}/resume", json={"add_trials": add_trials}
        )
        return SweepPublic.model_validate(response.json())

    def delete_sweep(self, sweep_id: str) -> None:
        """Delete a sweep that is not running (its checkpoints and MLflow runs go too)."""
        self._request("DELETE", f"/v1/sweeps/{_quote(sweep_id)}")

    # -- studies ---------------------------------------------------------------------------

    def create_study(self, study: Mapping[str, Any]) -> StudyPublic:
        """Submit a study (its base inline): one sweep per cell, queued at once. Not retried
        (a study has no idempotency key): on a timeout, list your studies before resending."""
        response = self._request("POST", "/v1/studies", json=dict(study))
        return StudyPublic.model_validate(response.json())

    def dry_run_study(self, study: Mapping[str, Any]) -> StudyDryRunPublic:
        """Validate a study against the schema and the service's limits: its cells."""
        response = self._request(
            "POST", "/v1/studies", params={"dry_run": "true"}, json=dict(study)
        )
        return StudyDryRunPublic.model_validate(response.json())

    def list_studies(self, *, offset: int = 0, limit: int = 20) -> StudiesPublic:
        """Your studies, newest first."""
        response = self._request("GET", "/v1/studies", params={"offset": offset, "limit": limit})
        return StudiesPublic.model_validate(response.json())

    def get_study(self, study_id: str) -> StudyPublic:
        """A study: its state, its cells with their sweeps and figures, the table so far."""
        response = self._request("GET", f"/v1/studies/{_quote(study_id)}")
        return StudyPublic.model_validate(response.json())

    def study_table(self, study_id: str, *, format: Literal["md", "csv"] = "md") -> str:
        """The study's table as Markdown, or every cell as CSV."""
        response = self._request(
            "GET", f"/v1/studies/{_quote(study_id)}/table", params={"format": format}
        )
        return response.text

    def cancel_study(self, study_id: str) -> StudyPublic:
        """Cancel every cell of the study that is queued or running."""
        response = self._request("POST", f"/v1/studies/{_quote(study_id)}/cancel")
        return StudyPublic.model_validate(response.json())

    def resume_study(self, study_id: str) -> StudyPublic:
        """Queue the study's failed and cancelled cells again (finished ones are not rerun)."""
        response = self._request("POST", f"/v1/studies/{_quote(study_id)}/resume")
        return StudyPublic.model_validate(response.json())

    # -- trials and results ----------------------------------------------------------------

    def list_trials(
        self, sweep_id: str, *, statuses: Iterable[str] = (), offset: int = 0, limit: int = 100
    ) -> TrialsPublic:
        """A sweep's trials by number."""
        params: list[tuple[str, str | int]] = [("offset", offset), ("limit", limit)]
        params += [("status", str(status)) for status in statuses]
        response = self._request("GET", f"/v1/sweeps/{_quote(sweep_id)}/trials", params=params)
        return TrialsPublic.model_validate(response.json())

    def get_trial(self, sweep_id: str, trial_id: str) -> TrialDetailPublic:
        """One trial with its per-epoch metrics."""
        path = f"/v1/sweeps/{_quote(sweep_id)}/trials/{_quote(trial_id)}"
        return TrialDetailPublic.model_validate(self._request("GET", path).json())

    @overload
    def best(self, sweep_id: str, *, format: Literal["json"] = "json") -> BestPublic: ...

    @overload
    def best(self, sweep_id: str, *, format: Literal["yaml"]) -> str: ...

    def best(self, sweep_id: str, *, format: Literal["json", "yaml"] = "json") -> BestPublic | str:
        """The best trial; ``format="yaml"``: a ``job:`` block with its values, as text."""
        response = self._request(
            "GET", f"/v1/sweeps/{_quote(sweep_id)}/best", params={"format": format}
        )
        if format == "yaml":
            return response.text
        return BestPublic.model_validate(response.json())

    def download_best_model(self, sweep_id: str, directory: str | os.PathLike[str]) -> list[Path]:
        """The best model's files (``weights.pt``, ``job.yaml``) written into ``directory``
        (created if missing); each is streamed to a temporary name, then renamed."""
        target = Path(directory)
        target.mkdir(parents=True, exist_ok=True)
        written = []
        for name in BEST_MODEL_FILES:
            path = target / name
            partial = target / f".{name}.part"
            with self._stream(
                "GET", f"/v1/sweeps/{_quote(sweep_id)}/best/model", params={"file": name}
            ) as response:
                try:
                    with partial.open("wb") as out:
                        for chunk in response.iter_bytes():
                            out.write(chunk)
                except httpx.TransportError as exc:
                    partial.unlink(missing_ok=True)
                    raise ServiceUnreachable(self.api_url, _reason(exc)) from None
            partial.replace(path)
            written.append(path)
        return written

    # -- streams ---------------------------------------------------------------------------

    def logs(self, sweep_id: str, *, tail: int | None = None) -> str:
        """The driver's log (its Ray job's), the last ``tail`` lines if given."""
        params = {"tail": tail} if tail is not None else {}
        return self._request("GET", f"/v1/sweeps/{_quote(sweep_id)}/logs", params=params).text

    def follow_logs(self, sweep_id: str, *, tail: int | None = None) -> Iterator[str]:
        """The driver's log as text chunks, until its job ends."""
        params: dict[str, Any] = {"follow": "true"}
        if tail is not None:
            params["tail"] = tail
        with self._stream("GET", f"/v1/sweeps/{_quote(sweep_id)}/logs", params=params) as response:
            try:
                yield from response.iter_text()
            except httpx.TransportError as exc:
                raise ServiceUnreachable(self.api_url, _reason(exc)) from None

    def events(
        self,
        sweep_id: str,
        *,
        last_event_id: int | None = None,
        max_reconnects: int = 5,
    ) -> Iterator[SseEvent]:
        """The sweep's events (its log replayed, then live) until its final state.

        A dropped connection is resumed with ``Last-Event-ID`` after the server's ``retry``
        delay, so no event is lost or repeated; ``max_reconnects`` failures in a row (without
        an event in between) raise :class:`ServiceUnreachable`.

        Args:
            sweep_id: the sweep to follow.
            last_event_id: start after this event (``None``: from the beginning).
            max_reconnects: attempts in a row before giving up.
        """
        path = f"/v1/sweeps/{_quote(sweep_id)}/events"
        retry_s = 2.0
        failures = 0
        connected = False
        while True:
            headers = {"Accept": "text/event-stream"}
            if last_event_id is not None:
                headers["Last-Event-ID"] = str(last_event_id)
            try:
                with self._stream("GET", path, headers=headers, reconnecting=connected) as response:
                    connected = True
                    for item in _parse_sse(response.iter_lines()):
                        if isinstance(item, float):
                            retry_s = item
                            continue
                        failures = 0
                        if item.id is not None:
                            last_event_id = item.id
                        yield item
                return  # the server closed the stream: the sweep reached a final state
            except (httpx.TransportError, _Retryable) as exc:
                failures += 1
                if failures > max_reconnects:
                    raise ServiceUnreachable(self.api_url, _reason(exc)) from None
                time.sleep(retry_s)

    # -- plumbing --------------------------------------------------------------------------

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise ServiceUnreachable(self.api_url, _reason(exc)) from None
        if response.status_code >= 400:
            raise self._error(response)
        return response

    def _stream(
        self, method: str, path: str, *, reconnecting: bool = False, **kwargs: Any
    ) -> _StreamContext:
        return _StreamContext(self, method, path, reconnecting=reconnecting, kwargs=kwargs)

    def _error(self, response: httpx.Response) -> ApiError:
        status = response.status_code
        try:
            error = ErrorPublic.model_validate_json(response.content).error
            code, message, field_, details = error.code, error.message, error.field, error.details
        except ValidationError:
            code, message, field_, details = "error", f"HTTP {status}", None, []
            text = response.text.strip()
            if text:
                message = f"HTTP {status}: {text[:200]}"
        if status == 401:
            return Unauthorized(status, code, message, url=self.api_url, had_token=self.has_token)
        kind = _BY_STATUS.get(status, ApiError)
        failure = kind(status, code, message, field=field_, details=details)
        if isinstance(failure, RateLimited):
            try:
                failure.retry_after_s = float(response.headers.get("Retry-After", "1"))
            except ValueError:
                failure.retry_after_s = 1.0
        return failure


class _Retryable(Exception):
    """A stream answered 502/503/504: try again like a dropped connection."""


class _StreamContext:
    """``with client._stream(...) as response``: opens a streamed request, maps errors.

    While ``reconnecting``, connection errors and 502/503/504 propagate as retryable
    (``httpx.TransportError``, ``_Retryable``) instead of becoming :class:`ClientError`.
    """

    def __init__(
        self,
        client: ExtrapClient,
        method: str,
        path: str,
        *,
        reconnecting: bool,
        kwargs: dict[str, Any],
    ) -> None:
        self._client = client
        self._reconnecting = reconnecting
        timeout = httpx.Timeout(DEFAULT_TIMEOUT_S, read=STREAM_READ_TIMEOUT_S)
        self._manager = client._http.stream(method, path, timeout=timeout, **kwargs)

    def __enter__(self) -> httpx.Response:
        try:
            response = self._manager.__enter__()
        except httpx.TransportError as exc:
            if self._reconnecting:
                raise
            raise ServiceUnreachable(self._client.api_url, _reason(exc)) from None
        if response.status_code >= 400:
            response.read()
            self._manager.__exit__(None, None, None)
            if self._reconnecting and response.status_code in _RETRY_STATUSES:
                raise _Retryable(f"HTTP {response.status_code}")
            raise self._client._error(response)
        return response

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._manager.__exit__(kind, error, traceback)


def _spec_body(spec: str | bytes | Mapping[str, Any]) -> dict[str, Any]:
    if isinstance(spec, str | bytes):
        content = spec.encode("utf-8") if isinstance(spec, str) else spec
        return {"content": content, "headers": {"Content-Type": "application/yaml"}}
    return {"json": dict(spec)}


def _quote(segment: str) -> str:
    from urllib.parse import quote

    return quote(segment, safe="")


_REFUSED = "connection refused"


def _worth_retrying(error: ClientError) -> bool:
    """A timeout, a dropped connection or a gateway error: the request may have been lost."""
    if isinstance(error, ServiceUnreachable):
        return error.reason != _REFUSED
    return isinstance(error, ApiError) and error.status in _RETRY_STATUSES


def _reason(exc: BaseException) -> str:
    if isinstance(exc, httpx.ConnectError):
        text = str(exc)
        return _REFUSED if "refused" in text.lower() or not text else text
    if isinstance(exc, httpx.TimeoutException):
        return "timed out"
    return str(exc) or type(exc).__name__


def _parse_sse(lines: Iterable[str]) -> Iterator[SseEvent | float]:
    """Server-Sent Events from a stream's lines; a ``retry:`` field yields its delay in s."""
    event_id: int | None = None
    event_type = "message"
    data: list[str] = []
    for line in lines:
        if not line:
            if data:
                payload = json.loads("\n".join(data))
                yield SseEvent(id=event_id, event=event_type, data=payload)
            event_id, event_type, data = None, "message", []
            continue
        if line.startswith(":"):
            continue  # a comment: the keepalive
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "data":
            data.append(value)
        elif name == "event":
            event_type = value
        elif name == "id" and value.isdigit():
            event_id = int(value)
        elif name == "retry" and value.isdigit():
            yield int(value) / 1000.0
