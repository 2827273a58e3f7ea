"""``/v1/studies``: submit a batch-size scaling study, list, show, its table and plot, cancel,
resume.

A study's cells are ordinary sweeps of its owner (listable and cancellable on their own); they
are queued at submission in one transaction and then wait within the owner's caps like any
sweep. A submission takes one rate-limit token however many cells it queues. A study keeps no
state of its own: its state and its table are computed from its cells' sweeps when read, with
:func:`service.wire.studies.cell_result`, the function the local runner uses. The plot needs
matplotlib, which the API does not carry: once every cell has ended, the launcher starts the
study's render job on Ray (:mod:`service.runtime.study_render`), which draws it into the
storage and logs the study's MLflow parent run; ``GET .../plot.png`` serves the file.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import FileResponse, PlainTextResponse
from sqlalchemy import select
from sqlalchemy.orm import Session

from search_spaces import FieldError, SpecError
from search_spaces.study import StudyCell, StudySpec
from service.server import crud
from service.server.api.bodies import load_study_body, media_type, read_body
from service.server.api.deps import (
    MAX_INT32,
    ContextDep,
    CurrentUser,
    SessionDep,
    StudyIdPath,
)
from service.server.api.errors import ApiError, error_responses
from service.server.api.routes.sweeps import check_resumable, take_submission_token
from service.server.api.views import json_response, study_cells, study_public, study_summary
from service.server.models import Study, Sweep, User
from service.server.policy import policy_errors, storable_errors
from service.settings import Settings
from service.wire import ACTIVE_SWEEP_STATES, FINAL_SWEEP_STATES, SweepState
from service.wire.studies import (
    STUDY_OUTPUTS_DIR,
    StudiesPublic,
    StudyDryRunPublic,
    StudyPublic,
    cell_template,
    table_csv,
)

__all__ = ["router"]

router = APIRouter(prefix="/v1/studies", tags=["studies"])

STUDY_REQUEST_BODY = {
    "requestBody": {
        "required": True,
        "description": "a study spec (docs/spec-reference.md, Studies) with its base inline",
        "content": {
            "application/json": {"schema": {"type": "object"}},
            "application/yaml": {"schema": {"type": "string"}},
        },
    }
}

_CANCELLABLE = (ACTIVE_SWEEP_STATES | {SweepState.QUEUED}) - {SweepState.CANCELLING}
_UNFINISHED = ACTIVE_SWEEP_STATES | {SweepState.QUEUED}

# A cell's sweep-spec path -> where the study sets it.
_STUDY_PATHS = {"search.num_trials": "budget.num_trials", "job.data_dir": "base.job.data_dir"}


async def read_study(request: Request, user: CurrentUser, session: SessionDep) -> StudySpec:
    """The study in the body, read and validated once the caller is known."""
    raw = await read_body(request, session)
    return await load_study_body(raw, media_type(request))


StudyBody = Annotated[StudySpec, Depends(read_study)]


def _cells(study: StudySpec, settings: Settings) -> list[StudyCell]:
    """The study's cells, or 422 naming every service limit a cell breaks."""
    try:
        cells = study.cells()
    except SpecError as exc:
        raise ApiError.invalid(exc.errors) from None
    if len(cells) > settings.max_study_cells:
        raise ApiError.invalid(
            [
                FieldError(
                    "batch_sizes",
                    f"this study makes {len(cells)} cells (sweeps); this service takes at most "
                    f"{settings.max_study_cells} per study (EXTRAP_MAX_STUDY_CELLS): fewer batch "
                    "sizes or arms, or compute: equal_epochs",
                )
            ]
        )
    errors: dict[tuple[str, str], FieldError] = {}
    for cell in cells:
        found = [*policy_errors(cell.spec, settings), *storable_errors(cell.spec.stored_form())]
        for error in found:
            path = _STUDY_PATHS.get(error.path, f"base.{error.path}" if error.path else "base")
            errors.setdefault((path, error.message), FieldError(path, error.message))
    if errors:
        raise ApiError.invalid(list(errors.values()))
    return cells


def _owner_names(session: Session, studies: list[Study]) -> dict[int, str]:
    ids = {study.owner_id for study in studies}
    if not ids:
        return {}
    rows = session.execute(select(User.id, User.name).where(User.id.in_(ids)))
    return {user_id: name for user_id, name in rows}


