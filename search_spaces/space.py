"""Parameter specs of a sweep's search space, their conditions, and :func:`apply_params`.

A space maps searchable names (see :mod:`search_spaces.searchable`) to one of three kinds:

- ``float``: ``low``, ``high``, optional ``log`` and ``step``;
- ``int``: the same with integer bounds (``step`` defaults to 1);
- ``categorical``: ``choices`` (any YAML values, lists included, e.g. LR milestones).

``type`` may be left out: ``choices`` means categorical, integer bounds mean int, anything else
float; a bare list is shorthand for a categorical. Each kind takes ``when``, a condition on
categorical parameters: ``when: {extrapolation: [gradient, past]}`` makes the parameter exist
only in trials whose ``extrapolation`` is one of those (several keys must all hold).

Example:
    >>> from trainers.config import TrainJobConfig
    >>> job = TrainJobConfig(workload="mnist1d", global_batch_size=512, epochs=2)
    >>> apply_params(job, {"lr": 0.05, "extrapolation": "past"}).optimizer.extrapolation
    'past'
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from functools import cached_property
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationInfo,
    field_validator,
    model_validator,
)

from search_spaces.errors import FieldError, SpecError, shorten
from search_spaces.limits import MAX_CHOICES, STORED_CONTEXT
from search_spaces.searchable import UnknownSearchableError, get_searchable
from trainers.config import TrainJobConfig
from trainers.workloads import validate_workload_options

__all__ = [
    "CategoricalParam",
    "FloatParam",
    "IntParam",
    "ParamSpec",
    "apply_params",
    "check_space",
    "choice_key",
    "choice_label",
    "condition_holds",
    "dependency_order",
    "job_data_with",
    "nest_dotted",
    "same_value",
]

Primitive = None | bool | int | float | str


class _ParamBase(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    when: dict[str, list[Any]] = Field(
        default_factory=dict,
        description="active only if every named categorical parameter has one of these values "
        "(leave it out for an unconditional parameter)",
        exclude_if=lambda when: not when,  # the stored form never holds the refused `when: {}`
        json_schema_extra={
            "minProperties": 1,
            "additionalProperties": {"type": "array", "minItems": 1, "items": {}},
        },
    )

    @field_validator("when", mode="before")
    @classmethod
    def _listify_when(cls, value: Any, info: ValidationInfo) -> Any:
        if isinstance(value, Mapping) and not value and not _stored(info):
            raise ValueError(
                "`when: {}` names no condition: remove the `when` key for a parameter that is "
                "always active, or name one (e.g. when: {extrapolation: [gradient]})"
            )
        # `when: {extrapolation: sam}` reads naturally; store it as a one-element list.
        if isinstance(value, Mapping):
            return {k: v if isinstance(v, list) else [v] for k, v in value.items()}
        return value

    @cached_property
    def _when_keys(self) -> dict[str, frozenset[tuple[bool, Primitive]]]:
        return {ref: frozenset(map(_safe_key, allowed)) for ref, allowed in self.when.items()}

    def active(self, values: Mapping[str, Any]) -> bool:
        """:func:`condition_holds` for this parameter's ``when``, each condition in O(1)."""
        return all(
            name in values and _safe_key(values[name]) in keys
            for name, keys in self._when_keys.items()
        )


def _stored(info: ValidationInfo) -> bool:
    return bool(info.context and info.context.get(STORED_CONTEXT))


class FloatParam(_ParamBase):
    """A real-valued parameter in ``[low, high]``."""

    type: Literal["float"] = "float"
    low: float = Field(allow_inf_nan=False)
    high: float = Field(allow_inf_nan=False)
    log: bool = Field(False, description="sample log-uniformly (needs low > 0)")
    step: float | None = Field(
        None, gt=0, allow_inf_nan=False, description="discretize: low, low+step, …, high"
    )

    @model_validator(mode="after")
    def _check_range(self) -> FloatParam:
        _raise_range_errors(self.low, self.high, self.log, self.step, has_default_step=False)
        return self


