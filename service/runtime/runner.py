"""Run a sweep on Ray Tune: Optuna proposes, each trial is a Ray Train job, MLflow records.

:func:`run_sweep` is the one code path behind ``extrap run`` (no service), the service's driver
process and the tests. It needs a connected Ray (:func:`ensure_ray` starts a local one).

Layout on storage (a local path, a shared filesystem or an object-store URI)::

    <storage>/<sweep id>/trials-0000/      Tune experiment of trials 1..N (resumable)
    <storage>/<sweep id>/trials-0020/      a later segment added by ``add_trials`` (21..)
    <storage>/<sweep id>/train/<trial id>/ each trial's Ray Train run and checkpoints

A trial is a Tune function that builds a ``TorchTrainer`` (Ray's Train+Tune pattern); it holds
one unit of the ``train_driver`` resource instead of a CPU, so a 2-worker trial runs on two
CPUs. A crashed worker group restarts from its checkpoint (``search.max_retries``); a diverged
trial is not retried: it reports ``status: diverged`` and the objective's worst value so that
Optuna learns to avoid the region.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ray import tune

from search_spaces import ParamSpec, SweepSpec, apply_params, get_searchable
from search_spaces.resources import TRIAL_DRIVER_RESOURCE, placement_errors
from service.runtime.events import EventSink, ListSink
from service.runtime.tracking import SweepTracker, epoch_metrics
from service.wire import make_event
from trainers.config import TrainJobConfig

__all__ = ["SweepOutcome", "SweepRejected", "ensure_ray", "run_sweep"]

log = logging.getLogger(__name__)

SEGMENT_PREFIX = "trials-"
_ERROR_LINES = 20


class SweepRejected(ValueError):
    """The sweep cannot start (e.g. a trial could never be placed); nothing was run."""


@dataclass
class TrialRecord:
    """What the driver knows of one trial."""

    trial_id: str
    number: int
    params: dict[str, Any]
    status: str = "running"
    last: dict[str, float] = field(default_factory=dict)
    # Finished before a restart, though Tune's last experiment checkpoint missed it: Tune
    # relaunches it, Train resumes from its final checkpoint and trains nothing; no new events.
    replayed: bool = False
    epochs: int = 0
    error: str | None = None


@dataclass
class SweepOutcome:
    """How a sweep ended."""

    state: str  # succeeded | failed
    reason: str | None
    best: dict[str, Any] | None
    trials: dict[str, TrialRecord]
    mlflow_experiment_id: str
    mlflow_run_id: str


# Live objects of the sweeps running in this process, by sweep id. Tune pickles its callbacks
# and stopper with the experiment (and unpickles them on restore), so those hold only the id.
_LIVE: dict[str, _SweepState] = {}


@dataclass
class _SweepState:
    spec: SweepSpec
    sweep_id: str
    tracker: SweepTracker
    events: EventSink
    trials: dict[str, TrialRecord] = field(default_factory=dict)
    started: dict[str, float] = field(default_factory=dict)
    failed: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def objective(self) -> str:
        return self.spec.objective.metric

    def best(self) -> TrialRecord | None:
        sign = 1.0 if self.spec.objective.mode == "max" else -1.0
        scored = [
            t
            for t in self.trials.values()
            if t.status in ("completed", "pruned") and self.objective in t.last
        ]
        return max(scored, key=lambda t: sign * t.last[self.objective], default=None)


def _penalty(mode: str) -> float:
    """The objective a diverged trial reports: the worst finite value Optuna can rank."""
    return -1e30 if mode == "max" else 1e30


def ensure_ray(max_concurrent_trials: int | None = None) -> None:
    """Connect to Ray: ``RAY_ADDRESS`` if set, else start a local Ray sized to this machine."""
    import ray

    if ray.is_initialized():
        return
    os.environ.setdefault("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.5")
    if os.environ.get("RAY_ADDRESS"):
        ray.init()
        return
    cpus = os.cpu_count() or 1
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # a private, local-only Ray
    slots = max(max_concurrent_trials or cpus, 1)
    ray.init(num_cpus=cpus, resources={TRIAL_DRIVER_RESOURCE: slots})


# -- the trial -----------------------------------------------------------------------------


@dataclass(frozen=True)
class _TrialContext:
    job: TrainJobConfig
    space_names: tuple[str, ...]
    train_storage: str
    objective: str
    mode: str
    max_retries: int
    keep_checkpoints: int


def _trial_fn(config: dict[str, Any], context: _TrialContext) -> None:
    """One trial: the searched values applied to the job, run as a Ray Train job."""
    import ray.tune
    from ray.tune.integration.ray_train import TuneReportCallback

    from trainers.job import build_trainer

    class _Report(TuneReportCallback):
        """Forwards rank 0's metrics to Tune; a diverged epoch carries the worst objective."""

        def after_report(
            self, run_context: Any, metrics: list[dict[str, Any]], checkpoint: Any
        ) -> None:
            if metrics and metrics[0].get("status") == "diverged":
                metrics = [{**metrics[0], context.objective: _penalty(context.mode)}]
            super().after_report(run_context, metrics, checkpoint)

    params = {name: config[name] for name in context.space_names if name in config}
    job = apply_params(context.job, params)
    trainer = build_trainer(
        job,
        name=ray.tune.get_context().get_trial_id(),
        storage_path=context.train_storage,
        callbacks=[_Report()],  # type: ignore[no-untyped-call]
        max_failures=context.max_retries,
        keep_checkpoints=context.keep_checkpoints,
        checkpoint_score=(context.objective, context.mode),
    )
    trainer.fit()


