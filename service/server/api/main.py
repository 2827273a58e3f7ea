"""The FastAPI app: ``create_app(settings)``; its lifespan migrates the database, makes sure
an admin token exists, connects to Ray (starting or adopting the embedded head when
``settings.ray_address`` is unset) and runs the launcher and reconciler in the background.

This module's imports stay light: no torch, Ray, MLflow or Optuna (a test checks), so the API
starts in about a second and Ray is only spoken to over HTTP.

Example:
    $ uvicorn --factory service.server.api.main:create_app
"""

from __future__ import annotations

import logging
import sys
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from search_spaces import SweepSpec
from service.server.api.context import AppContext
from service.server.api.errors import install_error_handlers
from service.server.api.metrics import AppMetrics
from service.server.api.middleware import Edge
from service.server.api.routes import (
    health,
    internal,
    internal_studies,
    streams,
    studies,
    sweeps,
    trials,
)
from service.server.auth import ADMIN_TOKEN_FILE, ensure_admin_token, write_admin_token_file
from service.server.db import Database
from service.server.dispatch.base import Dispatcher
from service.server.dispatch.local_head import LocalRayHead
from service.server.dispatch.ray_auth import default_ray_token
from service.server.dispatch.ray_jobs import RayJobDispatcher
from service.server.launcher import DEFAULT_DRIVER_COMMAND, Launcher
from service.server.migrations import upgrade
from service.server.reconciler import Reconciler, Supervisor
from service.settings import Settings, get_settings
from service.wire import DriverEventsIn, ErrorPublic, ResumeRequest
from service.wire.studies import StudyRenderedIn

__all__ = ["ADMIN_TOKEN_FILE", "create_app"]

log = logging.getLogger(__name__)

API_VERSION = "1"
_ROUTERS = (
    sweeps.router,
    trials.router,
    studies.router,
    streams.router,
    internal.router,
    internal_studies.router,
    health.router,
)


def create_app(
    settings: Settings | None = None,
    *,
    dispatcher: Dispatcher | None = None,
    driver_command: Sequence[str] = DEFAULT_DRIVER_COMMAND,
    supervise: bool = True,
) -> FastAPI:
    """Build the app.

    Args:
        settings: the service settings (default: from the environment).
        dispatcher: the cluster to use (default: ``settings.ray_address``, or the local head).
        driver_command: the driver program (tests substitute a stand-in).
        supervise: run the launcher/reconciler thread (tests of the bare API switch it off).
    """
    settings = settings or get_settings()
    db = Database(settings.resolved_database_url)
    ctx = AppContext(settings=settings, db=db, metrics=AppMetrics(db))

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        await run_in_threadpool(_start, ctx, dispatcher, driver_command, supervise)
        try:
            yield
        finally:
            await run_in_threadpool(_stop, ctx)

    app = FastAPI(
        title="extrap-tune",
        version=API_VERSION,
        summary="Hyperparameter search for large-batch training",
        lifespan=lifespan,
    )
    app.state.ctx = ctx
    install_error_handlers(app)
    for router in _ROUTERS:
        app.include_router(router)
    # Outermost of our layers: the body limit, the latency histogram, the 500 of last resort.
    app.add_middleware(
        Edge, max_bytes=settings.max_body_bytes, histogram=ctx.metrics.request_latency
    )
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    return app


def _start(
    ctx: AppContext,
    dispatcher: Dispatcher | None,
    driver_command: Sequence[str],
    supervise: bool,
) -> None:
    settings = ctx.settings
    settings.home.mkdir(parents=True, exist_ok=True)
    upgrade(ctx.db)
    _bootstrap_admin(ctx)
    if dispatcher is None:
        dispatcher, ctx.owns_dispatcher = _connect(ctx), True
    ctx.dispatcher = dispatcher
    ctx.launcher = Launcher(
        db=ctx.db,
        dispatcher=dispatcher,
        settings=settings,
        driver_command=driver_command,
        on_change=ctx.changed,
    )
    if supervise:
        ctx.supervisor = Supervisor(
            ctx.launcher, Reconciler(ctx.launcher), interval_s=settings.reconcile_interval_s
        )
        ctx.supervisor.start()


def _bootstrap_admin(ctx: AppContext) -> None:
    configured = ctx.settings.admin_token
    with ctx.db.write() as session:
        token = ensure_admin_token(
            session, configured=configured.get_secret_value() if configured else None
        )
    if token is not None:
        path = write_admin_token_file(ctx.settings.home, token)
        # Shown once: only its hash is stored.
        print(f"extrap: admin token (also in {path}): {token}", file=sys.stderr, flush=True)


def _connect(ctx: AppContext) -> Dispatcher:
    settings = ctx.settings
    if settings.ray_address:
        return RayJobDispatcher(settings.ray_address, token=default_ray_token())
    ctx.head = LocalRayHead(settings.home)
    info = ctx.head.start()
    return RayJobDispatcher(info.dashboard_url, token=info.token)


def _stop(ctx: AppContext) -> None:
    if ctx.supervisor is not None:
        ctx.supervisor.stop()
    ctx.cleaner.stop()
    if ctx.dispatcher is not None and ctx.owns_dispatcher:
        ctx.dispatcher.close()
    if ctx.head is not None:
        ctx.head.stop()
    ctx.db.dispose()


_PUBLIC_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})
# Schemas referenced by hand: the error body, and the bodies read by dependencies after
# authentication (not FastAPI body parameters).
_BODY_MODELS: dict[str, type[BaseModel]] = {
    "ErrorPublic": ErrorPublic,  # every error answer (service.server.api.errors)
    "SweepSpec": SweepSpec,
    "ResumeRequest": ResumeRequest,
    "DriverEventsIn": DriverEventsIn,
    "StudyRenderedIn": StudyRenderedIn,
}


def _openapi(app: FastAPI) -> dict[str, Any]:
    """The OpenAPI document: every status each operation answers with its body, the schemas
    of the bodies read after authentication (the sweep spec's as ``SweepSpec``), bearer auth."""
    if app.openapi_schema:
        return app.openapi_schema
    schema = get_openapi(
        title=app.title, version=app.version, summary=app.summary, routes=app.routes
    )
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    for name, model in _BODY_MODELS.items():
        model_schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        components.update(model_schema.pop("$defs", {}))
        components[name] = model_schema
    for unused in ("HTTPValidationError", "ValidationError"):
        components.pop(unused, None)  # errors have one shape: ErrorPublic
    schema["components"].setdefault("securitySchemes", {})["bearer"] = {
        "type": "http",
        "scheme": "bearer",
    }
    schema["security"] = [{"bearer": []}]
    for path, operations in schema.get("paths", {}).items():
        if path in _PUBLIC_PATHS:
            for operation in operations.values():
                operation["security"] = []
    app.openapi_schema = schema
    return schema
