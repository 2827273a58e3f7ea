"""The size limits of a sweep spec, and the one-pass check of a spec's structure against them.

A real spec is a few KB, nested about 5 deep, with a dozen parameters; these limits are far
above that and keep every check of untrusted input cheap: validation does work linear in the
size of the input, and every message quotes at most a short prefix of a value
(:func:`search_spaces.errors.shorten`). Each limit is stated once, here: the checks, the JSON
schema (:meth:`search_spaces.SweepSpec.json_schema`) and the "Limits" table of
``docs/spec-reference.md`` read these constants (a test compares the table with
:data:`LIMITS`).

Example:
    >>> for error in structure_errors({"name": "x" * 2000, "job": {"data_dir": "/a" + chr(0)}}):
    ...     print(error)
    name: 2,000 characters; a string in a spec has at most 1,000: shorten it
    job.data_dir: contains a NUL character (\\x00), which no field accepts: remove it
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from search_spaces.errors import SHOWN_LENGTH, FieldError

__all__ = [
    "LIMITS",
    "MAX_CHOICES",
    "MAX_COMBINATIONS",
    "MAX_DEPTH",
    "MAX_ERRORS",
    "MAX_GRID_POINTS",
    "MAX_INT_VALUES",
    "MAX_ITEMS",
    "MAX_KEY_LENGTH",
    "MAX_MESSAGE_LENGTH",
    "MAX_OPTION_CHECKS",
    "MAX_PARAMETERS",
    "MAX_SPEC_BYTES",
    "MAX_STRING_LENGTH",
    "MAX_VALUES",
    "NUL_FREE_PATTERN",
    "STORED_CONTEXT",
    "VALUE_SCHEMA",
    "Limit",
    "bound_json_schema",
    "structure_errors",
]

MAX_SPEC_BYTES = 256 * 1024
"""A spec given as text (YAML or JSON) has at most this many bytes of UTF-8."""
MAX_DEPTH = 32
"""Mappings and lists nest at most this deep (the spec itself is level 1)."""
MAX_VALUES = 100_000
"""Values in a whole spec: every mapping, list, string, number, boolean and null counts."""
MAX_ITEMS = 1_000
"""Entries of any one list or mapping."""
MAX_STRING_LENGTH = 1_000
"""Characters of any string value."""
MAX_KEY_LENGTH = 100
"""Characters of any mapping key (field names, searchable names, option names)."""
MAX_PARAMETERS = 64
"""Parameters of ``space``, after the preset is merged in."""
MAX_CHOICES = 1_000
"""Choices of one categorical parameter."""
MAX_COMBINATIONS = 10_000
"""Reachable combinations of categorical values; each one is built into a training job."""
MAX_INT_VALUES = 10_000
"""Values of one searched integer workload option; each one is checked."""
MAX_OPTION_CHECKS = 100_000
"""Workload-option sets built, over all combinations, to check the integer options."""
MAX_GRID_POINTS = 100_000
"""Points of the grid sampler's grid (Optuna builds them all in memory)."""
MAX_ERRORS = 50
"""Problems listed in one :class:`~search_spaces.errors.SpecError`; the rest are counted."""
MAX_MESSAGE_LENGTH = 1_000
"""Characters of one error message; longer ones (which only quote long values) are cut."""

NUL_FREE_PATTERN = "^[^\\u0000]*$"
"""The JSON-schema pattern of a string without NUL characters (no field accepts one)."""

STORED_CONTEXT = "stored"
"""Validation-context key of a spec read back from storage (:meth:`SweepSpec.from_stored`).

Such a spec was validated in full when it was submitted, so neither the cross-field checks nor
the limits and rules added since are applied again: a sweep stored before a limit existed stays
readable."""


@dataclass(frozen=True)
class Limit:
    """One row of the limits table.

    Attributes:
        name: the constant in this module.
        value: its value.
        bounds: what it bounds, for the docs.
    """

    name: str
    value: int
    bounds: str


