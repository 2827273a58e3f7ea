"""``/v1/sweeps``: submit, list, show, cancel, resume, delete, best, the best model.

Each handler authenticates first (:data:`CurrentUser`, see :mod:`service.server.api.deps`),
then reads what it needs in the request's session; a handler that changes something does so
in one write transaction of that session. Answers are serialized once
(:func:`~service.server.api.views.json_response`).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Header, Query, Request, Response
from fastapi.responses import FileResponse, PlainTextResponse
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from search_spaces import FieldError, SpecError, SweepSpec, load_spec
from service.server import cleanup, crud
from service.server.api.bodies import (
    SPEC_REQUEST_BODY,
    json_request_body,
    load_spec_body,
    media_type,
    parse_model,
    read_body,
)
from service.server.api.deps import (
    MAX_INT32,
    CallerAndSweep,
    ContextDep,
    CurrentUser,
    SessionDep,
    SettingsDep,
    SweepIdPath,
    context_of,
)
from service.server.api.errors import ApiError, error_responses
from service.server.api.views import best_public, best_yaml, json_response, sweep_public
from service.server.auth import Caller
from service.server.dispatch.base import DispatcherUnavailable
from service.server.models import Sweep
from service.server.policy import (
    placement_problems,
    policy_errors,
    storable_errors,
    trial_budget_error,
)
from service.server.states import IllegalTransition
from service.settings import Settings
from service.wire import (
    ACTIVE_SWEEP_STATES,
    BEST_MODEL_DIR,
    FINAL_SWEEP_STATES,
    WEIGHTS_FILE,
    BestPublic,
    DryRunPublic,
    ResumeRequest,
    SweepPublic,
    SweepsPublic,
    SweepState,
    field_error_details,
)

__all__ = ["check_resumable", "router", "take_submission_token"]

log = logging.getLogger(__name__)

router = APIRouter(prefix="/v1/sweeps", tags=["sweeps"])

IDEMPOTENCY_KEY_PATTERN = r"^[\x21-\x7e]{1,128}$"
_IDEMPOTENCY_KEY = re.compile(IDEMPOTENCY_KEY_PATTERN)
_REPLAYED = "Idempotent-Replayed"


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


def _shown(session: Session, settings: Settings, sweep_id: str, status_code: int) -> Response:
    row, counts = crud.sweep_with_counts(session, sweep_id=sweep_id)
    return json_response(sweep_public(row, counts, settings), status_code=status_code)


# -- submission -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Admission:
    """What :func:`admit_submission` decided: the caller, its key, an earlier sweep with it."""

    user: Caller
    dry_run: bool
    idempotency_key: str | None
    earlier: Sweep | None


def admit_submission(
    user: CurrentUser,
    session: SessionDep,
    ctx: ContextDep,
    dry_run: Annotated[bool, Query(description="validate only; store nothing")] = False,
    idempotency_key: Annotated[
        str | None,
        Header(
            alias="Idempotency-Key",
            max_length=128,
            description="a retry with the same key returns the sweep the first attempt "
            "created (1 to 128 printable ASCII characters; dry runs ignore it)",
        ),
    ] = None,
) -> Admission:
    """After authentication, before the body is read: replay or rate limit (429)."""
    if dry_run or not idempotency_key:
        idempotency_key = None  # a dry run stores nothing; an empty header is no key
    if idempotency_key is not None:
        if not _IDEMPOTENCY_KEY.match(idempotency_key):
            raise ApiError.invalid(
                [
                    FieldError(
                        "Idempotency-Key", "use 1 to 128 printable ASCII characters (no spaces)"
                    )
                ],
                code="invalid_request",
            )
        earlier = crud.sweep_by_idempotency_key(session, owner=user, key=idempotency_key)
        if earlier is not None:
            return Admission(user, dry_run, idempotency_key, earlier)
    take_submission_token(ctx, user)
    return Admission(user, dry_run, idempotency_key, None)


def take_submission_token(ctx: ContextDep, user: Caller) -> None:
    """One submission's token from the caller's bucket, or 429 with ``Retry-After``."""
    wait_s = ctx.limiter.acquire(user.id)
    if wait_s is not None:
        settings = ctx.settings
        raise ApiError(
            429,
            "rate_limited",
            f"too many submissions: at most {settings.submission_burst} at once and "
            f"{settings.submissions_per_minute:g} a minute per user; retry in {wait_s:g} s",
            details=[{"retry_after_s": wait_s}],
            headers={"Retry-After": str(max(1, round(wait_s + 0.5)))},
        )


AdmissionDep = Annotated[Admission, Depends(admit_submission)]


async def read_submitted_spec(
    request: Request, session: SessionDep, admission: AdmissionDep
) -> SweepSpec:
    """The spec in the body, read and validated once the submission was admitted."""
    raw = await read_body(request, session)
    return await load_spec_body(raw, media_type(request))


SpecBody = Annotated[SweepSpec, Depends(read_submitted_spec)]


def _spec_errors(spec: SweepSpec, settings: Settings) -> list[FieldError]:
    return [*policy_errors(spec, settings), *storable_errors(spec.stored_form())]


def _replay(session: Session, ctx: ContextDep, spec: SweepSpec, earlier: Sweep) -> Response:
    if earlier.spec_hash != spec.content_hash():
        raise ApiError.invalid(
            [
                FieldError(
                    "Idempotency-Key",
                    f"this key was used for sweep {earlier.id} with another spec: use a new "
                    "key for a new submission",
                )
            ],
            code="idempotency_key_reused",
        )
    response = _shown(session, ctx.settings, earlier.id, 201)
    response.headers["Location"] = f"/v1/sweeps/{earlier.id}"
    response.headers[_REPLAYED] = "true"
    return response


@router.post(
    "",
    status_code=201,
    response_model=SweepPublic,
    openapi_extra=SPEC_REQUEST_BODY,
    summary="Submit a sweep (or validate it with dry_run=true)",
    responses={
        200: {"model": DryRunPublic, "description": "dry_run=true: the verdict; nothing stored"},
        201: {
            "model": SweepPublic,
            "description": "The sweep, queued (or, for a retried Idempotency-Key, the sweep "
            "the first attempt created, with `Idempotent-Replayed: true`)",
        },
        **error_responses(400, 401, 413, 415, 422, 429, 503),
    },
)
def create_sweep(
    admission: AdmissionDep,
    spec: SpecBody,
    session: SessionDep,
    ctx: ContextDep,
) -> Response:
    dry_run = admission.dry_run
    if admission.earlier is not None:
        return _replay(session, ctx, spec, admission.earlier)
    errors = _spec_errors(spec, ctx.settings)
    if errors:
        raise ApiError.invalid(errors)
    resources = _check_cluster(ctx, spec, required=dry_run)
    if dry_run:
        return json_response(DryRunPublic(spec=spec.model_dump(mode="json"), resources=resources))
    key = admission.idempotency_key
    try:
        with ctx.db.writing(session):
            earlier = (
                crud.sweep_by_idempotency_key(session, owner=admission.user, key=key)
                if key is not None
                else None
            )
            if earlier is None:
                sweep_id = crud.create_sweep(
                    session, owner=admission.user, spec=spec, idempotency_key=key
                ).id
    except IntegrityError:  # the same key, submitted at the same moment elsewhere
        if key is None:
            raise
        earlier = crud.sweep_by_idempotency_key(session, owner=admission.user, key=key)
        if earlier is None:
            raise
    if earlier is not None:
        return _replay(session, ctx, spec, earlier)
    ctx.wake()
    response = _shown(session, ctx.settings, sweep_id, 201)
    response.headers["Location"] = f"/v1/sweeps/{sweep_id}"
    return response


# -- reading --------------------------------------------------------------------------------


@router.get(
    "",
    response_model=SweepsPublic,
    summary="List sweeps (newest first)",
    responses=error_responses(401, 422, 503),
)
def list_sweeps(
    user: CurrentUser,
    session: SessionDep,
    settings: SettingsDep,
    state: Annotated[list[SweepState] | None, Query(description="filter by state")] = None,
    offset: Annotated[int, Query(ge=0, le=MAX_INT32)] = 0,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> Response:
    rows, count = crud.list_sweeps(
        session, user=user, states=state or (), offset=offset, limit=limit
    )
    counts = crud.trial_counts(session, sweep_ids=[row.id for row in rows])
    page = SweepsPublic(
        data=[sweep_public(row, counts[row.id], settings) for row in rows], count=count
    )
    return json_response(page)


@router.get(
    "/{sweep_id}",
    response_model=SweepPublic,
    summary="Show a sweep",
    responses=error_responses(401, 404, 422, 503),
)
async def get_sweep(read: CallerAndSweep, request: Request, sweep_id: SweepIdPath) -> Response:
    # The caller and the sweep came in one indexed read on the event loop (cheaper than a
    # thread hop; see get_current_user), and its connection is back in the pool.
    row, counts = crud.sweep_with_counts_of(read.row, sweep_id=sweep_id, user=read.caller)
    return json_response(sweep_public(row, counts, context_of(request).settings))


# -- actions --------------------------------------------------------------------------------


@router.post(
    "/{sweep_id}/cancel",
    response_model=SweepPublic,
    status_code=202,
    summary="Cancel a sweep",
    responses=error_responses(401, 404, 409, 422, 503),
)
def cancel_sweep(
    user: CurrentUser, session: SessionDep, ctx: ContextDep, sweep_id: SweepIdPath
) -> Response:
    with ctx.db.writing(session):
        sweep = crud.lock_sweep(session, sweep_id=sweep_id, user=user)
        job_id = crud.cancel(session, sweep=sweep, by=user.name)
    ctx.changed(sweep_id)
    if job_id is not None and ctx.launcher is not None:
        ctx.launcher.stop_driver(job_id)
    ctx.wake()
    return _shown(session, ctx.settings, sweep_id, 202)


async def read_resume_body(
    request: Request, user: CurrentUser, session: SessionDep
) -> ResumeRequest | None:
    """The optional ``{"add_trials": N}`` body, read once the caller is known."""
    raw = await read_body(request, session)
    return parse_model(raw, media_type(request), ResumeRequest, required=False)


@router.post(
    "/{sweep_id}/resume",
    response_model=SweepPublic,
    status_code=202,
    summary="Resume a finished sweep (optionally with more trials)",
    openapi_extra=json_request_body("ResumeRequest", required=False),
    responses=error_responses(400, 401, 404, 409, 413, 415, 422, 503),
)
def resume_sweep(
    user: CurrentUser,
    body: Annotated[ResumeRequest | None, Depends(read_resume_body)],
    session: SessionDep,
    ctx: ContextDep,
    sweep_id: SweepIdPath,
) -> Response:
    add_trials = body.add_trials if body is not None else 0
    with ctx.db.writing(session):
        sweep = crud.lock_sweep(session, sweep_id=sweep_id, user=user)
        if SweepState(sweep.state) not in FINAL_SWEEP_STATES:
            raise IllegalTransition(
                sweep.state, SweepState.QUEUED, f"cannot resume a sweep that is {sweep.state}"
            )
        check_resumable(sweep.spec)
        error = trial_budget_error(sweep.num_trials + add_trials, ctx.settings, "add_trials")
        if error is not None:
            raise ApiError.invalid([error], code="invalid_request")
        crud.requeue(session, sweep=sweep, add_trials=add_trials)
    ctx.changed(sweep_id)
    ctx.wake()
    return _shown(session, ctx.settings, sweep_id, 202)


def check_resumable(stored: dict[str, Any]) -> None:
    """409 if the stored spec no longer validates (stored by an earlier version: a test-set
    or bare objective, say): its driver would refuse it, so it is not queued."""
    try:
        load_spec(stored)
    except SpecError as exc:
        first = exc.errors[0] if exc.errors else FieldError("", "the spec is invalid")
        raise ApiError(
            409,
            "spec_outdated",
            "this sweep's stored spec does not validate under this version, so it cannot be "
            f"resumed ({first.path or 'spec'}: {first.message}); submit it again as a new "
            "sweep with that fixed (GET /v1/sweeps/{id} shows the stored spec)",
            field=first.path or None,
            details=field_error_details(exc.errors),
        ) from None


@router.delete(
    "/{sweep_id}",
    status_code=204,
    summary="Delete a sweep that is not running",
    responses={204: {"description": "Deleted"}, **error_responses(401, 404, 409, 422, 503)},
)
def delete_sweep(
    user: CurrentUser, session: SessionDep, ctx: ContextDep, sweep_id: SweepIdPath
) -> Response:
    with ctx.db.writing(session):
        sweep = crud.lock_sweep(session, sweep_id=sweep_id, user=user)
        if SweepState(sweep.state) in ACTIVE_SWEEP_STATES:
            raise IllegalTransition(
                sweep.state, "deleted", f"cannot delete a sweep that is {sweep.state}"
            )
        run_ids = [sweep.mlflow_run_id, *(trial.mlflow_run_id for trial in sweep.trials)]
        experiment_id = sweep.mlflow_experiment_id
        session.delete(sweep)
    ctx.changed(sweep_id)
    leftovers = tuple(run_id for run_id in run_ids if run_id)
    ctx.cleaner.submit(cleanup.SweepLeftovers(sweep_id, experiment_id, leftovers))
    return Response(status_code=204)


@router.get(
    "/{sweep_id}/best",
    response_model=None,
    summary="The best trial so far (?format=yaml: a job override block)",
    responses={
        200: {
            "model": BestPublic,
            "content": {
                "application/yaml": {
                    "schema": {
                        "type": "object",
                        "required": ["job"],
                        "properties": {"job": {"type": "object"}},
                        "description": "a `job:` block with the best values, to paste",
                    }
                }
            },
            "description": "The best trial (JSON), or a `job:` block (YAML)",
        },
        **error_responses(401, 404, 422, 503),
    },
)
def get_best(
    user: CurrentUser,
    session: SessionDep,
    sweep_id: SweepIdPath,
    format: Annotated[Literal["json", "yaml"], Query()] = "json",
) -> Response:
    sweep = crud.sweep_row(session, sweep_id=sweep_id, user=user)
    trial = None
    if sweep.best_trial_id is not None:
        trial = crud.get_trial(session, sweep_id=sweep.id, trial_id=sweep.best_trial_id)
    best = best_public(sweep, trial)
    if best is None:
        raise ApiError(404, "no_best_yet", "no trial has reported the objective metric yet")
    if format == "yaml":
        return PlainTextResponse(best_yaml(best, sweep.name), media_type="application/yaml")
    return json_response(best)


@router.get(
    "/{sweep_id}/best/model",
    response_model=None,
    summary="The best configuration's trained weights (a state_dict), or the job that made them",
    description=(
        "`file=weights.pt` (default): the model's `state_dict`, saved with `torch.save`; "
        "`file=job.yaml`: the job config that trained it (its workload builds the model to load "
        "the weights into). Exported by the driver when the sweep ends, from the final "
        "checkpoint of the median confirmation run (or of the best trial without confirmation). "
        "Served from the service's storage; with object storage (`s3://…`), read `weights_uri` "
        "from `/best`, or load `model_uri` with MLflow."
    ),
    responses={
        200: {
            "content": {
                "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
                "application/yaml": {"schema": {"type": "string"}},
            },
            "description": "The file, as an attachment",
        },
        **error_responses(401, 404, 422, 503),
    },
)
def get_best_model(
    user: CurrentUser,
    session: SessionDep,
    ctx: ContextDep,
    sweep_id: SweepIdPath,
    file: Annotated[Literal["weights.pt", "job.yaml"], Query()] = "weights.pt",
) -> Response:
    sweep = crud.sweep_row(session, sweep_id=sweep_id, user=user)
    best = sweep.best if isinstance(sweep.best, dict) else {}
    if not best.get("weights_uri"):
        raise ApiError(
            404,
            "no_model",
            "this sweep has no exported model yet: it is exported when the sweep ends with a "
            "best trial whose checkpoint is on a filesystem (see /best: weights_uri, model_uri)",
        )
    storage = ctx.settings.resolved_storage_path
    if "://" in storage:
        raise ApiError(
            404,
            "model_not_served",
            f"the model is in {storage}, which this service does not read: fetch weights_uri "
            "from there, or load model_uri with MLflow",
        )
    # The path is the service's own (storage, sweep id, fixed names), not one it was sent.
    path = Path(storage).resolve() / sweep.id / BEST_MODEL_DIR / file
    if not path.is_file():
        raise ApiError(
            404, "model_missing", f"the exported model's {file} is no longer in the storage"
        )
    media = "application/octet-stream" if file == WEIGHTS_FILE else "application/yaml"
    return FileResponse(path, media_type=media, filename=f"{sweep.id}-{file}")
