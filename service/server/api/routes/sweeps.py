"""``/v1/sweeps``: submit, list, show, cancel, resume, delete, best."""

from __future__ import annotations

import logging
import threading
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Query, Response
from fastapi.responses import PlainTextResponse

from search_spaces import SweepSpec
from service.server import cleanup, crud
from service.server.api.deps import ContextDep, CurrentUser, SessionDep, SettingsDep
from service.server.api.errors import ApiError
from service.server.api.spec_body import SPEC_REQUEST_BODY, SpecBody
from service.server.api.views import best_public, best_yaml, sweep_public
from service.server.dispatch.base import DispatcherUnavailable
from service.server.models import Sweep
from service.server.policy import placement_problems, policy_errors, trial_budget_error
from service.server.states import IllegalTransition
from service.wire import (
    ACTIVE_SWEEP_STATES,
    FINAL_SWEEP_STATES,
    BestPublic,
    DryRunPublic,
    ResumeRequest,
    SweepPublic,
    SweepsPublic,
    SweepState,
)

__all__ = ["router"]

log = logging.getLogger(__name__)

router = APIRouter(prefix="/v1/sweeps", tags=["sweeps"])


def _check_cluster(ctx: ContextDep, spec: SweepSpec, *, required: bool) -> dict[str, Any] | None:
    """422 if a trial cannot fit on the cluster; ``None`` if Ray is unreachable and optional."""
    if ctx.dispatcher is None:
        if required:
            raise ApiError(503, "unavailable", "the cluster connection is not set up yet")
        return None
    try:
        cluster = ctx.dispatcher.resources()
    except DispatcherUnavailable as exc:
        if required:
            raise ApiError(503, "unavailable", f"cannot check the cluster: {exc}") from None
        log.warning("submitting without a resource check: %s", exc)
        return None
    errors, numbers = placement_problems(spec, cluster)
    if errors:
        error = ApiError.invalid(errors, code="insufficient_resources")
        error.details = [{**detail, **numbers} for detail in error.details]
        raise error
    return numbers


def _public(session: SessionDep, ctx: ContextDep, sweep: Sweep) -> SweepPublic:
    counts = crud.trial_counts(session, sweep_ids=[sweep.id])[sweep.id]
    return sweep_public(sweep, counts, ctx.settings)


@router.post(
    "",
    status_code=201,
    response_model=SweepPublic | DryRunPublic,
    openapi_extra=SPEC_REQUEST_BODY,
    summary="Submit a sweep (or validate it with dry_run=true)",
)
def create_sweep(
    spec: SpecBody,
    user: CurrentUser,
    ctx: ContextDep,
    response: Response,
    dry_run: Annotated[bool, Query(description="validate only; store nothing")] = False,
) -> SweepPublic | DryRunPublic:
    errors = policy_errors(spec, ctx.settings)
    if errors:
        raise ApiError.invalid(errors)
    resources = _check_cluster(ctx, spec, required=dry_run)
    if dry_run:
        response.status_code = 200
        return DryRunPublic(spec=spec.model_dump(mode="json"), resources=resources)
    with ctx.db.write() as session:
        sweep = crud.create_sweep(session, owner=user, spec=spec)
    ctx.wake()
    response.headers["Location"] = f"/v1/sweeps/{sweep.id}"
    with ctx.db.read() as session:
        return _public(session, ctx, crud.get_sweep(session, sweep_id=sweep.id))


