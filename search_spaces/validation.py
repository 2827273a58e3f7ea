"""Load and validate a sweep spec from YAML text, a file or a mapping.

:func:`load_spec` is the one entry point the CLI (``extrap validate``), the service and the
sweep driver use; every problem comes back as a :class:`~search_spaces.errors.FieldError` in a
:class:`~search_spaces.errors.SpecError`, so an error reads the same everywhere. Whatever the
input, it raises nothing else, and its work is bounded by the limits of
:mod:`search_spaces.limits`: text is read only up to :data:`~search_spaces.limits.MAX_SPEC_BYTES`,
YAML anchors and aliases are refused before anything is built, nesting is bounded while the
YAML is composed, and the parsed structure is checked in one pass before it is validated.

Example:
    >>> load_spec('''
    ... name: demo
    ... job: {workload: mnist1d, global_batch_size: 512, epochs: 2}
    ... space:
    ...   lr: {low: 0.01, high: 1.0, log: true}
    ... ''').space["lr"].log
    True
    >>> try:
    ...     load_spec({"name": "demo", "job": {"workload": "mnist1d", "global_batch_size": 512,
    ...                "epochs": 2}, "space": {"lr": {"low": 1.0, "high": 0.1}}})
    ... except SpecError as exc:
    ...     print(exc.errors[0].path)
    space.lr.low
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError
from yaml.composer import Composer, ComposerError
from yaml.constructor import ConstructorError, SafeConstructor
from yaml.parser import Parser
from yaml.reader import Reader
from yaml.resolver import Resolver
from yaml.scanner import Scanner

from search_spaces.errors import (
    FieldError,
    SpecError,
    errors_from_validation_error,
    shorten_quotes,
)
from search_spaces.limits import (
    MAX_DEPTH,
    MAX_ERRORS,
    MAX_ITEMS,
    MAX_MESSAGE_LENGTH,
    MAX_SPEC_BYTES,
)
from search_spaces.spec import SweepSpec

__all__ = ["load_spec", "spec_errors"]

log = logging.getLogger(__name__)

_TIMESTAMP = "tag:yaml.org,2002:timestamp"
# Tags SafeLoader turns into values JSON cannot hold (and a spec never needs).
_NON_JSON_TAGS = (
    "tag:yaml.org,2002:binary",
    "tag:yaml.org,2002:omap",
    "tag:yaml.org,2002:pairs",
    "tag:yaml.org,2002:set",
    _TIMESTAMP,
)


class _BoundedComposer(Composer):
    """Composes the node graph, refusing anchors, aliases and deep nesting as they are read.

    An alias repeats a subtree without repeating its text (nine levels of nine aliases turn
    700 bytes into 9^9 strings), so anchors and aliases are refused before any node is built.
    The composer recurses once per level of nesting: deeper than
    :data:`~search_spaces.limits.MAX_DEPTH` is refused before the recursion gets there. A list
    or mapping is refused at its entry number :data:`~search_spaces.limits.MAX_ITEMS` + 1,
    before the rest of it is parsed.
    """

    def __init__(self) -> None:
        super().__init__()
        self._depth = 0

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        event = self.peek_event()  # type: ignore[attr-defined]  # the parser's, mixed in
        anchor = getattr(event, "anchor", None)
        if anchor is not None:
            sigil, kind = ("*", "alias") if isinstance(event, yaml.AliasEvent) else ("&", "anchor")
            raise ComposerError(
                None,
                None,
                f"found the {kind} {sigil}{str(anchor)[:40]}: anchors and aliases are not "
                "accepted in a spec; write the values out",
                event.start_mark,
            )
        too_many = ""
        entries = len(parent.value) if isinstance(parent, yaml.MappingNode) else 0
        if isinstance(parent, yaml.SequenceNode) and index >= MAX_ITEMS:
            too_many = f"a list has more than {MAX_ITEMS:,} items"
        elif index is None and entries >= MAX_ITEMS:  # index None: a mapping's next key
            too_many = f"a mapping has more than {MAX_ITEMS:,} entries"
        if too_many:  # refused before the rest of a long list is even parsed
            raise ComposerError(
                None,
                None,
                f"{too_many}, the most a spec has in any one: shorten it",
                event.start_mark,
            )
        nested = isinstance(event, yaml.SequenceStartEvent | yaml.MappingStartEvent)
        if nested:
            self._depth += 1
            if self._depth > MAX_DEPTH:
                raise ComposerError(
                    None,
                    None,
                    f"the spec nests deeper than {MAX_DEPTH} levels of mappings and lists: "
                    "flatten it",
                    event.start_mark,
                )
        try:
            return super().compose_node(parent, index)
        finally:
            if nested:
                self._depth -= 1


class _JsonConstructor(SafeConstructor):
    """SafeConstructor building JSON values only (see _NON_JSON_TAGS), refusing repeated keys."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        # YAML keeps the last of two equal keys; in a spec that hides a typo or a lost edit.
        seen: set[tuple[str, str]] = set()
        for key, _ in node.value:
            if isinstance(key, yaml.ScalarNode) and key.tag != "tag:yaml.org,2002:merge":
                if (key.tag, key.value) in seen:
                    raise ConstructorError(
                        None,
                        None,
                        f"the key {str(key.value)[:60]!r} appears twice in this mapping: keep one",
                        key.start_mark,
                    )
                seen.add((key.tag, key.value))
        return super().construct_mapping(node, deep=deep)


