"""The batch-size scaling study: one spec for "at my batch size, which member of the family
recovers small-batch accuracy, and at what cost?".

A study spec names a base sweep spec, a list of global batch sizes, a list of arms (a preset
and/or search-space overrides each), an equal tuning budget per cell, the confirmation
setting and the compute rule. Each (batch size, arm) cell is one ordinary sweep, tuned on
validation and confirmed on fresh seeds; :meth:`StudySpec.cells` builds them.

Rules every cell follows (documented in ``docs/spec-reference.md``):

- the base learning rate is searched with ``schedule.reference_batch_size`` (default 128), so
  every batch size gets the same search: lr = base_lr · batch / 128;
- warmup is ``warmup_fraction`` (default 5%) of the run at every batch size;
- every arm uses variants of one cost: the extrapolation choices it can reach all take the same
  number of gradient evaluations per step (none, noise, past: one; gradient, gradient+noise,
  sam: two);
- equal compute as well as equal epochs (``compute: both``): each one-pass arm also gets a cell
  at twice the epochs (a fresh search with the same budget), so that it spends as many gradient
  evaluations as a two-pass arm at the base epochs.

Example:
    >>> study = load_study({
    ...     "name": "demo-study",
    ...     "base": {"job": {"workload": "mnist1d", "workers": 1, "global_batch_size": 128,
    ...                      "epochs": 2}},
    ...     "batch_sizes": [128, 512],
    ...     "arms": [{"preset": "sgd-baseline"}, {"preset": "extrap-gradient"}],
    ...     "budget": {"num_trials": 2, "epochs": 2},
    ... })
    >>> [(c.batch_size, c.arm, c.epochs) for c in study.cells()][:3]
    [(128, 'sgd-baseline', 2), (128, 'sgd-baseline', 4), (128, 'extrap-gradient', 2)]
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from search_spaces.errors import FieldError, SpecError, errors_from_validation_error
from search_spaces.search import ConfirmConfig, SchedulerConfig
from search_spaces.spec import SweepSpec
from search_spaces.validation import load_spec
from trainers.optim.variants import VARIANTS

__all__ = [
    "COMPARISONS",
    "StudyArm",
    "StudyBudget",
    "StudyCell",
    "StudySpec",
    "load_study",
    "study_errors",
]

_SLUG = re.compile(r"^[a-z0-9][a-z0-9._-]{0,47}$")
Compute = Literal["equal_epochs", "equal_compute", "both"]
COMPARISONS = ("equal_epochs", "equal_compute")
"""The two comparisons a study's table can show."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class StudyArm(_Strict):
    """One member of the family under study: a preset and/or search-space overrides."""

    name: str | None = Field(None, description="default: the preset's name")
    preset: str | None = Field(None, description="a shipped preset, e.g. sgd-baseline")
    space: dict[str, Any] = Field(
        default_factory=dict,
        max_length=64,
        description="parameters laid over the base's and the preset's space (null removes one)",
    )

    @model_validator(mode="after")
    def _named(self) -> StudyArm:
        if self.name is None and self.preset is None:
            raise ValueError("an arm needs a preset or a name (and its space): add one")
        name = self.name or self.preset or ""
        if not _SLUG.match(name):
            raise ValueError(
                f"arm name {name[:60]!r} is not a slug: lowercase letters, digits, '.', '_', "
                "'-', at most 48 characters"
            )
        return self

    @property
    def label(self) -> str:
        """The arm's name in tables and plots."""
        return self.name or self.preset or ""


class StudyBudget(_Strict):
    """The equal tuning budget of every cell."""

    num_trials: int = Field(8, ge=1, le=1000, description="search trials per cell")
    epochs: int = Field(..., ge=1, le=100_000, description="epochs of a trial (the base)")
    sampler: str = Field("tpe", description="a registered sampler")
    seed: int = Field(0, description="seeds every cell's sampler")
    scheduler: SchedulerConfig | None = Field(
        None, description="prunes the search phase (confirmation runs are never pruned)"
    )
    max_concurrent_trials: int | None = Field(None, ge=1, le=1000)

    @field_validator("scheduler", mode="before")
    @classmethod
    def _scheduler_shorthand(cls, value: Any) -> Any:
        return {"kind": value} if isinstance(value, str) else value


