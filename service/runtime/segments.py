"""The Tune experiments of a sweep: one per segment of trials, resumable from storage.

Layout on storage (a local path, a shared filesystem or an object-store URI)::

    <storage>/<sweep id>/trials-0000/   Tune experiment of trials 1..N: trial results and
                                        checkpoints (resumable)
    <storage>/<sweep id>/trials-0020/   a later segment added by ``add_trials`` (21..), whose
                                        Optuna study continues the previous segment's
    <storage>/<sweep id>/confirm-0000/  the confirmation trials (no searcher, no pruning);
                                        a later ``confirm-0001`` confirms configurations that
                                        entered the top after ``add_trials``

A segment's trials are :class:`~service.runtime.trial.SweepTrainable` actors reused from trial
to trial (``reuse_actors=True``); Tune retries a crashed trial ``search.max_retries`` times
from its latest checkpoint, on a new worker group.
"""

from __future__ import annotations

import logging
import pickle
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ray import tune

from search_spaces import ParamSpec, SweepSpec
from service.runtime.callbacks import SweepCallback, SweepStopper
from service.runtime.trial import SweepTrainable, TrialContext, trial_resources

__all__ = [
    "CONFIRM_PREFIX",
    "SEGMENT_PREFIX",
    "confirmation_segments",
    "existing_segments",
    "run_confirmations",
    "run_segment",
    "searcher_state_readable",
    "segment_end",
    "segment_study",
]

log = logging.getLogger(__name__)

SEGMENT_PREFIX = "trials-"
CONFIRM_PREFIX = "confirm-"
_MARKER = "extrap-segment.txt"


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
    multi = len(objectives) > 1
    searcher = OptunaSearch(
        space=_DefineByRun(spec.space),
        sampler=build_sampler(spec.search, spec.space, num_objectives=len(objectives)),
        metric=[o.metric for o in objectives] if multi else objectives[0].metric,
        mode=[o.mode for o in objectives] if multi else objectives[0].mode,
    )
    if previous_segment is not None:  # keep the search history across segments
        searcher.restore_from_dir(previous_segment)
    return searcher


def existing_segments(sweep_root: str) -> list[tuple[int, str]]:
    """The sweep's segments on storage that Tune can restore, as (first trial offset, path).

    A segment whose Optuna searcher state cannot be read (the driver was killed while Tune
    copied it to storage: an empty file) would make Tune restart it from nothing and wait
    forever for trials its search generator believes it already made; it is set aside
    (renamed ``<path>.unrestorable-<n>``) and ends the list: the driver runs its unfinished
    share again as a new segment.
    """
    found: list[tuple[int, str]] = []
    offset = 0
    while True:
        path = f"{sweep_root}/{SEGMENT_PREFIX}{offset:04d}"
        if not tune.Tuner.can_restore(path):
            return found
        if not searcher_state_readable(path):
            _set_aside(path)
            return found
        found.append((offset, path))
        offset = segment_end(offset, path)


def searcher_state_readable(path: str) -> bool:
    """Whether the segment's newest searcher state (the one Tune restores) unpickles."""
    if "://" in path:
        return True  # object storage: Tune's own restore decides
    states = sorted(Path(path).glob("searcher-state-*.pkl"))
    if not states:
        return False
    try:
        with states[-1].open("rb") as state:
            pickle.load(state)  # written by this sweep's own driver
    except Exception as error:
        log.warning("the searcher state %s cannot be read: %s", states[-1], error)
        return False
    return True


def _set_aside(path: str) -> None:
    if "://" in path:
        return
    number = 1
    while Path(f"{path}.unrestorable-{number}").exists():
        number += 1
    Path(path).rename(f"{path}.unrestorable-{number}")
    log.warning(
        "segment %s cannot be restored (its searcher state is unreadable): set aside as "
        "%s.unrestorable-%d; its unfinished trials run again in a new segment",
        path,
        path,
        number,
    )