class _JsonResolver(Resolver):
    """Resolver that leaves dates and times as strings."""


def _refuse_tag(loader: yaml.SafeLoader, node: yaml.Node) -> Any:
    raise ConstructorError(
        None,
        None,
        f"the tag {node.tag} builds a value JSON cannot hold: write a string, number, list or "
        "mapping",
        node.start_mark,
    )


for _tag in _NON_JSON_TAGS:
    _JsonConstructor.add_constructor(_tag, _refuse_tag)
_JsonResolver.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != _TIMESTAMP]
    for first, resolvers in Resolver.yaml_implicit_resolvers.items()
}


class _PurePythonLoader(Reader, Scanner, Parser, _BoundedComposer, _JsonConstructor, _JsonResolver):
    """The spec loader on PyYAML's pure-Python reader, scanner and parser."""

    def __init__(self, stream: str) -> None:
        Reader.__init__(self, stream)
        Scanner.__init__(self)
        Parser.__init__(self)
        _BoundedComposer.__init__(self)
        _JsonConstructor.__init__(self)
        _JsonResolver.__init__(self)


_SpecLoader: type[Any] = _PurePythonLoader
if yaml.__with_libyaml__:  # libyaml's parser (events in C, about 6x faster), same composer
    from yaml._yaml import CParser

    class _LibyamlLoader(_BoundedComposer, CParser, _JsonConstructor, _JsonResolver):
        """The spec loader on libyaml's parser."""

        def __init__(self, stream: str) -> None:
            CParser.__init__(self, stream)
            _BoundedComposer.__init__(self)
            _JsonConstructor.__init__(self)
            _JsonResolver.__init__(self)

    _SpecLoader = _LibyamlLoader


def load_spec(data: Mapping[str, Any] | str | Path) -> SweepSpec:
    """Parse and validate a sweep spec.

    Args:
        data: the spec as a mapping, as YAML (or JSON) text, or as the path of such a file.

    Returns:
        The validated spec, its preset merged in.

    Raises:
        SpecError: the text is not YAML, the file cannot be read, or the spec is invalid;
            ``errors`` lists the problems (at most :data:`~search_spaces.limits.MAX_ERRORS`,
            then a count) with their paths. Nothing else, whatever ``data`` holds.
    """
    try:
        return SweepSpec.model_validate(_parse(data))
    except ValidationError as exc:
        raise SpecError(_bounded(errors_from_validation_error(exc, SweepSpec))) from None
    except SpecError as exc:
        raise SpecError(_bounded(exc.errors)) from None
    except Exception as exc:  # a bug here, not a fault of the spec: the caller still gets one
        log.exception("validating a spec failed unexpectedly")
        raise SpecError(
            [
                FieldError(
                    "",
                    f"the spec could not be validated: an internal error ({type(exc).__name__}) "
                    "in search_spaces; please report it together with the spec",
                )
            ]
        ) from exc