class IntParam(_ParamBase):
    """An integer parameter in ``[low, high]``."""

    type: Literal["int"] = "int"
    low: int
    high: int
    log: bool = Field(False, description="sample log-uniformly (needs low > 0, step 1)")
    step: int = Field(1, gt=0)

    @model_validator(mode="after")
    def _check_range(self) -> IntParam:
        _raise_range_errors(self.low, self.high, self.log, self.step, has_default_step=True)
        return self


class CategoricalParam(_ParamBase):
    """One of a list of values (strings, numbers, booleans, null, or lists of those)."""

    type: Literal["categorical"] = "categorical"
    choices: list[Any] = Field(..., min_length=1, json_schema_extra={"maxItems": MAX_CHOICES})

    @model_validator(mode="before")
    @classmethod
    def _from_list(cls, value: Any) -> Any:
        return {"choices": value} if isinstance(value, list) else value

    @field_validator("choices")
    @classmethod
    def _check_choices(cls, choices: list[Any], info: ValidationInfo) -> list[Any]:
        if len(choices) > MAX_CHOICES and not _stored(info):
            raise ValueError(
                f"{len(choices):,} choices; a categorical takes at most {MAX_CHOICES:,}: keep "
                "the values worth trying, or search a numeric range (low, high, step) instead"
            )
        first: dict[tuple[bool, Primitive], Any] = {}
        repeated: dict[tuple[bool, Primitive], Any] = {}
        for choice in choices:
            try:
                key = choice_key(choice)
            except (TypeError, ValueError, RecursionError):  # json.dumps of a non-JSON value
                raise ValueError(
                    f"the choice {shorten(choice)} is not a JSON value: use strings, numbers, "
                    "booleans, null or lists of those"
                ) from None
            if key in first:
                repeated.setdefault(key, first[key])
            first.setdefault(key, choice)
        if repeated:
            shown = ", ".join(shorten(choice) for choice in list(repeated.values())[:5])
            more = f" and {len(repeated) - 5} more" if len(repeated) > 5 else ""
            raise ValueError(f"choices repeat {shown}{more}: list each value once")
        return choices


def _param_tag(value: Any) -> str | None:
    if isinstance(value, BaseModel):
        return str(getattr(value, "type", None))
    if isinstance(value, list):
        return "categorical"
    if not isinstance(value, Mapping):
        return None
    if "type" in value:
        return str(value["type"])
    if "choices" in value:
        return "categorical"
    if _is_int(value.get("low")) and _is_int(value.get("high")):
        return "int"
    return "float"


ParamSpec = Annotated[
    Annotated[FloatParam, Tag("float")]
    | Annotated[IntParam, Tag("int")]
    | Annotated[CategoricalParam, Tag("categorical")],
    Discriminator(
        _param_tag,
        custom_error_type="invalid_param",
        custom_error_message=(
            "a parameter is a mapping with type float, int or categorical (or none: choices "
            "mean categorical, integer low/high int, otherwise float) or a list of choices; "
            "null only removes a parameter of the spec's preset"
        ),
    ),
]
"""One parameter of a search space: a float, int or categorical spec."""


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _raise_range_errors(
    low: float, high: float, log: bool, step: float | None, *, has_default_step: bool
) -> None:
    errors: list[FieldError] = []
    if low > high:
        errors.append(
            FieldError("low", f"low={low} is above high={high}: make low ≤ high (swap them?)")
        )
    if log and low <= 0:
        errors.append(
            FieldError(
                "low",
                f"log scale needs low > 0, got low={low}: raise low (e.g. to {high / 1000:g}) "
                "or set log: false",
            )
        )
    if log and step is not None and not (has_default_step and step == 1):
        errors.append(
            FieldError("step", "log scale cannot be combined with step: drop step or log")
        )
    elif step is not None and low <= high:
        count = (high - low) / step
        if not math.isclose(count, round(count), abs_tol=1e-9):
            fitted = low + math.floor(count) * step
            errors.append(
                FieldError(
                    "high",
                    f"high - low = {high - low:g} is not a multiple of step={step:g}: "
                    f"set high to {fitted:g} (or change step)",
                )
            )
    if errors:
        raise SpecError(errors)