@router.get("", response_model=SweepsPublic, summary="List sweeps (newest first)")
def list_sweeps(
    session: SessionDep,
    user: CurrentUser,
    settings: SettingsDep,
    state: Annotated[list[SweepState] | None, Query(description="filter by state")] = None,
    offset: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> SweepsPublic:
    sweeps, count = crud.list_sweeps(
        session, user=user, states=state or (), offset=offset, limit=limit
    )
    counts = crud.trial_counts(session, sweep_ids=[sweep.id for sweep in sweeps])
    return SweepsPublic(
        data=[sweep_public(sweep, counts[sweep.id], settings) for sweep in sweeps], count=count
    )


@router.get("/{sweep_id}", response_model=SweepPublic, summary="Show a sweep")
def get_sweep(
    sweep_id: str, session: SessionDep, user: CurrentUser, ctx: ContextDep
) -> SweepPublic:
    return _public(session, ctx, crud.get_sweep(session, sweep_id=sweep_id, user=user))


@router.post(
    "/{sweep_id}/cancel", response_model=SweepPublic, status_code=202, summary="Cancel a sweep"
)
def cancel_sweep(sweep_id: str, user: CurrentUser, ctx: ContextDep) -> SweepPublic:
    with ctx.db.write() as session:
        sweep = crud.lock_sweep(session, sweep_id=sweep_id, user=user)
        job_id = sweep.ray_job_id
        if sweep.state == SweepState.QUEUED.value:
            crud.set_state(session, sweep=sweep, target=SweepState.CANCELLED, reason="cancelled")
            job_id = None
        else:
            crud.set_state(
                session,
                sweep=sweep,
                target=SweepState.CANCELLING,
                reason=f"cancelled by {user.name}",
            )
    ctx.changed(sweep_id)
    if job_id is not None and ctx.launcher is not None:
        ctx.launcher.stop_driver(job_id)
    ctx.wake()
    with ctx.db.read() as session:
        return _public(session, ctx, crud.get_sweep(session, sweep_id=sweep_id))


@router.post(
    "/{sweep_id}/resume",
    response_model=SweepPublic,
    status_code=202,
    summary="Resume a finished sweep (optionally with more trials)",
)
def resume_sweep(
    sweep_id: str,
    user: CurrentUser,
    ctx: ContextDep,
    body: Annotated[ResumeRequest | None, Body()] = None,
) -> SweepPublic:
    add_trials = body.add_trials if body is not None else 0
    with ctx.db.write() as session:
        sweep = crud.lock_sweep(session, sweep_id=sweep_id, user=user)
        if SweepState(sweep.state) not in FINAL_SWEEP_STATES:
            raise IllegalTransition(
                sweep.state, SweepState.QUEUED, f"cannot resume a sweep that is {sweep.state}"
            )
        error = trial_budget_error(sweep.num_trials + add_trials, ctx.settings, "add_trials")
        if error is not None:
            raise ApiError.invalid([error], code="invalid_request")
        sweep.num_trials += add_trials
        sweep.add_trials = add_trials
        sweep.driver_attempts = 0
        crud.set_state(session, sweep=sweep, target=SweepState.QUEUED)
    ctx.changed(sweep_id)
    ctx.wake()
    with ctx.db.read() as session:
        return _public(session, ctx, crud.get_sweep(session, sweep_id=sweep_id))


@router.delete("/{sweep_id}", status_code=204, summary="Delete a sweep that is not running")
def delete_sweep(sweep_id: str, user: CurrentUser, ctx: ContextDep) -> Response:
    with ctx.db.write() as session:
        sweep = crud.lock_sweep(session, sweep_id=sweep_id, user=user)
        if SweepState(sweep.state) in ACTIVE_SWEEP_STATES:
            raise IllegalTransition(
                sweep.state, "deleted", f"cannot delete a sweep that is {sweep.state}"
            )
        run_ids = [sweep.mlflow_run_id, *(trial.mlflow_run_id for trial in sweep.trials)]
        experiment_id = sweep.mlflow_experiment_id
        session.delete(sweep)
    ctx.changed(sweep_id)
    threading.Thread(
        target=cleanup.remove_sweep_artifacts,
        kwargs={
            "settings": ctx.settings,
            "sweep_id": sweep_id,
            "mlflow_experiment_id": experiment_id,
            "mlflow_run_ids": [run_id for run_id in run_ids if run_id],
        },
        name=f"extrap-cleanup-{sweep_id}",
        daemon=True,
    ).start()
    return Response(status_code=204)


@router.get(
    "/{sweep_id}/best",
    response_model=None,
    summary="The best trial so far (?format=yaml: a job override block)",
    responses={200: {"model": BestPublic, "content": {"application/yaml": {}}}},
)
def get_best(
    sweep_id: str,
    session: SessionDep,
    user: CurrentUser,
    format: Annotated[Literal["json", "yaml"], Query()] = "json",
) -> BestPublic | PlainTextResponse:
    sweep = crud.get_sweep(session, sweep_id=sweep_id, user=user)
    trial = None
    if sweep.best_trial_id is not None:
        trial = crud.get_trial(session, sweep_id=sweep.id, trial_id=sweep.best_trial_id)
    best = best_public(sweep, trial)
    if best is None:
        raise ApiError(404, "no_best_yet", "no trial has reported the objective metric yet")
    if format == "yaml":
        return PlainTextResponse(best_yaml(best, sweep.name), media_type="application/yaml")
    return best
