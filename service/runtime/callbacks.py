"""What the driver does as Tune reports: MLflow runs, events, the best so far, and stopping.

Tune pickles its callbacks and stopper with the experiment (and unpickles them on restore),
so :class:`SweepCallback` and :class:`SweepStopper` hold only the sweep id; the live objects
of the sweeps running in this process sit in :data:`LIVE`.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ray import tune

from search_spaces import SweepSpec
from search_spaces.space import job_data_with
from service.runtime.events import EventSink
from service.runtime.tracking import SweepTracker, epoch_metrics
from service.runtime.trial import CONFIRM_KEY
from service.wire import make_event

__all__ = ["LIVE", "LiveSweep", "SweepCallback", "SweepStopper", "TrialRecord"]

log = logging.getLogger(__name__)

_ERROR_LINES = 20


@dataclass
class TrialRecord:
    """What the driver knows of one trial."""

    trial_id: str
    number: int
    params: dict[str, Any]
    status: str = "running"
    last: dict[str, float] = field(default_factory=dict)
    # Finished before a restart, though Tune's last experiment checkpoint missed it: Tune
    # relaunches it, it resumes from its final checkpoint and trains nothing; no new events.
    replayed: bool = False
    epochs: int = 0
    error: str | None = None
    worker_pids: list[int] = field(default_factory=list)
    kind: str = "search"  # or "confirmation": a configuration retrained on a fresh seed
    confirms: str | None = None  # the search trial whose configuration this one confirms
    seed: int | None = None
    checkpoint: str | None = None  # its latest checkpoint (the final one once it ended)


@dataclass
class LiveSweep:
    """A sweep running in this process: its spec, tracker, events and trials."""

    spec: SweepSpec
    sweep_id: str
    tracker: SweepTracker
    events: EventSink
    trials: dict[str, TrialRecord] = field(default_factory=dict)
    started: dict[str, float] = field(default_factory=dict)  # first start: the timeout
    last_start: dict[str, float] = field(default_factory=dict)  # latest (re)start
    failed: int = 0
    # Every trial in this driver's Tune experiments, restored finished ones too: a trial the
    # tracker knows from a lost driver but Tune never saved is not among them.
    in_tune: set[str] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def objective(self) -> str:
        return self.spec.objective.metric

    def best_so_far(self) -> TrialRecord | None:
        """The best finished search trial by its latest objective value (progress only)."""
        sign = 1.0 if self.spec.objective.mode == "max" else -1.0
        scored = [
            t
            for t in self.trials.values()
            if t.kind == "search"
            and t.status in ("completed", "pruned")
            and self.objective in t.last
        ]
        return max(scored, key=lambda t: sign * t.last[self.objective], default=None)


LIVE: dict[str, LiveSweep] = {}
"""The sweeps running in this process, by sweep id."""


def _error_text(trial: Any) -> str:
    path = getattr(trial, "error_file", None)
    text = ""
    if path and Path(path).is_file():
        text = Path(path).read_text(errors="replace")
    if not text:
        text = str(getattr(trial, "error_msg", "") or "the trial failed")
    return "\n".join(text.strip().splitlines()[-_ERROR_LINES:])


class SweepCallback(tune.Callback):
    """Per trial: its MLflow child run, batched epoch metrics and events."""

    def __init__(self, sweep_id: str) -> None:
        self.sweep_id = sweep_id

    def _live(self) -> LiveSweep:
        return LIVE[self.sweep_id]

    def on_trial_start(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        live = self._live()
        names = set(live.spec.space)
        confirmation = trial.config.get(CONFIRM_KEY)
        values = confirmation["params"] if confirmation is not None else trial.config
        params = {k: v for k, v in values.items() if k in names}
        with live.lock:
            record = live.trials.get(trial.trial_id)
            if record is not None and record.status != "running":
                record.replayed = True
                return
            if record is None:
                number = live.tracker.known_trial_number(trial.trial_id)
                if number is None:  # a new trial: the next number, also past a lost driver's
                    known = [t.number for t in live.trials.values()]
                    number = max([live.tracker.highest_trial_number(), *known]) + 1
                record = TrialRecord(trial.trial_id, number, params)
                if confirmation is not None:
                    record.kind = "confirmation"
                    record.confirms = str(confirmation["confirms"])
                    record.seed = int(confirmation["seed"])
                live.trials[trial.trial_id] = record
            now = time.time()
            live.started.setdefault(trial.trial_id, now)
            live.last_start[trial.trial_id] = now
        job_data = job_data_with(live.spec.job, params)  # the trainable builds the job itself
        if record.seed is not None:
            job_data["seed"] = record.seed
        run_id = live.tracker.trial_run(
            trial.trial_id,
            record.number,
            params,
            job_data,
            confirms=record.confirms,
            seed=record.seed,
        )
        live.events.emit(
            make_event(
                "trial_started",
                trial_id=trial.trial_id,
                number=record.number,
                params=params,
                mlflow_run_id=run_id,
                kind=record.kind,
                confirms=record.confirms,
            )
        )

    def on_trial_result(
        self, iteration: int, trials: list[Any], trial: Any, result: dict[str, Any], **info: Any
    ) -> None:
        live = self._live()
        record = live.trials.get(trial.trial_id)
        if record is None or record.replayed or "epoch" not in result:
            return
        metrics = epoch_metrics(result, live.objective)
        first_step = result.get("first_step_time")
        started = live.last_start.get(trial.trial_id)
        if isinstance(first_step, float) and started is not None:
            # From the driver's trial start to rank 0's first optimizer step (a restart too).
            metrics["startup_seconds"] = max(0.0, first_step - started)
        if result.get("status") == "diverged":
            metrics.pop(live.objective, None)  # the penalty is for Optuna, not for people
            record.status = "diverged"
        pids = [int(pid) for pid in result.get("worker_pids") or []]
        if pids and pids != record.worker_pids:
            record.worker_pids = pids
            live.tracker.tag_trial(trial.trial_id, "extrap.worker_pids", " ".join(map(str, pids)))
        record.last = metrics
        epoch = int(result["epoch"])
        if epoch <= record.epochs:
            # Retrained after a failure that came between this epoch's report and its
            # checkpoint: it was reported (and logged) once already.
            log.info(
                "trial %s: epoch %d again after a restore, not reported twice",
                trial.trial_id,
                epoch,
            )
            return
        record.epochs = epoch
        live.tracker.log_epoch(trial.trial_id, record.epochs, metrics)
        live.events.emit(
            make_event(
                "trial_metrics", trial_id=trial.trial_id, epoch=record.epochs, metrics=metrics
            )
        )

    def _finish(self, trial: Any, status: str, error: str | None) -> None:
        live = self._live()
        record = live.trials.get(trial.trial_id)
        if record is None or record.replayed:
            return
        record.status, record.error = status, error
        checkpoint = getattr(trial, "checkpoint", None)
        if checkpoint is not None:
            record.checkpoint = str(checkpoint.path)
        live.tracker.finish_trial(trial.trial_id, status, checkpoint=record.checkpoint)
        live.events.emit(
            make_event(
                "trial_finished",
                trial_id=trial.trial_id,
                status=status,
                error=error,
                metrics=record.last,
            )
        )
        best = live.best_so_far()
        if best is not None and record.kind == "search":
            done = sum(t.status != "running" for t in live.trials.values() if t.kind == "search")
            live.tracker.log_best(best.last[live.objective], done)

    def on_experiment_end(self, trials: list[Any], **info: Any) -> None:
        self._live().in_tune.update(trial.trial_id for trial in trials)

    def on_trial_complete(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        record = self._live().trials.get(trial.trial_id)
        if record is None:
            return
        if record.status == "diverged":
            status = "diverged"
        elif record.epochs >= self._live().spec.job.epochs:
            status = "completed"
        else:
            status = "pruned"  # stopped early by the scheduler (or the trial timeout)
        self._finish(trial, status, None)

    def on_trial_error(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        live = self._live()
        known = live.trials.get(trial.trial_id)
        if known is not None and known.replayed:
            return
        with live.lock:
            live.failed += 1
        self._finish(trial, "failed", _error_text(trial))


class SweepStopper(tune.Stopper):
    """Stops a trial past ``trial_timeout_s`` and the sweep at ``max_failed_trials``."""

    def __init__(self, sweep_id: str) -> None:
        self.sweep_id = sweep_id

    def __call__(self, trial_id: str, result: dict[str, Any]) -> bool:
        live = LIVE[self.sweep_id]
        timeout = live.spec.search.trial_timeout_s
        started = live.started.get(trial_id)
        return bool(timeout and started and time.time() - started > timeout)

    def stop_all(self) -> bool:
        live = LIVE[self.sweep_id]
        return live.failed >= live.spec.search.max_failed_trials
