"""The per-worker training loop: one rank of a data-parallel job.

:func:`run_worker` is plain PyTorch (it needs an initialised process group when
``world_size > 1``) so that it can run under two gloo processes in a test;
:func:`train_fn_per_worker` is the thin Ray Train entry point that feeds it Ray's context,
device, ``prepare_model`` and ``ray.train.report``.

Per epoch every rank reports the same metrics (rank 0 evaluates on the whole test set and
broadcasts the figures): ``epoch``, ``step``, ``train_loss``, ``test_loss``, the workload's
metric, ``lr``, ``gamma``, ``epoch_seconds``, ``samples_per_second``, ``status`` and
``resumed_from_epoch``. With the metrics goes a checkpoint directory: rank 0 writes the model,
optimizer, schedulers, epoch and history (``state.pt``); every rank writes its own RNG states
and noise generator (``rank-<r>.pt``), so a restarted job continues where it stopped.
"""

from __future__ import annotations

import logging
import math
import os
import random
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, DistributedSampler

from trainers.config import TrainJobConfig
from trainers.optim import (
    ExtrapSGD,
    build_gamma_scheduler,
    build_lr_scheduler,
    current_gamma,
    linear_scaled_lr,
)
from trainers.step import ExtrapStepper
from trainers.workloads import default_data_dir, load_workload

__all__ = ["EpochReport", "Reporter", "run_worker", "train_fn_per_worker"]

log = logging.getLogger(__name__)

STATE_FILE = "state.pt"
# The fresh second batch is drawn by a sampler with its own shuffle, offset from the seed.
_FRESH_SEED_OFFSET = 7919


@dataclass(frozen=True)
class EpochReport:
    """What one epoch reports: metrics and, unless the run diverged, a checkpoint directory."""

    metrics: dict[str, Any]
    checkpoint_dir: Path | None


Reporter = Callable[[EpochReport], None]
ModelWrapper = Callable[[torch.nn.Module], torch.nn.Module]


def _unwrap(model: torch.nn.Module) -> torch.nn.Module:
    inner = getattr(model, "module", None)
    return inner if isinstance(inner, torch.nn.Module) else model


def _rng_state() -> dict[str, Any]:
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
        "numpy": np.random.get_state(),
        "python": random.getstate(),
    }


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if state.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])


def _broadcast(value: Any, world_size: int) -> Any:
    if world_size == 1:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def _micro_batches(loader: DataLoader[Any], accumulation: int) -> Iterator[list[Any]]:
    """Group the loader's micro-batches into optimizer steps of ``accumulation`` each."""
    group: list[Any] = []
    for batch in loader:
        group.append(batch)
        if len(group) == accumulation:
            yield group
            group = []


def _crash(epoch: int) -> None:
    """Testing aid: die like a lost machine, in the middle of the epoch after ``epoch``."""
    # Ray Train collects reports by polling the workers; wait for the last one to be taken.
    time.sleep(3.0)
    log.error("fail_after_epoch=%d: rank 0 exits abruptly (testing aid)", epoch)
    os._exit(17)