def same_value(left: Any, right: Any) -> bool:
    """Equality that keeps ``True`` apart from ``1`` (YAML flags vs. numbers)."""
    if isinstance(left, bool) or isinstance(right, bool):
        return isinstance(left, bool) and isinstance(right, bool) and left == right
    return bool(left == right)


def choice_key(value: Any) -> tuple[bool, Primitive]:
    """The hashable key by which choices are told apart (repeats, conditions), in linear time.

    Two choices are the same when their keys are equal: lists compare by their JSON text
    (:func:`choice_label`, what Optuna sees); ``True`` and ``1`` differ (as in
    :func:`same_value`), ``1`` and ``1.0`` do not.

    Example:
        >>> choice_key(True) == choice_key(1), choice_key(1) == choice_key(1.0)
        (False, True)
    """
    label = choice_label(value)
    return (isinstance(label, bool), label)


def choice_label(value: Any) -> Primitive:
    """The value Optuna sees for a categorical choice: itself, or its JSON text for a list.

    Optuna's categorical choices must be None, bool, int, float or str; a list such as the
    milestones ``[0.5, 0.75]`` is passed as ``"[0.5, 0.75]"`` and decoded back.
    """
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return json.dumps(value)


def condition_holds(when: Mapping[str, Sequence[Any]], values: Mapping[str, Any]) -> bool:
    """Whether a ``when`` condition holds for the parameter values chosen so far.

    Values compare as choices do (:func:`choice_key`: ``True`` is not ``1``). A condition on a
    parameter that is itself inactive (absent from ``values``) fails.
    """
    return all(
        name in values and _safe_key(values[name]) in set(map(_safe_key, allowed))
        for name, allowed in when.items()
    )


def dependency_order(space: Mapping[str, ParamSpec]) -> list[str]:
    """The names of ``space`` with every parameter after those its ``when`` refers to.

    Keeps the spec's order where the conditions allow it.

    Raises:
        ValueError: the conditions are circular (a spec that validated never is).
    """
    order: list[str] = []
    placed: set[str] = set()
    pending = [name for name in space]
    while pending:
        ready = [n for n in pending if all(r in placed or r not in space for r in space[n].when)]
        if not ready:
            raise ValueError(f"circular conditions among {', '.join(pending)}")
        order.extend(ready)
        placed.update(ready)
        pending = [n for n in pending if n not in placed]
    return order


def check_space(space: Mapping[str, ParamSpec]) -> list[FieldError]:
    """Problems in a space that need no workload: names, kinds and conditions.

    Returns:
        Errors with paths relative to the space (``"gamma_ratio.when.extrapolation"``).
    """
    errors: list[FieldError] = []
    for name, param in space.items():
        try:
            searchable = get_searchable(name)
        except UnknownSearchableError as exc:
            errors.append(FieldError(name, str(exc)))
            continue
        if param.type not in searchable.kinds:
            errors.append(
                FieldError(
                    f"{name}.type",
                    f"{name} takes {' or '.join(searchable.kinds)} values, not {param.type}: "
                    f"write it as choices (e.g. {name}: {{choices: [...]}})",
                )
            )
        errors.extend(_condition_errors(name, param, space))
    errors.extend(_cycle_errors(space))
    return errors


def _condition_errors(
    name: str, param: ParamSpec, space: Mapping[str, ParamSpec]
) -> list[FieldError]:
    errors: list[FieldError] = []
    for ref, allowed in param.when.items():
        path = f"{name}.when.{ref}"
        target = space.get(ref)
        if ref == name:
            errors.append(FieldError(path, f"{name} cannot depend on itself: remove this key"))
        elif target is None:
            errors.append(
                FieldError(
                    path,
                    f"condition on {shorten(ref)}, which is not a parameter of this space: add "
                    f"it to the space or remove the condition (parameters: {', '.join(space)})",
                )
            )
        elif not isinstance(target, CategoricalParam):
            errors.append(
                FieldError(
                    path,
                    f"conditions can only refer to categorical parameters, and {ref} is "
                    f"{target.type}: make {ref} categorical (choices: [...]) or drop the condition",
                )
            )
        elif not allowed:
            errors.append(FieldError(path, f"empty list: list the {ref} values that enable {name}"))
        else:
            known = {_safe_key(choice) for choice in target.choices}
            never = [value for value in allowed if _safe_key(value) not in known]
            if never:
                shown = ", ".join(shorten(value) for value in never[:5])
                more = f" and {len(never) - 5} more" if len(never) > 5 else ""
                errors.append(
                    FieldError(
                        path,
                        f"{ref} can never be {shown}{more} (its choices: "
                        f"{shorten(target.choices)}): use its choices or add these to them",
                    )
                )
    return errors


