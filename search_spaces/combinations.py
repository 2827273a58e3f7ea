"""Reachable combinations: every training job a sweep can produce must be valid.

A space with ``extrapolation: [none, sam]`` reaches a job with ``extrapolation=sam``; if no
``gamma`` is set for it, that trial would crash hours into a sweep. So validation enumerates
the reachable combinations of categorical parameters (respecting ``when``), puts the active
numeric parameters at their low ends and then at their high ends, and builds the job for each.

Example:
    >>> from search_spaces.space import CategoricalParam
    >>> space = {"extrapolation": CategoricalParam(choices=["none", "past"])}
    >>> reachable_combinations(space).combinations
    [{'extrapolation': 'none'}, {'extrapolation': 'past'}]
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from search_spaces.errors import (
    FieldError,
    errors_from_option_problems,
    errors_from_validation_error,
)
from search_spaces.searchable import get_searchable
from search_spaces.space import (
    CategoricalParam,
    ParamSpec,
    apply_params,
    condition_holds,
    dependency_order,
    job_data_with,
)
from trainers.config import TrainJobConfig
from trainers.workloads import InvalidWorkloadOptionsError

__all__ = [
    "MAX_COMBINATIONS",
    "CombinationReport",
    "combination_errors",
    "reachable_combinations",
]

MAX_COMBINATIONS = 10_000
"""At most this many categorical combinations are enumerated (and checked)."""

_MAX_REPORTED = 5


@dataclass(frozen=True)
class CombinationReport:
    """The outcome of an enumeration.

    Attributes:
        combinations: categorical name → value, one dict per reachable combination.
        capped: the enumeration stopped at the limit; later combinations were not checked.
        never_active: parameters whose condition no reachable combination satisfies.
    """

    combinations: list[dict[str, Any]]
    capped: bool
    never_active: list[str]


def reachable_combinations(
    space: Mapping[str, ParamSpec], limit: int = MAX_COMBINATIONS
) -> CombinationReport:
    """Enumerate the categorical combinations a sampler can reach in ``space``.

    Args:
        space: a space whose conditions are not circular.
        limit: stop after this many combinations.
    """
    order = [n for n in dependency_order(space) if isinstance(space[n], CategoricalParam)]
    found: list[dict[str, Any]] = []
    for combination in _walk(space, order, {}):
        if len(found) == limit:
            return CombinationReport(found, capped=True, never_active=[])
        found.append(combination)
    never = [n for n, p in space.items() if not any(condition_holds(p.when, c) for c in found)]
    return CombinationReport(found, capped=False, never_active=never)


def _walk(
    space: Mapping[str, ParamSpec], order: list[str], chosen: dict[str, Any]
) -> Iterator[dict[str, Any]]:
    if not order:
        yield dict(chosen)
        return
    name, rest = order[0], order[1:]
    param = space[name]
    if not condition_holds(param.when, chosen) or not isinstance(param, CategoricalParam):
        yield from _walk(space, rest, chosen)
        return
    for choice in param.choices:
        chosen[name] = choice
        yield from _walk(space, rest, chosen)
    del chosen[name]


def _numeric_ends(
    space: Mapping[str, ParamSpec], combination: Mapping[str, Any]
) -> dict[str, dict[str, Any]]:
    ends: dict[str, dict[str, Any]] = {"low": {}, "high": {}}
    for name, param in space.items():
        if isinstance(param, CategoricalParam) or not condition_holds(param.when, combination):
            continue
        ends["low"][name] = param.low
        ends["high"][name] = param.high
    return ends


def combination_errors(
    job: TrainJobConfig, space: Mapping[str, ParamSpec], report: CombinationReport
) -> list[FieldError]:
    """Build the job of every reachable combination, numeric parameters at each end.

    Returns:
        One error per distinct problem (at most a handful, then a count of the rest), each
        naming the combination and, where the cause is known, the fix.
    """
    errors: dict[str, FieldError] = {}
    for combination in report.combinations:
        ends = _numeric_ends(space, combination)
        if not ends["low"]:
            del ends["high"]  # no numeric parameter: one job per combination
        for end, numeric in ends.items():
            params = {**combination, **numeric}
            try:
                apply_params(job, params)
            except (ValidationError, ValueError) as exc:
                error = _explain(job, space, combination, end, numeric, exc)
                errors.setdefault(str(error), error)
    reported = list(errors.values())
    if len(reported) > _MAX_REPORTED:
        more = len(reported) - _MAX_REPORTED
        reported = reported[:_MAX_REPORTED]
        reported.append(FieldError("space", f"… and {more} more invalid combinations"))
    return reported


@dataclass(frozen=True)
class _Hint:
    """A known way a combination fails, with the spec-level fix.

    Attributes:
        applies: true for the attempted job data when this is the cause.
        culprits: the space parameters to point at, in preference order.
        explain: job data → message (names the reachable value, not the whole combination,
            so that one cause gives one error).
    """

    applies: Callable[[Mapping[str, Any]], bool]
    culprits: tuple[str, ...]
    explain: Callable[[Mapping[str, Any]], str]


def _needs_gamma(data: Mapping[str, Any]) -> bool:
    return data.get("optimizer", {}).get("gamma") is None


def _gamma_kind(data: Mapping[str, Any]) -> Any:
    return data.get("gamma_schedule", {}).get("kind")


_HINTS = (
    _Hint(
        applies=lambda d: d.get("optimizer", {}).get("extrapolation") == "sam" and _needs_gamma(d),
        culprits=("extrapolation", "gamma"),
        explain=lambda d: (
            "extrapolation=sam is reachable but no absolute gamma is set for it: add a "
            "`gamma` parameter with when: {extrapolation: [sam]} or set job.optimizer.gamma"
        ),
    ),
    _Hint(
        applies=lambda d: _gamma_kind(d) not in (None, "follow_lr") and _needs_gamma(d),
        culprits=("gamma_schedule", "gamma"),
        explain=lambda d: (
            f"gamma_schedule={_gamma_kind(d)} is reachable but no absolute gamma is set for "
            "it: add a `gamma` parameter with when: "
            f"{{gamma_schedule: [{_gamma_kind(d)}]}} or set job.optimizer.gamma"
        ),
    ),
    _Hint(
        applies=lambda d: _gamma_kind(d) == "follow_lr" and not _needs_gamma(d),
        culprits=("gamma_schedule", "gamma"),
        explain=lambda d: (
            f"gamma_schedule=follow_lr is reachable together with an absolute gamma="
            f"{d['optimizer']['gamma']}, which follow_lr would ignore: make `gamma` "
            "conditional on the other gamma_schedule kinds, or drop follow_lr"
        ),
    ),
    _Hint(
        applies=lambda d: (
            d.get("optimizer", {}).get("nesterov") is True
            and d["optimizer"].get("momentum", 0) <= 0
        ),
        culprits=("momentum", "nesterov"),
        explain=lambda d: (
            f"nesterov=true is reachable with momentum={d['optimizer']['momentum']}, but "
            "Nesterov needs momentum > 0: raise space.momentum.low above 0 (or set "
            "job.optimizer.momentum), or make nesterov conditional so the two never meet"
        ),
    ),
)


def _explain(
    job: TrainJobConfig,
    space: Mapping[str, ParamSpec],
    combination: Mapping[str, Any],
    end: str,
    numeric: Mapping[str, Any],
    exc: Exception,
) -> FieldError:
    data = job_data_with(job, {**combination, **numeric})
    for hint in _HINTS:
        if hint.applies(data):
            culprit = next((c for c in hint.culprits if c in space), "")
            path = f"space.{culprit}" if culprit else "space"
            if culprit in numeric and end == "low":
                path += ".low"
            return FieldError(path, hint.explain(data))
    job_errors = _job_errors(exc)
    name = next((found for e in job_errors if (found := _param_at(e.path, space))), "")
    # A numeric parameter out of the job's range: point at the end that is out of it.
    path = _join("space", name, end if name in numeric else "")
    reasons = "; ".join(str(FieldError(f"job.{e.path}".rstrip("."), e.message)) for e in job_errors)
    where = _describe(combination, end, numeric)
    return FieldError(
        path, f"the reachable combination{where} gives an invalid training job: {reasons}"
    )


def _job_errors(exc: Exception) -> list[FieldError]:
    """The failure's errors with paths inside the job (``workload_options.x`` for options)."""
    if isinstance(exc, InvalidWorkloadOptionsError):
        return errors_from_option_problems(exc.problems, "workload_options")
    if isinstance(exc, ValidationError):
        return errors_from_validation_error(exc, TrainJobConfig)
    return [FieldError("", str(exc))]


def _param_at(path: str, space: Mapping[str, ParamSpec]) -> str:
    for name in space:
        target = get_searchable(name).path
        if path == target or path.startswith(target + "."):
            return name
    return ""


def _describe(combination: Mapping[str, Any], end: str, numeric: Mapping[str, Any]) -> str:
    text = ", ".join(f"{k}={_show(v)}" for k, v in combination.items())
    ends = ", ".join(f"{k}={_show(v)}" for k, v in numeric.items())
    where = f" ({text})" if text else ""
    if ends:
        where += f" with numeric parameters at their {end} ends ({ends})"
    return where


def _join(*parts: str) -> str:
    return ".".join(part for part in parts if part)


def _show(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)
