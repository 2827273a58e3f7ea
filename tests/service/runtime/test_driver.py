"""A real sweep on the session's Ray: Optuna proposes, Tune runs trials on warm workers, MLflow
records."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from search_spaces import load_spec
from service.runtime.driver import LOST_TRIAL, run_sweep
from service.runtime.events import ListSink
from service.runtime.tracking import SweepTracker
from tests.conftest import FinishedSweep, tiny_spec

pytestmark = pytest.mark.slow


def _of_type(events: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [e for e in events if e["type"] == kind]


def test_sweep_succeeds_with_every_trial_finished(finished_sweep: FinishedSweep) -> None:
    outcome = finished_sweep.outcome
    assert outcome.state == "succeeded", outcome.reason
    statuses = [e["status"] for e in _of_type(finished_sweep.events, "trial_finished")]
    assert len(statuses) == 3
    assert set(statuses) <= {"completed", "pruned"}
    assert "completed" in statuses
    assert _of_type(finished_sweep.events, "sweep_finished")[-1]["state"] == "succeeded"


def test_optuna_proposes_and_conditional_params_follow_their_condition(
    finished_sweep: FinishedSweep,
) -> None:
    started = _of_type(finished_sweep.events, "trial_started")
    assert [e["number"] for e in started] == [1, 2, 3]
    assert len({e["params"]["lr"] for e in started}) == 3  # proposals, not a fixed point
    for event in started:
        params = event["params"]
        assert ("gamma_ratio" in params) == (params["extrapolation"] == "gradient")
        assert 0.05 <= params["lr"] <= 0.5


def test_metrics_arrive_every_epoch(finished_sweep: FinishedSweep) -> None:
    finished = {
        e["trial_id"]: e["status"] for e in _of_type(finished_sweep.events, "trial_finished")
    }
    for trial_id, status in finished.items():
        epochs = [
            e["epoch"]
            for e in _of_type(finished_sweep.events, "trial_metrics")
            if e["trial_id"] == trial_id
        ]
        assert epochs == ([1, 2] if status == "completed" else epochs[:1])
        assert epochs[0] == 1
    metrics = _of_type(finished_sweep.events, "trial_metrics")[0]["metrics"]
    assert next(iter(metrics)) == "val_accuracy"  # the objective first
    assert {"train_loss", "val_loss", "lr", "gamma", "epoch_seconds"} <= set(metrics)
    assert not {"pid", "timestamp", "time_this_iter_s", "training_iteration"} & set(metrics)


def _mlflow(finished_sweep: FinishedSweep) -> tuple[Any, Any, list[Any]]:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=finished_sweep.tracking_uri)
    experiment = client.get_experiment_by_name(finished_sweep.spec.name)
    runs = client.search_runs([experiment.experiment_id])
    parents = [r for r in runs if r.data.tags.get("extrap.kind") == "sweep"]
    assert len(parents) == 1
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parents[0].info.run_id]
    return client, parents[0], children


def test_mlflow_holds_one_parent_and_one_child_per_trial_with_epoch_metrics(
    finished_sweep: FinishedSweep,
) -> None:
    client, parent, children = _mlflow(finished_sweep)
    assert parent.info.run_id == finished_sweep.outcome.mlflow_run_id
    assert parent.data.tags["extrap.status"] == "succeeded"
    assert len(children) == 3
    finished = {e["trial_id"]: e for e in _of_type(finished_sweep.events, "trial_finished")}
    for child in children:
        trial_id = child.data.tags["extrap.trial_id"]
        assert child.data.tags["extrap.sweep_id"] == "tiny"
        assert child.data.tags["extrap.status"] == finished[trial_id]["status"]
        assert child.info.run_name.startswith("trial-00")
        assert "lr=" in child.info.run_name
        assert "lr" in child.data.params and "job.global_batch_size" in child.data.params
        history = client.get_metric_history(child.info.run_id, "val_accuracy")
        steps = sorted(m.step for m in history)
        assert steps == list(range(1, len(steps) + 1))  # step = epoch, once each
        assert "pid" not in child.data.metrics and "timestamp" not in child.data.metrics
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {"spec.yaml", "best.yaml", "optimization_history.png"} <= artifacts


def test_best_configuration_matches_the_best_child_run(finished_sweep: FinishedSweep) -> None:
    client, parent, children = _mlflow(finished_sweep)
    best_child = max(children, key=lambda run: run.data.metrics["val_accuracy"])
    best = finished_sweep.outcome.best
    assert best is not None
    assert best["trial_id"] == best_child.data.tags["extrap.trial_id"]
    assert best["value"] == pytest.approx(best_child.data.metrics["val_accuracy"])
    for name, value in best["params"].items():
        assert str(value) == best_child.data.params[name]
    document = yaml.safe_load(
        Path(client.download_artifacts(parent.info.run_id, "best.yaml")).read_text()
    )
    assert document["trial_id"] == best["trial_id"]
    assert document["spec_fragment"]["job"]["optimizer"]["lr"] == best["params"]["lr"]


def test_a_trial_that_cannot_be_placed_is_rejected_before_anything_runs(
    ray_session: Any, test_data_dir: Path, tmp_path: Path
) -> None:
    from service.runtime.driver import SweepRejected

    data = tiny_spec(test_data_dir)
    data["job"]["workers"] = 8
    data["job"]["global_batch_size"] = 400
    with pytest.raises(SweepRejected, match=r"needs 8 CPU .* the cluster has 2 CPU"):
        run_sweep(
            load_spec(data),
            sweep_id="too-big",
            storage_path=str(tmp_path),
            tracking_uri=f"sqlite:///{tmp_path}/mlflow.db",
        )
    assert not (tmp_path / "too-big").exists()


_DRIVER = """
import json, sys
from search_spaces import load_spec
from service.runtime.driver import LOST_TRIAL, run_sweep
spec, storage, tracking, events_path = sys.argv[1:5]
class FileSink:
    def emit(self, event):
        with open(events_path, "a") as out:
            out.write(json.dumps(event) + "\\n")
