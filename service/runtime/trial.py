"""A trial of a sweep: a Ray Tune class trainable driving one warm worker group.

Tune runs one :class:`SweepTrainable` actor per concurrent trial slot and, with
``reuse_actors=True``, hands it trial after trial (:meth:`SweepTrainable.reset_config`): the
actor, its :class:`~service.runtime.workers.WorkerGroup` and the workers' loaded data live for
the whole sweep. Its resources are a placement group (:func:`trial_resources`): bundle 0
holds the trainable itself (one ``train_driver`` unit, no CPU), bundles 1… one worker each.

Each ``step()`` is one epoch on every worker (rank 0's report is the result); the last adds
the test figures; Tune checkpoints through :meth:`~SweepTrainable.save_checkpoint` (every
``search.checkpoint_every`` epochs and at the end) and restores a crashed or resumed trial
through :meth:`~SweepTrainable.load_checkpoint` — on a new group when the old one died.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ray import tune
from ray.util import get_current_placement_group

from search_spaces import apply_params
from search_spaces.resources import trial_bundles
from service.runtime.workers import WorkerGroup
from trainers.checkpoint import read_files, write_files
from trainers.config import TrainJobConfig

log = logging.getLogger(__name__)

__all__ = ["CONFIRM_KEY", "SweepTrainable", "TrialContext", "penalty", "trial_resources"]

_DONE = frozenset({"completed", "diverged"})

CONFIRM_KEY = "extrap_confirmation"
"""A confirmation trial's config: ``{CONFIRM_KEY: {"confirms": trial id, "seed", "params"}}``
(its configuration's searched values, retrained with a fresh seed)."""


def penalty(mode: str) -> float:
    """The objective a diverged trial reports: the worst finite value Optuna can rank."""
    return -1e30 if mode == "max" else 1e30


def trial_resources(job: TrainJobConfig) -> tune.PlacementGroupFactory:
    """What one trial asks of Ray: the trainable's bundle, then one bundle per worker."""
    return tune.PlacementGroupFactory(trial_bundles(job))


@dataclass(frozen=True)
class TrialContext:
    """What every trial of a sweep shares (Tune pickles it into each trainable once)."""

    job: TrainJobConfig
    space_names: tuple[str, ...]
    objective: str
    mode: str
    checkpoint_every: int


class SweepTrainable(tune.Trainable):
    """One trial slot: the searched values applied to the job, trained on warm workers."""

    def setup(  # type: ignore[override]  # Tune passes with_parameters' values as keywords
        self, config: dict[str, Any], context: TrialContext
    ) -> None:
        self.context = context
        self.group: WorkerGroup | None = None
        self._begin(config)

    def _begin(self, config: dict[str, Any]) -> None:
        confirmation = config.get(CONFIRM_KEY)
        if confirmation is not None:
            config = confirmation["params"]
        params = {name: config[name] for name in self.context.space_names if name in config}
        job = apply_params(self.context.job, params)  # the trial's job, built once
        if confirmation is not None:
            job = job.model_copy(update={"seed": int(confirmation["seed"])})
        self.job = job
        self.resume_files: dict[str, bytes] | None = None
        self.started = False

    def reset_config(self, new_config: dict[str, Any]) -> bool:
        """The next trial on this slot's warm workers (Tune's actor reuse)."""
        if self.group is not None and self.started:
            self.group.call("end")
        self._begin(new_config)
        return True

    def _workers(self) -> WorkerGroup:
        if self.group is None:
            self.group = WorkerGroup.start(self.job, get_current_placement_group(), first_bundle=1)
        return self.group

    def step(self) -> dict[str, Any]:
        group = self._workers()
        if not self.started:
            group.call("start", self.job, self.resume_files)
            self.started = True
        metrics: dict[str, Any] = group.call("run_epoch")[0]
        status = metrics["status"]
        if status == "completed":
            metrics.update(group.call("finish")[0])
        elif status == "diverged":  # Optuna learns the region is bad; people see the status
            metrics[self.context.objective] = penalty(self.context.mode)
        metrics["worker_pids"] = list(group.pids)
        metrics["done"] = status in _DONE
        if metrics["epoch"] % self.context.checkpoint_every == 0:
            metrics["should_checkpoint"] = True
        return metrics

    def save_checkpoint(self, checkpoint_dir: str) -> None:
        if self.group is None or not self.started:
            return None  # nothing trained yet: an empty checkpoint
        files: dict[str, bytes] = {}
        for worker_files in self.group.call("checkpoint"):
            files.update(worker_files)
        write_files(Path(checkpoint_dir), files)
        return None

    def restore(self, checkpoint_path: Any) -> None:
        """Restore from a checkpoint, or start the trial afresh when its checkpoint never
        reached storage (the driver was killed while Tune copied it there: Tune would fail
        the trial on every retry)."""
        checkpoint = getattr(checkpoint_path, "checkpoint", checkpoint_path)
        path, filesystem = (
            getattr(checkpoint, "path", None),
            getattr(checkpoint, "filesystem", None),
        )
        local = getattr(filesystem, "type_name", None) == "local"
        if isinstance(path, str) and local and not Path(path).exists():
            log.warning("checkpoint %s is not on storage: trial starts again from epoch 1", path)
            return
        super().restore(checkpoint_path)

    def load_checkpoint(self, checkpoint: Any) -> None:
        files = read_files(Path(str(checkpoint)))
        self.resume_files = files or None
        self.started = False

    def cleanup(self) -> None:
        if self.group is not None:
            self.group.shutdown()
            self.group = None
