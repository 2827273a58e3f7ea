"""Smoke test of benchmarks/ddp_communication.py: it runs and reports every figure.

Runs ``--quick`` in a subprocess (2 gloo processes, no Ray) and checks the JSON's
shape. The all-reduce figures are COUNTS, deterministic on any machine, so they are asserted
exactly: local extrapolation all-reduces the gradient exactly as often as SGD, global
extrapolation twice, accumulation does not add any, and the step's control all-reduce is one
call of 6 float64 values. Timings are only checked to be positive numbers: those of a quick run
on a shared machine are noise.
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
SCRIPT = ROOT / "benchmarks" / "ddp_communication.py"
MODELS = ("mlp", "resnet20")
CONFIGS = ("sgd", "local_extrap", "global_extrap", "local_extrap_accumulate4")
PER_STEP_KEYS = {
    "grad_allreduce_calls",
    "grad_allreduce_bytes",
    "control_allreduce_calls",
    "control_allreduce_bytes",
    "step_seconds_median",
}
GRADIENT_PASSES = {"sgd": 1, "local_extrap": 1, "global_extrap": 2, "local_extrap_accumulate4": 1}


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
    document: dict[str, Any] = json.loads(done.stdout)  # stdout holds the JSON and nothing else
    return document


def _positive(value: Any) -> bool:
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and value > 0
    )


def test_top_level(report: dict[str, Any]) -> None:
    assert isinstance(report["torch"], str) and report["torch"]
    assert report["world_size"] == 2
    assert report["quick"] is True
    assert "ray_train" not in report  # trial start-up is benchmarks/trial_startup.py's
    assert "ddp_communication.py" in report["command"] and "--quick" in report["command"]
    assert set(report["models"]) == set(MODELS)


@pytest.mark.parametrize("name", MODELS)
def test_per_step_figures(report: dict[str, Any], name: str) -> None:
    model = report["models"][name]
    assert isinstance(model["param_bytes"], int) and model["param_bytes"] > 0
    assert model["counts_agree_across_ranks"] is True
    assert set(model["per_step"]) == set(CONFIGS)
    sgd_calls = model["per_step"]["sgd"]["grad_allreduce_calls"]
    assert sgd_calls >= 1
    for config in CONFIGS:
        figures = model["per_step"][config]
        assert set(figures) >= PER_STEP_KEYS
        passes = GRADIENT_PASSES[config]
        assert figures["grad_allreduce_bytes"] == passes * model["param_bytes"]
        assert figures["grad_allreduce_calls"] == passes * sgd_calls
        assert figures["control_allreduce_calls"] == 1.0
        # 6 float64: the two loss sums, the three unit counts and the divergence flag
        assert figures["control_allreduce_bytes"] == 6 * 8
        assert _positive(figures["step_seconds_median"])


@pytest.mark.parametrize("name", MODELS)
def test_ratios(report: dict[str, Any], name: str) -> None:
    ratios = report["models"][name]["ratios"]
    assert ratios["local_vs_sgd_calls"] == 1.0
    assert ratios["local_vs_sgd_bytes"] == 1.0
    assert ratios["global_vs_sgd_calls"] == 2.0
    assert ratios["global_vs_sgd_bytes"] == 2.0
    assert ratios["accumulate4_vs_local_calls"] == 1.0
    assert ratios["accumulate4_vs_local_bytes"] == 1.0
    for key in ("step_time_local_vs_sgd", "step_time_global_vs_sgd"):
        assert _positive(ratios[key])  # reported, never asserted: noise on a shared machine