@dataclass(frozen=True)
class StudyCell:
    """One (batch size, arm, epochs) sweep of a study.

    Attributes:
        key: ``b512-extrap-gradient-e40``: unique in the study, part of its sweep's id.
        comparisons: the comparisons this cell is part of (``equal_epochs``,
            ``equal_compute``).
        passes: gradient evaluations per sample per step (1 or 2).
        spec: the cell's sweep spec, validated.
    """

    key: str
    batch_size: int
    arm: str
    epochs: int
    passes: int
    comparisons: tuple[str, ...]
    spec: SweepSpec


class StudySpec(_Strict):
    """A batch-size scaling study (see the module docstring)."""

    version: Literal[1] = Field(1, description="study schema version")
    name: str = Field(..., description="slug; the study's MLflow experiment by default")
    description: str | None = Field(None, max_length=1000)
    base: dict[str, Any] = Field(
        ...,
        description="a sweep spec without name or search (job, space, objective, tracking…); "
        "`extrap study` reads it from a file when given as base: {path: FILE}",
    )
    batch_sizes: list[int] = Field(..., min_length=1, max_length=32)
    arms: list[StudyArm] = Field(..., min_length=1, max_length=16)
    budget: StudyBudget
    confirm: ConfirmConfig = Field(default_factory=ConfirmConfig)
    compute: Compute = Field("both", description="equal_epochs, equal_compute or both")
    reference_batch_size: int = Field(128, ge=1, description="lr = base_lr · batch / this")
    warmup_fraction: float = Field(0.05, ge=0, lt=1, description="warmup, fraction of the run")

    @field_validator("name")
    @classmethod
    def _slug(cls, value: str) -> str:
        if not _SLUG.match(value):
            raise ValueError(
                f"name {value[:60]!r} is not a slug: lowercase letters, digits, '.', '_', '-', "
                "starting with a letter or digit, at most 48 characters"
            )
        return value

    @field_validator("batch_sizes")
    @classmethod
    def _batch_sizes(cls, sizes: list[int]) -> list[int]:
        problems = [
            FieldError(str(i), f"a batch size must be a positive integer, got {size}")
            for i, size in enumerate(sizes)
            if size < 1
        ]
        seen: set[int] = set()
        for i, size in enumerate(sizes):
            if size in seen:
                problems.append(FieldError(str(i), f"{size} is listed twice: list it once"))
            seen.add(size)
        if problems:
            raise SpecError(problems)
        return sorted(sizes)

    @model_validator(mode="after")
    def _check_cells(self) -> StudySpec:
        errors = _arm_name_errors(self.arms)
        if not errors:
            errors = _cell_errors(self)
        if errors:
            raise SpecError(errors)
        return self

    @property
    def experiment(self) -> str:
        """The study's MLflow experiment: the base's ``tracking.experiment``, or its name."""
        tracking = self.base.get("tracking") or {}
        experiment = tracking.get("experiment") if isinstance(tracking, Mapping) else None
        return str(experiment or self.name)

    def cells(self) -> list[StudyCell]:
        """Every cell, by batch size, then arm (the spec's order), then epochs."""
        return [cell for cell, _ in _build_cells(self) if cell is not None]


def _arm_name_errors(arms: list[StudyArm]) -> list[FieldError]:
    seen: dict[str, int] = {}
    errors = []
    for i, arm in enumerate(arms):
        if arm.label in seen:
            errors.append(
                FieldError(
                    f"arms.{i}.name",
                    f"arm {arm.label!r} is also arms.{seen[arm.label]}: give each arm its own name",
                )
            )
        seen.setdefault(arm.label, i)
    return errors


