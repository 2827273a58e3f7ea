"""``/internal/v1/studies``: the study render job's side (authenticated by its own token).

- ``GET /internal/v1/studies/{id}``: the study's spec, its state and its rows, where to log
  and where to write;
- ``POST /internal/v1/studies/{id}/rendered``: ``{"state", "mlflow_run_id"}``: the outputs are
  drawn (``<storage>/<study id>/outputs/``) for that state; the token stops working.
"""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import APIRouter, Depends, Request

from service.server import crud
from service.server.api.bodies import json_request_body, media_type, parse_model, read_body
from service.server.api.deps import BearerToken, ContextDep, SessionDep, StudyIdPath
from service.server.api.errors import ApiError, error_responses
from service.server.api.views import study_cells
from service.server.auth import hash_token
from service.server.models import Study
from service.wire.studies import StudyRenderedIn, StudyRenderPublic, study_state

__all__ = ["router"]

router = APIRouter(prefix="/internal/v1/studies/{study_id}", tags=["internal"])


def get_render_study(token: BearerToken, session: SessionDep, study_id: StudyIdPath) -> Study:
    """The study whose current render token was presented (anything else is 401)."""
    study = session.get(Study, study_id)
    digest = hash_token(token)
    if study is None or not hmac.compare_digest(study.render_token_hash or "", digest):
        raise ApiError(
            401,
            "unauthorized",
            "this token is not the current render token of the study",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return study


RenderStudy = Annotated[Study, Depends(get_render_study)]


@router.get(
    "",
    response_model=StudyRenderPublic,
    summary="What the study's render job draws and logs",
    responses=error_responses(401, 422, 503),
)
def render_spec(study: RenderStudy, session: SessionDep, ctx: ContextDep) -> StudyRenderPublic:
    sweeps, metrics = crud.study_sweeps(session, studies=[study], with_trials=True)
    rows = study_cells(study, sweeps, metrics)
    return StudyRenderPublic(
        study_id=study.id,
        spec=study.spec,
        state=study_state([row.state for row in rows]),
        cells=rows,
        mlflow_tracking_uri=ctx.settings.resolved_mlflow_tracking_uri,
        storage_path=ctx.settings.resolved_storage_path,
    )


async def read_rendered(
    request: Request, study: RenderStudy, session: SessionDep
) -> StudyRenderedIn:
    raw = await read_body(request, session)
    found = parse_model(raw, media_type(request), StudyRenderedIn, required=True)
    assert found is not None
    return found


@router.post(
    "/rendered",
    status_code=204,
    openapi_extra=json_request_body("StudyRenderedIn"),
    summary="The render job's report: its outputs are drawn; its token ends",
    responses={204: {"description": "Recorded"}, **error_responses(400, 401, 413, 415, 422, 503)},
)
def rendered(
    study: RenderStudy,
    body: Annotated[StudyRenderedIn, Depends(read_rendered)],
    session: SessionDep,
    ctx: ContextDep,
) -> None:
    with ctx.db.writing(session):
        found = session.get(Study, study.id, with_for_update=True)
        assert found is not None
        found.rendered_state = body.state
        found.mlflow_run_id = body.mlflow_run_id or found.mlflow_run_id
        found.render_token_hash = None
        found.render_job_id = None
