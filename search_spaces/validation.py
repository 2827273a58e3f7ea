"""Load and validate a sweep spec from YAML text, a file or a mapping.

:func:`load_spec` is the one entry point the CLI (``extrap validate``), the service and the
sweep driver use; every problem comes back as a :class:`~search_spaces.errors.FieldError` in a
:class:`~search_spaces.errors.SpecError`, so an error reads the same everywhere.

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

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from search_spaces.errors import FieldError, SpecError, errors_from_validation_error
from search_spaces.spec import SweepSpec

__all__ = ["load_spec", "spec_errors"]


def load_spec(data: Mapping[str, Any] | str | Path) -> SweepSpec:
    """Parse and validate a sweep spec.

    Args:
        data: the spec as a mapping, as YAML (or JSON) text, or as the path of such a file.

    Returns:
        The validated spec, its preset merged in.

    Raises:
        SpecError: the text is not YAML, or the spec is invalid; ``errors`` lists every
            problem with its path.
    """
    raw = _parse(data)
    try:
        return SweepSpec.model_validate(raw)
    except ValidationError as exc:
        raise SpecError(errors_from_validation_error(exc, SweepSpec)) from None


def spec_errors(data: Mapping[str, Any] | str | Path) -> list[FieldError]:
    """The problems :func:`load_spec` would raise, or an empty list for a valid spec."""
    try:
        load_spec(data)
    except SpecError as exc:
        return exc.errors
    return []


def _parse(data: Mapping[str, Any] | str | Path) -> Any:
    if isinstance(data, Mapping):
        return data
    text = data.read_text(encoding="utf-8") if isinstance(data, Path) else data
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise SpecError([FieldError("", f"the spec is not valid YAML: {exc}")]) from None
    if not isinstance(raw, Mapping):
        raise SpecError(
            [FieldError("", "a spec must be a YAML mapping with at least name, job and space")]
        )
    return raw
