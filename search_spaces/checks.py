"""Cross-field checks of a sweep spec, run once every field is valid on its own.

Each check is a function ``(spec, workload) -> list[FieldError]`` in :data:`SPEC_CHECKS`;
``workload`` is the job's workload info, or None when the workload is unknown (the first check
reports that, and checks that need the workload skip). The reachable-combination check runs
last and only on an otherwise valid spec, since it builds real training configs.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING

from pydantic import ValidationError

from search_spaces.combinations import (
    MAX_COMBINATIONS,
    combination_errors,
    reachable_combinations,
)
from search_spaces.errors import FieldError, SpecWarning, errors_from_validation_error
from search_spaces.objective import objective_metrics
from search_spaces.samplers import SAMPLERS, sampler_space_errors
from search_spaces.search import SCHEDULERS
from search_spaces.searchable import WORKLOAD_PREFIX
from trainers.workloads import WorkloadInfo, get_workload_info

if TYPE_CHECKING:
    from search_spaces.spec import SweepSpec

__all__ = ["SPEC_CHECKS", "SpecCheck", "lookup_workload", "run_checks"]


SpecCheck = Callable[["SweepSpec", WorkloadInfo | None], list[FieldError]]


def lookup_workload(name: str) -> WorkloadInfo | None:
    """The workload's info, or None if it is not registered."""
    try:
        return get_workload_info(name)
    except ValueError:
        return None


def _check_workload(spec: SweepSpec, workload: WorkloadInfo | None) -> list[FieldError]:
    if workload is not None:
        return []
    try:
        get_workload_info(spec.job.workload)
    except ValueError as exc:
        return [FieldError("job.workload", str(exc))]
    return []


def _check_workload_options(spec: SweepSpec, workload: WorkloadInfo | None) -> list[FieldError]:
    if workload is None:
        return []
    # The options model directly (validate_workload_options does the same) so that an unknown
    # option's error lists the valid ones.
    try:
        workload.options_model.model_validate(spec.job.workload_options)
    except ValidationError as exc:
        return errors_from_validation_error(
            exc, workload.options_model, prefix="job.workload_options"
        )
    return []


def _check_space_options(spec: SweepSpec, workload: WorkloadInfo | None) -> list[FieldError]:
    if workload is None:
        return []
    known = list(workload.options_model.model_fields)
    errors: list[FieldError] = []
    for name in spec.space:
        if not name.startswith(WORKLOAD_PREFIX):
            continue
        option = name.removeprefix(WORKLOAD_PREFIX)
        if option not in known:
            errors.append(
                FieldError(
                    f"space.{name}",
                    f"workload {workload.name!r} has no option {option!r}: use one of "
                    f"{', '.join(WORKLOAD_PREFIX + o for o in known) or '(it has none)'}",
                )
            )
        elif option in workload.fixed_options:
            errors.append(
                FieldError(
                    f"space.{name}",
                    f"{option!r} defines the data of workload {workload.name!r} (which "
                    "samples are training, validation and test data), and every trial must be "
                    "compared on the same data split, so it cannot be searched: set it once "
                    f"under job.workload_options ({option}: <value>) and remove it from space",
                )
            )
    return errors


def _check_objectives(spec: SweepSpec, workload: WorkloadInfo | None) -> list[FieldError]:
    if workload is None:
        return []
    allowed = objective_metrics(workload.metric)
    paths = ["objective", *(f"secondary_objectives.{i}" for i in range(len(spec.objectives) - 1))]
    errors: list[FieldError] = []
    seen: set[str] = set()
    for path, objective in zip(paths, spec.objectives, strict=True):
        if objective.metric not in allowed:
            errors.append(
                FieldError(
                    f"{path}.metric",
                    f"workload {workload.name!r} does not report {objective.metric!r} as "
                    f"something to optimize: use one of {', '.join(allowed)}",
                )
            )
        elif objective.metric in seen:
            errors.append(
                FieldError(
                    f"{path}.metric",
                    f"{objective.metric!r} is already an objective: list each metric once",
                )
            )
        seen.add(objective.metric)
    return errors


def _check_sampler(spec: SweepSpec, workload: WorkloadInfo | None) -> list[FieldError]:
    info = SAMPLERS[spec.search.sampler]
    return sampler_space_errors(info, spec.space, num_objectives=len(spec.objectives))


def _check_scheduler(spec: SweepSpec, workload: WorkloadInfo | None) -> list[FieldError]:
    scheduler = spec.search.scheduler
    errors: list[FieldError] = []
    if len(spec.objectives) > 1 and not SCHEDULERS[scheduler.kind].multi_objective:
        errors.append(
            FieldError(
                "search.scheduler.kind",
                f"{scheduler.kind} stops trials early by one metric, but the spec has "
                f"{len(spec.objectives)} objectives: use scheduler: fifo or drop "
                "secondary_objectives",
            )
        )
    grace = getattr(scheduler, "grace_period", None)
    if grace is not None and grace > spec.job.epochs:
        errors.append(
            FieldError(
                "search.scheduler.grace_period",
                f"grace_period={grace} epochs is longer than the run (job.epochs="
                f"{spec.job.epochs}): lower it (e.g. to {max(1, spec.job.epochs // 4)})",
            )
        )
    return errors


def _check_combinations(spec: SweepSpec, workload: WorkloadInfo | None) -> list[FieldError]:
    report = reachable_combinations(spec.space)
    if report.capped:
        warnings.warn(
            f"the space has more than {MAX_COMBINATIONS} categorical combinations; only the "
            f"first {MAX_COMBINATIONS} were checked for validity",
            SpecWarning,
            stacklevel=2,
        )
    errors = [
        FieldError(
            f"space.{name}.when",
            f"{name} is never active: no reachable combination satisfies its condition "
            f"{dict(spec.space[name].when)} (a parameter it depends on is itself conditional); "
            "fix the condition or remove the parameter",
        )
        for name in report.never_active
    ]
    return errors + combination_errors(spec.job, spec.space, report)


SPEC_CHECKS: tuple[SpecCheck, ...] = (
    _check_workload,
    _check_workload_options,
    _check_space_options,
    _check_objectives,
    _check_sampler,
    _check_scheduler,
)
"""Checks run on every spec; the reachable-combination check follows if these pass."""


def run_checks(spec: SweepSpec) -> list[FieldError]:
    """Run :data:`SPEC_CHECKS`, then (if they found nothing) the combination check."""
    workload = lookup_workload(spec.job.workload)
    errors = [error for check in SPEC_CHECKS for error in check(spec, workload)]
    if errors or workload is None:
        return errors
    return _check_combinations(spec, workload)
