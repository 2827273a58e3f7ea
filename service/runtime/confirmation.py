"""Confirming the winners on fresh seeds, and the sweep's best configuration.

After the search (``search.confirm: {top_k, seeds}``), the ``top_k`` best configurations among
the COMPLETED search trials (pruned, failed and diverged ones never qualify), ranked by the
objective, are retrained ``seeds`` times each: full epoch budget, no pruning, the same training
split, seeds ``job.seed + 1000 * j`` for ``j = 1 … seeds`` (fresh, and the same for every
configuration). These confirmation trials are not reported to Optuna (they run in a Tune
experiment of their own) and do not enter parameter importances.

The sweep's best is then the confirmed configuration with the best MEAN validation figure over
its confirmation runs, reported with the sample standard deviation (n − 1) of the validation
and test figures and n; its model is the median-validation run's. Without ``confirm`` the best
is the single best trial, and the summary says plainly that it rests on one seed.

Example:
    >>> confirmation_seeds(job_seed=0, seeds=3)
    [1000, 2000, 3000]
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from search_spaces import SweepSpec, get_searchable
from search_spaces.objective import VALIDATION_PREFIX
from service.runtime.callbacks import LiveSweep, TrialRecord
from service.runtime.trial import CONFIRM_KEY

__all__ = [
    "CONFIRM_KEY",
    "ConfirmationRun",
    "best_summary",
    "confirmation_seeds",
    "missing_confirmations",
    "test_figure",
]

_SEED_STRIDE = 1000


def confirmation_seeds(job_seed: int, seeds: int) -> list[int]:
    """The seeds of a configuration's confirmation runs."""
    return [job_seed + _SEED_STRIDE * j for j in range(1, seeds + 1)]


def test_figure(spec: SweepSpec, workload_metric: str) -> str:
    """The test figure reported beside the objective: ``val_x`` → ``test_x``."""
    metric = spec.objective.metric
    if metric.startswith(VALIDATION_PREFIX):
        return "test_" + metric.removeprefix(VALIDATION_PREFIX)
    return "test_" + workload_metric


@dataclass(frozen=True)
class ConfirmationRun:
    """One confirmation trial to run: a configuration (by its search trial) and a seed."""

    confirms: str
    seed: int
    params: dict[str, Any]

    def config(self) -> dict[str, Any]:
        return {CONFIRM_KEY: {"confirms": self.confirms, "seed": self.seed, "params": self.params}}


def _sign(spec: SweepSpec) -> float:
    return 1.0 if spec.objective.mode == "max" else -1.0


def top_configurations(live: LiveSweep, top_k: int) -> list[TrialRecord]:
    """The ``top_k`` best completed search trials with distinct values, best first."""
    objective, sign = live.objective, _sign(live.spec)
    ranked = sorted(
        (
            t
            for t in live.trials.values()
            if t.kind == "search" and t.status == "completed" and objective in t.last
        ),
        key=lambda t: (-sign * t.last[objective], t.number),
    )
    chosen: list[TrialRecord] = []
    seen: set[str] = set()
    for record in ranked:
        key = json.dumps(record.params, sort_keys=True, default=str)
        if key not in seen:
            seen.add(key)
            chosen.append(record)
        if len(chosen) == top_k:
            break
    return chosen


def _runs_of(live: LiveSweep, trial_id: str) -> list[TrialRecord]:
    return [t for t in live.trials.values() if t.kind == "confirmation" and t.confirms == trial_id]


def missing_confirmations(live: LiveSweep) -> list[ConfirmationRun]:
    """The confirmation runs the current top configurations still lack (or that failed)."""
    confirm = live.spec.search.confirm
    if confirm is None:
        return []
    missing = []
    for record in top_configurations(live, confirm.top_k):
        done = {t.seed for t in _runs_of(live, record.trial_id) if t.status == "completed"}
        for seed in confirmation_seeds(live.spec.job.seed, confirm.seeds):
            if seed not in done:
                missing.append(ConfirmationRun(record.trial_id, seed, dict(record.params)))
    return missing


def _stats(values: Sequence[float]) -> dict[str, float | int | None]:
    return {
        "mean": statistics.fmean(values) if values else None,
        "std": statistics.stdev(values) if len(values) > 1 else None,
        "n": len(values),
    }


def _median_run(runs: list[TrialRecord], objective: str, sign: float) -> TrialRecord:
    ordered = sorted(runs, key=lambda t: (-sign * t.last[objective], t.number))
    return ordered[(len(ordered) - 1) // 2]


def best_summary(live: LiveSweep, workload_metric: str) -> dict[str, Any] | None:
    """The sweep's best configuration (see the module docstring), or None if there is none."""
    spec = live.spec
    objective, sign = live.objective, _sign(spec)
    test_name = test_figure(spec, workload_metric)
    confirm = spec.search.confirm
    if confirm is not None:
        candidates = []
        for record in top_configurations(live, confirm.top_k):
            runs = [
                t
                for t in _runs_of(live, record.trial_id)
                if t.status == "completed" and objective in t.last
            ]
            if runs:
                candidates.append((record, runs))
        if candidates:
            record, runs = max(
                candidates,
                key=lambda c: sign * statistics.fmean(r.last[objective] for r in c[1]),
            )
            model_run = _median_run(runs, objective, sign)
            validation = _stats([r.last[objective] for r in runs])
            tests = [r.last[test_name] for r in runs if test_name in r.last]
            return _summary(
                spec,
                record,
                value=float(validation["mean"] or 0.0),
                model_run=model_run,
                confirmation={
                    "n": len(runs),
                    "seeds": [r.seed for r in runs],
                    "trial_ids": [r.trial_id for r in runs],
                    "validation": {"metric": objective, **validation},
                    "test": {"metric": test_name, **_stats(tests)},
                },
            )
    searched = [
        t
        for t in live.trials.values()
        if t.kind == "search" and t.status in ("completed", "pruned") and objective in t.last
    ]
    if not searched:
        return None
    record = max(searched, key=lambda t: (sign * t.last[objective], -t.number))
    return _summary(spec, record, value=record.last[objective], model_run=record)


def _summary(
    spec: SweepSpec,
    record: TrialRecord,
    *,
    value: float,
    model_run: TrialRecord,
    confirmation: dict[str, Any] | None = None,
) -> dict[str, Any]:
    summary: dict[str, Any] = {
        "trial_id": record.trial_id,
        "number": record.number,
        "value": value,
        "params": record.params,
        "metrics": record.last,
        "job_overrides": {get_searchable(k).path: v for k, v in record.params.items()},
        "confirmation": confirmation,
        "note": None
        if confirmation
        else "this configuration rests on one seed: confirm it (search.confirm) before "
        "trusting a difference of a point or two",
        "model_trial_id": model_run.trial_id,
        "checkpoint_uri": model_run.checkpoint,
    }
    return summary
