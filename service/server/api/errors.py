"""One error shape for every failure: ``{"error": {"code", "message", "field", "details"}}``.

- 401 ``unauthorized``: no or bad token; 404 ``not_found``: no such resource, or another user's;
- 409 ``illegal_transition``: the message names the current state (``details[0].state``);
- 413 ``body_too_large``; 422 ``invalid_spec`` / ``invalid_request``: ``field`` is the first
  offending path, ``details`` lists every ``{"field", "message"}``;
- 429 ``rate_limited`` (``Retry-After``); 503 ``unavailable``: a dependency (Ray) is down;
- 500 ``internal``: a bug. The edge middleware (:class:`~service.server.api.middleware.Edge`)
  answers it and logs one line and one short traceback; nothing else logs it again.

:func:`error_responses` documents these in the OpenAPI document, route by route.
"""

from __future__ import annotations

import copy
import logging
import traceback
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy import exc as db_errors
from starlette.exceptions import HTTPException as StarletteHTTPException

from search_spaces import FieldError, SpecError
from service.server.crud import StudyNotFound, SweepNotFound
from service.server.states import IllegalTransition
from service.wire import ErrorBody, ErrorPublic, invalid_body

__all__ = ["ApiError", "error_responses", "install_error_handlers", "short_traceback"]

log = logging.getLogger(__name__)

TRACEBACK_FRAMES = 12
"""A 500 logs the innermost frames only (a RecursionError has a thousand)."""

_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "body_too_large",
    415: "unsupported_media_type",
    422: "invalid_request",
    429: "rate_limited",
    503: "unavailable",
}

_DESCRIPTIONS = {
    400: "The body is not UTF-8 text (`bad_request`)",
    401: "No, malformed, unknown or revoked token (`unauthorized`; `WWW-Authenticate: Bearer`)",
    404: "No such resource, or not yours (`not_found`)",
    409: "The sweep's state forbids it (`illegal_transition`; `details[0].state`)",
    413: "The body exceeds `EXTRAP_MAX_BODY_BYTES` (`body_too_large`)",
    415: "The body is neither JSON nor YAML (`unsupported_media_type`)",
    422: "A field is invalid (`invalid_spec`, `invalid_request`, `insufficient_resources`, "
    "`idempotency_key_reused`); `details` lists every field and message",
    429: "Too many submissions: wait `Retry-After` seconds (`rate_limited`)",
    503: "Ray or the database cannot be reached, or the database is busy (`unavailable`; retry)",
}