def _cell_data(study: StudySpec, arm: StudyArm, batch_size: int, epochs: int) -> dict[str, Any]:
    data = copy.deepcopy(study.base)
    for key in ("name", "search", "preset"):
        data.pop(key, None)
    job = dict(data.get("job") or {})
    schedule = dict(job.get("schedule") or {})
    schedule.update(
        reference_batch_size=study.reference_batch_size,
        warmup_epochs=round(study.warmup_fraction * epochs, 6),
    )
    job.update(global_batch_size=batch_size, epochs=epochs, schedule=schedule)
    data["job"] = job
    space = dict(data.get("space") or {})
    space.update(arm.space)
    # Warmup is the study's rule (a fraction of the run), never searched.
    space.pop("warmup_epochs", None)
    if arm.preset is not None:
        data["preset"] = arm.preset
        if _preset_searches(arm.preset, "warmup_epochs"):
            space["warmup_epochs"] = None
    data["space"] = space
    budget = study.budget
    search: dict[str, Any] = {
        "num_trials": budget.num_trials,
        "sampler": budget.sampler,
        "seed": budget.seed,
        "confirm": study.confirm.model_dump(),
    }
    if budget.scheduler is not None:
        search["scheduler"] = budget.scheduler.model_dump()
    if budget.max_concurrent_trials is not None:
        search["max_concurrent_trials"] = budget.max_concurrent_trials
    data["search"] = search
    tracking = dict(data.get("tracking") or {})
    tracking["experiment"] = study.experiment
    data["tracking"] = tracking
    data["name"] = f"{study.name}-{_key(arm.label, batch_size, epochs)}"[:64]
    return data


def _preset_searches(preset: str, name: str) -> bool:
    from search_spaces.presets import UnknownPresetError, load_preset

    try:
        return name in load_preset(preset).get("space", {})
    except UnknownPresetError:
        return False


def _key(arm: str, batch_size: int, epochs: int) -> str:
    return f"b{batch_size}-{arm}-e{epochs}"


def _passes(spec: SweepSpec) -> set[int]:
    """Gradient evaluations per step of every extrapolation variant the spec can reach."""
    param = spec.space.get("extrapolation")
    choices = getattr(param, "choices", None)
    names = list(choices) if choices is not None else [spec.job.optimizer.extrapolation]
    return {2 if VARIANTS[str(name)].two_pass else 1 for name in names if str(name) in VARIANTS}


def _variants(spec: SweepSpec) -> list[str]:
    param = spec.space.get("extrapolation")
    choices = getattr(param, "choices", None)
    return [str(c) for c in choices] if choices is not None else [spec.job.optimizer.extrapolation]


def _epochs_of(study: StudySpec, passes: int) -> list[tuple[int, tuple[str, ...]]]:
    """(epochs, comparisons) of an arm's cells under the study's compute rule."""
    base = study.budget.epochs
    if study.compute == "equal_epochs":
        return [(base, ("equal_epochs",))]
    if passes == 2:  # a two-pass arm at the base epochs already spends the doubled compute
        return [(base, COMPARISONS if study.compute == "both" else ("equal_compute",))]
    if study.compute == "equal_compute":
        return [(2 * base, ("equal_compute",))]
    return [(base, ("equal_epochs",)), (2 * base, ("equal_compute",))]


def _build_cells(study: StudySpec) -> list[tuple[StudyCell | None, list[FieldError]]]:
    out: list[tuple[StudyCell | None, list[FieldError]]] = []
    for batch_size in study.batch_sizes:
        for arm in study.arms:
            probe = _load_cell(study, arm, batch_size, study.budget.epochs)
            if isinstance(probe, list):
                out.append((None, probe))
                continue
            passes = _passes(probe)
            for epochs, comparisons in _epochs_of(study, max(passes)):
                spec = (
                    probe
                    if epochs == study.budget.epochs
                    else _load_cell(study, arm, batch_size, epochs)
                )
                if isinstance(spec, list):
                    out.append((None, spec))
                    continue
                cell = StudyCell(
                    key=_key(arm.label, batch_size, epochs),
                    batch_size=batch_size,
                    arm=arm.label,
                    epochs=epochs,
                    passes=max(passes),
                    comparisons=comparisons,
                    spec=spec,
                )
                out.append((cell, []))
    return out


def _load_cell(
    study: StudySpec, arm: StudyArm, batch_size: int, epochs: int
) -> SweepSpec | list[FieldError]:
    try:
        return load_spec(_cell_data(study, arm, batch_size, epochs))
    except SpecError as exc:
        return [_study_path(study, arm, batch_size, error) for error in exc.errors]


