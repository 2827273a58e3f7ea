"""Smoke test of benchmarks/trial_startup.py: a real (tiny) sweep on its own Ray, and the plain
``torch.distributed`` start; every part of every trial's start is found and reported.

``--quick``: 3 one-epoch trials, one plain start (about a minute). Timings are only checked to
be numbers; the targets are the full run's business.
"""

from __future__ import annotations

from typing import Any

import pytest

from ._run import non_negative, positive, run_benchmark

pytestmark = pytest.mark.slow

COLD_PARTS = {
    "trainable_actor_start",
    "tune_dispatch",
    "worker_actors_start",
    "process_group_and_imports",
    "data_load_and_build",
    "first_step",
    "other",
}
WARM_PARTS = {"reset", "tune_dispatch", "build", "first_step", "other"}
PLAIN_PARTS = {"interpreter", "import_torch", "process_group", "data_load", "build", "first_step"}


def _measured(value: Any) -> bool:
    # Task events carry milliseconds and the trial start is derived: allow a few ms below zero.
    return isinstance(value, float | int) and value > -0.05


@pytest.fixture(scope="module")
def report() -> dict[str, Any]:
    return run_benchmark("trial_startup.py", "--quick", timeout=280)


def test_top_level(report: dict[str, Any]) -> None:
    assert report["benchmark"] == "trial_startup"
    assert report["errors"] == []
    assert report["spec"]["search"]["num_trials"] == 3
    assert report["sweep"]["state"] == "succeeded"
    assert positive(report["sweep"]["ray_init_seconds"])
    assert report["sweep"]["home"] is None  # removed after the run


def test_cold_then_warm_trials_on_the_same_workers(report: dict[str, Any]) -> None:
    trials = report["sweep"]["trials"]
    assert [t["number"] for t in trials] == [1, 2, 3]
    assert [t["cold"] for t in trials] == [True, False, False]
    assert all(t["worker_pids"] == trials[0]["worker_pids"] for t in trials)
    cold, *warm = trials
    assert set(cold["parts"]) == COLD_PARTS
    assert all(_measured(value) for value in cold["parts"].values()), cold["parts"]
    for trial in warm:
        assert set(trial["parts"]) == WARM_PARTS
        assert positive(trial["previous_trial_end_to_first_step"])
    # Ray may lose the task events of the last trial (its actors die right after it): the
    # trials before it are complete.
    second = warm[0]["parts"]
    assert all(_measured(value) for value in second.values()), second
    assert all(positive(t["startup_seconds"]) for t in trials)


def test_plain_start_and_summary(report: dict[str, Any]) -> None:
    plain = report["plain"]
    assert plain["repeats"] == 1
    assert set(plain["parts"]) == PLAIN_PARTS
    assert all(non_negative(v) for v in plain["parts"].values())
    summary = report["summary"]
    for key in (
        "cold_trial_seconds",
        "cold_from_trainable_submitted_seconds",
        "warm_trial_seconds_median",
        "plain_start_seconds",
        "cold_vs_plain",
        "warm_vs_plain",
    ):
        assert positive(summary[key]), key
    assert summary["cold_from_trainable_submitted_seconds"] > summary["cold_trial_seconds"]
    assert isinstance(summary["misses"], list)