def _safe_key(value: Any) -> tuple[bool, Primitive]:
    try:
        return choice_key(value)
    except (TypeError, ValueError, RecursionError):  # not JSON: equal to no choice
        return (False, f"<{id(value)}>")


def _cycle_errors(space: Mapping[str, ParamSpec]) -> list[FieldError]:
    """One error per loop of conditions, found in one depth-first pass (linear in the space)."""
    position = {name: i for i, name in enumerate(space)}
    state: dict[str, bool] = {}  # True: on the current path; False: done
    errors: list[FieldError] = []
    reported: set[frozenset[str]] = set()
    for start in space:
        if start in state:
            continue
        path, pending = [start], [iter(_refs(start, space))]
        state[start] = True
        while pending:
            ref = next(pending[-1], None)
            if ref is None:
                state[path.pop()] = False
                pending.pop()
            elif ref not in state:
                state[ref] = True
                path.append(ref)
                pending.append(iter(_refs(ref, space)))
            elif state[ref]:  # back to a parameter on the path: a loop
                cycle = path[path.index(ref) :]
                first = min(range(len(cycle)), key=lambda i: position[cycle[i]])
                cycle = cycle[first:] + cycle[:first]
                if frozenset(cycle) not in reported:
                    reported.add(frozenset(cycle))
                    errors.append(_cycle_error(cycle))
    return errors


def _refs(name: str, space: Mapping[str, ParamSpec]) -> list[str]:
    return [ref for ref in space[name].when if ref != name and ref in space]


def _cycle_error(cycle: list[str]) -> FieldError:
    loop = " → ".join([*cycle, cycle[0]])
    return FieldError(
        f"{cycle[0]}.when",
        f"circular condition {loop}: a parameter cannot depend on itself through "
        "others; remove one of these conditions",
    )


def apply_params(job: TrainJobConfig, params: Mapping[str, Any]) -> TrainJobConfig:
    """Build a trial's job config: ``job`` with the searched values put at their paths.

    Args:
        job: the sweep's fixed training config.
        params: searchable name → value, as :func:`search_spaces.optuna_space.suggest_params`
            returns them (decoded, e.g. milestones as lists).

    Returns:
        A new, fully validated :class:`TrainJobConfig`.

    Raises:
        UnknownSearchableError: a name is not searchable.
        pydantic.ValidationError: the result is not a valid job (e.g. nesterov without
            momentum), or a ``workload.<option>`` value is invalid for the workload.
    """
    result = TrainJobConfig.model_validate(job_data_with(job, params))
    if any(get_searchable(name).path_parts[0] == "workload_options" for name in params):
        validate_workload_options(result.workload, result.workload_options)
    return result


def nest_dotted(dotted: Mapping[str, Any]) -> dict[str, Any]:
    """``{"optimizer.lr": 0.1}`` -> ``{"optimizer": {"lr": 0.1}}`` (a spec's ``job:`` block).

    Example:
        >>> nest_dotted({"optimizer.lr": 0.1, "epochs": 3})
        {'optimizer': {'lr': 0.1}, 'epochs': 3}
    """
    tree: dict[str, Any] = {}
    for path, value in dotted.items():
        node = tree
        *parents, leaf = path.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return tree


def job_data_with(job: TrainJobConfig, params: Mapping[str, Any]) -> dict[str, Any]:
    """``job`` as plain data with the searched values put at their paths (not validated).

    Raises:
        UnknownSearchableError: a name is not searchable.
    """
    data = job.model_dump()
    for name, value in params.items():
        parts = get_searchable(name).path_parts
        target = data
        for part in parts[:-1]:
            target = target.setdefault(part, {})
        target[parts[-1]] = value
    return data
