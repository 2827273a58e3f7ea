"""The one error shape of the API: ``{"error": {"code", "message", "field", "details"}}``.

The server builds it (:class:`ErrorPublic`; :func:`invalid_body` for a 422) and the client reads
it back; field errors travel as ``details`` entries ``{"field", "message"}`` and come back as
the same :class:`~search_spaces.errors.FieldError` that the spec validation raised.

Example:
    >>> body = invalid_body([FieldError("space.lr.low", "low=2 is above high=1")])
    >>> body.code, body.field
    ('invalid_spec', 'space.lr.low')
    >>> field_errors(body.details)[0].message
    'low=2 is above high=1'
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import BaseModel, Field

from search_spaces.errors import FieldError

__all__ = [
    "ErrorBody",
    "ErrorPublic",
    "FieldError",
    "field_error_details",
    "field_errors",
    "invalid_body",
]


class ErrorBody(BaseModel):
    code: str = Field(description="stable machine-readable code, e.g. not_found")
    message: str = Field(description="a sentence for people")
    field: str | None = Field(None, description="dotted path of the (first) offending field")
    details: list[dict[str, Any]] = Field(
        default_factory=list,
        description="structured details: every field error as {field, message}; the current "
        "state of a 409; the numbers behind a resource refusal",
    )


class ErrorPublic(BaseModel):
    """Every error the API returns has this shape."""

    error: ErrorBody


def field_error_details(errors: Sequence[FieldError]) -> list[dict[str, Any]]:
    """``details`` entries for field errors: ``{"field": path or null, "message": ...}``."""
    return [{"field": error.path or None, "message": error.message} for error in errors]


def field_errors(details: Sequence[Mapping[str, Any]]) -> list[FieldError]:
    """The field errors in ``details`` (entries without a message are other details)."""
    return [
        FieldError(str(item.get("field") or ""), str(item["message"]))
        for item in details
        if "message" in item
    ]


def invalid_body(errors: Sequence[FieldError], *, code: str = "invalid_spec") -> ErrorBody:
    """The error of a 422 that lists ``errors`` (``field`` is the first one's path)."""
    first = errors[0] if errors else FieldError("", "invalid")
    message = str(first) if len(errors) == 1 else f"{len(errors)} problems; first: {first}"
    return ErrorBody(
        code=code, message=message, field=first.path or None, details=field_error_details(errors)
    )
