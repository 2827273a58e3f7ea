"""Shipped presets: partial sweep specs a spec can extend with ``preset: <name>``.

A preset (``search_spaces/presets/<name>.yaml``) holds a ``description`` and parts of a spec:
``space``, and optionally ``search``, ``objective``, ``secondary_objectives``. Merging rules,
spec over preset:

- ``space``: a parameter the spec names replaces the preset's, except that a mapping of the
  same type is merged key by key (``lr: {high: 0.5}`` keeps the preset's ``low`` and ``log``;
  a ``when`` given replaces the preset's whole ``when``); ``null`` removes a preset parameter.
- ``search``: merged key by key; a different sampler drops the preset's ``sampler_options``, a
  scheduler of a different ``kind`` replaces the preset's.
- ``objective`` and ``secondary_objectives``: the spec's replace the preset's.

Example:
    >>> "lr" in preset_info("extrap-paper").dimensions
    True
    >>> merged = merge_preset(load_preset("sgd-baseline"), {"space": {"warmup_epochs": None}})
    >>> "warmup_epochs" in merged["space"]
    False
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict

from search_spaces.errors import FieldError, SpecError

__all__ = [
    "PresetInfo",
    "UnknownPresetError",
    "list_presets",
    "load_preset",
    "merge_preset",
    "preset_info",
]


@dataclass(frozen=True)
class PresetInfo:
    """A shipped preset.

    Attributes:
        name: what a spec writes as ``preset``.
        description: what the preset searches and why.
        dimensions: the names of its space.
    """

    name: str
    description: str
    dimensions: tuple[str, ...]


class UnknownPresetError(ValueError):
    """A preset name that is not shipped; the message lists the shipped ones."""

    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(
            f"unknown preset {name!r}: use one of {', '.join(_preset_names())} "
            "(or leave preset out)"
        )

    def __reduce__(self) -> tuple[type[UnknownPresetError], tuple[str]]:
        return (UnknownPresetError, (self.name,))


class _PresetFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    description: str
    space: dict[str, Any]
    search: dict[str, Any] | None = None
    objective: Any = None
    secondary_objectives: list[Any] | None = None


def _preset_names() -> list[str]:
    folder = resources.files("search_spaces").joinpath("presets")
    names = (p.name.removesuffix(".yaml") for p in folder.iterdir() if p.name.endswith(".yaml"))
    return sorted(names)


@functools.cache
def _read(name: str) -> _PresetFile:
    if name not in _preset_names():
        raise UnknownPresetError(name)
    text = resources.files("search_spaces").joinpath("presets", f"{name}.yaml").read_text("utf-8")
    return _PresetFile.model_validate(yaml.safe_load(text))


def list_presets() -> list[PresetInfo]:
    """Every shipped preset, by name."""
    return [preset_info(name) for name in _preset_names()]


def preset_info(name: str) -> PresetInfo:
    """Name, description and dimensions of one preset.

    Raises:
        UnknownPresetError: ``name`` is not shipped.
    """
    preset = _read(name)
    return PresetInfo(name, preset.description.strip(), tuple(preset.space))


def load_preset(name: str) -> dict[str, Any]:
    """The partial spec of a preset (a fresh copy, without its description).

    Raises:
        UnknownPresetError: ``name`` is not shipped.
    """
    data = _read(name).model_dump(exclude={"description"}, exclude_none=True)
    return copy.deepcopy(data)


def merge_preset(preset: Mapping[str, Any], spec: Mapping[str, Any]) -> dict[str, Any]:
    """Lay ``spec`` over ``preset`` (see the module docstring for the rules).

    Raises:
        SpecError: the spec removes (``null``) a parameter the preset does not have.
    """
    merged = {**copy.deepcopy(dict(preset)), **spec}
    merged["space"] = _merge_space(preset.get("space", {}), spec.get("space") or {})
    if "search" in preset and isinstance(spec.get("search"), Mapping):
        merged["search"] = _merge_search(preset["search"], spec["search"])
    return merged


def _merge_space(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    space = copy.deepcopy(dict(base))
    errors: list[FieldError] = []
    for name, value in override.items():
        if value is None:
            if name not in space:
                errors.append(
                    FieldError(
                        f"space.{name}",
                        f"null removes a preset parameter, but the preset has no {name!r} (its "
                        f"parameters: {', '.join(base)}): drop this entry",
                    )
                )
            space.pop(name, None)
        elif _same_kind(space.get(name), value):
            space[name] = {**space[name], **value}
        else:
            space[name] = value
    if errors:
        raise SpecError(errors)
    return space


def _same_kind(base: Any, override: Any) -> bool:
    if not isinstance(base, Mapping) or not isinstance(override, Mapping):
        return False
    if override.get("type", base.get("type")) != base.get("type"):
        return False
    return ("choices" in base) == ("choices" in override) or set(override) <= {"when"}


def _merge_search(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    search = {**copy.deepcopy(dict(base)), **override}
    if override.get("sampler", base.get("sampler")) != base.get("sampler"):
        search["sampler_options"] = dict(override.get("sampler_options") or {})
    base_scheduler, new_scheduler = base.get("scheduler"), override.get("scheduler")
    if (
        isinstance(base_scheduler, Mapping)
        and isinstance(new_scheduler, Mapping)
        and new_scheduler.get("kind", base_scheduler.get("kind")) == base_scheduler.get("kind")
    ):
        search["scheduler"] = {**base_scheduler, **new_scheduler}
    return search
