"""One epoch of one rank: the optimizer steps over its share of the training split, then the
validation pass; and the test pass once a trial's last epoch is done.

Plain PyTorch: the process group (if any) is already initialised; every rank calls
:func:`train_epoch` the same number of times (the stepper's collectives are barriers).
Validation and test figures are computed on rank 0 alone (no collective), on the unwrapped
model, in large batches.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

from trainers.batches import FRESH_SEED_OFFSET
from trainers.optim import effective_gamma
from trainers.run import TrialRun, unwrap
from trainers.step import StepResult
from trainers.workloads import TensorSplit

__all__ = ["EpochOutcome", "epoch_metrics", "eval_batch_size", "evaluate_split", "train_epoch"]

# Evaluation needs no gradients: far larger batches than training are fine.
_EVAL_BATCH_FACTOR = 4
_EVAL_BATCH_MIN = 1024


@dataclass(frozen=True)
class EpochOutcome:
    """What the optimizer steps of one epoch measured (identical on every rank but timings).

    Attributes:
        train_loss: mean training loss over the epoch's steps (the diverged step's if any).
        diverged: a step's loss was non-finite or above the bound; the epoch stopped there.
        samples: rows of the global batches trained on.
        seconds: wall time of the steps.
        first_step_time: ``time.time()`` after the first optimizer step of this process's
            trial (None unless that step was in this epoch).
    """

    train_loss: float
    diverged: bool
    samples: int
    seconds: float
    first_step_time: float | None


def eval_batch_size(run: TrialRun) -> int:
    """The batch size of validation and test passes."""
    return max(_EVAL_BATCH_FACTOR * run.job.micro_batch_size, _EVAL_BATCH_MIN)


def train_epoch(run: TrialRun, train: TensorSplit) -> EpochOutcome:
    """Run epoch ``run.epoch`` (0-based) of optimizer steps; advances ``run.step``."""
    job = run.job
    run.model.train()
    fresh = (
        run.plan.steps(job.seed + FRESH_SEED_OFFSET, run.epoch, run.device)
        if job.second_batch == "fresh"
        else None
    )
    first_step_time: float | None = None
    loss_sum, units, samples = 0.0, 0, 0
    started = time.perf_counter()

    def record(result: StepResult) -> bool:  # True when the result diverged
        nonlocal loss_sum, units
        run.gradient_units += result.gradient_units
        loss_sum += result.loss * result.units
        units += result.units
        return result.diverged

    for rows in run.plan.steps(job.seed, run.epoch, run.device):
        micro = [train.take(index) for index in rows]
        second = [train.take(index) for index in next(fresh)] if fresh is not None else None
        result = run.stepper.step(micro, second)
        if first_step_time is None and run.step == run.start_step:
            first_step_time = time.time()
        run.step += 1
        samples += job.global_batch_size
        if result is not None and record(result):
            return _diverged(result, samples, started, first_step_time)
        run.lr_scheduler.step()
        run.gamma_scheduler.step()
    result = run.stepper.flush()  # the epoch's last window
    if result is not None and record(result):
        return _diverged(result, samples, started, first_step_time)
    seconds = time.perf_counter() - started
    return EpochOutcome(loss_sum / max(units, 1), False, samples, seconds, first_step_time)


def _diverged(
    result: StepResult, samples: int, started: float, first_step_time: float | None
) -> EpochOutcome:
    elapsed = time.perf_counter() - started
    return EpochOutcome(result.loss, True, samples, elapsed, first_step_time)


def evaluate_split(run: TrialRun, split: TensorSplit, prefix: str) -> dict[str, float]:
    """The workload's figures on ``split``, named ``<prefix>_loss``, ``<prefix>_<metric>``."""
    figures = run.workload.evaluate(
        unwrap(run.model), split, device=run.device, batch_size=eval_batch_size(run)
    )
    return {f"{prefix}_{name}": float(value) for name, value in figures.items()}


def epoch_metrics(run: TrialRun, outcome: EpochOutcome) -> dict[str, Any]:
    """The report of a finished epoch (before its validation figures are added)."""
    group = run.optimizer.param_groups[0]
    seconds = outcome.seconds
    metrics: dict[str, Any] = {
        "epoch": run.epoch,
        "step": run.step,
        "train_loss": outcome.train_loss,
        "lr": float(group["lr"]),
        "gamma": effective_gamma(group),
        "train_seconds": seconds,
        "samples_per_second": outcome.samples / seconds if seconds > 0 else 0.0,
        "samples_seen": run.step * run.job.global_batch_size,
        "gradient_evaluations": run.gradient_units,
        "resumed_from_epoch": run.resumed_from,
    }
    if outcome.first_step_time is not None:
        metrics["first_step_time"] = outcome.first_step_time
    if outcome.diverged or not math.isfinite(outcome.train_loss):
        metrics["status"] = "diverged"
    else:
        metrics["status"] = "completed" if run.done else "running"
    return metrics