_HEADERS = {
    401: {"WWW-Authenticate": {"description": "Bearer", "schema": {"type": "string"}}},
    429: {"Retry-After": {"description": "seconds to wait", "schema": {"type": "integer"}}},
    503: {"Retry-After": {"description": "seconds to wait", "schema": {"type": "integer"}}},
}
_ERROR_CONTENT = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorPublic"}}}


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` for these error statuses, each with the one error body (as
    JSON, whatever the route's own media type; the app adds ``ErrorPublic`` to the schemas)."""
    responses: dict[int | str, dict[str, Any]] = {}
    for status in statuses:
        response: dict[str, Any] = {
            "description": _DESCRIPTIONS[status],
            "content": copy.deepcopy(_ERROR_CONTENT),
        }
        if status in _HEADERS:
            response["headers"] = copy.deepcopy(_HEADERS[status])
        responses[status] = response
    return responses


class ApiError(Exception):
    """An error the API reports in the standard shape.

    Args:
        status: the HTTP status.
        code: a stable machine-readable code.
        message: a sentence for people.
        field: the dotted path of the offending field, if one.
        details: more structured information (e.g. every field error).
        headers: extra response headers (e.g. ``WWW-Authenticate``).
    """

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        field: str | None = None,
        details: Sequence[dict[str, Any]] = (),
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.field = field
        self.details = list(details)
        self.headers = headers

    @classmethod
    def not_found(cls, what: str) -> ApiError:
        return cls(404, "not_found", f"{what} not found")

    @classmethod
    def invalid(cls, errors: Sequence[FieldError], code: str = "invalid_spec") -> ApiError:
        """A 422 listing every field error (``field`` is the first one's path)."""
        body = invalid_body(errors, code=code)
        return cls(422, body.code, body.message, field=body.field, details=body.details)

    def public(self) -> ErrorPublic:
        """The response body."""
        return ErrorPublic(
            error=ErrorBody(
                code=self.code, message=self.message, field=self.field, details=self.details
            )
        )


def _response(error: ApiError) -> JSONResponse:
    body = error.public().model_dump(mode="json")
    return JSONResponse(body, status_code=error.status, headers=error.headers)


async def _api_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    return _response(exc)


async def _spec_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, SpecError)
    return _response(ApiError.invalid(exc.errors))


async def _not_found(_request: Request, exc: Exception) -> JSONResponse:
    if isinstance(exc, StudyNotFound):
        return _response(ApiError.not_found(f"study {exc.study_id!r}"))
    assert isinstance(exc, SweepNotFound)
    return _response(ApiError.not_found(f"sweep {exc.sweep_id!r}"))


async def _illegal(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, IllegalTransition)
    return _response(
        ApiError(
            409,
            "illegal_transition",
            exc.message,
            details=[{"state": str(exc.current), "requested": str(exc.target)}],
        )
    )


def _loc_path(loc: Sequence[Any]) -> str:
    parts = [str(part) for part in loc]
    if parts and parts[0] in ("body", "query", "path", "header"):
        parts = parts[1:]
    return ".".join(parts)


async def _validation(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = [FieldError(_loc_path(item["loc"]), str(item["msg"])) for item in exc.errors()]
    return _response(ApiError.invalid(errors, code="invalid_request"))


async def _http(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = _CODES.get(exc.status_code, "error")
    message = exc.detail if isinstance(exc.detail, str) else code.replace("_", " ")
    headers = dict(exc.headers) if exc.headers else None
    return _response(ApiError(exc.status_code, code, message, headers=headers))


async def _unstorable(request: Request, exc: Exception) -> JSONResponse:
    # The database refused a value: something in the request that the checks before it
    # missed (they name the field; this cannot). The client's to fix, not a server error.
    log.warning(
        "%s %s: the database refused a value: %s",
        request.method,
        request.url.path,
        str(exc).splitlines()[0][:300],
    )
    message = (
        "a value in the request cannot be stored (the database refused it): look for NUL "
        "characters, very long texts and numbers out of range"
    )
    return _response(ApiError.invalid([FieldError("", message)], code="invalid_request"))


async def _database_down(request: Request, exc: Exception) -> JSONResponse:
    log.error(
        "%s %s: the database is unavailable: %s",
        request.method,
        request.url.path,
        str(exc).splitlines()[0][:300],
    )
    message = "the database is unavailable or busy: retry in a moment"
    return _response(ApiError(503, "unavailable", message, headers={"Retry-After": "2"}))


_HANDLERS = {
    ApiError: _api_error,
    db_errors.DataError: _unstorable,
    db_errors.OperationalError: _database_down,
    db_errors.InterfaceError: _database_down,
    SpecError: _spec_error,
    SweepNotFound: _not_found,
    StudyNotFound: _not_found,
    IllegalTransition: _illegal,
    RequestValidationError: _validation,
    StarletteHTTPException: _http,
}


def install_error_handlers(app: FastAPI) -> None:
    """Register the handlers that turn exceptions into the standard shape."""
    for exc_class, handler in _HANDLERS.items():
        app.add_exception_handler(exc_class, handler)


def short_traceback(exc: BaseException) -> str:
    """The innermost frames of ``exc`` (and of its causes), as text."""
    return "".join(traceback.format_exception(exc, limit=-TRACEBACK_FRAMES)).rstrip()