def _shown(session: Session, study: Study, status_code: int = 200) -> Response:
    sweeps, metrics = crud.study_sweeps(session, studies=[study], with_trials=True)
    rows = study_cells(study, sweeps, metrics)
    owner = _owner_names(session, [study]).get(study.owner_id, "")
    return json_response(study_public(study, rows, owner), status_code=status_code)


@router.post(
    "",
    status_code=201,
    response_model=StudyPublic,
    openapi_extra=STUDY_REQUEST_BODY,
    summary="Submit a study (or validate it with dry_run=true): one sweep per cell",
    responses={
        200: {"model": StudyDryRunPublic, "description": "dry_run=true: the cells; nothing stored"},
        201: {"model": StudyPublic, "description": "The study, its cells queued as sweeps"},
        **error_responses(400, 401, 413, 415, 422, 429, 503),
    },
)
def create_study(
    user: CurrentUser,
    session: SessionDep,
    ctx: ContextDep,
    study: StudyBody,
    dry_run: Annotated[bool, Query(description="validate only; store nothing")] = False,
) -> Response:
    take_submission_token(ctx, user)  # one submission, however many cells
    cells = _cells(study, ctx.settings)
    stored = study.model_dump(mode="json")
    if dry_run:
        return json_response(
            StudyDryRunPublic(spec=stored, cells=[cell_template(cell) for cell in cells])
        )
    with ctx.db.writing(session):
        created = crud.create_study(
            session,
            owner=user,
            name=study.name,
            spec=stored,
            cells=[(cell_template(cell).model_dump(mode="json"), cell.spec) for cell in cells],
        )
        study_id = created.id
    ctx.wake()
    response = _shown(session, crud.get_study(session, study_id=study_id, user=user), 201)
    response.headers["Location"] = f"/v1/studies/{study_id}"
    return response


