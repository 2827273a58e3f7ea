"""Reading a sweep spec from a request body: JSON, or YAML with a YAML content type."""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import Depends, Request
from starlette.concurrency import run_in_threadpool

from search_spaces import FieldError, SpecError, SweepSpec, load_spec
from service.server.api.errors import ApiError

__all__ = ["SPEC_REQUEST_BODY", "YAML_TYPES", "SpecBody"]

YAML_TYPES = frozenset({"application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml"})
JSON_TYPES = frozenset({"application/json", ""})


async def read_spec(request: Request) -> SweepSpec:
    """Parse and validate the body as a spec (422 with field paths when it is not one)."""
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    raw = await request.body()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ApiError(400, "bad_request", "the body is not UTF-8 text") from None
    data: Any
    if media_type in YAML_TYPES:
        data = text
    elif media_type in JSON_TYPES or media_type.endswith("+json"):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ApiError.invalid([FieldError("", f"the body is not valid JSON: {exc}")]) from None
        if not isinstance(data, dict):
            raise ApiError.invalid([FieldError("", "a spec must be a JSON object")])
    else:
        raise ApiError(
            415,
            "unsupported_media_type",
            f"send the spec as application/json or application/yaml, not {media_type!r}",
        )
    try:
        return await run_in_threadpool(load_spec, data)
    except SpecError as exc:
        raise ApiError.invalid(exc.errors) from None


SpecBody = Annotated[SweepSpec, Depends(read_spec)]

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
