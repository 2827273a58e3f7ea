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

import json
import math
import time
from collections.abc import Iterator, Mapping
from typing import Any

import yaml

from search_spaces import SweepSpec
from search_spaces.space import nest_dotted

__all__ = ["SweepTracker", "flatten", "trial_run_name"]

SWEEP_TAG = "extrap.sweep_id"
TRIAL_TAG = "extrap.trial_id"
KIND_TAG = "extrap.kind"
STATUS_TAG = "extrap.status"
CONFIRMS_TAG = "extrap.confirms"  # a confirmation run: the search trial it confirms
SEED_TAG = "extrap.seed"
CHECKPOINT_TAG = "extrap.checkpoint"
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


class SweepTracker:
    """Writes a sweep into MLflow; mlflow is imported on construction, not at module import."""

    def __init__(self, spec: SweepSpec, *, sweep_id: str, tracking_uri: str) -> None:
        from mlflow.tracking import MlflowClient

        self.spec = spec
        self.sweep_id = sweep_id
        self.client = MlflowClient(tracking_uri=tracking_uri)
        self.objective = spec.objective.metric
        name = spec.mlflow_experiment or spec.name
        experiment = self.client.get_experiment_by_name(name)
        if experiment is None:
            self.experiment_id = self.client.create_experiment(name)
        else:
            if experiment.lifecycle_stage == "deleted":
                self.client.restore_experiment(experiment.experiment_id)
            self.experiment_id = experiment.experiment_id
        self.parent_run_id = self._find_or_create_parent()
        self._trial_runs: dict[str, str] = {}

    def _search(self, filter_string: str) -> list[Any]:
        return list(self.client.search_runs([self.experiment_id], filter_string=filter_string))

    def _find_or_create_parent(self) -> str:
        found = self._search(
            f"tags.`{SWEEP_TAG}` = '{self.sweep_id}' and tags.`{KIND_TAG}` = 'sweep'"
        )
        if found:
            run_id: str = found[0].info.run_id
            self.client.update_run(run_id, status="RUNNING")
            return run_id
        run = self.client.create_run(
            self.experiment_id,
            run_name=f"{self.spec.name} [{self.sweep_id}]",
            tags={SWEEP_TAG: self.sweep_id, KIND_TAG: "sweep", STATUS_TAG: "running"},
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
        self._log(run.info.run_id, params=params)
        self.client.log_text(
            run.info.run_id,
            yaml.safe_dump(spec.model_dump(mode="json"), sort_keys=False),
            "spec.yaml",
        )
        return str(run.info.run_id)

    def _log(
        self,
        run_id: str,
        *,
        params: Mapping[str, Any] | None = None,
        metrics: Mapping[str, float] | None = None,
        step: int = 0,
        tags: Mapping[str, str] | None = None,
    ) -> None:
        from mlflow.entities import Metric, Param, RunTag

        now = int(time.time() * 1000)
        self.client.log_batch(
            run_id,
            metrics=[Metric(k, v, now, step) for k, v in (metrics or {}).items()],
            params=[Param(k, str(v)[:6000]) for k, v in (params or {}).items()],
            tags=[RunTag(k, v) for k, v in (tags or {}).items()],
        )

    def known_trial_number(self, trial_id: str) -> int | None:
        """The number of a trial that already has a run (a trial resumed after a restart)."""
        found = self._search(
            f"tags.`{TRIAL_TAG}` = '{trial_id}' and tags.`{SWEEP_TAG}` = '{self.sweep_id}'"
        )
        if not found:
            return None
        self._trial_runs[trial_id] = str(found[0].info.run_id)
        return _number_of(found[0].info.run_name or "")

    def trial_run(
        self,
        trial_id: str,
        number: int,
        params: Mapping[str, Any],
        job: Mapping[str, Any],
        *,
        confirms: str | None = None,
        seed: int | None = None,
    ) -> str:
        """The child run of a trial, created (with its params) on first use.

        A confirmation run is named ``trial-012 confirmation seed=1000 lr=…`` and tagged with
        the search trial it confirms (``extrap.confirms``) and its seed.
        """
        if trial_id in self._trial_runs:
            return self._trial_runs[trial_id]
        tags = {
            "mlflow.parentRunId": self.parent_run_id,
            SWEEP_TAG: self.sweep_id,
            TRIAL_TAG: trial_id,
            KIND_TAG: "trial",
            STATUS_TAG: "running",
        }
        name = trial_run_name(number, params)
        if confirms is not None:
            tags.update({CONFIRMS_TAG: confirms, SEED_TAG: str(seed)})
            name = name.replace(" ", f" confirmation seed={seed} ", 1)
        run = self.client.create_run(self.experiment_id, run_name=name, tags=tags)
        run_id = str(run.info.run_id)
        every = dict(params)
        every.update({f"job.{k}": v for k, v in flatten(job)})
        items = list(every.items())
        for start in range(0, len(items), 100):  # MLflow takes 100 params per batch
            self._log(run_id, params=dict(items[start : start + 100]))
        self._trial_runs[trial_id] = run_id
        return run_id

    def finished_trials(self, searched: set[str]) -> list[dict[str, Any]]:
        """Trials of this sweep that MLflow saw finish (for a resumed sweep's bookkeeping)."""
        found = self._search(
            f"tags.`{SWEEP_TAG}` = '{self.sweep_id}' and tags.`{KIND_TAG}` = 'trial'"
        )
        trials = []
        for run in found:
            status = run.data.tags.get(STATUS_TAG, "running")
            if status == "running":
                continue
            number = _number_of(run.info.run_name or "")
            trial_id = run.data.tags[TRIAL_TAG]
            self._trial_runs[trial_id] = str(run.info.run_id)
            metrics = dict(run.data.metrics)
            tags = run.data.tags
            trials.append(
                {
                    "trial_id": trial_id,
                    "number": number,
                    "params": {k: _parse(v) for k, v in run.data.params.items() if k in searched},
                    "status": status,
                    "last": {self.objective: metrics.pop(self.objective)} | metrics
                    if self.objective in metrics
                    else metrics,
                    "kind": "confirmation" if CONFIRMS_TAG in tags else "search",
                    "confirms": tags.get(CONFIRMS_TAG),
                    "seed": int(tags[SEED_TAG]) if SEED_TAG in tags else None,
                    "checkpoint": tags.get(CHECKPOINT_TAG),
                }
            )
        return trials

    def tag_trial(self, trial_id: str, key: str, value: str) -> None:
        run_id = self._trial_runs.get(trial_id)
        if run_id is not None:
            self._log(run_id, tags={key: value})

    def log_epoch(self, trial_id: str, epoch: int, metrics: Mapping[str, float]) -> None:
        run_id = self._trial_runs.get(trial_id)
        if run_id is not None and metrics:
            self._log(run_id, metrics=metrics, step=epoch)

    def finish_trial(self, trial_id: str, status: str, *, checkpoint: str | None = None) -> None:
        run_id = self._trial_runs.get(trial_id)
        if run_id is None:
            return
        tags = {STATUS_TAG: status}
        if checkpoint is not None:
            tags[CHECKPOINT_TAG] = checkpoint
        self._log(run_id, tags=tags)
        mlflow_status = "FAILED" if status == "failed" else "FINISHED"
        self.client.set_terminated(run_id, status=mlflow_status)

    def log_best(self, value: float, finished_trials: int) -> None:
        self._log(
            self.parent_run_id, metrics={f"best_{self.objective}": value}, step=finished_trials
        )

    def finish_sweep(
        self,
        state: str,
        *,
        best: Mapping[str, Any] | None,
        study: Any | None = None,
        step: int = 0,
    ) -> None:
        """Final tags and artifacts on the parent run; ``study`` is the Optuna study if any.

        The best configuration's figures are logged at ``step`` (after every ``best_*`` value
        logged while the search ran, so that they are the latest).
        """
        run_id = self.parent_run_id
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
            self.client.log_text(run_id, yaml.safe_dump(document, sort_keys=False), "best.yaml")
            self._log(run_id, metrics=_best_figures(best, self.objective), step=step)
        if study is not None:
            self._log_study(run_id, study)
        self._log(run_id, tags={STATUS_TAG: state})
        self.client.set_terminated(run_id, status="FINISHED" if state == "succeeded" else "FAILED")

    def _log_study(self, run_id: str, study: Any) -> None:
        import optuna

        completed = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
        if len(completed) >= 2 and len(study.directions) == 1:
            try:
                importances: dict[str, Any] = dict(optuna.importance.get_param_importances(study))
            except (RuntimeError, ValueError) as error:  # e.g. a single distinct value
                importances = {"error": str(error)}
            self.client.log_text(
                run_id, json.dumps(importances, indent=2, default=float), "param_importances.json"
            )
        if completed and len(study.directions) == 1:
            import matplotlib

            matplotlib.use("Agg")
            from optuna.visualization.matplotlib import plot_optimization_history

            axes = plot_optimization_history(study)
            self.client.log_figure(run_id, axes.figure, "optimization_history.png")
            import matplotlib.pyplot as plt

            plt.close("all")


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
