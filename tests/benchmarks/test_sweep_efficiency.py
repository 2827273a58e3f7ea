"""Smoke test of benchmarks/sweep_efficiency.py: the plain Ray Tune + Train script and
``extrap run`` both run a (tiny) sweep, each on its own Ray, and the efficiency sweep runs.

``--quick``: a 1 x 1 sweep of each kind and a 2-trial efficiency sweep with ``extrap run``
(3-4 minutes here, 6 on a busy machine). Figures are only checked to be numbers that add up,
never for speed.
"""

from __future__ import annotations

from typing import Any

import pytest

from ._run import non_negative, positive, run_benchmark

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

SPLIT = ("imports", "ray_start", "to_first_step", "training", "between_trials", "teardown")


@pytest.fixture(scope="module")
def report() -> dict[str, Any]:
    return run_benchmark("sweep_efficiency.py", "--quick", timeout=840)


def test_top_level(report: dict[str, Any]) -> None:
    assert report["benchmark"] == "sweep_efficiency"
    assert report["errors"] == []
    assert list(report["sizes"]) == ["1x1"]
    assert isinstance(report["misses"], list)


@pytest.mark.parametrize("kind", ["plain", "extrap"])
def test_each_run(report: dict[str, Any], kind: str) -> None:
    run = report["sizes"]["1x1"][kind]
    assert run["returncode"] == 0
    assert run["trials_reported"] == 1 and run["epochs_trained"] == 1
    for key in ("wall_seconds", "time_to_first_result_seconds", "training_seconds"):
        assert positive(run[key]), key
    assert positive(run["worker_pss_peak_mib"]) and positive(run["tree_pss_peak_mib"])
    assert run["left_running_after_30s"] == 0
    split = run["split"]
    assert set(split) == set(SPLIT)
    assert all(split[part] is not None for part in SPLIT), split
    assert abs(sum(split.values()) - run["wall_seconds"]) < 1e-3 * run["wall_seconds"]
    assert non_negative(split["training"])


def test_both_kinds_compared(report: dict[str, Any]) -> None:
    size = report["sizes"]["1x1"]
    assert size["extrap"]["state"] == "succeeded"
    assert positive(size["wall_ratio"]) and positive(size["time_to_first_result_ratio"])
    assert report["marginal_trial_seconds"] is None  # needs two sizes


def test_efficiency(report: dict[str, Any]) -> None:
    efficiency = report["efficiency"]
    assert efficiency["configuration"]["trials"] == 2
    assert efficiency["configuration"]["epochs"] >= 1
    assert positive(efficiency["plain_loop"]["epoch_seconds"])
    extrap = efficiency["extrap"]
    assert extrap["state"] == "succeeded"
    assert extrap["trials_reported"] == 2
    assert extrap["worker_processes"] == 2  # one warm group for both trials
    assert len(extrap["startup_seconds"]) == 2
    assert 0 < efficiency["efficiency"] <= 1.0
