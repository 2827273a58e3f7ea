"""What a sweep optimizes: a validation figure (or a cost) and a direction.

Every trial reports per epoch ``train_loss``, the validation figures ``val_loss`` and
``val_<metric>`` (the workload's metric: ``accuracy``, ``perplexity`` or ``bleu``), ``lr``,
``gamma``, ``epoch_seconds``, ``samples_per_second`` and ``step``; after its last epoch, and
only then, the test figures ``test_loss`` and ``test_<metric>``. An objective names a
validation figure, ``train_loss`` or a cost: a sweep tuned on the test split would report a
number it was tuned on, so test figures (and bare names such as ``accuracy``, which would be
ambiguous) are refused with a message naming the validation figure to use.

Example:
    >>> Objective.model_validate("val_perplexity").mode
    'min'
    >>> Objective(metric="val_accuracy", mode="max").metric
    'val_accuracy'
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

__all__ = [
    "METRIC_MODES",
    "VALIDATION_PREFIX",
    "Mode",
    "Objective",
    "objective_metrics",
    "validation_metric",
]

Mode = Literal["max", "min"]
VALIDATION_PREFIX = "val_"
TEST_PREFIX = "test_"

# The workloads' own metrics and the loss; reported as val_<name> and test_<name>.
_FIGURES: Mapping[str, Mode] = {
    "accuracy": "max",
    "perplexity": "min",
    "bleu": "max",
    "loss": "min",
}

METRIC_MODES: Mapping[str, Mode] = MappingProxyType(
    {
        **{VALIDATION_PREFIX + name: mode for name, mode in _FIGURES.items()},
        "train_loss": "min",
        "epoch_seconds": "min",
        "samples_per_second": "max",
    }
)
"""The direction each objective improves in; an objective's ``mode`` defaults from here."""

# Reported by every workload besides its validation metric, and worth optimizing.
_COMMON_OBJECTIVES = ("val_loss", "train_loss", "epoch_seconds", "samples_per_second")


def validation_metric(workload_metric: str) -> str:
    """``accuracy`` → ``val_accuracy``: what a sweep over such a workload optimizes by default."""
    return VALIDATION_PREFIX + workload_metric


def objective_metrics(workload_metric: str) -> list[str]:
    """The metrics a sweep over a workload with ``workload_metric`` may optimize."""
    return [validation_metric(workload_metric), *_COMMON_OBJECTIVES]


def _refusal(metric: str) -> str | None:
    if metric.startswith(TEST_PREFIX):
        name = metric.removeprefix(TEST_PREFIX)
        return (
            f"{metric!r} is a test figure: the test split is evaluated once, after a trial's "
            f"last epoch, and must not steer the search (that would tune on the test set); "
            f"optimize the validation figure {validation_metric(name)!r} instead"
        )
    if metric in _FIGURES:
        return (
            f"{metric!r} is ambiguous: objectives name validation figures; use "
            f"{validation_metric(metric)!r} (its test figure {TEST_PREFIX + metric!r} is "
            "reported at the end, never optimized)"
        )
    return None


class Objective(BaseModel):
    """One metric to optimize (its last reported value per trial counts).

    A bare string is shorthand for ``{metric: <it>}``; ``mode`` defaults from
    :data:`METRIC_MODES`.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    metric: str = Field(..., description="a validation figure, e.g. val_accuracy, or train_loss")
    mode: Mode = Field(..., description="max or min; defaults to the metric's direction")

    @model_validator(mode="before")
    @classmethod
    def _fill_mode(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = {"metric": value}
        if isinstance(value, Mapping) and "mode" not in value:
            metric = value.get("metric")
            if isinstance(metric, str) and metric in METRIC_MODES:
                return {**value, "mode": METRIC_MODES[metric]}
            if isinstance(metric, str) and _refusal(metric):
                return {**value, "mode": "max"}  # the metric's own error is the one to show
        return value

    @field_validator("metric")
    @classmethod
    def _validation_figure(cls, metric: str) -> str:
        refusal = _refusal(metric)
        if refusal is not None:
            raise ValueError(refusal)
        return metric
