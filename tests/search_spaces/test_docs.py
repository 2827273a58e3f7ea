"""docs/spec-reference.md covers every registered name and its full example validates."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from search_spaces import SAMPLERS, SCHEDULERS, SEARCHABLE_PARAMS, list_presets, load_spec

REFERENCE = (Path(__file__).parents[2] / "docs" / "spec-reference.md").read_text("utf-8")

NAMES = [
    *SEARCHABLE_PARAMS,
    *SAMPLERS,
    *SCHEDULERS,
    *(info.name for info in list_presets()),
    "max(2, min(10, num_trials // 3))",
]


@pytest.mark.parametrize("name", NAMES)
def test_reference_mentions(name: str) -> None:
    assert f"`{name}`" in REFERENCE


def test_full_example_validates() -> None:
    section = REFERENCE.split("## Full example", 1)[1]
    block = re.search(r"```yaml\n(.*?)```", section, re.DOTALL)

    assert block is not None
    spec = load_spec(block.group(1))
    assert spec.based_on == "extrap-paper"
