"""Building one trial's training from its job: model, optimizer, schedules and the stepper.

Everything a trial owns is made here, fresh, from the job and its seed: nothing carries over
from an earlier trial in the same worker process (its data aside, which is read-only), so a
trial on a warm worker is the same as on a fresh one.

Example:
    >>> run = build_run(job, workload, train_size=8000, rank=0, world_size=1,  # doctest: +SKIP
    ...                 device=torch.device("cpu"))
    >>> run.plan.steps_per_epoch  # doctest: +SKIP
    15
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from trainers.batches import EpochPlan
from trainers.config import TrainJobConfig
from trainers.optim import ExtrapSGD, GammaScheduler, build_lr_scheduler, linear_scaled_lr
from trainers.step import CONTROL_SYNC_EVERY, ExtrapStepper
from trainers.workloads import Workload

__all__ = ["ModelWrapper", "TrialRun", "build_run", "seed_everything", "unwrap"]

log = logging.getLogger(__name__)

ModelWrapper = Callable[[torch.nn.Module], torch.nn.Module]

# Per-rank random streams (augmentation, dropout) start from the trial's seed and the rank.
_RANK_STREAM = 1000


def seed_everything(seed: int) -> None:
    """Seed torch (every device), NumPy and Python's ``random`` from one number."""
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    random.seed(seed)


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The module inside a DDP wrapper, else ``model``."""
    inner = getattr(model, "module", None)
    return inner if isinstance(inner, torch.nn.Module) else model


@dataclass
class TrialRun:
    """One trial's training state on one rank (see :func:`build_run`).

    Attributes:
        epoch: epochs completed; ``step``: optimizer steps taken.
        gradient_units: samples (or tokens) through a backward pass so far, all ranks.
        seconds: wall time of its epochs so far (training and validation), across restarts.
        history: the metrics of every completed epoch.
        final: the test figures, once the last epoch is done.
        resumed_from: the epoch this process's run started from (0 unless resumed).
        start_step: the step it started from.
    """

    job: TrainJobConfig
    workload: Workload[Any]
    model: torch.nn.Module
    optimizer: ExtrapSGD
    lr_scheduler: Any
    gamma_scheduler: GammaScheduler
    stepper: ExtrapStepper
    plan: EpochPlan
    rank: int
    world_size: int
    device: torch.device
    epoch: int = 0
    step: int = 0
    gradient_units: int = 0
    seconds: float = 0.0
    history: list[dict[str, Any]] = field(default_factory=list)
    final: dict[str, Any] = field(default_factory=dict)
    resumed_from: int = 0
    start_step: int = 0

    @property
    def done(self) -> bool:
        return self.epoch >= self.job.epochs


def build_run(
    job: TrainJobConfig,
    workload: Workload[Any],
    *,
    train_size: int,
    rank: int,
    world_size: int,
    device: torch.device,
    wrap_model: ModelWrapper | None = None,
) -> TrialRun:
    """Build a trial from scratch: identical initial weights on every rank (``job.seed``).

    Raises:
        ValueError: the global batch does not fit in the training split.
    """
    if job.precision == "bf16" and device.type == "cpu":
        log.info("precision=bf16 is for GPUs; training in fp32 on the CPU")
    autocast = torch.bfloat16 if job.precision == "bf16" and device.type == "cuda" else None
    plan = EpochPlan(
        num_samples=train_size,
        world_size=world_size,
        rank=rank,
        micro_batch=job.micro_batch_size,
        accumulation=job.accumulation_steps,
    )
    if plan.steps_per_epoch < 1:
        raise ValueError(
            f"global_batch_size={job.global_batch_size} is larger than the training split "
            f"({train_size} samples); lower it or use more data"
        )
    seed_everything(job.seed)  # identical initial weights on every rank
    model = workload.build_model().to(device)
    seed_everything(job.seed + _RANK_STREAM * (rank + 1))
    if wrap_model is not None:
        model = wrap_model(model)
    options = job.optimizer
    peak_lr = linear_scaled_lr(options.lr, job.global_batch_size, job.schedule.reference_batch_size)
    optimizer = ExtrapSGD(
        model.parameters(),
        **{**options.model_dump(), "lr": peak_lr},
        seed=job.seed + rank,  # each rank draws different noise
    )
    lr_scheduler = build_lr_scheduler(
        optimizer,
        steps_per_epoch=plan.steps_per_epoch,
        epochs=job.epochs,
        **job.schedule.lr_schedule_options(),
    )
    gamma_scheduler = GammaScheduler(
        optimizer,
        job.gamma_schedule_kind,
        total_steps=plan.steps_per_epoch * job.epochs,
        final_fraction=job.gamma_schedule.final_fraction,
    )

    def loss(model: torch.nn.Module, batch: Any) -> Any:
        return workload.loss(model, workload.train_transform(batch))

    stepper = ExtrapStepper(
        model,
        optimizer,
        loss,
        scope=job.extrapolation_scope,
        clip_grad_norm=job.clip_grad_norm,
        clip_extrapolation_grad_norm=job.clip_extrapolation_grad_norm,
        divergence_bound=job.divergence_loss_bound,
        autocast_dtype=autocast,
        units_equal_across_ranks=workload.units_equal_across_ranks,
        sync_every=CONTROL_SYNC_EVERY,
    )
    return TrialRun(
        job=job,
        workload=workload,
        model=model,
        optimizer=optimizer,
        lr_scheduler=lr_scheduler,
        gamma_scheduler=gamma_scheduler,
        stepper=stepper,
        plan=plan,
        rank=rank,
        world_size=world_size,
        device=device,
    )