LIMITS: tuple[Limit, ...] = (
    Limit("MAX_SPEC_BYTES", MAX_SPEC_BYTES, "bytes of a spec given as YAML or JSON text"),
    Limit("MAX_DEPTH", MAX_DEPTH, "nesting of mappings and lists (the spec itself is level 1)"),
    Limit("MAX_VALUES", MAX_VALUES, "values in the whole spec (mappings, lists and scalars)"),
    Limit("MAX_ITEMS", MAX_ITEMS, "entries of any one list or mapping"),
    Limit("MAX_STRING_LENGTH", MAX_STRING_LENGTH, "characters of any string value"),
    Limit("MAX_KEY_LENGTH", MAX_KEY_LENGTH, "characters of any mapping key"),
    Limit("MAX_PARAMETERS", MAX_PARAMETERS, "parameters in `space` (preset merged in)"),
    Limit("MAX_CHOICES", MAX_CHOICES, "choices of one categorical parameter"),
    Limit("MAX_COMBINATIONS", MAX_COMBINATIONS, "reachable combinations of categorical values"),
    Limit("MAX_INT_VALUES", MAX_INT_VALUES, "values of one searched integer workload option"),
    Limit("MAX_OPTION_CHECKS", MAX_OPTION_CHECKS, "option sets built to check integer options"),
    Limit("MAX_GRID_POINTS", MAX_GRID_POINTS, "points of the `grid` sampler's grid"),
    Limit("MAX_ERRORS", MAX_ERRORS, "problems listed in one error (the rest are counted)"),
    Limit("MAX_MESSAGE_LENGTH", MAX_MESSAGE_LENGTH, "characters of one error message"),
    Limit("SHOWN_LENGTH", SHOWN_LENGTH, "characters of a value quoted in a message"),
)
"""Every limit, in the order of the docs table."""


def structure_errors(data: Any) -> list[FieldError]:
    """Where ``data`` (a spec as parsed JSON/YAML, before validation) breaks a structural limit.

    One iterative pass (no recursion, so any depth is safe), at most :data:`MAX_VALUES` values
    visited (a mapping that shares one list a million times is refused, not walked): depth,
    entries per list or mapping, string and key lengths, NUL characters (no field accepts one,
    and PostgreSQL cannot store them), non-finite numbers (JSON has no NaN), keys that are not
    strings and values that are not JSON (a date, bytes, a set). Already-built pydantic models
    (a ``TrainJobConfig`` passed as ``job``) are taken as they are.

    Returns:
        At most :data:`MAX_ERRORS` errors, in document order; an oversized container is
        reported once and not entered.
    """
    errors: list[FieldError] = []
    visited = 0
    stack: list[tuple[str, Any, int]] = [("", data, 1)]
    while stack and len(errors) < MAX_ERRORS:
        path, value, depth = stack.pop()
        visited += 1
        if visited > MAX_VALUES:
            errors.append(
                FieldError(
                    "",
                    f"the spec holds more than {MAX_VALUES:,} values (a real one: a few "
                    "hundred): shorten its lists and mappings",
                )
            )
            break
        if isinstance(value, Mapping | list | tuple):
            problem = _container_problem(value, depth)
            if problem is not None:
                errors.append(FieldError(path, problem))
                continue
            children = (
                _mapping_children(path, value, depth, errors)
                if isinstance(value, Mapping)
                else [(_join(path, str(i)), item, depth + 1) for i, item in enumerate(value)]
            )
            stack.extend(reversed(children))
            continue
        problem = _scalar_problem(value)
        if problem is not None:
            errors.append(FieldError(path, problem))
    return errors[:MAX_ERRORS]


def _container_problem(
    value: Mapping[Any, Any] | list[Any] | tuple[Any, ...], depth: int
) -> str | None:
    if depth > MAX_DEPTH:
        return f"nests deeper than {MAX_DEPTH} levels of mappings and lists: flatten it"
    if len(value) > MAX_ITEMS:
        kind = "entries; a mapping" if isinstance(value, Mapping) else "items; a list"
        return f"{len(value):,} {kind} in a spec has at most {MAX_ITEMS:,}: shorten it"
    return None


def _mapping_children(
    path: str, value: Mapping[Any, Any], depth: int, errors: list[FieldError]
) -> list[tuple[str, Any, int]]:
    children: list[tuple[str, Any, int]] = []
    for key, item in value.items():
        if not isinstance(key, str):
            errors.append(
                FieldError(
                    _join(path, str(key)[:SHOWN_LENGTH]),
                    f"the key {str(key)[:SHOWN_LENGTH]!r} is a {type(key).__name__}: keys are "
                    "strings (quote it in YAML)",
                )
            )
        elif len(key) > MAX_KEY_LENGTH:
            errors.append(
                FieldError(
                    _join(path, key[:SHOWN_LENGTH] + "…"),
                    f"a key of {len(key):,} characters; keys have at most {MAX_KEY_LENGTH}",
                )
            )
        elif "\x00" in key:
            errors.append(
                FieldError(
                    _join(path, key.replace("\x00", "\\x00")),
                    "the key contains a NUL character (\\x00): remove it",
                )
            )
        else:
            children.append((_join(path, key), item, depth + 1))
    return children


