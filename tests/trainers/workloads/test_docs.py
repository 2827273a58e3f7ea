"""docs/workloads.md covers every built-in workload, each of its options and its data files."""

from __future__ import annotations

from pathlib import Path

import pytest

from trainers.workloads import BUILTIN_WORKLOADS, WorkloadInfo

DOCS = (Path(__file__).resolve().parents[3] / "docs" / "workloads.md").read_text("utf-8")
HEADINGS = [line for line in DOCS.splitlines() if line.startswith("### ")]


@pytest.mark.parametrize("info", BUILTIN_WORKLOADS.values(), ids=lambda info: info.name)
def test_the_workload_its_options_and_files_are_documented(info: WorkloadInfo) -> None:
    assert any(f"`{info.name}`" in heading for heading in HEADINGS)
    for option in info.options_model.model_fields:
        assert f"`{option}`" in DOCS, option
    folders = {path.split("/")[0] for path in info.expected_files}
    for folder in folders:
        assert f"{folder}/" in DOCS, folder


def test_every_workload_info_field_is_documented() -> None:
    for field in WorkloadInfo.__dataclass_fields__:
        assert f"`{field}`" in DOCS, field
