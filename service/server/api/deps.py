"""Request dependencies as ``Annotated`` aliases: context, settings, session, current user."""

from __future__ import annotations

import hmac
from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Header, Request
from sqlalchemy.orm import Session

from service.server import crud
from service.server.api.context import AppContext
from service.server.api.errors import ApiError
from service.server.auth import authenticate, hash_token
from service.server.dispatch.base import Dispatcher
from service.server.models import Sweep, User
from service.settings import Settings

__all__ = [
    "ContextDep",
    "CurrentUser",
    "DispatcherDep",
    "DriverSweep",
    "SessionDep",
    "SettingsDep",
]


def get_context(request: Request) -> AppContext:
    ctx: AppContext = request.app.state.ctx
    return ctx


ContextDep = Annotated[AppContext, Depends(get_context)]


def get_settings(ctx: ContextDep) -> Settings:
    return ctx.settings


SettingsDep = Annotated[Settings, Depends(get_settings)]


def get_session(ctx: ContextDep) -> Iterator[Session]:
    with ctx.db.read() as session:
        yield session


SessionDep = Annotated[Session, Depends(get_session)]


def get_dispatcher(ctx: ContextDep) -> Dispatcher:
    if ctx.dispatcher is None:
        raise ApiError(503, "unavailable", "the cluster connection is not set up yet")
    return ctx.dispatcher


DispatcherDep = Annotated[Dispatcher, Depends(get_dispatcher)]


def _bearer(authorization: str | None) -> str:
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise ApiError(
            401,
            "unauthorized",
            "missing bearer token: send 'Authorization: Bearer <token>'",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return token.strip()


AuthorizationHeader = Annotated[
    str | None, Header(description="Bearer <API token>", include_in_schema=False)
]


def get_current_user(ctx: ContextDep, authorization: AuthorizationHeader = None) -> User:
    # Its own short session: a streaming response must not hold a transaction open.
    token = _bearer(authorization)
    with ctx.db.read() as session:
        user = authenticate(session, token=token)
    if user is None:
        raise ApiError(
            401, "unauthorized", "invalid or revoked token", headers={"WWW-Authenticate": "Bearer"}
        )
    return user


CurrentUser = Annotated[User, Depends(get_current_user)]


def get_driver_sweep(
    sweep_id: str, ctx: ContextDep, authorization: AuthorizationHeader = None
) -> Sweep:
    """The sweep whose current driver token was presented (anything else is 401)."""
    digest = hash_token(_bearer(authorization))
    with ctx.db.read() as session:
        try:
            sweep: Sweep | None = crud.get_sweep(session, sweep_id=sweep_id)
        except crud.SweepNotFound:
            sweep = None
    if sweep is None or not hmac.compare_digest(sweep.driver_token_hash or "", digest):
        raise ApiError(
            401,
            "unauthorized",
            "this token is not the current driver token of the sweep",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return sweep


DriverSweep = Annotated[Sweep, Depends(get_driver_sweep)]
