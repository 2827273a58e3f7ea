"""What a sweep optimizes: a reported metric and a direction.

Every workload reports per epoch ``train_loss``, ``test_loss``, its own quality metric
(``accuracy``, ``perplexity`` or ``bleu``), ``lr``, ``gamma``, ``epoch_seconds``,
``samples_per_second`` and ``step``. Any of the first ones may be an objective; ``lr``,
``gamma`` and ``step`` are bookkeeping, not quality.

Example:
    >>> Objective.model_validate("perplexity").mode
    'min'
    >>> Objective(metric="accuracy", mode="max").metric
    'accuracy'
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = ["METRIC_MODES", "Mode", "Objective", "objective_metrics"]

Mode = Literal["max", "min"]

METRIC_MODES: Mapping[str, Mode] = MappingProxyType(
    {
        "accuracy": "max",
        "perplexity": "min",
        "bleu": "max",
        "train_loss": "min",
        "test_loss": "min",
        "epoch_seconds": "min",
        "samples_per_second": "max",
    }
)
"""The direction each metric improves in; an objective's ``mode`` defaults from here."""

# Reported by every workload besides its own metric, and worth optimizing.
_COMMON_OBJECTIVES = ("test_loss", "train_loss", "epoch_seconds", "samples_per_second")


def objective_metrics(workload_metric: str) -> list[str]:
    """The metrics a sweep over a workload with ``workload_metric`` may optimize."""
    return [workload_metric, *_COMMON_OBJECTIVES]


class Objective(BaseModel):
    """One metric to optimize (its last reported value per trial counts).

    A bare string is shorthand for ``{metric: <it>}``; ``mode`` defaults from
    :data:`METRIC_MODES`.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    metric: str = Field(..., description="a metric the workload reports, e.g. accuracy")
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
        return value