@router.get(
    "",
    response_model=StudiesPublic,
    summary="List your studies, newest first",
    responses=error_responses(401, 422, 503),
)
def list_studies(
    user: CurrentUser,
    session: SessionDep,
    offset: Annotated[int, Query(ge=0, le=MAX_INT32)] = 0,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> Response:
    studies, count = crud.list_studies(session, user=user, offset=offset, limit=limit)
    sweeps, _ = crud.study_sweeps(session, studies=studies)
    owners = _owner_names(session, studies)
    data = [
        study_summary(study, study_cells(study, sweeps), owners.get(study.owner_id, ""))
        for study in studies
    ]
    return json_response(StudiesPublic(data=data, count=count))


@router.get(
    "/{study_id}",
    response_model=StudyPublic,
    summary="Show a study: its state, its cells with their sweeps, and the table so far",
    responses=error_responses(401, 404, 422, 503),
)
def get_study(user: CurrentUser, session: SessionDep, study_id: StudyIdPath) -> Response:
    return _shown(session, crud.get_study(session, study_id=study_id, user=user))


@router.get(
    "/{study_id}/table",
    response_model=None,
    summary="The study's table: Markdown (format=md) or every cell as CSV (format=csv)",
    responses={
        200: {
            "content": {"text/markdown": {"schema": {"type": "string"}}, "text/csv": {}},
            "description": "The table as it stands (a cell not finished shows its state)",
        },
        **error_responses(401, 404, 422, 503),
    },
)
def get_table(
    user: CurrentUser,
    session: SessionDep,
    study_id: StudyIdPath,
    format: Annotated[Literal["md", "csv"], Query()] = "md",
) -> Response:
    study = crud.get_study(session, study_id=study_id, user=user)
    sweeps, metrics = crud.study_sweeps(session, studies=[study], with_trials=True)
    rows = study_cells(study, sweeps, metrics)
    if format == "csv":
        return PlainTextResponse(table_csv(rows), media_type="text/csv")
    owner = _owner_names(session, [study]).get(study.owner_id, "")
    return PlainTextResponse(
        study_public(study, rows, owner).table_markdown, media_type="text/markdown"
    )


@router.post(
    "/{study_id}/cancel",
    response_model=StudyPublic,
    status_code=202,
    summary="Cancel a study: every cell not finished is cancelled",
    responses=error_responses(401, 404, 409, 422, 503),
)
def cancel_study(
    user: CurrentUser, session: SessionDep, ctx: ContextDep, study_id: StudyIdPath
) -> Response:
    study = crud.get_study(session, study_id=study_id, user=user)
    jobs: list[str] = []
    with ctx.db.writing(session):
        cancelled = 0
        for sweep in _locked_cells(session, study):
            if SweepState(sweep.state) in _CANCELLABLE:
                job_id = crud.cancel(session, sweep=sweep, by=user.name)
                jobs.extend([job_id] if job_id else [])
                cancelled += 1
        if not cancelled:
            raise ApiError(409, "illegal_transition", "no cell of this study is queued or running")
    for sweep_id in _sweep_ids(study):
        ctx.changed(sweep_id)
    if ctx.launcher is not None:
        for job_id in jobs:
            ctx.launcher.stop_driver(job_id)
    ctx.wake()
    return _shown(session, study, 202)


@router.post(
    "/{study_id}/resume",
    response_model=StudyPublic,
    status_code=202,
    summary="Resume a study: its failed and cancelled cells are queued again (none rerun)",
    responses=error_responses(401, 404, 409, 422, 503),
)
def resume_study(
    user: CurrentUser, session: SessionDep, ctx: ContextDep, study_id: StudyIdPath
) -> Response:
    study = crud.get_study(session, study_id=study_id, user=user)
    with ctx.db.writing(session):
        sweeps = []
        for sweep in _locked_cells(session, study):
            if SweepState(sweep.state) in _UNFINISHED:
                raise ApiError(
                    409,
                    "illegal_transition",
                    f"cell sweep {sweep.id} is {sweep.state}: resume the study once no cell runs",
                )
            sweeps.append(sweep)
        again = [
            s
            for s in sweeps
            if SweepState(s.state) in FINAL_SWEEP_STATES and s.state != SweepState.SUCCEEDED.value
        ]
        if not again:
            raise ApiError(409, "illegal_transition", "every cell of this study succeeded")
        for sweep in again:
            check_resumable(sweep.spec)
            crud.requeue(session, sweep=sweep)
        locked = session.get(Study, study.id, with_for_update=True)
        assert locked is not None
        # drawn again when it ends again
        locked.rendered_state, locked.render_attempts = None, 0
        locked.render_job_id = locked.render_token_hash = None
    for sweep in again:
        ctx.changed(sweep.id)
    ctx.wake()
    return _shown(session, study, 202)


def _sweep_ids(study: Study) -> list[str]:
    return [str(cell["sweep_id"]) for cell in study.cells if cell.get("sweep_id")]


def _locked_cells(session: Session, study: Study) -> Iterator[Sweep]:
    """The study's cell sweeps, each locked for this transaction (deleted ones left out)."""
    for sweep_id in _sweep_ids(study):
        try:
            yield crud.lock_sweep(session, sweep_id=sweep_id)
        except crud.SweepNotFound:
            continue


@router.get(
    "/{study_id}/plot.png",
    response_model=None,
    summary="The study's plot: the test figure against batch size, one line per arm",
    description=(
        "Drawn by the study's render job once every cell has ended (`plot_ready` in the "
        "study), into the service's storage; with object storage (`s3://…`) it is in the "
        "study's MLflow parent run instead."
    ),
    responses={
        200: {
            "content": {"image/png": {"schema": {"type": "string", "format": "binary"}}},
            "description": "The PNG",
        },
        **error_responses(401, 404, 422, 503),
    },
)
def get_plot(
    user: CurrentUser, session: SessionDep, ctx: ContextDep, study_id: StudyIdPath
) -> Response:
    study = crud.get_study(session, study_id=study_id, user=user)
    if study.rendered_state is None:
        raise ApiError(
            404,
            "no_plot",
            "the plot is drawn once every cell of the study has ended (plot_ready); "
            "`extrap study table ID --plot FILE` draws the table so far on your machine",
        )
    storage = ctx.settings.resolved_storage_path
    path = Path(storage).resolve() / study.id / STUDY_OUTPUTS_DIR / "plot.png"
    if "://" in storage or not path.is_file():
        raise ApiError(
            404,
            "plot_not_served",
            "the plot is not in this service's storage: it is an artifact of the study's "
            f"MLflow parent run ({study.mlflow_run_id or 'not logged'})",
        )
    return FileResponse(path, media_type="image/png", filename=f"{study.id}-plot.png")
