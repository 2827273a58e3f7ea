"""``/v1/sweeps/{id}/trials``: a sweep's trials and each trial's per-epoch metrics."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response

from service.server import crud
from service.server.api.deps import MAX_INT32, CurrentUser, SessionDep, SweepIdPath, TrialIdPath
from service.server.api.errors import ApiError, error_responses
from service.server.api.views import json_response
from service.wire import (
    EpochMetricsPublic,
    TrialDetailPublic,
    TrialPublic,
    TrialsPublic,
    TrialStatus,
)

__all__ = ["router"]

router = APIRouter(prefix="/v1/sweeps/{sweep_id}/trials", tags=["trials"])


@router.get(
    "",
    response_model=TrialsPublic,
    summary="List a sweep's trials by number",
    responses=error_responses(401, 404, 422, 503),
)
def list_trials(
    user: CurrentUser,
    session: SessionDep,
    sweep_id: SweepIdPath,
    status: Annotated[list[TrialStatus] | None, Query(description="filter by status")] = None,
    offset: Annotated[int, Query(ge=0, le=MAX_INT32)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> Response:
    crud.check_visible(session, sweep_id=sweep_id, user=user)
    trials, count = crud.list_trials(
        session, sweep_id=sweep_id, statuses=status or (), offset=offset, limit=limit
    )
    page = TrialsPublic(data=[TrialPublic.model_validate(t) for t in trials], count=count)
    return json_response(page)


@router.get(
    "/{trial_id}",
    response_model=TrialDetailPublic,
    summary="Show a trial",
    responses=error_responses(401, 404, 422, 503),
)
def get_trial(
    user: CurrentUser, session: SessionDep, sweep_id: SweepIdPath, trial_id: TrialIdPath
) -> Response:
    crud.check_visible(session, sweep_id=sweep_id, user=user)
    trial = crud.get_trial(session, sweep_id=sweep_id, trial_id=trial_id)
    if trial is None:
        raise ApiError.not_found(f"trial {trial_id!r} of sweep {sweep_id!r}")
    public = TrialPublic.model_validate(trial)
    epochs = [
        EpochMetricsPublic.model_validate(row) for row in crud.trial_epochs(session, trial=trial)
    ]
    return json_response(TrialDetailPublic(**public.model_dump(), epochs=epochs))
