"""Honest results: the best is chosen on validation figures, confirmed on fresh seeds, and its
trained model is an output that reproduces its validation figure."""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from search_spaces import load_spec
from service.runtime.driver import SweepOutcome, run_sweep
from service.runtime.events import ListSink

pytestmark = pytest.mark.slow

# Two learning rates whose ranking by validation accuracy and by test accuracy disagree on
# this data and seed (measured: lr 0.2 is better on validation, lr 0.35 on test).
LEARNING_RATES = [0.2, 0.35]


def _spec(data_dir: Path, **search: Any) -> dict[str, Any]:
    return {
        "name": "honest",
        "job": {
            "workload": "mnist1d",
            "workload_options": {"num_samples": 2000, "hidden": 32},
            "data_dir": str(data_dir),
            "global_batch_size": 100,
            "workers": 1,
            "epochs": 3,
            "optimizer": {"lr": 0.1, "momentum": 0.9, "extrapolation": "none"},
        },
        "space": {"lr": {"choices": LEARNING_RATES}},
        "search": {
            "sampler": "grid",
            "num_trials": 2,
            "max_concurrent_trials": 2,
            "scheduler": "fifo",
            **search,
        },
    }


def _run(data_dir: Path, tmp_path: Path, name: str, **search: Any) -> tuple[SweepOutcome, str]:
    tracking = f"sqlite:///{tmp_path}/mlflow.db"
    outcome = run_sweep(
        load_spec(_spec(data_dir, **search)),
        sweep_id=name,
        storage_path=str(tmp_path / "runs"),
        tracking_uri=tracking,
        events=ListSink(),
    )
    assert outcome.state == "succeeded", outcome.reason
    return outcome, tracking


def _children(tracking: str, outcome: SweepOutcome) -> list[Any]:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=tracking)
    runs = client.search_runs([outcome.mlflow_experiment_id])
    return [r for r in runs if r.data.tags.get("mlflow.parentRunId") == outcome.mlflow_run_id]


def _last(tracking: str, run: Any, metric: str) -> float:
    from mlflow.tracking import MlflowClient

    history = MlflowClient(tracking_uri=tracking).get_metric_history(run.info.run_id, metric)
    return max(history, key=lambda m: m.step).value


@pytest.mark.timeout(600)
def test_the_best_is_chosen_on_validation_even_where_test_would_choose_otherwise(
    ray_session: Any, test_data_dir: Path, tmp_path: Path
) -> None:
    outcome, tracking = _run(test_data_dir, tmp_path, "by-validation")
    trials = {run.data.tags["extrap.trial_id"]: run for run in _children(tracking, outcome)}
    by_val = max(trials, key=lambda t: trials[t].data.metrics["val_accuracy"])
    by_test = max(trials, key=lambda t: trials[t].data.metrics["test_accuracy"])
    assert by_val != by_test  # the data disagree: otherwise this test proves nothing
    assert outcome.best is not None
    assert outcome.best["trial_id"] == by_val
    assert outcome.best["confirmation"] is None
    assert "rests on one seed" in outcome.best["note"]


@pytest.mark.timeout(900)
def test_confirmation_reports_mean_and_std_over_fresh_seeds_and_exports_the_model(
    ray_session: Any, test_data_dir: Path, tmp_path: Path
) -> None:
    outcome, tracking = _run(test_data_dir, tmp_path, "confirmed", confirm={"top_k": 2, "seeds": 2})
    children = _children(tracking, outcome)
    confirmations = [run for run in children if "extrap.confirms" in run.data.tags]
    searched = [run for run in children if "extrap.confirms" not in run.data.tags]
    assert len(searched) == 2 and len(confirmations) == 4  # 2 configurations × 2 seeds
    assert {run.data.tags["extrap.seed"] for run in confirmations} == {"1000", "2000"}
    assert all(run.data.params["job.seed"] in ("1000", "2000") for run in confirmations)
    best = outcome.best
    assert best is not None and best["confirmation"] is not None
    mine = [r for r in confirmations if r.data.tags["extrap.confirms"] == best["trial_id"]]
    assert len(mine) == 2
    val = [_last(tracking, run, "val_accuracy") for run in mine]
    test = [_last(tracking, run, "test_accuracy") for run in mine]
    summary = best["confirmation"]
    assert summary["n"] == 2
    assert summary["validation"]["mean"] == pytest.approx(statistics.mean(val))
    assert summary["validation"]["std"] == pytest.approx(statistics.stdev(val))
    assert summary["test"]["mean"] == pytest.approx(statistics.mean(test))
    assert summary["test"]["std"] == pytest.approx(statistics.stdev(test))
    assert best["value"] == pytest.approx(statistics.mean(val))
    # the best has the best mean over its confirmation seeds
    other = [r for r in confirmations if r.data.tags["extrap.confirms"] != best["trial_id"]]
    other_mean = statistics.mean(_last(tracking, run, "val_accuracy") for run in other)
    assert statistics.mean(val) >= other_mean
    # the parent run carries the figures
    from mlflow.tracking import MlflowClient

    parent = MlflowClient(tracking_uri=tracking).get_run(outcome.mlflow_run_id)
    assert parent.data.metrics["best_val_accuracy"] == pytest.approx(statistics.mean(val))
    assert parent.data.metrics["best_test_accuracy"] == pytest.approx(statistics.mean(test))

    # The model: its median-validation confirmation run's, exported and logged.
    model_run = next(r for r in mine if r.data.tags["extrap.trial_id"] == best["model_trial_id"])
    expected = _last(tracking, model_run, "val_accuracy")
    weights = Path(best["weights_uri"])
    job_file = weights.with_name("job.yaml")
    assert weights.is_file() and job_file.is_file()
    from trainers.config import TrainJobConfig
    from trainers.workloads import load_workload

    job = TrainJobConfig.model_validate(yaml.safe_load(job_file.read_text()))
    workload = load_workload(job.workload, job.workload_options)
    validation = workload.load_splits(Path(job.data_dir or "")).validation
    model = workload.build_model()
    model.load_state_dict(torch.load(weights))
    figures = workload.evaluate(model, validation, device="cpu", batch_size=1024)
    assert figures["accuracy"] == pytest.approx(expected)
    import mlflow.pytorch

    mlflow.set_tracking_uri(tracking)
    logged = mlflow.pytorch.load_model(best["model_uri"])
    again = workload.evaluate(logged, validation, device="cpu", batch_size=1024)
    assert again["accuracy"] == pytest.approx(expected)