def _scalar_problem(value: Any) -> str | None:
    if isinstance(value, str):
        if len(value) > MAX_STRING_LENGTH:
            return (
                f"{len(value):,} characters; a string in a spec has at most "
                f"{MAX_STRING_LENGTH:,}: shorten it"
            )
        if "\x00" in value:
            return "contains a NUL character (\\x00), which no field accepts: remove it"
        return None
    if isinstance(value, float):
        if not math.isfinite(value):
            return f"{value} is not a finite number (JSON has no NaN or infinity): write a number"
        return None
    if value is None or isinstance(value, int | BaseModel):
        return None
    return (
        f"a {type(value).__name__} is not a JSON value: write null, a boolean, a number, a "
        "string, a list or a mapping (YAML: quote dates and times)"
    )


def _join(path: str, part: str) -> str:
    return f"{path}.{part}" if path else part


VALUE_SCHEMA = "SpecValue"
"""The name of the JSON-schema definition of a free-form value (a choice, an option's value)."""

# Keys of a JSON schema whose values are schemas, lists of schemas, or maps of name -> schema.
_SCHEMA_KEYS = ("items", "additionalProperties", "propertyNames", "not")
_SCHEMA_LISTS = ("anyOf", "oneOf", "allOf", "prefixItems")
_SCHEMA_MAPS = ("properties", "$defs")


def bound_json_schema(schema: dict[str, Any], ref_template: str) -> dict[str, Any]:
    """``schema`` (a model's JSON schema) with the structural limits stated in it.

    Every string gets ``maxLength`` :data:`MAX_STRING_LENGTH` (or its own, if smaller) and,
    unless it has a pattern, the NUL-free pattern; every array ``maxItems`` :data:`MAX_ITEMS`;
    every free-form mapping ``maxProperties`` :data:`MAX_ITEMS` and bounded key names; every
    free-form value (``{}``, ``additionalProperties: true``) becomes a reference to
    :data:`VALUE_SCHEMA`, a JSON value bounded the same way at every level. What a schema cannot
    say (nesting depth, :data:`MAX_VALUES`, :data:`MAX_SPEC_BYTES`) is in the docs' Limits table.

    Args:
        schema: the schema, with its definitions under ``$defs``; changed in place.
        ref_template: how the schema refers to a definition, e.g. ``"#/$defs/{model}"``.
    """
    ref = {"$ref": ref_template.format(model=VALUE_SCHEMA)}
    key_names = {"maxLength": MAX_KEY_LENGTH, "pattern": NUL_FREE_PATTERN}
    bounded: dict[str, Any] = _bound(schema, ref, key_names)
    bounded.setdefault("$defs", {})[VALUE_SCHEMA] = {
        "description": "a JSON value within the spec's limits",
        "anyOf": [
            {"type": "null"},
            {"type": "boolean"},
            {"type": "number"},
            {"type": "string", "maxLength": MAX_STRING_LENGTH, "pattern": NUL_FREE_PATTERN},
            {"type": "array", "maxItems": MAX_ITEMS, "items": ref},
            {
                "type": "object",
                "maxProperties": MAX_ITEMS,
                "propertyNames": key_names,
                "additionalProperties": ref,
            },
        ],
    }
    return bounded


def _bound(node: Any, ref: dict[str, str], key_names: dict[str, Any]) -> Any:
    # The schema is ours (a few hundred nodes, nested a dozen deep): recursion is fine here.
    if not isinstance(node, dict):
        return node
    if not node:
        return dict(ref)  # a free-form value
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in _SCHEMA_KEYS:
            value = dict(ref) if value is True else _bound(value, ref, key_names)
        elif key in _SCHEMA_LISTS and isinstance(value, list):
            value = [_bound(member, ref, key_names) for member in value]
        elif key in _SCHEMA_MAPS and isinstance(value, dict):
            value = {name: _bound(member, ref, key_names) for name, member in value.items()}
        out[key] = value
    kind = out.get("type")
    if kind == "string" and "const" not in out and "enum" not in out:
        out["maxLength"] = min(out.get("maxLength", MAX_STRING_LENGTH), MAX_STRING_LENGTH)
        out.setdefault("pattern", NUL_FREE_PATTERN)
    elif kind == "array":
        out["maxItems"] = min(out.get("maxItems", MAX_ITEMS), MAX_ITEMS)
    elif kind == "object" and out.get("additionalProperties") is not False:
        out["maxProperties"] = min(out.get("maxProperties", MAX_ITEMS), MAX_ITEMS)
        out.setdefault("propertyNames", dict(key_names))
        if "additionalProperties" not in out and "properties" not in out:
            out["additionalProperties"] = dict(ref)
    return out