# -- driver-side callbacks -----------------------------------------------------------------


def _error_text(trial: Any) -> str:
    path = getattr(trial, "error_file", None)
    text = ""
    if path and Path(path).is_file():
        text = Path(path).read_text(errors="replace")
    if not text:
        text = str(getattr(trial, "error_msg", "") or "the trial failed")
    return "\n".join(text.strip().splitlines()[-_ERROR_LINES:])


class _SweepCallback(tune.Callback):
    """Per trial: MLflow child run, batched epoch metrics, events. Holds only the id."""

    def __init__(self, sweep_id: str) -> None:
        self.sweep_id = sweep_id

    def _state(self) -> _SweepState:
        return _LIVE[self.sweep_id]

    def on_trial_start(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        state = self._state()
        names = set(state.spec.space)
        params = {k: v for k, v in trial.config.items() if k in names}
        with state.lock:
            record = state.trials.get(trial.trial_id)
            if record is not None and record.status != "running":
                record.replayed = True
                return
            if record is None:
                number = state.tracker.known_trial_number(trial.trial_id)
                if number is None:  # a new trial: the next number
                    number = max((t.number for t in state.trials.values()), default=0) + 1
                record = TrialRecord(trial.trial_id, number, params)
                state.trials[trial.trial_id] = record
            state.started.setdefault(trial.trial_id, time.time())
        job = apply_params(state.spec.job, params)
        run_id = state.tracker.trial_run(trial.trial_id, record.number, params, job)
        state.events.emit(
            make_event(
                "trial_started",
                trial_id=trial.trial_id,
                number=record.number,
                params=params,
                mlflow_run_id=run_id,
            )
        )

    def on_trial_result(
        self, iteration: int, trials: list[Any], trial: Any, result: dict[str, Any], **info: Any
    ) -> None:
        state = self._state()
        record = state.trials.get(trial.trial_id)
        if record is None or record.replayed or "epoch" not in result:
            return
        metrics = epoch_metrics(result, state.objective)
        if result.get("status") == "diverged":
            metrics.pop(state.objective, None)  # the penalty is for Optuna, not for people
            record.status = "diverged"
        record.last = metrics
        record.epochs = int(result["epoch"])
        state.tracker.log_epoch(trial.trial_id, record.epochs, metrics)
        state.events.emit(
            make_event(
                "trial_metrics", trial_id=trial.trial_id, epoch=record.epochs, metrics=metrics
            )
        )

    def _finish(self, trial: Any, status: str, error: str | None) -> None:
        state = self._state()
        record = state.trials.get(trial.trial_id)
        if record is None or record.replayed:
            return
        record.status, record.error = status, error
        state.tracker.finish_trial(trial.trial_id, status)
        state.events.emit(
            make_event(
                "trial_finished",
                trial_id=trial.trial_id,
                status=status,
                error=error,
                metrics=record.last,
            )
        )
        best = state.best()
        if best is not None:
            done = sum(t.status != "running" for t in state.trials.values())
            state.tracker.log_best(best.last[state.objective], done)

    def on_trial_complete(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        record = self._state().trials.get(trial.trial_id)
        if record is None:
            return
        if record.status == "diverged":
            status = "diverged"
        elif record.epochs >= self._state().spec.job.epochs:
            status = "completed"
        else:
            status = "pruned"  # stopped early by the scheduler (or the trial timeout)
        self._finish(trial, status, None)

    def on_trial_error(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        state = self._state()
        known = state.trials.get(trial.trial_id)
        if known is not None and known.replayed:
            return
        with state.lock:
            state.failed += 1
        self._finish(trial, "failed", _error_text(trial))


class _SweepStopper(tune.Stopper):
    """Stops a trial past ``trial_timeout_s`` and the sweep at ``max_failed_trials``."""

    def __init__(self, sweep_id: str) -> None:
        self.sweep_id = sweep_id

    def __call__(self, trial_id: str, result: dict[str, Any]) -> bool:
        state = _LIVE[self.sweep_id]
        timeout = state.spec.search.trial_timeout_s
        started = state.started.get(trial_id)
        return bool(timeout and started and time.time() - started > timeout)

    def stop_all(self) -> bool:
        state = _LIVE[self.sweep_id]
        return state.failed >= state.spec.search.max_failed_trials


# -- building and running the Tune experiment ------------------------------------------------


def _scheduler(spec: SweepSpec) -> Any:
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, MedianStoppingRule

    config = spec.search.scheduler
    builders = {
        "fifo": lambda: FIFOScheduler(),  # type: ignore[no-untyped-call]
        "asha": lambda: ASHAScheduler(
            time_attr="epoch",
            metric=spec.objective.metric,
            mode=spec.objective.mode,
            max_t=spec.job.epochs,
            grace_period=min(config.grace_period, spec.job.epochs),  # type: ignore[union-attr]
            reduction_factor=config.reduction_factor,  # type: ignore[union-attr]
        ),
        "median": lambda: MedianStoppingRule(
            time_attr="epoch",
            metric=spec.objective.metric,
            mode=spec.objective.mode,
            grace_period=config.grace_period,  # type: ignore[union-attr]
            min_samples_required=config.min_samples_required,  # type: ignore[union-attr]
        ),
    }
    return builders[config.kind]()  # type: ignore[no-untyped-call]


class _DefineByRun:
    """Optuna's define-by-run space; a class, not a lambda, because Tune pickles the searcher."""

    def __init__(self, space: Mapping[str, ParamSpec]) -> None:
        self.space = dict(space)

    def __call__(self, trial: Any) -> dict[str, Any]:
        from search_spaces.optuna_space import suggest_params

        return suggest_params(trial, self.space)


def _searcher(spec: SweepSpec, previous_segment: str | None) -> Any:
    from ray.tune.search.optuna import OptunaSearch

    from search_spaces.optuna_space import build_sampler

    objectives = spec.objectives
    space = spec.space
    multi = len(objectives) > 1
    searcher = OptunaSearch(
        space=_DefineByRun(space),
        sampler=build_sampler(spec.search, spec.space, num_objectives=len(objectives)),
        metric=[o.metric for o in objectives] if multi else objectives[0].metric,
        mode=[o.mode for o in objectives] if multi else objectives[0].mode,
    )
    if previous_segment is not None:  # keep the search history across segments
        searcher.restore_from_dir(previous_segment)
    return searcher


def _segments(sweep_root: str) -> list[tuple[int, str]]:
    """Existing segments, by first trial offset."""
    from ray.tune import Tuner

    found: list[tuple[int, str]] = []
    offset = 0
    while True:
        path = f"{sweep_root}/{SEGMENT_PREFIX}{offset:04d}"
        if not Tuner.can_restore(path):
            return found
        found.append((offset, path))
        offset = _segment_end(offset, path)


def _segment_end(offset: int, path: str) -> int:
    marker = Path(path) / "extrap-segment.txt"
    if marker.is_file():
        return offset + int(marker.read_text().strip())
    return offset + 10**6  # unknown size: no later segment can follow it


def _run_segment(
    spec: SweepSpec,
    sweep_id: str,
    sweep_root: str,
    *,
    offset: int,
    num_trials: int,
    path: str,
    previous: str | None = None,
) -> Any:
    """Run one Tune experiment of the sweep; ``num_trials=0`` restores an existing one."""
    restore = num_trials == 0
    context = _TrialContext(
        job=spec.job,
        space_names=tuple(spec.space),
        train_storage=f"{sweep_root}/train",
        objective=spec.objective.metric,
        mode=spec.objective.mode,
        max_retries=spec.search.max_retries,
        keep_checkpoints=spec.search.keep_checkpoints,
    )
    trainable = tune.with_resources(
        tune.with_parameters(_trial_fn, context=context), {"cpu": 0, TRIAL_DRIVER_RESOURCE: 1}
    )
    if restore:
        tuner = tune.Tuner.restore(path, trainable=trainable, resume_errored=True)
        return tuner.fit()
    tuner = tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(
            search_alg=_searcher(spec, previous),
            scheduler=_scheduler(spec),
            num_samples=num_trials,
            max_concurrent_trials=spec.search.max_concurrent_trials,
            trial_dirname_creator=lambda trial: trial.trial_id,
        ),
        run_config=tune.RunConfig(
            name=f"{SEGMENT_PREFIX}{offset:04d}",
            storage_path=sweep_root,
            callbacks=[_SweepCallback(sweep_id)],
            stop=_SweepStopper(sweep_id),
            failure_config=tune.FailureConfig(max_failures=0),  # Train retries from checkpoints
            verbose=0,
        ),
    )
    if "://" not in path:
        Path(path).mkdir(parents=True, exist_ok=True)
        (Path(path) / "extrap-segment.txt").write_text(str(num_trials))
    return tuner.fit()


def _study(segment: str) -> Any | None:
    """The Optuna study as Tune saved it with the segment's searcher state."""
    from ray.tune.search.optuna import OptunaSearch

    searcher = OptunaSearch()
    try:
        searcher.restore_from_dir(segment)
    except (FileNotFoundError, RuntimeError, ValueError) as error:
        log.warning("no Optuna study to summarise in %s: %s", segment, error)
        return None
    return getattr(searcher, "_ot_study", None)


def _best_summary(spec: SweepSpec, record: TrialRecord) -> dict[str, Any]:
    return {
        "trial_id": record.trial_id,
        "number": record.number,
        "value": record.last[spec.objective.metric],
        "params": record.params,
        "metrics": record.last,
        "job_overrides": {get_searchable(k).path: v for k, v in record.params.items()},
    }


def run_sweep(
    spec: SweepSpec,
    *,
    sweep_id: str,
    storage_path: str,
    tracking_uri: str,
    events: EventSink | None = None,
    resume: bool = False,
    add_trials: int = 0,
) -> SweepOutcome:
    """Run (or resume) a sweep to its end and return how it ended.

    Args:
        spec: the validated sweep spec.
        sweep_id: names the sweep's folder and tags its MLflow runs.
        storage_path: root for Tune and Train state and checkpoints.
        tracking_uri: the MLflow tracking URI.
        events: where progress events go (the service, or the CLI's display).
        resume: continue the sweep's Tune experiments from storage instead of starting anew
            (finished trials are not rerun; the Optuna history is kept).
        add_trials: after the existing trials, run this many more with the same study.

    Raises:
        SweepRejected: a trial could never be placed on the cluster.
    """
    import ray

    ensure_ray(spec.search.max_concurrent_trials)
    # Tune saves its experiment state at most every 10 s by default; a driver killed in that
    # window would relaunch trials that had finished. Small sweeps afford a tighter period.
    os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", "2")
    # A result without the objective (a trial ending without a new epoch) must not abort the
    # whole experiment; Optuna records such a trial as pruned.
    os.environ.setdefault("TUNE_DISABLE_STRICT_METRIC_CHECKING", "1")
    errors = placement_errors(spec.job, ray.cluster_resources())  # type: ignore[no-untyped-call]
    if errors:
        raise SweepRejected("; ".join(errors))
    sink = events or ListSink()
    sweep_root = f"{storage_path.rstrip('/')}/{sweep_id}"
    if "://" not in sweep_root:
        sweep_root = str(Path(sweep_root).resolve())
    tracker = SweepTracker(spec, sweep_id=sweep_id, tracking_uri=tracking_uri)
    state = _SweepState(spec=spec, sweep_id=sweep_id, tracker=tracker, events=sink)
    if resume:  # trials finished before the interruption count for the best configuration
        for known in tracker.finished_trials(set(spec.space)):
            state.trials[known["trial_id"]] = TrialRecord(**known)
    _LIVE[sweep_id] = state
    sink.emit(
        make_event(
            "sweep_running",
            mlflow_experiment_id=tracker.experiment_id,
            mlflow_run_id=tracker.parent_run_id,
        )
    )
    reason: str | None = None
    try:
        segments = _segments(sweep_root) if resume else []
        for offset, path in segments:  # finished segments return at once
            _run_segment(spec, sweep_id, sweep_root, offset=offset, num_trials=0, path=path)
        planned = _segment_end(*segments[-1]) if segments else 0
        # The total is the spec's num_trials (the service raises it on resume with
        # add_trials), or what ran plus add_trials: a relaunched driver adds nothing twice.
        target = max(spec.search.num_trials, planned + add_trials)
        if target > planned:
            previous = segments[-1][1] if segments else None
            path = f"{sweep_root}/{SEGMENT_PREFIX}{planned:04d}"
            _run_segment(
                spec,
                sweep_id,
                sweep_root,
                offset=planned,
                num_trials=target - planned,
                path=path,
                previous=previous,
            )
            segments.append((planned, path))
        if state.failed >= spec.search.max_failed_trials:
            reason = (
                f"stopped: {state.failed} trials failed (search.max_failed_trials="
                f"{spec.search.max_failed_trials}); see the failed trials' errors"
            )
        last_segment = segments[-1][1]
    except Exception as error:  # the sweep fails with the reason; the caller reports it
        log.exception("sweep %s failed", sweep_id)
        reason = f"{type(error).__name__}: {error}"
        last_segment = None
    finally:
        _LIVE.pop(sweep_id, None)

    best_record = state.best()
    best = _best_summary(spec, best_record) if best_record else None
    if reason is None and best is None:
        reason = "no trial finished with the objective metric"
    final_state = "failed" if reason else "succeeded"
    study = _study(last_segment) if last_segment and "://" not in last_segment else None
    tracker.finish_sweep(final_state, best=best, study=study)
    sink.emit(make_event("sweep_finished", state=final_state, reason=reason, best=best))
    return SweepOutcome(
        state=final_state,
        reason=reason,
        best=best,
        trials=state.trials,
        mlflow_experiment_id=tracker.experiment_id,
        mlflow_run_id=tracker.parent_run_id,
    )
