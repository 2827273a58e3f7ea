"""Smoke test of benchmarks/epoch_overhead.py: both loops run and every figure is reported.

``--quick`` in a subprocess (2 gloo processes, tiny MNIST-1D epochs); only the shape and the
signs of the figures are checked: a quick run's ratios on a shared machine are noise.
``--loops plain`` alone is run by the sweep_efficiency smoke test (its efficiency sweep).
"""

from __future__ import annotations

from typing import Any

import pytest

from ._run import non_negative, positive, run_benchmark

VARIANTS = ("none", "gradient")


@pytest.fixture(scope="module")
def report() -> dict[str, Any]:
    return run_benchmark("epoch_overhead.py", "--quick", timeout=240)


def test_top_level(report: dict[str, Any]) -> None:
    assert report["benchmark"] == "epoch_overhead"
    assert report["quick"] is True
    assert report["error"] is None
    assert report["world_size"] == 2
    assert report["machine"]["nproc"] >= 1
    assert report["targets"] == {"ratio_max": 1.1, "min_epoch_seconds": 1.0}
    assert report["job"]["workload"] == "mnist1d"
    assert set(report["variants"]) == set(VARIANTS)
    assert isinstance(report["misses"], list)


@pytest.mark.parametrize("variant", VARIANTS)
def test_both_loops_are_timed(report: dict[str, Any], variant: str) -> None:
    figures = report["variants"][variant]
    rounds = report["setup"]["rounds"]
    assert figures["steps_per_epoch"] >= 1
    for loop in ("product", "plain"):
        assert len(figures[loop]["epoch_seconds_samples"]) == rounds
        assert positive(figures[loop]["epoch_seconds"])
        assert positive(figures[loop]["train_seconds"])
        assert non_negative(figures[loop]["eval_seconds"])
    assert positive(figures["product"]["checkpoint_seconds"])
    assert positive(figures["ratio"])
    assert isinstance(figures["epochs_at_least_1s"], bool)
