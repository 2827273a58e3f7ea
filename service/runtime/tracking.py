"""MLflow as the comparison view: one parent run per sweep, one nested child run per trial.

Only the sweep driver logs (never the workers), and each epoch's metrics go in ONE batched
call: Ray's ``MLflowLoggerCallback`` was measured spending ~0.4 s per result inside Tune's loop,
one SQLite write per metric, and logging Tune's bookkeeping (pid, timestamps) as metrics.

- experiment: the spec's ``mlflow_experiment`` (default: its name);
- parent run ``<name> [<sweep id>]``: the spec's main fields as params, the spec as
  ``spec.yaml``, tags ``extrap.sweep_id`` and ``extrap.status``, metric ``best_<objective>``;
  at the end ``best.yaml``, ``param_importances.json`` and ``optimization_history.png``;
- child run ``trial-007 gamma_ratio=0.05 lr=0.32``: the searched params under their own names
  and the whole effective job config under dotted names (``job.optimizer.lr``), every epoch's
  metrics with step = epoch, tags ``extrap.trial_id``, ``extrap.sweep_id``, ``extrap.status``
  (completed | pruned | failed | diverged).

A resumed sweep finds its runs again by these tags instead of creating new ones.
"""

from __future__ import annotations

import fcntl
import io
import json
import logging
import math
import os
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from search_spaces import SweepSpec
from search_spaces.space import nest_dotted
from service.runtime._outbox import Outbox, failure_kind

__all__ = [
    "INCOMPLETE_TAG",
    "SweepTracker",
    "flatten",
    "prepare_tracking_store",
    "study_files",
    "trial_run_name",
    "warm_tracking_store",
]

log = logging.getLogger("extrap.tracking")

SWEEP_TAG = "extrap.sweep_id"
TRIAL_TAG = "extrap.trial_id"
KIND_TAG = "extrap.kind"
STATUS_TAG = "extrap.status"
CONFIRMS_TAG = "extrap.confirms"  # a confirmation run: the search trial it confirms
SEED_TAG = "extrap.seed"
CHECKPOINT_TAG = "extrap.checkpoint"
# Until the run's last call is logged (see SweepTracker): "true", then removed.
INCOMPLETE_TAG = "extrap.incomplete"
# MLflow's HTTP client retries 7 times with a backoff and waits 120 s per request by default.
HTTP_LIMITS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1", "MLFLOW_HTTP_REQUEST_TIMEOUT": "10"}
# Reported per epoch but not worth a chart: identifiers and counters.
_NOT_METRICS = frozenset(
    {
        "epoch",
        "step",
        "status",
        "checkpoint_path",
        "first_step_time",
        "worker_pids",
        "should_checkpoint",
    }
)
# What Ray Tune adds to every result (its bookkeeping, not the trial's measurements).
TUNE_KEYS = frozenset(
    {
        "training_iteration",
        "time_total_s",
        "time_this_iter_s",
        "timestamp",
        "date",
        "pid",
        "hostname",
        "node_ip",
        "time_since_restore",
        "iterations_since_restore",
        "timesteps_since_restore",
        "timesteps_total",
        "episodes_total",
        "config",
        "checkpoint_dir_name",
        "done",
        "trial_id",
        "experiment_tag",
        "should_checkpoint",
    }
)


def flatten(value: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """``{"a": {"b": 1}}`` -> ``("a.b", 1)``; lists stay whole."""
    if isinstance(value, Mapping):
        for key, item in value.items():
            yield from flatten(item, f"{prefix}{key}.")
    else:
        yield prefix[:-1], value


def _short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)


def trial_run_name(number: int, params: Mapping[str, Any]) -> str:
    """``trial-007 gamma_ratio=0.05 lr=0.32``: readable in MLflow's run list."""
    shown = " ".join(f"{key}={_short(value)}" for key, value in sorted(params.items()))
    return f"trial-{number:03d} {shown}".strip()


def epoch_metrics(result: Mapping[str, Any], objective: str) -> dict[str, float]:
    """The numbers users compare from one epoch's report, the objective first."""
    metrics = {
        key: float(value)
        for key, value in result.items()
        if key not in _NOT_METRICS
        and key not in TUNE_KEYS
        and isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(float(value))
    }
    ordered = {objective: metrics.pop(objective)} if objective in metrics else {}
    ordered.update(metrics)
    return ordered


