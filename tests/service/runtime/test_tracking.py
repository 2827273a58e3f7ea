"""The MLflow tracker through an outage, against a real (SQLite) MLflow store whose client is
made to fail the way MLflow's REST client does when the server is gone.

The real server, stopped and started again mid-sweep, is tests/faults/test_mlflow_outage.py.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE, TEMPORARILY_UNAVAILABLE
from mlflow.tracking import MlflowClient

from search_spaces import load_spec
from service.runtime._outbox import Outbox, failure_kind
from service.runtime.tracking import INCOMPLETE_TAG, SweepTracker
from tests.conftest import tiny_spec


class Flaky:
    """An MlflowClient that fails while ``down`` as MLflow's REST client does without a server.

    ``lose_answer_of`` names a method whose next call goes through but raises as if its
    answer had been lost.
    """

    def __init__(self, client: MlflowClient) -> None:
        self.client = client
        self.down = False
        self.lose_answer_of: str | None = None
        self.calls: list[str] = []

    def __getattr__(self, name: str) -> Callable[..., Any]:
        method = getattr(self.client, name)

        def call(*args: Any, **kwargs: Any) -> Any:
            self.calls.append(name)
            if self.down:
                _unreachable()
            result = method(*args, **kwargs)
            if self.lose_answer_of == name:
                self.lose_answer_of = None
                _unreachable()
            return result

        return call


def _unreachable() -> None:
    try:
        raise requests.exceptions.ConnectionError("Connection refused")
    except requests.exceptions.ConnectionError as error:  # what mlflow.utils.rest_utils does
        raise MlflowException(
            f"API request to http://mlflow failed with exception {error}"
        ) from error


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> str:
    """One SQLite store for the module (creating one takes seconds); a sweep id per test."""
    return f"sqlite:///{tmp_path_factory.mktemp('mlflow')}/mlflow.db"


@pytest.fixture
def sweep_id(request: pytest.FixtureRequest) -> str:
    return request.node.name[:40]


@pytest.fixture
def tracker(store: str, sweep_id: str, test_data_dir: Path) -> Iterator[tuple[SweepTracker, Flaky]]:
    spec = load_spec(tiny_spec(test_data_dir))
    tracker = SweepTracker(
        spec, sweep_id=sweep_id, tracking_uri=store, retry_interval_s=0.05, drain_timeout_s=2.0
    )
    flaky = Flaky(tracker.client)
    tracker.client = flaky  # type: ignore[assignment]
    yield tracker, flaky
    tracker.close()


def _runs(store: str, sweep_id: str) -> dict[str, Any]:
    """The sweep's runs by the first word of their names (``trial-001``; the parent's
    is the spec's name)."""
    client = MlflowClient(tracking_uri=store)
    experiment = client.get_experiment_by_name("tiny-mnist1d")
    assert experiment is not None
    runs = client.search_runs(
        [experiment.experiment_id], filter_string=f"tags.`extrap.sweep_id` = '{sweep_id}'"
    )
    return {run.info.run_name.split(" ", 1)[0]: run for run in runs}


def _steps(store: str, run_id: str, key: str = "val_accuracy") -> list[int]:
    history = MlflowClient(tracking_uri=store).get_metric_history(run_id, key)
    return sorted(metric.step for metric in history)


