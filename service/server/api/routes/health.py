"""``/healthz`` (the process is up), ``/readyz`` (its dependencies answer), ``/metrics``."""

from __future__ import annotations

import functools
import os
from pathlib import Path

import httpx
from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel
from sqlalchemy import text
from starlette.concurrency import run_in_threadpool

from service.server.api.context import AppContext
from service.server.api.deps import ContextDep
from service.server.api.errors import ApiError
from service.server.dispatch.base import DispatcherUnavailable
from service.wire import ErrorBody

__all__ = ["router"]

router = APIRouter(tags=["health"])

OK = "ok"


def _database(ctx: AppContext) -> str:
    try:
        with ctx.db.read() as session:
            session.execute(text("select 1"))
    except Exception as exc:  # any driver error means "not ready"
        return f"unreachable: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
    return OK


def _ray(ctx: AppContext) -> str:
    if ctx.dispatcher is None:
        return "not connected yet"
    try:
        ctx.dispatcher.ping()
    except DispatcherUnavailable as exc:
        return f"unreachable: {exc}"
    return OK


def _mlflow(ctx: AppContext) -> str:
    uri = ctx.settings.resolved_mlflow_tracking_uri
    if uri.startswith(("http://", "https://")):
        try:
            response = httpx.get(f"{uri.rstrip('/')}/health", timeout=5.0)
        except httpx.HTTPError as exc:
            return f"unreachable: {exc}"
        return OK if response.status_code == 200 else f"answered {response.status_code}"
    directory = _local_store_dir(uri)
    if _writable(directory):
        return OK
    return f"local store {directory} is not writable"


def _local_store_dir(uri: str) -> Path:
    """The directory a local MLflow store writes to (the database file's, or the file store)."""
    if uri.startswith("sqlite:///"):
        return Path(uri.removeprefix("sqlite:///")).parent
    return Path(uri.removeprefix("file://"))


def _writable(directory: Path) -> bool:
    """The directory, or its nearest existing ancestor (it is created on first use), is writable."""
    for candidate in (directory, *directory.parents):
        if candidate.exists():
            return candidate.is_dir() and os.access(candidate, os.W_OK)
    return False


_CHECKS = {"ray": _ray, "mlflow": _mlflow}


class HealthPublic(BaseModel):
    status: str


class ReadyPublic(BaseModel):
    status: str
    checks: dict[str, str]


class NotReadyPublic(BaseModel):
    error: ErrorBody
    checks: dict[str, str]


@router.get("/healthz", summary="The process is up", response_model=HealthPublic)
async def healthz() -> dict[str, str]:
    return {"status": OK}


@router.get(
    "/readyz",
    summary="Database, Ray and MLflow answer (503 says which does not)",
    response_model=ReadyPublic,
    responses={503: {"model": NotReadyPublic, "description": "What is down (`not_ready`)"}},
)
async def readyz(ctx: ContextDep) -> Response:
    checks = {"database": await ctx.run_db(functools.partial(_database, ctx))}
    for name, check in _CHECKS.items():
        checks[name] = await run_in_threadpool(check, ctx)
    failing = {name: status for name, status in checks.items() if status != OK}
    if not failing:
        return JSONResponse({"status": "ready", "checks": checks})
    message = "not ready: " + "; ".join(f"{name} {status}" for name, status in failing.items())
    details = [{"dependency": name, "status": status} for name, status in failing.items()]
    error = ApiError(503, "not_ready", message, details=details)
    body = {**error.public().model_dump(mode="json"), "checks": checks}
    return JSONResponse(body, status_code=503)


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=PlainTextResponse,
    responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}},
)
async def metrics(ctx: ContextDep) -> Response:
    text = await ctx.run_db(functools.partial(generate_latest, ctx.metrics.registry))
    return Response(text, media_type=CONTENT_TYPE_LATEST)
