"""Reading request bodies, after authentication: JSON models, and sweep and study specs (JSON
or YAML).

Every body is read by a dependency that depends on the caller (so a request without a valid
token never has its body read), through :func:`read_body`, which gives the request's
database slot back while it waits for the bytes. Parsing never raises anything but an
:class:`ApiError`: a body that is not UTF-8 is 400, an unknown media type 415, and JSON that
is malformed, uses NaN or Infinity, or nests deeper than :data:`MAX_JSON_DEPTH` is 422, like a
field that does not validate.

Example:
    >>> parse_json(b'{"add_trials": 2}')
    {'add_trials': 2}
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any, TypeVar

from fastapi import Request
from pydantic import BaseModel, ValidationError
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect

from search_spaces import FieldError, SpecError, SweepSpec, load_spec
from search_spaces.study import StudySpec, load_study
from service.server.api.deps import pause_session, resume_session
from service.server.api.errors import ApiError, short_traceback

__all__ = [
    "JSON_TYPES",
    "MAX_JSON_DEPTH",
    "SPEC_REQUEST_BODY",
    "YAML_TYPES",
    "json_request_body",
    "load_spec_body",
    "load_study_body",
    "media_type",
    "parse_json",
    "parse_model",
    "read_body",
]

log = logging.getLogger(__name__)

M = TypeVar("M", bound=BaseModel)
D = TypeVar("D")

YAML_TYPES = frozenset({"application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml"})
JSON_TYPES = frozenset({"application/json", ""})
MAX_JSON_DEPTH = 64
"""JSON bodies nest at most this deep (a spec: about 5; an event batch: about 4)."""


async def read_body(request: Request, session: Session) -> bytes:
    """The whole body (at most ``max_body_bytes``: 413 beyond), read without holding a
    database connection."""
    await pause_session(session)
    try:
        return await request.body()
    except ClientDisconnect:  # nobody is left to answer: the client's doing, not an error
        raise ApiError(400, "bad_request", "the client left before sending the body") from None
    finally:
        await resume_session(session)


def media_type(request: Request) -> str:
    """The body's media type, lowercased, without parameters (``""`` if none was given)."""
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


def _is_json(media: str) -> bool:
    return media in JSON_TYPES or media.endswith("+json")


def _text(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ApiError(
            400, "bad_request", f"the body is not UTF-8 text (byte {exc.start}): send UTF-8"
        ) from None


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON: send a number, or null")


def _depth(value: Any) -> int:
    deepest = 0
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            item = list(item.values())
        if isinstance(item, list):
            deepest = max(deepest, depth)
            if depth > MAX_JSON_DEPTH:
                return depth
            stack.extend((child, depth + 1) for child in item)
    return deepest


def _too_deep() -> ApiError:
    return ApiError.invalid(
        [FieldError("", f"the body nests deeper than {MAX_JSON_DEPTH} levels: flatten it")],
        code="invalid_request",
    )


def parse_json(raw: bytes, *, allow_non_finite: bool = False) -> Any:
    """Strict JSON (at most :data:`MAX_JSON_DEPTH` deep; NaN and Infinity only if allowed),
    or 400/422."""
    text = _text(raw)
    try:
        if allow_non_finite:  # drivers report a diverged loss as NaN; it is stored as null
            data = json.loads(text)
        else:
            data = json.loads(text, parse_constant=_refuse_constant)
    except RecursionError:
        raise _too_deep() from None
    except ValueError as exc:  # JSONDecodeError is one
        raise ApiError.invalid(
            [FieldError("", f"the body is not valid JSON: {exc}")], code="invalid_request"
        ) from None
    if _depth(data) > MAX_JSON_DEPTH:
        raise _too_deep()
    return data


def _field_errors(exc: ValidationError) -> list[FieldError]:
    return [
        FieldError(".".join(str(part) for part in error["loc"]), str(error["msg"]))
        for error in exc.errors(include_url=False)
    ]


def parse_model(
    raw: bytes, media: str, model: type[M], *, required: bool, allow_non_finite: bool = False
) -> M | None:
    """A JSON body as ``model`` (``None`` for an empty, optional one), or 400/415/422."""
    if not raw.strip():
        if not required:
            return None
        raise ApiError.invalid([FieldError("", "a JSON body is required")], code="invalid_request")
    if not _is_json(media):
        raise ApiError(
            415, "unsupported_media_type", f"send the body as application/json, not {media!r}"
        )
    try:
        return model.model_validate(parse_json(raw, allow_non_finite=allow_non_finite))
    except ValidationError as exc:
        raise ApiError.invalid(_field_errors(exc), code="invalid_request") from None


def _spec_from(data: Any) -> SweepSpec:
    try:
        return load_spec(data)
    except RecursionError:
        raise SpecError([FieldError("", "the spec nests too deeply: flatten it")]) from None


def _study_from(data: Any) -> StudySpec:
    try:
        return load_study(data)  # no directory: a base given as a path is refused
    except RecursionError:
        raise SpecError([FieldError("", "the study nests too deeply: flatten it")]) from None


async def load_spec_body(raw: bytes, media: str) -> SweepSpec:
    """Parse and validate a spec body (JSON, or YAML with a YAML media type), or 4xx."""
    return await _load_document(raw, media, _spec_from, "spec")


async def load_study_body(raw: bytes, media: str) -> StudySpec:
    """Parse and validate a study spec body (JSON or YAML; its base inline), or 4xx."""
    return await _load_document(raw, media, _study_from, "study")


async def _load_document(raw: bytes, media: str, build: Callable[[Any], D], what: str) -> D:
    data: Any
    if media in YAML_TYPES:
        data = _text(raw)
    elif _is_json(media):
        data = parse_json(raw)
        if not isinstance(data, dict):
            raise ApiError.invalid([FieldError("", f"a {what} must be a JSON object")])
    else:
        raise ApiError(
            415,
            "unsupported_media_type",
            f"send the {what} as application/json or application/yaml, not {media!r}",
        )
    try:
        return await run_in_threadpool(build, data)
    except SpecError as exc:
        raise ApiError.invalid(exc.errors) from None
    except Exception as exc:  # the parser failed on this input: the client's to fix
        log.warning(
            "%s parser failed on a request body: %s: %s\n%s",
            what,
            type(exc).__name__,
            exc,
            short_traceback(exc),
        )
        raise ApiError.invalid(
            [FieldError("", f"the {what} cannot be read: {type(exc).__name__}: {exc}"[:500])]
        ) from None


def json_request_body(schema_name: str, *, required: bool = True) -> dict[str, Any]:
    """``openapi_extra`` for a route whose dependency reads a JSON body of that schema."""
    return {
        "requestBody": {
            "required": required,
            "content": {
                "application/json": {"schema": {"$ref": f"#/components/schemas/{schema_name}"}}
            },
        }
    }


SPEC_REQUEST_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "description": "a sweep spec (docs/spec-reference.md), as JSON or YAML",
        "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/SweepSpec"}},
            "application/yaml": {"schema": {"type": "string"}},
        },
    }
}
