"""The sweep spec: one pydantic model for the CLI, the service and the sweep driver.

A spec names a fixed training job, the parameters to search over, what to optimize and how to
search. See ``docs/spec-reference.md`` for every field.

Example:
    >>> spec = SweepSpec.model_validate({
    ...     "name": "mnist1d-lr",
    ...     "job": {"workload": "mnist1d", "global_batch_size": 512, "epochs": 2},
    ...     "space": {"lr": {"low": 0.01, "high": 1.0, "log": True}},
    ... })
    >>> spec.objective.metric, spec.search.sampler, spec.mlflow_experiment
    ('val_accuracy', 'tpe', 'mnist1d-lr')
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from search_spaces.checks import lookup_workload, run_checks
from search_spaces.errors import FieldError, SpecError
from search_spaces.objective import Objective, validation_metric
from search_spaces.presets import UnknownPresetError, load_preset, merge_preset
from search_spaces.search import SearchConfig
from search_spaces.space import ParamSpec, check_space
from trainers.config import TrainJobConfig

__all__ = ["SweepSpec", "TrackingConfig", "spec_hash"]

_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
# Validation context of a spec read back from storage: validated in full at submission, so
# the cross-field checks (which build every reachable trial job) are not run again.
_STORED = "stored"


def spec_hash(data: Mapping[str, Any]) -> str:
    """The content hash of a spec's stored form (canonical JSON, SHA-256, hex).

    The service records it at submission; the driver compares it with the spec it fetched
    before running it (:meth:`SweepSpec.from_stored`).

    Example:
        >>> spec_hash({"b": 1, "a": [0.5]}) == spec_hash({"a": [0.5], "b": 1})
        True
    """
    text = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _stored(info: ValidationInfo) -> bool:
    return bool(info.context and info.context.get(_STORED))


class TrackingConfig(BaseModel):
    """Where a sweep is recorded in MLflow, and whether its best model is registered."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    experiment: str | None = Field(
        None, max_length=256, description="the MLflow experiment (default: the spec's name)"
    )
    register_model: str | None = Field(
        None,
        max_length=256,
        description="register the best configuration's model as a new version of this "
        "registered model in MLflow's model registry",
    )


def _optional_in_schema(*names: str) -> Callable[[dict[str, Any]], None]:
    """Drop fields the spec fills in itself (before validation) from the schema's required."""

    def fix(schema: dict[str, Any]) -> None:
        schema["required"] = [n for n in schema.get("required", []) if n not in names]

    return fix