def _study_path(study: StudySpec, arm: StudyArm, batch_size: int, error: FieldError) -> FieldError:
    """Where a cell's error belongs in the study spec."""
    index = study.arms.index(arm)
    path = error.path
    if path == "job.global_batch_size":
        return FieldError(f"batch_sizes.{study.batch_sizes.index(batch_size)}", error.message)
    if path == "job.epochs":
        return FieldError("budget.epochs", error.message)
    if path.startswith("search."):
        return FieldError("budget." + path.removeprefix("search."), error.message)
    if path.startswith("space."):
        name = path.removeprefix("space.").split(".")[0]
        if name in arm.space:
            return FieldError(f"arms.{index}.{path}", error.message)
        if arm.preset is not None and name not in (study.base.get("space") or {}):
            return FieldError(f"arms.{index}.preset", f"{path}: {error.message}")
    if path == "preset":
        return FieldError(f"arms.{index}.preset", error.message)
    return FieldError(_join("base", path), error.message)


def _join(*parts: str) -> str:
    return ".".join(p for p in parts if p)


def _cell_errors(study: StudySpec) -> list[FieldError]:
    errors: dict[tuple[str, str], FieldError] = {}
    workers = (study.base.get("job") or {}).get("workers", 2)
    for j, batch_size in enumerate(study.batch_sizes):
        if isinstance(workers, int) and workers > 0 and batch_size % workers:
            error = FieldError(
                f"batch_sizes.{j}",
                f"{batch_size} does not divide evenly over base.job.workers={workers}: use a "
                f"multiple of {workers}",
            )
            errors[(error.path, error.message)] = error
    if errors:
        return list(errors.values())
    for i, arm in enumerate(study.arms):
        probe = _load_cell(study, arm, study.batch_sizes[0], study.budget.epochs)
        if isinstance(probe, SweepSpec) and len(_passes(probe)) > 1:
            variants = _variants(probe)
            one = [v for v in variants if not VARIANTS[v].two_pass]
            two = [v for v in variants if VARIANTS[v].two_pass]
            error = FieldError(
                f"arms.{i}",
                f"arm {arm.label!r} mixes variants of different cost: {', '.join(one)} take one "
                f"gradient evaluation per step, {', '.join(two)} two; split it into one arm of "
                "each cost (e.g. presets past and extrap-gradient)",
            )
            errors[(error.path, error.message)] = error
    if errors:
        return list(errors.values())
    for _, cell_errors in _build_cells(study):
        for error in cell_errors:
            errors.setdefault((error.path, error.message), error)
    return list(errors.values())


def _resolve_base(data: dict[str, Any], directory: Path | None) -> dict[str, Any]:
    base = data.get("base")
    if isinstance(base, Mapping) and set(base) == {"path"}:
        if directory is None:
            raise SpecError(
                [
                    FieldError(
                        "base.path",
                        "a base spec path can only be read by `extrap study` on your machine: "
                        "inline the base spec to submit the study to the service",
                    )
                ]
            )
        path = (directory / str(base["path"])).resolve()
        from search_spaces.validation import _parse

        try:
            loaded = dict(_parse(path))
        except SpecError as exc:
            raise SpecError(
                [FieldError(_join("base", e.path), e.message) for e in exc.errors]
            ) from None
        data = {**data, "base": loaded}
    return data


def load_study(data: Mapping[str, Any] | str | Path, *, directory: Path | None = None) -> StudySpec:
    """Parse and validate a study spec (YAML text, a file, or a mapping).

    Args:
        data: the study spec.
        directory: where a ``base: {path: FILE}`` is read from (the study file's folder by
            default when ``data`` is a path); without one, the base must be inline.

    Raises:
        SpecError: every problem, with its path in the study spec.
    """
    from search_spaces.validation import _parse

    if isinstance(data, Path):
        directory = directory or data.resolve().parent
    raw = _parse(data)
    try:
        return StudySpec.model_validate(_resolve_base(dict(raw), directory))
    except ValidationError as exc:
        raise SpecError(errors_from_validation_error(exc, StudySpec)) from None


def study_errors(data: Mapping[str, Any] | str | Path) -> list[FieldError]:
    """The problems :func:`load_study` would raise, or an empty list."""
    try:
        load_study(data)
    except SpecError as exc:
        return exc.errors
    return []