@dataclass(eq=False)  # compared and hashed by identity: the key of its calls in the outbox
class _Run:
    """A run of the sweep; ``id`` is None until MLflow has created it."""

    label: str
    id: str | None = None


class _NoRun(RuntimeError):
    """The run a call is for could not be created."""


class SweepTracker:
    """Writes a sweep into MLflow; mlflow is imported on construction, not at module import.

    MLflow must answer when the tracker opens (the experiment and the parent run; it waits up
    to ``start_patience_s`` for it). After that it may go away: calls are kept in order while
    it is unreachable and replayed when it answers again (:mod:`service.runtime._outbox`);
    :meth:`close` waits up to ``drain_timeout_s`` for what is still kept. Every run is
    created with the tag ``extrap.incomplete=true`` and loses it as its last call, once
    everything before it was logged: a run that keeps it (or a parent that keeps it: some run
    of the sweep lost a call) misses something.

    The driver caps MLflow's HTTP client (unless set already): ``MLFLOW_HTTP_REQUEST_TIMEOUT``
    10 s and ``MLFLOW_HTTP_REQUEST_MAX_RETRIES`` 1, instead of 120 s and 7 retries with a
    backoff that can hold one call for minutes; a Tune callback waits at most one such
    attempt for an unreachable MLflow.
    """

    def __init__(
        self,
        spec: SweepSpec,
        *,
        sweep_id: str,
        tracking_uri: str,
        start_patience_s: float = 120.0,
        retry_interval_s: float = 5.0,
        drain_timeout_s: float = 120.0,
        max_pending: int = 10_000,
    ) -> None:
        from mlflow.tracking import MlflowClient

        for name, value in HTTP_LIMITS.items():
            os.environ.setdefault(name, value)
        self.spec = spec
        self.sweep_id = sweep_id
        prepare_tracking_store(tracking_uri)  # a SQLite store's tables, once, under a lock
        self.client = MlflowClient(tracking_uri=tracking_uri)
        self.objective = spec.objective.metric
        self.drain_timeout_s = drain_timeout_s
        self._outbox = Outbox(
            _shown_uri(tracking_uri), retry_interval_s=retry_interval_s, max_pending=max_pending
        )
        self._trial_runs: dict[str, _Run] = {}
        self._existing: list[Any] = []
        self.experiment_id = ""
        self._parent = _Run("the sweep's parent run")
        _patiently(self._open, start_patience_s, self._outbox.server)

    @property
    def parent_run_id(self) -> str:
        assert self._parent.id is not None  # set when the tracker opened
        return self._parent.id

    @property
    def pending(self) -> int:
        """Calls kept while MLflow is unreachable."""
        return self._outbox.pending

    def _open(self) -> None:
        name = self.spec.mlflow_experiment or self.spec.name
        experiment = self.client.get_experiment_by_name(name)
        if experiment is None:
            self.experiment_id = self.client.create_experiment(name)
        else:
            if experiment.lifecycle_stage == "deleted":
                self.client.restore_experiment(experiment.experiment_id)
            self.experiment_id = experiment.experiment_id
        self._parent.id = self._find_or_create_parent()
        # The trials that have runs already (a resumed sweep): read once, now that MLflow
        # answers, so that starting a trial needs no lookup.
        self._existing = self._search(
            f"tags.`{SWEEP_TAG}` = '{self.sweep_id}' and tags.`{KIND_TAG}` = 'trial'"
        )

    def _search(self, filter_string: str) -> list[Any]:
        return list(self.client.search_runs([self.experiment_id], filter_string=filter_string))

    def _find_or_create_parent(self) -> str:
        found = self._search(
            f"tags.`{SWEEP_TAG}` = '{self.sweep_id}' and tags.`{KIND_TAG}` = 'sweep'"
        )
        if found:
            run_id: str = found[0].info.run_id
            self.client.update_run(run_id, status="RUNNING")
            self.client.set_tag(run_id, INCOMPLETE_TAG, "true")
            return run_id
        run = self.client.create_run(
            self.experiment_id,
            run_name=f"{self.spec.name} [{self.sweep_id}]",
            tags={
                SWEEP_TAG: self.sweep_id,
                KIND_TAG: "sweep",
                STATUS_TAG: "running",
                INCOMPLETE_TAG: "true",
            },
        )
        spec = self.spec
        params = {
            "workload": spec.job.workload,
            "global_batch_size": spec.job.global_batch_size,
            "workers_per_trial": spec.job.workers,
            "epochs": spec.job.epochs,
            "objective": f"{spec.objective.metric} ({spec.objective.mode})",
            "sampler": spec.search.sampler,
            "scheduler": spec.search.scheduler.kind,
            "num_trials": spec.search.num_trials,
            "searched": ", ".join(sorted(spec.space)),
            "preset": spec.based_on or "",
        }
        self.client.log_batch(run.info.run_id, params=_params(params))
        self.client.log_text(
            run.info.run_id,
            yaml.safe_dump(spec.model_dump(mode="json"), sort_keys=False),
            "spec.yaml",
        )
        return str(run.info.run_id)

    # -- calls through the outbox ----------------------------------------------------------

    def _call(
        self, run: _Run, what: str, action: Callable[[str], object], *, droppable: bool = False
    ) -> None:
        """``action(run id)`` now, or in order once MLflow answers again."""

        def attempt(_retry: bool) -> None:
            if run.id is None:
                raise _NoRun(f"{run.label} was not created")
            action(run.id)

        self._outbox.call(attempt, label=f"{what} of {run.label}", key=run, droppable=droppable)

    def _log(
        self,
        run: _Run,
        what: str,
        *,
        params: Mapping[str, Any] | None = None,
        metrics: Mapping[str, float] | None = None,
        step: int = 0,
        tags: Mapping[str, str] | None = None,
        droppable: bool = False,
    ) -> None:
        from mlflow.entities import Metric, RunTag

        now = int(time.time() * 1000)  # now, not when replayed: a replay repeats it exactly
        metric_list = [Metric(k, v, now, step) for k, v in (metrics or {}).items()]
        param_list = _params(params or {})
        tag_list = [RunTag(k, v) for k, v in (tags or {}).items()]
        self._call(
            run,
            what,
            lambda run_id: self.client.log_batch(
                run_id, metrics=metric_list, params=param_list, tags=tag_list
            ),
            droppable=droppable,
        )

    def _complete(self, run: _Run, *, whole_sweep: bool = False) -> None:
        """Clear ``extrap.incomplete`` once everything before this call was logged."""

        def clear(run_id: str) -> None:
            if run in self._outbox.lost or (whole_sweep and self._outbox.lost):
                return  # something is missing: the tag stays
            from mlflow.exceptions import MlflowException

            try:
                self.client.delete_tag(run_id, INCOMPLETE_TAG)
            except MlflowException as error:
                if error.error_code != "RESOURCE_DOES_NOT_EXIST":  # a replay: cleared already
                    raise

        self._call(run, "completion", clear)

    def known_trial_number(self, trial_id: str) -> int | None:
        """The number of a trial that already has a run (a trial resumed after a restart)."""
        for found in self._existing:
            if found.data.tags.get(TRIAL_TAG) == trial_id:
                name = found.info.run_name or ""
                self._trial_runs[trial_id] = _Run(name or trial_id, str(found.info.run_id))
                return _number_of(name)
        return None

    def highest_trial_number(self) -> int:
        """The highest number of a trial that had a run before this driver started (0: none).

        A resumed driver numbers new trials above it: a trial the lost driver had started but
        not yet saved in Tune's experiment state keeps its number, and the trial that takes
        its place gets the next one.
        """
        return max((_number_of(run.info.run_name or "") for run in self._existing), default=0)

    def trial_run(
        self,
        trial_id: str,
        number: int,
        params: Mapping[str, Any],
        job: Mapping[str, Any],
        *,
        confirms: str | None = None,
        seed: int | None = None,
    ) -> str | None:
        """The child run of a trial, created (with its params) on first use.

        None while MLflow is unreachable: the run is created when it answers again.
        A confirmation run is named ``trial-012 confirmation seed=1000 lr=…`` and tagged with
        the search trial it confirms (``extrap.confirms``) and its seed.
        """
        if trial_id in self._trial_runs:
            return self._trial_runs[trial_id].id
        tags = {
            "mlflow.parentRunId": self.parent_run_id,
            SWEEP_TAG: self.sweep_id,
            TRIAL_TAG: trial_id,
            KIND_TAG: "trial",
            STATUS_TAG: "running",
            INCOMPLETE_TAG: "true",
        }
        name = trial_run_name(number, params)
        if confirms is not None:
            tags.update({CONFIRMS_TAG: confirms, SEED_TAG: str(seed)})
            name = name.replace(" ", f" confirmation seed={seed} ", 1)
        every = dict(params)
        every.update({f"job.{k}": v for k, v in flatten(job)})
        items = list(every.items())
        run = _Run(name.split(" ", 1)[0])
        self._trial_runs[trial_id] = run

        def create(retry: bool) -> None:
            if run.id is None and retry:  # the lost answer of a first attempt that worked?
                found = self._search(
                    f"tags.`{TRIAL_TAG}` = '{trial_id}' and tags.`{SWEEP_TAG}` = '{self.sweep_id}'"
                )
                run.id = str(found[0].info.run_id) if found else None
            if run.id is None:
                created = self.client.create_run(self.experiment_id, run_name=name, tags=tags)
                run.id = str(created.info.run_id)
            for start in range(0, len(items), 100):  # MLflow takes 100 params per batch
                self.client.log_batch(run.id, params=_params(dict(items[start : start + 100])))

        self._outbox.call(create, label=f"creation of {run.label}", key=run)
        return run.id

    def _known_trial(self, run: Any, searched: set[str]) -> dict[str, Any]:
        """What an earlier driver's run says of its trial (its run is this tracker's again)."""
        trial_id = run.data.tags[TRIAL_TAG]
        self._trial_runs[trial_id] = _Run(run.info.run_name or trial_id, str(run.info.run_id))
        tags = run.data.tags
        return {
            "trial_id": trial_id,
            "number": _number_of(run.info.run_name or ""),
            "params": {k: _parse(v) for k, v in run.data.params.items() if k in searched},
            "kind": "confirmation" if CONFIRMS_TAG in tags else "search",
            "confirms": tags.get(CONFIRMS_TAG),
        }

    def finished_trials(self, searched: set[str]) -> list[dict[str, Any]]:
        """Trials of this sweep that MLflow saw finish (for a resumed sweep's bookkeeping)."""
        trials = []
        for run in self._existing:
            status = run.data.tags.get(STATUS_TAG, "running")
            if status == "running":
                continue
            metrics = dict(run.data.metrics)
            tags = run.data.tags
            trials.append(
                self._known_trial(run, searched)
                | {
                    "status": status,
                    "last": {self.objective: metrics.pop(self.objective)} | metrics
                    if self.objective in metrics
                    else metrics,
                    "seed": int(tags[SEED_TAG]) if SEED_TAG in tags else None,
                    "checkpoint": tags.get(CHECKPOINT_TAG),
                }
            )
        return trials

    def lost_trials(self, kept: set[str], searched: set[str]) -> list[dict[str, Any]]:
        """Trials a lost driver started that this driver neither ran nor found in Tune's state.

        A driver killed after a trial's run was created but before Tune saved the trial in its
        experiment state leaves a run that nothing will finish: the resumed experiments do not
        hold the trial, and another trial ran in its place. ``kept`` holds every trial id this
        driver's experiments knew; the runs of the others still marked running are returned
        (and can then be closed with :meth:`finish_trial`).
        """
        lost = []
        for run in self._existing:
            trial_id = run.data.tags.get(TRIAL_TAG)
            if trial_id is None or trial_id in kept:
                continue
            if run.data.tags.get(STATUS_TAG, "running") != "running":
                continue
            lost.append(self._known_trial(run, searched) | {"mlflow_run_id": str(run.info.run_id)})
        return lost

    def tag_trial(self, trial_id: str, key: str, value: str) -> None:
        run = self._trial_runs.get(trial_id)
        if run is not None:
            self._log(run, f"tag {key}", tags={key: value})

    def log_epoch(self, trial_id: str, epoch: int, metrics: Mapping[str, float]) -> None:
        run = self._trial_runs.get(trial_id)
        if run is not None and metrics:
            self._log(run, f"epoch {epoch}", metrics=metrics, step=epoch, droppable=True)

    def finish_trial(self, trial_id: str, status: str, *, checkpoint: str | None = None) -> None:
        run = self._trial_runs.get(trial_id)
        if run is None:
            return
        tags = {STATUS_TAG: status}
        if checkpoint is not None:
            tags[CHECKPOINT_TAG] = checkpoint
        self._log(run, "status", tags=tags)
        mlflow_status = "FAILED" if status == "failed" else "FINISHED"
        self._call(run, "end", lambda run_id: self.client.set_terminated(run_id, mlflow_status))
        self._complete(run)

    def log_best(self, value: float, finished_trials: int) -> None:
        self._log(
            self._parent,
            f"best after {finished_trials} trials",
            metrics={f"best_{self.objective}": value},
            step=finished_trials,
        )

    def finish_sweep(
        self,
        state: str,
        *,
        best: Mapping[str, Any] | None,
        summary: Mapping[str, bytes] | None = None,
        step: int = 0,
    ) -> None:
        """Final tags and artifacts on the parent run; ``summary`` holds the Optuna study's
        files if any (:func:`study_files`).

        The best configuration's figures are logged at ``step`` (after every ``best_*`` value
        logged while the search ran, so that they are the latest).
        """
        parent = self._parent
        if best is not None:
            fragment = (
                {"job": nest_dotted(best["job_overrides"])} if best.get("job_overrides") else {}
            )
            document = {
                "trial_id": best["trial_id"],
                "value": best["value"],
                "params": best["params"],
                "metrics": best["metrics"],
                "confirmation": best.get("confirmation"),
                "note": best.get("note"),
                "model_uri": best.get("model_uri"),
                "spec_fragment": fragment,
            }
            self._text(parent, yaml.safe_dump(document, sort_keys=False), "best.yaml")
            self._log(
                parent, "best figures", metrics=_best_figures(best, self.objective), step=step
            )
        if summary:
            self._log_files(parent, summary)
        self._log(parent, "final state", tags={STATUS_TAG: state})
        mlflow_status = "FINISHED" if state == "succeeded" else "FAILED"
        self._call(parent, "end", lambda run_id: self.client.set_terminated(run_id, mlflow_status))
        self._complete(parent, whole_sweep=True)

    def close(self) -> bool:
        """Wait (``drain_timeout_s`` at most) until every call kept is logged; True if all
        were. Called once, at the sweep's end."""
        return self._outbox.close(self.drain_timeout_s)

    def _text(self, run: _Run, text: str, artifact_file: str) -> None:
        self._call(
            run, artifact_file, lambda run_id: self.client.log_text(run_id, text, artifact_file)
        )

    def _log_files(self, run: _Run, files: Mapping[str, bytes]) -> None:
        for name, content in files.items():

            def log(run_id: str, name: str = name, content: bytes = content) -> None:
                _log_file(self.client, run_id, content, name)

            self._call(run, name, log)


