"""The MLflow server stops mid-sweep (SIGTERM, from outside) and comes back ~10 s later on the
same port and store: training goes on meanwhile, and afterwards MLflow holds every epoch of
every trial, once (the tracker keeps what it could not log and replays it in order:
service/runtime/_outbox.py; docs/deploy.md, "When MLflow is down").
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest

from search_spaces import load_spec
from service.runtime.driver import run_sweep
from service.runtime.events import ListSink
from service.runtime.tracking import INCOMPLETE_TAG
from tests.conftest import tiny_spec
from tests.faults.conftest import MlflowServer

pytestmark = [pytest.mark.slow, pytest.mark.faults]

DOWN_S = 10.0
EPOCHS = (
    20  # long enough that epochs are reported while the server is down, even on a loaded machine
)


class _OutageAfterFirstEpoch:
    """An event sink that, at the first epoch report, stops the MLflow server, keeps it down
    for ``DOWN_S`` and starts it again, in a thread: the sweep does not wait for any of it."""

    def __init__(self, server: MlflowServer) -> None:
        self.server = server
        self.events = ListSink()
        self.emitted_at: list[float] = []
        self.down_at: float | None = None
        self.up_at: float | None = None
        self.thread: threading.Thread | None = None
        self.error: BaseException | None = None

    def emit(self, event: dict[str, Any]) -> None:
        self.events.emit(event)
        self.emitted_at.append(time.monotonic())
        if event["type"] == "trial_metrics" and self.thread is None:
            self.thread = threading.Thread(target=self._outage, name="mlflow-outage")
            self.thread.start()

    def _outage(self) -> None:
        try:
            self.server.stop()
            self.down_at = time.monotonic()
            time.sleep(DOWN_S)
            self.server.start()
            self.up_at = time.monotonic()
        except BaseException as error:  # reported by the test
            self.error = error

    def during_outage(self, event_type: str) -> list[dict[str, Any]]:
        assert self.down_at is not None and self.up_at is not None
        return [
            event
            for event, at in zip(self.events.events, self.emitted_at, strict=True)
            if event["type"] == event_type and self.down_at < at < self.up_at
        ]


@pytest.mark.timeout(600)
def test_training_goes_on_while_mlflow_is_down_and_it_gets_every_epoch_once_afterwards(
    ray_session: Any, mlflow_server: MlflowServer, test_data_dir: Path, tmp_path: Path
) -> None:
    from mlflow.tracking import MlflowClient

    data = tiny_spec(test_data_dir, num_trials=2, max_concurrent_trials=2, scheduler="fifo")
    data["job"].update(workers=1, global_batch_size=50, epochs=EPOCHS)  # two one-worker slots
    data["job"]["workload_options"] = {"num_samples": 8000, "hidden": 128}
    sink = _OutageAfterFirstEpoch(mlflow_server)
    outcome = run_sweep(
        load_spec(data),
        sweep_id="mlflow-outage",
        storage_path=str(tmp_path / "runs"),
        tracking_uri=mlflow_server.url,
        events=sink,
    )
    assert sink.thread is not None
    sink.thread.join(120)
    assert sink.error is None, sink.error
    assert outcome.state == "succeeded", outcome.reason
    assert sink.during_outage("trial_metrics"), "no epoch was reported while MLflow was down"

    reported: dict[str, list[int]] = {}
    for event in sink.events.of_type("trial_metrics"):
        reported.setdefault(event["trial_id"], []).append(event["epoch"])
    assert sorted(reported) == sorted(outcome.trials) and len(reported) == 2
    client = MlflowClient(tracking_uri=mlflow_server.url)
    runs = client.search_runs(
        [outcome.mlflow_experiment_id], filter_string="tags.`extrap.sweep_id` = 'mlflow-outage'"
    )
    children = {
        run.data.tags["extrap.trial_id"]: run for run in runs if "extrap.trial_id" in run.data.tags
    }
    assert sorted(children) == sorted(reported)  # one child run per trial, none twice
    for trial_id, run in children.items():
        for key in ("val_accuracy", "train_loss"):
            steps = [m.step for m in client.get_metric_history(run.info.run_id, key)]
            assert sorted(steps) == reported[trial_id] == list(range(1, EPOCHS + 1)), (
                trial_id,
                key,
            )
        assert run.info.status == "FINISHED"
        assert run.data.tags["extrap.status"] == "completed"
    for run in runs:
        assert INCOMPLETE_TAG not in run.data.tags, run.info.run_name
    parent = client.get_run(outcome.mlflow_run_id)
    assert parent.data.tags["extrap.status"] == "succeeded"
    assert "best.yaml" in {a.path for a in client.list_artifacts(outcome.mlflow_run_id)}
