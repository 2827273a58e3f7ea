"""``/v1/sweeps/{id}/trials``: a sweep's trials and each trial's per-epoch metrics."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from service.server import crud
from service.server.api.deps import CurrentUser, SessionDep
from service.server.api.errors import ApiError
from service.wire import (
    EpochMetricsPublic,
    TrialDetailPublic,
    TrialPublic,
    TrialsPublic,
    TrialStatus,
)

__all__ = ["router"]

router = APIRouter(prefix="/v1/sweeps/{sweep_id}/trials", tags=["trials"])


@router.get("", response_model=TrialsPublic, summary="List a sweep's trials by number")
def list_trials(
    sweep_id: str,
    session: SessionDep,
    user: CurrentUser,
    status: Annotated[list[TrialStatus] | None, Query(description="filter by status")] = None,
    offset: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> TrialsPublic:
    crud.get_sweep(session, sweep_id=sweep_id, user=user)
    trials, count = crud.list_trials(
        session, sweep_id=sweep_id, statuses=status or (), offset=offset, limit=limit
    )
    return TrialsPublic(data=[TrialPublic.model_validate(t) for t in trials], count=count)


@router.get("/{trial_id}", response_model=TrialDetailPublic, summary="Show a trial")
def get_trial(
    sweep_id: str, trial_id: str, session: SessionDep, user: CurrentUser
) -> TrialDetailPublic:
    crud.get_sweep(session, sweep_id=sweep_id, user=user)
    trial = crud.get_trial(session, sweep_id=sweep_id, trial_id=trial_id)
    if trial is None:
        raise ApiError.not_found(f"trial {trial_id!r} of sweep {sweep_id!r}")
    public = TrialPublic.model_validate(trial)
    epochs = [EpochMetricsPublic.model_validate(row) for row in trial.epochs]
    return TrialDetailPublic(**public.model_dump(), epochs=epochs)
