"""Cross-field checks of a sweep spec, run once every field is valid on its own.

Each check is a function ``(spec, workload) -> list[FieldError]`` in :data:`SPEC_CHECKS`;
``workload`` is the job's workload info, or None when the workload is unknown (the first check
reports that, and checks that need the workload skip). The reachable-combination checks run
last and only on an otherwise valid spec, since they build real training configs: the number
of combinations, conditions that never hold, searched settings no reachable variant uses, the
job of every combination at the numeric ends, every value of the integer workload options,
and the global batch against the training split.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from search_spaces.combinations import (
    CombinationReport,
    combination_errors,
    int_option_errors,
    reachable_combinations,
    too_many_combinations,
    workload_option_points,
)
from search_spaces.errors import FieldError, errors_from_validation_error, shorten
from search_spaces.objective import objective_metrics
from search_spaces.samplers import SAMPLERS, sampler_space_errors
from search_spaces.search import SCHEDULERS
from search_spaces.searchable import WORKLOAD_PREFIX
from trainers.optim.variants import VARIANTS, VariantInfo
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
    except ValueError as exc:  # the message's long quotes are cut by load_spec
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
                    f"workload {workload.name!r} has no option {shorten(option)}: use one of "
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
                    f"workload {workload.name!r} does not report {shorten(objective.metric)} as "
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


def _check_combinations(spec: SweepSpec, workload: WorkloadInfo) -> list[FieldError]:
    report = reachable_combinations(spec.space)
    if report.capped:
        return [too_many_combinations(spec.space)]
    errors = [
        FieldError(
            f"space.{name}.when",
            f"{name} is never active: no reachable combination satisfies its condition "
            f"{shorten(dict(spec.space[name].when), 200)} (a parameter it depends on is itself "
            "conditional); fix the condition or remove the parameter",
        )
        for name in report.never_active
    ]
    errors += _unused_errors(spec, report)
    errors += combination_errors(spec.job, spec.space, report)
    if errors:
        return errors
    errors = int_option_errors(spec.job, spec.space, report, workload.options_model)
    return errors or _train_split_errors(spec, workload, report)


@dataclass(frozen=True)
class _Effect:
    """Which extrapolation variants a searched optimizer setting has an effect under.

    Attributes:
        users: the variants, from their flags in :data:`trainers.optim.variants.VARIANTS`.
        what: what the setting does, for the message.
    """

    users: Callable[[VariantInfo], bool]
    what: str


# From trainers/optim/extrap_sgd.py and trainers/step.py: noise only moves noise variants;
# gamma scales gradient, gradient+noise, past and sam; extrapolation_momentum is read by
# gradient and gradient+noise only; the second batch and the scope concern the first pass of
# the two-pass variants.
_EFFECTS: Mapping[str, _Effect] = {
    "gamma": _Effect(lambda v: v.uses_gamma, "the extrapolation step"),
    "gamma_ratio": _Effect(lambda v: v.uses_gamma, "the extrapolation step as a share of lr"),
    "gamma_schedule": _Effect(lambda v: v.uses_gamma, "how the extrapolation step moves"),
    "gamma_final_fraction": _Effect(lambda v: v.uses_gamma, "the final extrapolation step"),
    "noise": _Effect(lambda v: v.uses_noise, "the kind of injected noise"),
    "noise_std": _Effect(lambda v: v.uses_noise, "the scale of the injected noise"),
    "extrapolation_momentum": _Effect(
        lambda v: v.needs_grad and v.name != "sam", "the extrapolation direction"
    ),
    "second_batch": _Effect(lambda v: v.two_pass, "the batch of the second gradient"),
    "extrapolation_scope": _Effect(lambda v: v.two_pass, "how the first gradient is reduced"),
}


def _unused_errors(spec: SweepSpec, report: CombinationReport) -> list[FieldError]:
    """Searched optimizer settings that no reachable trial's variant uses (wasted budget)."""
    errors: list[FieldError] = []
    default = spec.job.optimizer.extrapolation
    for name, effect in _EFFECTS.items():
        param = spec.space.get(name)
        if param is None or name in report.never_active:
            continue
        active = [c for c in report.combinations if param.active(c)]
        reached = sorted({str(c.get("extrapolation", default)) for c in active})
        if name == "gamma_ratio":
            with_gamma = [c for c in active if _absolute_gamma(spec, c)]
            if with_gamma and len(with_gamma) == len(active):
                errors.append(
                    FieldError(
                        "space.gamma_ratio",
                        "gamma_ratio has no effect in any trial: an absolute gamma "
                        "(job.optimizer.gamma or the gamma parameter) is set wherever it is "
                        "searched, and gamma_ratio applies only without one: remove it, or "
                        "make gamma and gamma_ratio conditional on different variants",
                    )
                )
                continue
        if any(variant not in VARIANTS or effect.users(VARIANTS[variant]) for variant in reached):
            continue  # used somewhere (an unknown variant is reported by the job check)
        users = [v.name for v in VARIANTS.values() if effect.users(v)]
        errors.append(
            FieldError(f"space.{name}", _unused_message(spec, name, effect, reached, users))
        )
    return errors


def _absolute_gamma(spec: SweepSpec, combination: Mapping[str, Any]) -> bool:
    gamma = spec.space.get("gamma")
    return spec.job.optimizer.gamma is not None or (gamma is not None and gamma.active(combination))


def _unused_message(
    spec: SweepSpec, name: str, effect: _Effect, reached: list[str], users: list[str]
) -> str:
    if "extrapolation" in spec.space:
        fix = (
            f"add one of them to space.extrapolation's choices and make {name} conditional on "
            f"it (when: {{extrapolation: [{users[0]}]}})"
        )
    else:
        fix = "set job.optimizer.extrapolation to one of them (or search extrapolation)"
    return (
        f"{name} ({effect.what}) has no effect in any trial: only the variants "
        f"{', '.join(users)} use it, and the trials that search it run "
        f"{' and '.join(reached)}; searching it only wastes trials: remove it from space, or "
        f"{fix}"
    )


def _train_split_errors(
    spec: SweepSpec, workload: WorkloadInfo, report: CombinationReport
) -> list[FieldError]:
    """A global batch larger than the training split gives every trial zero steps an epoch."""
    train_size = workload.train_size
    if train_size is None:
        return []  # the workload cannot tell without its data: checked when a trial loads it
    smallest: tuple[int, dict[str, Any]] | None = None
    for point in workload_option_points(spec.job, spec.space, report):
        options = {
            **spec.job.workload_options,
            **{n.removeprefix(WORKLOAD_PREFIX): v for n, v in point.items()},
        }
        try:
            size = train_size(workload.options_model.model_validate(options))
        except (ValidationError, ValueError):
            continue  # invalid options are reported by the other checks
        if size is not None and (smallest is None or size < smallest[0]):
            smallest = (size, point)
    batch = spec.job.global_batch_size
    if smallest is None or batch <= smallest[0]:
        return []
    size, point = smallest
    where = f" where {', '.join(f'{n}={v}' for n, v in point.items())}" if point else ""
    more = (
        ", or give it more data (job.workload_options.num_samples)"
        if "num_samples" in workload.options_model.model_fields
        else ""
    )
    return [
        FieldError(
            "job.global_batch_size",
            f"global_batch_size={batch:,} is larger than the training split of "
            f"{workload.name} ({size:,} samples{where}): no trial could make a single "
            f"optimizer step; lower global_batch_size to at most {size:,} (and a multiple of "
            f"workers={spec.job.workers}){more}",
        )
    ]


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