class SweepSpec(BaseModel):
    """A hyperparameter sweep: a fixed job, a search space, objectives and a search setup."""

    model_config = ConfigDict(
        extra="forbid", title="SweepSpec", json_schema_extra=_optional_in_schema("objective")
    )

    version: Literal[2] = Field(
        2,
        description="schema version: 2 tunes on validation figures (version 1, which optimized "
        "test figures, is no longer accepted; stored sweeps keep theirs)",
    )
    name: str = Field(..., description="slug: lowercase letters, digits, '.', '_', '-'")
    description: str | None = None
    preset: str | None = Field(
        None, description="a shipped preset this spec extends; merged in and cleared on load"
    )
    based_on: str | None = Field(
        None, description="set on load: the preset this spec was merged with (provenance)"
    )
    job: TrainJobConfig = Field(..., description="the training job every trial runs")
    space: dict[str, ParamSpec] = Field(
        default_factory=dict,
        validate_default=True,  # so that a missing space gets the helpful "empty" message
        description="searchable name → parameter spec (may come from the preset)",
    )
    objective: Objective = Field(..., description="default: the workload's metric and mode")
    secondary_objectives: list[Objective] = Field(
        default_factory=list, description="more objectives: a multi-objective sweep"
    )
    search: SearchConfig = Field(default_factory=SearchConfig)
    tracking: TrackingConfig = Field(
        default_factory=lambda: TrackingConfig(),
        description="MLflow: the experiment, and the model registry (default: the spec name)",
    )

    @model_validator(mode="before")
    @classmethod
    def _resolve(cls, data: Any) -> Any:
        if not isinstance(data, Mapping):
            return data
        data = dict(data)
        if data.get("preset") is not None:
            data = _with_preset(data)
        if data.get("objective") is None:
            data["objective"] = _default_objective(data.get("job"))
        legacy = data.pop("mlflow_experiment", None)  # the old key, still accepted
        tracking = data.get("tracking")
        tracking = dict(tracking) if isinstance(tracking, Mapping) else tracking
        if isinstance(tracking, dict) or tracking is None:
            tracking = tracking or {}
            if legacy is not None and tracking.get("experiment") not in (None, legacy):
                raise SpecError(
                    [
                        FieldError(
                            "mlflow_experiment",
                            "both mlflow_experiment and tracking.experiment are set: keep "
                            "tracking.experiment (mlflow_experiment is its old name)",
                        )
                    ]
                )
            if tracking.get("experiment") is None:
                tracking["experiment"] = legacy if legacy is not None else data.get("name")
        data["tracking"] = tracking
        return data

    @field_validator("version", mode="before")
    @classmethod
    def _check_version(cls, value: Any) -> Any:
        if value == 1:
            raise ValueError(
                "version 1 specs optimized test-set figures; this product tunes on validation "
                "figures now: drop `version` (or set 2) and name a validation objective, "
                "e.g. val_accuracy"
            )
        return value

    @field_validator("name")
    @classmethod
    def _check_name(cls, value: str) -> str:
        if not _NAME.match(value):
            raise ValueError(
                f"name {value!r} is not a slug: use lowercase letters, digits, '.', '_' and "
                "'-', starting with a letter or digit, at most 64 characters "
                "(e.g. resnet20-cifar10-extrap)"
            )
        return value

    @field_validator("space")
    @classmethod
    def _check_space(
        cls, space: dict[str, ParamSpec], info: ValidationInfo
    ) -> dict[str, ParamSpec]:
        if _stored(info):
            return space
        if not space:
            raise SpecError(
                [
                    FieldError(
                        "",
                        "the space is empty: add at least one parameter (e.g. lr: {low: 0.01, "
                        "high: 1.0, log: true}) or extend a preset",
                    )
                ]
            )
        errors = check_space(space)
        if errors:
            raise SpecError(errors)
        return space

    @model_validator(mode="after")
    def _cross_check(self, info: ValidationInfo) -> SweepSpec:
        if _stored(info):
            return self
        errors = run_checks(self)
        if errors:
            raise SpecError(errors)
        return self

    @property
    def mlflow_experiment(self) -> str:
        """The MLflow experiment its runs go to (``tracking.experiment``)."""
        return self.tracking.experiment or self.name

    @property
    def objectives(self) -> list[Objective]:
        """The objective followed by the secondary objectives."""
        return [self.objective, *self.secondary_objectives]

    def stored_form(self) -> dict[str, Any]:
        """What the service stores and the driver runs: the spec as JSON-able data."""
        return self.model_dump(mode="json")

    def content_hash(self) -> str:
        """:func:`spec_hash` of :meth:`stored_form`."""
        return spec_hash(self.stored_form())

    @classmethod
    def from_stored(cls, data: Mapping[str, Any], expected_hash: str) -> SweepSpec:
        """Rebuild a spec from its stored form, checking only its content hash.

        The spec was validated in full when it was submitted; this parses it back into the
        model without running the cross-field checks again.

        Raises:
            ValueError: ``data`` does not hash to ``expected_hash`` (it changed since then).
        """
        actual = spec_hash(data)
        if actual != expected_hash:
            raise ValueError(
                f"the stored spec hashes to {actual[:12]}…, not to the {expected_hash[:12]}… "
                "recorded at submission: it changed since it was validated; submit it again"
            )
        return cls.model_validate(data, context={_STORED: True})

    @classmethod
    def json_schema(cls) -> dict[str, Any]:
        """The JSON schema of a spec (for editors and the service's OpenAPI)."""
        return cls.model_json_schema()


def _with_preset(data: dict[str, Any]) -> dict[str, Any]:
    name = data["preset"]
    try:
        preset = load_preset(str(name))
    except UnknownPresetError as exc:
        raise SpecError([FieldError("preset", str(exc))]) from None
    merged = merge_preset(preset, data)
    merged["preset"] = None
    merged["based_on"] = name
    return merged


def _default_objective(job: Any) -> dict[str, str]:
    workload = job.get("workload") if isinstance(job, Mapping) else None
    info = lookup_workload(workload) if isinstance(workload, str) else None
    if info is None:
        # The spec fails on job.workload anyway; a placeholder keeps that the only error.
        return {"metric": "val_loss", "mode": "min"}
    return {"metric": validation_metric(info.metric), "mode": info.metric_mode}
