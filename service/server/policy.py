"""The service's limits on a valid spec: trial budget, concurrency, data roots, cluster size.

:func:`search_spaces.load_spec` decides whether a spec is valid; this module decides whether
this service will run it. Both report :class:`~search_spaces.FieldError` with spec paths.

Example:
    >>> errors = policy_errors(spec, settings)  # doctest: +SKIP
    >>> [e.path for e in errors]  # doctest: +SKIP
    ['job.data_dir']
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from search_spaces import FieldError, SweepSpec
from search_spaces.resources import TRIAL_DRIVER_RESOURCE, placement_errors, trial_resources
from service.server.dispatch.base import ClusterResources
from service.settings import Settings

__all__ = [
    "MAX_STORED_DEPTH",
    "data_dir_error",
    "placement_problems",
    "policy_errors",
    "storable_errors",
    "trial_budget_error",
]

MAX_STORED_DEPTH = 64
"""A stored spec nests at most this deep (real specs: about 5)."""
_COLUMN_LENGTHS = {"name": 64, "objective.metric": 64}
_MAX_STORED_ERRORS = 20


def trial_budget_error(num_trials: int, settings: Settings, path: str) -> FieldError | None:
    """An error if a sweep of ``num_trials`` trials exceeds ``max_trials_per_sweep``."""
    if num_trials <= settings.max_trials_per_sweep:
        return None
    return FieldError(
        path,
        f"{num_trials} trials exceed this service's limit of {settings.max_trials_per_sweep} "
        "per sweep (EXTRAP_MAX_TRIALS_PER_SWEEP)",
    )


def data_dir_error(data_dir: str | None, roots: Sequence[Path]) -> FieldError | None:
    """An error unless ``data_dir`` (symlinks and ``..`` resolved) lies under one of ``roots``."""
    if data_dir is None:
        return None
    field = "job.data_dir"
    if "\x00" in data_dir:
        return FieldError(field, "the path contains a NUL character (\\x00): remove it")
    try:
        path = Path(data_dir).expanduser()
    except (RuntimeError, KeyError):  # "~nosuchuser/...": no such user, no home to expand
        user = data_dir[1:].split("/", 1)[0]
        return FieldError(
            field,
            f"{data_dir!r} names the home of {user!r}, who has no home here: give an absolute path",
        )
    if not path.is_absolute():
        return FieldError(field, f"{data_dir!r} is not an absolute path")
    try:
        resolved = path.resolve()
    except (OSError, RuntimeError, ValueError) as exc:  # a symlink loop, a name too long, ...
        return FieldError(field, f"{data_dir!r} cannot be resolved ({exc}): give a plain path")
    if any(resolved == root or resolved.is_relative_to(root) for root in roots):
        return None
    allowed = ", ".join(str(root) for root in roots)
    return FieldError(
        "job.data_dir",
        f"{data_dir!r} (resolved: {resolved}) is outside the allowed data directories: {allowed}",
    )


def policy_errors(spec: SweepSpec, settings: Settings) -> list[FieldError]:
    """Every limit of this service the spec breaks."""
    errors = [
        trial_budget_error(spec.search.num_trials, settings, "search.num_trials"),
        data_dir_error(spec.job.data_dir, settings.resolved_data_roots),
    ]
    concurrent = spec.search.max_concurrent_trials
    if concurrent is not None and concurrent > settings.max_concurrent_trials:
        errors.append(
            FieldError(
                "search.max_concurrent_trials",
                f"{concurrent} concurrent trials exceed this service's limit of "
                f"{settings.max_concurrent_trials} (EXTRAP_MAX_CONCURRENT_TRIALS)",
            )
        )
    return [error for error in errors if error is not None]


def storable_errors(stored: dict[str, Any]) -> list[FieldError]:
    """What in a spec's stored form the database cannot keep, by field path.

    PostgreSQL's JSONB refuses NUL characters and non-finite numbers, and both databases limit
    some columns' lengths; a structure nested absurdly deep cannot be encoded again. Checked
    before storing (and in a dry run), so such a spec is a 422 that names the field, never a
    database error.
    """
    errors: list[FieldError] = []
    stack: list[tuple[str, Any, int]] = [("", stored, 0)]
    while stack and len(errors) < _MAX_STORED_ERRORS:
        path, value, depth = stack.pop()
        if depth > MAX_STORED_DEPTH:
            errors.append(FieldError(path, f"nested more than {MAX_STORED_DEPTH} levels deep"))
            continue
        if isinstance(value, str):
            if "\x00" in value:
                errors.append(FieldError(path, "contains a NUL character (\\x00): remove it"))
        elif isinstance(value, float):
            if value != value or value in (float("inf"), float("-inf")):
                errors.append(FieldError(path, f"{value} is not a finite number"))
        elif isinstance(value, dict):
            for key, item in value.items():
                name = str(key).replace("\x00", "\\x00")
                child = f"{path}.{name}" if path else name
                if "\x00" in str(key):
                    errors.append(FieldError(child, "the key contains a NUL character"))
                stack.append((child, item, depth + 1))
        elif isinstance(value, list | tuple):
            stack.extend((f"{path}.{i}", item, depth + 1) for i, item in enumerate(value))
    for path, limit in _COLUMN_LENGTHS.items():
        found: Any = stored
        for part in path.split("."):
            found = found.get(part) if isinstance(found, dict) else None
        if isinstance(found, str) and len(found) > limit:
            errors.append(FieldError(path, f"{len(found)} characters: at most {limit}"))
    return sorted(errors, key=lambda error: error.path)


def placement_problems(
    spec: SweepSpec, cluster: ClusterResources
) -> tuple[list[FieldError], dict[str, Any]]:
    """Field errors for a trial that cannot be placed, and the numbers behind them."""
    job = spec.job
    needed = trial_resources(job)
    messages = list(placement_errors(job, cluster.total))
    per_worker = {"CPU": job.cpus_per_worker, "GPU": job.gpus_per_worker}
    for name, amount in per_worker.items():
        largest = cluster.largest_node.get(name, 0.0)
        if (
            amount > 0
            and amount > largest + 1e-9
            and needed.get(name, 0.0) <= cluster.total.get(name, 0.0)
        ):
            field = "cpus_per_worker" if name == "CPU" else "gpus_per_worker"
            messages.append(
                f"a worker needs {amount:g} {name} ({field}) but the largest node has "
                f"{largest:g} {name}"
            )
    numbers = {
        "needed": needed,
        "cluster": {name: cluster.total.get(name, 0.0) for name in needed},
        "largest_node": {name: cluster.largest_node.get(name, 0.0) for name in needed},
    }
    errors = [FieldError(_field_of(message), message) for message in messages]
    return errors, numbers


def _field_of(message: str) -> str:
    if TRIAL_DRIVER_RESOURCE in message.split(" (")[0]:
        return "job"
    if "gpus_per_worker" in message:
        return "job.gpus_per_worker"
    return "job.workers" if "workers=" in message else "job.cpus_per_worker"
