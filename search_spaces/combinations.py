"""Reachable combinations: every training job a sweep can produce must be valid.

A space with ``extrapolation: [none, sam]`` reaches a job with ``extrapolation=sam``; if no
``gamma`` is set for it, that trial would crash hours into a sweep. So validation enumerates
the reachable combinations of categorical parameters (respecting ``when``; at most
:data:`~search_spaces.limits.MAX_COMBINATIONS`, else the spec is refused), puts the active
numeric parameters at their low ends and then at their high ends, and builds the job for each.
The job's own numeric rules are bounds, which the ends decide. A workload's options may also
ask for divisibility (``multiple_of``, ``d_model % num_heads``) or relate two options, which
the ends do not decide, so :func:`int_option_errors` checks every value a searched integer
workload option can take.

Example:
    >>> from search_spaces.space import CategoricalParam
    >>> space = {"extrapolation": CategoricalParam(choices=["none", "past"])}
    >>> reachable_combinations(space).combinations
    [{'extrapolation': 'none'}, {'extrapolation': 'past'}]
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ValidationError

from search_spaces.errors import (
    FieldError,
    errors_from_option_problems,
    errors_from_validation_error,
    shorten,
)
from search_spaces.limits import MAX_COMBINATIONS, MAX_INT_VALUES, MAX_OPTION_CHECKS
from search_spaces.searchable import WORKLOAD_PREFIX, get_searchable
from search_spaces.space import (
    CategoricalParam,
    FloatParam,
    IntParam,
    ParamSpec,
    apply_params,
    choice_key,
    dependency_order,
    job_data_with,
)
from trainers.config import TrainJobConfig
from trainers.workloads import InvalidWorkloadOptionsError

__all__ = [
    "MAX_COMBINATIONS",
    "CombinationReport",
    "combination_errors",
    "int_option_errors",
    "reachable_combinations",
    "too_many_combinations",
    "workload_option_points",
]

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
        limit: stop after this many combinations (``capped`` tells that there are more).
    """
    order = [n for n in dependency_order(space) if isinstance(space[n], CategoricalParam)]
    found: list[dict[str, Any]] = []
    for combination in _walk(space, order, {}):
        if len(found) == limit:
            return CombinationReport(found, capped=True, never_active=[])
        found.append(combination)
    never = [n for n, p in space.items() if not any(p.active(c) for c in found)]
    return CombinationReport(found, capped=False, never_active=never)


def _walk(
    space: Mapping[str, ParamSpec], order: list[str], chosen: dict[str, Any]
) -> Iterator[dict[str, Any]]:
    if not order:
        yield dict(chosen)
        return
    name, rest = order[0], order[1:]
    param = space[name]
    if not param.active(chosen) or not isinstance(param, CategoricalParam):
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
        if isinstance(param, CategoricalParam) or not param.active(combination):
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
    return str(value).lower() if isinstance(value, bool) else shorten(value).strip("'")


def too_many_combinations(space: Mapping[str, ParamSpec]) -> FieldError:
    """The error for a space with more than MAX_COMBINATIONS reachable combinations."""
    sizes = {n: len(p.choices) for n, p in space.items() if isinstance(p, CategoricalParam)}
    biggest = sorted(sizes, key=lambda n: -sizes[n])
    factors = " × ".join(f"{n} {sizes[n]}" for n in biggest[:6])
    factors += " × …" if len(biggest) > 6 else ""
    return FieldError(
        "space",
        f"the space has more than {MAX_COMBINATIONS:,} reachable combinations of categorical "
        f"values (up to {math.prod(sizes.values()):,} without the conditions: {factors}); "
        "validation builds the training job of each one, so at most "
        f"{MAX_COMBINATIONS:,} are accepted: drop choices, fix some of these parameters in "
        "job, make some conditional (when), or search numbers as ranges (low, high, step) "
        "instead of choices",
    )


