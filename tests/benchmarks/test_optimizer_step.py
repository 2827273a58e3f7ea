"""Smoke test of benchmarks/optimizer_step.py: it runs and reports every figure.

Runs ``--quick`` in a subprocess and checks the JSON's shape and that every figure is a finite
number (positive for timings). Speed targets are never asserted here: the figures of a quick
run on a shared machine are noise; the full run (``make bench``) reports them.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "optimizer_step.py"
VARIANTS = ("none", "gradient", "past", "sam")
FOREACH = ("foreach_none", "foreach_true", "foreach_false")
MODELS = ("resnet20ish", "mlp")


@pytest.fixture(scope="module")
def report() -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    document: dict[str, Any] = json.loads(done.stdout)
    return document


def _positive(value: Any) -> bool:
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and value > 0
    )


def _non_negative(value: Any) -> bool:
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and value >= 0
    )


def test_top_level(report: dict[str, Any]) -> None:
    assert isinstance(report["torch"], str) and report["torch"]
    assert isinstance(report["threads"], int) and report["threads"] >= 1
    assert report["quick"] is True
    assert "optimizer_step.py" in report["command"] and "--quick" in report["command"]
    assert isinstance(report["misses"], list)
    assert set(report["models"]) == set(MODELS)


@pytest.mark.parametrize("name", MODELS)
def test_model_figures(report: dict[str, Any], name: str) -> None:
    model = report["models"][name]
    assert isinstance(model["params"], int) and model["params"] > 0
    assert isinstance(model["param_tensors"], int) and model["param_tensors"] > 0
    for variant in VARIANTS:
        assert _positive(model["full_step_ratio_vs_sgd"][variant])
        assert _positive(model["loop_baseline_ratio_vs_torch_sgd_foreach"][variant])
        for setting in FOREACH:
            assert _positive(model["optimizer_only_ratio_vs_torch_sgd_foreach"][variant][setting])
            assert _positive(model["optimizer_only_ratio_vs_loop_baseline"][variant][setting])
        # "none" keeps exactly SGD's state: 0 extra bytes is the right answer there.
        assert _non_negative(model["extra_memory_ratio"][variant])
        assert _non_negative(model["extra_memory_bytes"][variant])
    assert _positive(model["full_step_ratio_vs_sgd"]["sgd_control"])
    assert _positive(model["torch_sgd_single_tensor_ratio_vs_foreach"])
    for medians in (model["full_step_median_us"], model["optimizer_only_median_us"]):
        assert medians and all(_positive(v) for v in medians.values())
    assert model["loop_baseline_agrees"] is True
    targets = model["targets"]
    assert _positive(targets["optimizer_only_ratio_vs_torch_sgd_foreach_max"])
    assert all(_positive(v) for v in targets["full_step_ratio_vs_sgd_max"].values())
    assert all(_positive(v) for v in targets["extra_memory_ratio_max"].values())
    assert isinstance(model["misses"], list)
