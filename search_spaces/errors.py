"""Spec errors in one shape: a list of ``FieldError(path, message)``.

Every problem found in a sweep spec, whether pydantic found it (a wrong type, a missing field)
or one of our cross-field checks did, becomes a :class:`FieldError` with a dotted path such as
``space.gamma_ratio.low`` or ``job.global_batch_size`` and a message that says what is wrong and
how to fix it. The CLI, the service and the sweep driver all print these the same way.

Validators inside the spec raise :class:`SpecError` with paths relative to the field being
validated; pydantic keeps the exception object, and :func:`errors_from_validation_error` joins
the two paths back together.

Example:
    >>> err = SpecError([FieldError("space.lr.low", "low=2 is above high=1: swap them")])
    >>> print(err)
    space.lr.low: low=2 is above high=1: swap them
"""

from __future__ import annotations

import re
import reprlib
import types
import typing
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError

__all__ = [
    "SHOWN_LENGTH",
    "FieldError",
    "SpecError",
    "SpecWarning",
    "errors_from_option_problems",
    "errors_from_validation_error",
    "shorten",
    "shorten_quotes",
]

SHOWN_LENGTH = 60
"""A message quotes at most this many characters of a value (then "…")."""

# Fields whose Literal value tags the members of a union (ParamSpec's `type`, a scheduler's
# `kind`); pydantic puts the tag into an error's location, we leave it out of the path.
_TAG_FIELDS = ("type", "kind")


@dataclass(frozen=True)
class FieldError:
    """One problem in a spec.

    Attributes:
        path: dotted location in the spec, e.g. ``space.gamma_ratio.low``; list items are
            numbered (``secondary_objectives.0.metric``); ``""`` means the spec as a whole.
        message: what is wrong and what to do about it.
    """

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


class SpecError(ValueError):
    """A sweep spec is invalid; ``errors`` lists every problem found.

    Args:
        errors: the problems, each with a path and a message.
    """

    def __init__(self, errors: Iterable[FieldError]) -> None:
        self.errors: list[FieldError] = list(errors)
        super().__init__("\n".join(str(error) for error in self.errors))

    def __reduce__(self) -> tuple[type[SpecError], tuple[list[FieldError]]]:
        # Ray and multiprocessing pickle exceptions; rebuild from the errors, not the text.
        return (SpecError, (self.errors,))


class SpecWarning(UserWarning):
    """A spec is valid but probably not what was meant."""


# Bounds the work of showing a nested value before it is cut to a prefix.
_REPR = reprlib.Repr()
_REPR.maxlevel = 3
_REPR.maxlist = _REPR.maxtuple = _REPR.maxset = _REPR.maxdict = 8
_REPR.maxstring = _REPR.maxother = _REPR.maxlong = 2 * SHOWN_LENGTH


def shorten(value: Any, limit: int = SHOWN_LENGTH) -> str:
    """``repr(value)``, cut to its first ``limit`` characters and "…" when longer.

    Every message that quotes a value from a spec goes through this, so an error about a huge
    or deeply nested value stays short (and costs no more than its prefix to build).

    Example:
        >>> shorten("x" * 100, limit=8)
        "'xxxxxxx…"
        >>> shorten([0.5, 0.75])
        '[0.5, 0.75]'
    """
    if isinstance(value, str):
        text = repr(value[: limit + 1])
    elif isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 8 * limit:
        return f"<an integer of {value.bit_length()} bits>"  # too long to print at all
    else:
        try:
            text = _REPR.repr(value)
        except Exception:  # a value whose repr fails must not turn an error into a crash
            text = f"<a {type(value).__name__}>"
    return text if len(text) <= limit else text[:limit] + "…"


def errors_from_validation_error(
    exc: ValidationError, root: type[BaseModel] | None = None, prefix: str = ""
) -> list[FieldError]:
    """Convert a pydantic ``ValidationError`` into :class:`FieldError` objects.

    Args:
        exc: the error pydantic raised.
        root: the model that was validated; lets the conversion drop union tags from paths,
            list the allowed fields for an unknown one, and point a model-level error at the
            field its message names first.
        prefix: put in front of every path (e.g. ``"job"`` when validating the job alone).

    Returns:
        One entry per problem, in pydantic's order; a :class:`SpecError` raised inside a
        validator contributes all of its errors.
    """
    out: list[FieldError] = []
    for item in exc.errors(include_url=False):
        parts, model = _walk(root, item["loc"])
        path = _join(prefix, ".".join(str(p) for p in parts))
        error = (item.get("ctx") or {}).get("error")
        if isinstance(error, SpecError):
            out.extend(FieldError(_join(path, e.path), e.message) for e in error.errors)
            continue
        message = _quote_short(_message(item, parts, root), item.get("input"))
        if item["type"] == "value_error" and model is not None:
            path = _join(path, _field_named_first(model, str(item["msg"])))
        out.append(FieldError(path, message))
    return out


def errors_from_option_problems(
    problems: Iterable[tuple[str, str]], prefix: str
) -> list[FieldError]:
    """Errors for ``InvalidWorkloadOptionsError.problems`` ((option, message) pairs).

    A problem with the whole combination of options (named ``"(combination)"``) gets
    ``prefix`` itself as its path.
    """
    return [
        FieldError(prefix if option.startswith("(") else _join(prefix, option), message)
        for option, message in problems
    ]


def _join(*parts: str) -> str:
    return ".".join(p for p in parts if p)


