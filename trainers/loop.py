"""A whole job on one rank, in plain PyTorch: epochs, checkpoints, the test pass at the end.

:func:`run_job` drives a :class:`~trainers.worker.WorkerSession` through one job: the same
calls the sweep runtime makes on its warm workers, without Ray. Tests run it in one process or
in two gloo processes; the runtime's worker group makes these calls remotely instead.

Example:
    >>> history = run_job(job, rank=0, world_size=1, device=torch.device("cpu"),  # doctest: +SKIP
    ...                   report=print)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch

from trainers.config import TrainJobConfig
from trainers.run import ModelWrapper
from trainers.worker import WorkerSession

__all__ = ["EpochReport", "Reporter", "run_job"]


@dataclass(frozen=True)
class EpochReport:
    """One epoch's metrics and this rank's checkpoint files (none after a divergence)."""

    metrics: dict[str, Any]
    files: dict[str, bytes] | None


Reporter = Callable[[EpochReport], None]


def run_job(
    job: TrainJobConfig,
    *,
    rank: int,
    world_size: int,
    device: torch.device,
    report: Reporter,
    wrap_model: ModelWrapper | None = None,
    resume: Mapping[str, bytes] | None = None,
    session: WorkerSession | None = None,
) -> list[dict[str, Any]]:
    """Train ``job`` as rank ``rank`` to its end (or divergence); returns the history.

    Every epoch is reported with a checkpoint; after the last, the test figures are added to
    its report. A run resumed from its final checkpoint reports that epoch again.

    Args:
        resume: checkpoint files to continue from (``WorkerSession.checkpoint``).
        session: a warm session to reuse (its cached data); a new one by default.
    """
    session = session or WorkerSession(
        rank=rank, world_size=world_size, device=device, wrap_model=wrap_model
    )
    session.start(job, resume)
    while True:
        metrics = session.run_epoch()
        if metrics["status"] == "diverged":
            report(EpochReport(metrics, None))
            break
        if metrics["status"] == "completed":
            metrics.update(session.finish())
        report(EpochReport(metrics, session.checkpoint()))
        if metrics["status"] == "completed":
            break
    assert session.run is not None
    history = list(session.run.history)
    session.end()
    return history