def spec_errors(data: Mapping[str, Any] | str | Path) -> list[FieldError]:
    """The problems :func:`load_spec` would raise, or an empty list for a valid spec."""
    try:
        load_spec(data)
    except SpecError as exc:
        return exc.errors
    return []


def _bounded(errors: Iterable[FieldError]) -> list[FieldError]:
    """At most MAX_ERRORS errors (then a count), quotes shortened, none over MAX_MESSAGE_LENGTH."""
    found = list(errors)
    kept = [FieldError(e.path, _short_message(e.message)) for e in found[:MAX_ERRORS]]
    if len(found) > MAX_ERRORS:
        kept.append(FieldError("", f"… and {len(found) - MAX_ERRORS} more problems"))
    return kept


def _short_message(message: str) -> str:
    message = shorten_quotes(message)
    return message if len(message) <= MAX_MESSAGE_LENGTH else message[:MAX_MESSAGE_LENGTH] + "…"


def _parse(data: Any) -> Any:
    if isinstance(data, Mapping):
        return data
    text = _text(data)
    try:
        raw = yaml.load(text, Loader=_SpecLoader)  # a SafeLoader subclass
    except yaml.YAMLError as exc:
        raise SpecError(
            [FieldError("", f"the spec is not valid YAML: {_yaml_problem(exc)}")]
        ) from None
    except ValueError as exc:  # e.g. an integer of more than 4,300 digits
        raise SpecError([FieldError("", f"the spec cannot be read: {str(exc)[:200]}")]) from None
    if not isinstance(raw, Mapping):
        raise SpecError(
            [FieldError("", "a spec must be a YAML mapping with at least name, job and space")]
        )
    return raw


def _text(data: Any) -> str:
    if isinstance(data, Path):
        try:
            size = data.stat().st_size
            if size > MAX_SPEC_BYTES:
                raise SpecError([_too_big(size)])
            return data.read_text(encoding="utf-8")
        except OSError as exc:
            raise SpecError(
                [FieldError("", f"cannot read the spec {data}: {exc.strerror}")]
            ) from None
        except UnicodeDecodeError as exc:
            raise SpecError(
                [FieldError("", f"the spec {data} is not UTF-8 text (byte {exc.start})")]
            ) from None
    if isinstance(data, bytes):
        if len(data) > MAX_SPEC_BYTES:
            raise SpecError([_too_big(len(data))])
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise SpecError(
                [FieldError("", f"the spec is not UTF-8 text (byte {exc.start})")]
            ) from None
    if not isinstance(data, str):
        raise SpecError(
            [
                FieldError(
                    "",
                    "a spec is a mapping, YAML or JSON text, or a file path; got a value of "
                    f"type {type(data).__name__}",
                )
            ]
        )
    # Characters are at most as many as bytes: a long text is refused before it is encoded.
    size = len(data) if len(data) > MAX_SPEC_BYTES else len(data.encode("utf-8", "surrogatepass"))
    if size > MAX_SPEC_BYTES:
        raise SpecError([_too_big(size)])
    return data


def _too_big(size: int) -> FieldError:
    return FieldError(
        "",
        f"the spec has {size:,} bytes or more; at most {MAX_SPEC_BYTES:,} (256 KiB) are read (a "
        "real spec has a few KB): shorten it",
    )


def _yaml_problem(exc: yaml.YAMLError) -> str:
    if isinstance(exc, yaml.MarkedYAMLError) and exc.problem is not None:
        where = exc.problem_mark
        at = f" (line {where.line + 1}, column {where.column + 1})" if where is not None else ""
        return f"{str(exc.problem)[:200]}{at}"
    return " ".join(str(exc).split())[:200]
