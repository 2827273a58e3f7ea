"""How a sweep searches: sampler, trial scheduler, budget and failure handling.

Schedulers decide, from the per-epoch reports, which trials stop early (time unit: epochs, i.e.
Ray Tune's ``training_iteration``):

- ``fifo``: every trial runs all its epochs (the only choice with several objectives);
- ``asha``: asynchronous successive halving — at epochs ``grace_period · reduction_factor^k``
  only the best ``1 / reduction_factor`` of the trials continue;
- ``median``: stop a trial whose best result so far is worse than the median of the others'
  running averages at the same epoch, once ``grace_period`` epochs have passed.

``scheduler`` may be written as a bare name (``scheduler: asha``) for the defaults.

Example:
    >>> SearchConfig.model_validate({"scheduler": "asha", "num_trials": 8}).scheduler.kind
    'asha'
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from search_spaces.errors import SpecError, errors_from_validation_error
from search_spaces.samplers import SAMPLERS

__all__ = [
    "SCHEDULERS",
    "AshaScheduler",
    "ConfirmConfig",
    "FifoScheduler",
    "MedianScheduler",
    "SchedulerConfig",
    "SchedulerInfo",
    "SearchConfig",
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FifoScheduler(_Strict):
    """Run every trial to the end."""

    kind: Literal["fifo"] = "fifo"


class AshaScheduler(_Strict):
    """Asynchronous successive halving (Ray Tune's ``ASHAScheduler``; ``max_t`` = epochs)."""

    kind: Literal["asha"] = "asha"
    grace_period: int = Field(1, ge=1, description="epochs every trial runs before a cut")
    reduction_factor: float = Field(3.0, gt=1, description="keep the best 1/this at each rung")


class MedianScheduler(_Strict):
    """Median stopping rule (Ray Tune's ``MedianStoppingRule``)."""

    kind: Literal["median"] = "median"
    grace_period: int = Field(1, ge=1, description="epochs before a trial may be stopped")
    min_samples_required: int = Field(3, ge=1, description="other trials needed to compare")


SchedulerConfig = Annotated[
    FifoScheduler | AshaScheduler | MedianScheduler, Field(discriminator="kind")
]
"""One of the scheduler configs, chosen by ``kind``."""


@dataclass(frozen=True)
class SchedulerInfo:
    """A registered trial scheduler.

    Attributes:
        name: the value of ``search.scheduler.kind``.
        description: one line for docs and listings.
        config: its config model.
        multi_objective: works with ``secondary_objectives`` (early stopping needs one metric).
    """

    name: str
    description: str
    config: type[BaseModel]
    multi_objective: bool


SCHEDULERS: Mapping[str, SchedulerInfo] = MappingProxyType(
    {
        info.name: info
        for info in (
            SchedulerInfo("fifo", "run every trial to the end", FifoScheduler, True),
            SchedulerInfo("asha", "asynchronous successive halving", AshaScheduler, False),
            SchedulerInfo("median", "median stopping rule", MedianScheduler, False),
        )
    }
)
"""Registered schedulers by name."""


class ConfirmConfig(_Strict):
    """Confirm the winners: retrain the best configurations on fresh seeds.

    After the search, the ``top_k`` best configurations among the completed (not pruned)
    trials, by the objective, are each retrained ``seeds`` times for the full epoch budget,
    without pruning, on the same training split. Confirmation trial ``j`` (1-based) of a
    configuration uses ``job.seed + 1000 * j``: fresh seeds, the same for every configuration
    and every run of the sweep. The sweep's best is then the configuration with the best mean
    over its confirmation seeds.
    """

    top_k: int = Field(2, ge=1, le=20, description="configurations to confirm")
    seeds: int = Field(3, ge=2, le=20, description="fresh seeds per configuration (≥ 2: a std)")


class SearchConfig(_Strict):
    """Sampler, scheduler, budget and failure handling of a sweep."""

    sampler: str = Field(
        "tpe",
        description="a registered sampler",
        json_schema_extra={"enum": list(SAMPLERS)},
    )
    sampler_options: dict[str, Any] = Field(
        default_factory=dict, description="options of the chosen sampler (see the reference)"
    )
    scheduler: SchedulerConfig = Field(default_factory=FifoScheduler)
    num_trials: int = Field(20, ge=1, description="trials to run in total")
    max_concurrent_trials: int | None = Field(
        None, ge=1, description="trials running at once; null: as many as the cluster fits"
    )
    max_failed_trials: int = Field(
        3, ge=1, description="stop the sweep once this many trials failed (after retries)"
    )
    max_retries: int = Field(1, ge=0, description="restarts of a crashed trial from its checkpoint")
    trial_timeout_s: float | None = Field(None, gt=0, description="wall-clock limit per trial")
    seed: int = Field(
        0, ge=0, lt=2**32, description="seeds the sampler (Optuna's samplers take 0 ≤ seed < 2³²)"
    )
    keep_checkpoints: int = Field(
        1, ge=1, description="checkpoints kept per trial: the best by the objective, and the last"
    )
    checkpoint_every: int = Field(
        1, ge=1, description="checkpoint a trial every this many epochs (its last epoch always)"
    )
    confirm: ConfirmConfig | None = Field(
        None, description="retrain the top configurations on fresh seeds (off: null)"
    )

    @property
    def total_trials(self) -> int:
        """Search trials plus confirmation trials (what counts against the trial limits)."""
        confirm = self.confirm
        return self.num_trials + (confirm.top_k * confirm.seeds if confirm else 0)

    @field_validator("scheduler", mode="before")
    @classmethod
    def _scheduler_shorthand(cls, value: Any) -> Any:
        return {"kind": value} if isinstance(value, str) else value

    @field_validator("sampler")
    @classmethod
    def _known_sampler(cls, value: str) -> str:
        if value not in SAMPLERS:
            raise ValueError(f"unknown sampler {value!r}: use one of {', '.join(SAMPLERS)}")
        return value

    @model_validator(mode="after")
    def _check_sampler_options(self) -> SearchConfig:
        try:
            SAMPLERS[self.sampler].options.model_validate(self.sampler_options)
        except ValidationError as exc:
            errors = errors_from_validation_error(
                exc, SAMPLERS[self.sampler].options, prefix="sampler_options"
            )
            raise SpecError(errors) from None
        return self

    def sampler_settings(self) -> BaseModel:
        """``sampler_options`` validated against the sampler's options model."""
        return SAMPLERS[self.sampler].options.model_validate(self.sampler_options)