def _message(item: Any, parts: Sequence[str | int], root: type[BaseModel] | None) -> str:
    kind = item["type"]
    msg = str(item["msg"])
    if kind == "value_error":
        return msg.removeprefix("Value error, ")
    if kind == "union_tag_invalid":
        ctx = item.get("ctx") or {}
        field = str(ctx.get("discriminator", "kind")).strip("'")
        return f"unknown {field} {shorten(ctx.get('tag'))}: use one of {ctx.get('expected_tags')}"
    if kind == "missing":
        return f"is required: add `{parts[-1] if parts else 'it'}`"
    if kind == "extra_forbidden":
        allowed = _allowed_fields(root, parts[:-1])
        hint = f"; the allowed fields are: {', '.join(allowed)}" if allowed else ""
        name = str(parts[-1]) if parts else "?"
        return f"unknown field `{name[:SHOWN_LENGTH]}`: remove it or fix its spelling{hint}"
    got = item.get("input")
    if isinstance(got, dict | list) or got is None:
        return msg
    return f"{msg} (got {shorten(got)})"


# A quote that opens after a non-word character and closes before one ("the job's x" and
# "it's" are no quotes); the text inside is longer than SHOWN_LENGTH - 1 characters.
_LONG_QUOTE = re.compile(rf"""(?<!\w)(['"])([^'"\n]{{{SHOWN_LENGTH - 1}}})[^'"\n]+\1(?!\w)""")


def shorten_quotes(message: str) -> str:
    """``message`` with every quoted text longer than :data:`SHOWN_LENGTH` cut like :func:`shorten`.

    For messages built elsewhere (pydantic, the trainers' validators) that quote a value, or
    something made of one, in full.

    Example:
        >>> shorten_quotes("unknown name '" + "x" * 100 + "': fix it")
        "unknown name 'xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx…: fix it"
    """
    return _LONG_QUOTE.sub(lambda m: m.group(1) + m.group(2) + "…", message)


def _quote_short(message: str, value: Any) -> str:
    """``message`` with a long string input's ``repr`` (quoted by a validator) shortened."""
    if isinstance(value, str) and len(value) > SHOWN_LENGTH:
        return message.replace(repr(value), shorten(value))
    return message


def _allowed_fields(root: type[BaseModel] | None, parts: Sequence[str | int]) -> list[str]:
    if root is None:
        return []
    _, model = _walk(root, tuple(parts))
    return list(model.model_fields) if model is not None else []


def _field_named_first(model: type[BaseModel], message: str) -> str:
    """The dotted field of ``model`` that a model-level error message mentions first.

    A model validator's error has the model's location, e.g. ``job`` for "global_batch_size=
    512 does not divide evenly over workers=3"; the path should name the field to change.
    """
    best: tuple[int, str] | None = None
    for name in model.model_fields:
        match = re.search(rf"(?<![\w.]){re.escape(name)}((?:\.\w+)*)(?![\w])", message)
        if match is None:
            continue
        dotted = name + _valid_suffix(model, name, match.group(1))
        if best is None or match.start() < best[0]:
            best = (match.start(), dotted)
    return best[1] if best else ""


def _valid_suffix(model: type[BaseModel], name: str, suffix: str) -> str:
    sub = _model_of(model.model_fields[name].annotation)
    kept = ""
    for part in (p for p in suffix.split(".") if p):
        if sub is None or part not in sub.model_fields:
            break
        kept += "." + part
        sub = _model_of(sub.model_fields[part].annotation)
    return kept


def _walk(
    root: type[BaseModel] | None, loc: tuple[str | int, ...]
) -> tuple[list[str | int], type[BaseModel] | None]:
    """Follow ``loc`` through the type of ``root``: drop union tags, find the model reached."""
    parts: list[str | int] = []
    annotation: Any = root
    for element in loc:
        annotation = _strip(annotation)
        members = _union_members(annotation)
        if members and isinstance(element, str):
            tagged = _member_tagged(members, element)
            if tagged is not None:
                annotation = tagged
                continue
        parts.append(element)
        annotation = _child(annotation, element)
    return parts, _model_of(annotation)


def _child(annotation: Any, element: str | int) -> Any:
    model = _model_of(annotation)
    if model is not None:
        field = model.model_fields.get(str(element))
        return field.annotation if field is not None else None
    origin = get_origin(annotation)
    args = get_args(annotation)
    if origin is dict and len(args) == 2:
        return args[1]
    if origin in (list, tuple) and args:
        return args[0]
    return None


def _strip(annotation: Any) -> Any:
    while get_origin(annotation) is typing.Annotated:
        annotation = get_args(annotation)[0]
    members = _union_members(annotation)
    if members is not None:
        real = [m for m in members if m is not type(None)]
        if len(real) == 1:
            return _strip(real[0])
    return annotation


def _union_members(annotation: Any) -> list[Any] | None:
    if get_origin(annotation) in (Union, types.UnionType):
        return [_strip(arg) for arg in get_args(annotation)]
    return None


def _member_tagged(members: list[Any], tag: str) -> type[BaseModel] | None:
    for member in members:
        model = _model_of(member)
        if model is None:
            continue
        for field_name in _TAG_FIELDS:
            field = model.model_fields.get(field_name)
            annotation = field.annotation if field is not None else None
            if get_origin(annotation) is Literal and tag in get_args(annotation):
                return model
    return None


def _model_of(annotation: Any) -> type[BaseModel] | None:
    annotation = _strip(annotation)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return None