def segment_end(offset: int, path: str) -> int:
    """The offset after the segment at ``path`` (its size is written when it starts)."""
    marker = Path(path) / _MARKER
    if marker.is_file():
        return offset + int(marker.read_text().strip())
    return offset + 10**6  # unknown size: no later segment can follow it


def _trainable(spec: SweepSpec) -> Any:
    context = TrialContext(
        job=spec.job,
        space_names=tuple(spec.space),
        objective=spec.objective.metric,
        mode=spec.objective.mode,
        checkpoint_every=spec.search.checkpoint_every,
    )
    return tune.with_resources(
        tune.with_parameters(SweepTrainable, context=context), trial_resources(spec.job)
    )


def _run_config(spec: SweepSpec, sweep_id: str, name: str, sweep_root: str) -> Any:
    objective = spec.objective
    return tune.RunConfig(
        name=name,
        storage_path=sweep_root,
        callbacks=[SweepCallback(sweep_id)],
        stop=SweepStopper(sweep_id),
        failure_config=tune.FailureConfig(max_failures=spec.search.max_retries),
        checkpoint_config=tune.CheckpointConfig(
            num_to_keep=spec.search.keep_checkpoints,
            checkpoint_score_attribute=objective.metric,
            checkpoint_score_order=objective.mode,
            checkpoint_at_end=True,
        ),
        verbose=0,
    )


def run_segment(
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
    trainable = _trainable(spec)
    if num_trials == 0:
        tuner = tune.Tuner.restore(path, trainable=trainable, resume_errored=True)
        return tuner.fit()
    tuner = tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(
            search_alg=_searcher(spec, previous),
            scheduler=_scheduler(spec),
            num_samples=num_trials,
            max_concurrent_trials=spec.search.max_concurrent_trials,
            reuse_actors=True,
            trial_dirname_creator=lambda trial: trial.trial_id,
        ),
        run_config=_run_config(spec, sweep_id, f"{SEGMENT_PREFIX}{offset:04d}", sweep_root),
    )
    if "://" not in path:
        Path(path).mkdir(parents=True, exist_ok=True)
        (Path(path) / _MARKER).write_text(str(num_trials))
    return tuner.fit()


def confirmation_segments(sweep_root: str) -> list[str]:
    """The sweep's confirmation experiments on storage, in order."""
    found: list[str] = []
    while tune.Tuner.can_restore(path := f"{sweep_root}/{CONFIRM_PREFIX}{len(found):04d}"):
        found.append(path)
    return found


def run_confirmations(
    spec: SweepSpec, sweep_id: str, sweep_root: str, *, configs: list[dict[str, Any]], path: str
) -> Any:
    """Run confirmation trials (each config one trial), or restore them (``configs=[]``).

    No searcher (they are not reported to Optuna) and no pruning: each runs the full budget.
    """
    trainable = _trainable(spec)
    if not configs:
        return tune.Tuner.restore(path, trainable=trainable, resume_errored=True).fit()
    from service.runtime.trial import CONFIRM_KEY

    tuner = tune.Tuner(
        trainable,
        param_space={CONFIRM_KEY: tune.grid_search([config[CONFIRM_KEY] for config in configs])},
        tune_config=tune.TuneConfig(
            num_samples=1,
            max_concurrent_trials=spec.search.max_concurrent_trials,
            reuse_actors=True,
            trial_dirname_creator=lambda trial: trial.trial_id,
        ),
        run_config=_run_config(spec, sweep_id, Path(path).name, sweep_root),
    )
    return tuner.fit()


def segment_study(segment: str) -> Any | None:
    """The Optuna study as Tune saved it with the segment's searcher state."""
    from ray.tune.search.optuna import OptunaSearch

    searcher = OptunaSearch()
    try:
        searcher.restore_from_dir(segment)
    except (FileNotFoundError, RuntimeError, ValueError) as error:
        log.warning("no Optuna study to summarise in %s: %s", segment, error)
        return None
    return getattr(searcher, "_ot_study", None)