def study_files(study: Any) -> dict[str, bytes]:
    """The Optuna study's summary for the parent run: parameter importances (JSON) and the
    optimization history (PNG), where there are enough completed trials for them.

    Pure computation (no MLflow): the driver renders them in a thread while the best model is
    exported, a second or two of matplotlib off the sweep's tail.
    """
    import optuna

    files: dict[str, bytes] = {}
    completed = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if len(completed) >= 2 and len(study.directions) == 1:
        try:
            importances: dict[str, Any] = dict(optuna.importance.get_param_importances(study))
        except (RuntimeError, ValueError) as error:  # e.g. a single distinct value
            importances = {"error": str(error)}
        files["param_importances.json"] = json.dumps(importances, indent=2, default=float).encode()
    if completed and len(study.directions) == 1:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from optuna.visualization.matplotlib import plot_optimization_history

        figure: Any = plot_optimization_history(study).figure
        png = io.BytesIO()
        figure.savefig(png, format="png")
        plt.close(figure)
        files["optimization_history.png"] = png.getvalue()
    return files


def prepare_tracking_store(tracking_uri: str) -> None:
    """Open MLflow's store for ``tracking_uri`` in this process, creating (or upgrading) the
    tables of a SQLite store under a lock file beside it.

    A service's drivers start together on a fresh store (a study's cells, two at a time), and
    MLflow's migrations do not survive two processes at once: the second fails with "Online
    migration expected to match one row" and so does every relaunch. The lock makes the
    first one create the tables and the others find them. A tracking server (``http``, as in
    docs/deploy.md, whose server owns its database) or a file store needs nothing here.
    """
    from mlflow.tracking import MlflowClient

    if not tracking_uri.startswith("sqlite:///"):
        return
    database = Path(tracking_uri.removeprefix("sqlite:///"))
    if not database.is_absolute():  # sqlite:///relative.db
        database = Path.cwd() / database
    database.parent.mkdir(parents=True, exist_ok=True)
    with open(f"{database}.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:  # a client opens the store when it is made: the tables, if there are none
            MlflowClient(tracking_uri=tracking_uri)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def warm_tracking_store(tracking_uri: str) -> None:
    """:func:`prepare_tracking_store` ahead of the tracker, in a thread while Ray starts.

    The two take seconds each and need different things (Ray waits on its processes; this is
    MLflow's imports and SQL). Nothing is created in the store but its schema, and a failure is
    left for :class:`SweepTracker` to meet and report.
    """
    try:
        prepare_tracking_store(tracking_uri)
    except Exception:  # the tracker retries with patience and says why
        log.debug("warming the MLflow store %s failed", _shown_uri(tracking_uri), exc_info=True)


def _params(values: Mapping[str, Any]) -> list[Any]:
    from mlflow.entities import Param

    return [Param(k, str(v)[:6000]) for k, v in values.items()]


def _log_file(client: Any, run_id: str, content: bytes, name: str) -> None:
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / name
        path.write_bytes(content)
        client.log_artifact(run_id, str(path))


def _shown_uri(uri: str) -> str:
    """The tracking URI without credentials, for log lines."""
    scheme, sep, rest = uri.partition("://")
    return f"{scheme}{sep}{rest.rsplit('@', 1)[-1]}" if sep else uri


def _patiently(action: Callable[[], None], patience_s: float, server: str) -> None:
    """``action()``, tried again while MLflow is unreachable or busy, for ``patience_s``."""
    deadline = time.monotonic() + patience_s
    delay = 1.0
    while True:
        try:
            action()
            return
        except Exception as error:
            if failure_kind(error) == "refused" or time.monotonic() + delay > deadline:
                raise
            log.warning("MLflow at %s does not answer yet (%s); retrying", server, error)
            time.sleep(delay)
            delay = min(delay * 2, 10.0)


def _best_figures(best: Mapping[str, Any], objective: str) -> dict[str, float]:
    """The parent run's summary of the best configuration: ``best_<objective>`` and
    ``best_test_<metric>`` (means over the confirmation seeds, with ``_std``; ``_n`` runs)."""
    confirmation = best.get("confirmation")
    if not confirmation:
        figures = {f"best_{objective}": float(best["value"])}
        figures.update(
            {
                f"best_{key}": float(value)
                for key, value in (best.get("metrics") or {}).items()
                if key.startswith("test_") and isinstance(value, int | float)
            }
        )
        return figures
    figures = {}
    for part in ("validation", "test"):
        stats = confirmation[part]
        for key in ("mean", "std"):
            if stats.get(key) is not None:
                suffix = "" if key == "mean" else f"_{key}"
                figures[f"best_{stats['metric']}{suffix}"] = float(stats[key])
    figures[f"best_{objective}_n"] = float(confirmation["n"])
    return figures


def _number_of(run_name: str) -> int:
    """``trial-007 lr=0.1`` -> 7 (0 if the name is not one of ours)."""
    digits = run_name.removeprefix("trial-").split(" ", 1)[0]
    return int(digits) if run_name.startswith("trial-") and digits.isdigit() else 0


def _parse(text: str) -> Any:
    """MLflow keeps params as text; read numbers and lists back."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text