def _workload_params(
    space: Mapping[str, ParamSpec], combination: Mapping[str, Any], kind: type[BaseModel]
) -> dict[str, Any]:
    return {
        name: param
        for name, param in space.items()
        if name.startswith(WORKLOAD_PREFIX)
        and isinstance(param, kind)
        and param.active(combination)
    }


def _option(name: str) -> str:
    return name.removeprefix(WORKLOAD_PREFIX)


def workload_option_points(
    job: TrainJobConfig, space: Mapping[str, ParamSpec], report: CombinationReport
) -> list[dict[str, Any]]:
    """The distinct workload options of the reachable jobs, numeric options at either end.

    Returns:
        Searchable name → value of the ``workload.*`` parameters (empty dicts for none), one
        dict per distinct point; the job's own ``workload_options`` fill in the rest.
    """
    points: dict[tuple[tuple[str, Any], ...], dict[str, Any]] = {}
    for combination in report.combinations:
        fixed = {n: v for n, v in combination.items() if n.startswith(WORKLOAD_PREFIX)}
        numeric = {
            **_workload_params(space, combination, IntParam),
            **_workload_params(space, combination, FloatParam),
        }
        for end in ("low", "high"):
            point = {**fixed, **{n: getattr(p, end) for n, p in numeric.items()}}
            points.setdefault(tuple((n, choice_key(v)) for n, v in point.items()), point)
    return list(points.values())


@dataclass
class _IntGroup:
    """Combinations that agree on everything the integer check depends on."""

    fixed: dict[str, Any]
    ints: dict[str, list[int]]
    floats: dict[str, FloatParam]

    def planned(self) -> int:
        """How many option sets checking this group builds."""
        ends = 2 if self.floats else 1
        return ends * (
            math.prod(len(v) for v in self.ints.values())
            if _whole_product(self.ints)
            else 2 * sum(len(v) for v in self.ints.values())
        )

    def points(self) -> Iterator[tuple[dict[str, Any], str | None]]:
        """Every point to check (int values as in int_option_errors, floats at either end),
        with the one int option it varies (None: the product varies them all)."""
        ints: Iterator[tuple[dict[str, int], str | None]]
        if _whole_product(self.ints):
            names = list(self.ints)
            ints = (
                (dict(zip(names, values, strict=True)), None)
                for values in itertools.product(*self.ints.values())
            )
        else:
            ints = (
                ({**{n: v[end] for n, v in self.ints.items()}, name: value}, name)
                for end in (0, -1)
                for name, values in self.ints.items()
                for value in values
            )
        ends = ("low", "high") if self.floats else ("low",)
        for point, varied in ints:
            for end in ends:
                yield {**point, **{n: getattr(p, end) for n, p in self.floats.items()}}, varied


def _whole_product(ints: Mapping[str, list[int]]) -> bool:
    return math.prod(len(v) for v in ints.values()) <= MAX_INT_VALUES


@dataclass
class _Failures:
    """The values of one integer option that failed, and the first failure in full."""

    values: list[int]
    bad: set[int] = field(default_factory=set)
    example: str = ""


