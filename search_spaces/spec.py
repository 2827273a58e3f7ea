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
from pydantic.json_schema import DEFAULT_REF_TEMPLATE, GenerateJsonSchema, JsonSchemaMode

from search_spaces.checks import lookup_workload, run_checks
from search_spaces.errors import FieldError, SpecError, shorten
from search_spaces.limits import (
    MAX_KEY_LENGTH,
    MAX_PARAMETERS,
    NUL_FREE_PATTERN,
    STORED_CONTEXT,
    bound_json_schema,
    structure_errors,
)
from search_spaces.objective import Objective, validation_metric
from search_spaces.presets import UnknownPresetError, load_preset, merge_preset
from search_spaces.search import SearchConfig
from search_spaces.space import ParamSpec, check_space
from trainers.config import TrainJobConfig

__all__ = ["SweepSpec", "TrackingConfig", "data_dir_problem", "spec_hash"]

_NAME_PATTERN = r"^[a-z0-9][a-z0-9._-]{0,63}$"
_NAME = re.compile(_NAME_PATTERN)
# The data directory is a path on the workers, used as given: absolute, and never expanded
# (`~user` would name whichever home the worker has, or none).
_DATA_DIR_PATTERN = r"^/[^\u0000]*$"


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
    return bool(info.context and info.context.get(STORED_CONTEXT))


def data_dir_problem(data_dir: str) -> str | None:
    """Why ``data_dir`` is not a valid ``job.data_dir``, or None.

    The rule: an absolute path (it starts with ``/``), used as given on every worker: ``~`` is
    not expanded and a relative path is refused (it would depend on each worker's working
    directory). NUL characters are refused in every string of a spec. The service also
    requires the resolved path to lie under one of its data roots.

    Example:
        >>> data_dir_problem("/data") is None
        True
        >>> print(data_dir_problem("~nosuchuser/x")[:52])
        '~nosuchuser/x' starts with ~, which is not expanded
    """
    if data_dir.startswith("/"):
        return None
    if data_dir.startswith("~"):
        rest = data_dir.split("/", 1)[1] if "/" in data_dir else ""
        return (
            f"{shorten(data_dir)} starts with ~, which is not expanded: write the absolute path "
            f"(e.g. /home/<user>/{rest[:40]})"
        )
    return (
        f"{shorten(data_dir)} is not an absolute path: data_dir is used as given on every "
        "worker, so write it from the root (e.g. /data)"
    )


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
    name: str = Field(
        ...,
        description="slug: lowercase letters, digits, '.', '_', '-'",
        json_schema_extra={"pattern": _NAME_PATTERN, "maxLength": 64},
    )
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
        json_schema_extra=lambda schema: _space_schema(schema),  # defined below the model
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
    def _resolve(cls, data: Any, info: ValidationInfo) -> Any:
        if not isinstance(data, Mapping):
            return data
        if not _stored(info):
            # Before anything else is built from it: depth, sizes, NUL characters, JSON types.
            errors = structure_errors(data)
            if errors:
                raise SpecError(errors)
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
            name = data.get("name")
            if legacy is None and isinstance(name, str) and _NAME.fullmatch(name) is None:
                name = None  # the name's own error is the one to show, not the experiment's
            if tracking.get("experiment") is None:
                tracking["experiment"] = legacy if legacy is not None else name
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
        if not _NAME.fullmatch(value):
            raise ValueError(
                f"name {shorten(value)} is not a slug: use lowercase letters, digits, '.', '_' and "
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
        if len(space) > MAX_PARAMETERS:
            raise SpecError(
                [
                    FieldError(
                        "",
                        f"the space has {len(space)} parameters; at most {MAX_PARAMETERS} can be "
                        "searched: fix the others in job (or remove them from the preset with "
                        "null)",
                    )
                ]
            )
        errors = check_space(space)
        if errors:
            raise SpecError(errors)
        return space

    @field_validator("job")
    @classmethod
    def _check_data_dir(cls, job: TrainJobConfig, info: ValidationInfo) -> TrainJobConfig:
        problem = None if job.data_dir is None else data_dir_problem(job.data_dir)
        if problem is not None and not _stored(info):
            raise SpecError([FieldError("data_dir", problem)])
        return job

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
        return cls.model_validate(data, context={STORED_CONTEXT: True})

    @classmethod
    def json_schema(cls) -> dict[str, Any]:
        """The JSON schema of a spec (for editors and the service's OpenAPI).

        It states the limits (:mod:`search_spaces.limits`) and field rules the validator
        enforces, so a spec valid by the schema is accepted unless it breaks a cross-field rule
        (docs/spec-reference.md, "Validation") or a limit a schema cannot state (nesting depth,
        total size). :meth:`model_json_schema` gives the same schema.
        """
        return cls.model_json_schema()

    @classmethod
    def model_json_schema(
        cls,
        by_alias: bool | None = None,
        ref_template: str = DEFAULT_REF_TEMPLATE,
        schema_generator: type[GenerateJsonSchema] = GenerateJsonSchema,
        mode: JsonSchemaMode = "validation",
        *,
        union_format: Literal["any_of", "primitive_type_array"] = "any_of",
    ) -> dict[str, Any]:
        """Pydantic's schema of the model with the spec's limits added (validation mode)."""
        schema = super().model_json_schema(
            by_alias=by_alias,
            ref_template=ref_template,
            schema_generator=schema_generator,
            mode=mode,
            union_format=union_format,
        )
        if mode != "validation":
            return schema
        schema = bound_json_schema(schema, ref_template)
        job = schema.get("$defs", {}).get(TrainJobConfig.__name__, {})
        for member in job.get("properties", {}).get("data_dir", {}).get("anyOf", []):
            if member.get("type") == "string":
                member["pattern"] = _DATA_DIR_PATTERN
                member["description"] = "an absolute path, used as given (~ is not expanded)"
        return schema


def _space_schema(schema: dict[str, Any]) -> None:
    # A parameter without `type` is told apart by its fields ({low: 1, high: 8} is an int, and
    # also fits the float schema): any matching member is fine, not exactly one.
    members = schema.get("additionalProperties", {})
    if "oneOf" in members:
        members["anyOf"] = members.pop("oneOf")
    schema["maxProperties"] = MAX_PARAMETERS
    schema["propertyNames"] = {"maxLength": MAX_KEY_LENGTH, "pattern": NUL_FREE_PATTERN}


def _with_preset(data: dict[str, Any]) -> dict[str, Any]:
    name = data["preset"]
    try:
        preset = load_preset(str(name))
    except UnknownPresetError as exc:
        raise SpecError([FieldError("preset", str(exc))]) from None
    space = data.get("space")
    if space is not None and not isinstance(space, Mapping):
        raise SpecError(
            [FieldError("space", f"is a {type(space).__name__}: write it as a mapping")]
        )
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