def _wait_drained(tracker: SweepTracker, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while tracker.pending and time.monotonic() < deadline:
        time.sleep(0.02)
    assert tracker.pending == 0


def _epoch(tracker: SweepTracker, trial_id: str, epoch: int) -> None:
    tracker.log_epoch(trial_id, epoch, {"val_accuracy": 0.1 * epoch, "loss": 1.0 / epoch})


def test_calls_during_an_outage_are_logged_in_order_when_mlflow_answers_again(
    tracker: tuple[SweepTracker, Flaky], store: str, sweep_id: str
) -> None:
    sweep, flaky = tracker
    assert sweep.trial_run("t1", 1, {"lr": 0.1}, {"epochs": 3}) is not None
    _epoch(sweep, "t1", 1)
    flaky.down = True
    started = time.monotonic()
    _epoch(sweep, "t1", 2)
    assert sweep.trial_run("t2", 2, {"lr": 0.2}, {"epochs": 3}) is None  # created later
    _epoch(sweep, "t2", 1)
    _epoch(sweep, "t1", 3)
    sweep.finish_trial("t1", "completed")
    assert time.monotonic() - started < 1.0  # nobody waited for MLflow
    assert sweep.pending == 7  # epoch, creation, epoch, epoch, status, end, completion
    flaky.down = False
    _wait_drained(sweep)
    _epoch(sweep, "t2", 2)
    sweep.finish_trial("t2", "pruned")
    sweep.finish_sweep("succeeded", best=None)
    assert sweep.close()
    runs = _runs(store, sweep_id)
    assert _steps(store, runs["trial-001"].info.run_id) == [1, 2, 3]
    assert _steps(store, runs["trial-002"].info.run_id) == [1, 2]
    assert len(runs) == 3  # the parent and two trials, each once
    for run in runs.values():
        assert run.info.status == "FINISHED"
        assert INCOMPLETE_TAG not in run.data.tags


def test_a_run_created_before_its_answer_was_lost_is_not_created_twice(
    tracker: tuple[SweepTracker, Flaky], store: str, sweep_id: str
) -> None:
    sweep, flaky = tracker
    flaky.lose_answer_of = "create_run"
    assert sweep.trial_run("t1", 1, {"lr": 0.1}, {"epochs": 3}) is None
    _epoch(sweep, "t1", 1)
    _wait_drained(sweep)
    _epoch(sweep, "t1", 2)
    sweep.finish_trial("t1", "completed")
    runs = _runs(store, sweep_id)
    assert sorted(runs) == ["tiny-mnist1d", "trial-001"]
    assert _steps(store, runs["trial-001"].info.run_id) == [1, 2]


def test_mlflow_still_down_at_the_end_gives_up_after_the_drain_and_the_runs_stay_incomplete(
    tracker: tuple[SweepTracker, Flaky],
    store: str,
    sweep_id: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    sweep, flaky = tracker
    sweep.trial_run("t1", 1, {"lr": 0.1}, {"epochs": 2})
    _epoch(sweep, "t1", 1)
    flaky.down = True
    _epoch(sweep, "t1", 2)
    sweep.finish_trial("t1", "completed")
    sweep.finish_sweep("succeeded", best=None)
    started = time.monotonic()
    with caplog.at_level(logging.ERROR, logger="extrap.tracking"):
        assert not sweep.close()
    assert 1.5 < time.monotonic() - started < 5.0  # drain_timeout_s=2
    [line] = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert "did not answer within 2 s" in line and "extrap.incomplete=true" in line
    runs = _runs(store, sweep_id)
    assert _steps(store, runs["trial-001"].info.run_id) == [1]
    for run in runs.values():  # what MLflow holds says it misses something
        assert run.info.status == "RUNNING"
        assert run.data.tags[INCOMPLETE_TAG] == "true"


def test_past_max_pending_epochs_are_dropped_and_their_run_keeps_the_incomplete_tag(
    store: str, sweep_id: str, test_data_dir: Path
) -> None:
    spec = load_spec(tiny_spec(test_data_dir))
    sweep = SweepTracker(
        spec, sweep_id=sweep_id, tracking_uri=store, retry_interval_s=0.05, max_pending=2
    )
    flaky = Flaky(sweep.client)
    sweep.client = flaky  # type: ignore[assignment]
    sweep.trial_run("t1", 1, {"lr": 0.1}, {"epochs": 4})
    sweep.trial_run("t2", 2, {"lr": 0.1}, {"epochs": 4})
    flaky.down = True
    for epoch in (1, 2, 3):  # the third is one too many
        _epoch(sweep, "t1", epoch)
    flaky.down = False
    _wait_drained(sweep)
    _epoch(sweep, "t1", 4)
    _epoch(sweep, "t2", 1)
    sweep.finish_trial("t1", "completed")
    sweep.finish_trial("t2", "completed")
    sweep.finish_sweep("succeeded", best=None)
    assert not sweep.close()
    runs = _runs(store, sweep_id)
    assert _steps(store, runs["trial-001"].info.run_id) == [1, 2, 4]
    assert runs["trial-001"].data.tags[INCOMPLETE_TAG] == "true"
    assert INCOMPLETE_TAG not in runs["trial-002"].data.tags
    assert runs["tiny-mnist1d"].data.tags[INCOMPLETE_TAG] == "true"  # the sweep lost something


def test_a_refused_call_is_not_retried() -> None:
    outbox = Outbox("test", retry_interval_s=0.01)
    attempts: list[bool] = []

    def refused(retry: bool) -> None:
        attempts.append(retry)
        raise MlflowException("bad value", error_code=INVALID_PARAMETER_VALUE)

    assert not outbox.call(refused, label="a bad param", key="run")
    assert outbox.call(lambda retry: None, label="the next one")
    assert attempts == [False] and outbox.lost == {"run"}
    assert not outbox.close(1.0)


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (requests.exceptions.ConnectTimeout("slow"), "unreachable"),
        (ConnectionRefusedError(111, "refused"), "unreachable"),
        (MlflowException("busy", error_code=TEMPORARILY_UNAVAILABLE), "busy"),
        (MlflowException("no", error_code=INVALID_PARAMETER_VALUE), "refused"),
        (ValueError("a bug"), "refused"),
    ],
)
def test_failure_kinds(error: BaseException, kind: str) -> None:
    assert failure_kind(error) == kind


def test_a_resumed_driver_numbers_new_trials_past_the_lost_driver_s(
    store: str, sweep_id: str, test_data_dir: Path
) -> None:
    """A trial the lost driver had started (a run exists) but Tune had not saved: the resumed
    driver knows its number, and numbers the trial that replaces it past it."""
    spec = load_spec(tiny_spec(test_data_dir))
    lost = SweepTracker(spec, sweep_id=sweep_id, tracking_uri=store)
    assert lost.highest_trial_number() == 0  # a new sweep
    for number, trial_id in ((1, "t1"), (3, "t3")):
        assert lost.trial_run(trial_id, number, {"lr": 0.1}, {"epochs": 3}) is not None
    assert lost.close()  # the driver is gone; its runs stay open
    resumed = SweepTracker(spec, sweep_id=sweep_id, tracking_uri=store)
    try:
        assert resumed.highest_trial_number() == 3
        assert resumed.known_trial_number("t3") == 3
        assert resumed.known_trial_number("t4") is None
    finally:
        resumed.close()
