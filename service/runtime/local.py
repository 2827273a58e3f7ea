"""The runtime on this machine, without the service: ``extrap run`` and ``extrap train``.

Storage and the MLflow store come from the same settings as the service's (``EXTRAP_HOME``,
``EXTRAP_STORAGE_PATH``, ``EXTRAP_MLFLOW_TRACKING_URI``); Ray is ``RAY_ADDRESS``'s cluster
or a local one started here.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from search_spaces import SweepSpec
from search_spaces.resources import trial_bundles
from search_spaces.study import StudySpec
from service.runtime.driver import SweepOutcome, SweepRejected, run_sweep
from service.runtime.events import CallbackSink
from service.runtime.ray_env import ensure_ray
from service.runtime.workers import WorkerGroup
from service.settings import Settings
from trainers.checkpoint import write_files
from trainers.config import TrainJobConfig

if TYPE_CHECKING:
    from service.runtime.study import StudyOutcome
    from service.wire.studies import StudyCellResult

__all__ = ["SweepRejected", "run_here", "study_here", "tracking_uri", "train_here"]

_PLACEMENT_TIMEOUT_S = 300.0


def tracking_uri() -> str:
    """Where ``extrap run`` records its runs (the service's MLflow store by default)."""
    return Settings().resolved_mlflow_tracking_uri


def run_here(
    spec: SweepSpec,
    *,
    sweep_id: str,
    on_event: Callable[[dict[str, Any]], None],
    resume: bool = False,
    add_trials: int = 0,
) -> SweepOutcome:
    """Run (or resume) a sweep to its end on this machine's Ray (or ``RAY_ADDRESS``'s).

    Raises:
        SweepRejected: a trial could never be placed on the cluster.
    """
    settings = Settings()
    settings.home.mkdir(parents=True, exist_ok=True)
    return run_sweep(
        spec,
        sweep_id=sweep_id,
        storage_path=settings.resolved_storage_path,
        tracking_uri=settings.resolved_mlflow_tracking_uri,
        events=CallbackSink(on_event),
        resume=resume,
        add_trials=add_trials,
    )


def train_here(
    job: TrainJobConfig, *, on_epoch: Callable[[dict[str, Any]], None]
) -> tuple[str, str | None]:
    """Train one job with fixed hyperparameters; ``on_epoch`` gets each epoch's metrics.

    The job runs on a worker group like a sweep's trial (the test figures come with the last
    epoch); the latest checkpoint is kept under ``<storage>/train-<time>/``.

    Returns:
        The checkpoint directory, and the error if training failed.
    """
    import ray
    from ray.util.placement_group import placement_group, remove_placement_group

    ensure_ray(1)
    directory = Path(Settings().resolved_storage_path) / f"train-{time.strftime('%Y%m%d-%H%M%S')}"
    bundles = trial_bundles(job)[1:]  # no trainable here: the workers' bundles only
    group_pg = placement_group(bundles, strategy="PACK")
    ray.get(group_pg.ready(), timeout=_PLACEMENT_TIMEOUT_S)
    group = WorkerGroup.start(job, group_pg)
    try:
        group.call("start", job, None)
        while True:
            metrics: dict[str, Any] = group.call("run_epoch")[0]
            status = metrics["status"]
            if status == "completed":
                metrics.update(group.call("finish")[0])
            if status != "diverged":
                files: dict[str, bytes] = {}
                for worker_files in group.call("checkpoint"):
                    files.update(worker_files)
                write_files(directory, files)
            on_epoch(metrics)
            if status != "running":
                return str(directory), "diverged" if status == "diverged" else None
    except Exception as error:  # a worker failed: say why, in one line
        return str(directory), f"{type(error).__name__}: {error}"
    finally:
        group.shutdown()
        remove_placement_group(group_pg)


def study_here(
    study: StudySpec,
    *,
    study_id: str,
    output_dir: Path | None,
    resume: bool,
    on_cell: Callable[[StudyCellResult], None],
) -> StudyOutcome:
    """Run a study's cells one after the other on this machine's Ray; render its outputs.

    Output defaults to ``<EXTRAP_HOME>/studies/<study id>/``.
    """
    from service.runtime.study import run_study

    settings = Settings()
    settings.home.mkdir(parents=True, exist_ok=True)
    ensure_ray(study.budget.max_concurrent_trials)
    return run_study(
        study,
        study_id=study_id,
        storage_path=settings.resolved_storage_path,
        tracking_uri=settings.resolved_mlflow_tracking_uri,
        output_dir=output_dir or settings.home / "studies" / study_id,
        resume=resume,
        on_cell=on_cell,
    )