run_sweep(load_spec(json.loads(spec)), sweep_id="resumable", storage_path=storage,
          tracking_uri=tracking, events=FileSink())
"""


@pytest.mark.timeout(600)
@pytest.mark.parametrize("cut_searcher_state", [False, True], ids=["intact", "cut"])
def test_resume_after_killing_the_driver_does_not_rerun_finished_trials(
    ray_session: Any, test_data_dir: Path, tmp_path: Path, cut_searcher_state: bool
) -> None:
    """``cut``: the kill also left the segment's searcher state empty on storage (it lands
    while Tune copies it there); the segment is set aside and its unfinished share runs anew."""
    data = tiny_spec(test_data_dir, scheduler="fifo", num_trials=3)
    storage, tracking = str(tmp_path / "runs"), f"sqlite:///{tmp_path}/mlflow.db"
    events_path = tmp_path / "events.jsonl"
    driver = subprocess.Popen(
        [sys.executable, "-c", _DRIVER, json.dumps(data), storage, tracking, str(events_path)],
        env={**os.environ},
        start_new_session=True,
    )
    try:
        deadline = time.time() + 300
        finished: list[dict[str, Any]] = []
        while time.time() < deadline and not finished:
            time.sleep(1)
            if events_path.exists():
                lines = [json.loads(x) for x in events_path.read_text().splitlines()]
                finished = [e for e in lines if e["type"] == "trial_finished"]
            assert driver.poll() is None, "the driver ended before it could be killed"
        assert finished, "no trial finished within 300 s"
    finally:
        os.killpg(driver.pid, signal.SIGKILL)  # the driver dies like a lost machine
        driver.wait()
    done_before = {e["trial_id"] for e in finished}
    if cut_searcher_state:
        states = list((tmp_path / "runs" / "resumable").glob("trials-*/searcher-state-*.pkl"))
        assert states, "Tune saved no searcher state before the kill"
        for state in states:
            state.write_bytes(b"")

    # A trial whose run the killed driver created but that Tune never saved: planted, so that
    # the resumed driver surely meets one (the kill may or may not have left one of its own).
    planted = SweepTracker(load_spec(data), sweep_id="resumable", tracking_uri=tracking)
    planted.trial_run("planted0", 99, {"lr": 0.1}, {})
    assert planted.close()

    sink = ListSink()
    outcome = run_sweep(
        load_spec(data),
        sweep_id="resumable",
        storage_path=storage,
        tracking_uri=tracking,
        events=sink,
        resume=True,
    )
    assert outcome.state == "succeeded", outcome.reason
    # Every lost trial is closed as failed, with why, under its own number, in the events and
    # in MLflow: no run of the sweep is left running.
    closed = {e["trial_id"] for e in sink.of_type("trial_finished") if e["error"] == LOST_TRIAL}
    assert "planted0" in closed
    assert "planted0" not in outcome.trials
    assert {e["trial_id"]: e["number"] for e in sink.of_type("trial_started")}["planted0"] == 99
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=tracking)
    every = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert every and all(run.info.status != "RUNNING" for run in every)
    [planted_run] = [r for r in every if r.data.tags.get("extrap.trial_id") == "planted0"]
    assert planted_run.info.status == "FAILED"
    assert planted_run.data.tags["extrap.status"] == "failed"
    restarted = {e["trial_id"] for e in sink.of_type("trial_started")}
    assert not restarted & done_before  # finished trials are not rerun
    assert len(outcome.trials) == 3  # the earlier ones are counted, none added twice
    numbers = sorted(t.number for t in outcome.trials.values())
    # Finished trials keep their numbers; a trial the killed driver had started but Tune had
    # not saved yet (or, ``cut``, whose segment was set aside) is replaced by one numbered
    # past it: numbers are never reused.
    started_before = {
        e["trial_id"]: e["number"]
        for e in map(json.loads, events_path.read_text().splitlines())
        if e["type"] == "trial_started"
    }
    assert len(set(numbers)) == 3
    assert {t: outcome.trials[t].number for t in done_before} == {
        t: started_before[t] for t in done_before
    }
    replaced = set(started_before) - done_before - set(outcome.trials)
    lost = {started_before[t] for t in replaced}
    assert not {r.number for r in outcome.trials.values()} & lost
    assert closed - {"planted0"} <= replaced
    assert all(r.number > 99 for r in outcome.trials.values() if r.trial_id not in started_before)
    set_aside = list((tmp_path / "runs" / "resumable").glob("trials-0000.unrestorable-*"))
    assert bool(set_aside) == cut_searcher_state


def test_failed_trials_stop_the_sweep_with_a_clear_reason(
    ray_session: Any, test_data_dir: Path, tmp_path: Path
) -> None:
    data = tiny_spec(test_data_dir, num_trials=3, max_failed_trials=1, max_retries=0)
    data["job"].update(  # CIFAR files that are not there: every trial fails to load its data
        workload="resnet20-cifar10", workload_options={}, data_dir=str(tmp_path / "no-data")
    )
    sink = ListSink()
    outcome = run_sweep(
        load_spec(data),
        sweep_id="failing",
        storage_path=str(tmp_path / "runs"),
        tracking_uri=f"sqlite:///{tmp_path}/mlflow.db",
        events=sink,
    )
    assert outcome.state == "failed"
    assert outcome.reason is not None and "max_failed_trials=1" in outcome.reason
    failed = sink.of_type("trial_finished")
    assert failed and all(e["status"] == "failed" for e in failed)
    assert "cifar-10-batches-py" in failed[0]["error"]  # the traceback's last lines say why
    assert len(sink.of_type("trial_started")) < 3  # stopped before the budget was spent


def test_a_diverged_trial_is_reported_and_not_retried(
    ray_session: Any, test_data_dir: Path, tmp_path: Path
) -> None:
    data = tiny_spec(test_data_dir, num_trials=1, sampler="random", scheduler="fifo")
    data["space"] = {"lr": {"type": "categorical", "choices": [1.0e6]}}
    data["job"]["optimizer"] = {"lr": 0.1, "momentum": 0.9, "extrapolation": "none"}
    sink = ListSink()
    outcome = run_sweep(
        load_spec(data),
        sweep_id="diverging",
        storage_path=str(tmp_path / "runs"),
        tracking_uri=f"sqlite:///{tmp_path}/mlflow.db",
        events=sink,
    )
    [finished] = sink.of_type("trial_finished")
    assert finished["status"] == "diverged"
    assert len(sink.of_type("trial_started")) == 1  # no retry
    assert "val_accuracy" not in finished["metrics"]  # the Optuna penalty is not shown to people
    assert outcome.state == "failed" and "no trial finished" in (outcome.reason or "")


def test_trials_after_the_first_run_in_its_worker_processes(finished_sweep: FinishedSweep) -> None:
    _, _, children = _mlflow(finished_sweep)
    by_number = sorted(children, key=lambda run: run.info.run_name)
    pids = [run.data.tags["extrap.worker_pids"] for run in by_number]
    assert len(pids[0].split()) == 2  # two DDP workers
    assert set(pids) == {pids[0]}  # one warm group served every trial (one slot)
    startup = [run.data.metrics["startup_seconds"] for run in by_number]
    assert max(startup[1:]) < startup[0]  # warm trials start faster than the cold first one


def test_validation_every_epoch_and_test_figures_only_at_the_end(
    finished_sweep: FinishedSweep,
) -> None:
    finished = {
        e["trial_id"]: e["status"] for e in _of_type(finished_sweep.events, "trial_finished")
    }
    for trial_id, status in finished.items():
        reports = [
            e["metrics"]
            for e in _of_type(finished_sweep.events, "trial_metrics")
            if e["trial_id"] == trial_id
        ]
        assert all({"val_loss", "val_accuracy"} <= set(m) for m in reports)
        assert not any(k.startswith("test_") for m in reports[:-1] for k in m)
        tested = {"test_loss", "test_accuracy"} <= set(reports[-1])
        assert tested == (status == "completed")


def test_a_trial_past_its_timeout_is_stopped_untested_as_pruned(
    ray_session: Any, test_data_dir: Path, tmp_path: Path
) -> None:
    data = tiny_spec(test_data_dir, num_trials=2, scheduler="fifo", trial_timeout_s=0.001)
    data["job"]["epochs"] = 3
    sink = ListSink()
    outcome = run_sweep(
        load_spec(data),
        sweep_id="timeouts",
        storage_path=str(tmp_path / "runs"),
        tracking_uri=f"sqlite:///{tmp_path}/mlflow.db",
        events=sink,
    )
    finished = sink.of_type("trial_finished")
    assert [e["status"] for e in finished] == ["pruned", "pruned"]
    for event in sink.of_type("trial_metrics"):
        assert event["epoch"] == 1  # stopped at its first report
        assert not any(k.startswith("test_") for k in event["metrics"])  # never tested
    assert outcome.state == "succeeded"  # a pruned trial still ranks (without confirmation)
