"""Shared spec builders for the search_spaces tests."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest

MINIMAL_SPEC: dict[str, Any] = {
    "name": "demo",
    "job": {"workload": "mnist1d", "global_batch_size": 512, "epochs": 3},
    "space": {"lr": {"low": 0.01, "high": 1.0, "log": True}},
}

SpecFactory = Callable[..., dict[str, Any]]


def make_spec(**changes: Any) -> dict[str, Any]:
    """The minimal spec with ``changes``; ``a__b=v`` sets the nested key ``a.b``."""
    spec = copy.deepcopy(MINIMAL_SPEC)
    for key, value in changes.items():
        *parents, leaf = key.split("__")
        target = spec
        for parent in parents:
            target = target.setdefault(parent, {})
        target[leaf] = value
    return spec


@pytest.fixture
def spec_data() -> SpecFactory:
    """Build spec mappings: ``spec_data(space={...}, job__workers=3)``."""
    return make_spec
