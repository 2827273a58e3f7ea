"""ORM rows → API schemas (the fields computed on the way: owner, counts, links, best)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import yaml
from fastapi import Response
from pydantic import BaseModel, TypeAdapter, ValidationError

from search_spaces import get_searchable
from search_spaces.space import nest_dotted
from service.server.crud import SweepRow
from service.server.models import Sweep, Trial
from service.settings import Settings
from service.wire import (
    BestPublic,
    BestSoFar,
    ConfirmationPublic,
    ObjectivePublic,
    SweepPublic,
    SweepState,
)

__all__ = [
    "best_public",
    "best_yaml",
    "job_overrides",
    "json_response",
    "mlflow_url",
    "sweep_public",
]

DEFAULT_MLFLOW_UI = "http://127.0.0.1:5000"


def json_response(model: BaseModel, *, status_code: int = 200) -> Response:
    """A model as a JSON response, serialized once (FastAPI does not validate it again)."""
    adapter = _ADAPTERS.get(type(model))
    if adapter is None:
        adapter = _ADAPTERS[type(model)] = TypeAdapter(type(model))
    return Response(adapter.dump_json(model), status_code=status_code, media_type=_JSON)


_JSON = "application/json"
_ADAPTERS: dict[type[BaseModel], TypeAdapter[Any]] = {}


def mlflow_url(settings: Settings, sweep: Sweep | SweepRow) -> str | None:
    """The sweep's parent run (or experiment) in the MLflow UI."""
    if sweep.mlflow_experiment_id is None:
        return None
    base = settings.mlflow_ui_url
    if base is None:
        uri = settings.resolved_mlflow_tracking_uri
        base = uri if uri.startswith(("http://", "https://")) else DEFAULT_MLFLOW_UI
    url = f"{base.rstrip('/')}/#/experiments/{sweep.mlflow_experiment_id}"
    return f"{url}/runs/{sweep.mlflow_run_id}" if sweep.mlflow_run_id else url


def _objective(sweep: Sweep | SweepRow) -> ObjectivePublic:
    return ObjectivePublic.model_validate(
        {"metric": sweep.objective_metric, "mode": sweep.objective_mode}
    )


def sweep_public(sweep: SweepRow, counts: Mapping[str, int], settings: Settings) -> SweepPublic:
    """A sweep row of :func:`service.server.crud.sweep_row` as the API shows it."""
    best = None
    if sweep.best_trial_id is not None and sweep.best_value is not None:
        best = BestSoFar(trial_id=sweep.best_trial_id, value=sweep.best_value)
    return SweepPublic(
        id=sweep.id,
        name=sweep.name,
        owner=sweep.owner_name,
        state=SweepState(sweep.state),
        reason=sweep.reason,
        objective=_objective(sweep),
        num_trials=sweep.num_trials,
        trial_counts=dict(counts),
        best=best,
        created_at=sweep.created_at,
        started_at=sweep.started_at,
        finished_at=sweep.finished_at,
        updated_at=sweep.updated_at,
        mlflow_experiment_id=sweep.mlflow_experiment_id,
        mlflow_run_id=sweep.mlflow_run_id,
        mlflow_url=mlflow_url(settings, sweep),
        ray_job_id=sweep.ray_job_id,
        driver_attempts=sweep.driver_attempts,
        last_heartbeat=sweep.last_heartbeat,
        spec=sweep.spec,
    )


def job_overrides(params: Mapping[str, Any]) -> dict[str, Any]:
    """Searched params as dotted job fields: ``{"lr": 0.1}`` → ``{"optimizer.lr": 0.1}``."""
    out: dict[str, Any] = {}
    for name, value in params.items():
        try:
            out[get_searchable(name).path] = value
        except (KeyError, ValueError):
            out[name] = value
    return out


def best_public(sweep: Sweep | SweepRow, trial: Trial | None) -> BestPublic | None:
    """The best trial: the driver's final word if it sent one, else the best one stored."""
    if sweep.best and sweep.best.get("trial_id"):
        best = sweep.best
        params = dict(best.get("params") or {})
        return BestPublic(
            sweep_id=sweep.id,
            trial_id=str(best["trial_id"]),
            number=best.get("number") if trial is None else trial.number,
            value=best.get("value"),
            objective=_objective(sweep),
            params=params,
            metrics=best.get("metrics"),
            job_overrides=job_overrides(params),
            confirmation=_confirmation(best.get("confirmation")),
            note=_text(best.get("note")),
            model_trial_id=_text(best.get("model_trial_id")),
            checkpoint_uri=_text(best.get("checkpoint_uri")),
            weights_uri=_text(best.get("weights_uri")),
            model_uri=_text(best.get("model_uri")),
        )
    if trial is None:
        return None
    return BestPublic(
        sweep_id=sweep.id,
        trial_id=trial.trial_id,
        number=trial.number,
        value=trial.value,
        objective=_objective(sweep),
        params=trial.params,
        metrics=trial.metrics,
        job_overrides=job_overrides(trial.params),
    )


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _confirmation(value: Any) -> ConfirmationPublic | None:
    """The driver's confirmation block; one stored in another shape reads as none."""
    if not isinstance(value, dict):
        return None
    try:
        return ConfirmationPublic.model_validate(value)
    except ValidationError:
        return None


def best_yaml(best: BestPublic, sweep_name: str) -> str:
    """A spec fragment: the best params applied as a ``job:`` override block."""
    header = (
        f"# best trial {best.trial_id} of sweep {sweep_name} ({best.sweep_id}): "
        f"{best.objective.metric}={best.value} ({best.objective.mode})\n"
        "# paste over your spec's job: block, or merge into it\n"
    )
    body = yaml.safe_dump({"job": nest_dotted(best.job_overrides)}, sort_keys=True)
    return header + body