def run_worker(
    job: TrainJobConfig,
    *,
    rank: int,
    world_size: int,
    device: torch.device,
    report: Reporter,
    wrap_model: ModelWrapper | None = None,
    checkpoint_dir: Path | None = None,
    fail_after_epoch: int | None = None,
) -> list[dict[str, Any]]:
    """Train ``job`` as rank ``rank`` of ``world_size``; returns the metrics history.

    Args:
        job: the training-job config.
        rank, world_size: this worker's place in the (already initialised) process group.
        device: where the model lives (``cuda:<local rank>`` or ``cpu``).
        report: called once per epoch on every rank (a barrier under Ray Train).
        wrap_model: DDP wrapping (Ray's ``prepare_model``, or ``DistributedDataParallel``);
            identity when None.
        checkpoint_dir: a checkpoint written by an earlier run of this job: resume from it.
        fail_after_epoch: testing aid: rank 0 exits abruptly at the start of the epoch after
            this one (only when not resuming), to exercise restarts.
    """
    if job.precision == "bf16" and device.type == "cpu":
        log.info("precision=bf16 is for GPUs; training in fp32 on the CPU")
    autocast = torch.bfloat16 if job.precision == "bf16" and device.type == "cuda" else None

    workload = load_workload(job.workload, job.workload_options)
    data_dir = Path(job.data_dir) if job.data_dir else default_data_dir()
    train_set, test_set = workload.load_datasets(data_dir)

    torch.manual_seed(job.seed)  # identical initial weights on every rank
    model = workload.build_model().to(device)
    if wrap_model is not None:
        model = wrap_model(model)

    per_rank = len(train_set) // world_size  # type: ignore[arg-type]
    steps_per_epoch = per_rank // job.per_worker_batch_size
    if steps_per_epoch < 1:
        raise ValueError(
            f"global_batch_size={job.global_batch_size} is larger than the training set "
            f"({len(train_set)} samples); lower it or use more data"  # type: ignore[arg-type]
        )

    def loader(seed: int) -> tuple[DataLoader[Any], DistributedSampler[Any]]:
        sampler: DistributedSampler[Any] = DistributedSampler(
            train_set, num_replicas=world_size, rank=rank, shuffle=True, seed=seed, drop_last=True
        )
        data = DataLoader(
            train_set,
            batch_size=job.micro_batch_size,
            sampler=sampler,
            drop_last=True,
            collate_fn=workload.collate_fn,
        )
        return data, sampler

    train_loader, train_sampler = loader(job.seed)
    fresh = job.second_batch == "fresh"
    fresh_loader, fresh_sampler = loader(job.seed + _FRESH_SEED_OFFSET) if fresh else (None, None)

    options = job.optimizer
    peak_lr = linear_scaled_lr(options.lr, job.global_batch_size, job.schedule.reference_batch_size)
    optimizer = ExtrapSGD(
        model.parameters(),
        lr=peak_lr,
        momentum=options.momentum,
        nesterov=options.nesterov,
        weight_decay=options.weight_decay,
        extrapolation=options.extrapolation,
        gamma=options.gamma,
        gamma_ratio=options.gamma_ratio,
        noise_std=options.noise_std,
        noise=options.noise,
        extrapolation_momentum=options.extrapolation_momentum,
        trust_coefficient=options.trust_coefficient,
        seed=job.seed + rank,  # each rank draws different noise
    )
    total_steps = steps_per_epoch * job.epochs
    lr_scheduler = build_lr_scheduler(
        optimizer, job.schedule, steps_per_epoch=steps_per_epoch, epochs=job.epochs
    )
    gamma_scheduler = build_gamma_scheduler(
        optimizer,
        job.gamma_schedule.model_copy(update={"kind": job.gamma_schedule_kind}),
        base_gamma=options.gamma,
        total_steps=total_steps,
    )

    start_epoch, step, history = 0, 0, []
    resumed_from = 0
    if checkpoint_dir is not None:
        state = torch.load(checkpoint_dir / STATE_FILE, map_location=device, weights_only=False)
        _unwrap(model).load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        lr_scheduler.load_state_dict(state["lr_scheduler"])
        gamma_scheduler.load_state_dict(state["gamma_scheduler"])
        start_epoch, step, history = state["epoch"], state["step"], state["history"]
        resumed_from = start_epoch
        mine = checkpoint_dir / f"rank-{rank}.pt"
        if mine.exists():  # a restart with fewer ranks keeps rank 0's generator
            own = torch.load(mine, weights_only=False)
            _set_rng_state(own["rng"])
            optimizer.load_state_dict({**state["optimizer"], "noise_generator": own["noise"]})

    stepper = ExtrapStepper(
        model,
        optimizer,
        lambda m, batch: workload.loss(
            m, workload.train_transform(workload.to_device(batch, device))
        ),
        scope=job.extrapolation_scope,
        clip_grad_norm=job.clip_grad_norm,
        clip_extrapolation_grad_norm=job.clip_extrapolation_grad_norm,
        divergence_bound=job.divergence_loss_bound,
        autocast_dtype=autocast,
    )

    if checkpoint_dir is not None and start_epoch >= job.epochs and history:
        # Restarted after its last epoch (e.g. its sweep driver died before recording the end):
        # say the final figures again instead of ending silently; nothing is trained.
        report(EpochReport(dict(history[-1]), None))
        return history

    for epoch in range(start_epoch, job.epochs):
        train_sampler.set_epoch(epoch)
        if fresh_sampler is not None:
            fresh_sampler.set_epoch(epoch)
        model.train()
        started = time.perf_counter()
        loss_sum, units, samples, diverged = 0.0, 0, 0, False
        seconds = _micro_batches(fresh_loader, job.accumulation_steps) if fresh_loader else None
        for micro in _micro_batches(train_loader, job.accumulation_steps):
            if fail_after_epoch == epoch and rank == 0 and checkpoint_dir is None:
                _crash(epoch)
            second = next(seconds) if seconds is not None else None
            result = stepper.step(micro, second)
            step += 1
            if result.diverged:
                diverged = True
                loss_sum, units = result.loss, 1
                break
            loss_sum += result.loss * result.units
            units += result.units
            samples += job.global_batch_size
            lr_scheduler.step()
            gamma_scheduler.step()
        epoch_seconds = time.perf_counter() - started
        group = optimizer.param_groups[0]
        metrics: dict[str, Any] = {
            "epoch": epoch + 1,
            "step": step,
            "train_loss": loss_sum / max(units, 1),
            "lr": float(group["lr"]),
            "gamma": current_gamma(group),
            "epoch_seconds": epoch_seconds,
            "samples_per_second": samples / epoch_seconds if epoch_seconds > 0 else 0.0,
            "resumed_from_epoch": resumed_from,
        }
        if diverged:
            metrics["status"] = "diverged"
            history.append(metrics)
            report(EpochReport(metrics, None))
            log.warning("diverged at epoch %d (train loss %s); stopping", epoch + 1, loss_sum)
            return history
        evaluation = None
        if rank == 0:
            evaluation = workload.evaluate(
                _unwrap(model), test_set, device=device, batch_size=max(job.micro_batch_size, 256)
            )
        metrics.update(_broadcast(evaluation, world_size))
        metrics["status"] = "completed" if epoch + 1 == job.epochs else "running"
        history.append(metrics)
        with tempfile.TemporaryDirectory(prefix="extrap-ckpt-") as tmp:
            directory = Path(tmp)
            if rank == 0:
                torch.save(
                    {
                        "model": _unwrap(model).state_dict(),
                        "optimizer": optimizer.state_dict(),
                        "lr_scheduler": lr_scheduler.state_dict(),
                        "gamma_scheduler": gamma_scheduler.state_dict(),
                        "epoch": epoch + 1,
                        "step": step,
                        "history": history,
                        "job": job.model_dump(mode="json"),
                    },
                    directory / STATE_FILE,
                )
            torch.save(
                {"rng": _rng_state(), "noise": optimizer.state_dict()["noise_generator"]},
                directory / f"rank-{rank}.pt",
            )
            report(EpochReport(dict(metrics), directory))
    return history