def int_option_errors(
    job: TrainJobConfig,
    space: Mapping[str, ParamSpec],
    report: CombinationReport,
    options_model: type[BaseModel],
) -> list[FieldError]:
    """Check every value a searched integer workload option can take (not only its ends).

    For each reachable combination, the active integer ``workload.*`` parameters are checked
    against ``options_model`` at every point of the product of their values when it has at
    most :data:`~search_spaces.limits.MAX_INT_VALUES` points, otherwise each one's values
    with the others at their low ends and then at their high ends; float workload options sit
    at their low and at their high ends. An option with more than ``MAX_INT_VALUES`` values,
    or a space that would need more than :data:`~search_spaces.limits.MAX_OPTION_CHECKS`
    option sets in all, is refused.

    Returns:
        One error per integer option (``space.workload.<option>``) with invalid values,
        naming a failing value, the reason and the valid values.
    """
    groups: dict[Any, _IntGroup] = {}
    errors: dict[str, FieldError] = {}
    for combination in report.combinations:
        ints = _workload_params(space, combination, IntParam)
        if not ints:
            continue
        values: dict[str, list[int]] = {}
        for name, param in ints.items():
            count = (param.high - param.low) // param.step + 1
            if count > MAX_INT_VALUES:
                errors.setdefault(name, _too_many_values(name, param, count))
                continue
            values[name] = list(range(param.low, param.high + 1, param.step))
        floats = _workload_params(space, combination, FloatParam)
        fixed = {n: v for n, v in combination.items() if n.startswith(WORKLOAD_PREFIX)}
        key = (tuple((n, choice_key(v)) for n, v in fixed.items()), tuple(ints), tuple(floats))
        groups.setdefault(key, _IntGroup(fixed, values, floats))
    if errors:
        return list(errors.values())
    planned = sum(group.planned() for group in groups.values())
    if planned > MAX_OPTION_CHECKS:
        return [
            FieldError(
                "space",
                f"checking every value of the integer workload options "
                f"({', '.join(sorted({n for g in groups.values() for n in g.ints}))}) would "
                f"build {planned:,} option sets; at most {MAX_OPTION_CHECKS:,} are built: "
                "narrow their ranges, give them a larger step, or fix some in "
                "job.workload_options",
            )
        ]
    failures: dict[str, _Failures] = {}
    for group in groups.values():
        for point, varied in group.points():
            options = {
                **job.workload_options,
                **{_option(n): v for n, v in {**group.fixed, **point}.items()},
            }
            try:
                options_model.model_validate(options)
            except ValidationError as exc:
                _record(failures, group, point, varied, exc)
    return [
        _int_error(name, space[name], failure)
        for name, failure in failures.items()
        if name not in errors
    ]


def _too_many_values(name: str, param: IntParam, count: int) -> FieldError:
    return FieldError(
        f"space.{name}",
        f"{name} takes {count:,} values ({param.low}..{param.high}, step {param.step}); every "
        f"value of an integer workload option is checked, and at most {MAX_INT_VALUES:,} "
        f"are: narrow the range or raise step (e.g. step: {math.ceil(count / 1000) * param.step})",
    )


def _record(
    failures: dict[str, _Failures],
    group: _IntGroup,
    point: Mapping[str, Any],
    varied: str | None,
    exc: ValidationError,
) -> None:
    problem = exc.errors(include_url=False)[0]
    reason = str(problem["msg"]).removeprefix("Value error, ")
    loc = problem["loc"]
    # The option that moved away from its end; else the option the error names (first).
    blamed = varied or (f"{WORKLOAD_PREFIX}{loc[0]}" if loc else "")
    if blamed not in group.ints:
        named = [
            (match.start(), name)
            for name in group.ints
            if (match := re.search(rf"\b{re.escape(_option(name))}\b", reason)) is not None
        ]
        blamed = min(named)[1] if named else list(group.ints)[-1]
    failure = failures.setdefault(blamed, _Failures(group.ints[blamed]))
    if not failure.bad:
        others = ", ".join(f"{n}={v}" for n, v in {**group.fixed, **point}.items() if n != blamed)
        where = f" (with {others})" if others else ""
        failure.example = f"{blamed}={point[blamed]}{where}: {reason[:200]}"
    failure.bad.add(point[blamed])


def _int_error(name: str, param: ParamSpec, failure: _Failures) -> FieldError:
    valid = [v for v in failure.values if v not in failure.bad]
    listed = ", ".join(str(v) for v in valid[:8]) + (", …" if len(valid) > 8 else "")
    fix = (
        f"search only valid values (e.g. {name}: {{choices: [{listed}]}}) or change the range"
        if valid
        else "change the range or the other workload options"
    )
    span = f"{param.low}..{param.high}, step {param.step}" if isinstance(param, IntParam) else ""
    return FieldError(
        f"space.{name}",
        f"{len(failure.bad):,} of the {len(failure.values):,} values of {name} ({span}) give "
        f"invalid workload options, e.g. {failure.example}; {fix}",
    )
