"""One rank's long-lived session: its data stays loaded, trial after trial.

A :class:`WorkerSession` lives as long as its process (a warm worker of a sweep, or one
gloo process in a test). It keeps the workload's splits on its device, keyed by what they
were loaded from, so a sweep's trials load them once. Each trial is :meth:`start`-ed from
its job (and optionally checkpoint files), trained epoch by epoch with :meth:`run_epoch`,
tested once with :meth:`finish` after its last epoch, checkpointed with :meth:`checkpoint`,
and dropped with :meth:`end` — nothing of one trial survives into the next.

Plain PyTorch: the process group must be initialised when ``world_size > 1``; every rank
makes the same calls in the same order.

Example:
    >>> session = WorkerSession(rank=0, world_size=1, device=torch.device("cpu"))
    >>> session.start(job)  # doctest: +SKIP
    >>> session.run_epoch()["epoch"]  # doctest: +SKIP
    1
"""

from __future__ import annotations

import json
import time
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from trainers.checkpoint import capture, restore
from trainers.config import TrainJobConfig
from trainers.epoch import epoch_metrics, evaluate_split, train_epoch
from trainers.run import ModelWrapper, TrialRun, build_run
from trainers.workloads import Splits, default_data_dir, load_workload

__all__ = ["WorkerSession"]

# Splits kept per worker: a sweep uses one; a second spares a reload when two sweeps alternate.
_CACHED_SPLITS = 2


class WorkerSession:
    """One rank's data cache and its current trial.

    Args:
        rank, world_size: this worker's place in the (initialised) process group.
        device: where the model and the data live (``cuda:<i>`` or ``cpu``).
        wrap_model: DDP wrapping for ``world_size > 1`` (identity when None).
    """

    def __init__(
        self,
        *,
        rank: int,
        world_size: int,
        device: torch.device,
        wrap_model: ModelWrapper | None = None,
    ) -> None:
        self.rank = rank
        self.world_size = world_size
        self.device = device
        self.wrap_model = wrap_model
        self._splits: OrderedDict[str, Splits] = OrderedDict()
        self.run: TrialRun | None = None
        self.loads = 0  # how often data was read from disk (tests check the cache)

    # -- data ------------------------------------------------------------------------------

    def splits(self, job: TrainJobConfig) -> Splits:
        """The job's splits on this device, loaded on first use."""
        data_dir = Path(job.data_dir) if job.data_dir else default_data_dir()
        key = json.dumps([job.workload, job.workload_options, str(data_dir)], sort_keys=True)
        found = self._splits.get(key)
        if found is not None:
            self._splits.move_to_end(key)
            return found
        workload = load_workload(job.workload, job.workload_options)
        loaded = workload.load_splits(data_dir)
        on_device = Splits(*(split.to(self.device) for split in loaded))
        self.loads += 1
        self._splits[key] = on_device
        while len(self._splits) > _CACHED_SPLITS:
            self._splits.popitem(last=False)
        return on_device

    # -- a trial ---------------------------------------------------------------------------

    def start(self, job: TrainJobConfig, files: Mapping[str, bytes] | None = None) -> int:
        """Begin a trial from scratch, or from checkpoint files; returns its starting epoch."""
        self.end()
        splits = self.splits(job)
        workload = load_workload(job.workload, job.workload_options)
        run = build_run(
            job,
            workload,
            train_size=len(splits.train),
            rank=self.rank,
            world_size=self.world_size,
            device=self.device,
            wrap_model=self.wrap_model if self.world_size > 1 else None,
        )
        if files:
            restore(run, files)
        self.run = run
        return run.epoch

    def _current(self) -> TrialRun:
        if self.run is None:
            raise RuntimeError("no trial is running on this worker: call start(job) first")
        return self.run

    def run_epoch(self) -> dict[str, Any]:
        """Train the next epoch and (rank 0) validate; the epoch's report.

        A trial restarted after its last epoch trains nothing and reports its last epoch
        again. Every rank returns the report; only rank 0's carries validation figures.
        """
        run = self._current()
        if run.done and run.history:
            return dict(run.history[-1])
        splits = self.splits(run.job)
        started = time.perf_counter()
        outcome = train_epoch(run, splits.train)
        run.epoch += 1
        metrics = epoch_metrics(run, outcome)
        if metrics["status"] != "diverged" and self.rank == 0:
            evaluated = time.perf_counter()
            metrics.update(evaluate_split(run, splits.validation, "val"))
            metrics["eval_seconds"] = time.perf_counter() - evaluated
        metrics["epoch_seconds"] = time.perf_counter() - started
        run.seconds += metrics["epoch_seconds"]
        metrics["trial_seconds"] = run.seconds
        run.history.append(metrics)
        return dict(metrics)

    def finish(self) -> dict[str, float]:
        """The test figures, once, after the last epoch (rank 0; others return ``{}``)."""
        run = self._current()
        if not run.done:
            raise RuntimeError(
                f"finish() after epoch {run.epoch} of {run.job.epochs}: the test split is "
                "evaluated once, after a trial's last epoch"
            )
        if self.rank == 0 and not run.final:
            run.final = evaluate_split(run, self.splits(run.job).test, "test")
        return dict(run.final)

    def checkpoint(self) -> dict[str, bytes]:
        """This rank's checkpoint files (rank 0 includes the trial's state)."""
        return capture(self._current(), include_trial=self.rank == 0)

    def end(self) -> None:
        """Drop the current trial (its model and optimizer); the data stays."""
        self.run = None
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