def _nan_safe(metrics: dict[str, Any]) -> dict[str, Any]:
    """Ray and MLflow reject non-finite floats in places; report them as strings instead."""
    return {
        key: (repr(value) if isinstance(value, float) and not math.isfinite(value) else value)
        for key, value in metrics.items()
    }


def train_fn_per_worker(config: dict[str, Any]) -> list[dict[str, Any]]:
    """Ray Train entry point: ``TorchTrainer(train_fn_per_worker, train_loop_config=...)``.

    ``config`` holds ``"job"`` (a :class:`TrainJobConfig` as a dict) and optionally
    ``"fail_after_epoch"`` (a testing aid, see :func:`run_worker`).
    """
    import ray.train
    import ray.train.torch

    job = TrainJobConfig.model_validate(config["job"])
    context = ray.train.get_context()
    checkpoint = ray.train.get_checkpoint()

    def report(epoch: EpochReport) -> None:
        saved = None
        if epoch.checkpoint_dir is not None:
            saved = ray.train.Checkpoint.from_directory(str(epoch.checkpoint_dir))
        ray.train.report(_nan_safe(epoch.metrics), checkpoint=saved)

    def wrap(model: torch.nn.Module) -> torch.nn.Module:
        # Buffers (BatchNorm statistics) stay rank-local: broadcasting them would add a
        # collective to every forward; rank 0's are evaluated and checkpointed.
        return ray.train.torch.prepare_model(
            model, parallel_strategy_kwargs={"broadcast_buffers": False}
        )

    resume: AbstractContextManager[str | None] = (
        checkpoint.as_directory() if checkpoint is not None else nullcontext(None)
    )
    with resume as directory:
        return run_worker(
            job,
            rank=context.get_world_rank(),
            world_size=context.get_world_size(),
            device=ray.train.torch.get_device(),
            report=report,
            wrap_model=wrap,
            checkpoint_dir=Path(directory) if directory else None,
            fail_after_epoch=config.get("fail_after_epoch"),
        )
