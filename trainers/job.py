"""One training job on Ray Train: ``TorchTrainer`` around the per-worker loop.

Used by ``extrap train job.yaml`` (a job with fixed hyperparameters on a local Ray) and by the
sweep driver (each trial builds its trainer with :func:`build_trainer`).

Example:
    >>> job = TrainJobConfig(workload="mnist1d", global_batch_size=256, epochs=2)
    >>> result = run_job(job, storage_path="/tmp/extrap-runs")  # doctest: +SKIP
    >>> [m["epoch"] for m in result.history]  # doctest: +SKIP
    [1, 2]
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from trainers.config import TrainJobConfig

if TYPE_CHECKING:
    import ray.train
    from ray.train.torch import TorchTrainer

__all__ = ["JobResult", "build_trainer", "metrics_file_callback", "run_job", "scaling_config"]


def scaling_config(job: TrainJobConfig) -> ray.train.ScalingConfig:
    """Workers and their resources; gloo on CPU, NCCL when GPUs are asked for."""
    import ray.train

    resources: dict[str, float] = {"CPU": job.cpus_per_worker}
    if job.gpus_per_worker > 0:
        resources["GPU"] = job.gpus_per_worker
    return ray.train.ScalingConfig(
        num_workers=job.workers,
        use_gpu=job.gpus_per_worker > 0,
        resources_per_worker=resources,
    )


def _metrics_file_callback_class() -> type:
    from ray.train import UserCallback

    class _MetricsFile(UserCallback):
        """Appends rank 0's metrics of every report to a JSON-lines file (on the controller)."""

        def __init__(self, path: str) -> None:
            self.path = path

        def after_report(
            self, run_context: Any, metrics: list[dict[str, Any]], checkpoint: Any
        ) -> None:
            if metrics:
                with open(self.path, "a", encoding="utf-8") as out:
                    out.write(json.dumps(metrics[0], default=str) + "\n")

    return _MetricsFile


def metrics_file_callback(path: str | Path) -> Any:
    """A Ray Train callback writing each epoch's metrics to ``path`` (one JSON object a line)."""
    return _metrics_file_callback_class()(str(path))


def build_trainer(
    job: TrainJobConfig,
    *,
    name: str,
    storage_path: str,
    callbacks: Sequence[Any] = (),
    max_failures: int = 0,
    keep_checkpoints: int | None = 2,
    checkpoint_score: tuple[str, str] | None = None,
    resume_from_checkpoint: ray.train.Checkpoint | None = None,
    extra_loop_config: dict[str, Any] | None = None,
) -> TorchTrainer:
    """A ``TorchTrainer`` for ``job``; ``fit()`` runs it.

    Args:
        name: the run's name (its folder under ``storage_path``).
        storage_path: where checkpoints go (a shared filesystem or object-store URI on a
            cluster).
        callbacks: Ray Train ``UserCallback``s (e.g. Tune's report callback in a trial).
        max_failures: worker-group restarts from the latest checkpoint after a crash.
        keep_checkpoints: checkpoints kept; None keeps all. Ray Train always keeps the latest
            as well, so with ``checkpoint_score`` this keeps the last and the best.
        checkpoint_score: ``(metric, "max" | "min")`` ranking checkpoints for retention.
        resume_from_checkpoint: start from this checkpoint instead of from scratch.
        extra_loop_config: extra keys for :func:`trainers.loop.train_fn_per_worker`.
    """
    import ray.train
    from ray.train.torch import TorchTrainer

    from trainers.loop import train_fn_per_worker

    return TorchTrainer(
        train_fn_per_worker,  # type: ignore[arg-type]  # Ray keeps its return value
        train_loop_config={"job": job.model_dump(mode="json"), **(extra_loop_config or {})},
        scaling_config=scaling_config(job),
        run_config=ray.train.RunConfig(
            name=name,
            storage_path=storage_path,
            failure_config=ray.train.FailureConfig(max_failures=max_failures),
            checkpoint_config=ray.train.CheckpointConfig(
                num_to_keep=keep_checkpoints,
                checkpoint_score_attribute=checkpoint_score[0] if checkpoint_score else None,
                checkpoint_score_order=checkpoint_score[1] if checkpoint_score else "max",
            ),
            callbacks=list(callbacks),
        ),
        resume_from_checkpoint=resume_from_checkpoint,
    )


@dataclass(frozen=True)
class JobResult:
    """The outcome of :func:`run_job`: per-epoch metrics and where the run's files are."""

    history: list[dict[str, Any]]
    path: str
    checkpoint_path: str | None
    error: str | None


def run_job(
    job: TrainJobConfig,
    *,
    storage_path: str | Path,
    name: str | None = None,
    metrics_file: str | Path | None = None,
    max_failures: int = 0,
    extra_loop_config: dict[str, Any] | None = None,
) -> JobResult:
    """Run ``job`` to the end on the Ray cluster this process is connected to.

    ``ray.init`` is called first if needed (a local Ray on a laptop, the cluster under
    ``RAY_ADDRESS``). Metrics are appended to ``metrics_file`` as they arrive.
    """
    import ray

    if not ray.is_initialized():
        ray.init()
    run_name = name or f"{job.workload}-{uuid.uuid4().hex[:8]}"
    callbacks = [metrics_file_callback(metrics_file)] if metrics_file else []
    trainer = build_trainer(
        job,
        name=run_name,
        storage_path=str(storage_path),
        callbacks=callbacks,
        max_failures=max_failures,
        extra_loop_config=extra_loop_config,
    )
    result = trainer.fit()
    returned = getattr(result, "return_value", None)  # Train V2's Result has it
    history = returned if isinstance(returned, list) else []
    return JobResult(
        history=history,
        path=str(result.path),
        checkpoint_path=result.checkpoint.path if result.checkpoint else None,
        error=str(result.error) if result.error else None,
    )
