"""The training-job config: everything one data-parallel training run needs.

A :class:`TrainJobConfig` is what ``extrap train job.yaml`` reads and what every trial of a
sweep receives (the sweep spec embeds it and fills in the searched values). It is plain
pydantic: no torch, no Ray, so the CLI and the API can validate it cheaply.

Example:
    >>> cfg = TrainJobConfig(workload="mnist1d", global_batch_size=512, epochs=2,
    ...                      optimizer={"lr": 0.1, "extrapolation": "gradient"})
    >>> cfg.per_worker_batch_size
    256
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from trainers.optim.variants import VARIANTS, variant_info

__all__ = [
    "GammaScheduleConfig",
    "GammaScheduleKind",
    "OptimizerConfig",
    "ScheduleConfig",
    "TrainJobConfig",
]

GammaScheduleKind = Literal["follow_lr", "constant", "cosine", "linear"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class OptimizerConfig(_Strict):
    """Arguments of :class:`trainers.optim.ExtrapSGD` (see its docstring for the formulas).

    ``lr`` is the BASE learning rate; the job scales it by the linear scaling rule when
    ``ScheduleConfig.reference_batch_size`` is set.
    """

    lr: float = Field(0.1, ge=0)
    momentum: float = Field(0.9, ge=0)
    nesterov: bool = False
    weight_decay: float = Field(0.0, ge=0)
    # A name from the variant registry (torch-free); the schema still lists them for OpenAPI.
    extrapolation: str = Field(
        "gradient",
        description="the extrapolation variant (docs/optimizer.md)",
        json_schema_extra={"enum": list(VARIANTS)},
    )
    gamma: float | None = Field(None, ge=0)
    gamma_ratio: float = Field(0.1, ge=0)
    noise_std: float = Field(0.0, ge=0)
    noise: Literal["gaussian", "uniform"] = "gaussian"
    extrapolation_momentum: bool = False
    trust_coefficient: float | None = Field(None, gt=0)

    @field_validator("extrapolation")
    @classmethod
    def _known_variant(cls, value: str) -> str:
        return variant_info(value).name  # ValueError naming the value and the valid names

    @model_validator(mode="after")
    def _check_combination(self) -> OptimizerConfig:
        if self.nesterov and self.momentum <= 0:
            raise ValueError("nesterov=true needs momentum > 0; set momentum or nesterov=false")
        if self.extrapolation == "sam" and self.gamma is None:
            raise ValueError(
                "extrapolation='sam' needs an absolute gamma (the SAM radius, e.g. gamma: 0.05)"
            )
        return self


class ScheduleConfig(_Strict):
    """Learning-rate schedule: linear warmup, then a decay; all times in epochs."""

    reference_batch_size: int | None = Field(
        None, gt=0, description="linear scaling rule: lr = base_lr * global_batch / this"
    )
    warmup_epochs: float = Field(0.0, ge=0)
    decay: Literal["constant", "multistep", "cosine", "polynomial"] = "constant"
    milestones: list[float] = Field(
        default_factory=lambda: [0.5, 0.75],
        description="multistep: when to decay, as fractions of the epochs (0 < m < 1)",
    )
    decay_factor: float = Field(0.1, gt=0, le=1, description="multistep: lr *= this")
    power: float = Field(1.0, gt=0, description="polynomial: decay exponent")
    final_lr_fraction: float = Field(0.0, ge=0, le=1, description="cosine/polynomial floor")

    def lr_schedule_options(self) -> dict[str, Any]:
        """The keyword arguments of :func:`trainers.optim.build_lr_scheduler` this config sets.

        All but ``steps_per_epoch`` and ``epochs`` (the job's) and without
        ``reference_batch_size`` (the linear scaling rule is applied to the peak beforehand).

        Example:
            >>> ScheduleConfig(warmup_epochs=2, decay="cosine").lr_schedule_options()["decay"]
            'cosine'
        """
        return {
            "warmup_epochs": self.warmup_epochs,
            "decay": self.decay,
            "milestones": tuple(self.milestones),
            "decay_factor": self.decay_factor,
            "power": self.power,
            "final_lr_fraction": self.final_lr_fraction,
        }

    @model_validator(mode="after")
    def _check_milestones(self) -> ScheduleConfig:
        bad = [m for m in self.milestones if not 0 < m < 1]
        if bad:
            raise ValueError(f"milestones must be fractions of the run in (0, 1), got {bad}")
        if list(self.milestones) != sorted(self.milestones):
            raise ValueError(f"milestones must be increasing, got {self.milestones}")
        return self


class GammaScheduleConfig(_Strict):
    """How gamma moves over training.

    ``kind`` left unset picks ``follow_lr`` when ``optimizer.gamma`` is None and ``constant``
    when an absolute gamma is given (see :attr:`TrainJobConfig.gamma_schedule_kind`).

    - ``follow_lr``: gamma_t = optimizer.gamma_ratio * lr_t (the optimizer's own gamma=None);
    - ``constant``: gamma_t = optimizer.gamma;
    - ``cosine`` / ``linear``: gamma decays on its own from optimizer.gamma to
      ``final_fraction`` * optimizer.gamma over the run.
    """

    kind: GammaScheduleKind | None = None
    final_fraction: float = Field(0.0, ge=0, le=1)


class TrainJobConfig(_Strict):
    """One data-parallel training job (a trial of a sweep, or ``extrap train``)."""

    workload: str = Field(..., description="a registered workload name, e.g. mnist1d")
    workload_options: dict[str, Any] = Field(default_factory=dict)
    data_dir: str | None = Field(None, description="where the workload reads its data")
    global_batch_size: int = Field(..., gt=0, description="samples per optimizer step, all workers")
    workers: int = Field(2, gt=0, description="data-parallel workers (DDP ranks)")
    cpus_per_worker: float = Field(1.0, ge=0)
    gpus_per_worker: float = Field(0.0, ge=0)
    max_micro_batch: int | None = Field(
        None, gt=0, description="largest batch one forward pass sees; larger shares accumulate"
    )
    epochs: int = Field(..., gt=0)
    seed: int = 0
    optimizer: OptimizerConfig = OptimizerConfig()
    schedule: ScheduleConfig = ScheduleConfig()
    gamma_schedule: GammaScheduleConfig = GammaScheduleConfig()
    second_batch: Literal["same", "fresh"] = "same"
    extrapolation_scope: Literal["local", "global"] = "local"
    precision: Literal["fp32", "bf16"] = "fp32"
    clip_grad_norm: float | None = Field(None, gt=0)
    clip_extrapolation_grad_norm: float | None = Field(None, gt=0)
    divergence_loss_bound: float = Field(
        1e4, gt=0, description="a train loss above this (or NaN/inf) ends the run as diverged"
    )

    @model_validator(mode="after")
    def _check_batch_split(self) -> TrainJobConfig:
        if self.global_batch_size % self.workers:
            raise ValueError(
                f"global_batch_size={self.global_batch_size} does not divide evenly over "
                f"workers={self.workers}; choose a multiple of {self.workers}"
            )
        share = self.global_batch_size // self.workers
        micro = self.max_micro_batch
        if micro is not None and share > micro and share % micro:
            raise ValueError(
                f"each worker's share of the batch ({share} = global_batch_size / workers) "
                f"is not a multiple of max_micro_batch={micro}; choose a divisor of {share}"
            )
        kind = self.gamma_schedule.kind
        if kind not in (None, "follow_lr") and self.optimizer.gamma is None:
            raise ValueError(
                f"gamma_schedule.kind={kind!r} needs an absolute optimizer.gamma; "
                "set it or use kind 'follow_lr'"
            )
        if kind == "follow_lr" and self.optimizer.gamma is not None:
            raise ValueError(
                "gamma_schedule.kind='follow_lr' uses gamma_ratio * lr and would ignore "
                f"optimizer.gamma={self.optimizer.gamma}; drop the gamma or use kind 'constant'"
            )
        return self

    @property
    def gamma_schedule_kind(self) -> GammaScheduleKind:
        """The gamma schedule in force: the configured kind, or the one implied by gamma.

        The one place the kind is resolved; the training loop passes it to
        :class:`trainers.optim.GammaScheduler` as it is.
        """
        if self.gamma_schedule.kind is not None:
            return self.gamma_schedule.kind
        return "follow_lr" if self.optimizer.gamma is None else "constant"

    @property
    def per_worker_batch_size(self) -> int:
        return self.global_batch_size // self.workers

    @property
    def micro_batch_size(self) -> int:
        share = self.per_worker_batch_size
        if self.max_micro_batch is None or share <= self.max_micro_batch:
            return share
        return self.max_micro_batch

    @property
    def accumulation_steps(self) -> int:
        return self.per_worker_batch_size // self.micro_batch_size
