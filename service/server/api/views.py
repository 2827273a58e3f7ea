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
from service.server.models import Study, Sweep, Trial
from service.settings import Settings
from service.wire import (
    BestPublic,
    BestSoFar,
    ConfirmationPublic,
    ObjectivePublic,
    SweepPublic,
    SweepState,
)
from service.wire.studies import (
    DELETED_CELL,
    StudyCellResult,
    StudyPublic,
    StudySummaryPublic,
    cell_result,
    study_state,
    table_markdown,
)

__all__ = [
    "best_public",
    "best_yaml",
    "job_overrides",
    "json_response",
    "mlflow_url",
    "study_cells",
    "study_public",
    "study_summary",
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


# -- studies --------------------------------------------------------------------------------


def study_cells(
    study: Study,
    sweeps: Mapping[str, Sweep],
    metrics: Mapping[str, Mapping[str, Mapping[str, Any]]] | None = None,
) -> list[StudyCellResult]:
    """The study's rows as they stand: each cell's template filled from its sweep (its state;
    with ``metrics``, its confirmed figures, counted gradients and wall time) by
    :func:`service.wire.studies.cell_result`, the function the local runner uses."""
    rows = []
    for template in study.cells:
        row = StudyCellResult.model_validate(template)
        sweep = sweeps.get(str(template.get("sweep_id")))
        if sweep is None:  # its sweep was deleted
            rows.append(row.model_copy(update={"state": DELETED_CELL}))
            continue
        if metrics is None:
            rows.append(row.model_copy(update={"state": sweep.state}))
            continue
        job = (sweep.spec or {}).get("job") or {}
        filled = cell_result(
            row,
            state=sweep.state,
            best=sweep.best if SweepState(sweep.state) is SweepState.SUCCEEDED else None,
            final_metrics=metrics.get(sweep.id, {}),
            workers=int(job.get("workers") or 1),
            gpus_per_worker=float(job.get("gpus_per_worker") or 0.0),
        )
        if sweep.started_at is not None and sweep.finished_at is not None:
            wall = (sweep.finished_at - sweep.started_at).total_seconds()
            filled = filled.model_copy(update={"wall_seconds": wall})
        rows.append(filled)
    return rows


def _arms(study: Study) -> list[str]:
    arms = []
    for arm in study.spec.get("arms") or []:
        label = arm.get("name") or arm.get("preset")
        if isinstance(label, str) and label not in arms:
            arms.append(label)
    return arms


def study_summary(study: Study, rows: list[StudyCellResult], owner: str) -> StudySummaryPublic:
    counts: dict[str, int] = {}
    for row in rows:
        counts[row.state] = counts.get(row.state, 0) + 1
    return StudySummaryPublic(
        id=study.id,
        name=study.name,
        owner=owner,
        state=study_state([row.state for row in rows]),
        created_at=study.created_at,
        cell_counts=counts,
    )


def study_public(study: Study, rows: list[StudyCellResult], owner: str) -> StudyPublic:
    arms = _arms(study)
    return StudyPublic(
        **study_summary(study, rows, owner).model_dump(),
        spec=study.spec,
        arms=arms,
        cells=rows,
        table_markdown=table_markdown(rows, arms),
        plot_ready=study.rendered_state is not None,
        mlflow_run_id=study.mlflow_run_id,
    )
